package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"engram/internal/engine"
	"engram/internal/wal"
)

// TestQueues drives the waiter lines step by step: after each step, who is
// first in all its lines (may try), and who was told its turn may have come.
func TestQueues(t *testing.T) {
	type step struct {
		op    string // "enq", "rm" or "wake"
		name  string // the waiter (enq, rm)
		res   []string
		heads []string // sorted: waiters first in every line they are in
		woken []string // sorted: waiters signalled during this step
	}
	enq := func(name string, res ...string) step { return step{op: "enq", name: name, res: res} }
	rm := func(name string) step { return step{op: "rm", name: name} }
	wake := func(res ...string) step { return step{op: "wake", res: res} }
	then := func(s step, heads, woken []string) step { s.heads, s.woken = heads, woken; return s }
	w := func(names ...string) []string { return names }

	cases := []struct {
		name  string
		steps []step
	}{
		{"alone", []step{
			then(enq("A", "x"), w("A"), nil),
			then(rm("A"), nil, nil),
		}},
		{"first come first served", []step{
			then(enq("A", "x"), w("A"), nil),
			then(enq("B", "x"), w("A"), nil),
			then(enq("C", "x"), w("A"), nil),
			then(rm("A"), w("B"), w("B")),
			then(rm("B"), w("C"), w("C")),
			then(rm("C"), nil, nil),
		}},
		{"disjoint lines do not wait for each other", []step{
			then(enq("A", "x"), w("A"), nil),
			then(enq("B", "y"), w("A", "B"), nil),
			then(enq("C", "x", "y"), w("A", "B"), nil),
			then(rm("A"), w("B"), nil), // C is first on x, not on y
			then(rm("B"), w("C"), w("C")),
		}},
		{"a newcomer queues behind a multi-resource waiter", []step{
			then(enq("A", "x"), w("A"), nil),
			then(enq("B", "x", "y"), w("A"), nil),
			then(enq("C", "y"), w("A"), nil), // y is free, but B came first
			then(rm("A"), w("B"), w("B")),
			then(rm("B"), w("C"), w("C")),
		}},
		{"crossing orders agree on who is first", []step{
			then(enq("A", "x", "y"), w("A"), nil),
			then(enq("B", "y", "x"), w("A"), nil),
			then(enq("C", "x"), w("A"), nil),
			then(enq("D", "y"), w("A"), nil),
			then(rm("A"), w("B"), w("B")),
			then(rm("B"), w("C", "D"), w("C", "D")),
		}},
		{"leaving from the middle", []step{
			then(enq("A", "x"), w("A"), nil),
			then(enq("B", "x"), w("A"), nil),
			then(enq("C", "x"), w("A"), nil),
			then(rm("B"), w("A"), w("A")), // a harmless extra wake of the head
			then(rm("A"), w("C"), w("C")),
		}},
		{"wake tells only the head", []step{
			then(enq("A", "x"), w("A"), nil),
			then(enq("B", "x"), w("A"), nil),
			then(wake("x"), w("A"), w("A")),
			then(wake("y"), w("A"), nil),
			then(wake("x", "x", "y"), w("A"), w("A")),
		}},
		{"wake skips a first-in-line that waits elsewhere", []step{
			then(enq("A", "y"), w("A"), nil),
			then(enq("B", "x", "y"), w("A"), nil),
			then(wake("x"), w("A"), nil),
			then(wake("y"), w("A"), w("A")),
		}},
		{"the earliest waiter is head everywhere", []step{
			then(enq("A", "a", "b"), w("A"), nil),
			then(enq("B", "b", "c"), w("A"), nil),
			then(enq("C", "c", "a"), w("A"), nil),
			then(rm("A"), w("B"), w("B")),
			then(enq("D", "a"), w("B"), nil),
			then(rm("B"), w("C"), w("C")),
			then(rm("C"), w("D"), w("D")),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			qs := &queues{q: map[string][]*waiter{}}
			ws := map[string]*waiter{}
			for i, s := range tc.steps {
				switch s.op {
				case "enq":
					ws[s.name] = qs.enqueue(s.res)
				case "rm":
					qs.remove(ws[s.name])
					delete(ws, s.name)
				case "wake":
					qs.wakeResources(s.res)
				}
				var heads, woken []string
				for name, w := range ws {
					if qs.isHead(w) {
						heads = append(heads, name)
					}
					select {
					case <-w.ready:
						woken = append(woken, name)
					default:
					}
				}
				slices.Sort(heads)
				slices.Sort(woken)
				if !slices.Equal(heads, s.heads) || !slices.Equal(woken, s.woken) {
					t.Fatalf("step %d (%s %s %v): heads %v woken %v; want heads %v woken %v",
						i, s.op, s.name, s.res, heads, woken, s.heads, s.woken)
				}
			}
			for name := range ws {
				qs.remove(ws[name])
			}
			if len(qs.q) != 0 {
				t.Errorf("lines left: %v", qs.q)
			}
		})
	}
}

func TestQueuesReadyHoldsOneSignal(t *testing.T) {
	qs := &queues{q: map[string][]*waiter{}}
	w := qs.enqueue([]string{"x"})
	for range 3 {
		qs.wakeResources([]string{"x"}) // never blocks
	}
	<-w.ready
	select {
	case <-w.ready:
		t.Fatal("a second signal was kept")
	default:
	}
}

func TestCursor(t *testing.T) {
	for _, r := range []string{"", "a", "a/b", "ключ/🔒", strings.Repeat("z", MaxResourceLen)} {
		got, err := engine.DecodeCursor("lock", engine.EncodeCursor("lock", r))
		if err != nil || got != r {
			t.Errorf("decodeCursor(encodeCursor(%q)) = %q, %v", r, got, err)
		}
	}
	// Not base64, padded base64 of "lock:", base64 of "x:a", the raw text.
	for _, c := range []string{"!", "bG9jazo=", "eDph", "lock:a"} {
		if _, err := engine.DecodeCursor("lock", c); err == nil {
			t.Errorf("decodeCursor(%q) accepted", c)
		}
	}
}

// result is what an acquire in a goroutine answered.
type result struct {
	name string
	l    *Lock
	err  error
	took time.Duration
}

// goAcquire runs an acquire in a goroutine and sends its answer to out.
func (e *env) goAcquire(ctx context.Context, out chan<- result, name string, waitMs int64, resources ...string) {
	go func() {
		start := time.Now()
		l, err := e.m.Acquire(ctx, AcquireInput{Resources: resources, Holder: name, TTLMs: ms(60000), WaitMs: ms(waitMs)})
		out <- result{name, l, err, time.Since(start)}
	}()
}

func noResult(t *testing.T, out <-chan result) {
	t.Helper()
	select {
	case r := <-out:
		t.Fatalf("%s answered early: %+v, %v", r.name, r.l, r.err)
	default:
	}
}

func (e *env) lines() int {
	e.m.q.mu.Lock()
	defer e.m.q.mu.Unlock()
	return len(e.m.q.q)
}

// TestWaitFIFO: A holds r; B then C wait; each release hands r to the next
// in line, and newcomers do not jump the line.
func TestWaitFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{})
		ctx := context.Background()
		a := e.acquire(t, "A", 60000, "r")
		out := make(chan result, 3)
		e.goAcquire(ctx, out, "B", 30000, "r")
		synctest.Wait()
		e.goAcquire(ctx, out, "C", 30000, "r")
		synctest.Wait()
		noResult(t, out)
		if n := metricCount(t, e.m.m.waiting); n != 2 {
			t.Errorf("waiting gauge %v with B and C in line, want 2", n)
		}

		// A newcomer that will not wait is refused, naming the holder.
		_, err := e.m.Acquire(ctx, AcquireInput{Resources: []string{"r"}, Holder: "N", TTLMs: ms(1000)})
		wantHeld(t, err, "r", a)
		// One that waits a little queues behind B and C, and times out.
		e.goAcquire(ctx, out, "N", 100, "r")

		time.Sleep(10 * time.Millisecond)
		e.release(t, a)
		synctest.Wait()
		b := <-out
		if b.name != "B" || b.err != nil {
			t.Fatalf("first answer %+v, want B's lock", b)
		}
		if b.l.FencingToken != a.FencingToken+1 {
			t.Errorf("B's token %d after A's %d", b.l.FencingToken, a.FencingToken)
		}
		noResult(t, out)

		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		n := <-out
		if n.name != "N" {
			t.Fatalf("answer %+v, want N's timeout", n)
		}
		wantHeld(t, n.err, "r", b.l)
		if n.took != 100*time.Millisecond {
			t.Errorf("N waited %v, want its wait_ms", n.took)
		}

		e.release(t, b.l)
		synctest.Wait()
		c := <-out
		if c.name != "C" || c.err != nil {
			t.Fatalf("answer %+v, want C's lock", c)
		}
		if c.took != 110*time.Millisecond {
			t.Errorf("C waited %v, want 110ms", c.took)
		}
		e.release(t, c.l)
		if n := e.lines(); n != 0 {
			t.Errorf("%d waiter lines left", n)
		}
		if n := metricCount(t, e.m.m.waiting); n != 0 {
			t.Errorf("waiting gauge %v after all answered", n)
		}
	})
}

// TestNewcomerDoesNotJumpWaiter: B waits for [r, s] while s is held; r is
// free, but a newcomer for r alone does not take it from under B.
func TestNewcomerDoesNotJumpWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{})
		ctx := context.Background()
		s := e.acquire(t, "S", 60000, "s")
		out := make(chan result, 1)
		e.goAcquire(ctx, out, "B", 30000, "r", "s")
		synctest.Wait()

		head := e.seq.Head()
		_, err := e.m.Acquire(ctx, AcquireInput{Resources: []string{"r"}, Holder: "N", TTLMs: ms(1000)})
		ee := wantErr(t, err, engine.ErrConflict, `"r"`, "wait")
		if ee == nil || ee.Details["resource"] != "r" {
			t.Errorf("conflict details %v, want resource r", ee)
		}
		if e.seq.Head() != head {
			t.Error("the refused newcomer wrote")
		}
		if n := metricCount(t, e.m.m.conflicts); n != 1 {
			t.Errorf("conflicts counter %v, want 1", n)
		}

		e.release(t, s)
		synctest.Wait()
		b := <-out
		if b.err != nil || !slices.Equal(b.l.Resources, []string{"r", "s"}) {
			t.Fatalf("B: %+v", b)
		}
	})
}

// TestWaitEnds covers the ways a wait ends without the lock.
func TestWaitEnds(t *testing.T) {
	cases := []struct {
		name string
		// end ends B's wait (after it has begun) and returns what B must
		// answer with.
		end  func(t *testing.T, e *env, cancel context.CancelFunc) error
		took time.Duration
	}{
		{"timeout answers 409", func(t *testing.T, e *env, cancel context.CancelFunc) error {
			return engine.ErrConflict
		}, 500 * time.Millisecond},
		{"ctx cancel", func(t *testing.T, e *env, cancel context.CancelFunc) error {
			time.Sleep(200 * time.Millisecond)
			cancel()
			return context.Canceled
		}, 200 * time.Millisecond},
		{"Close ends waits", func(t *testing.T, e *env, cancel context.CancelFunc) error {
			time.Sleep(300 * time.Millisecond)
			e.m.Close()
			return wal.ErrClosed
		}, 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, envOpts{})
				a := e.acquire(t, "A", 60000, "r")
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				out := make(chan result, 2)
				e.goAcquire(ctx, out, "B", 500, "r", "q")
				synctest.Wait() // B is in line first
				e.goAcquire(context.Background(), out, "C", 5000, "q")
				synctest.Wait()
				want := tc.end(t, e, cancel)
				synctest.Wait()
				got := map[string]result{}
				for range 2 {
					r := <-out
					got[r.name] = r
				}
				b, c := got["B"], got["C"]
				if !errors.Is(b.err, want) {
					t.Fatalf("B answered %v, want %v", b.err, want)
				}
				if errors.Is(want, engine.ErrConflict) {
					wantHeld(t, b.err, "r", a)
				}
				if b.took != tc.took {
					t.Errorf("B waited %v, want %v", b.took, tc.took)
				}
				// C, behind B on q, goes on at once (or is told of the close).
				if errors.Is(want, wal.ErrClosed) {
					if !errors.Is(c.err, wal.ErrClosed) {
						t.Errorf("C after Close: %+v", c)
					}
					return
				}
				if c.err != nil || c.took != b.took {
					t.Errorf("C: %+v, want q at %v", c, b.took)
				}
				if n := e.lines(); n != 0 {
					t.Errorf("%d waiter lines left", n)
				}
			})
		})
	}
}

// TestWaiterWokenByExpiry: a waiter gets the resource when the holder's
// lock expires, not when its own wait ends.
func TestWaiterWokenByExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{})
		a := e.acquire(t, "A", 1000, "r")
		n0 := e.ev.len()
		out := make(chan result, 1)
		e.goAcquire(context.Background(), out, "B", 10000, "r")
		synctest.Wait()
		noResult(t, out)
		time.Sleep(time.Second)
		synctest.Wait()
		b := <-out
		if b.err != nil || b.took != time.Second {
			t.Fatalf("B: %+v, want the lock after 1s", b)
		}
		wantEvents(t, e.ev.since(t, n0), "lock.expired "+a.LockID, "lock.acquired "+b.l.LockID)
	})
}

// TestCrossingOrdersDoNotDeadlock: many acquirers take [x, y] and [y, x]
// (and x or y alone), waiting; all of them finish.
func TestCrossingOrdersDoNotDeadlock(t *testing.T) {
	e := newEnv(t, envOpts{})
	const workers, rounds = 16, 10
	orders := [][]string{{"x", "y"}, {"y", "x"}, {"x"}, {"y"}, {"y", "z", "x"}}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			for j := range rounds {
				res := orders[(i+j)%len(orders)]
				l, err := e.m.Acquire(context.Background(), AcquireInput{Resources: res, Holder: fmt.Sprint("w", i), TTLMs: ms(60000), WaitMs: ms(20000)})
				if err != nil {
					errc <- fmt.Errorf("worker %d round %d %v: %w", i, j, res, err)
					return
				}
				if err := e.m.Release(context.Background(), l.LockID); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("acquirers stuck after 15s; %d waiter lines", e.lines())
	}
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := e.lines(); n != 0 {
		t.Errorf("%d waiter lines left", n)
	}
}

// TestMutualExclusion: 32 goroutines increment a counter guarded only by
// the lock; the "resource" checks fencing tokens only increase.
func TestMutualExclusion(t *testing.T) {
	e := newEnv(t, envOpts{})
	const workers, rounds = 32, 20
	var (
		inside    atomic.Int32
		lastToken uint64 // the resource's: guarded by the lock alone
		counter   int    // guarded by the lock alone
	)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			for j := range rounds {
				l, err := e.m.Acquire(context.Background(), AcquireInput{Resources: []string{"counter"}, Holder: fmt.Sprint("w", i), TTLMs: ms(60000), WaitMs: ms(30000)})
				if err != nil {
					errc <- fmt.Errorf("worker %d round %d: %w", i, j, err)
					return
				}
				if n := inside.Add(1); n != 1 {
					errc <- fmt.Errorf("%d holders at once", n)
				}
				if l.FencingToken <= lastToken {
					errc <- fmt.Errorf("fencing token %d after %d", l.FencingToken, lastToken)
				}
				lastToken = l.FencingToken
				counter++
				inside.Add(-1)
				if err := e.m.Release(context.Background(), l.LockID); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("workers stuck after 15s (counter %d)", counter)
	}
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if counter != workers*rounds {
		t.Errorf("counter %d, want %d", counter, workers*rounds)
	}
	if lastToken != workers*rounds {
		t.Errorf("last token %d, want %d", lastToken, workers*rounds)
	}
	if n := e.lines(); n != 0 {
		t.Errorf("%d waiter lines left", n)
	}
}
