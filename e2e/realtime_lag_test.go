package e2e_test

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lagPayload makes events of about 1.3 KB, so that the socket buffers fill
// after a few thousand.
var lagPayload = json.RawMessage(`"` + strings.Repeat("lag ", 256) + `"`)

// writeUntilLagged writes batches of 500 units (with payload) to ctx until
// engram_lagged_total{transport} rises above zero (at most 30,000 units),
// and returns how many units it wrote. The batch that overflowed has
// events after the cut.
func writeUntilLagged(t *testing.T, p *proc, ctx, transport string, payload json.RawMessage) int {
	t.Helper()
	batch := make([]string, 500)
	for i := range batch {
		batch[i] = ctx
	}
	series := `engram_lagged_total{transport="` + transport + `"}`
	n := 0
	for n < 30000 {
		mustPostUnits(t, p, batch, payload)
		n += len(batch)
		if mustScrape(t, p)[series] > 0 {
			// The server cuts a client that does not read for 10 s off
			// altogether: the test reads again at once.
			return n
		}
	}
	t.Fatalf("%d units written to a subscriber that does not read, and %s is still 0", n, series)
	return n
}

// TestSlowConsumerLagged: a subscriber that stops reading is cut off with
// lagged and the exact last seq it was given, and resumes from there to a
// complete sequence.
func TestSlowConsumerLagged(t *testing.T) {
	t.Run("ws", func(t *testing.T) { lagWS(t, 0) })
	// The subscriber stops reading during its replay: the live events held
	// for it meanwhile overflow the router's buffer (8192).
	t.Run("ws during replay", func(t *testing.T) { lagWS(t, 8000) })

	t.Run("sse", func(t *testing.T) {
		p := startServer(t, t.TempDir())
		created := seedContexts(t, p, "sse")
		s := mustSSE(t, smallRcvBufClient, sseURL(p.URL, []string{"contexts/sse"}, 0), "")
		start := time.Now()
		n := writeUntilLagged(t, p, "sse", "sse", lagPayload)
		t.Logf("lagged after %d units (%v)", n, time.Since(start).Round(time.Millisecond))

		var got []eventJSON
		var last uint64
		for {
			m, err := s.next(20 * time.Second)
			if err != nil || m.Err != nil {
				t.Fatalf("SSE: %v %s", err, m)
			}
			if m.Event == "error" {
				var e struct {
					Code    string  `json:"code"`
					LastSeq *uint64 `json:"last_seq"`
				}
				if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != "lagged" || e.LastSeq == nil {
					t.Fatalf("got %s, want a lagged error with last_seq", m)
				}
				if *e.LastSeq != last {
					t.Fatalf("lagged last_seq %d, but the last event received is %d", *e.LastSeq, last)
				}
				break
			}
			if m.Event == "" && m.Data == nil {
				continue // : ping
			}
			ev, err := sseEvent(m)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
			last = ev.Seq
		}
		// Then the stream ends.
		if m, err := s.next(10 * time.Second); err != nil || m.Err != io.EOF {
			t.Fatalf("after the lagged error: %v %s, want the end of the stream", err, m)
		}
		log := logOracle(t, p, created)
		want := oracleSeqs(log, []string{"contexts/sse"}, 0)
		t.Logf("cut after seq %d; the topic ends at %d (%d events received)", last, want[len(want)-1], len(got))
		if last >= want[len(want)-1] {
			t.Fatalf("lagged at seq %d, the last event of the topic: nothing was dropped", last)
		}
		s2 := mustSSE(t, nil, sseURL(p.URL, []string{"contexts/sse"}, -1), strconv.FormatUint(last, 10))
		for got[len(got)-1].Seq < want[len(want)-1] {
			got = append(got, s2.mustEvent(t))
		}
		checkReceived(t, "lagged sse subscriber", got, want, log)
		if m := mustScrape(t, p); m[`engram_lagged_total{transport="sse"}`] != 1 {
			t.Errorf("engram_lagged_total{transport=\"sse\"} %v, want 1", m[`engram_lagged_total{transport="sse"}`])
		}
		s2.close()
		stopQuiet(t, p)
	})
}

// lagWS subscribes to a topic that already has prefill units (from
// after_seq 0), stops reading, writes until the subscription is cut off,
// and checks the cut and the resume on the same connection.
func lagWS(t *testing.T, prefill int) {
	p := startServer(t, t.TempDir())
	created := seedContexts(t, p, "ws")
	for n := 0; n < prefill; n += 500 {
		batch := make([]string, 500)
		for i := range batch {
			batch[i] = "ws"
		}
		mustPostUnits(t, p, batch, lagPayload)
	}
	w, status, body, err := dialWS(t.Context(), p.URL, smallRcvBufClient)
	if err != nil {
		t.Fatalf("dial: %v %d %s", err, status, body)
	}
	defer w.closeNow()
	// A second subscription on the connection is not cut: it reads a
	// topic without writes.
	w.subscribe(t, "quiet", "contexts/none", -1)
	w.subscribe(t, "s1", "contexts/ws", 0)
	// From here on the client reads nothing (the frame reader holds one
	// frame at most) until writeUntilLagged returns.
	start := time.Now()
	// Live events wait in the router while the replay is blocked: their
	// number counts, not their size.
	payload := lagPayload
	if prefill > 0 {
		payload = nil
	}
	n := writeUntilLagged(t, p, "ws", "ws", payload)
	t.Logf("lagged after %d units (%v)", n, time.Since(start).Round(time.Millisecond))

	var got []eventJSON
	var last uint64
	for {
		f := w.mustNext(t)
		if f.Op == "error" {
			if f.ID != "s1" || f.Code != "lagged" || f.LastSeq == nil || f.Message == "" {
				t.Fatalf("got %s, want a lagged error for s1 with last_seq and a message", f)
			}
			if *f.LastSeq != last {
				t.Fatalf("lagged last_seq %d, but the last event received is %d", *f.LastSeq, last)
			}
			break
		}
		if f.Op != "event" || f.ID != "s1" {
			t.Fatalf("got %s, want an event of s1", f)
		}
		ev, err := decodeEvent(f.Event)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
		last = ev.Seq
	}
	head := p.headSeq(t)
	t.Logf("cut after seq %d of %d (%d events received)", last, head, len(got))
	if last >= head {
		t.Fatalf("lagged at seq %d, but the head is %d: nothing was dropped", last, head)
	}
	// The connection stays; the same id resumes after last_seq, and
	// nothing of the old subscription comes in between.
	w.mustSend(t, subscribeFrame("s1", "contexts/ws", int64(last)))
	if f := w.mustNext(t); f.Op != "subscribed" || f.ID != "s1" {
		t.Fatalf("after the lagged frame: got %s, want subscribed", f)
	}
	log := logOracle(t, p, created)
	want := oracleSeqs(log, []string{"contexts/ws"}, 0)
	for len(got) < len(want) && (len(got) == 0 || got[len(got)-1].Seq < want[len(want)-1]) {
		f := w.mustFrame(t, "event", "s1")
		ev, err := decodeEvent(f.Event)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if extra := w.pingPong(t); len(extra) > 0 {
		t.Errorf("frames after the end of the topic: %v", extra)
	}
	// The other subscription of the connection was not cut: it is still
	// there to unsubscribe (no not_found answer).
	w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "quiet"})
	if extra := w.pingPong(t); len(extra) > 0 {
		t.Errorf("unsubscribe of the quiet subscription: %v", extra)
	}
	checkReceived(t, "lagged ws subscriber", got, want, log)
	if m := mustScrape(t, p); m[`engram_lagged_total{transport="ws"}`] != 1 {
		t.Errorf("engram_lagged_total{transport=\"ws\"} %v, want 1", m[`engram_lagged_total{transport="ws"}`])
	}
	w.closeNormal()
	stopQuiet(t, p)
}
