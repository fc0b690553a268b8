package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/oklog/ulid/v2"

	"engram/internal/engine"
	"engram/internal/jsonx"
	"engram/internal/router"
	"engram/internal/wal"
)

// /stream speaks iii's stream protocol. A client joins a stream group (or
// one item of it) with {"type":"join","data":{"subscriptionId","streamName",
// "groupId","id"?}}; the server answers with one sync frame holding the
// group's values (or the item's), then sends a frame per change of what
// was joined: create, update, delete, and event (from send). Frames carry
// no subscription id: like iii, a change that matches two joins of one
// connection is sent twice.
//
// A join is a live router subscription to streams/{stream}/{group}. The
// sync is read from a snapshot taken after the subscription was registered;
// live events the snapshot already holds (seq at or below its head) are
// skipped, so the client sees every change once, in order, after the sync.
//
// Each join is also presence: a stream.join event (recorded, so that a
// crash's missing stream.leave is emitted at the next start) and a
// stream.leave on leave or disconnect.
//
// iii has no resume and no lagged notice: a join that falls behind ends the
// connection (close 1013) after an error frame, and the client's rejoin gets
// a fresh sync. Engram answers bad frames with error frames
// ({"type":"error","code","message"}) where iii ignores them; iii clients
// ignore frame types they do not know.

// Streams is what /stream needs from the engine.
type Streams interface {
	ScanGroup(stream, group string) (*engine.GroupScan, error)
	ItemAt(r engine.ItemRef) ([]byte, uint64, error)
	JoinStream(ctx context.Context, j engine.Join) (ulid.ULID, error)
	LeaveStream(ctx context.Context, id ulid.ULID) error
}

var _ Streams = (*engine.Engine)(nil)

// presenceTimeout bounds the write of a join's or leave's presence event.
const presenceTimeout = 10 * time.Second

// DefaultPathSubscription is the subscriptionId of the join that
// GET /stream/{stream}/{group}/ makes at connect.
const DefaultPathSubscription = "default"

type iiiClientFrame struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type iiiJoinData struct {
	SubscriptionID string  `json:"subscriptionId"`
	StreamName     string  `json:"streamName"`
	GroupID        string  `json:"groupId"`
	ID             *string `json:"id"`
}

// iiiErrorFrame is an error the server reports on /stream.
type iiiErrorFrame struct {
	Type           string  `json:"type"` // "error"
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	SubscriptionID string  `json:"subscriptionId,omitempty"`
	StreamName     string  `json:"streamName,omitempty"`
	GroupID        string  `json:"groupId,omitempty"`
	ID             *string `json:"id,omitempty"`
}

func (f iiiErrorFrame) bytes() []byte {
	f.Type = "error"
	b, _ := json.Marshal(f)
	return b
}

// iiiJoin is one join of a /stream connection.
type iiiJoin struct {
	data   iiiJoinData
	sub    *router.Sub
	joinID ulid.ULID
	// skipThrough is the seq the join's sync reflects: live events at or
	// below it are not sent.
	skipThrough atomic.Uint64
}

// wants reports whether ev goes to the join's client.
func (j *iiiJoin) wants(ev *wal.Event) bool {
	if ev.Seq <= j.skipThrough.Load() {
		return false
	}
	f := iiiFrameOf(ev)
	if f.msg == nil {
		return false // presence, or not a stream event
	}
	if j.data.ID != nil && (f.id == nil || *f.id != *j.data.ID) {
		return false
	}
	return true
}

// joinSink filters a join's events before they take room in the
// connection's queue.
type joinSink struct {
	c *conn
	j *iiiJoin
}

func (k joinSink) TrySend(s *router.Sub, ev *wal.Event) bool {
	if !k.j.wants(ev) {
		return true
	}
	return k.c.TrySend(s, ev)
}

func (k joinSink) SendWait(ctx context.Context, s *router.Sub, ev *wal.Event) error {
	if !k.j.wants(ev) {
		return nil
	}
	return k.c.SendWait(ctx, s, ev)
}

func (k joinSink) Cut(s *router.Sub, reason error, last uint64) { k.c.Cut(s, reason, last) }

// iiiFrame is an event as /stream sends it, built once per event.
type iiiFrame struct {
	id  *string // the item the event is about, nil for a send without id
	msg []byte  // nil when the event is not sent on /stream
	pm  *fws.PreparedMessage
}

// iiiFrameOf returns ev's /stream frame, from the event's frame cache when
// it has one.
func iiiFrameOf(ev *wal.Event) *iiiFrame {
	if ev.Frames == nil {
		return buildIIIFrame(ev)
	}
	return ev.Frames.Get("iii", func() any { return buildIIIFrame(ev) }).(*iiiFrame)
}

func buildIIIFrame(ev *wal.Event) *iiiFrame {
	f := &iiiFrame{}
	rest, ok := strings.CutPrefix(ev.Topic, "streams/")
	if !ok {
		return f
	}
	stream, group, ok := strings.Cut(rest, "/")
	if !ok {
		return f
	}
	var evJSON struct {
		Data struct {
			ID       *string         `json:"id"`
			OldValue json.RawMessage `json:"old_value"`
			NewValue json.RawMessage `json:"new_value"`
			Type     string          `json:"type"`
			Data     json.RawMessage `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal(ev.JSON, &evJSON); err != nil {
		return f
	}
	d := evJSON.Data
	var inner []byte
	switch ev.Type {
	case engine.StreamCreated, engine.StreamUpdated:
		typ := "update"
		if ev.Type == engine.StreamCreated {
			typ = "create"
		}
		inner = append([]byte(`{"type":"`+typ+`","data":`), d.NewValue...)
		inner = append(inner, '}')
	case engine.StreamDeleted:
		inner = append([]byte(`{"type":"delete","data":`), d.OldValue...)
		inner = append(inner, '}')
	case engine.StreamEvent:
		inner = append([]byte(`{"type":"event","event":{"type":`), jsonx.AppendString(nil, d.Type)...)
		inner = append(inner, `,"data":`...)
		inner = append(inner, orNull(d.Data)...)
		inner = append(inner, "}}"...)
	default:
		return f
	}
	f.id = d.ID
	f.msg = appendIIIFrame(nil, ev.Time, stream, group, d.ID, inner)
	f.pm, _ = fws.NewPreparedMessage(fws.TextMessage, f.msg)
	return f
}

func orNull(v []byte) []byte {
	if len(v) == 0 {
		return []byte("null")
	}
	return v
}

// appendIIIFrame appends {"type":"stream","timestamp":ms,"streamName",
// "groupId","id","event":event}.
func appendIIIFrame(dst []byte, t time.Time, stream, group string, id *string, event []byte) []byte {
	dst = append(dst, `{"type":"stream","timestamp":`...)
	dst = strconv.AppendInt(dst, t.UnixMilli(), 10)
	dst = append(dst, `,"streamName":`...)
	dst = jsonx.AppendString(dst, stream)
	dst = append(dst, `,"groupId":`...)
	dst = jsonx.AppendString(dst, group)
	dst = append(dst, `,"id":`...)
	if id == nil {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, *id)
	}
	dst = append(dst, `,"event":`...)
	dst = append(dst, event...)
	return append(dst, '}')
}

// IIIStream is the handler of GET /stream and GET /stream/{stream}/{group}/.
func (n *Notifier) IIIStream() fiber.Handler {
	upgrade := websocket.New(n.serveIII, websocket.Config{
		ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{},
	})
	return func(c *fiber.Ctx) error {
		if n.cfg.Streams == nil {
			return fiber.NewError(fiber.StatusNotFound, "streams are not served")
		}
		if !websocket.IsWebSocketUpgrade(c) {
			return fiber.NewError(fiber.StatusBadRequest, c.Path()+": expected a WebSocket upgrade request")
		}
		if n.count() >= n.cfg.MaxConnections {
			n.m.refused.WithLabelValues("max_connections").Inc()
			return fiber.NewError(fiber.StatusServiceUnavailable, "too many real-time connections")
		}
		stream, group := c.Params("stream"), c.Params("group")
		if stream != "" || group != "" {
			if !engine.ValidName(stream) || !engine.ValidName(group) {
				return fiber.NewError(fiber.StatusBadRequest, "path: stream and group must match ^[A-Za-z0-9._~:@-]{1,128}$")
			}
			c.Locals("iii.join", iiiJoinData{SubscriptionID: DefaultPathSubscription, StreamName: stream, GroupID: group})
		}
		return upgrade(c)
	}
}

type iiiSession struct {
	n     *Notifier
	ws    *websocket.Conn
	c     *conn
	mu    sync.Mutex // guards joins
	joins map[string]*iiiJoin
	// syncSent is closed once the last sync frame is written (the reader's:
	// see awaitSync).
	syncSent chan struct{}
	// orphans are joins the router cut whose leaves are still to emit.
	orphans []ulid.ULID
	lagged  atomic.Bool
}

func (n *Notifier) serveIII(ws *websocket.Conn) {
	c := newConn(n, "iii")
	s := &iiiSession{n: n, ws: ws, c: c, joins: map[string]*iiiJoin{}}
	c.onClose = func() { ws.NetConn().SetReadDeadline(time.Now()) }
	c.cutSub = s.cut
	c.ctlFrame = func(sub *router.Sub, reason error, last uint64) ctlFrame {
		f := iiiErrorFrame{Code: "internal", Message: "the join failed; join again", SubscriptionID: sub.ID}
		switch {
		case errors.Is(reason, router.ErrLagged):
			s.lagged.Store(true)
			f.Code, f.Message = "lagged", "the connection fell behind and is closed; reconnect and join again for a fresh sync"
		case errors.Is(reason, router.ErrClosed):
			f.Code, f.Message = "unavailable", "the server is shutting down"
		}
		// The connection ends after the notice: a rejoin resyncs.
		return ctlFrame{sub: sub, raw: f.bytes(), last: true}
	}
	if !n.admit(c) {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "too many connections"), time.Now().Add(time.Second))
		return
	}
	defer n.release(c)

	ws.SetReadLimit(int64(n.cfg.MaxFrameBytes))
	ws.SetReadDeadline(time.Now().Add(n.cfg.IdleTimeout))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(n.cfg.IdleTimeout))
	})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := c.writeLoop(&iiiWriter{wsWriter{ws: ws}}, n.cfg.PingInterval); err != nil {
			n.log.Debug("stream write ended", "err", err)
		}
		c.close()
	}()
	if d, ok := ws.Locals("iii.join").(iiiJoinData); ok {
		s.join(d)
	}
	s.readLoop()
	c.close()
	if s.lagged.Load() {
		s.closeWith(websocket.CloseTryAgainLater, "lagged: reconnect and join again")
	}
	s.leaveAll()
	<-writerDone
}

func (s *iiiSession) readLoop() {
	for {
		_, data, err := s.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("frame larger than %d bytes", s.n.cfg.MaxFrameBytes))
			}
			return
		}
		s.ws.SetReadDeadline(time.Now().Add(s.n.cfg.IdleTimeout))
		// iii reads text and binary frames alike, and skips empty ones.
		if len(strings.TrimSpace(string(data))) == 0 {
			continue
		}
		if !json.Valid(data) {
			s.fail(iiiErrorFrame{Code: "invalid_argument", Message: "frame is not valid JSON"})
			continue
		}
		var f iiiClientFrame
		if err := jsonx.Decode(data, &f); err != nil {
			s.fail(iiiErrorFrame{Code: "invalid_argument", Message: err.Error()})
			continue
		}
		switch f.Type {
		case "join", "leave":
			var d iiiJoinData
			if len(f.Data) == 0 || string(f.Data) == "null" {
				s.fail(iiiErrorFrame{Code: "invalid_argument", Message: "data: required ({subscriptionId, streamName, groupId, id?})"})
				continue
			}
			if err := jsonx.Decode(f.Data, &d); err != nil {
				s.fail(iiiErrorFrame{Code: "invalid_argument", Message: "data." + err.Error()})
				continue
			}
			if f.Type == "join" {
				s.join(d)
			} else {
				s.leave(d)
			}
		case "":
			s.fail(iiiErrorFrame{Code: "invalid_argument", Message: "type: required (join or leave)"})
		default:
			s.fail(iiiErrorFrame{Code: "invalid_argument", Message: fmt.Sprintf("type: unknown frame type %q (join or leave)", engine.Truncate(f.Type))})
		}
	}
}

func (s *iiiSession) fail(f iiiErrorFrame) {
	s.c.enqueue(context.Background(), item{raw: f.bytes()})
}

func (s *iiiSession) closeWith(code int, reason string) {
	s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

func (s *iiiSession) join(d iiiJoinData) {
	fail := func(code, msg string) {
		s.fail(iiiErrorFrame{Code: code, Message: msg, SubscriptionID: d.SubscriptionID, StreamName: d.StreamName, GroupID: d.GroupID, ID: d.ID})
	}
	j := engine.Join{Stream: d.StreamName, Group: d.GroupID, Item: d.ID, SubscriptionID: d.SubscriptionID}
	if err := j.Check(); err != nil {
		fail("invalid_argument", err.Error())
		return
	}
	s.mu.Lock()
	_, dup := s.joins[d.SubscriptionID]
	full := len(s.joins) >= s.n.cfg.MaxSubscriptions
	s.mu.Unlock()
	switch {
	case dup:
		fail("conflict", fmt.Sprintf("subscriptionId: %q is joined on this connection; leave it first", engine.Truncate(d.SubscriptionID)))
		return
	case full:
		s.n.m.refused.WithLabelValues("max_subscriptions").Inc()
		fail("invalid_argument", fmt.Sprintf("at most %d joins per connection", s.n.cfg.MaxSubscriptions))
		return
	}
	if !s.awaitSync() {
		return
	}
	ij := &iiiJoin{data: d}
	sub, _, err := s.n.r.Subscribe(router.Request{ID: d.SubscriptionID, Topics: []string{engine.StreamTopic(d.StreamName, d.GroupID)}}, joinSink{c: s.c, j: ij})
	if err != nil {
		if errors.Is(err, router.ErrClosed) {
			fail("unavailable", "the server is shutting down")
		} else {
			fail("internal", err.Error())
		}
		return
	}
	ij.sub = sub
	syncMsg, seq, err := s.syncFrame(d)
	if err != nil {
		s.n.r.Unsubscribe(sub)
		var tl *syncTooLarge
		if errors.As(err, &tl) {
			fail("sync_too_large", tl.Error())
		} else {
			code, msg := errorCode(err)
			fail(code, msg)
		}
		return
	}
	ij.skipThrough.Store(seq)
	// Presence once the join is sure to stand. The subscription holds the
	// group's events meanwhile: Start hands them over.
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	ij.joinID, err = s.n.cfg.Streams.JoinStream(ctx, j)
	cancel()
	if err != nil {
		s.n.r.Unsubscribe(sub)
		code, msg := errorCode(err)
		fail(code, msg)
		return
	}
	s.mu.Lock()
	s.joins[d.SubscriptionID] = ij
	s.mu.Unlock()
	s.n.m.subs.WithLabelValues("iii").Inc()
	sent := make(chan struct{})
	if err := s.c.enqueue(context.Background(), item{raw: syncMsg, sent: sent}); err != nil {
		return // the connection is closing: leaveAll cleans up
	}
	s.syncSent = sent
	sub.Start()
}

// awaitSync waits until the connection's last sync frame is written, so
// that a connection holds at most one sync (up to StreamSyncMaxBytes) in
// memory however many joins it sends: a client that joins faster than it
// reads waits on itself. It reports false when the connection ended.
func (s *iiiSession) awaitSync() bool {
	if s.syncSent == nil {
		return true
	}
	select {
	case <-s.syncSent:
		s.syncSent = nil
		return true
	case <-s.c.closed:
		return false
	}
}

type syncTooLarge struct{ msg string }

func (e *syncTooLarge) Error() string { return e.msg }

// syncFrame builds the join's sync frame from a snapshot and returns it
// with the snapshot's seq.
func (s *iiiSession) syncFrame(d iiiJoinData) ([]byte, uint64, error) {
	now := time.Now()
	if d.ID != nil {
		v, seq, err := s.n.cfg.Streams.ItemAt(engine.ItemRef{Stream: d.StreamName, Group: d.GroupID, Item: *d.ID})
		if err != nil {
			return nil, 0, err
		}
		ev := append([]byte(`{"type":"sync","data":`), orNull(v)...)
		return appendIIIFrame(nil, now, d.StreamName, d.GroupID, d.ID, append(ev, '}')), seq, nil
	}
	scan, err := s.n.cfg.Streams.ScanGroup(d.StreamName, d.GroupID)
	if err != nil {
		return nil, 0, err
	}
	defer scan.Close()
	if scan.Count > uint64(s.n.cfg.StreamSyncMax) {
		return nil, 0, &syncTooLarge{fmt.Sprintf("group %s/%s holds %d items, more than a sync holds (%d, --stream-sync-max); page it with GET /v1/streams/%s/%s",
			d.StreamName, d.GroupID, scan.Count, s.n.cfg.StreamSyncMax, d.StreamName, d.GroupID)}
	}
	ev := []byte(`{"type":"sync","data":[`)
	first := true
	for {
		_, v, ok := scan.Next()
		if !ok {
			break
		}
		if !first {
			ev = append(ev, ',')
		}
		first = false
		ev = append(ev, v...)
		if len(ev) > s.n.cfg.StreamSyncMaxBytes {
			return nil, 0, &syncTooLarge{fmt.Sprintf("group %s/%s: the sync would exceed %d bytes; page it with GET /v1/streams/%s/%s",
				d.StreamName, d.GroupID, s.n.cfg.StreamSyncMaxBytes, d.StreamName, d.GroupID)}
		}
	}
	if err := scan.Err(); err != nil {
		return nil, 0, err
	}
	ev = append(ev, "]}"...)
	return appendIIIFrame(nil, now, d.StreamName, d.GroupID, nil, ev), scan.Seq, nil
}

// errorCode gives the code and message of an engine error for an error
// frame.
func errorCode(err error) (string, string) {
	switch {
	case errors.Is(err, engine.ErrInvalid):
		return "invalid_argument", err.Error()
	case errors.Is(err, engine.ErrNotFound):
		return "not_found", err.Error()
	case errors.Is(err, engine.ErrConflict):
		return "conflict", err.Error()
	case errors.Is(err, wal.ErrUnavailable), errors.Is(err, wal.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return "unavailable", "storage unavailable: " + err.Error()
	}
	return "internal", "internal error"
}

func (s *iiiSession) leave(d iiiJoinData) {
	s.mu.Lock()
	j, ok := s.joins[d.SubscriptionID]
	if ok {
		delete(s.joins, d.SubscriptionID)
	}
	s.mu.Unlock()
	if !ok {
		s.fail(iiiErrorFrame{Code: "not_found", Message: fmt.Sprintf("subscriptionId: %q is not joined on this connection", engine.Truncate(d.SubscriptionID)),
			SubscriptionID: d.SubscriptionID, StreamName: d.StreamName, GroupID: d.GroupID, ID: d.ID})
		return
	}
	s.n.m.subs.WithLabelValues("iii").Dec()
	s.n.r.Unsubscribe(j.sub)
	s.leaveID(j.joinID)
}

// leaveID emits a join's stream.leave. If that fails (the server is going
// down), the join stays recorded and the next start emits it.
func (s *iiiSession) leaveID(id ulid.ULID) {
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	if err := s.n.cfg.Streams.LeaveStream(ctx, id); err != nil {
		s.n.log.Warn("stream leave not recorded; it is emitted at the next start", "join", id.String(), "err", err)
	}
}

// cut drops a join whose subscription the router ended.
func (s *iiiSession) cut(sub *router.Sub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.joins[sub.ID]; ok && j.sub == sub {
		delete(s.joins, sub.ID)
		s.n.m.subs.WithLabelValues("iii").Dec()
		// Its leave is emitted by leaveAll's caller path: the connection
		// ends after the cut notice.
		s.orphans = append(s.orphans, j.joinID)
	}
}

func (s *iiiSession) leaveAll() {
	s.mu.Lock()
	joins := s.joins
	s.joins = map[string]*iiiJoin{}
	orphans := s.orphans
	s.orphans = nil
	s.mu.Unlock()
	for _, j := range joins {
		s.n.r.Unsubscribe(j.sub)
		s.n.m.subs.WithLabelValues("iii").Dec()
		s.leaveID(j.joinID)
	}
	for _, id := range orphans {
		s.leaveID(id)
	}
}

// iiiWriter writes /stream frames: events as their prepared iii frame.
type iiiWriter struct{ wsWriter }

func (w *iiiWriter) writeEvent(_ *router.Sub, ev *wal.Event) error {
	w.extend()
	f := iiiFrameOf(ev)
	if f.pm != nil {
		return w.ws.WritePreparedMessage(f.pm)
	}
	return w.ws.WriteMessage(websocket.TextMessage, f.msg)
}
