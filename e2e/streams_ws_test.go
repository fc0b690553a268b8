package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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

// iii's stream protocol on /stream, presence, and stream events on /v1/ws
// and /v1/events, against the binary.

// iiiMsg is one server frame of /stream, or the read error that ended the
// connection.
type iiiMsg struct {
	Raw []byte
	Err error
}

// iiiConn is a client of /stream. One goroutine reads frames and hands them
// over unbuffered.
type iiiConn struct {
	c      *websocket.Conn
	frames chan iiiMsg
	done   chan struct{}
	cancel context.CancelFunc
}

// dialIII opens a WebSocket to path (/stream or /stream/{s}/{g}/); it is
// closed (abruptly) at cleanup unless closed before.
func dialIII(t testing.TB, p *proc, path string) *iiiConn {
	t.Helper()
	return dialIIIWith(t, p, path, rtClient)
}

func dialIIIWith(t testing.TB, p *proc, path string, hc *http.Client) *iiiConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, p.URL+path, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		var body []byte
		if resp != nil && resp.Body != nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		t.Fatalf("dial %s%s: %v %s", p.URL, path, err, body)
	}
	c.SetReadLimit(16 << 20)
	rctx, rcancel := context.WithCancel(context.Background())
	w := &iiiConn{c: c, frames: make(chan iiiMsg), done: make(chan struct{}), cancel: rcancel}
	go func() {
		defer close(w.done)
		for {
			typ, b, err := c.Read(rctx)
			m := iiiMsg{Raw: b, Err: err}
			if err == nil && typ != websocket.MessageText {
				m.Err = fmt.Errorf("server sent a %v frame", typ)
			}
			select {
			case w.frames <- m:
			case <-rctx.Done():
				return
			}
			if m.Err != nil {
				return
			}
		}
	}()
	t.Cleanup(w.closeNow)
	return w
}

// closeNow drops the TCP connection without a close frame (an abrupt
// disconnect) and waits for the reader.
func (w *iiiConn) closeNow() {
	w.c.CloseNow()
	w.cancel()
	<-w.done
}

// closeNormal closes with the close handshake.
func (w *iiiConn) closeNormal(t testing.TB) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- w.c.Close(websocket.StatusNormalClosure, "bye") }()
	for running := true; running; {
		select {
		case <-w.frames:
		case <-w.done:
			running = false
		}
	}
	if err := <-errc; err != nil {
		t.Errorf("close: %v", err)
	}
	w.cancel()
}

func (w *iiiConn) send(t testing.TB, v any) {
	t.Helper()
	b, ok := v.(string)
	if !ok {
		b = string(mustJSON(t, v))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(b)); err != nil {
		t.Fatalf("/stream send %s: %v", b, err)
	}
}

// next returns the next frame; it fails the test on a read error or after
// 20 s.
func (w *iiiConn) next(t testing.TB) []byte {
	t.Helper()
	tm := time.NewTimer(20 * time.Second)
	defer tm.Stop()
	select {
	case m := <-w.frames:
		if m.Err != nil {
			t.Fatalf("/stream: %v", m.Err)
		}
		return m.Raw
	case <-tm.C:
		t.Fatalf("/stream: no frame within 20 s")
		return nil
	}
}

func joinFrame(sub, stream, group string, id ...string) map[string]any {
	d := map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}
	if len(id) > 0 {
		d["id"] = id[0]
	}
	return map[string]any{"type": "join", "data": d}
}

func leaveFrame(sub, stream, group string) map[string]any {
	return map[string]any{"type": "leave", "data": map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}}
}

// testStart bounds the timestamps frames may carry.
var testStart = time.Now()

// checkStreamFrame checks that raw is exactly {"type":"stream",
// "timestamp":<ms>,"streamName","groupId","id","event"} with these values
// (id nil is JSON null) and event equal to the JSON event.
func checkStreamFrame(t testing.TB, raw []byte, stream, group string, id *string, event string) {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("frame is not a JSON object: %v: %s", err, clip(raw))
	}
	keys := slices.Sorted(maps.Keys(f))
	if !slices.Equal(keys, []string{"event", "groupId", "id", "streamName", "timestamp", "type"}) {
		t.Errorf("frame keys %v, want event, groupId, id, streamName, timestamp, type: %s", keys, clip(raw))
	}
	ts, err := strconv.ParseInt(string(f["timestamp"]), 10, 64)
	if err != nil || ts < testStart.Add(-time.Second).UnixMilli() || ts > time.Now().Add(time.Second).UnixMilli() {
		t.Errorf("timestamp %s is not a ms integer of this test's time: %s", f["timestamp"], clip(raw))
	}
	wantID := "null"
	if id != nil {
		wantID = strconv.Quote(*id)
	}
	if string(f["type"]) != `"stream"` || string(f["streamName"]) != strconv.Quote(stream) ||
		string(f["groupId"]) != strconv.Quote(group) || !jsonEqual(f["id"], []byte(wantID)) {
		t.Errorf("frame %s, want type stream, streamName %q, groupId %q, id %s", clip(raw), stream, group, wantID)
	}
	if !jsonEqual(f["event"], []byte(event)) {
		t.Errorf("frame event %s, want %s", clip(f["event"]), event)
	}
}

// nextStream reads the next frame and checks it with checkStreamFrame.
func (w *iiiConn) nextStream(t testing.TB, stream, group string, id *string, event string) {
	t.Helper()
	checkStreamFrame(t, w.next(t), stream, group, id, event)
}

// nextError reads the next frame and checks that it is an error frame with
// code and a message containing msg; want holds the other keys it must
// carry (subscriptionId, streamName, ...), and it has no other.
func (w *iiiConn) nextError(t testing.TB, code, msg string, want map[string]string) {
	t.Helper()
	raw := w.next(t)
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("frame is not a JSON object: %v: %s", err, clip(raw))
	}
	m, _ := f["message"].(string)
	if f["type"] != "error" || f["code"] != code || m == "" || !strings.Contains(m, msg) {
		t.Errorf("frame %s, want an error frame with code %q and a message naming %q", clip(raw), code, msg)
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("error frame %s: %s is %v, want %q", clip(raw), k, f[k], v)
		}
	}
	for k := range f {
		if _, ok := want[k]; !ok && k != "type" && k != "code" && k != "message" {
			t.Errorf("error frame %s: unexpected key %q", clip(raw), k)
		}
	}
}

func ptr(s string) *string { return &s }

func orNullJSON(v json.RawMessage) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}

func TestStreamWSFrames(t *testing.T) {
	p := startServer(t, t.TempDir())
	const s, g = "ws", "g"
	item := func(id string) string { return "/v1/streams/ws/g/" + id }
	for _, id := range []string{"c", "a", "b"} {
		p.must(t, 200, "PUT", item(id), `{"id":"`+id+`"}`)
	}
	// Presence, seen live from before the first join.
	presence := mustSSE(t, nil, sseURL(p.URL, []string{"streams/ws/g"}, -1), "")
	nextPresence := func(t *testing.T, typ, sub, id string) {
		t.Helper()
		for {
			ev := presence.mustEvent(t)
			if ev.Type != "stream.join" && ev.Type != "stream.leave" {
				continue
			}
			want := `{"subscription_id":"` + sub + `","id":` + id + `,"context":null}`
			if ev.Type != typ || ev.Topic != "streams/ws/g" || !jsonEqual(ev.Data, []byte(want)) {
				t.Fatalf("presence event %s %s %s, want %s %s", ev.Type, ev.Topic, ev.Data, typ, want)
			}
			return
		}
	}

	grp := dialIII(t, p, "/stream")
	t.Run("a group join syncs its values in id order", func(t *testing.T) {
		grp.send(t, joinFrame("s1", s, g))
		grp.nextStream(t, s, g, nil, `{"type":"sync","data":[{"id":"a"},{"id":"b"},{"id":"c"}]}`)
		nextPresence(t, "stream.join", "s1", "null")
	})
	t.Run("changes reach the group join", func(t *testing.T) {
		p.must(t, 200, "PUT", item("d"), `{"id":"d","v":1}`)
		grp.nextStream(t, s, g, ptr("d"), `{"type":"create","data":{"id":"d","v":1}}`)
		p.must(t, 200, "PUT", item("a"), `{"id":"a","v":2}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"update","data":{"id":"a","v":2}}`)
		p.must(t, 200, "PATCH", item("b"), `{"ops":[{"type":"increment","path":"v","by":3}]}`)
		grp.nextStream(t, s, g, ptr("b"), `{"type":"update","data":{"id":"b","v":3}}`)
		p.must(t, 200, "PATCH", item("e"), `{"ops":[{"type":"set","path":"id","value":"e"}]}`)
		grp.nextStream(t, s, g, ptr("e"), `{"type":"create","data":{"id":"e"}}`)
		p.must(t, 200, "DELETE", item("c"), nil)
		grp.nextStream(t, s, g, ptr("c"), `{"type":"delete","data":{"id":"c"}}`)
		p.must(t, 202, "POST", item("events"), `{"type":"typing","data":{"who":"u"},"id":"a"}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"event","event":{"type":"typing","data":{"who":"u"}}}`)
		p.must(t, 202, "POST", item("events"), `{"type":"ping"}`)
		grp.nextStream(t, s, g, nil, `{"type":"event","event":{"type":"ping","data":null}}`)
		p.must(t, 200, "POST", "/v1/functions/stream::send", `{"stream_name":"ws","group_id":"g","type":"fn","data":[1]}`)
		grp.nextStream(t, s, g, nil, `{"type":"event","event":{"type":"fn","data":[1]}}`)
		p.must(t, 200, "POST", "/v1/functions/stream::set", `{"stream_name":"ws","group_id":"g","item_id":"f","data":"x"}`)
		grp.nextStream(t, s, g, ptr("f"), `{"type":"create","data":"x"}`)
		// Another group of the stream, and another stream, are not joined.
		p.must(t, 200, "PUT", "/v1/streams/ws/other/a", `1`)
		p.must(t, 200, "PUT", "/v1/streams/ws2/g/a", `1`)
		p.must(t, 200, "DELETE", item("f"), nil)
		grp.nextStream(t, s, g, ptr("f"), `{"type":"delete","data":"x"}`)
	})

	t.Run("an item join gets that item only", func(t *testing.T) {
		it := dialIII(t, p, "/stream")
		it.send(t, joinFrame("i1", s, g, "a"))
		it.nextStream(t, s, g, ptr("a"), `{"type":"sync","data":{"id":"a","v":2}}`)
		nextPresence(t, "stream.join", "i1", `"a"`)
		absent := dialIII(t, p, "/stream")
		absent.send(t, joinFrame("i2", s, g, "zz"))
		absent.nextStream(t, s, g, ptr("zz"), `{"type":"sync","data":null}`)
		nextPresence(t, "stream.join", "i2", `"zz"`)

		// Neither another item's change nor a send without id or with
		// another id reaches it: the next frame it gets is its own.
		p.must(t, 200, "PUT", item("b"), `{"id":"b","v":4}`)
		p.must(t, 202, "POST", item("events"), `{"type":"t0"}`)
		p.must(t, 202, "POST", item("events"), `{"type":"t1","id":"b"}`)
		p.must(t, 202, "POST", item("events"), `{"type":"t2","id":"a","data":2}`)
		it.nextStream(t, s, g, ptr("a"), `{"type":"event","event":{"type":"t2","data":2}}`)
		p.must(t, 200, "PATCH", item("a"), `{"ops":[{"type":"remove","path":"v"}]}`)
		it.nextStream(t, s, g, ptr("a"), `{"type":"update","data":{"id":"a"}}`)
		p.must(t, 200, "DELETE", item("a"), nil)
		it.nextStream(t, s, g, ptr("a"), `{"type":"delete","data":{"id":"a"}}`)
		p.must(t, 200, "PUT", item("a"), `"back"`)
		it.nextStream(t, s, g, ptr("a"), `{"type":"create","data":"back"}`)
		p.must(t, 200, "PUT", item("zz"), `1`)
		absent.nextStream(t, s, g, ptr("zz"), `{"type":"create","data":1}`)

		// The group join got all of them, in order.
		grp.nextStream(t, s, g, ptr("b"), `{"type":"update","data":{"id":"b","v":4}}`)
		grp.nextStream(t, s, g, nil, `{"type":"event","event":{"type":"t0","data":null}}`)
		grp.nextStream(t, s, g, ptr("b"), `{"type":"event","event":{"type":"t1","data":null}}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"event","event":{"type":"t2","data":2}}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"update","data":{"id":"a"}}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"delete","data":{"id":"a"}}`)
		grp.nextStream(t, s, g, ptr("a"), `{"type":"create","data":"back"}`)
		grp.nextStream(t, s, g, ptr("zz"), `{"type":"create","data":1}`)

		it.closeNormal(t)
		nextPresence(t, "stream.leave", "i1", `"a"`)
		absent.closeNow()
		nextPresence(t, "stream.leave", "i2", `"zz"`)
	})

	t.Run("leave stops the frames", func(t *testing.T) {
		grp.send(t, leaveFrame("s1", s, g))
		nextPresence(t, "stream.leave", "s1", "null")
		// Join an item of the same group on the same connection: its frame
		// is the next one, so the change before it did not come through s1.
		grp.send(t, joinFrame("s2", s, g, "marker"))
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"sync","data":null}`)
		nextPresence(t, "stream.join", "s2", `"marker"`)
		p.must(t, 200, "PUT", item("b"), `{"id":"b","v":5}`)
		p.must(t, 200, "PUT", item("marker"), `true`)
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"create","data":true}`)
		// Leaving it again is an error.
		grp.send(t, leaveFrame("s1", s, g))
		grp.nextError(t, "not_found", "s1", map[string]string{"subscriptionId": "s1", "streamName": s, "groupId": g})
	})

	t.Run("two joins of one group get each change twice", func(t *testing.T) {
		grp.send(t, joinFrame("s3", s, g))
		grp.nextStream(t, s, g, nil, `{"type":"sync","data":["back",{"id":"b","v":5},{"id":"d","v":1},{"id":"e"},true,1]}`)
		nextPresence(t, "stream.join", "s3", "null")
		p.must(t, 200, "PUT", item("marker"), `false`)
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"update","data":false}`)
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"update","data":false}`)
	})

	t.Run("a path join joins at connect", func(t *testing.T) {
		pj := dialIII(t, p, "/stream/ws/g/")
		pj.nextStream(t, s, g, nil, `{"type":"sync","data":["back",{"id":"b","v":5},{"id":"d","v":1},{"id":"e"},false,1]}`)
		nextPresence(t, "stream.join", "default", "null")
		p.must(t, 200, "DELETE", item("zz"), nil)
		pj.nextStream(t, s, g, ptr("zz"), `{"type":"delete","data":1}`)
		grp.nextStream(t, s, g, ptr("zz"), `{"type":"delete","data":1}`) // through s3
		pj.send(t, joinFrame("default", s, "other"))
		pj.nextError(t, "conflict", "default", map[string]string{"subscriptionId": "default", "streamName": s, "groupId": "other"})
		pj.send(t, leaveFrame("default", s, g))
		nextPresence(t, "stream.leave", "default", "null")
		pj.closeNormal(t)
		// Without the trailing slash too.
		head := p.headSeq(t)
		pj2 := dialIII(t, p, "/stream/ws/other")
		pj2.nextStream(t, s, "other", nil, `{"type":"sync","data":[1]}`)
		pj2.closeNow()
		// Its join and leave (on ws/other) are in before what follows.
		if !pollUntil(10*time.Second, 5*time.Millisecond, func() bool { return p.headSeq(t) == head+2 }) {
			t.Fatalf("head %d after a path join and its close, want %d", p.headSeq(t), head+2)
		}
	})

	t.Run("bad frames get error frames and the connection stays", func(t *testing.T) {
		for _, tc := range []struct {
			name, frame, code, msg string
			want                   map[string]string
		}{
			{"invalid JSON", `{"type":"join"`, "invalid_argument", "JSON", nil},
			{"not JSON", `hello`, "invalid_argument", "JSON", nil},
			{"unknown type", `{"type":"subscribe","data":{}}`, "invalid_argument", "subscribe", nil},
			{"no type", `{"data":{}}`, "invalid_argument", "type", nil},
			{"not an object", `[1]`, "invalid_argument", "", nil},
			{"join without data", `{"type":"join"}`, "invalid_argument", "data", nil},
			{"join data not an object", `{"type":"join","data":"x"}`, "invalid_argument", "data", nil},
			{"join with an unknown field", `{"type":"join","data":{"subscriptionId":"x","streamName":"ws","groupId":"g","foo":1}}`, "invalid_argument", "foo", nil},
			{"join with a bad stream", `{"type":"join","data":{"subscriptionId":"x","streamName":"a b","groupId":"g"}}`, "invalid_argument", "streamName",
				map[string]string{"subscriptionId": "x", "streamName": "a b", "groupId": "g"}},
			{"join without a group", `{"type":"join","data":{"subscriptionId":"x","streamName":"ws"}}`, "invalid_argument", "groupId",
				map[string]string{"subscriptionId": "x", "streamName": "ws"}},
			{"join without a subscriptionId", `{"type":"join","data":{"streamName":"ws","groupId":"g"}}`, "invalid_argument", "subscriptionId",
				map[string]string{"streamName": "ws", "groupId": "g"}},
			{"duplicate subscriptionId", `{"type":"join","data":{"subscriptionId":"s2","streamName":"ws","groupId":"other"}}`, "conflict", "s2",
				map[string]string{"subscriptionId": "s2", "streamName": "ws", "groupId": "other"}},
			{"leave unknown", `{"type":"leave","data":{"subscriptionId":"nope","streamName":"ws","groupId":"g"}}`, "not_found", "nope",
				map[string]string{"subscriptionId": "nope", "streamName": "ws", "groupId": "g"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				head := p.headSeq(t)
				grp.send(t, tc.frame)
				grp.nextError(t, tc.code, tc.msg, tc.want)
				if h := p.headSeq(t); h != head {
					t.Errorf("a bad frame committed %d events", h-head)
				}
			})
		}
		// The joins still work, and a new one too.
		p.must(t, 200, "PUT", item("marker"), `"after"`)
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"update","data":"after"}`)
		grp.nextStream(t, s, g, ptr("marker"), `{"type":"update","data":"after"}`)
		grp.send(t, joinFrame("s4", s, "other"))
		grp.nextStream(t, s, "other", nil, `{"type":"sync","data":[1]}`)
	})
	t.Run("refused upgrades", func(t *testing.T) {
		checkError(t, p.call(t, "GET", "/stream", nil), 400, "invalid_argument", "WebSocket")
		checkError(t, p.call(t, "GET", "/stream/ws/g/", nil), 400, "invalid_argument", "WebSocket")
		for _, path := range []string{"/stream/a%20b/g/", "/stream/ws/" + strings.Repeat("g", 129) + "/"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, resp, err := websocket.Dial(ctx, p.URL+path, &websocket.DialOptions{HTTPClient: rtClient})
			cancel()
			if err == nil {
				c.CloseNow()
				t.Fatalf("%s: upgraded", path)
			}
			if resp == nil {
				t.Fatalf("%s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkError(t, response{resp.StatusCode, body, resp.Header}, 400, "invalid_argument", "stream and group")
		}
	})
	grp.closeNormal(t)
	// Its joins of the group leave, in some order.
	left := map[string]bool{}
	for len(left) < 2 {
		ev := presence.mustEvent(t)
		if ev.Type != "stream.join" && ev.Type != "stream.leave" {
			continue
		}
		var d struct {
			Sub string `json:"subscription_id"`
		}
		json.Unmarshal(ev.Data, &d)
		if ev.Type != "stream.leave" || left[d.Sub] {
			t.Errorf("after the close: %s %s", ev.Type, ev.Data)
		}
		left[d.Sub] = true
	}
	if !left["s2"] || !left["s3"] {
		t.Errorf("leaves after the close: %v, want s2 and s3", left)
	}
	presence.close()
	stopQuiet(t, p)
}

// frameEvent is a change frame's event as a log event gives it.
func frameEvent(ev eventJSON) (id *string, event string) {
	var d struct {
		ID  *string         `json:"id"`
		Old json.RawMessage `json:"old_value"`
		New json.RawMessage `json:"new_value"`
	}
	json.Unmarshal(ev.Data, &d)
	switch ev.Type {
	case "stream.created":
		return d.ID, `{"type":"create","data":` + string(d.New) + `}`
	case "stream.updated":
		return d.ID, `{"type":"update","data":` + string(d.New) + `}`
	case "stream.deleted":
		return d.ID, `{"type":"delete","data":` + string(d.Old) + `}`
	}
	return nil, ""
}

// TestStreamWSSyncLive: clients that join while a writer changes the group
// get a sync and then exactly the changes after it: together, the log's
// changes, none lost, none twice.
func TestStreamWSSyncLive(t *testing.T) {
	p := startServer(t, t.TempDir())
	const s, g, writes = "sl", "g", 500
	path := func(k string) string { return "/v1/streams/sl/g/" + k }
	// Four writers on keys of their own: several writes are in flight
	// when a client joins.
	const writers = 4
	var (
		written atomic.Int64
		werrs   [writers]error
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			present := map[string]bool{}
			for i := 1; i <= writes/writers; i++ {
				k := fmt.Sprintf("k%d%02d", w, i*7%10)
				method, body := "PUT", []byte(fmt.Sprintf(`{"id":%q,"v":%d}`, k, i))
				if present[k] && i%5 == 0 {
					method, body = "DELETE", nil
				}
				status, b, err := p.do(method, path(k), body)
				if err != nil || status != 200 {
					werrs[w] = fmt.Errorf("%s %s: %d %s %v", method, path(k), status, clip(b), err)
					written.Add(writes)
					return
				}
				present[k] = method == "PUT"
				written.Add(1)
			}
		})
	}

	// Every 25 writes a client joins: the group, or (every other one) an
	// item that the writers change.
	type client struct {
		at     int64
		item   *string // nil: the group
		w      *iiiConn
		frames [][]byte
		err    error
		done   chan struct{}
	}
	var (
		clients []*client
		items   []string
	)
	for at, n := int64(0), 0; at < writes; at, n = at+25, n+1 {
		if !pollUntil(20*time.Second, time.Millisecond, func() bool { return written.Load() >= at }) {
			t.Fatalf("the writers did %d writes in 20 s", written.Load())
		}
		c := &client{at: written.Load(), w: dialIII(t, p, "/stream"), done: make(chan struct{})}
		if n%2 == 0 {
			c.w.send(t, joinFrame("sync", s, g))
		} else {
			c.item = ptr(fmt.Sprintf("k%d%02d", n/2%writers, n%10))
			c.w.send(t, joinFrame("sync", s, g, *c.item))
			items = append(items, *c.item)
		}
		clients = append(clients, c)
		// A group client reads up to the change of zend, an item client up
		// to its item's "end".
		end := func(raw []byte) bool {
			var f struct {
				ID    *string `json:"id"`
				Event struct {
					Data json.RawMessage `json:"data"`
				} `json:"event"`
			}
			json.Unmarshal(raw, &f)
			if c.item == nil {
				return f.ID != nil && *f.ID == "zend"
			}
			return f.ID != nil && *f.ID == *c.item && string(f.Event.Data) == `"end"`
		}
		go func() {
			defer close(c.done)
			tm := time.NewTimer(30 * time.Second)
			defer tm.Stop()
			for {
				select {
				case m := <-c.w.frames:
					if m.Err != nil {
						c.err = m.Err
						return
					}
					c.frames = append(c.frames, m.Raw)
					if end(m.Raw) {
						return
					}
				case <-tm.C:
					c.err = fmt.Errorf("no end marker within 30 s (%d frames)", len(c.frames))
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range werrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(items)
	items = slices.Compact(items)
	for _, k := range items {
		p.must(t, 200, "PUT", path(k), `"end"`)
	}
	p.must(t, 200, "PUT", path("zend"), `"end"`)
	for _, c := range clients {
		<-c.done
	}

	var changes []eventJSON
	for _, ev := range streamLog(t, p, "streams/sl/g") {
		if _, e := frameEvent(ev); e != "" {
			changes = append(changes, ev)
		}
	}
	if want := writes + len(items) + 1; len(changes) != want {
		t.Fatalf("the log holds %d changes of the group, want %d", len(changes), want)
	}
	final := p.must(t, 200, "GET", "/v1/streams/sl/g?limit=1000", nil)
	type change struct {
		ID  string          `json:"id"`
		New json.RawMessage `json:"new_value"`
	}
	apply := func(state map[string]json.RawMessage, ev eventJSON) {
		var d change
		json.Unmarshal(ev.Data, &d)
		if ev.Type == "stream.deleted" {
			delete(state, d.ID)
		} else {
			state[d.ID] = d.New
		}
	}
	for i, c := range clients {
		name := fmt.Sprintf("client %d joined the group after %d writes", i, c.at)
		scope := changes
		if c.item != nil {
			name = fmt.Sprintf("client %d joined item %s after %d writes", i, *c.item, c.at)
			scope = nil
			for _, ev := range changes {
				if d := (change{}); json.Unmarshal(ev.Data, &d) == nil && d.ID == *c.item {
					scope = append(scope, ev)
				}
			}
		}
		t.Run(name, func(t *testing.T) {
			if c.err != nil {
				t.Fatalf("%v; %d frames", c.err, len(c.frames))
			}
			live := len(c.frames) - 1
			if live < 1 || live > len(scope) {
				t.Fatalf("%d frames after the sync; the log has %d changes for it", live, len(scope))
			}
			// The sync is the state after the log's changes before the
			// live frames; the live frames are the changes after it.
			state := map[string]json.RawMessage{}
			for _, ev := range scope[:len(scope)-live] {
				apply(state, ev)
			}
			var sync []string
			for _, k := range slices.Sorted(maps.Keys(state)) {
				sync = append(sync, string(state[k]))
			}
			if c.item == nil {
				checkStreamFrame(t, c.frames[0], s, g, nil, `{"type":"sync","data":[`+strings.Join(sync, ",")+`]}`)
			} else {
				checkStreamFrame(t, c.frames[0], s, g, c.item, `{"type":"sync","data":`+string(orNullJSON(state[*c.item]))+`}`)
			}
			if t.Failed() {
				t.Fatalf("the sync differs from the log's state before the %d live frames", live)
			}
			for j, ev := range scope[len(scope)-live:] {
				id, want := frameEvent(ev)
				checkStreamFrame(t, c.frames[1+j], s, g, id, want)
				if t.Failed() {
					t.Fatalf("frame %d after the sync (log seq %d) differs", j, ev.Seq)
				}
				apply(state, ev)
			}
			// What the client holds is what REST lists.
			if c.item == nil {
				var items []string
				for _, k := range slices.Sorted(maps.Keys(state)) {
					items = append(items, `{"id":"`+k+`","value":`+string(state[k])+`}`)
				}
				bodyIs(`{"items":[`+strings.Join(items, ",")+`],"next_cursor":null}`)(t, response{Body: final})
			} else {
				bodyIs(`{"value":`+string(state[*c.item])+`}`)(t, p.call(t, "GET", path(*c.item), nil))
			}
			if testing.Verbose() {
				t.Logf("sync of %d items, then %d frames", len(sync), live)
			}
		})
	}
	for _, c := range clients {
		c.w.closeNormal(t)
	}
	stopQuiet(t, p)
}

// TestStreamWSSyncTooLarge: a group over --stream-sync-max answers a join
// with sync_too_large; the connection stays usable.
func TestStreamWSSyncTooLarge(t *testing.T) {
	p := startServer(t, t.TempDir(), "--stream-sync-max", "5")
	for i := range 6 {
		p.must(t, 200, "PUT", fmt.Sprintf("/v1/streams/sm/six/i%d", i), strconv.Itoa(i))
		if i < 5 {
			p.must(t, 200, "PUT", fmt.Sprintf("/v1/streams/sm/five/i%d", i), strconv.Itoa(i))
		}
	}
	w := dialIII(t, p, "/stream")
	w.send(t, joinFrame("a", "sm", "five"))
	w.nextStream(t, "sm", "five", nil, `{"type":"sync","data":[0,1,2,3,4]}`)
	// A refused join is no presence: nothing is committed.
	head := p.headSeq(t)
	w.send(t, joinFrame("b", "sm", "six"))
	w.nextError(t, "sync_too_large", "sm/six", map[string]string{"subscriptionId": "b", "streamName": "sm", "groupId": "six"})
	if h := p.headSeq(t); h != head {
		t.Errorf("a refused join committed %d events", h-head)
	}
	// The refused join gets no frames; the other join still does.
	p.must(t, 200, "PUT", "/v1/streams/sm/six/i0", `"changed"`)
	p.must(t, 200, "PUT", "/v1/streams/sm/five/i9", `9`)
	w.nextStream(t, "sm", "five", ptr("i9"), `{"type":"create","data":9}`)
	// An item of the large group can be joined, and the refused
	// subscriptionId is free.
	w.send(t, joinFrame("b", "sm", "six", "i0"))
	w.nextStream(t, "sm", "six", ptr("i0"), `{"type":"sync","data":"changed"}`)
	// A path join of the large group gets the error at connect.
	head = p.headSeq(t)
	pj := dialIII(t, p, "/stream/sm/six/")
	pj.nextError(t, "sync_too_large", "sm/six", map[string]string{"subscriptionId": "default", "streamName": "sm", "groupId": "six"})
	pj.closeNormal(t)
	if h := p.headSeq(t); h != head {
		t.Errorf("a refused path join committed %d events", h-head)
	}
	// At the limit again, the group joins.
	p.must(t, 200, "DELETE", "/v1/streams/sm/six/i5", nil)
	w.send(t, joinFrame("c", "sm", "six"))
	w.nextStream(t, "sm", "six", nil, `{"type":"sync","data":["changed",1,2,3,4]}`)
	w.closeNormal(t)

	// Presence: the three joins that stood, and their leaves at the close.
	j := func(sub, id string) string { return `{"subscription_id":"` + sub + `","id":` + id + `,"context":null}` }
	want := []wantEvent{
		{"stream.join", "streams/sm/five", j("a", "null")},
		{"stream.join", "streams/sm/six", j("b", `"i0"`)},
		{"stream.join", "streams/sm/six", j("c", "null")},
	}
	var evs []eventJSON
	if !pollUntil(10*time.Second, 10*time.Millisecond, func() bool {
		evs = evs[:0]
		for _, ev := range streamLog(t, p, "streams/sm/*") {
			if ev.Type == "stream.join" || ev.Type == "stream.leave" {
				evs = append(evs, ev)
			}
		}
		return len(evs) >= 6
	}) {
		t.Fatalf("presence events: %d, want 6", len(evs))
	}
	checkEvents(t, evs[:3], want)
	leaves := map[string]int{}
	for _, ev := range evs[3:] {
		leaves[ev.Type+" "+ev.Topic+" "+string(ev.Data)]++
	}
	for _, w := range want {
		if k := "stream.leave " + w.topic + " " + w.data; leaves[k] != 1 {
			t.Errorf("%d × %s, want 1 (all leaves: %v)", leaves[k], k, leaves)
		}
	}
	stopQuiet(t, p)
}

// TestStreamEventsToSubscribers: stream changes reach /v1/ws and /v1/events
// subscribers of streams/{s}/{g} and streams/{s}/*, with their seqs.
func TestStreamEventsToSubscribers(t *testing.T) {
	p := startServer(t, t.TempDir())
	ws := openWS(t, p)
	ws.subscribe(t, "exact", "streams/rt/g1", -1)
	ws.subscribe(t, "prefix", "streams/rt/*", -1)
	sse := mustSSE(t, nil, sseURL(p.URL, []string{"streams/rt/g1"}, -1), "")
	sseP := mustSSE(t, nil, sseURL(p.URL, []string{"streams/rt/*"}, -1), "")

	type want struct {
		seq              uint64
		typ, topic, data string
	}
	var all []want
	do := func(method, path, body string, status int, typ, topic, data string) {
		t.Helper()
		head := p.headSeq(t)
		p.must(t, status, method, path, body)
		if h := p.headSeq(t); h != head+1 {
			t.Fatalf("%s %s committed %d events", method, path, h-head)
		}
		all = append(all, want{head + 1, typ, topic, data})
	}
	const t1, t2 = "streams/rt/g1", "streams/rt/g2"
	do("PUT", "/v1/streams/rt/g1/a", `{"v":1}`, 200, "stream.created", t1, `{"id":"a","old_value":null,"new_value":{"v":1}}`)
	do("PATCH", "/v1/streams/rt/g1/a", `{"ops":[{"type":"increment","path":"v","by":1}]}`, 200, "stream.updated", t1, `{"id":"a","old_value":{"v":1},"new_value":{"v":2}}`)
	do("POST", "/v1/streams/rt/g1/events", `{"type":"typing","data":{"who":"u"}}`, 202, "stream.event", t1, `{"id":null,"type":"typing","data":{"who":"u"}}`)
	do("PUT", "/v1/streams/rt/g2/b", `2`, 200, "stream.created", t2, `{"id":"b","old_value":null,"new_value":2}`)
	do("POST", "/v1/functions/stream::delete", `{"stream_name":"rt","group_id":"g1","item_id":"a"}`, 200, "stream.deleted", t1, `{"id":"a","old_value":{"v":2},"new_value":null}`)
	do("POST", "/v1/functions/stream::send", `{"stream_name":"rt","group_id":"g2","type":"x","data":1,"id":"b"}`, 200, "stream.event", t2, `{"id":"b","type":"x","data":1}`)
	// Presence is on the group's topic too.
	head := p.headSeq(t)
	j := dialIII(t, p, "/stream")
	j.send(t, joinFrame("j", "rt", "g1", "a"))
	j.nextStream(t, "rt", "g1", ptr("a"), `{"type":"sync","data":null}`)
	all = append(all, want{head + 1, "stream.join", t1, `{"subscription_id":"j","id":"a","context":null}`})
	j.closeNow()
	if !pollUntil(10*time.Second, 5*time.Millisecond, func() bool { return p.headSeq(t) == head+2 }) {
		t.Fatalf("no stream.leave after an abrupt close: head %d, want %d", p.headSeq(t), head+2)
	}
	all = append(all, want{head + 2, "stream.leave", t1, `{"subscription_id":"j","id":"a","context":null}`})
	// Another stream whose name starts the same is not under streams/rt/*.
	p.must(t, 200, "PUT", "/v1/streams/rt2/g1/x", `0`)
	p.must(t, 200, "PUT", "/v1/streams/rtx/g1/x", `0`)
	do("PUT", "/v1/streams/rt/g1/end", `"end"`, 200, "stream.created", t1, `{"id":"end","old_value":null,"new_value":"end"}`)

	var exact []want
	for _, w := range all {
		if w.topic == t1 {
			exact = append(exact, w)
		}
	}
	check := func(who string, got eventJSON, w want) {
		t.Helper()
		if got.Seq != w.seq || got.Type != w.typ || got.Topic != w.topic || !jsonEqual(got.Data, []byte(w.data)) {
			t.Errorf("%s: seq %d %s %s %s, want seq %d %s %s %s", who, got.Seq, got.Type, got.Topic, got.Data, w.seq, w.typ, w.topic, w.data)
		}
	}
	var gotExact, gotPrefix []eventJSON
	for len(gotExact) < len(exact) || len(gotPrefix) < len(all) {
		f := ws.mustNext(t)
		if f.Op != "event" {
			t.Fatalf("ws frame %s", f)
		}
		ev, err := decodeEvent(f.Event)
		if err != nil {
			t.Fatal(err)
		}
		switch f.ID {
		case "exact":
			gotExact = append(gotExact, ev)
		case "prefix":
			gotPrefix = append(gotPrefix, ev)
		default:
			t.Fatalf("ws frame %s", f)
		}
	}
	if len(gotExact) != len(exact) || len(gotPrefix) != len(all) {
		t.Fatalf("ws: %d and %d events, want %d and %d", len(gotExact), len(gotPrefix), len(exact), len(all))
	}
	for i, w := range exact {
		check("ws streams/rt/g1", gotExact[i], w)
		check("sse streams/rt/g1", sse.mustEvent(t), w)
	}
	for i, w := range all {
		check("ws streams/rt/*", gotPrefix[i], w)
		check("sse streams/rt/*", sseP.mustEvent(t), w)
	}
	// Nothing more came before a ping.
	if extra := ws.pingPong(t); len(extra) != 0 {
		t.Errorf("ws: %d frames more: %v", len(extra), extra[0])
	}
	sse.close()
	sseP.close()
	ws.closeNormal()
	stopQuiet(t, p)
}

// TestStreamPresence: stream.join on a join, stream.leave on a leave, a
// clean close and an abrupt disconnect.
func TestStreamPresence(t *testing.T) {
	p := startServer(t, t.TempDir())
	sse := mustSSE(t, nil, sseURL(p.URL, []string{"streams/pr/*"}, -1), "")
	next := func(typ, group, sub, id string) {
		t.Helper()
		ev := sse.mustEvent(t)
		want := `{"subscription_id":"` + sub + `","id":` + id + `,"context":null}`
		if ev.Type != typ || ev.Topic != "streams/pr/"+group || !jsonEqual(ev.Data, []byte(want)) {
			t.Errorf("event %s %s %s, want %s streams/pr/%s %s", ev.Type, ev.Topic, ev.Data, typ, group, want)
		}
	}
	c1 := dialIII(t, p, "/stream")
	c1.send(t, joinFrame("a", "pr", "g"))
	c1.next(t)
	next("stream.join", "g", "a", "null")
	c1.send(t, joinFrame("b", "pr", "g", "x"))
	c1.next(t)
	next("stream.join", "g", "b", `"x"`)
	c1.send(t, leaveFrame("a", "pr", "g"))
	next("stream.leave", "g", "a", "null")
	c1.closeNormal(t)
	next("stream.leave", "g", "b", `"x"`)

	c2 := dialIII(t, p, "/stream")
	c2.send(t, joinFrame("c", "pr", "h"))
	c2.next(t)
	next("stream.join", "h", "c", "null")
	c2.closeNow()
	next("stream.leave", "h", "c", "null")

	c3 := dialIII(t, p, "/stream/pr/g/")
	c3.next(t)
	next("stream.join", "g", "default", "null")
	c3.closeNow()
	next("stream.leave", "g", "default", "null")

	// Several joins of one connection, dropped at once, all leave.
	c4 := dialIII(t, p, "/stream")
	for _, sub := range []string{"d", "e", "f"} {
		c4.send(t, joinFrame(sub, "pr", "g"))
		c4.next(t)
		next("stream.join", "g", sub, "null")
	}
	c4.closeNow()
	left := map[string]int{}
	for range 3 {
		ev := sse.mustEvent(t)
		var d struct {
			Sub string `json:"subscription_id"`
		}
		json.Unmarshal(ev.Data, &d)
		if ev.Type != "stream.leave" {
			t.Errorf("event %s %s, want a stream.leave", ev.Type, ev.Data)
		}
		left[d.Sub]++
	}
	if len(left) != 3 || left["d"] != 1 || left["e"] != 1 || left["f"] != 1 {
		t.Errorf("leaves %v, want d, e and f once each", left)
	}
	// A refused join is no presence.
	head := p.headSeq(t)
	c5 := dialIII(t, p, "/stream")
	c5.send(t, joinFrame("", "pr", "g"))
	c5.nextError(t, "invalid_argument", "subscriptionId", map[string]string{"streamName": "pr", "groupId": "g"})
	c5.closeNow()
	if h := p.headSeq(t); h != head {
		t.Errorf("a refused join committed %d events", h-head)
	}
	sse.close()
	stopQuiet(t, p)
}

// TestStreamPresenceAfterKill9: joins open when the server is killed get
// their stream.leave at the next start, once; a join that left before gets
// none more.
func TestStreamPresenceAfterKill9(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	c0 := dialIII(t, p, "/stream")
	c0.send(t, joinFrame("k0", "pk", "g"))
	c0.next(t)
	c0.closeNormal(t)
	c1 := dialIII(t, p, "/stream")
	c1.send(t, joinFrame("k1", "pk", "g"))
	c1.next(t)
	c1.send(t, joinFrame("k2", "pk", "g", "x"))
	c1.next(t)
	c2 := dialIII(t, p, "/stream/pk/h/")
	c2.next(t)
	// k0's leave is logged before the kill.
	if !pollUntil(10*time.Second, 5*time.Millisecond, func() bool { return p.headSeq(t) == 5 }) {
		t.Fatalf("head %d before the kill, want 5 (4 joins, 1 leave)", p.headSeq(t))
	}
	p.Kill9()
	c1.closeNow()
	c2.closeNow()

	type presence struct{ typ, topic, data string }
	read := func(p *proc) []presence {
		var out []presence
		for _, ev := range streamLog(t, p, "streams/pk/*") {
			out = append(out, presence{ev.Type, ev.Topic, string(ev.Data)})
		}
		return out
	}
	j := func(sub, id string) string {
		return `{"subscription_id":"` + sub + `","id":` + id + `,"context":null}`
	}
	p2 := startServer(t, dir)
	got := read(p2)
	want := map[presence]int{
		{"stream.join", "streams/pk/g", j("k0", "null")}:       1,
		{"stream.leave", "streams/pk/g", j("k0", "null")}:      1,
		{"stream.join", "streams/pk/g", j("k1", "null")}:       1,
		{"stream.join", "streams/pk/g", j("k2", `"x"`)}:        1,
		{"stream.join", "streams/pk/h", j("default", "null")}:  1,
		{"stream.leave", "streams/pk/g", j("k1", "null")}:      1,
		{"stream.leave", "streams/pk/g", j("k2", `"x"`)}:       1,
		{"stream.leave", "streams/pk/h", j("default", "null")}: 1,
	}
	if len(got) != 8 {
		t.Errorf("after the restart the log has %d presence events, want 8: %v", len(got), got)
	}
	for i, e := range got {
		if want[e] != 1 {
			t.Errorf("event %d: %+v unexpected or repeated", i, e)
		}
		want[e]--
		if i < 5 && e.typ == "stream.leave" && !strings.Contains(e.data, `"k0"`) || i >= 5 && e.typ != "stream.leave" {
			t.Errorf("event %d: %+v; the restart's leaves come after the joins", i, e)
		}
	}
	head2 := p2.headSeq(t)
	p2.Stop()

	p3 := startServer(t, dir)
	if h := p3.headSeq(t); h != head2 {
		t.Errorf("the second restart committed %d events", h-head2)
	}
	if got3 := read(p3); !slices.Equal(got3, got) {
		t.Errorf("after the second restart: %v, want %v", got3, got)
	}
	p3.Stop()
}

// TestStreamPresenceAfterStop: joins open at a graceful stop leave exactly
// once, whether at the stop or at the next start.
func TestStreamPresenceAfterStop(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	c := dialIII(t, p, "/stream")
	for _, sub := range []string{"a", "b"} {
		c.send(t, joinFrame(sub, "ps", "g"))
		c.next(t)
	}
	p.Stop()
	c.closeNow()
	p2 := startServer(t, dir)
	count := map[string]int{}
	for _, ev := range streamLog(t, p2, "streams/ps/g") {
		var d struct {
			Sub string `json:"subscription_id"`
		}
		json.Unmarshal(ev.Data, &d)
		count[ev.Type+" "+d.Sub]++
	}
	want := map[string]int{"stream.join a": 1, "stream.join b": 1, "stream.leave a": 1, "stream.leave b": 1}
	if !maps.Equal(count, want) {
		t.Errorf("presence after a stop and a start: %v, want %v", count, want)
	}
	p2.Stop()
}

// TestStreamWSLagged: a /stream client that stops reading gets, once its
// queue is full, the changes up to the cut with none missing, an error
// frame with code lagged and a close 1013; its join leaves, and a rejoin
// syncs afresh.
func TestStreamWSLagged(t *testing.T) {
	p := startServer(t, t.TempDir())
	path := func(k string) string { return "/v1/streams/lag/g/" + k }
	p.must(t, 200, "PUT", path("first"), `0`)
	slow := dialIIIWith(t, p, "/stream", smallRcvBufClient)
	slow.send(t, joinFrame("s", "lag", "g"))
	slow.nextStream(t, "lag", "g", nil, `{"type":"sync","data":[0]}`)
	// From here the client reads nothing until the server cut it off.
	const series = `engram_lagged_total{transport="iii"}`
	value := []byte(`"` + strings.Repeat("v", 1024) + `"`)
	var (
		stop    atomic.Bool
		written atomic.Int64
		wg      sync.WaitGroup
		errs    [16]error
	)
	for w := range len(errs) {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("w%02d-%d", w, i%50)
				if status, b, err := p.do("PUT", path(k), value); err != nil || status != 200 {
					errs[w] = fmt.Errorf("PUT %s: %d %s %v", k, status, clip(b), err)
					stop.Store(true)
					return
				}
				written.Add(1)
			}
		})
	}
	lagStart := time.Now()
	ok := pollUntil(30*time.Second, 20*time.Millisecond, func() bool {
		return stop.Load() || mustScrape(t, p)[series] > 0
	})
	stop.Store(true)
	wg.Wait()
	lagTime := time.Since(lagStart).Round(time.Millisecond)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !ok {
		t.Fatalf("%d writes to a client that does not read, and %s is still 0", written.Load(), series)
	}
	// The log up to here; later presence is read from its end on.
	type change struct {
		ev      eventJSON
		id, typ string
		value   json.RawMessage
	}
	var (
		changes []change
		leaves  int
		last    uint64
	)
	for _, ev := range streamLog(t, p, "streams/lag/g") {
		if ev.Seq > 1 && (ev.Type == "stream.created" || ev.Type == "stream.updated") {
			var d struct {
				ID  string          `json:"id"`
				New json.RawMessage `json:"new_value"`
			}
			json.Unmarshal(ev.Data, &d)
			changes = append(changes, change{ev: ev, id: d.ID, typ: map[string]string{"stream.created": "create", "stream.updated": "update"}[ev.Type], value: d.New})
		}
		if ev.Type == "stream.leave" {
			leaves++
		}
		last = ev.Seq
	}
	n := 0
	for {
		tm := time.NewTimer(20 * time.Second)
		var m iiiMsg
		select {
		case m = <-slow.frames:
		case <-tm.C:
			t.Fatalf("no frame within 20 s after %d changes", n)
		}
		tm.Stop()
		if m.Err != nil {
			t.Fatalf("after %d changes: %v, want the lagged error frame first", n, m.Err)
		}
		// Each frame is decoded once (thousands of them, under -race);
		// the first ones are checked key by key too.
		var f struct {
			Type       string  `json:"type"`
			StreamName string  `json:"streamName"`
			GroupID    string  `json:"groupId"`
			ID         *string `json:"id"`
			Event      struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			} `json:"event"`
		}
		json.Unmarshal(m.Raw, &f)
		if f.Type == "error" {
			var e map[string]any
			json.Unmarshal(m.Raw, &e)
			if e["code"] != "lagged" || e["message"] == "" {
				t.Errorf("error frame %s, want code lagged", m.Raw)
			}
			break
		}
		if n >= len(changes) {
			t.Fatalf("frame %d: %s; the log has %d changes", n, clip(m.Raw), len(changes))
		}
		c := changes[n]
		if n < 20 {
			id, want := frameEvent(c.ev)
			checkStreamFrame(t, m.Raw, "lag", "g", id, want)
		}
		if f.Type != "stream" || f.StreamName != "lag" || f.GroupID != "g" || f.ID == nil || *f.ID != c.id ||
			f.Event.Type != c.typ || !bytes.Equal(f.Event.Data, c.value) {
			t.Errorf("frame %s, want %s of %s", clip(m.Raw), c.typ, c.id)
		}
		if t.Failed() {
			t.Fatalf("frame %d after the sync differs from the log's change at seq %d", n, c.ev.Seq)
		}
		n++
	}
	t.Logf("cut after %d of %d changes (%d writes, %v)", n, len(changes), written.Load(), lagTime)
	if n >= len(changes) {
		t.Errorf("the lagged client got all %d changes: nothing was cut", n)
	}
	m := <-slow.frames
	if st := websocket.CloseStatus(m.Err); m.Err == nil || st != websocket.StatusTryAgainLater {
		t.Errorf("after the lagged frame: %v (close status %d), want a close 1013", m.Err, st)
	}
	// The join left, once.
	countLeaves := func() int {
		n := leaves
		for _, ev := range streamLogAfter(t, p, last, "streams/lag/g") {
			if ev.Type == "stream.leave" {
				n++
			}
		}
		return n
	}
	if !pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return countLeaves() >= 1 }) {
		t.Fatalf("no stream.leave after the cut")
	}
	// A rejoin syncs the group as REST lists it.
	again := dialIII(t, p, "/stream")
	again.send(t, joinFrame("s", "lag", "g"))
	var listed struct {
		Items []struct {
			Value json.RawMessage `json:"value"`
		} `json:"items"`
	}
	json.Unmarshal(p.must(t, 200, "GET", "/v1/streams/lag/g?limit=1000", nil), &listed)
	var values []string
	for _, it := range listed.Items {
		values = append(values, string(it.Value))
	}
	again.nextStream(t, "lag", "g", nil, `{"type":"sync","data":[`+strings.Join(values, ",")+`]}`)
	again.closeNormal(t)
	slow.closeNow()
	if !pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return countLeaves() >= 2 }) {
		t.Fatalf("no stream.leave for the rejoin")
	}
	if n := countLeaves(); n != 2 {
		t.Errorf("%d stream.leave events, want 2 (the cut join, the rejoin)", n)
	}
	stopQuiet(t, p)
}
