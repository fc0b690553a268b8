package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// resumer is a subscriber that, whenever its connection ends, connects
// again and resumes after the last seq it received: after_seq on /v1/ws,
// Last-Event-ID on /v1/events. It ends once it has received its target seq.
type resumer struct {
	name   string
	topics []string // /v1/ws: exactly one
	sse    bool
	url    func() string // the server's base URL, read at each connect
	// cuts are planned abrupt disconnects: after that many events.
	cuts []int
	// drops allows connections to end and dials to fail (the server is
	// killed); otherwise either is an error.
	drops bool

	got        []eventJSON
	last       uint64
	cut        int // planned disconnects done
	reconnects int // connection attempts after the first
	lagged     int

	target    atomic.Uint64 // 0 until known
	targetSet chan struct{}
	progress  atomic.Uint64 // last, for other goroutines
}

func newResumer(name string, sse bool, url func() string, topics ...string) *resumer {
	return &resumer{name: name, sse: sse, url: url, topics: topics, targetSet: make(chan struct{})}
}

// setTarget tells the resumer the last seq it must receive.
func (r *resumer) setTarget(seq uint64) {
	r.target.Store(seq)
	close(r.targetSet)
}

func (r *resumer) done() bool {
	t := r.target.Load()
	return t != 0 && r.last >= t
}

var (
	errReconnect     = errors.New("reconnect")
	errAfterDeadline = errors.New("deadline passed")
)

// run receives until the target, reconnecting as needed, or until ctx ends.
func (r *resumer) run(ctx context.Context) error {
	for first := true; !r.done(); first = false {
		if !first {
			r.reconnects++
		}
		var err error
		if r.sse {
			err = r.sseSession(ctx, first)
		} else {
			err = r.wsSession(ctx)
		}
		if errors.Is(err, errReconnect) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: after %d events (last seq %d, target %d, %d reconnects): %w",
				r.name, len(r.got), r.last, r.target.Load(), r.reconnects, err)
		}
	}
	return nil
}

// dropped is what a connection that ended or failed means.
func (r *resumer) dropped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errAfterDeadline
	}
	if !r.drops {
		return fmt.Errorf("connection failed: %w", err)
	}
	// The server is down or restarting: try again shortly.
	select {
	case <-time.After(20 * time.Millisecond):
	case <-ctx.Done():
		return errAfterDeadline
	}
	return errReconnect
}

// take records an event; it reports a planned disconnect.
func (r *resumer) take(ev eventJSON) (bool, error) {
	if !matchesAny(r.topics, ev.Topic) {
		return false, fmt.Errorf("event seq %d of topic %q is not of %v", ev.Seq, ev.Topic, r.topics)
	}
	if ev.Seq <= r.last {
		return false, fmt.Errorf("event seq %d after seq %d (repeated or out of order)", ev.Seq, r.last)
	}
	r.got = append(r.got, ev)
	r.last = ev.Seq
	r.progress.Store(ev.Seq)
	if r.cut < len(r.cuts) && len(r.got) >= r.cuts[r.cut] {
		r.cut++
		return true, nil
	}
	return false, nil
}

func (r *resumer) wsSession(ctx context.Context) error {
	w, status, body, err := dialWS(ctx, r.url(), nil)
	if err != nil {
		return r.dropped(ctx, fmt.Errorf("dial: %v (%d %s)", err, status, body))
	}
	defer w.closeNow()
	if err := w.send(subscribeFrame("r", r.topics[0], int64(r.last))); err != nil {
		return r.dropped(ctx, err)
	}
	targetSet := r.targetSet
	subscribed := false
	for !r.done() {
		var f wsFrame
		select {
		case f = <-w.frames:
		case <-targetSet:
			targetSet = nil
			continue
		case <-ctx.Done():
			return errAfterDeadline
		}
		switch {
		case f.Err != nil:
			return r.dropped(ctx, f.Err)
		case !subscribed:
			if f.Op != "subscribed" || f.ID != "r" || f.HeadSeq == nil || *f.HeadSeq < r.last {
				return fmt.Errorf("subscribe after_seq %d: got %s, want subscribed with head_seq >= %d", r.last, f, r.last)
			}
			subscribed = true
		case f.Op == "event" && f.ID == "r":
			ev, err := decodeEvent(f.Event)
			if err != nil {
				return err
			}
			cut, err := r.take(ev)
			if err != nil || cut {
				return orErr(err, errReconnect) // closeNow: abrupt
			}
		case f.Op == "error" && f.ID == "r" && f.Code == "lagged":
			if f.LastSeq == nil || *f.LastSeq != r.last {
				return fmt.Errorf("lagged frame %s, want last_seq %d", f, r.last)
			}
			r.lagged++
			return errReconnect
		default:
			return fmt.Errorf("unexpected frame %s", f)
		}
	}
	w.closeNormal()
	return nil
}

func (r *resumer) sseSession(ctx context.Context, first bool) error {
	u, lastID := sseURL(r.url(), r.topics, 0), ""
	if !first && r.last > 0 {
		u, lastID = sseURL(r.url(), r.topics, -1), strconv.FormatUint(r.last, 10)
	}
	s, resp, err := openSSE(nil, u, lastID)
	if err != nil || s == nil {
		return r.dropped(ctx, fmt.Errorf("GET %s: %v %s", u, err, resp))
	}
	defer s.close()
	targetSet := r.targetSet
	for !r.done() {
		var m sseMsg
		select {
		case m = <-s.msgs:
		case <-targetSet:
			targetSet = nil
			continue
		case <-ctx.Done():
			return errAfterDeadline
		}
		switch {
		case m.Err != nil:
			return r.dropped(ctx, m.Err)
		case m.Event == "error":
			var e struct {
				Code    string  `json:"code"`
				LastSeq *uint64 `json:"last_seq"`
			}
			if json.Unmarshal(m.Data, &e) != nil || e.Code != "lagged" || e.LastSeq == nil || *e.LastSeq != r.last {
				return fmt.Errorf("SSE error %s, want lagged with last_seq %d", m, r.last)
			}
			r.lagged++
			return errReconnect
		case m.Event == "" && m.Data == nil:
			// a comment (": ping")
		default:
			ev, err := sseEvent(m)
			if err != nil {
				return err
			}
			cut, err := r.take(ev)
			if err != nil || cut {
				return orErr(err, errReconnect)
			}
		}
	}
	return nil
}

func orErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// runResumers runs rs in goroutines and returns a wait function that
// fails the test on any error.
func runResumers(t *testing.T, ctx context.Context, rs ...*resumer) func() {
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { errs[i] = r.run(ctx) })
	}
	return func() {
		t.Helper()
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
}

// cutPoints are n distinct event counts in [1, total), sorted.
func cutPoints(rng *rand.Rand, n, total int) []int {
	set := map[int]bool{}
	for len(set) < min(n, total-1) {
		set[1+rng.IntN(total-1)] = true
	}
	out := make([]int, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSubscribeResumeUnderDisconnects: a writer commits 10,000 units in
// batches of varying size over four contexts while subscribers drop their
// connection at random moments (10 to 20 times each) and resume from the
// last seq they got. Each ends with exactly its topics' events of the log,
// each once, in order.
func TestSubscribeResumeUnderDisconnects(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	p := startServer(t, t.TempDir())
	contexts := []string{"c0", "c1", "c2", "c3"}
	created := seedContexts(t, p, contexts...) // 8 events: 2 per context

	// The plan: 10,000 units in all (the seeds included).
	var batches [][]string
	count := map[string]int{}
	for _, c := range contexts {
		count[c] = 2
	}
	for left := 10000 - len(contexts); left > 0; {
		n := min(left, 1+rng.IntN(250))
		b := make([]string, n)
		for i := range b {
			b[i] = contexts[rng.IntN(len(contexts))]
			count[b[i]]++
		}
		batches = append(batches, b)
		left -= n
	}
	total := 2*len(contexts) + 10000 - len(contexts)

	url := func() string { return p.URL }
	exact := newResumer("ws contexts/c0", false, url, "contexts/c0")
	prefix := newResumer("ws contexts/*", false, url, "contexts/*")
	sse := newResumer("sse contexts/c1+c2", true, url, "contexts/c1", "contexts/c2")
	exact.cuts = cutPoints(rng, 10+rng.IntN(11), count["c0"])
	prefix.cuts = cutPoints(rng, 10+rng.IntN(11), total)
	sse.cuts = cutPoints(rng, 10+rng.IntN(11), count["c1"]+count["c2"])

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	wait := runResumers(t, ctx, exact, prefix, sse)

	// The writer paces itself so that disconnects fall both on replays and
	// on live delivery.
	lastOf := map[string]uint64{}
	tick := time.NewTicker(15 * time.Millisecond)
	for i, b := range batches {
		us, err := postUnits(p, b, json.RawMessage(fmt.Sprintf(`{"batch":%d}`, i)))
		if err != nil {
			cancel()
			wait()
			t.Fatalf("batch %d: %v", i, err)
		}
		for _, u := range us {
			lastOf[u.Context] = u.Seq
		}
		<-tick.C
	}
	tick.Stop()
	wrote := time.Since(start)
	head := p.headSeq(t)
	if head != uint64(total) {
		t.Errorf("head seq %d, want %d", head, total)
	}
	exact.setTarget(lastOf["c0"])
	prefix.setTarget(head)
	sse.setTarget(max(lastOf["c1"], lastOf["c2"]))
	wait()
	t.Logf("%d batches written in %v; subscribers done after %v", len(batches), wrote.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	log := logOracle(t, p, created)
	for _, r := range []*resumer{exact, prefix, sse} {
		t.Logf("%s: %d events, %d planned disconnects, %d reconnects, %d lagged", r.name, len(r.got), len(r.cuts), r.reconnects, r.lagged)
		if r.cut != len(r.cuts) || len(r.cuts) < 10 {
			t.Errorf("%s: %d of %d planned disconnects done", r.name, r.cut, len(r.cuts))
		}
		checkReceived(t, r.name, r.got, oracleSeqs(log, r.topics, 0), log)
	}
	if uint64(len(prefix.got)) != head {
		t.Errorf("prefix subscriber got %d events, want every seq 1..%d", len(prefix.got), head)
	}
	stopQuiet(t, p)
}

// TestSubscribersSurviveKill9: subscribers are connected and a writer runs
// when the server is killed with SIGKILL; after a restart on the same data
// dir (on a new port) they resume from their last seq and end with exactly
// the log's events for their topics: every acknowledged write is there, no
// seq is skipped or repeated, and nothing they got before the kill changed.
func TestSubscribersSurviveKill9(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	dir := t.TempDir()
	p := startServer(t, dir)
	contexts := []string{"c0", "c1", "c2"}
	created := seedContexts(t, p, contexts...)

	var cur atomic.Pointer[string]
	cur.Store(&p.URL)
	url := func() string { return *cur.Load() }
	exact := newResumer("ws contexts/c0", false, url, "contexts/c0")
	prefix := newResumer("ws contexts/*", false, url, "contexts/*")
	sse := newResumer("sse contexts/c1", true, url, "contexts/c1")
	rs := []*resumer{exact, prefix, sse}
	for _, r := range rs {
		r.drops = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wait := runResumers(t, ctx, rs...)

	var (
		acked   []ackedUnit
		nacked  atomic.Int64
		werr    error
		writerW sync.WaitGroup
	)
	writerW.Go(func() {
		wrng := rand.New(rand.NewPCG(seed, 3))
		for {
			b := make([]string, 1+wrng.IntN(40))
			for i := range b {
				b[i] = contexts[wrng.IntN(len(contexts))]
			}
			us, err := postUnits(p, b, json.RawMessage(`{"before":"kill"}`))
			if err != nil {
				werr = err
				return
			}
			acked = append(acked, us...)
			nacked.Add(int64(len(us)))
		}
	})
	if !pollUntil(30*time.Second, 5*time.Millisecond, func() bool {
		return nacked.Load() >= 1500 && prefix.progress.Load() >= 500 && exact.progress.Load() > 0 && sse.progress.Load() > 0
	}) {
		cancel()
		t.Fatalf("no progress: %d units acknowledged; subscribers at %d, %d, %d", nacked.Load(),
			exact.progress.Load(), prefix.progress.Load(), sse.progress.Load())
	}
	p.Kill9()
	writerW.Wait()
	t.Logf("killed after %d acknowledged units; writer: %v; subscribers at %d, %d, %d", len(acked), werr,
		exact.progress.Load(), prefix.progress.Load(), sse.progress.Load())

	p2 := startServer(t, dir)
	cur.Store(&p2.URL)
	for i := range 20 {
		b := make([]string, 1+rng.IntN(40))
		for j := range b {
			b[j] = contexts[rng.IntN(len(contexts))]
		}
		mustPostUnits(t, p2, b, json.RawMessage(fmt.Sprintf(`{"after":%d}`, i)))
	}
	log := logOracle(t, p2, created)
	for _, r := range rs {
		want := oracleSeqs(log, r.topics, 0)
		r.setTarget(want[len(want)-1])
	}
	wait()

	for _, u := range acked {
		if e := log[u.Seq]; e.ID != u.ID {
			t.Errorf("acknowledged unit %s (seq %d) is not in the log after the restart (the log has %+v)", u.ID, u.Seq, e)
		}
	}
	for _, r := range rs {
		t.Logf("%s: %d events, %d reconnects, %d lagged", r.name, len(r.got), r.reconnects, r.lagged)
		if r.reconnects < 1 {
			t.Errorf("%s: never reconnected", r.name)
		}
		checkReceived(t, r.name, r.got, oracleSeqs(log, r.topics, 0), log)
	}
	stopQuiet(t, p2)
}
