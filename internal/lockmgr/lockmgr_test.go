package lockmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"engram/internal/engine"
	"engram/internal/storage"
	"engram/internal/wal"
)

func TestAcquireRenewReleaseGet(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()

	l := e.acquire(t, "agent-1", 30000, "a/b", "c")
	checkLockShape(t, l, "agent-1", 30*time.Second, "a/b", "c")
	if l.FencingToken != 1 {
		t.Errorf("first fencing token %d, want 1", l.FencingToken)
	}
	for _, r := range []string{"a/b", "c"} {
		got, err := e.m.Get(r)
		if err != nil {
			t.Fatalf("Get(%q): %v", r, err)
		}
		if fmt.Sprint(*got) != fmt.Sprint(*l) {
			t.Errorf("Get(%q) = %+v, want %+v", r, got, l)
		}
	}
	_, err := e.m.Get("a")
	wantErr(t, err, engine.ErrNotFound, `"a"`)
	_, err = e.m.Get("")
	wantErr(t, err, engine.ErrInvalid, "resource")

	rn, err := e.m.Renew(ctx, l.LockID, ms(60000))
	if err != nil {
		t.Fatal(err)
	}
	if rn.LockID != l.LockID || rn.FencingToken != l.FencingToken || rn.AcquiredAt != l.AcquiredAt {
		t.Errorf("renewed %+v changed identity of %+v", rn, l)
	}
	if !parseTime(t, rn.ExpiresAt).After(parseTime(t, l.ExpiresAt)) {
		t.Errorf("renew moved expires_at from %s to %s", l.ExpiresAt, rn.ExpiresAt)
	}
	if got, _ := e.m.Get("c"); got == nil || got.ExpiresAt != rn.ExpiresAt {
		t.Errorf("Get after renew = %+v, want expires_at %s", got, rn.ExpiresAt)
	}
	if n := e.expiryEntries(t); n != 1 {
		t.Errorf("%d expiry entries after a renew, want 1 (the old one is deleted)", n)
	}

	if err := e.m.Release(ctx, l.LockID); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a/b", "c"} {
		_, err := e.m.Get(r)
		wantErr(t, err, engine.ErrNotFound)
	}
	if n := e.expiryEntries(t); n != 0 {
		t.Errorf("%d expiry entries after release, want 0", n)
	}
	wantErr(t, e.m.Release(ctx, l.LockID), engine.ErrGone, l.LockID)
	_, err = e.m.Renew(ctx, l.LockID, ms(1000))
	wantErr(t, err, engine.ErrGone, l.LockID)

	evs := e.ev.all(t)
	wantEvents(t, evs, "lock.acquired "+l.LockID, "lock.renewed "+l.LockID, "lock.released "+l.LockID)
	if fmt.Sprint(evs[0].Lock) != fmt.Sprint(*l) || fmt.Sprint(evs[1].Lock) != fmt.Sprint(*rn) {
		t.Errorf("event data %+v / %+v, want %+v / %+v", evs[0].Lock, evs[1].Lock, *l, *rn)
	}
	// A released resource is free at once, for anyone.
	l2 := e.acquire(t, "agent-2", 1000, "c")
	if l2.FencingToken != 2 {
		t.Errorf("second fencing token %d, want 2", l2.FencingToken)
	}
}

func TestRenewReleaseValidation(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	l := e.acquire(t, "h", 1000, "r")
	head := e.seq.Head()
	cases := []struct {
		name string
		err  error
		kind error
		subs []string
	}{
		{"renew bad id", func() error { _, err := e.m.Renew(ctx, "nope", ms(1000)); return err }(), engine.ErrInvalid, []string{"lock_id", "nope"}},
		{"renew no ttl", func() error { _, err := e.m.Renew(ctx, l.LockID, nil); return err }(), engine.ErrInvalid, []string{"ttl_ms", "required"}},
		{"renew ttl low", func() error { _, err := e.m.Renew(ctx, l.LockID, ms(99)); return err }(), engine.ErrInvalid, []string{"ttl_ms", "99"}},
		{"renew ttl high", func() error { _, err := e.m.Renew(ctx, l.LockID, ms(86400001)); return err }(), engine.ErrInvalid, []string{"ttl_ms", "86400001"}},
		{"renew unknown", func() error { _, err := e.m.Renew(ctx, ulid.Make().String(), ms(1000)); return err }(), engine.ErrGone, nil},
		{"release bad id", e.m.Release(ctx, strings.ToLower(l.LockID)+"x"), engine.ErrInvalid, []string{"lock_id"}},
		{"release unknown", e.m.Release(ctx, ulid.Make().String()), engine.ErrGone, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.err, tc.kind, tc.subs...) })
	}
	if h := e.seq.Head(); h != head {
		t.Errorf("head moved from %d to %d: a refused command wrote", head, h)
	}
}

func TestFencingTokensIncreaseAcrossRestarts(t *testing.T) {
	fs := vfs.NewMem()
	e := newEnv(t, envOpts{fs: fs})
	var last uint64
	next := func(e *env, res string) *Lock {
		t.Helper()
		l := e.acquire(t, "h", 60000, res)
		if l.FencingToken <= last {
			t.Fatalf("fencing token %d after %d", l.FencingToken, last)
		}
		last = l.FencingToken
		return l
	}
	for i := range 5 {
		l := next(e, fmt.Sprintf("r%d", i%2))
		e.release(t, l)
	}
	kept := next(e, "kept")
	for round := range 3 {
		e = e.restart(t)
		// The held lock survives with its absolute expiry.
		got, err := e.m.Get("kept")
		if err != nil || got.LockID != kept.LockID || got.ExpiresAt != kept.ExpiresAt {
			t.Fatalf("round %d: Get(kept) after restart = %+v, %v; want %+v", round, got, err, kept)
		}
		_, err = e.m.Acquire(context.Background(), AcquireInput{Resources: []string{"kept"}, Holder: "x", TTLMs: ms(1000)})
		wantHeld(t, err, "kept", kept)
		l := next(e, "r0")
		e.release(t, l)
	}
	if last != 9 {
		t.Errorf("last token %d, want 9 (one per acquisition)", last)
	}
}

func TestAllOrNone(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.acquire(t, "holder-b", 30000, "b")
	head, nev := e.seq.Head(), e.ev.len()

	_, err := e.m.Acquire(context.Background(), AcquireInput{Resources: []string{"a", "b", "c"}, Holder: "x", TTLMs: ms(1000)})
	wantHeld(t, err, "b", b)
	for _, r := range []string{"a", "c"} {
		_, err := e.m.Get(r)
		wantErr(t, err, engine.ErrNotFound)
	}
	if e.seq.Head() != head || e.ev.len() != nev {
		t.Errorf("a refused acquire wrote: head %d→%d, events %d→%d", head, e.seq.Head(), nev, e.ev.len())
	}
	// The refused acquire took no fencing token.
	a := e.acquire(t, "x", 1000, "a", "c")
	if a.FencingToken != b.FencingToken+1 {
		t.Errorf("token %d after %d: a refused acquire used one", a.FencingToken, b.FencingToken)
	}
	// Held by two different locks: the first one met is named.
	_, err = e.m.Acquire(context.Background(), AcquireInput{Resources: []string{"z", "c", "b"}, Holder: "y", TTLMs: ms(1000)})
	wantHeld(t, err, "c", a)
}

func TestAcquireValidation(t *testing.T) {
	e := newEnv(t, envOpts{})
	many := func(n int) []string {
		var rs []string
		for i := range n {
			rs = append(rs, fmt.Sprintf("r%d", i))
		}
		return rs
	}
	long := strings.Repeat("x", MaxResourceLen)
	cases := []struct {
		name string
		in   AcquireInput
		subs []string // empty: valid
	}{
		{"no resources", AcquireInput{Holder: "h", TTLMs: ms(1000)}, []string{"resources", "0 resources", "1..64"}},
		{"65 resources", AcquireInput{Resources: many(65), Holder: "h", TTLMs: ms(1000)}, []string{"resources", "65"}},
		{"64 resources", AcquireInput{Resources: many(64), Holder: "h", TTLMs: ms(1000)}, nil},
		{"empty resource", AcquireInput{Resources: []string{"a", ""}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[1]", "required"}},
		{"duplicate", AcquireInput{Resources: []string{"a", "b", "a"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[2]", `"a"`, "twice"}},
		{"NUL", AcquireInput{Resources: []string{"a\x00b"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[0]", "control"}},
		{"newline", AcquireInput{Resources: []string{"ok", "a\nb"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[1]", "control"}},
		{"DEL", AcquireInput{Resources: []string{"a\x7f"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[0]", "control"}},
		{"C1 control", AcquireInput{Resources: []string{"a\u0085"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[0]", "control"}},
		{"bad UTF-8", AcquireInput{Resources: []string{"a\xff"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[0]", "UTF-8"}},
		{"513 bytes", AcquireInput{Resources: []string{long + "y"}, Holder: "h", TTLMs: ms(1000)}, []string{"resources[0]", "512 bytes"}},
		{"512 bytes", AcquireInput{Resources: []string{long}, Holder: "h", TTLMs: ms(1000)}, nil},
		{"unicode", AcquireInput{Resources: []string{"ключ/🔒 x"}, Holder: "агент", TTLMs: ms(1000)}, nil},
		{"no holder", AcquireInput{Resources: []string{"a"}, TTLMs: ms(1000)}, []string{"holder", "required"}},
		{"long holder", AcquireInput{Resources: []string{"a"}, Holder: strings.Repeat("h", MaxHolderLen+1), TTLMs: ms(1000)}, []string{"holder", "256"}},
		{"holder control", AcquireInput{Resources: []string{"a"}, Holder: "h\tx", TTLMs: ms(1000)}, []string{"holder", "control"}},
		{"holder bad UTF-8", AcquireInput{Resources: []string{"a"}, Holder: "h\xc3", TTLMs: ms(1000)}, []string{"holder", "UTF-8"}},
		{"no ttl", AcquireInput{Resources: []string{"a"}, Holder: "h"}, []string{"ttl_ms", "required"}},
		{"ttl 99", AcquireInput{Resources: []string{"a"}, Holder: "h", TTLMs: ms(99)}, []string{"ttl_ms", "99", "100..86400000"}},
		{"ttl negative", AcquireInput{Resources: []string{"a"}, Holder: "h", TTLMs: ms(-5)}, []string{"ttl_ms", "-5"}},
		{"ttl a day and 1 ms", AcquireInput{Resources: []string{"a"}, Holder: "h", TTLMs: ms(86400001)}, []string{"ttl_ms", "86400001"}},
		{"ttl 100", AcquireInput{Resources: []string{"t100"}, Holder: "h", TTLMs: ms(100)}, nil},
		{"ttl a day", AcquireInput{Resources: []string{"tday"}, Holder: "h", TTLMs: ms(86400000)}, nil},
		{"wait negative", AcquireInput{Resources: []string{"a"}, Holder: "h", TTLMs: ms(1000), WaitMs: ms(-1)}, []string{"wait_ms", "-1", "0..60000"}},
		{"wait too long", AcquireInput{Resources: []string{"a"}, Holder: "h", TTLMs: ms(1000), WaitMs: ms(60001)}, []string{"wait_ms", "60001"}},
		{"wait 0", AcquireInput{Resources: []string{"w0"}, Holder: "h", TTLMs: ms(1000), WaitMs: ms(0)}, nil},
		{"wait max", AcquireInput{Resources: []string{"wmax"}, Holder: "h", TTLMs: ms(1000), WaitMs: ms(60000)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			head := e.seq.Head()
			l, err := e.m.Acquire(context.Background(), tc.in)
			if len(tc.subs) == 0 {
				if err != nil {
					t.Fatalf("valid input refused: %v", err)
				}
				e.release(t, l)
				return
			}
			wantErr(t, err, engine.ErrInvalid, tc.subs...)
			if h := e.seq.Head(); h != head {
				t.Errorf("invalid input wrote: head %d → %d", head, h)
			}
		})
	}
	if n := len(e.m.q.q); n != 0 {
		t.Errorf("%d waiter lines left", n)
	}
}

func TestCheckResource(t *testing.T) {
	cases := []struct {
		r    string
		want string // "" valid, else a part of the message
	}{
		{"a", ""},
		{"a/b/c", ""},
		{" spaced out ", ""},
		{strings.Repeat("é", 256), ""}, // 512 bytes
		{strings.Repeat("é", 256) + "x", "512 bytes"},
		{"", "required"},
		{"\x01", "control"},
		{"a\rb", "control"},
		{"\u009f", "control"},
		{"\xed\xa0\x80", "UTF-8"}, // a surrogate
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", engine.Truncate(tc.r)), func(t *testing.T) {
			err := CheckResource("f", tc.r)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, engine.ErrInvalid, "f:", tc.want)
		})
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, envOpts{})
	l1 := e.acquire(t, "h1", 30000, "a/1")
	l2 := e.acquire(t, "h2", 30000, "a/2")
	l3 := e.acquire(t, "h3", 30000, "a/3")
	l45 := e.acquire(t, "h45", 30000, "a/5", "a/4")
	lb := e.acquire(t, "hb", 30000, "b/1")
	lab := e.acquire(t, "hab", 30000, "ab")

	ids := func(ls []*Lock) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.LockID)
		}
		return out
	}
	cases := []struct {
		name   string
		prefix string
		limit  int
		want   []*Lock
	}{
		{"all", "", 0, []*Lock{l1, l2, l3, l45, lab, lb}},
		{"prefix", "a/", 0, []*Lock{l1, l2, l3, l45}},
		{"prefix is bytes, not path", "a", 0, []*Lock{l1, l2, l3, l45, lab}},
		{"one resource", "b/1", 0, []*Lock{lb}},
		{"none", "zz", 0, []*Lock{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, cur, err := e.m.List(tc.prefix, tc.limit, "")
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !slices.Equal(ids(got), ids(tc.want)) || cur != "" {
				t.Errorf("List(%q) = %v, %q; want %v", tc.prefix, ids(got), cur, ids(tc.want))
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		for limit := 1; limit <= 5; limit++ {
			var pages [][]string
			seen := map[string]bool{}
			cur, last := "", false
			for range 10 {
				page, next, err := e.m.List("a/", limit, cur)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit {
					t.Fatalf("limit %d: page of %d", limit, len(page))
				}
				p := ids(page)
				if len(slices.Compact(slices.Clone(p))) != len(p) {
					t.Errorf("limit %d: a lock twice in page %v", limit, p)
				}
				pages = append(pages, p)
				for _, id := range p {
					seen[id] = true
				}
				if next == "" {
					last = true
					break
				}
				cur = next
			}
			if !last {
				t.Fatalf("limit %d: no last page: %v", limit, pages)
			}
			for _, l := range []*Lock{l1, l2, l3, l45} {
				if !seen[l.LockID] {
					t.Errorf("limit %d: %s (%v) missing from pages %v", limit, l.LockID, l.Resources, pages)
				}
			}
			if len(seen) != 4 {
				t.Errorf("limit %d: pages %v list %d locks, want 4", limit, pages, len(seen))
			}
		}
	})

	t.Run("cursor stays inside its prefix", func(t *testing.T) {
		_, cur, err := e.m.List("", 1, "")
		if err != nil || cur == "" {
			t.Fatalf("List: %q, %v", cur, err)
		}
		// cur points after "a/1": with the prefix b/ only b/ locks show.
		got, _, err := e.m.List("b/", 0, cur)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), []string{lb.LockID}) {
			t.Errorf("List(b/, cursor after a/1) = %v, want only %s", ids(got), lb.LockID)
		}
	})

	bad := []struct {
		name   string
		prefix string
		limit  int
		cursor string
		subs   []string
	}{
		{"limit negative", "", -1, "", []string{"limit"}},
		{"limit too big", "", engine.MaxListLimit + 1, "", []string{"limit"}},
		{"cursor not base64", "", 0, "!!", []string{"cursor"}},
		{"cursor of another listing", "", 0, "c29tZXRoaW5n", []string{"cursor"}},
		{"prefix too long", strings.Repeat("p", MaxResourceLen+1), 0, "", []string{"prefix"}},
		{"prefix bad UTF-8", "\xff", 0, "", []string{"prefix"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.m.List(tc.prefix, tc.limit, tc.cursor)
			wantErr(t, err, engine.ErrInvalid, tc.subs...)
		})
	}
}

// TestExpiredHolderAcquire: an acquire that finds an expired holder writes
// its lock.expired first and takes the resource, in one command. The loop is
// stopped so that only the acquire can find it.
func TestExpiredHolderAcquire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{noStart: true})
		old := e.acquire(t, "old", 100, "r", "other")
		time.Sleep(100*time.Millisecond - time.Nanosecond)
		// Still held one nanosecond before expires_at.
		_, err := e.m.Acquire(context.Background(), AcquireInput{Resources: []string{"r"}, Holder: "new", TTLMs: ms(1000)})
		wantHeld(t, err, "r", old)
		time.Sleep(time.Nanosecond)
		// Free from expires_at on; Get and List agree before anyone drops it.
		_, err = e.m.Get("r")
		wantErr(t, err, engine.ErrNotFound)
		if ls, _, _ := e.m.List("", 0, ""); len(ls) != 0 {
			t.Errorf("List shows expired locks: %+v", ls)
		}

		nl := e.acquire(t, "new", 1000, "r")
		if nl.FencingToken != old.FencingToken+1 {
			t.Errorf("token %d after %d", nl.FencingToken, old.FencingToken)
		}
		evs := e.ev.all(t)
		wantEvents(t, evs, "lock.acquired "+old.LockID, "lock.expired "+old.LockID, "lock.acquired "+nl.LockID)
		if c := e.rec.commandOf(evs[1].Seq); c != [2]uint64{evs[1].Seq, evs[2].Seq + 1} {
			t.Errorf("lock.expired (seq %d) and lock.acquired (seq %d) come from command %v, want one command", evs[1].Seq, evs[2].Seq, c)
		}
		// The expired lock's other resource is free too, and its index entry is gone.
		e.acquire(t, "third", 1000, "other")
		if n := e.expiryEntries(t); n != 2 {
			t.Errorf("%d expiry entries, want 2", n)
		}
		if n := metricCount(t, e.m.m.expired); n != 1 {
			t.Errorf("expired counter %v, want 1", n)
		}
	})
}

// TestRenewReleaseExpired: renewing or releasing an expired lock answers
// gone and writes its lock.expired.
func TestRenewReleaseExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{noStart: true})
		ctx := context.Background()
		a := e.acquire(t, "a", 100, "ra")
		b := e.acquire(t, "b", 100, "rb")
		c := e.acquire(t, "c", 100, "rc")

		// Renewed before its expiry, c lives past its first expires_at.
		time.Sleep(50 * time.Millisecond)
		rc, err := e.m.Renew(ctx, c.LockID, ms(200))
		if err != nil {
			t.Fatal(err)
		}
		if want := parseTime(t, c.AcquiredAt).Add(250 * time.Millisecond); !parseTime(t, rc.ExpiresAt).Equal(want) {
			t.Errorf("renewed expires_at %s, want %s", rc.ExpiresAt, want.Format(time.RFC3339Nano))
		}
		time.Sleep(50 * time.Millisecond)
		n0 := e.ev.len()

		_, err = e.m.Renew(ctx, a.LockID, ms(1000))
		wantErr(t, err, engine.ErrGone, a.LockID, "expired")
		wantErr(t, e.m.Release(ctx, b.LockID), engine.ErrGone, b.LockID, "expired")
		wantEvents(t, e.ev.since(t, n0), "lock.expired "+a.LockID, "lock.expired "+b.LockID)
		// Once dropped, both are simply gone, and nothing more is written.
		n1, head := e.ev.len(), e.seq.Head()
		wantErr(t, e.m.Release(ctx, a.LockID), engine.ErrGone)
		_, err = e.m.Renew(ctx, b.LockID, ms(1000))
		wantErr(t, err, engine.ErrGone)
		if e.ev.len() != n1 || e.seq.Head() != head {
			t.Errorf("gone answers wrote events")
		}
		if _, err := e.m.Get("rc"); err != nil {
			t.Errorf("renewed lock: %v", err)
		}
		if n := e.expiryEntries(t); n != 1 {
			t.Errorf("%d expiry entries, want 1 (c's)", n)
		}
		if n := metricCount(t, e.m.m.expired); n != 2 {
			t.Errorf("expired counter %v, want 2", n)
		}
	})
}

// TestExpiryLoop: without anyone asking, each lock's lock.expired is written
// at its expires_at (fake time: exactly then), renewals move it, and
// waiting stops once none is left.
func TestExpiryLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{})
		var locks []*Lock
		for i, ttl := range []int64{300, 100, 200, 100, 1000} {
			locks = append(locks, e.acquire(t, fmt.Sprintf("h%d", i), ttl, fmt.Sprintf("r%d", i)))
			time.Sleep(time.Millisecond)
		}
		rn, err := e.m.Renew(context.Background(), locks[4].LockID, ms(100))
		if err != nil {
			t.Fatal(err)
		}
		locks[4] = rn
		time.Sleep(2 * time.Second)
		synctest.Wait()

		expired := map[string]event{}
		for _, ev := range e.ev.all(t) {
			if ev.Type == Expired {
				if _, dup := expired[ev.Lock.LockID]; dup {
					t.Errorf("%s expired twice", ev.Lock.LockID)
				}
				expired[ev.Lock.LockID] = ev
			}
		}
		for _, l := range locks {
			ev, ok := expired[l.LockID]
			if !ok {
				t.Errorf("no lock.expired for %+v", l)
				continue
			}
			if at := parseTime(t, l.ExpiresAt); !ev.Time.Equal(at) {
				t.Errorf("%s expired at %v, want its expires_at %v", l.Holder, ev.Time, at)
			}
			if _, err := e.m.Get(l.Resources[0]); err == nil {
				t.Errorf("%s still held", l.Resources[0])
			}
		}
		if n := e.expiryEntries(t); n != 0 {
			t.Errorf("%d expiry entries left", n)
		}
		if n := metricCount(t, e.m.m.expiryLag); n != 5 {
			t.Errorf("expiry lag histogram has %v samples, want 5", n)
		}
		if n := metricCount(t, e.m.m.expired); n != 5 {
			t.Errorf("expired counter %v, want 5", n)
		}
	})
}

// TestExpiryLag measures, in real time, how long after expires_at the
// loop's lock.expired is published, over 200 locks with short TTLs, and
// wants p99 under 100 ms. The machine is shared (and -race slows all), so
// a run over budget is measured again, up to three runs: the code must make
// the budget, a busy neighbour must not fail it.
func TestExpiryLag(t *testing.T) {
	var p99 time.Duration
	for run := range 3 {
		lags := measureExpiryLag(t, 200)
		n := len(lags)
		p99 = lags[n*99/100-1]
		t.Logf("run %d: expiry lag over %d locks: min %v, p50 %v, p99 %v, max %v", run, n, lags[0], lags[n/2], p99, lags[n-1])
		if p99 < 100*time.Millisecond {
			return
		}
	}
	t.Errorf("expiry lag p99 %v, want < 100ms", p99)
}

// measureExpiryLag acquires n locks with TTLs of 300 to 496 ms and returns,
// sorted, how long after its expires_at each lock's lock.expired was
// published.
func measureExpiryLag(t *testing.T, n int) []time.Duration {
	t.Helper()
	e := newEnv(t, envOpts{})
	defer e.close(t)
	var (
		mu   sync.Mutex
		byID = map[string]*Lock{}
		wg   sync.WaitGroup
	)
	const acquirers = 8
	for g := range acquirers {
		wg.Go(func() {
			for i := g; i < n; i += acquirers {
				l, err := e.m.Acquire(context.Background(), AcquireInput{Resources: []string{fmt.Sprint("lag/", i)}, Holder: "h", TTLMs: ms(300 + int64(i%50)*4)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				byID[l.LockID] = l
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var lags []time.Duration
	pollFor(t, 10*time.Second, func() error {
		lags = lags[:0]
		for _, ev := range e.ev.all(t) {
			if ev.Type != Expired {
				continue
			}
			l := byID[ev.Lock.LockID]
			if l == nil {
				return fmt.Errorf("lock.expired of an unknown lock %+v", ev.Lock)
			}
			lags = append(lags, ev.At.Sub(parseTime(t, l.ExpiresAt)))
		}
		if len(lags) < n {
			return fmt.Errorf("%d of %d locks expired", len(lags), n)
		}
		return nil
	})
	if len(lags) != n {
		t.Fatalf("%d lock.expired events for %d locks", len(lags), n)
	}
	slices.Sort(lags)
	if lags[0] < 0 {
		t.Fatalf("a lock expired %v before its expires_at", -lags[0])
	}
	return lags
}

// TestExpiredAtStartup: locks that expired while the server was down are
// released as soon as it starts.
func TestExpiredAtStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{})
		short := e.acquire(t, "short", 1000, "s1", "s2")
		long := e.acquire(t, "long", 60000, "l")
		e.close(t)

		time.Sleep(5 * time.Second)
		n0 := e.ev.len()
		start := time.Now()
		e = e.restart(t)
		synctest.Wait()

		evs := e.ev.since(t, n0)
		wantEvents(t, evs, "lock.expired "+short.LockID)
		if !evs[0].Time.Equal(start) {
			t.Errorf("expired at %v, want at once (%v)", evs[0].Time, start)
		}
		for _, r := range []string{"s1", "s2"} {
			if _, err := e.m.Get(r); err == nil {
				t.Errorf("%s still held", r)
			}
		}
		if got, err := e.m.Get("l"); err != nil || got.LockID != long.LockID {
			t.Errorf("Get(l) = %+v, %v: the live lock did not survive", got, err)
		}
		if n := e.expiryEntries(t); n != 1 {
			t.Errorf("%d expiry entries, want 1", n)
		}
		// The freed resources are taken with no expired holder to drop.
		n1 := e.ev.len()
		nl := e.acquire(t, "next", 1000, "s2")
		wantEvents(t, e.ev.since(t, n1), "lock.acquired "+nl.LockID)
	})
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{reg: reg})
	e.acquire(t, "h", 1000, "r")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"engram_locks_acquired_total", "engram_lock_expiry_lag_seconds", "engram_locks_waiting"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s not registered (have %v)", want, names)
		}
	}
	// A second manager on the same registry is refused, naming why.
	if _, err := New(e.db, e.seq, Config{Registerer: reg}, nil); err == nil || !strings.Contains(err.Error(), "lockmgr: register metrics") {
		t.Errorf("New on a used registry: %v", err)
	}
}

// TestManagerClock: Get and List judge expiry by Config.Now.
func TestManagerClock(t *testing.T) {
	var skew time.Duration
	now := func() time.Time { return time.Now().Add(skew) }
	e := newEnv(t, envOpts{noStart: true, now: now})
	l := e.acquire(t, "h", 60000, "r")
	if _, err := e.m.Get("r"); err != nil {
		t.Fatal(err)
	}
	skew = time.Minute
	_, err := e.m.Get("r")
	wantErr(t, err, engine.ErrNotFound)
	if ls, _, _ := e.m.List("", 0, ""); len(ls) != 0 {
		t.Errorf("List by a clock past expiry: %+v", ls)
	}
	_ = l
}

// Test helpers.

// env is a manager over a real store on an in-memory filesystem. It works
// inside a synctest bubble too: Pebble on vfs.NewMem does no real I/O, so
// every goroutine of the stack blocks durably and fake time advances.
type env struct {
	opts envOpts
	db   *storage.DB
	seq  *wal.Sequencer
	rec  *recSeq
	m    *Manager
	ev   *eventLog

	closeOnce sync.Once
}

// envOpts configure newEnv.
type envOpts struct {
	// fs holds the store; nil means a new in-memory filesystem. Reopening on
	// the same fs is a restart.
	fs vfs.FS
	// noStart leaves the expiry loop stopped: only acquire, renew and
	// release find expired locks.
	noStart bool
	// now is the manager's clock (nil: time.Now).
	now func() time.Time
	// reg registers the manager's metrics.
	reg prometheus.Registerer
}

// newEnv opens a store, a sequencer and a manager; they are closed (manager,
// sequencer, store) when the test ends.
func newEnv(tb testing.TB, o envOpts) *env {
	tb.Helper()
	if o.fs == nil {
		o.fs = vfs.NewMem()
	}
	e := openEnv(tb, o, &eventLog{})
	tb.Cleanup(func() { e.close(tb) })
	return e
}

func openEnv(tb testing.TB, o envOpts, ev *eventLog) *env {
	tb.Helper()
	db, err := storage.Open(storage.Config{Dir: "/data", FS: o.fs, CacheBytes: 8 << 20}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	seq, err := wal.New(db, wal.Config{NoSync: true, Publish: ev.publish}, nil)
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	rec := &recSeq{inner: seq}
	m, err := New(db, rec, Config{Now: o.now, Registerer: o.reg}, nil)
	if err != nil {
		seq.Close()
		db.Close()
		tb.Fatal(err)
	}
	if !o.noStart {
		m.Start()
	}
	return &env{opts: o, db: db, seq: seq, rec: rec, m: m, ev: ev}
}

// close stops the manager, then the sequencer, then the store (once).
func (e *env) close(tb testing.TB) {
	e.closeOnce.Do(func() {
		e.m.Close()
		if err := e.seq.Close(); err != nil {
			tb.Error(err)
		}
		if err := e.db.Close(); err != nil {
			tb.Error(err)
		}
	})
}

// restart closes e and opens its store again, as a server restart does. The
// event log goes on.
func (e *env) restart(tb testing.TB) *env {
	tb.Helper()
	e.close(tb)
	ne := openEnv(tb, e.opts, e.ev)
	tb.Cleanup(func() { ne.close(tb) })
	return ne
}

func ms(n int64) *int64 { return &n }

// acquire takes resources for holder or fails the test.
func (e *env) acquire(tb testing.TB, holder string, ttlMs int64, resources ...string) *Lock {
	tb.Helper()
	l, err := e.m.Acquire(context.Background(), AcquireInput{Resources: resources, Holder: holder, TTLMs: ms(ttlMs)})
	if err != nil {
		tb.Fatalf("Acquire(%q, %v): %v", holder, resources, err)
	}
	return l
}

func (e *env) release(tb testing.TB, l *Lock) {
	tb.Helper()
	if err := e.m.Release(context.Background(), l.LockID); err != nil {
		tb.Fatalf("Release(%s): %v", l.LockID, err)
	}
}

// expiryEntries counts the entries of the expiry index.
func (e *env) expiryEntries(tb testing.TB) int {
	tb.Helper()
	p := storage.LockExpiryPrefix()
	it, err := e.db.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// wantErr checks that err is of kind and that its message holds each of
// subs; it returns the *engine.Error when there is one.
func wantErr(tb testing.TB, err, kind error, subs ...string) *engine.Error {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		tb.Fatalf("error %q (%T) is not %v", err, err, kind)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			tb.Errorf("error %q does not contain %q", err, s)
		}
	}
	var ee *engine.Error
	errors.As(err, &ee)
	return ee
}

// wantHeld checks a 409 naming the holder of resource.
func wantHeld(tb testing.TB, err error, resource string, by *Lock) {
	tb.Helper()
	ee := wantErr(tb, err, engine.ErrConflict, resource, by.Holder)
	if ee == nil {
		tb.Fatalf("conflict %v is not an *engine.Error", err)
	}
	want := map[string]any{"held_by": by.Holder, "lock_id": by.LockID, "resource": resource, "expires_at": by.ExpiresAt}
	if len(ee.Details) != len(want) {
		tb.Errorf("details %v, want %v", ee.Details, want)
	}
	for k, v := range want {
		if ee.Details[k] != v {
			tb.Errorf("details[%q] = %v, want %v", k, ee.Details[k], v)
		}
	}
}

func parseTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(wal.TimeLayout, s)
	if err != nil {
		tb.Fatalf("time %q: %v", s, err)
	}
	return t
}

func checkLockShape(tb testing.TB, l *Lock, holder string, ttl time.Duration, resources ...string) {
	tb.Helper()
	if _, err := ulid.ParseStrict(l.LockID); err != nil {
		tb.Errorf("lock_id %q: %v", l.LockID, err)
	}
	if l.Holder != holder || !slices.Equal(l.Resources, resources) {
		tb.Errorf("lock %+v, want holder %q resources %q", l, holder, resources)
	}
	if l.FencingToken == 0 {
		tb.Errorf("lock %+v: fencing token 0", l)
	}
	for _, s := range []string{l.AcquiredAt, l.ExpiresAt} {
		if !strings.HasSuffix(s, "Z") || len(s) != len("2006-01-02T15:04:05.000000000Z") {
			tb.Errorf("time %q is not RFC 3339 UTC with nanoseconds", s)
		}
	}
	if d := parseTime(tb, l.ExpiresAt).Sub(parseTime(tb, l.AcquiredAt)); d != ttl {
		tb.Errorf("expires_at - acquired_at = %v, want %v", d, ttl)
	}
}

// event is one published lock event.
type event struct {
	Seq  uint64
	Type string
	Time time.Time // the event's (its command's) time
	At   time.Time // when it was published (after the commit)
	Lock Lock
}

// eventLog records what the sequencer publishes.
type eventLog struct {
	mu  sync.Mutex
	evs []event
	err error
}

func (l *eventLog) publish(evs []wal.Event) {
	at := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		var v struct {
			Seq   uint64 `json:"seq"`
			Type  string `json:"type"`
			Topic string `json:"topic"`
			Data  Lock   `json:"data"`
		}
		if err := json.Unmarshal(e.JSON, &v); err != nil || v.Topic != Topic || v.Seq != e.Seq {
			l.err = errors.Join(l.err, err, errors.New("bad event "+string(e.JSON)))
			continue
		}
		l.evs = append(l.evs, event{Seq: e.Seq, Type: e.Type, Time: e.Time, At: at, Lock: v.Data})
	}
}

// all returns the events so far.
func (l *eventLog) all(tb testing.TB) []event {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		tb.Fatal(l.err)
	}
	return slices.Clone(l.evs)
}

// since returns the events after the first skip.
func (l *eventLog) since(tb testing.TB, skip int) []event {
	tb.Helper()
	return l.all(tb)[skip:]
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// wantEvents checks the types and lock ids of evs.
func wantEvents(tb testing.TB, evs []event, want ...string) {
	tb.Helper()
	var got []string
	for _, e := range evs {
		got = append(got, e.Type+" "+e.Lock.LockID)
	}
	if !slices.Equal(got, want) {
		tb.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// recSeq passes commands on and records the seqs each one emitted.
type recSeq struct {
	inner Sequencer
	mu    sync.Mutex
	cmds  [][2]uint64 // [first, next) of each committed command
}

func (r *recSeq) Submit(ctx context.Context, cmd wal.Command) (any, error) {
	var first, next uint64
	res, err := r.inner.Submit(ctx, func(tx *wal.Tx) (any, error) {
		first = tx.NextSeq()
		res, err := cmd(tx)
		next = tx.NextSeq()
		return res, err
	})
	if err == nil {
		r.mu.Lock()
		r.cmds = append(r.cmds, [2]uint64{first, next})
		r.mu.Unlock()
	}
	return res, err
}

// commandOf returns the [first, next) seqs of the command that emitted seq.
func (r *recSeq) commandOf(seq uint64) [2]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cmds {
		if c[0] <= seq && seq < c[1] {
			return c
		}
	}
	return [2]uint64{}
}

// pollFor calls fn until it returns nil or timeout passes (real time).
func pollFor(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricCount reads a counter or gauge value, or a histogram count.
func metricCount(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	tb.Fatalf("metric %v has no value", c.Desc())
	return 0
}
