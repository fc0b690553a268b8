package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Helpers of the real-time tests (WebSocket /v1/ws and SSE /v1/events).
// They talk to the binary like any client would; nothing here knows the
// server's internals.

// rtClient dials real-time connections. It keeps no idle connections, so
// nothing outlives a test for goleak to find, and it has no timeout: streams
// live as long as a test needs them and are ended by their contexts.
var rtClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// smallRcvBufClient is rtClient with a small socket receive buffer (which
// also turns off the kernel's receive-buffer autotuning, up to 32 MiB on
// loopback here): a client that stops reading then pushes back on the
// server after little data, as a slow client on a real network would.
var smallRcvBufClient = &http.Client{Transport: &http.Transport{
	Proxy:             nil,
	DisableKeepAlives: true,
	DialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
		}); err != nil {
			return err
		}
		return serr
	}}).DialContext,
}}

// eventJSON is one event of the log, as subscribers receive it.
type eventJSON struct {
	Seq   uint64          `json:"seq"`
	Time  string          `json:"time"`
	Type  string          `json:"type"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// decodeEvent decodes and checks the shape of one event: exactly the keys
// seq, time, type, topic and data. (One pass: tests decode many of them.)
func decodeEvent(raw []byte) (eventJSON, error) {
	var w struct {
		Seq   *uint64         `json:"seq"`
		Time  *string         `json:"time"`
		Type  *string         `json:"type"`
		Topic *string         `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return eventJSON{}, fmt.Errorf("event: %v: %s", err, clip(raw))
	}
	if w.Seq == nil || w.Time == nil || w.Type == nil || w.Topic == nil || w.Data == nil {
		return eventJSON{}, fmt.Errorf("event lacks one of seq, time, type, topic, data: %s", clip(raw))
	}
	ev := eventJSON{Seq: *w.Seq, Time: *w.Time, Type: *w.Type, Topic: *w.Topic, Data: w.Data}
	if ev.Seq == 0 || ev.Type == "" || ev.Topic == "" || !timeRE.MatchString(ev.Time) {
		return eventJSON{}, fmt.Errorf("event has a zero seq, an empty type or topic, or a bad time: %s", clip(raw))
	}
	return ev, nil
}

// dataID is the "id" field of an event's data (the unit or the context).
func (ev eventJSON) dataID() string {
	var d struct {
		ID string `json:"id"`
	}
	json.Unmarshal(ev.Data, &d)
	return d.ID
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// topicMatches reports whether an event topic matches a subscription topic
// (exact, or a prefix ending in /*).
func topicMatches(sub, topic string) bool {
	if p, ok := strings.CutSuffix(sub, "*"); ok && strings.HasSuffix(p, "/") {
		return strings.HasPrefix(topic, p)
	}
	return sub == topic
}

func matchesAny(subs []string, topic string) bool {
	return slices.ContainsFunc(subs, func(s string) bool { return topicMatches(s, topic) })
}

// ---- WebSocket ----

// wsFrame is one server frame of /v1/ws. Err is set instead when reading
// failed (Close then holds the close status, -1 if none).
type wsFrame struct {
	Op        string          `json:"op"`
	ID        string          `json:"id"`
	HeadSeq   *uint64         `json:"head_seq"`
	Event     json.RawMessage `json:"event"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	LastSeq   *uint64         `json:"last_seq"`
	OldestSeq *uint64         `json:"oldest_seq"`

	Raw   []byte               `json:"-"`
	Err   error                `json:"-"`
	Close websocket.StatusCode `json:"-"`
}

func (f wsFrame) String() string {
	if f.Err != nil {
		return fmt.Sprintf("read error (close status %d): %v", f.Close, f.Err)
	}
	return clip(f.Raw)
}

// wsConn is a client connection to /v1/ws. One goroutine reads frames and
// hands them over one at a time, unbuffered: while the test does not take
// frames, the connection is not read (a slow consumer).
type wsConn struct {
	c      *websocket.Conn
	frames chan wsFrame
	done   chan struct{} // the reader goroutine has ended
	cancel context.CancelFunc
}

// dialWS opens a WebSocket to p's /v1/ws. On a refused upgrade it returns
// the status code of the answer and its body.
func dialWS(ctx context.Context, baseURL string, hc *http.Client) (*wsConn, int, []byte, error) {
	if hc == nil {
		hc = rtClient
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, resp, err := websocket.Dial(dctx, baseURL+"/v1/ws", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		status := 0
		var body []byte
		if resp != nil {
			status = resp.StatusCode
			if resp.Body != nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
		}
		return nil, status, body, err
	}
	c.SetReadLimit(4 << 20)
	rctx, cancel := context.WithCancel(context.Background())
	w := &wsConn{c: c, frames: make(chan wsFrame), done: make(chan struct{}), cancel: cancel}
	go w.readLoop(rctx)
	return w, resp.StatusCode, nil, nil
}

// openWS dials /v1/ws and fails the test if that fails; the connection is
// closed at cleanup.
func openWS(t testing.TB, p *proc) *wsConn {
	t.Helper()
	w, status, body, err := dialWS(context.Background(), p.URL, nil)
	if err != nil {
		t.Fatalf("dial %s/v1/ws: %v (status %d %s)", p.URL, err, status, body)
	}
	t.Cleanup(w.closeNow)
	return w
}

func (w *wsConn) readLoop(ctx context.Context) {
	defer close(w.done)
	for {
		typ, b, err := w.c.Read(ctx)
		var f wsFrame
		switch {
		case err != nil:
			f = wsFrame{Err: err, Close: websocket.CloseStatus(err)}
		case typ != websocket.MessageText:
			f = wsFrame{Err: fmt.Errorf("server sent a %v frame", typ), Close: -1, Raw: b}
		default:
			if jerr := json.Unmarshal(b, &f); jerr != nil {
				f = wsFrame{Err: fmt.Errorf("server frame is not JSON: %v: %s", jerr, clip(b)), Close: -1}
			}
			f.Raw = b
		}
		select {
		case w.frames <- f:
		case <-ctx.Done():
			return
		}
		if f.Err != nil {
			return
		}
	}
}

// closeNow drops the connection at once (no close handshake: an abrupt
// disconnect) and waits for the reader goroutine.
func (w *wsConn) closeNow() {
	w.c.CloseNow()
	w.cancel()
	<-w.done
}

// closeNormal closes with the close handshake (1000), dropping the frames
// that still come.
func (w *wsConn) closeNormal() error {
	errc := make(chan error, 1)
	go func() { errc <- w.c.Close(websocket.StatusNormalClosure, "bye") }()
	for running := true; running; {
		select {
		case <-w.frames:
		case <-w.done:
			running = false
		}
	}
	err := <-errc
	w.cancel()
	return err
}

// send writes one text frame (v encoded as JSON unless it is a string or
// []byte, sent as is).
func (w *wsConn) send(v any) error {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

// next waits up to timeout for the next frame. A read error comes back as a
// frame with Err set; a timeout is an error.
func (w *wsConn) next(timeout time.Duration) (wsFrame, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case f := <-w.frames:
		return f, nil
	case <-tm.C:
		return wsFrame{}, fmt.Errorf("no frame within %v", timeout)
	}
}

// must* are for the test goroutine.

func (w *wsConn) mustSend(t testing.TB, v any) {
	t.Helper()
	if err := w.send(v); err != nil {
		t.Fatalf("ws send %v: %v", v, err)
	}
}

func (w *wsConn) mustNext(t testing.TB) wsFrame {
	t.Helper()
	f, err := w.next(20 * time.Second)
	if err != nil {
		t.Fatalf("ws: %v", err)
	}
	if f.Err != nil {
		t.Fatalf("ws: %v", f)
	}
	return f
}

// mustFrame reads the next frame and checks its op and id.
func (w *wsConn) mustFrame(t testing.TB, op, id string) wsFrame {
	t.Helper()
	f := w.mustNext(t)
	if f.Op != op || f.ID != id {
		t.Fatalf("ws: got %s, want op %q id %q", f, op, id)
	}
	return f
}

// subscribe sends a subscribe frame and returns the head_seq of the
// subscribed answer. after < 0 means live (no after_seq).
func (w *wsConn) subscribe(t testing.TB, id, topic string, after int64) uint64 {
	t.Helper()
	w.mustSend(t, subscribeFrame(id, topic, after))
	f := w.mustFrame(t, "subscribed", id)
	if f.HeadSeq == nil {
		t.Fatalf("subscribed frame without head_seq: %s", f)
	}
	return *f.HeadSeq
}

// pingPong sends a ping and reads up to the pong, returning the frames that
// came before it. The server answers frames in order, so the pong is a
// barrier: whatever the frames before the ping caused is queued before it.
func (w *wsConn) pingPong(t testing.TB) []wsFrame {
	t.Helper()
	w.mustSend(t, map[string]string{"op": "ping"})
	var before []wsFrame
	for {
		f := w.mustNext(t)
		if f.Op == "pong" {
			if string(f.Raw) != `{"op":"pong"}` {
				t.Errorf("pong frame %s, want exactly {\"op\":\"pong\"}", f)
			}
			return before
		}
		before = append(before, f)
	}
}

func subscribeFrame(id, topic string, after int64) map[string]any {
	m := map[string]any{"op": "subscribe", "id": id, "topic": topic}
	if after >= 0 {
		m["after_seq"] = after
	}
	return m
}

// ---- SSE ----

// sseMsg is one message of an SSE stream: an event (ID, Event, Data) or a
// comment. Err is set instead when reading failed (io.EOF at the end).
type sseMsg struct {
	ID      string
	Event   string
	Data    []byte
	Comment string
	Err     error
}

func (m sseMsg) String() string {
	switch {
	case m.Err != nil:
		return "read error: " + m.Err.Error()
	case m.Comment != "" && m.Event == "" && m.Data == nil:
		return ": " + m.Comment
	}
	return fmt.Sprintf("id: %s event: %s data: %s", m.ID, m.Event, clip(m.Data))
}

// sseStream is an open /v1/events stream read by one goroutine that hands
// messages over unbuffered (not taking them is not reading).
type sseStream struct {
	resp   *http.Response
	msgs   chan sseMsg
	done   chan struct{}
	cancel context.CancelFunc
}

// sseURL is the /v1/events URL for topics; after < 0 leaves after_seq out.
func sseURL(baseURL string, topics []string, after int64) string {
	q := url.Values{"topic": topics}
	if after >= 0 {
		q.Set("after_seq", strconv.FormatInt(after, 10))
	}
	return baseURL + "/v1/events?" + q.Encode()
}

// openSSE sends GET u (lastEventID as Last-Event-ID when not empty). On a
// 200 it checks the headers and the first ": ok" comment and returns the
// stream; otherwise it returns the answer (status and body) and a nil
// stream.
func openSSE(hc *http.Client, u, lastEventID string) (*sseStream, response, error) {
	if hc == nil {
		hc = rtClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		cancel()
		return nil, response{}, err
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	req.Header.Set("Accept", "text/event-stream")
	// The headers must come at once, before any event.
	tm := time.AfterFunc(10*time.Second, cancel)
	resp, err := hc.Do(req)
	tm.Stop()
	if err != nil {
		cancel()
		return nil, response{}, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, response{resp.StatusCode, b, resp.Header}, nil
	}
	s := &sseStream{resp: resp, msgs: make(chan sseMsg), done: make(chan struct{}), cancel: cancel}
	go s.readLoop(ctx)
	r := response{Status: resp.StatusCode, Header: resp.Header}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		s.close()
		return nil, r, fmt.Errorf("SSE Content-Type %q", ct)
	}
	m, err := s.next(10 * time.Second)
	if err == nil && (m.Err != nil || m.Comment != "ok" || m.Event != "" || m.Data != nil) {
		err = fmt.Errorf("first SSE message is %s, want the comment \": ok\"", m)
	}
	if err != nil {
		s.close()
		return nil, r, err
	}
	return s, r, nil
}

// mustSSE opens a stream and fails the test unless that works.
func mustSSE(t testing.TB, hc *http.Client, u, lastEventID string) *sseStream {
	t.Helper()
	s, r, err := openSSE(hc, u, lastEventID)
	if err != nil || s == nil {
		t.Fatalf("GET %s (Last-Event-ID %q): %v %s", u, lastEventID, err, r)
	}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) readLoop(ctx context.Context) {
	defer close(s.done)
	br := bufio.NewReaderSize(s.resp.Body, 64<<10)
	var m sseMsg
	var comments []string
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if len(line) > 0 && err == io.EOF {
				err = fmt.Errorf("stream ended inside a line: %q", clip(line))
			}
			select {
			case s.msgs <- sseMsg{Err: err}:
			case <-ctx.Done():
			}
			return
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		switch {
		case len(line) == 0:
			m.Comment = strings.Join(comments, "\n")
			select {
			case s.msgs <- m:
			case <-ctx.Done():
				return
			}
			m, comments = sseMsg{}, nil
		case line[0] == ':':
			comments = append(comments, strings.TrimPrefix(string(line[1:]), " "))
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "id":
				m.ID = string(value)
			case "event":
				m.Event = string(value)
			case "data":
				if m.Data != nil {
					m.Data = append(m.Data, '\n')
				}
				m.Data = append(m.Data, value...)
			default:
				comments = append(comments, "unknown field "+string(field))
			}
		}
	}
}

func (s *sseStream) next(timeout time.Duration) (sseMsg, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case m := <-s.msgs:
		return m, nil
	case <-tm.C:
		return sseMsg{}, fmt.Errorf("no SSE message within %v", timeout)
	}
}

// close drops the stream (closes the connection) and waits for the reader.
func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// mustEvent reads the next event of the stream, skipping comments
// (": ping"), and fails the test on anything else.
func (s *sseStream) mustEvent(t testing.TB) eventJSON {
	t.Helper()
	for {
		m, err := s.next(20 * time.Second)
		if err != nil || m.Err != nil {
			t.Fatalf("SSE: %v %s", err, m)
		}
		if m.Event == "" && m.Data == nil {
			continue
		}
		ev, err := sseEvent(m)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
}

// sseEvent decodes an SSE event message and checks that its id and event
// fields agree with the event JSON.
func sseEvent(m sseMsg) (eventJSON, error) {
	ev, err := decodeEvent(m.Data)
	if err != nil {
		return ev, err
	}
	if m.ID != strconv.FormatUint(ev.Seq, 10) || m.Event != ev.Type {
		return ev, fmt.Errorf("SSE id %q / event %q do not match the event's seq %d / type %q", m.ID, m.Event, ev.Seq, ev.Type)
	}
	return ev, nil
}

// ---- metrics ----

// scrape reads /metrics into series → value; a series is written as in the
// exposition (`engram_connections{transport="ws"}`).
func scrape(p *proc) (map[string]float64, error) {
	status, body, err := p.do("GET", "/metrics", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d %s", status, clip(body))
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, nil
}

func mustScrape(t testing.TB, p *proc) map[string]float64 {
	t.Helper()
	m, err := scrape(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stopQuiet stops p with SIGTERM (exit 0, as Stop checks) once no
// WebSocket is open on it any more: its clients left first. (With a
// WebSocket open at the stop, a race-built server reports a data race: see
// TestGracefulStopWithSubscribers.)
func stopQuiet(t testing.TB, p *proc) {
	t.Helper()
	const series = `engram_connections{transport="ws"}`
	var n float64
	if !pollUntil(10*time.Second, 5*time.Millisecond, func() bool {
		n = mustScrape(t, p)[series]
		return n == 0
	}) {
		t.Fatalf("%s is %v 10 s after the clients closed", series, n)
	}
	p.Stop()
}

// ---- writing ----

// ackedUnit is a unit the server acknowledged.
type ackedUnit struct {
	ID      string `json:"id"`
	Seq     uint64 `json:"seq"`
	Context string `json:"context_id"`
}

// postUnits writes one unit per element of ctxs (in that order) with a
// batch request, payload as each unit's payload (a JSON value). It never
// fails the test, so writer goroutines may use it.
func postUnits(p *proc, ctxs []string, payload json.RawMessage) ([]ackedUnit, error) {
	units := make([]map[string]any, len(ctxs))
	for i, c := range ctxs {
		units[i] = map[string]any{"context_id": c, "agent_id": "rt", "type": "MESSAGE", "payload": payload}
	}
	body, err := json.Marshal(map[string]any{"units": units})
	if err != nil {
		return nil, err
	}
	status, ans, err := p.do("POST", "/v1/workunits/batch", body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated {
		return nil, fmt.Errorf("POST /v1/workunits/batch: %d %s", status, clip(ans))
	}
	var got struct {
		Units []ackedUnit `json:"units"`
	}
	if err := json.Unmarshal(ans, &got); err != nil || len(got.Units) != len(ctxs) {
		return nil, fmt.Errorf("batch answer of %d units: %v: %s", len(ctxs), err, clip(ans))
	}
	for i, u := range got.Units {
		if u.Context != ctxs[i] || u.Seq == 0 || (i > 0 && u.Seq != got.Units[i-1].Seq+1) {
			return nil, fmt.Errorf("batch answer unit %d: %+v (want context %s, contiguous seqs)", i, u, ctxs[i])
		}
	}
	return got.Units, nil
}

func mustPostUnits(t testing.TB, p *proc, ctxs []string, payload json.RawMessage) []ackedUnit {
	t.Helper()
	us, err := postUnits(p, ctxs, payload)
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// seedContexts creates each context with a one-unit request of its own and
// returns the seq of each context's context.created event: the seq just
// before its first unit's, as the contract orders them.
func seedContexts(t testing.TB, p *proc, ids ...string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, id := range ids {
		u := mustPostUnits(t, p, []string{id}, json.RawMessage(`"seed"`))[0]
		out[id] = u.Seq - 1
	}
	return out
}

// ---- the log as the oracle ----

// logEntry is one event of the log, as the REST API shows it.
type logEntry struct {
	Type, Topic, ID string
}

// logOracle rebuilds the whole log from the REST API: every unit of every
// context (its seq is its workunit.created event) and the context.created
// events (ctxCreated, from seedContexts). It checks that together they are
// exactly 1..head, so that no other event exists that a subscriber should
// have seen.
func logOracle(t testing.TB, p *proc, ctxCreated map[string]uint64) map[uint64]logEntry {
	t.Helper()
	head := p.headSeq(t)
	log := map[uint64]logEntry{}
	add := func(seq uint64, e logEntry) {
		if old, dup := log[seq]; dup {
			t.Fatalf("seq %d is both %+v and %+v", seq, old, e)
		}
		log[seq] = e
	}
	for c, seq := range ctxCreated {
		add(seq, logEntry{"context.created", "contexts/" + c, c})
		for _, u := range listUnitSeqs(t, p, c) {
			add(u.Seq, logEntry{"workunit.created", "contexts/" + c, u.ID})
		}
	}
	if uint64(len(log)) != head {
		t.Fatalf("the REST API shows %d events, the head seq is %d", len(log), head)
	}
	for s := uint64(1); s <= head; s++ {
		if _, ok := log[s]; !ok {
			t.Fatalf("seq %d of 1..%d is no unit's and no context.created's", s, head)
		}
	}
	return log
}

// listUnitSeqs lists the id and seq of every unit of a context, oldest
// first. It is listAll decoding only what the oracle needs: the real-time
// tests list tens of thousands of units, and under -race decoding each
// page three times over costs seconds.
func listUnitSeqs(t testing.TB, p *proc, ctx string) []ackedUnit {
	t.Helper()
	var all []ackedUnit
	path := "/v1/contexts/" + url.PathEscape(ctx) + "/workunits?order=asc&limit=1000"
	for cursor := ""; ; {
		q := path
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg struct {
			Units      []ackedUnit `json:"units"`
			NextCursor *string     `json:"next_cursor"`
		}
		if err := json.Unmarshal(p.must(t, 200, "GET", q, nil), &pg); err != nil {
			t.Fatalf("GET %s: %v", q, err)
		}
		all = append(all, pg.Units...)
		if pg.NextCursor == nil {
			return all
		}
		if *pg.NextCursor == "" || *pg.NextCursor == cursor {
			t.Fatalf("GET %s: next_cursor %q", q, *pg.NextCursor)
		}
		cursor = *pg.NextCursor
	}
}

// oracleSeqs are the seqs of log events matching any of topics, above
// after, in order.
func oracleSeqs(log map[uint64]logEntry, topics []string, after uint64) []uint64 {
	var out []uint64
	for s, e := range log {
		if s > after && matchesAny(topics, e.Topic) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// checkReceived checks that got, what a subscriber of topics received, is
// exactly want in order, each once, and that each event is the log's
// event at its seq.
func checkReceived(t testing.TB, who string, got []eventJSON, want []uint64, log map[uint64]logEntry) {
	t.Helper()
	seqs := make([]uint64, len(got))
	for i, ev := range got {
		seqs[i] = ev.Seq
	}
	if !slices.Equal(seqs, want) {
		i := 0
		for i < len(seqs) && i < len(want) && seqs[i] == want[i] {
			i++
		}
		t.Errorf("%s: received %d events, the log has %d for its topics; first difference at index %d: got %v, want %v",
			who, len(seqs), len(want), i, window(seqs, i), window(want, i))
	}
	bad := 0
	for _, ev := range got {
		e, ok := log[ev.Seq]
		if ok && ev.Type == e.Type && ev.Topic == e.Topic && ev.dataID() == e.ID {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("%s: event seq %d is %s %s %s, the log has %+v", who, ev.Seq, ev.Type, ev.Topic, ev.dataID(), e)
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d events differ from the log", who, bad)
	}
}

func window(s []uint64, i int) []uint64 {
	lo, hi := max(0, i-3), min(len(s), i+4)
	return s[lo:hi]
}
