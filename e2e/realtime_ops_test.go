package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRealtimeRetention: with --retention-events, a subscription that asks
// for pruned history is told history_truncated with the oldest kept seq;
// from just before that seq it replays gaplessly; work units stay.
func TestRealtimeRetention(t *testing.T) {
	t.Parallel()
	p := startServer(t, t.TempDir(), "--retention-events", "1000")
	seedContexts(t, p, "r")
	var first ackedUnit
	for i := range 5 {
		batch := make([]string, 1000)
		for j := range batch {
			batch[j] = "r"
		}
		us := mustPostUnits(t, p, batch, json.RawMessage(fmt.Sprintf(`{"batch":%d}`, i)))
		if i == 0 {
			first = us[0]
		}
	}
	head := p.headSeq(t)

	// Retention runs every 10 s in the background. Until it has run,
	// full replays race with it: each must either be whole or end with
	// history_truncated, never with a gap.
	var (
		stop   atomic.Bool
		racer  sync.WaitGroup
		replay replayRace
	)
	racer.Go(func() { replay = raceRetention(p, head, &stop) })
	var oldest uint64
	start := time.Now()
	polled := pollUntil(25*time.Second, 50*time.Millisecond, func() bool {
		oldest = uint64(mustScrape(t, p)["engram_log_oldest_seq"])
		return oldest > 1
	})
	stop.Store(true)
	racer.Wait()
	if !polled {
		t.Fatalf("engram_log_oldest_seq still %d 25 s after writing %d events with --retention-events 1000", oldest, head)
	}
	t.Logf("oldest seq %d of head %d after %v; meanwhile %d whole replays, %d cut by history_truncated",
		oldest, head, time.Since(start).Round(time.Millisecond), replay.whole, replay.truncated)
	if replay.err != nil {
		t.Error(replay.err)
	}
	if oldest != head-999 {
		t.Errorf("oldest seq %d, want %d: the newest 1000 events kept", oldest, head-999)
	}

	t.Run("ws history_truncated", func(t *testing.T) {
		w := openWS(t, p)
		for i, after := range []int64{0, 1, int64(oldest) - 2} {
			id := fmt.Sprintf("t%d", i)
			w.mustSend(t, subscribeFrame(id, "contexts/r", after))
			f := w.mustFrame(t, "error", id)
			if f.Code != "history_truncated" || f.OldestSeq == nil || *f.OldestSeq != oldest || f.Message == "" {
				t.Errorf("after_seq %d: got %s, want history_truncated with oldest_seq %d", after, f, oldest)
			}
		}
		// The connection is still usable, and the ids were not taken.
		w.pingPong(t)
		w.subscribe(t, "t0", "contexts/r", -1)
	})

	t.Run("sse history_truncated", func(t *testing.T) {
		for _, tc := range []struct {
			name, url, lastID string
		}{
			{"after_seq=1", sseURL(p.URL, []string{"contexts/r"}, 1), ""},
			{"after_seq=0", sseURL(p.URL, []string{"contexts/*"}, 0), ""},
			{"Last-Event-ID: 1", sseURL(p.URL, []string{"contexts/r"}, -1), "1"},
		} {
			s, r, err := openSSE(nil, tc.url, tc.lastID)
			if s != nil {
				s.close()
				t.Errorf("%s: the stream started", tc.name)
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			e := checkError(t, r, http.StatusGone, "history_truncated", "")
			if got, _ := e.Details["oldest_seq"].(float64); uint64(got) != oldest {
				t.Errorf("%s: details %v, want oldest_seq %d", tc.name, e.Details, oldest)
			}
		}
	})

	want := make([]uint64, 0, head-oldest+1)
	for s := oldest; s <= head; s++ {
		want = append(want, s)
	}
	seqsOf := func(evs []eventJSON) []uint64 {
		out := make([]uint64, len(evs))
		for i, ev := range evs {
			out[i] = ev.Seq
		}
		return out
	}

	t.Run("replay from the oldest kept", func(t *testing.T) {
		w := openWS(t, p)
		got := map[string][]eventJSON{}
		w.mustSend(t, subscribeFrame("exact", "contexts/r", int64(oldest)-1))
		w.mustSend(t, subscribeFrame("prefix", "contexts/*", int64(oldest)-1))
		subscribed := map[string]bool{}
		for len(got["exact"])+len(got["prefix"]) < 2*len(want) {
			f := w.mustNext(t)
			if f.Op == "subscribed" && !subscribed[f.ID] && len(got[f.ID]) == 0 {
				subscribed[f.ID] = true
				continue
			}
			ev, err := decodeEvent(f.Event)
			if f.Op != "event" || !subscribed[f.ID] || err != nil {
				t.Fatalf("got %s, want an event of a subscription (%v)", f, err)
			}
			got[f.ID] = append(got[f.ID], ev)
		}
		if extra := w.pingPong(t); len(extra) > 0 {
			t.Errorf("frames after the head: %v", extra)
		}
		s := mustSSE(t, nil, sseURL(p.URL, []string{"contexts/r"}, int64(oldest)-1), "")
		for len(got["sse"]) < len(want) {
			got["sse"] = append(got["sse"], s.mustEvent(t))
		}
		for _, k := range []string{"exact", "prefix", "sse"} {
			if g := seqsOf(got[k]); !slices.Equal(g, want) {
				t.Errorf("%s: replay after %d got %d events %v…, want %d..%d", k, oldest-1, len(g), window(g, 0), oldest, head)
			}
			for _, ev := range got[k] {
				if ev.Topic != "contexts/r" || ev.Type != "workunit.created" {
					t.Errorf("%s: event %d is %s on %s", k, ev.Seq, ev.Type, ev.Topic)
					break
				}
			}
		}
	})

	t.Run("work units stay", func(t *testing.T) {
		u := decodeUnit(t, p.must(t, 200, "GET", "/v1/workunits/"+first.ID, nil))
		if u.Seq != first.Seq || u.Seq >= oldest {
			t.Errorf("unit %s: seq %d (written with %d; oldest kept event %d)", first.ID, u.Seq, first.Seq, oldest)
		}
		raws, _ := listAll(t, p, "/v1/contexts/r/workunits?limit=1000", "units")
		if len(raws) != 5001 {
			t.Errorf("context r lists %d units, want 5001", len(raws))
		}
		p.must(t, 200, "GET", "/v1/contexts/r", nil)
	})
	stopQuiet(t, p)
}

// TestGracefulStopWithSubscribers: SIGTERM with a WebSocket and an SSE
// stream open ends both at once (at most an unavailable notice with the
// last seq first) and the server exits 0; after a restart on the same data
// dir both resume from their last seq.
func TestGracefulStopWithSubscribers(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	seedContexts(t, p, "g") // seqs 1 and 2
	w := openWS(t, p)
	w.subscribe(t, "s", "contexts/*", 0)
	s := mustSSE(t, nil, sseURL(p.URL, []string{"contexts/g"}, 0), "")
	for _, seq := range []uint64{1, 2} {
		if ev, err := decodeEvent(w.mustFrame(t, "event", "s").Event); err != nil || ev.Seq != seq {
			t.Fatalf("ws: seq %d (%v), want %d", ev.Seq, err, seq)
		}
		if ev := s.mustEvent(t); ev.Seq != seq {
			t.Fatalf("sse: seq %d, want %d", ev.Seq, seq)
		}
	}

	// Connections without subscriptions too (these make the data race
	// above show at once).
	var idle []*wsConn
	for range 5 {
		c := openWS(t, p)
		c.pingPong(t)
		idle = append(idle, c)
	}

	start := time.Now()
	p.Stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("SIGTERM with open streams took %v", d)
	}
	for i, c := range idle {
		if f, err := c.next(10 * time.Second); err != nil || f.Err == nil {
			t.Errorf("idle WebSocket %d after the stop: %v %s, want the connection ended", i, err, f)
		}
	}
	for {
		f, err := w.next(10 * time.Second)
		if err != nil {
			t.Fatalf("ws after the stop: %v", err)
		}
		if f.Err != nil {
			break // the connection ended
		}
		if f.Op != "error" || f.ID != "s" || f.Code != "unavailable" || f.LastSeq == nil || *f.LastSeq != 2 {
			t.Errorf("ws after the stop: %s, want at most an unavailable error with last_seq 2", f)
		}
	}
	for {
		m, err := s.next(10 * time.Second)
		if err != nil {
			t.Fatalf("sse after the stop: %v", err)
		}
		if m.Err != nil {
			break
		}
		var e struct {
			Code    string  `json:"code"`
			LastSeq *uint64 `json:"last_seq"`
		}
		if m.Event != "error" || json.Unmarshal(m.Data, &e) != nil || e.Code != "unavailable" || e.LastSeq == nil || *e.LastSeq != 2 {
			t.Errorf("sse after the stop: %s, want at most an unavailable error with last_seq 2", m)
		}
	}

	p2 := startServer(t, dir)
	u := mustPostUnits(t, p2, []string{"g"}, nil)[0]
	w2 := openWS(t, p2)
	w2.subscribe(t, "s", "contexts/*", 2)
	if ev, err := decodeEvent(w2.mustFrame(t, "event", "s").Event); err != nil || ev.Seq != u.Seq || ev.Seq != 3 {
		t.Errorf("ws resumed after 2: seq %d (%v), want 3", ev.Seq, err)
	}
	s2 := mustSSE(t, nil, sseURL(p2.URL, []string{"contexts/g"}, -1), "2")
	if ev := s2.mustEvent(t); ev.Seq != 3 {
		t.Errorf("sse resumed after 2: seq %d, want 3", ev.Seq)
	}
	w2.closeNormal()
	s2.close()
	stopQuiet(t, p2)
}

type replayRace struct {
	whole, truncated int
	err              error
}

// raceRetention replays contexts/r from after_seq 0 again and again on one
// WebSocket until stop is set (or a replay was cut by history_truncated).
// A replay must deliver 1..head whole, or deliver 1..n and then a
// history_truncated error with last_seq n; a subscribe refused with
// history_truncated is fine too.
func raceRetention(p *proc, head uint64, stop *atomic.Bool) replayRace {
	var res replayRace
	w, status, body, err := dialWS(context.Background(), p.URL, nil)
	if err != nil {
		res.err = fmt.Errorf("replay racer: dial: %v %d %s", err, status, body)
		return res
	}
	defer w.closeNow()
	for i := 0; !stop.Load(); i++ {
		id := fmt.Sprint("race", i)
		if err := w.send(subscribeFrame(id, "contexts/r", 0)); err != nil {
			res.err = err
			return res
		}
		var last uint64
		subscribed := false
		for last < head {
			f, err := w.next(20 * time.Second)
			switch {
			case err != nil || f.Err != nil:
				res.err = fmt.Errorf("replay racer: %v %s", err, f)
				return res
			case f.ID != id:
				res.err = fmt.Errorf("replay racer: frame %s during replay %s", f, id)
				return res
			case f.Op == "error" && f.Code == "history_truncated" && f.OldestSeq != nil:
				if subscribed && (f.LastSeq == nil || *f.LastSeq != last) {
					res.err = fmt.Errorf("replay racer: %s after seq %d, want last_seq %d", f, last, last)
				}
				res.truncated++
				return res
			case f.Op == "subscribed" && !subscribed:
				subscribed = true
			case f.Op == "event" && subscribed:
				ev, err := decodeEvent(f.Event)
				if err != nil || ev.Seq != last+1 {
					res.err = fmt.Errorf("replay racer: after seq %d got %s (%v): a gap", last, f, err)
					return res
				}
				last = ev.Seq
			default:
				res.err = fmt.Errorf("replay racer: unexpected frame %s", f)
				return res
			}
		}
		res.whole++
		w.send(map[string]string{"op": "unsubscribe", "id": id})
	}
	return res
}

// rstClient is rtClient whose connections end with a TCP reset when closed
// (SO_LINGER 0): a client that vanishes.
var rstClient = &http.Client{Transport: &http.Transport{
	Proxy:             nil,
	DisableKeepAlives: true,
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return c, err
	},
}}

// TestRealtimeNoLeaks: after 200 WebSocket and 50 SSE clients connected,
// subscribed and went away (half of them abruptly), the server counts no
// connection and no subscription, and its goroutines return to the number
// before the clients came.
func TestRealtimeNoLeaks(t *testing.T) {
	t.Parallel()
	p := startServer(t, t.TempDir())
	topics := []string{"l0", "l1", "l2", "l3"}
	seedContexts(t, p, topics...)
	base := mustScrape(t, p)["go_goroutines"]

	// A writer keeps events flowing while the clients come and go.
	var (
		stop   atomic.Bool
		writer sync.WaitGroup
		werr   error
	)
	writer.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if _, err := postUnits(p, []string{topics[i%4], topics[(i+1)%4]}, nil); err != nil {
				werr = err
				return
			}
		}
	})

	var wg sync.WaitGroup
	errs := make(chan error, 250)
	gate := make(chan struct{}, 25) // clients at once
	for i := range 200 {
		wg.Go(func() {
			gate <- struct{}{}
			defer func() { <-gate }()
			errs <- wsVisitor(p, i, topics)
		})
	}
	for i := range 50 {
		wg.Go(func() {
			gate <- struct{}{}
			defer func() { <-gate }()
			errs <- sseVisitor(p, i, topics)
		})
	}
	wg.Wait()
	stop.Store(true)
	writer.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if werr != nil {
		t.Fatal(werr)
	}

	// An SSE stream notices that its client left only when it writes (an
	// event, or the heartbeat every 15 s): each poll writes one event to
	// every topic.
	want := map[string]float64{
		`engram_connections{transport="ws"}`:  0,
		`engram_connections{transport="sse"}`: 0,
		`engram_subscribers{transport="ws"}`:  0,
		`engram_subscribers{transport="sse"}`: 0,
		`engram_router_subscriptions`:         0,
	}
	var m map[string]float64
	start := time.Now()
	ok := pollUntil(40*time.Second, 100*time.Millisecond, func() bool {
		mustPostUnits(t, p, topics, nil)
		m = mustScrape(t, p)
		for k, v := range want {
			if m[k] != v {
				return false
			}
		}
		return m["go_goroutines"] <= base+20
	})
	report := fmt.Sprintf("go_goroutines %v (before the clients %v)", m["go_goroutines"], base)
	for k := range want {
		report += fmt.Sprintf(", %s %v", k, m[k])
	}
	if !ok {
		t.Fatalf("40 s after the clients left: %s", report)
	}
	t.Logf("%v after the clients left: %s", time.Since(start).Round(time.Millisecond), report)
	stopQuiet(t, p)
}

// wsVisitor connects, subscribes (1 to 3 subscriptions: exact or prefix,
// live or replaying), reads a little, and leaves: with the close handshake,
// by dropping the connection, or with a TCP reset.
func wsVisitor(p *proc, i int, topics []string) error {
	hc := rtClient
	if i%4 == 3 {
		hc = rstClient
	}
	w, status, body, err := dialWS(context.Background(), p.URL, hc)
	if err != nil {
		return fmt.Errorf("ws client %d: dial: %v %d %s", i, err, status, body)
	}
	defer w.closeNow()
	n := 1 + i%3
	for j := range n {
		topic := "contexts/" + topics[(i+j)%len(topics)]
		if j == 2 {
			topic = "contexts/*"
		}
		after := int64(-1)
		if (i+j)%2 == 0 {
			after = 0
		}
		if err := w.send(subscribeFrame(fmt.Sprint("s", j), topic, after)); err != nil {
			return fmt.Errorf("ws client %d: %v", i, err)
		}
	}
	// Read until every subscription is confirmed and a few events came.
	subscribed, events := 0, 0
	for subscribed < n || events < 3 {
		f, err := w.next(20 * time.Second)
		if err != nil || f.Err != nil {
			return fmt.Errorf("ws client %d: %v %s", i, err, f)
		}
		switch f.Op {
		case "subscribed":
			subscribed++
		case "event":
			events++
		default:
			return fmt.Errorf("ws client %d: unexpected frame %s", i, f)
		}
	}
	switch i % 4 {
	case 0:
		if err := w.send(map[string]string{"op": "unsubscribe", "id": "s0"}); err != nil {
			return err
		}
		return w.closeNormal()
	case 1:
		return w.closeNormal()
	}
	return nil // closeNow: dropped (2) or reset (3)
}

// sseVisitor opens a stream, reads ": ok" and a few events, and drops the
// connection (half of them with a TCP reset).
func sseVisitor(p *proc, i int, topics []string) error {
	hc := rtClient
	if i%2 == 1 {
		hc = rstClient
	}
	ts := []string{"contexts/" + topics[i%len(topics)]}
	if i%3 == 0 {
		ts = append(ts, "contexts/*")
	}
	after := int64(-1)
	if i%2 == 0 {
		after = 0
	}
	s, r, err := openSSE(hc, sseURL(p.URL, ts, after), "")
	if err != nil || s == nil {
		return fmt.Errorf("sse client %d: %v %s", i, err, r)
	}
	defer s.close()
	for range 3 {
		if m, err := s.next(20 * time.Second); err != nil || m.Err != nil {
			return fmt.Errorf("sse client %d: %v %s", i, err, m)
		}
	}
	return nil
}
