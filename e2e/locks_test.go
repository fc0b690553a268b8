package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Locks against the real binary: mutual exclusion under contention checked
// by a fenced resource the test simulates, expiry timing, the FIFO order of
// waiters, deadlock freedom with crossing resource orders, and fencing
// tokens and expiries across a kill -9.

// lockJSON is a lock as the API shows it.
type lockJSON struct {
	LockID       string   `json:"lock_id"`
	Resources    []string `json:"resources"`
	Holder       string   `json:"holder"`
	FencingToken uint64   `json:"fencing_token"`
	AcquiredAt   string   `json:"acquired_at"`
	ExpiresAt    string   `json:"expires_at"`
}

var lockKeys = []string{"lock_id", "resources", "holder", "fencing_token", "acquired_at", "expires_at"}

// decodeLock decodes a lock and checks its shape: exactly the keys of the
// contract, a ULID, times in the log's format. It never fails the test.
func decodeLock(raw []byte) (lockJSON, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return lockJSON{}, fmt.Errorf("lock: %v: %s", err, clip(raw))
	}
	for _, k := range lockKeys {
		if _, ok := m[k]; !ok {
			return lockJSON{}, fmt.Errorf("lock lacks %q: %s", k, clip(raw))
		}
	}
	if len(m) != len(lockKeys) {
		return lockJSON{}, fmt.Errorf("lock has keys beyond %v: %s", lockKeys, clip(raw))
	}
	var l lockJSON
	if err := json.Unmarshal(raw, &l); err != nil {
		return l, fmt.Errorf("lock: %v: %s", err, clip(raw))
	}
	if len(l.LockID) != 26 || l.FencingToken == 0 || len(l.Resources) == 0 || l.Holder == "" ||
		!timeRE.MatchString(l.AcquiredAt) || !timeRE.MatchString(l.ExpiresAt) {
		return l, fmt.Errorf("lock with a bad field: %s", clip(raw))
	}
	return l, nil
}

func (l lockJSON) expires(t testing.TB) time.Time {
	t.Helper()
	return mustTime(t, l.ExpiresAt)
}

func (l lockJSON) acquired(t testing.TB) time.Time {
	t.Helper()
	return mustTime(t, l.AcquiredAt)
}

// acquireResult is the answer to one POST /v1/locks.
type acquireResult struct {
	status int
	lock   lockJSON // on 201
	body   []byte
	err    error // transport error, or a 201 whose lock is malformed
	at     time.Time
}

// tryAcquire sends POST /v1/locks to base (waitMs < 0 leaves wait_ms out).
// It never fails the test, so client goroutines may use it. A 201 is
// checked: the lock holds exactly the resources asked for, for holder, for
// ttl.
func tryAcquire(base string, resources []string, holder string, ttlMs, waitMs int64) acquireResult {
	in := map[string]any{"resources": resources, "holder": holder, "ttl_ms": ttlMs}
	if waitMs >= 0 {
		in["wait_ms"] = waitMs
	}
	body, _ := json.Marshal(in)
	status, b, err := doAt(base, "POST", "/v1/locks", body)
	r := acquireResult{status: status, body: b, err: err, at: time.Now()}
	if err != nil || status != http.StatusCreated {
		return r
	}
	l, err := decodeLock(b)
	if err != nil {
		r.err = err
		return r
	}
	r.lock = l
	if got, want := slices.Sorted(slices.Values(l.Resources)), slices.Sorted(slices.Values(resources)); !slices.Equal(got, want) {
		r.err = fmt.Errorf("acquired %v, asked for %v", l.Resources, resources)
	} else if l.Holder != holder {
		r.err = fmt.Errorf("lock of holder %q, asked as %q", l.Holder, holder)
	} else if acq, err1 := time.Parse(time.RFC3339Nano, l.AcquiredAt); err1 != nil {
		r.err = err1
	} else if exp, err2 := time.Parse(time.RFC3339Nano, l.ExpiresAt); err2 != nil {
		r.err = err2
	} else if exp.Sub(acq) != time.Duration(ttlMs)*time.Millisecond {
		r.err = fmt.Errorf("lock from %s to %s, ttl_ms was %d", l.AcquiredAt, l.ExpiresAt, ttlMs)
	}
	return r
}

func (r acquireResult) String() string {
	if r.err != nil {
		return fmt.Sprintf("%d %s (%v)", r.status, clip(r.body), r.err)
	}
	return fmt.Sprintf("%d %s", r.status, clip(r.body))
}

// mustAcquire acquires and fails the test unless that answers 201.
func mustAcquire(t testing.TB, p *proc, resources []string, holder string, ttlMs, waitMs int64) lockJSON {
	t.Helper()
	r := tryAcquire(p.URL, resources, holder, ttlMs, waitMs)
	if r.err != nil || r.status != http.StatusCreated {
		t.Fatalf("acquire %v as %s: %s", resources, holder, r)
	}
	return r.lock
}

// lockOf answers GET /v1/locks?resource=; ok is false on a 404.
func lockOf(t testing.TB, p *proc, resource string) (lockJSON, bool) {
	t.Helper()
	r := p.call(t, "GET", "/v1/locks?resource="+url.QueryEscape(resource), nil)
	switch r.Status {
	case http.StatusNotFound:
		checkError(t, r, 404, "not_found", "")
		return lockJSON{}, false
	case http.StatusOK:
		l, err := decodeLock(r.Body)
		if err != nil {
			t.Fatalf("GET lock of %s: %v", resource, err)
		}
		return l, true
	}
	t.Fatalf("GET lock of %s: %s", resource, r)
	return lockJSON{}, false
}

func lockPath(id, rest string) string { return "/v1/locks/" + url.PathEscape(id) + rest }

func mustRelease(t testing.TB, p *proc, l lockJSON) {
	t.Helper()
	p.must(t, http.StatusNoContent, "DELETE", lockPath(l.LockID, ""), nil)
}

// releaseAt releases from a client goroutine; it never fails the test.
func releaseAt(base string, l lockJSON) error {
	status, b, err := doAt(base, "DELETE", lockPath(l.LockID, ""), nil)
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("release %s (token %d): %d %s", l.LockID, l.FencingToken, status, clip(b))
	}
	return nil
}

// lockEvent is a lock event of the log with its data decoded.
type lockEvent struct {
	eventJSON
	lock lockJSON
	recv time.Time // when a live stream handed it over (zero for a replay)
}

var lockEventTypes = []string{"lock.acquired", "lock.renewed", "lock.released", "lock.expired"}

func toLockEvent(t testing.TB, ev eventJSON) lockEvent {
	t.Helper()
	if ev.Topic != "locks" || !slices.Contains(lockEventTypes, ev.Type) {
		t.Fatalf("event %d: %s on %s, want a lock event on locks", ev.Seq, ev.Type, ev.Topic)
	}
	l, err := decodeLock(ev.Data)
	if err != nil {
		t.Fatalf("event %d (%s): %v", ev.Seq, ev.Type, err)
	}
	return lockEvent{eventJSON: ev, lock: l}
}

// lockLog replays the whole log of the topic "locks".
func lockLog(t testing.TB, p *proc) []lockEvent {
	t.Helper()
	var out []lockEvent
	for _, ev := range streamLog(t, p, "locks") {
		out = append(out, toLockEvent(t, ev))
	}
	return out
}

// nextLockEvent reads the next lock event of a live stream.
func nextLockEvent(t testing.TB, s *sseStream) lockEvent {
	t.Helper()
	ev := s.mustEvent(t)
	le := toLockEvent(t, ev)
	le.recv = time.Now()
	return le
}

// checkLockLog replays a lock log against a model of the holders: every
// lock.acquired takes resources that are all free and gets a token above
// every earlier one; lock.renewed, lock.released and lock.expired name a
// lock that holds exactly those resources; a lock is released or expired at
// most once. It returns the locks still held at the end.
func checkLockLog(t testing.TB, evs []lockEvent) map[string]lockJSON {
	t.Helper()
	held := map[string]lockJSON{} // lock_id → lock
	holder := map[string]string{} // resource → lock_id
	ended := map[string]string{}  // lock_id → how it ended
	var lastToken uint64
	for _, ev := range evs {
		l := ev.lock
		switch ev.Type {
		case "lock.acquired":
			if l.FencingToken <= lastToken {
				t.Errorf("event %d: lock %s acquired with token %d after token %d", ev.Seq, l.LockID, l.FencingToken, lastToken)
			}
			lastToken = max(lastToken, l.FencingToken)
			if _, dup := held[l.LockID]; dup || ended[l.LockID] != "" {
				t.Errorf("event %d: lock %s acquired twice", ev.Seq, l.LockID)
			}
			for _, r := range l.Resources {
				if other, ok := holder[r]; ok {
					t.Errorf("event %d: lock %s (token %d) takes %q, held by %s (token %d)", ev.Seq, l.LockID, l.FencingToken, r, other, held[other].FencingToken)
				}
			}
			for _, r := range l.Resources {
				holder[r] = l.LockID
			}
			held[l.LockID] = l
		default:
			h, ok := held[l.LockID]
			if !ok {
				t.Errorf("event %d: %s of lock %s, which is not held (%s)", ev.Seq, ev.Type, l.LockID, ended[l.LockID])
				continue
			}
			if !slices.Equal(h.Resources, l.Resources) || h.FencingToken != l.FencingToken || h.Holder != l.Holder {
				t.Errorf("event %d: %s of %+v, acquired as %+v", ev.Seq, ev.Type, l, h)
			}
			if ev.Type == "lock.renewed" {
				held[l.LockID] = l
				continue
			}
			for _, r := range h.Resources {
				if holder[r] == l.LockID {
					delete(holder, r)
				} else {
					t.Errorf("event %d: %s of %s, but %q is held by %s", ev.Seq, ev.Type, l.LockID, r, holder[r])
				}
			}
			delete(held, l.LockID)
			ended[l.LockID] = ev.Type
		}
	}
	return held
}

// locksWaiting reads the engram_locks_waiting gauge.
func locksWaiting(t testing.TB, p *proc) float64 {
	t.Helper()
	v, ok := mustScrape(t, p)["engram_locks_waiting"]
	if !ok {
		t.Fatalf("/metrics has no engram_locks_waiting")
	}
	return v
}

// waitWaiting polls until n acquires are parked in the server.
func waitWaiting(t testing.TB, p *proc, n float64) {
	t.Helper()
	var last float64
	if !pollUntil(5*time.Second, 5*time.Millisecond, func() bool {
		last = locksWaiting(t, p)
		return last == n
	}) {
		t.Fatalf("engram_locks_waiting is %v after 5 s, want %v", last, n)
	}
}

// fencedStore is the resource the lock guards, simulated here: it rejects
// a write whose fencing token is below the highest it has seen, as a real
// storage service checking tokens would.
type fencedStore struct {
	mu      sync.Mutex
	value   int
	highest uint64
	tokens  []uint64 // of the accepted writes, in order
}

func (s *fencedStore) read() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value
}

// write sets the value if token is not below the highest seen.
func (s *fencedStore) write(token uint64, v int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return false
	}
	s.highest = token
	s.value = v
	s.tokens = append(s.tokens, token)
	return true
}

func (s *fencedStore) highestToken() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.highest
}

// TestLockMutualExclusion: 64 clients, each doing cycles of acquire (with
// wait_ms), read the fenced counter, increment it with the lock's token,
// release. A zombie holder whose lock expired before it wrote is refused by
// the token check. Then: the counter is exact, the accepted tokens strictly
// increase, no two clients ever held the lock at once, and the log agrees.
func TestLockMutualExclusion(t *testing.T) {
	const (
		clients = 64
		cycles  = 5
		res     = "mx/counter"
	)
	p := startServer(t, t.TempDir())
	var store fencedStore

	// The zombie takes the lock first with a short TTL and "stalls" past it.
	zombie := mustAcquire(t, p, []string{res}, "zombie", 300, 0)

	var (
		inFlight, maxInFlight atomic.Int32
		conflicts             atomic.Int64
		wg                    sync.WaitGroup
		start                 = make(chan struct{})
		mu                    sync.Mutex
		acquired              = map[uint64]string{} // token → lock_id, of every 201
	)
	deadline := time.Now().Add(25 * time.Second)
	for c := range clients {
		wg.Go(func() {
			holder := fmt.Sprintf("client-%02d", c)
			<-start
			for k := 0; k < cycles; {
				if time.Now().After(deadline) {
					t.Errorf("%s: only %d of %d cycles by the deadline", holder, k, cycles)
					return
				}
				r := tryAcquire(p.URL, []string{res}, holder, 20000, 20000)
				if r.err != nil {
					t.Errorf("%s: acquire: %s", holder, r)
					return
				}
				if r.status == http.StatusConflict {
					conflicts.Add(1)
					continue
				}
				if r.status != http.StatusCreated {
					t.Errorf("%s: acquire: %s", holder, r)
					return
				}
				l := r.lock
				mu.Lock()
				acquired[l.FencingToken] = l.LockID
				mu.Unlock()
				n := inFlight.Add(1)
				for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
				}
				if n != 1 {
					t.Errorf("%s: %d holders at once after acquiring token %d", holder, n, l.FencingToken)
				}
				v := store.read()
				runtime.Gosched()
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond) // some work under the lock
				}
				if !store.write(l.FencingToken, v+1) {
					t.Errorf("%s: write with token %d refused (highest %d): a holder with a stale token", holder, l.FencingToken, store.highestToken())
				}
				inFlight.Add(-1)
				if err := releaseAt(p.URL, l); err != nil {
					t.Errorf("%s: %v", holder, err)
					return
				}
				k++
			}
		})
	}
	began := time.Now()
	close(start)

	// The zombie wakes after its lock expired and someone else wrote, and
	// tries to write with its old token.
	if !pollUntil(20*time.Second, 5*time.Millisecond, func() bool { return store.highestToken() > zombie.FencingToken }) {
		t.Errorf("no client wrote within 20 s of the zombie's lock (expiring %s)", zombie.ExpiresAt)
	}
	if time.Now().Before(zombie.expires(t)) {
		t.Errorf("a client wrote before the zombie's lock expired at %s", zombie.ExpiresAt)
	}
	before := store.read()
	if store.write(zombie.FencingToken, 1_000_000) {
		t.Errorf("the zombie's write with token %d was accepted after token %d", zombie.FencingToken, store.highestToken())
	}
	if got := p.call(t, "DELETE", lockPath(zombie.LockID, ""), nil); got.Status != http.StatusGone {
		t.Errorf("release of the zombie's expired lock: %s, want 410", got)
	}
	wg.Wait()
	took := time.Since(began)
	if t.Failed() {
		t.FailNow()
	}

	store.mu.Lock()
	value, tokens := store.value, slices.Clone(store.tokens)
	store.mu.Unlock()
	if value != clients*cycles {
		t.Errorf("counter %d, want %d (read %d before the zombie's write)", value, clients*cycles, before)
	}
	if len(tokens) != clients*cycles {
		t.Errorf("%d accepted writes, want %d", len(tokens), clients*cycles)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("accepted write %d has token %d after %d", i, tokens[i], tokens[i-1])
		}
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Errorf("at most %d holders at once, want 1", m)
	}
	if len(acquired) != clients*cycles {
		t.Errorf("%d distinct tokens handed out, want %d", len(acquired), clients*cycles)
	}

	// The log: one acquisition per cycle plus the zombie's, alternating with
	// their ends, tokens increasing; the zombie's lock expired, the others
	// were released.
	evs := lockLog(t, p)
	if held := checkLockLog(t, evs); len(held) != 0 {
		t.Errorf("locks held at the end per the log: %v", held)
	}
	count := map[string]int{}
	for _, ev := range evs {
		count[ev.Type]++
		if ev.Type == "lock.acquired" && ev.lock.LockID != zombie.LockID && acquired[ev.lock.FencingToken] != ev.lock.LockID {
			t.Errorf("log: lock %s with token %d, which no client got", ev.lock.LockID, ev.lock.FencingToken)
		}
		if ev.Type == "lock.expired" && ev.lock.LockID != zombie.LockID {
			t.Errorf("log: lock %s (token %d) expired", ev.lock.LockID, ev.lock.FencingToken)
		}
	}
	if count["lock.acquired"] != clients*cycles+1 || count["lock.released"] != clients*cycles || count["lock.expired"] != 1 {
		t.Errorf("log counts %v, want %d acquired, %d released, 1 expired", count, clients*cycles+1, clients*cycles)
	}
	t.Logf("%d clients × %d cycles in %v (%.0f handoffs/s), %d acquires answered 409 and retried",
		clients, cycles, took.Round(time.Millisecond), float64(clients*cycles)/took.Seconds(), conflicts.Load())
	p.Stop()
}

// liveLockEvents reads a live stream in a goroutine and timestamps each
// event as it arrives (the stream is read at once, whatever the test does
// meanwhile). stop ends the reader and closes the stream.
func liveLockEvents(t testing.TB, s *sseStream) (evs <-chan lockEvent, stop func()) {
	out := make(chan lockEvent, 4096)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			m, err := s.next(50 * time.Millisecond)
			if err != nil {
				continue // no message yet
			}
			recv := time.Now()
			if m.Err != nil {
				t.Errorf("SSE: %v", m.Err)
				return
			}
			if m.Event == "" && m.Data == nil {
				continue
			}
			ev, err := sseEvent(m)
			if err != nil {
				t.Errorf("SSE: %v", err)
				return
			}
			out <- lockEvent{eventJSON: ev, recv: recv}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(quit)
			<-done
			s.close()
		})
	}
}

// nextLive takes the next event of a liveLockEvents channel.
func nextLive(t testing.TB, evs <-chan lockEvent) lockEvent {
	t.Helper()
	select {
	case ev := <-evs:
		le := toLockEvent(t, ev.eventJSON)
		le.recv = ev.recv
		return le
	case <-time.After(10 * time.Second):
		t.Fatalf("no lock event within 10 s")
		return lockEvent{}
	}
}

// TestLockExpiryTiming: locks with ttl 300 ms are gone (GET 404 and
// lock.expired on a live stream) soon after their expires_at and not
// before, and a client waiting for one gets it promptly. A long lock taken
// first makes the expiry loop sleep long: the short ones must wake it.
func TestLockExpiryTiming(t *testing.T) {
	const maxLag = 200 * time.Millisecond
	p := startServer(t, t.TempDir())
	live, stopLive := liveLockEvents(t, mustSSE(t, nil, sseURL(p.URL, []string{"locks"}, -1), ""))
	defer stopLive()

	longLock := mustAcquire(t, p, []string{"exp/long"}, "a", 60000, 0)
	// Free locks expiring at staggered times (the later taken first), and
	// one a client waits for.
	var free []lockJSON
	for i := range 5 {
		free = append(free, mustAcquire(t, p, []string{fmt.Sprintf("exp/free/%d", i)}, "a", 460-int64(i)*40, 0))
	}
	wanted := mustAcquire(t, p, []string{"exp/wanted"}, "a", 300, 0)
	waited := make(chan acquireResult, 1)
	go func() { waited <- tryAcquire(p.URL, []string{"exp/wanted"}, "b", 5000, 5000) }()
	waitWaiting(t, p, 1)

	// GET ?resource= answers 200 until expires_at and 404 soon after.
	var gone404 []time.Duration
	for _, l := range slices.Backward(free) {
		res := l.Resources[0]
		var seen time.Time
		pollUntil(2*time.Second, 2*time.Millisecond, func() bool {
			got, ok := lockOf(t, p, res)
			answered := time.Now()
			if ok && got.LockID != l.LockID {
				t.Fatalf("%s held by %+v", res, got)
			}
			if !ok && answered.Before(l.expires(t)) {
				t.Errorf("%s: GET answered 404 at %s, before its expiry %s", res, answered.Format(time.RFC3339Nano), l.ExpiresAt)
			}
			if !ok {
				seen = answered
			}
			return !ok
		})
		if seen.IsZero() {
			t.Fatalf("%s still held 2 s after its expiry %s", res, l.ExpiresAt)
		}
		gone404 = append(gone404, seen.Sub(l.expires(t)))
	}

	// The stream: lock.expired for each (the waiter's acquire may write the
	// wanted lock's), then b's lock.acquired.
	expired := map[string]lockEvent{}
	var bAcq *lockEvent
	for bAcq == nil || len(expired) < len(free)+1 {
		ev := nextLive(t, live)
		switch ev.Type {
		case "lock.expired":
			if ev.lock.LockID == longLock.LockID {
				t.Errorf("the 60 s lock expired: %+v", ev.lock)
			}
			expired[ev.lock.LockID] = ev
		case "lock.acquired":
			if ev.lock.Holder == "b" {
				if _, ok := expired[wanted.LockID]; !ok {
					t.Errorf("b's lock.acquired (seq %d) before the lock.expired of a's lock", ev.Seq)
				}
				bAcq = &ev
			}
		}
	}
	var evLags, recvLags []time.Duration
	for _, l := range append(slices.Clone(free), wanted) {
		ev := expired[l.LockID]
		if ev.lock.ExpiresAt != l.ExpiresAt {
			t.Errorf("lock.expired of %s says expires_at %s, acquired with %s", l.LockID, ev.lock.ExpiresAt, l.ExpiresAt)
		}
		lag := mustTime(t, ev.Time).Sub(l.expires(t))
		recv := ev.recv.Sub(l.expires(t))
		if lag < 0 || recv < 0 {
			t.Errorf("%s: lock.expired at %s (received %v after expires_at), before its expires_at %s", l.Resources[0], ev.Time, recv, l.ExpiresAt)
		}
		if lag > maxLag || recv > maxLag {
			t.Errorf("%s: lock.expired %v after expires_at (received after %v), want ≤ %v", l.Resources[0], lag, recv, maxLag)
		}
		evLags = append(evLags, lag)
		recvLags = append(recvLags, recv)
	}

	var b acquireResult
	select {
	case b = <-waited:
	case <-time.After(5 * time.Second):
		t.Fatalf("the waiter got no answer 5 s after the lock it waits for expired")
	}
	if b.err != nil || b.status != http.StatusCreated {
		t.Fatalf("the waiter: %s", b)
	}
	if b.lock.LockID != bAcq.lock.LockID {
		t.Errorf("the waiter got %s, the log's acquisition is %s", b.lock.LockID, bAcq.lock.LockID)
	}
	handoff := b.lock.acquired(t).Sub(wanted.expires(t))
	answered := b.at.Sub(wanted.expires(t))
	if handoff < 0 || handoff > maxLag || answered > maxLag {
		t.Errorf("the waiter acquired %v after the expiry (answered after %v), want within 0..%v", handoff, answered, maxLag)
	}
	if b.lock.FencingToken <= wanted.FencingToken {
		t.Errorf("the waiter's token %d ≤ the expired lock's %d", b.lock.FencingToken, wanted.FencingToken)
	}
	if l, ok := lockOf(t, p, "exp/wanted"); !ok || l.LockID != b.lock.LockID {
		t.Errorf("GET exp/wanted: %+v %v, want the waiter's lock", l, ok)
	}
	slices.Sort(evLags)
	slices.Sort(recvLags)
	slices.Sort(gone404)
	t.Logf("expiry lag, lock.expired time − expires_at: %v; received on SSE: %v; GET 404 seen after: %v; waiter acquired +%v, answered +%v",
		evLags, recvLags, gone404, handoff, answered)
	stopLive()
	p.Stop()
}

// TestLockWaitOrder: A holds; B, C, D wait in that order; each release
// hands the lock to the next in line. A newcomer does not jump queued
// waiters, even on a resource that is free but waited for.
func TestLockWaitOrder(t *testing.T) {
	p := startServer(t, t.TempDir())
	const res = "order/r"
	a := mustAcquire(t, p, []string{res}, "A", 30000, 0)

	names := []string{"B", "C", "D"}
	results := make([]chan acquireResult, len(names))
	for i, n := range names {
		results[i] = make(chan acquireResult, 1)
		go func() { results[i] <- tryAcquire(p.URL, []string{res}, n, 30000, 15000) }()
		waitWaiting(t, p, float64(i+1)) // parked before the next one is sent
	}

	// A newcomer without wait_ms is refused, naming the holder.
	r := p.call(t, "POST", "/v1/locks", map[string]any{"resources": []string{res}, "holder": "E", "ttl_ms": 1000})
	e := checkError(t, r, 409, "conflict", "")
	want := map[string]any{"held_by": "A", "lock_id": a.LockID, "resource": res, "expires_at": a.ExpiresAt}
	for k, v := range want {
		if e.Details[k] != v {
			t.Errorf("409 details %v, want %v", e.Details, want)
			break
		}
	}

	prev := a
	for i, n := range names {
		for j := i; j < len(names); j++ {
			select {
			case got := <-results[j]:
				t.Fatalf("%s answered %s while %s (token %d) held the lock", names[j], got, prev.Holder, prev.FencingToken)
			default:
			}
		}
		released := time.Now()
		mustRelease(t, p, prev)
		var got acquireResult
		select {
		case got = <-results[i]:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s did not get the lock within 3 s of %s's release", n, prev.Holder)
		}
		if got.err != nil || got.status != http.StatusCreated {
			t.Fatalf("%s: %s", n, got)
		}
		if got.lock.FencingToken <= prev.FencingToken {
			t.Errorf("%s's token %d ≤ %s's %d", n, got.lock.FencingToken, prev.Holder, prev.FencingToken)
		}
		if l, ok := lockOf(t, p, res); !ok || l.LockID != got.lock.LockID {
			t.Errorf("after %s's release the holder is %+v, want %s", prev.Holder, l, n)
		}
		t.Logf("%s acquired %v after %s's release was sent", n, got.at.Sub(released).Round(time.Microsecond), prev.Holder)
		waitWaiting(t, p, float64(len(names)-i-1))
		prev = got.lock
	}
	mustRelease(t, p, prev)

	// No jumping: B waits for [x, y] while A holds x; y is free, yet a
	// newcomer for y is refused (wait_ms 0) or queued behind B.
	ax := mustAcquire(t, p, []string{"order/x"}, "A", 30000, 0)
	bxy := make(chan acquireResult, 1)
	go func() { bxy <- tryAcquire(p.URL, []string{"order/x", "order/y"}, "B", 30000, 15000) }()
	waitWaiting(t, p, 1)
	r = p.call(t, "POST", "/v1/locks", map[string]any{"resources": []string{"order/y"}, "holder": "E", "ttl_ms": 1000, "wait_ms": 0})
	e = checkError(t, r, 409, "conflict", "")
	if e.Details["resource"] != "order/y" {
		t.Errorf("409 for a newcomer behind a waiter: details %v, want resource order/y", e.Details)
	}
	if _, ok := lockOf(t, p, "order/y"); ok {
		t.Errorf("order/y is held while only B waits for it")
	}
	fy := make(chan acquireResult, 1)
	go func() { fy <- tryAcquire(p.URL, []string{"order/y"}, "F", 30000, 15000) }()
	waitWaiting(t, p, 2)
	select {
	case got := <-fy:
		t.Fatalf("F jumped B (waiting for order/x and order/y): %s", got)
	default:
	}
	mustRelease(t, p, ax)
	var b acquireResult
	select {
	case b = <-bxy:
	case <-time.After(3 * time.Second):
		t.Fatalf("B did not get [x, y] within 3 s of A's release")
	}
	if b.err != nil || b.status != http.StatusCreated {
		t.Fatalf("B: %s", b)
	}
	waitWaiting(t, p, 1)
	select {
	case got := <-fy:
		t.Fatalf("F got order/y while B holds it: %s", got)
	default:
	}
	mustRelease(t, p, b.lock)
	var f acquireResult
	select {
	case f = <-fy:
	case <-time.After(3 * time.Second):
		t.Fatalf("F did not get order/y within 3 s of B's release")
	}
	if f.err != nil || f.status != http.StatusCreated || f.lock.FencingToken <= b.lock.FencingToken {
		t.Fatalf("F: %s (B's token %d)", f, b.lock.FencingToken)
	}
	mustRelease(t, p, f.lock)

	evs := lockLog(t, p)
	if held := checkLockLog(t, evs); len(held) != 0 {
		t.Errorf("locks held at the end per the log: %v", held)
	}
	var order []string
	for _, ev := range evs {
		if ev.Type == "lock.acquired" {
			order = append(order, ev.lock.Holder+":"+strings.Join(ev.lock.Resources, "+"))
		}
	}
	wantOrder := []string{"A:order/r", "B:order/r", "C:order/r", "D:order/r", "A:order/x", "B:order/x+order/y", "F:order/y"}
	if !slices.Equal(order, wantOrder) {
		t.Errorf("acquisitions in the log: %v, want %v", order, wantOrder)
	}
	p.Stop()
}

// TestLockWaitTimeout: a waiter whose wait_ms runs out gets a 409 naming
// the holder, not before wait_ms; and leaving the line wakes the waiter
// behind it, whose resource is free.
func TestLockWaitTimeout(t *testing.T) {
	p := startServer(t, t.TempDir())
	a := mustAcquire(t, p, []string{"wt/x"}, "A", 30000, 0)
	bRes := make(chan acquireResult, 1)
	sent := time.Now()
	go func() { bRes <- tryAcquire(p.URL, []string{"wt/x", "wt/y"}, "B", 30000, 400) }()
	waitWaiting(t, p, 1)
	cRes := make(chan acquireResult, 1)
	go func() { cRes <- tryAcquire(p.URL, []string{"wt/y"}, "C", 30000, 10000) }()
	waitWaiting(t, p, 2)

	var b acquireResult
	select {
	case b = <-bRes:
	case <-time.After(5 * time.Second):
		t.Fatalf("B (wait_ms 400) got no answer in 5 s")
	}
	if waited := b.at.Sub(sent); waited < 400*time.Millisecond || waited > 400*time.Millisecond+500*time.Millisecond {
		t.Errorf("B answered after %v, want just after its wait_ms 400", waited)
	}
	r := response{Status: b.status, Body: b.body, Header: http.Header{"Content-Type": {"application/json"}}}
	e := checkError(t, r, 409, "conflict", "")
	want := map[string]any{"held_by": "A", "lock_id": a.LockID, "resource": "wt/x", "expires_at": a.ExpiresAt}
	for k, v := range want {
		if e.Details[k] != v {
			t.Errorf("B's 409 details %v, want %v", e.Details, want)
			break
		}
	}
	var c acquireResult
	select {
	case c = <-cRes:
	case <-time.After(3 * time.Second):
		t.Fatalf("C (waiting for the free wt/y behind B) not answered 3 s after B left the line")
	}
	if c.err != nil || c.status != http.StatusCreated {
		t.Fatalf("C: %s", c)
	}
	if lag := c.at.Sub(b.at); lag > 200*time.Millisecond {
		t.Errorf("C got wt/y %v after B left the line, want ≤ 200 ms", lag)
	}
	t.Logf("B's wait ended after %v; C acquired %v later", b.at.Sub(sent).Round(time.Millisecond), c.at.Sub(b.at).Round(time.Microsecond))
	mustRelease(t, p, a)
	mustRelease(t, p, c.lock)
	p.Stop()
}

// TestLockWaiterDisconnect: a client that gives up while waiting (closes
// its connection) must not be handed the lock afterwards: nobody would
// ever release it, and the resource would stay held for the whole TTL.
// Once the holder releases, the resource is free for the next client.
func TestLockWaiterDisconnect(t *testing.T) {
	p := startServer(t, t.TempDir())
	a := mustAcquire(t, p, []string{"dc/r"}, "A", 30000, 0)

	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"resources": []string{"dc/r"}, "holder": "ghost", "ttl_ms": 60000, "wait_ms": 20000})
	req, err := http.NewRequestWithContext(ctx, "POST", p.URL+"/v1/locks", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	ghost := make(chan error, 1)
	go func() {
		resp, err := rtClient.Do(req) // no keep-alive: cancelling closes the connection
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		ghost <- err
	}()
	waitWaiting(t, p, 1)
	cancel()
	if err := <-ghost; !errors.Is(err, context.Canceled) {
		t.Fatalf("the ghost's request: %v, want it cancelled", err)
	}
	left := pollUntil(2*time.Second, 10*time.Millisecond, func() bool { return locksWaiting(t, p) == 0 })
	if !left {
		t.Errorf("engram_locks_waiting still 1 2 s after the waiting client closed its connection")
	}

	mustRelease(t, p, a)
	// Let a ghost acquisition, if any, happen.
	time.Sleep(100 * time.Millisecond)
	if l, ok := lockOf(t, p, "dc/r"); ok {
		t.Errorf("after A's release dc/r is held by %q (lock %s, token %d, until %s): "+
			"the lock went to a client that had closed its connection, and stays held for its TTL",
			l.Holder, l.LockID, l.FencingToken, l.ExpiresAt)
	}
	next := tryAcquire(p.URL, []string{"dc/r"}, "next", 1000, 0)
	if next.status != http.StatusCreated {
		t.Errorf("a new client after A's release: %s, want 201", next)
	}
	p.Stop()
}

// TestLockDeadlockFreedom: clients acquiring [x, y] and [y, x] and every
// order of [x, y, z] (and some of [z] alone), all with waits, all finish
// their cycles by a deadline; each lock holds its whole set, and no
// resource ever has two holders.
func TestLockDeadlockFreedom(t *testing.T) {
	const cycles = 6
	p := startServer(t, t.TempDir())
	x, y, z := "dl/x", "dl/y", "dl/z"
	sets := [][]string{}
	for range 6 {
		sets = append(sets, []string{x, y}, []string{y, x})
	}
	for _, perm := range [][]string{{x, y, z}, {x, z, y}, {y, x, z}, {y, z, x}, {z, x, y}, {z, y, x}} {
		sets = append(sets, perm, perm)
	}
	sets = append(sets, []string{z}, []string{z}, []string{z, x}, []string{y, z})

	holders := map[string]*atomic.Int32{x: {}, y: {}, z: {}}
	var wg sync.WaitGroup
	var doneCycles, partial atomic.Int64
	start := make(chan struct{})
	deadline := 20 * time.Second
	for i, set := range sets {
		wg.Go(func() {
			holder := fmt.Sprintf("dl-%02d-%s", i, strings.Join(set, ","))
			<-start
			for k := range cycles {
				r := tryAcquire(p.URL, set, holder, 20000, 15000)
				if r.err != nil || r.status != http.StatusCreated {
					t.Errorf("%s cycle %d: %s", holder, k, r)
					return
				}
				for _, res := range set {
					if n := holders[res].Add(1); n != 1 {
						t.Errorf("%s: %d holders of %s at once", holder, n, res)
					}
				}
				// The server sees the whole set as ours.
				for _, res := range set {
					status, b, err := doAt(p.URL, "GET", "/v1/locks?resource="+url.QueryEscape(res), nil)
					l, derr := decodeLock(b)
					if err != nil || status != 200 || derr != nil || l.LockID != r.lock.LockID {
						partial.Add(1)
						t.Errorf("%s holds %v (lock %s), GET %s: %d %s %v", holder, set, r.lock.LockID, res, status, clip(b), err)
					}
				}
				if rand.IntN(3) == 0 {
					runtime.Gosched()
				}
				for _, res := range set {
					holders[res].Add(-1)
				}
				if err := releaseAt(p.URL, r.lock); err != nil {
					t.Errorf("%s: %v", holder, err)
					return
				}
				doneCycles.Add(1)
			}
		})
	}
	began := time.Now()
	close(start)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(deadline):
		body := p.must(t, 200, "GET", "/v1/locks?prefix=dl/", nil)
		t.Errorf("after %v only %d of %d cycles done; %v acquires waiting; locks %s",
			deadline, doneCycles.Load(), len(sets)*cycles, locksWaiting(t, p), body)
		p.Kill9() // ends the clients' requests
		<-finished
		t.FailNow()
	}
	took := time.Since(began)
	if t.Failed() {
		t.FailNow()
	}

	evs := lockLog(t, p)
	if held := checkLockLog(t, evs); len(held) != 0 {
		t.Errorf("locks held at the end per the log: %v", held)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == "lock.acquired" {
			n++
		}
		if ev.Type == "lock.expired" {
			t.Errorf("lock %s expired: %+v", ev.lock.LockID, ev.lock)
		}
	}
	if n != len(sets)*cycles {
		t.Errorf("%d acquisitions in the log, want %d", n, len(sets)*cycles)
	}
	t.Logf("%d clients (%d crossing sets) × %d cycles in %v", len(sets), len(sets), cycles, took.Round(time.Millisecond))
	p.Stop()
}

// TestLockFencingAcrossKill: locks and the fencing counter survive a kill -9
// taken while clients churn: a lock that still holds keeps its id, token
// and absolute expiry; one whose expiry passed while the server was down is
// released at startup (lock.expired) and its resource is free; one that
// expires after the restart does so on time; and every token handed out
// after the restart is above every token before the crash, including those
// whose answer the crash lost.
func TestLockFencingAcrossKill(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)

	// Advance the counter past the locks that will still be held: the
	// highest token before the crash belongs to released locks.
	for i := range 10 {
		mustRelease(t, p, mustAcquire(t, p, []string{"fk/warm"}, fmt.Sprintf("warm-%d", i), 1000, 0))
	}
	long := mustAcquire(t, p, []string{"fk/long", "fk/long2"}, "long", 60000, 0)
	short := mustAcquire(t, p, []string{"fk/short"}, "short", 700, 0)
	mid := mustAcquire(t, p, []string{"fk/mid"}, "mid", 3000, 0)

	// Churn on other resources while the server dies.
	var (
		down     atomic.Bool
		maxToken atomic.Uint64
		wg       sync.WaitGroup
		churned  atomic.Int64
	)
	noteToken := func(tok uint64) {
		for m := maxToken.Load(); tok > m && !maxToken.CompareAndSwap(m, tok); m = maxToken.Load() {
		}
	}
	for _, l := range []lockJSON{long, short, mid} {
		noteToken(l.FencingToken)
	}
	for i := range 8 {
		wg.Go(func() {
			res := fmt.Sprintf("fk/hot/%d", i%2)
			for !down.Load() {
				r := tryAcquire(p.URL, []string{res}, fmt.Sprintf("churn-%d", i), 1000, 2000)
				if r.status == http.StatusCreated {
					noteToken(r.lock.FencingToken)
					churned.Add(1)
					if err := releaseAt(p.URL, r.lock); err != nil && !down.Load() {
						t.Errorf("churn-%d: %v", i, err)
					}
					continue
				}
				if !down.Load() && r.err == nil && r.status != http.StatusConflict {
					t.Errorf("churn-%d: %s", i, r)
				}
			}
		})
	}
	pollUntil(5*time.Second, time.Millisecond, func() bool { return churned.Load() >= 40 })
	down.Store(true)
	p.Kill9()
	wg.Wait()
	killedAt := time.Now()
	if killedAt.After(short.expires(t)) || churned.Load() < 40 {
		t.Fatalf("too slow for this test: %d churn cycles, killed at %s, the short lock expired at %s", churned.Load(), killedAt.Format(time.RFC3339Nano), short.ExpiresAt)
	}
	before := maxToken.Load()

	// Stay down until the short lock's expiry has passed.
	time.Sleep(time.Until(short.expires(t)) + 100*time.Millisecond)
	restart := time.Now()
	p = startServer(t, dir)
	ready := time.Now()
	if ready.After(mid.expires(t).Add(-time.Second)) {
		t.Fatalf("the restart took %v: too long for this test", ready.Sub(restart))
	}
	s := mustSSE(t, nil, sseURL(p.URL, []string{"locks"}, 0), "")

	// Held locks come back as they were.
	for _, l := range []lockJSON{long, mid} {
		for _, res := range l.Resources {
			got, ok := lockOf(t, p, res)
			if !ok || got.LockID != l.LockID || got.FencingToken != l.FencingToken || got.ExpiresAt != l.ExpiresAt ||
				got.AcquiredAt != l.AcquiredAt || got.Holder != l.Holder || !slices.Equal(got.Resources, l.Resources) {
				t.Errorf("after the restart GET %s: %+v %v, want %+v", res, got, ok, l)
			}
		}
	}
	if got, ok := lockOf(t, p, "fk/short"); ok {
		t.Errorf("after the restart fk/short is held: %+v (expired at %s)", got, short.ExpiresAt)
	}

	// The short lock's lock.expired is written at startup, unasked.
	var preCrash []lockEvent
	var shortExpired *lockEvent
	for shortExpired == nil {
		ev := nextLockEvent(t, s)
		if ev.Type == "lock.expired" && ev.lock.LockID == short.LockID {
			shortExpired = &ev
			break
		}
		if ev.Type == "lock.acquired" {
			preCrash = append(preCrash, ev)
		}
		if ev.Type == "lock.expired" && ev.lock.LockID != short.LockID && !strings.HasPrefix(ev.lock.Resources[0], "fk/hot/") {
			t.Errorf("lock.expired of %+v after the restart", ev.lock)
		}
	}
	if at := mustTime(t, shortExpired.Time); at.Before(restart) || at.After(ready.Add(time.Second)) {
		t.Errorf("lock.expired of the short lock at %s; the restart began at %s and was ready at %s",
			shortExpired.Time, restart.Format(time.RFC3339Nano), ready.Format(time.RFC3339Nano))
	}
	for _, ev := range preCrash {
		if ev.lock.FencingToken > before {
			before = ev.lock.FencingToken // an acquisition whose answer the crash lost
		}
	}
	t.Logf("max token before the crash %d (%d seen by clients); short lock's lock.expired %v after the restart began (ready after %v)",
		before, maxToken.Load(), mustTime(t, shortExpired.Time).Sub(restart).Round(time.Millisecond), ready.Sub(restart).Round(time.Millisecond))
	s.close()

	// Its id is gone, its resource is free, and the new token is above
	// every token before the crash.
	checkError(t, p.call(t, "DELETE", lockPath(short.LockID, ""), nil), 410, "gone", "")
	checkError(t, p.call(t, "POST", lockPath(short.LockID, "/renew"), map[string]any{"ttl_ms": 1000}), 410, "gone", "")
	again := mustAcquire(t, p, []string{"fk/short"}, "again", 10000, 0)
	if again.FencingToken <= before {
		t.Errorf("first token after the restart %d, want > %d (the highest before the crash)", again.FencingToken, before)
	}
	// The surviving lock still excludes, renews, and keeps its token.
	r := p.call(t, "POST", "/v1/locks", map[string]any{"resources": []string{"fk/long2"}, "holder": "x", "ttl_ms": 1000})
	if e := checkError(t, r, 409, "conflict", ""); e.Details["held_by"] != "long" || e.Details["lock_id"] != long.LockID {
		t.Errorf("409 details %v, want held_by long, lock_id %s", e.Details, long.LockID)
	}
	var renewed lockJSON
	if err := json.Unmarshal(p.must(t, 200, "POST", lockPath(long.LockID, "/renew"), map[string]any{"ttl_ms": 90000}), &renewed); err != nil {
		t.Fatal(err)
	}
	if renewed.LockID != long.LockID || renewed.FencingToken != long.FencingToken || !renewed.expires(t).After(long.expires(t)) {
		t.Errorf("renewed after the restart: %+v, was %+v", renewed, long)
	}

	// The mid lock expires after the restart, on time; a waiter takes it.
	w := tryAcquire(p.URL, []string{"fk/mid"}, "mid-next", 10000, 10000)
	if w.err != nil || w.status != http.StatusCreated {
		t.Fatalf("waiting for fk/mid: %s", w)
	}
	if lag := w.lock.acquired(t).Sub(mid.expires(t)); lag < 0 || lag > 200*time.Millisecond {
		t.Errorf("fk/mid acquired %v after the old lock's expiry %s, want within 0..200 ms", lag, mid.ExpiresAt)
	}
	if w.lock.FencingToken <= again.FencingToken {
		t.Errorf("token %d after %d", w.lock.FencingToken, again.FencingToken)
	}
	mustRelease(t, p, w.lock)
	mustRelease(t, p, again)
	mustRelease(t, p, renewed)

	// The whole log: tokens increase across the crash, nothing was held
	// twice, the short lock expired once, after the restart.
	evs := lockLog(t, p)
	held := checkLockLog(t, evs)
	for id, l := range held {
		if !strings.HasPrefix(l.Resources[0], "fk/hot/") {
			t.Errorf("lock %s still held per the log: %+v", id, l)
		}
	}
	n := 0
	for _, ev := range evs {
		if ev.lock.LockID == short.LockID && ev.Type != "lock.acquired" {
			n++
			if ev.Type != "lock.expired" || ev.Seq != shortExpired.Seq {
				t.Errorf("the short lock ended as %s (seq %d); its lock.expired is seq %d", ev.Type, ev.Seq, shortExpired.Seq)
			}
		}
	}
	if n != 1 {
		t.Errorf("the short lock ended %d times in the log", n)
	}
	p.Stop()
}

// TestLockGoneAndBadInput: renew and release answer 410 once a lock expired
// or was released; bad input is 400 naming the field.
func TestLockGoneAndBadInput(t *testing.T) {
	p := startServer(t, t.TempDir())

	// Expired: 410 for renew and release, and the resource is free.
	l := mustAcquire(t, p, []string{"g/short"}, "h", 100, 0)
	if !pollUntil(2*time.Second, 5*time.Millisecond, func() bool { _, ok := lockOf(t, p, "g/short"); return !ok }) {
		t.Fatalf("g/short still held 2 s after its expiry %s", l.ExpiresAt)
	}
	checkError(t, p.call(t, "POST", lockPath(l.LockID, "/renew"), map[string]any{"ttl_ms": 1000}), 410, "gone", "")
	checkError(t, p.call(t, "DELETE", lockPath(l.LockID, ""), nil), 410, "gone", "")

	// Expired but not yet swept by the loop (a tight check right at the
	// expiry): renew must not bring it back.
	l = mustAcquire(t, p, []string{"g/edge"}, "h", 100, 0)
	time.Sleep(time.Until(l.expires(t))) // to the expiry, deliberately
	if r := p.call(t, "POST", lockPath(l.LockID, "/renew"), map[string]any{"ttl_ms": 5000}); r.Status != 410 {
		t.Errorf("renew at the expiry: %s, want 410", r)
	}
	if got, ok := lockOf(t, p, "g/edge"); ok {
		t.Errorf("g/edge held after its expiry: %+v", got)
	}

	// Released: 410 on the second release and on renew.
	l = mustAcquire(t, p, []string{"g/rel"}, "h", 5000, 0)
	var renewed lockJSON
	if err := json.Unmarshal(p.must(t, 200, "POST", lockPath(l.LockID, "/renew"), map[string]any{"ttl_ms": 20000}), &renewed); err != nil {
		t.Fatal(err)
	}
	if renewed.LockID != l.LockID || renewed.FencingToken != l.FencingToken || renewed.AcquiredAt != l.AcquiredAt ||
		renewed.expires(t).Sub(l.expires(t)) < 14*time.Second {
		t.Errorf("renewed %+v, was %+v", renewed, l)
	}
	mustRelease(t, p, l)
	checkError(t, p.call(t, "DELETE", lockPath(l.LockID, ""), nil), 410, "gone", "")
	checkError(t, p.call(t, "POST", lockPath(l.LockID, "/renew"), map[string]any{"ttl_ms": 1000}), 410, "gone", "")
	if r := p.call(t, "DELETE", lockPath("01ARZ3NDEKTSV4RRFFQ69G5FAV", ""), nil); r.Status != 410 && r.Status != 404 {
		t.Errorf("release of a lock that never existed: %s, want 404 or 410", r)
	}

	// Listing by prefix, paged; a lock on two matching resources once.
	a := mustAcquire(t, p, []string{"g/list/a", "g/list/b"}, "h", 30000, 0)
	c := mustAcquire(t, p, []string{"g/list/c"}, "h", 30000, 0)
	mustAcquire(t, p, []string{"g/other"}, "h", 30000, 0)
	var page struct {
		Locks      []json.RawMessage `json:"locks"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := json.Unmarshal(p.must(t, 200, "GET", "/v1/locks?prefix=g/list/", nil), &page); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, raw := range page.Locks {
		l, err := decodeLock(raw)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.LockID)
	}
	if !slices.Equal(ids, []string{a.LockID, c.LockID}) || page.NextCursor != nil {
		t.Errorf("prefix g/list/: %v next %v, want [%s %s]", ids, page.NextCursor, a.LockID, c.LockID)
	}
	ids = nil
	cursor := ""
	for range 5 {
		q := "/v1/locks?prefix=g/list/&limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := json.Unmarshal(p.must(t, 200, "GET", q, nil), &page); err != nil {
			t.Fatal(err)
		}
		for _, raw := range page.Locks {
			l, _ := decodeLock(raw)
			ids = append(ids, l.LockID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if !slices.Contains(ids, a.LockID) || !slices.Contains(ids, c.LockID) || slices.Contains(ids, "") {
		t.Errorf("paged prefix g/list/: %v, want %s and %s", ids, a.LockID, c.LockID)
	}

	long := strings.Repeat("r", 513)
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("g/many/%d", i)
	}
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"no resources", map[string]any{"holder": "h", "ttl_ms": 1000}, "resources"},
		{"empty resources", map[string]any{"resources": []string{}, "holder": "h", "ttl_ms": 1000}, "resources"},
		{"65 resources", map[string]any{"resources": many, "holder": "h", "ttl_ms": 1000}, "resources"},
		{"empty resource", map[string]any{"resources": []string{"g/a", ""}, "holder": "h", "ttl_ms": 1000}, "resources[1]"},
		{"long resource", map[string]any{"resources": []string{long}, "holder": "h", "ttl_ms": 1000}, "resources[0]"},
		{"control char", map[string]any{"resources": []string{"g/\x01"}, "holder": "h", "ttl_ms": 1000}, "resources[0]"},
		{"duplicate", map[string]any{"resources": []string{"g/a", "g/b", "g/a"}, "holder": "h", "ttl_ms": 1000}, "resources[2]"},
		{"no holder", map[string]any{"resources": []string{"g/a"}, "ttl_ms": 1000}, "holder"},
		{"long holder", map[string]any{"resources": []string{"g/a"}, "holder": strings.Repeat("h", 257), "ttl_ms": 1000}, "holder"},
		{"no ttl", map[string]any{"resources": []string{"g/a"}, "holder": "h"}, "ttl_ms"},
		{"ttl 99", map[string]any{"resources": []string{"g/a"}, "holder": "h", "ttl_ms": 99}, "ttl_ms"},
		{"ttl above a day", map[string]any{"resources": []string{"g/a"}, "holder": "h", "ttl_ms": 86400001}, "ttl_ms"},
		{"ttl string", map[string]any{"resources": []string{"g/a"}, "holder": "h", "ttl_ms": "1000"}, "ttl_ms"},
		{"negative wait", map[string]any{"resources": []string{"g/a"}, "holder": "h", "ttl_ms": 1000, "wait_ms": -1}, "wait_ms"},
		{"resources not a list", map[string]any{"resources": "g/a", "holder": "h", "ttl_ms": 1000}, "resources"},
		{"not JSON", "{", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, p.call(t, "POST", "/v1/locks", tc.body), 400, "invalid_argument", tc.field)
		})
	}
	checkError(t, p.call(t, "POST", lockPath(a.LockID, "/renew"), map[string]any{}), 400, "invalid_argument", "ttl_ms")
	checkError(t, p.call(t, "POST", lockPath(a.LockID, "/renew"), map[string]any{"ttl_ms": 50}), 400, "invalid_argument", "ttl_ms")
	checkError(t, p.call(t, "POST", lockPath("not-a-ulid", "/renew"), map[string]any{"ttl_ms": 1000}), 400, "invalid_argument", "lock_id")
	checkError(t, p.call(t, "DELETE", lockPath("not-a-ulid", ""), nil), 400, "invalid_argument", "lock_id")
	checkError(t, p.call(t, "GET", "/v1/locks?resource=g/a&prefix=g/", nil), 400, "invalid_argument", "")
	checkError(t, p.call(t, "GET", "/v1/locks?resource=", nil), 400, "invalid_argument", "resource")
	checkError(t, p.call(t, "GET", "/v1/locks?prefix=g/&limit=0", nil), 400, "invalid_argument", "limit")
	checkError(t, p.call(t, "GET", "/v1/locks?prefix=g/&cursor=zzz", nil), 400, "invalid_argument", "cursor")
	// A rejected acquire took nothing: g/a is free.
	if got, ok := lockOf(t, p, "g/a"); ok {
		t.Errorf("g/a held after rejected acquires: %+v", got)
	}
	mustRelease(t, p, a)
	mustRelease(t, p, c)

	evs := lockLog(t, p)
	checkLockLog(t, evs)
	types := map[string]int{}
	for _, ev := range evs {
		types[ev.Type]++
	}
	if types["lock.renewed"] != 1 || types["lock.expired"] != 2 || types["lock.acquired"] != 6 || types["lock.released"] != 3 {
		t.Errorf("lock events in the log: %v, want 6 acquired, 1 renewed, 3 released, 2 expired", types)
	}
	p.Stop()
}
