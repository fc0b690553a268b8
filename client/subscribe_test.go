package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"engram/internal/server"
)

// next receives the next event, failing the test after timeout.
func next(t *testing.T, sub *Subscription, timeout time.Duration) Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("events closed: %v", sub.Err())
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v (last seq %d)", timeout, sub.LastSeq())
	}
	return Event{}
}

// unitOf decodes a workunit.created event's unit.
func unitOf(t *testing.T, ev Event) WorkUnit {
	t.Helper()
	if ev.Type != "workunit.created" {
		t.Fatalf("event %d is %s, want workunit.created", ev.Seq, ev.Type)
	}
	var u WorkUnit
	if err := json.Unmarshal(ev.Data, &u); err != nil {
		t.Fatal(err)
	}
	if u.Seq != ev.Seq {
		t.Fatalf("event %d carries unit seq %d", ev.Seq, u.Seq)
	}
	return u
}

func TestSubscribeLive(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	if _, err := ts.c.CreateContext(ctx, ContextCreate{ID: "live", AgentIDs: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	// Events before the subscription are not delivered to a live one.
	if _, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "live", AgentID: "a", Type: UnitMessage}); err != nil {
		t.Fatal(err)
	}
	head := ts.srv.HeadSeq()
	// Server bug: head_seq is the router's last dispatched seq, which can
	// trail the last acknowledged write for a moment; a live subscription
	// made in that moment gets that write's event too. Wait it out.
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if d := ts.srv.Router().Head(); d != head {
			return fmt.Errorf("router dispatched %d, head %d", d, head)
		}
		return nil
	})
	sub, err := ts.c.Subscribe(ctx, "contexts/live", SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.HeadSeq() != head || sub.LastSeq() != head || sub.Topic() != "contexts/live" {
		t.Fatalf("HeadSeq %d, LastSeq %d, want %d", sub.HeadSeq(), sub.LastSeq(), head)
	}

	var want []WorkUnit
	for i := range 20 {
		u, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "live", AgentID: "a", Type: UnitMessage, Payload: json.RawMessage(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, *u)
		// Another context's events are not on this topic.
		if _, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "elsewhere", AgentID: "a", Type: UnitMessage}); err != nil {
			t.Fatal(err)
		}
	}
	patched, err := ts.c.PatchContext(ctx, "live", ContextPatch{DisplayName: new("renamed")})
	if err != nil {
		t.Fatal(err)
	}
	prevSeq := sub.LastSeq()
	for i, w := range want {
		ev := next(t, sub, 10*time.Second)
		u := unitOf(t, ev)
		if ev.Topic != "contexts/live" || u.ID != w.ID || string(u.Payload) != strconv.Itoa(i) || ev.Time.IsZero() {
			t.Fatalf("event %d: %s %+v, want unit %+v", i, ev.Raw, u, w)
		}
		if ls := sub.LastSeq(); ls != ev.Seq && ls != prevSeq {
			t.Fatalf("LastSeq %d after event %d (the one before: %d)", ls, ev.Seq, prevSeq)
		}
		prevSeq = ev.Seq
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(ev.Raw, &raw); err != nil || string(raw["seq"]) != strconv.FormatUint(ev.Seq, 10) {
			t.Fatalf("raw %s: %v", ev.Raw, err)
		}
	}
	ev := next(t, sub, 10*time.Second)
	sub.Close()
	if sub.LastSeq() != ev.Seq {
		t.Fatalf("LastSeq after Close %d, want %d", sub.LastSeq(), ev.Seq)
	}
	var cx Context
	if err := json.Unmarshal(ev.Data, &cx); ev.Type != "context.updated" || err != nil || cx.DisplayName != patched.DisplayName {
		t.Fatalf("last event %s", ev.Raw)
	}
}

func TestSubscribeResumeHistoryThenLive(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	var seqs []uint64 // of topic contexts/h
	for i := range 30 {
		u, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "h", AgentID: "a", Type: UnitMessage, Payload: json.RawMessage(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			seqs = append(seqs, u.Seq-1) // context.created
		}
		seqs = append(seqs, u.Seq)
	}

	// From the start: every event of the topic, then live ones.
	from := uint64(0)
	sub, err := ts.c.Subscribe(ctx, "contexts/h", SubscribeOptions{AfterSeq: &from})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	from = 99 // the subscription copied it
	if first := next(t, sub, 10*time.Second); first.Type != "context.created" || first.Seq != seqs[0] {
		t.Fatalf("first event %s", first.Raw)
	}
	for _, want := range seqs[1:] {
		if ev := next(t, sub, 10*time.Second); ev.Seq != want {
			t.Fatalf("got seq %d, want %d", ev.Seq, want)
		}
	}
	u, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "h", AgentID: "a", Type: UnitMessage})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, 10*time.Second); ev.Seq != u.Seq {
		t.Fatalf("live: got seq %d, want %d", ev.Seq, u.Seq)
	}
	sub.Close()
	seqs = append(seqs, u.Seq)

	// From the middle: the rest.
	mid := seqs[10]
	sub2, err := ts.c.Subscribe(ctx, "contexts/h", SubscribeOptions{AfterSeq: &mid})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	if sub2.LastSeq() != mid {
		t.Fatalf("LastSeq before any event: %d, want %d", sub2.LastSeq(), mid)
	}
	for _, want := range seqs[11:] {
		if ev := next(t, sub2, 10*time.Second); ev.Seq != want {
			t.Fatalf("got seq %d, want %d", ev.Seq, want)
		}
	}

	// A prefix topic sees several contexts.
	zero := uint64(0)
	all, err := ts.c.Subscribe(ctx, "contexts/*", SubscribeOptions{AfterSeq: &zero})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	if _, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "other", AgentID: "a", Type: UnitMessage}); err != nil {
		t.Fatal(err)
	}
	var last Event
	for range ts.srv.HeadSeq() {
		ev := next(t, all, 10*time.Second)
		if ev.Seq <= last.Seq {
			t.Fatalf("seq %d after %d", ev.Seq, last.Seq)
		}
		last = ev
	}
	if last.Topic != "contexts/other" {
		t.Fatalf("last event %s", last.Raw)
	}
}

// TestSubscribeReconnect drops the client's connection again and again
// while a writer creates units: the subscriber must see exactly the
// committed events, each once, in order.
func TestSubscribeReconnect(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	if _, err := ts.c.CreateContext(ctx, ContextCreate{ID: "r", AgentIDs: []string{"w"}}); err != nil {
		t.Fatal(err)
	}
	sub, err := ts.c.Subscribe(ctx, "contexts/r", SubscribeOptions{MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	const n = 2000
	var wg sync.WaitGroup
	defer wg.Wait()
	writerDone := make(chan struct{})
	var werr error
	wg.Go(func() {
		defer close(writerDone)
		for i := range n {
			_, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "r", AgentID: "w", Type: UnitMessage, Payload: json.RawMessage(strconv.Itoa(i))})
			if err != nil {
				werr = err
				return
			}
		}
	})
	// Drops on a clock, while the writer runs...
	timedDrops := 0
	wg.Go(func() {
		for {
			select {
			case <-writerDone:
				return
			case <-time.After(25 * time.Millisecond):
				sub.dropConn()
				timedDrops++
			}
		}
	})

	// ... and drops at fixed points of the stream, with the delivery
	// goroutine blocked on us (frames in flight are lost with the
	// connection and must come again).
	got := make([]uint64, 0, n)
	for len(got) < n {
		ev := next(t, sub, 20*time.Second)
		u := unitOf(t, ev)
		if string(u.Payload) != strconv.Itoa(len(got)) {
			t.Fatalf("event %d carries payload %s, want %d", ev.Seq, u.Payload, len(got))
		}
		got = append(got, ev.Seq)
		if len(got)%250 == 0 {
			sub.dropConn()
		}
	}
	<-writerDone
	if werr != nil {
		t.Fatal(werr)
	}

	var want []uint64
	for u, err := range ts.c.AllUnits(ctx, "r", ListUnitsOptions{Order: OrderAsc, Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, u.Seq)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("received %d seqs, committed %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	// Nothing more is pending: the next event is the next write's.
	u, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "r", AgentID: "w", Type: UnitMessage, Payload: json.RawMessage(`"last"`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, 10*time.Second); ev.Seq != u.Seq {
		t.Fatalf("after the run: seq %d, want %d", ev.Seq, u.Seq)
	}
	wg.Wait()
	if dials := sub.dials.Load(); dials < 1+n/250 {
		t.Fatalf("%d connections, want at least %d", dials, 1+n/250)
	}
	t.Logf("%d connections (%d timed drops)", sub.dials.Load(), timedDrops)
}

func firstDiff(a, b []uint64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSubscribeSurvivesRestart: the server shuts down (the subscription is
// cut or the connection drops) and comes back on the same address; the
// subscription reconnects and resumes.
func TestSubscribeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	c, _ := New("http://" + addr)
	ctx := ctxT(t)
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	sub, err := c.Subscribe(ctx, "contexts/s", SubscribeOptions{AfterSeq: &zero, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	u1, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "s", AgentID: "a", Type: UnitMessage})
	if err != nil {
		t.Fatal(err)
	}
	next(t, sub, 10*time.Second) // context.created
	if ev := next(t, sub, 10*time.Second); ev.Seq != u1.Seq {
		t.Fatalf("seq %d, want %d", ev.Seq, u1.Seq)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv2, err := server.New(server.Config{Addr: addr, DataDir: dir, Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown(context.Background())
	u2, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "s", AgentID: "a", Type: UnitMessage})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, 10*time.Second); ev.Seq != u2.Seq {
		t.Fatalf("after restart: seq %d, want %d", ev.Seq, u2.Seq)
	}
	if sub.dials.Load() < 2 {
		t.Fatalf("%d connections", sub.dials.Load())
	}
	sub.Close()
	if err := sub.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
}

func TestSubscribeHistoryTruncated(t *testing.T) {
	ts := startWith(t, server.Config{RetentionEvents: 5})
	ctx := ctxT(t)
	for range 20 {
		if _, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "t", AgentID: "a", Type: UnitMessage}); err != nil {
			t.Fatal(err)
		}
	}
	// Retention keeps what the search index has not read yet.
	if !ts.srv.Search().WaitFor(ctx, ts.srv.HeadSeq(), 10*time.Second) {
		t.Fatal("the search index did not catch up")
	}
	if _, err := ts.srv.Router().Prune(); err != nil {
		t.Fatal(err)
	}
	oldest := ts.srv.Router().OldestSeq()
	if oldest <= 2 {
		t.Fatalf("oldest seq %d after pruning", oldest)
	}
	from := uint64(1)
	_, err := ts.c.Subscribe(ctx, "contexts/t", SubscribeOptions{AfterSeq: &from})
	var e *Error
	if !errors.Is(err, ErrHistoryTruncated) || !errors.Is(err, ErrGone) || !errors.As(err, &e) || e.OldestSeq != oldest || e.Status != 410 {
		t.Fatalf("err = %#v, want history_truncated with oldest_seq %d", err, oldest)
	}
	// Inside retention it works.
	from = oldest - 1
	sub, err := ts.c.Subscribe(ctx, "contexts/t", SubscribeOptions{AfterSeq: &from})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := next(t, sub, 10*time.Second); ev.Seq != oldest {
		t.Fatalf("first seq %d, want %d", ev.Seq, oldest)
	}
}

func TestSubscribeRefused(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	for _, topic := range []string{"contexts/bad topic", "contexts//x", "a/*/b"} {
		_, err := ts.c.Subscribe(ctx, topic, SubscribeOptions{})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalidArgument) || e.Message == "" {
			t.Errorf("topic %q: err = %#v", topic, err)
		}
	}
	if _, err := ts.c.Subscribe(ctx, "", SubscribeOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty topic: %v", err)
	}
	// A plain GET of /v1/ws is refused with an Engram error body.
	c, _ := New("http://" + ts.srv.Addr())
	_, err := c.do(ctx, http.MethodGet, "/v1/ws", nil, nil, nil)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("GET /v1/ws without upgrade: %v", err)
	}
	// Nothing listening: a connection error, not retried.
	ts2 := start(t)
	addr := ts2.srv.Addr()
	ts2.srv.Shutdown(ctx)
	c2, _ := New("http://" + addr)
	if _, err := c2.Subscribe(ctx, "contexts/x", SubscribeOptions{}); err == nil {
		t.Error("Subscribe to a stopped server succeeded")
	}
}

// TestSubscribeEnds: Close and the end of the context stop every goroutine,
// whether or not the caller is reading.
func TestSubscribeEnds(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	zero := uint64(0)
	for range 10 {
		if _, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "e", AgentID: "a", Type: UnitMessage}); err != nil {
			t.Fatal(err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	ignore := goleak.IgnoreCurrent()

	// Close while the delivery goroutine is blocked on an unread event.
	sub, err := ts.c.Subscribe(ctx, "contexts/e", SubscribeOptions{AfterSeq: &zero})
	if err != nil {
		t.Fatal(err)
	}
	next(t, sub, 10*time.Second)
	done := make(chan struct{})
	go func() { sub.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
	for range sub.Events() { // closed
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
	sub.Close() // again: no-op

	// The end of the context ends it too, with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	sub, err = ts.c.Subscribe(cctx, "contexts/e", SubscribeOptions{AfterSeq: &zero})
	if err != nil {
		t.Fatal(err)
	}
	next(t, sub, 10*time.Second)
	cancel()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		select {
		case _, ok := <-sub.Events():
			if ok {
				return errors.New("still open")
			}
			return nil
		default:
			return errors.New("still open")
		}
	})
	if err := sub.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err after cancel = %v", err)
	}
	sub.Close()
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore,
		// The server's idle HTTP workers, not ours.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"))
}

func TestSubscribeSlowReaderIsCutAndResumes(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	// A subscriber with a small socket receive buffer, so that the
	// server's queue for it (4096 events) fills soon.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	slow, err := New(ts.c.BaseURL(), WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := slow.Subscribe(ctx, "contexts/slow", SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Do not read while the log grows past what the server queues for one
	// connection.
	const batches, size = 20, 1000
	var last uint64
	t0 := time.Now()
	for b := range batches {
		units := make([]WorkUnitCreate, size)
		for i := range units {
			units[i] = WorkUnitCreate{ContextID: "slow", AgentID: "a", Type: UnitMessage, Payload: json.RawMessage(fmt.Sprintf(`"%d-%d"`, b, i))}
		}
		out, _, err := ts.c.CreateUnits(ctx, units)
		if err != nil {
			t.Fatal(err)
		}
		last = out[len(out)-1].Seq
	}
	t.Logf("written in %v", time.Since(t0))
	prev := sub.HeadSeq()
	count := 0
	for prev < last {
		ev := next(t, sub, 20*time.Second)
		if ev.Seq <= prev {
			t.Fatalf("seq %d after %d", ev.Seq, prev)
		}
		prev = ev.Seq
		if ev.Type == "workunit.created" {
			count++
		}
	}
	if count != batches*size {
		t.Fatalf("%d units delivered, want %d", count, batches*size)
	}
	sub.Close()
	t.Logf("%d connections, %d subscriptions", sub.dials.Load(), sub.subN)
	if sub.subN < 2 {
		t.Fatalf("the server never cut the slow reader off (lagged)")
	}
}
