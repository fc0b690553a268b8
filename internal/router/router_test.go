package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"engram/internal/storage"
	"engram/internal/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a store, a router and a sequencer publishing to it.
type rig struct {
	db  *storage.DB
	r   *Router
	seq *wal.Sequencer
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: "/db", FS: vfs.NewMem()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{db: db}
	if cfg.Retention.enabled() && cfg.Retention.Head == nil {
		cfg.Retention.Head = func() uint64 { return g.seq.Head() }
		cfg.Retention.Interval = time.Hour // tests call Prune themselves
	}
	if g.r, err = New(db, db.HeadSeq(), cfg, nil); err != nil {
		t.Fatal(err)
	}
	if g.seq, err = wal.New(db, wal.Config{NoSync: true, Publish: g.r.Publish}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.seq.Close()
		g.r.Close()
		db.Close()
	})
	return g
}

// emit commits one event on topic and returns its seq.
func (g *rig) emit(t *testing.T, topic string) uint64 {
	t.Helper()
	res, err := g.seq.Submit(context.Background(), func(tx *wal.Tx) (any, error) {
		return tx.Emit(topic, "test.event", []byte(`{"topic":"`+topic+`"}`), nil), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.(uint64)
}

type cut struct {
	reason error
	last   uint64
}

// sink is a Sink with a bounded queue that the test drains (or not).
type sink struct {
	q    chan uint64
	mu   sync.Mutex
	cuts []cut
}

func newSink(capacity int) *sink { return &sink{q: make(chan uint64, capacity)} }

func (s *sink) TrySend(_ *Sub, ev *wal.Event) bool {
	select {
	case s.q <- ev.Seq:
		return true
	default:
		return false
	}
}

func (s *sink) SendWait(ctx context.Context, _ *Sub, ev *wal.Event) error {
	select {
	case s.q <- ev.Seq:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sink) Cut(_ *Sub, reason error, last uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts = append(s.cuts, cut{reason, last})
}

func (s *sink) cutList() []cut {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cuts)
}

// take reads n seqs from the sink, failing after a deadline.
func (s *sink) take(t *testing.T, n int) []uint64 {
	t.Helper()
	out := make([]uint64, 0, n)
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case seq := <-s.q:
			out = append(out, seq)
		case <-deadline:
			t.Fatalf("got %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

// quiet asserts nothing more arrives for a moment.
func (s *sink) quiet(t *testing.T) {
	t.Helper()
	select {
	case seq := <-s.q:
		t.Fatalf("unexpected event %d", seq)
	case <-time.After(50 * time.Millisecond):
	}
}

func checkFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func subscribe(t *testing.T, g *rig, s *sink, after *uint64, topics ...string) (*Sub, uint64) {
	t.Helper()
	sub, head, err := g.r.Subscribe(Request{ID: "t", Topics: topics, AfterSeq: after}, s)
	if err != nil {
		t.Fatal(err)
	}
	sub.Start()
	return sub, head
}

func ptr(v uint64) *uint64 { return &v }

func TestLiveExactAndPrefix(t *testing.T) {
	g := newRig(t, Config{})
	exact, prefix, other := newSink(100), newSink(100), newSink(100)
	_, head := subscribe(t, g, exact, nil, "contexts/c1")
	subscribe(t, g, prefix, nil, "contexts/*")
	subscribe(t, g, other, nil, "streams/s/*")
	if head != 0 {
		t.Fatalf("head %d", head)
	}
	s1 := g.emit(t, "contexts/c1")
	s2 := g.emit(t, "contexts/c2")
	s3 := g.emit(t, "contexts") // not under contexts/*
	s4 := g.emit(t, "streams/s/g")
	if got := exact.take(t, 1); got[0] != s1 {
		t.Fatalf("exact got %v", got)
	}
	if got := prefix.take(t, 2); !slices.Equal(got, []uint64{s1, s2}) {
		t.Fatalf("prefix got %v", got)
	}
	if got := other.take(t, 1); got[0] != s4 {
		t.Fatalf("streams/s/* got %v", got)
	}
	_ = s3
	exact.quiet(t)
	prefix.quiet(t)
}

// TestResumeRacingWriter resumes from the middle of the log while a writer
// keeps committing, and checks the subscriber gets exactly its topic's seqs
// after the resume point, in order, once.
// TestHeadCoversAcknowledged: head_seq is at least every acknowledged seq,
// even when dispatch has not caught up, and a live subscription gets only
// later events; an after_seq beyond the head is refused.
func TestHeadCoversAcknowledged(t *testing.T) {
	g := newRig(t, Config{})
	for range 50 {
		acked := g.emit(t, "contexts/h")
		s := newSink(10)
		sub, head, err := g.r.Subscribe(Request{Topics: []string{"contexts/h"}}, s)
		if err != nil {
			t.Fatal(err)
		}
		if head < acked {
			t.Fatalf("head_seq %d below the acknowledged seq %d", head, acked)
		}
		sub.Start()
		next := g.emit(t, "contexts/h")
		if got := s.take(t, 1); got[0] != next {
			t.Fatalf("live subscription got %d, want %d", got[0], next)
		}
		g.r.Unsubscribe(sub)
	}
	_, _, err := g.r.Subscribe(Request{Topics: []string{"contexts/h"}, AfterSeq: ptr(g.seq.Head() + 1)}, newSink(1))
	var ahead *AheadError
	if !errors.As(err, &ahead) {
		t.Fatalf("after_seq beyond head: %v", err)
	}
}

func TestResumeRacingWriter(t *testing.T) {
	g := newRig(t, Config{})
	var want []uint64
	for i := range 300 {
		seq := g.emit(t, fmt.Sprintf("contexts/c%d", i%3))
		if i%3 == 0 && seq > 100 {
			want = append(want, seq)
		}
	}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 600 {
			seq := g.emit(t, fmt.Sprintf("contexts/c%d", i%3))
			if i%3 == 0 {
				mu.Lock()
				want = append(want, seq)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(2 * time.Millisecond) // let the writer get going
	s := newSink(16)                 // small: replay waits on the consumer
	subscribe(t, g, s, ptr(100), "contexts/c0")
	<-done
	mu.Lock()
	n := len(want)
	mu.Unlock()
	got := s.take(t, n)
	if !slices.Equal(got, want) {
		t.Fatalf("resume got %d events, want %d; first diff near %v / %v", len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
	}
	s.quiet(t)
}

func TestOverlappingTopicsDeliverOnce(t *testing.T) {
	g := newRig(t, Config{})
	a := g.emit(t, "contexts/c1")
	s := newSink(100)
	subscribe(t, g, s, ptr(0), "contexts/*", "contexts/c1")
	b := g.emit(t, "contexts/c1")
	if got := s.take(t, 2); !slices.Equal(got, []uint64{a, b}) {
		t.Fatalf("got %v", got)
	}
	s.quiet(t)
}

func TestLaggedLive(t *testing.T) {
	g := newRig(t, Config{})
	s := newSink(3) // never drained
	sub, _ := subscribe(t, g, s, nil, "contexts/c1")
	// Until it is live, events wait in the held-back buffer instead.
	checkFor(t, 2*time.Second, sub.isLive)
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, g.emit(t, "contexts/c1"))
	}
	checkFor(t, 2*time.Second, func() bool { return len(s.cutList()) == 1 })
	c := s.cutList()[0]
	if !errors.Is(c.reason, ErrLagged) || c.last != seqs[2] {
		t.Fatalf("cut %+v, want lagged after %d", c, seqs[2])
	}
	// Cut off: no more events, and resuming from last gets the rest.
	g.emit(t, "contexts/c1")
	if got := s.take(t, 3); !slices.Equal(got, seqs[:3]) {
		t.Fatalf("delivered %v", got)
	}
	s.quiet(t)
	r := newSink(100)
	subscribe(t, g, r, ptr(c.last), "contexts/c1")
	if got := r.take(t, 3); got[0] != seqs[3] || got[1] != seqs[4] {
		t.Fatalf("resumed with %v", got)
	}
}

func TestLaggedDuringReplay(t *testing.T) {
	g := newRig(t, Config{LiveBuffer: 4})
	for range 20 {
		g.emit(t, "contexts/c1")
	}
	s := newSink(2) // replay blocks after two
	sub, _ := subscribe(t, g, s, ptr(0), "contexts/c1")
	for range 6 { // overflow the held-back live events
		g.emit(t, "contexts/c1")
	}
	checkFor(t, 2*time.Second, func() bool { return len(s.cutList()) == 1 })
	c := s.cutList()[0]
	if !errors.Is(c.reason, ErrLagged) {
		t.Fatalf("cut %+v", c)
	}
	// How many replayed events got in before the cut varies; what must
	// hold: they are a gapless prefix and last_seq is the last of them.
	var got []uint64
	for len(s.q) > 0 {
		got = append(got, <-s.q)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("delivered %v: not a gapless prefix", got)
		}
	}
	if c.last != uint64(len(got)) || sub.lastSeq() != c.last {
		t.Fatalf("cut says last %d, delivered %v", c.last, got)
	}
}

func TestUnsubscribeAndClose(t *testing.T) {
	g := newRig(t, Config{})
	a, b := newSink(10), newSink(10)
	subA, _ := subscribe(t, g, a, nil, "locks")
	subscribe(t, g, b, nil, "locks")
	g.r.Unsubscribe(subA)
	g.emit(t, "locks")
	b.take(t, 1)
	a.quiet(t)
	g.seq.Close()
	g.r.Close()
	if len(a.cutList()) != 0 {
		t.Fatalf("unsubscribed sink was cut: %v", a.cutList())
	}
	if c := b.cutList(); len(c) != 1 || !errors.Is(c[0].reason, ErrClosed) {
		t.Fatalf("close cuts %v", c)
	}
	if _, _, err := g.r.Subscribe(Request{Topics: []string{"locks"}}, b); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
}

func TestRetentionAndHistoryTruncated(t *testing.T) {
	g := newRig(t, Config{Retention: Retention{MaxEvents: 10, Chunk: 7}})
	for i := range 50 {
		g.emit(t, fmt.Sprintf("streams/s/g%d", i%2))
	}
	n, err := g.r.Prune()
	if err != nil || n != 40 {
		t.Fatalf("pruned %d, %v; want 40", n, err)
	}
	if g.r.OldestSeq() != 41 {
		t.Fatalf("oldest %d", g.r.OldestSeq())
	}
	if o, _ := g.db.OldestSeq(); o != 41 {
		t.Fatalf("stored oldest %d", o)
	}
	// No log record or index entry below 41 is left, under any index name.
	for _, p := range [][]byte{storage.LogPrefix(), storage.TopicPrefix("streams/s/g0"), storage.TopicPrefix("streams/s/*"), storage.TopicPrefix("streams/*")} {
		it, _ := g.db.NewIter(p, storage.PrefixEnd(p))
		count := 0
		for ok := it.First(); ok; ok = it.Next() {
			seq, _ := storage.TrailingSeq(it.Key())
			if seq < 41 {
				t.Errorf("%q: seq %d survived retention", p, seq)
			}
			count++
		}
		it.Close()
		if count == 0 {
			t.Errorf("%q: retention removed everything", p)
		}
	}
	_, _, err = g.r.Subscribe(Request{Topics: []string{"streams/*"}, AfterSeq: ptr(5)}, newSink(1))
	var ht *HistoryTruncatedError
	if !errors.As(err, &ht) || ht.OldestSeq != 41 {
		t.Fatalf("old after_seq: %v", err)
	}
	s := newSink(100)
	subscribe(t, g, s, ptr(40), "streams/s/*")
	if got := s.take(t, 10); got[0] != 41 || got[9] != 50 {
		t.Fatalf("replay after retention: %v", got)
	}
}

func TestCheckTopic(t *testing.T) {
	for _, ok := range []string{"contexts/c1", "contexts/*", "streams/s/g", "streams/s/*", "locks", "cron/x.y"} {
		if err := CheckTopic(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "a//b", "a/", "*", "a/*/b", "a*", "a b", "a/b*", string(make([]byte, 600))} {
		if err := CheckTopic(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestRetentionFloor: events after the floor (the search index's
// checkpoint) are kept whatever the limits say, and go once it moves on.
func TestRetentionFloor(t *testing.T) {
	var floor atomic.Uint64
	floor.Store(12)
	g := newRig(t, Config{Retention: Retention{MaxEvents: 5, Floor: floor.Load}})
	for range 30 {
		g.emit(t, "a/b")
	}
	if _, err := g.r.Prune(); err != nil {
		t.Fatal(err)
	}
	if g.r.OldestSeq() != 13 {
		t.Fatalf("oldest %d, want 13 (the floor + 1)", g.r.OldestSeq())
	}
	floor.Store(30)
	if _, err := g.r.Prune(); err != nil {
		t.Fatal(err)
	}
	if g.r.OldestSeq() != 26 {
		t.Fatalf("oldest %d, want 26 (the count limit)", g.r.OldestSeq())
	}
}
