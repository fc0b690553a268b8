package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestRealtimeLive: the live semantics of /v1/ws and /v1/events and the
// protocol's answers to bad frames and limits.
func TestRealtimeLive(t *testing.T) {
	p := startServer(t, t.TempDir())
	created := seedContexts(t, p, "c1", "c2")

	t.Run("live subscription gets exactly the events after head_seq", func(t *testing.T) {
		// A writer runs before, during and after the subscribe.
		var (
			stop    atomic.Bool
			wg      sync.WaitGroup
			written atomic.Int64
			werr    error
			failed  atomic.Bool
		)
		wg.Go(func() {
			for i := 1; !stop.Load(); i++ {
				ctxs := make([]string, 1+i%7)
				for j := range ctxs {
					ctxs[j] = []string{"c1", "c2"}[(i+j)%2]
				}
				if _, err := postUnits(p, ctxs, json.RawMessage(`{"live":true}`)); err != nil {
					werr = err
					failed.Store(true)
					return
				}
				written.Add(int64(len(ctxs)))
			}
		})
		waitWritten := func(n int64) {
			t.Helper()
			if !pollUntil(20*time.Second, time.Millisecond, func() bool { return written.Load() >= n || failed.Load() }) {
				t.Fatalf("writer wrote %d units in 20 s, want %d", written.Load(), n)
			}
		}
		defer func() { stop.Store(true); wg.Wait() }()
		waitWritten(100)

		w := openWS(t, p)
		head := w.subscribe(t, "live", "contexts/c1", -1)
		// A live SSE stream opened after that subscribe starts after its
		// head_seq too.
		sse := mustSSE(t, nil, sseURL(p.URL, []string{"contexts/c1"}, -1), "")
		waitWritten(written.Load() + 300)
		stop.Store(true)
		wg.Wait()
		if werr != nil {
			t.Fatal(werr)
		}
		log := logOracle(t, p, created)
		want := oracleSeqs(log, []string{"contexts/c1"}, head)
		if len(want) == 0 {
			t.Fatalf("no event of contexts/c1 after head_seq %d", head)
		}
		var got []eventJSON
		for len(got) < len(want) {
			f := w.mustFrame(t, "event", "live")
			ev, err := decodeEvent(f.Event)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
		}
		if extra := w.pingPong(t); len(extra) > 0 {
			t.Errorf("frames after the last event of the topic: %v", extra)
		}
		checkReceived(t, "ws live subscription", got, want, log)

		// SSE has no head_seq: its events must be a gapless tail of the
		// topic, starting after the WebSocket's head_seq.
		all := oracleSeqs(log, []string{"contexts/c1"}, 0)
		var sgot []eventJSON
		for len(sgot) == 0 || sgot[len(sgot)-1].Seq < all[len(all)-1] {
			sgot = append(sgot, sse.mustEvent(t))
		}
		if sgot[0].Seq <= head {
			t.Errorf("live SSE stream opened after a subscription with head_seq %d got seq %d", head, sgot[0].Seq)
		}
		i := slices.Index(all, sgot[0].Seq)
		if i < 0 {
			t.Fatalf("SSE seq %d is not an event of contexts/c1", sgot[0].Seq)
		}
		checkReceived(t, "sse live stream", sgot, all[i:], log)
	})

	t.Run("overlapping topics deliver each event once", func(t *testing.T) {
		// contexts/c1 is also under contexts/*: replayed and live events of
		// c1 match both topics of the stream, and come once.
		s := mustSSE(t, nil, sseURL(p.URL, []string{"contexts/c1", "contexts/*"}, 0), "")
		w := openWS(t, p)
		w.subscribe(t, "both", "contexts/*", 0)
		for i := range 5 {
			mustPostUnits(t, p, []string{"c1", "c2", "c1"}, json.RawMessage(strconv.Itoa(i)))
		}
		log := logOracle(t, p, created)
		want := oracleSeqs(log, []string{"contexts/*"}, 0)
		var got, wgot []eventJSON
		for len(got) < len(want) {
			got = append(got, s.mustEvent(t))
		}
		for len(wgot) < len(want) {
			ev, err := decodeEvent(w.mustFrame(t, "event", "both").Event)
			if err != nil {
				t.Fatal(err)
			}
			wgot = append(wgot, ev)
		}
		checkReceived(t, "SSE on contexts/c1 and contexts/*", got, want, log)
		checkReceived(t, "WS on contexts/*", wgot, want, log)
		// Nothing more: write one event of c2 and see it come next.
		u := mustPostUnits(t, p, []string{"c2"}, nil)[0]
		if ev := s.mustEvent(t); ev.Seq != u.Seq {
			t.Errorf("SSE: after the log's end got seq %d, want %d", ev.Seq, u.Seq)
		}
		if ev, err := decodeEvent(w.mustFrame(t, "event", "both").Event); err != nil || ev.Seq != u.Seq {
			t.Errorf("WS: after the log's end got %d (%v), want seq %d", ev.Seq, err, u.Seq)
		}
	})

	t.Run("unsubscribe ends one subscription, the other goes on", func(t *testing.T) {
		w := openWS(t, p)
		w.subscribe(t, "a", "contexts/c1", -1)
		w.subscribe(t, "b", "contexts/*", -1)
		count := func(n int) map[string][]uint64 {
			t.Helper()
			got := map[string][]uint64{}
			for len(got["a"])+len(got["b"]) < n {
				f := w.mustNext(t)
				if f.Op != "event" {
					t.Fatalf("got %s, want an event", f)
				}
				ev, err := decodeEvent(f.Event)
				if err != nil {
					t.Fatal(err)
				}
				got[f.ID] = append(got[f.ID], ev.Seq)
			}
			return got
		}
		us := mustPostUnits(t, p, []string{"c1", "c1", "c1"}, nil)
		got := count(6)
		want := []uint64{us[0].Seq, us[1].Seq, us[2].Seq}
		if !slices.Equal(got["a"], want) || !slices.Equal(got["b"], want) {
			t.Fatalf("before unsubscribe: got %v, want %v for a and b", got, want)
		}

		w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "a"})
		if extra := w.pingPong(t); len(extra) > 0 {
			t.Fatalf("frames after unsubscribe: %v", extra)
		}
		us = mustPostUnits(t, p, []string{"c1", "c2", "c1"}, nil)
		got = count(3)
		if len(got["a"]) > 0 || !slices.Equal(got["b"], []uint64{us[0].Seq, us[1].Seq, us[2].Seq}) {
			t.Fatalf("after unsubscribing a: got %v, want only b with %v", got, us)
		}
		if extra := w.pingPong(t); len(extra) > 0 {
			t.Fatalf("frames for the unsubscribed id: %v", extra)
		}

		// The id is gone: unsubscribing again is not_found; it can be used
		// again.
		w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "a"})
		if f := w.mustFrame(t, "error", "a"); f.Code != "not_found" || f.Message == "" {
			t.Errorf("second unsubscribe: %s, want code not_found with a message", f)
		}
		head := w.subscribe(t, "a", "contexts/c2", -1)
		if head != us[2].Seq {
			t.Errorf("head_seq %d, want %d (the last committed)", head, us[2].Seq)
		}
	})

	t.Run("ping pong", func(t *testing.T) {
		w := openWS(t, p)
		for range 3 {
			if extra := w.pingPong(t); len(extra) > 0 {
				t.Errorf("frames before pong: %v", extra)
			}
		}
	})

	t.Run("bad frames answer error frames and the connection stays", func(t *testing.T) {
		w := openWS(t, p)
		w.subscribe(t, "dup", "contexts/c1", -1)
		long := "contexts/" + strings.Repeat("x", 520)
		for _, tc := range []struct {
			name, frame string
			codes       []string
			id          string // the error frame's id
		}{
			{"no id", `{"op":"subscribe","topic":"contexts/c1"}`, []string{"invalid_argument"}, ""},
			{"bad id", `{"op":"subscribe","id":"bad id!","topic":"contexts/c1"}`, []string{"invalid_argument"}, "bad id!"},
			{"no topic", `{"op":"subscribe","id":"x1"}`, []string{"invalid_argument"}, "x1"},
			{"empty segment", `{"op":"subscribe","id":"x1","topic":"contexts//c1"}`, []string{"invalid_argument"}, "x1"},
			{"star inside", `{"op":"subscribe","id":"x1","topic":"contexts/*/c1"}`, []string{"invalid_argument"}, "x1"},
			{"bare star", `{"op":"subscribe","id":"x1","topic":"*"}`, []string{"invalid_argument"}, "x1"},
			{"leading slash", `{"op":"subscribe","id":"x1","topic":"/contexts/c1"}`, []string{"invalid_argument"}, "x1"},
			{"long topic", `{"op":"subscribe","id":"x1","topic":"` + long + `"}`, []string{"invalid_argument"}, "x1"},
			{"negative after_seq", `{"op":"subscribe","id":"x1","topic":"contexts/c1","after_seq":-1}`, []string{"invalid_argument"}, "x1"},
			{"string after_seq", `{"op":"subscribe","id":"x1","topic":"contexts/c1","after_seq":"5"}`, []string{"invalid_argument"}, "x1"},
			{"fraction after_seq", `{"op":"subscribe","id":"x1","topic":"contexts/c1","after_seq":1.5}`, []string{"invalid_argument"}, "x1"},
			{"after_seq beyond the head", `{"op":"subscribe","id":"x1","topic":"contexts/c1","after_seq":999999999}`, []string{"invalid_argument"}, "x1"},
			{"unknown field", `{"op":"subscribe","id":"x1","topic":"contexts/c1","topics":["a"]}`, []string{"invalid_argument"}, "x1"},
			{"unknown op", `{"op":"jump","id":"x1"}`, []string{"invalid_argument"}, "x1"},
			{"no op", `{"id":"x1"}`, []string{"invalid_argument"}, "x1"},
			{"empty object", `{}`, []string{"invalid_argument"}, ""},
			{"array", `[1,2]`, []string{"invalid_argument"}, ""},
			{"string", `"subscribe"`, []string{"invalid_argument"}, ""},
			{"duplicate id", `{"op":"subscribe","id":"dup","topic":"contexts/c2"}`, []string{"conflict"}, "dup"},
			{"unsubscribe unknown", `{"op":"unsubscribe","id":"nope"}`, []string{"not_found"}, "nope"},
			{"unsubscribe without id", `{"op":"unsubscribe"}`, []string{"not_found", "invalid_argument"}, ""},
		} {
			w.mustSend(t, tc.frame)
			f := w.mustNext(t)
			switch {
			case f.Op != "error":
				t.Errorf("%s: got %s, want an error frame", tc.name, f)
			case !slices.Contains(tc.codes, f.Code) || f.Message == "":
				t.Errorf("%s: got %s, want code %v and a message", tc.name, f, tc.codes)
			case f.ID != tc.id:
				t.Errorf("%s: error frame id %q, want %q: %s", tc.name, f.ID, tc.id, f)
			}
			if extra := w.pingPong(t); len(extra) > 0 {
				t.Errorf("%s: more frames: %v", tc.name, extra)
			}
		}
		// x1 was never created; dup still works.
		w.subscribe(t, "x1", "contexts/c2", 0)
		us := mustPostUnits(t, p, []string{"c1"}, nil)
		var got []string
		for len(got) < 1 {
			f := w.mustNext(t)
			if f.Op != "event" {
				t.Fatalf("got %s", f)
			}
			if f.ID == "dup" {
				got = append(got, f.ID)
				if ev, _ := decodeEvent(f.Event); ev.Seq != us[0].Seq {
					t.Errorf("dup got seq %d, want %d", ev.Seq, us[0].Seq)
				}
			}
		}
	})

	t.Run("protocol violations close the connection", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			typ    websocket.MessageType
			frame  []byte
			status websocket.StatusCode
			reason bool
		}{
			{"not JSON", websocket.MessageText, []byte(`{"op":`), websocket.StatusInvalidFramePayloadData, true},
			{"binary", websocket.MessageBinary, []byte(`{"op":"ping"}`), websocket.StatusUnsupportedData, true},
			{"over 64 KiB", websocket.MessageText, paddedFrame(64<<10 + 1), websocket.StatusMessageTooBig, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := openWS(t, p)
				w.pingPong(t)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := w.c.Write(ctx, tc.typ, tc.frame)
				cancel()
				if err != nil {
					t.Fatalf("write: %v", err)
				}
				f, err := w.next(10 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var ce websocket.CloseError
				if !errors.As(f.Err, &ce) {
					t.Fatalf("got %s, want the connection closed with %d", f, tc.status)
				}
				if ce.Code != tc.status {
					t.Errorf("close status %d %q, want %d", ce.Code, ce.Reason, tc.status)
				}
				if tc.reason && ce.Reason == "" {
					t.Errorf("close %d without a reason", ce.Code)
				}
			})
		}
		t.Run("exactly 64 KiB is a frame", func(t *testing.T) {
			w := openWS(t, p)
			w.mustSend(t, paddedFrame(64<<10))
			if f := w.mustNext(t); f.Op != "error" || f.Code != "invalid_argument" {
				t.Errorf("got %s, want an invalid_argument error frame (unknown field)", f)
			}
			w.pingPong(t)
		})
	})

	t.Run("bad SSE and upgrade requests", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, lastID, field string
		}{
			{"no topic", "/v1/events", "", "topic"},
			{"bad topic", "/v1/events?topic=contexts//c1", "", "topic"},
			{"star inside", "/v1/events?topic=contexts/*/c1", "", "topic"},
			{"negative after_seq", "/v1/events?topic=contexts/c1&after_seq=-1", "", "after_seq"},
			{"word after_seq", "/v1/events?topic=contexts/c1&after_seq=abc", "", "after_seq"},
			{"bad Last-Event-ID", "/v1/events?topic=contexts/c1", "abc", "Last-Event-ID"},
			{"after_seq beyond the head", "/v1/events?topic=contexts/c1&after_seq=999999999", "", "after_seq"},
		} {
			s, r, err := openSSE(nil, p.URL+tc.path, tc.lastID)
			if s != nil {
				s.close()
				t.Errorf("%s: the stream started", tc.name)
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			checkError(t, r, http.StatusBadRequest, "invalid_argument", tc.field)
		}
		// A plain GET of /v1/ws is not an upgrade.
		checkError(t, p.call(t, "GET", "/v1/ws", nil), http.StatusBadRequest, "invalid_argument", "")
	})

	t.Run("max subscriptions", func(t *testing.T) {
		q := startServer(t, t.TempDir(), "--max-subscriptions", "2")
		w := openWS(t, q)
		w.subscribe(t, "s1", "contexts/a", -1)
		w.subscribe(t, "s2", "contexts/*", 0)
		w.mustSend(t, subscribeFrame("s3", "contexts/b", -1))
		if f := w.mustFrame(t, "error", "s3"); f.Code == "" || f.Message == "" {
			t.Errorf("third subscription: %s, want an error with code and message", f)
		}
		w.pingPong(t)
		// A second connection has its own two.
		w2 := openWS(t, q)
		w2.subscribe(t, "s1", "contexts/a", -1)
		w2.subscribe(t, "s2", "contexts/b", -1)
		// Room again after an unsubscribe.
		w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "s1"})
		w.subscribe(t, "s3", "contexts/b", -1)

		us := mustPostUnits(t, q, []string{"b"}, nil) // context.created, then the unit
		got := map[string][]uint64{}
		for range 4 {
			f := w.mustNext(t)
			ev, err := decodeEvent(f.Event)
			if f.Op != "event" || err != nil {
				t.Fatalf("got %s, want an event (%v)", f, err)
			}
			got[f.ID] = append(got[f.ID], ev.Seq)
		}
		want := []uint64{us[0].Seq - 1, us[0].Seq}
		if len(got) != 2 || !slices.Equal(got["s2"], want) || !slices.Equal(got["s3"], want) {
			t.Errorf("got %v, want %v for s2 and s3", got, want)
		}
		r := q.call(t, "GET", sseURL("", []string{"contexts/a", "contexts/b", "contexts/c"}, -1), nil)
		checkError(t, r, http.StatusBadRequest, "invalid_argument", "topic")
		s := mustSSE(t, nil, sseURL(q.URL, []string{"contexts/a", "contexts/b"}, 0), "")
		for _, seq := range []uint64{us[0].Seq - 1, us[0].Seq} {
			if ev := s.mustEvent(t); ev.Seq != seq {
				t.Errorf("SSE: got seq %d, want %d", ev.Seq, seq)
			}
		}
		w.closeNow()
		w2.closeNow()
		stopQuiet(t, q)
	})

	t.Run("max connections", func(t *testing.T) {
		q := startServer(t, t.TempDir(), "--max-connections", "2")
		// An SSE stream only learns that its client left when it writes
		// (an event or the 15 s heartbeat); poke writes events to its topic
		// while waiting for the count to drop.
		conns := func(want map[string]float64, poke bool) {
			t.Helper()
			var m map[string]float64
			if !pollUntil(10*time.Second, 5*time.Millisecond, func() bool {
				if poke {
					mustPostUnits(t, q, []string{"a"}, nil)
				}
				m = mustScrape(t, q)
				for tr, n := range want {
					if m[`engram_connections{transport="`+tr+`"}`] != n {
						return false
					}
				}
				return true
			}) {
				t.Fatalf("engram_connections never reached %v: ws %v, sse %v", want,
					m[`engram_connections{transport="ws"}`], m[`engram_connections{transport="sse"}`])
			}
		}
		refused := func(what string) {
			t.Helper()
			w, status, body, err := dialWS(context.Background(), q.URL, nil)
			if err == nil {
				w.closeNow()
				t.Errorf("%s: WebSocket upgrade succeeded over the limit", what)
			} else if status != http.StatusServiceUnavailable {
				t.Errorf("%s: refused WebSocket upgrade answered %d %s (%v), want 503", what, status, body, err)
			}
			s, r, err := openSSE(nil, sseURL(q.URL, []string{"contexts/a"}, -1), "")
			if s != nil {
				s.close()
				t.Errorf("%s: SSE stream opened over the limit", what)
				return
			}
			if err != nil {
				t.Fatalf("%s: SSE: %v", what, err)
			}
			checkError(t, r, http.StatusServiceUnavailable, "unavailable", "")
		}

		a, b := openWS(t, q), openWS(t, q)
		a.pingPong(t)
		b.pingPong(t)
		conns(map[string]float64{"ws": 2}, false)
		refused("2 WebSockets open")
		a.closeNow()
		conns(map[string]float64{"ws": 1, "sse": 0}, false)
		s := mustSSE(t, nil, sseURL(q.URL, []string{"contexts/a"}, -1), "")
		conns(map[string]float64{"ws": 1, "sse": 1}, false)
		refused("a WebSocket and an SSE stream open")
		// The ones admitted still work.
		b.pingPong(t)
		mustPostUnits(t, q, []string{"a"}, nil)
		if ev := s.mustEvent(t); ev.Type != "context.created" {
			t.Errorf("SSE under the limit: got %s %d, want context.created", ev.Type, ev.Seq)
		}
		b.closeNormal()
		s.close()
		conns(map[string]float64{"ws": 0, "sse": 0}, true)
		c := openWS(t, q)
		c.pingPong(t)
		c.closeNormal()
		if m := mustScrape(t, q); m[`engram_connections_refused_total{reason="max_connections"}`] < 4 {
			t.Errorf("engram_connections_refused_total %v, want at least 4", m[`engram_connections_refused_total{reason="max_connections"}`])
		}
		stopQuiet(t, q)
	})
	stopQuiet(t, p)
}

// TestUnsubscribeDuringReplay: after an unsubscribe, no frame of that
// subscription follows the answer to the next frame, and an id that was
// unsubscribed can be used again for a new subscription that gets only its
// own events.
func TestUnsubscribeDuringReplay(t *testing.T) {
	p := startServer(t, t.TempDir())
	seedContexts(t, p, "p")
	batch := make([]string, 1000)
	for i := range batch {
		batch[i] = "p"
	}
	mustPostUnits(t, p, batch, nil)
	head := p.headSeq(t)
	w := openWS(t, p)
	bad := 0
	for i := range 50 {
		// Subscribe with a replay, unsubscribe at once, then a ping: the
		// frames before the pong may hold events of the old subscription.
		w.mustSend(t, subscribeFrame("a", "contexts/p", 0))
		w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "a"})
		w.pingPong(t)
		// The same id again, for the last event only.
		w.mustSend(t, subscribeFrame("a", "contexts/p", int64(head)-1))
		var frames []string
		for {
			f := w.mustNext(t)
			frames = append(frames, clip(f.Raw))
			if f.Op == "event" && strings.Contains(string(f.Event), `"seq":`+itoa(head)+`,`) {
				break
			}
		}
		w.mustSend(t, map[string]string{"op": "unsubscribe", "id": "a"})
		w.pingPong(t)
		if len(frames) != 2 || !strings.HasPrefix(frames[0], `{"op":"subscribed","id":"a"`) {
			if bad++; bad <= 3 {
				t.Errorf("round %d: subscribe a after_seq %d after unsubscribing a: got %d frames %q, want subscribed and the event %d",
					i, head-1, len(frames), frames, head)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of 50 rounds got frames of an unsubscribed subscription", bad)
	}
	w.closeNow()
	stopQuiet(t, p)
}

// paddedFrame is a JSON ping frame of exactly n bytes, padded with an
// unknown field.
func paddedFrame(n int) []byte {
	const head, tail = `{"op":"ping","pad":"`, `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
