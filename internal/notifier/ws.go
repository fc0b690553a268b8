package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
	"engram/internal/jsonx"
	"engram/internal/router"
	"engram/internal/wal"
)

// writeWait bounds one write to a client; a client that does not read for
// this long is disconnected.
const writeWait = 10 * time.Second

// clientFrame is a frame a client sends on /v1/ws.
type clientFrame struct {
	Op       string  `json:"op"`
	ID       string  `json:"id"`
	Topic    string  `json:"topic"`
	AfterSeq *uint64 `json:"after_seq"`
}

// WebSocket is the handler of GET /v1/ws.
func (n *Notifier) WebSocket() fiber.Handler {
	// Small read buffers (client frames are small) and pooled write buffers:
	// an idle connection holds neither.
	upgrade := websocket.New(n.serveWS, websocket.Config{
		ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{},
	})
	return func(c *fiber.Ctx) error {
		if !websocket.IsWebSocketUpgrade(c) {
			return fiber.NewError(fiber.StatusBadRequest, "/v1/ws: expected a WebSocket upgrade request")
		}
		if n.count() >= n.cfg.MaxConnections {
			n.m.refused.WithLabelValues("max_connections").Inc()
			return fiber.NewError(fiber.StatusServiceUnavailable, "too many real-time connections")
		}
		return upgrade(c)
	}
}

type wsSession struct {
	n    *Notifier
	ws   *websocket.Conn
	c    *conn
	mu   sync.Mutex // guards subs
	subs map[string]*router.Sub
}

func (n *Notifier) serveWS(ws *websocket.Conn) {
	c := newConn(n, "ws")
	s := &wsSession{n: n, ws: ws, c: c, subs: map[string]*router.Sub{}}
	// The hooks are set before admit publishes c to Notifier.Close.
	c.onClose = func() { ws.NetConn().SetReadDeadline(time.Now()) }
	c.cutSub = s.forget
	c.ctlFrame = func(sub *router.Sub, reason error, last uint64) ctlFrame {
		f := cutNotice(reason, last)
		f.ID = sub.ID
		return ctlFrame{sub: sub, raw: f.bytes()}
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
		if err := c.writeLoop(&wsWriter{ws: ws}, n.cfg.PingInterval); err != nil {
			n.log.Debug("ws write ended", "err", err)
		}
		c.close()
	}()
	s.readLoop()
	c.close()
	s.unsubscribeAll()
	<-writerDone
}

func (s *wsSession) readLoop() {
	for {
		mt, data, err := s.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("frame larger than %d bytes", s.n.cfg.MaxFrameBytes))
			}
			return
		}
		s.ws.SetReadDeadline(time.Now().Add(s.n.cfg.IdleTimeout))
		if mt != websocket.TextMessage {
			s.closeWith(websocket.CloseUnsupportedData, "only text frames of JSON are accepted")
			return
		}
		if !json.Valid(data) {
			s.closeWith(websocket.CloseInvalidFramePayloadData, "frame is not valid JSON")
			return
		}
		var f clientFrame
		if err := jsonx.Decode(data, &f); err != nil {
			// Name the subscription when its id can be read at all.
			var idOnly struct {
				ID string `json:"id"`
			}
			json.Unmarshal(data, &idOnly)
			if !engine.ValidName(idOnly.ID) {
				idOnly.ID = ""
			}
			s.reply(serverFrame{Op: "error", ID: idOnly.ID, Code: "invalid_argument", Message: err.Error()})
			continue
		}
		switch f.Op {
		case "subscribe":
			s.subscribe(f)
		case "unsubscribe":
			s.unsubscribe(f)
		case "ping":
			s.reply(serverFrame{Op: "pong"})
		case "":
			s.reply(serverFrame{Op: "error", ID: f.ID, Code: "invalid_argument", Message: "op: required (subscribe, unsubscribe or ping)"})
		default:
			s.reply(serverFrame{Op: "error", ID: f.ID, Code: "invalid_argument", Message: fmt.Sprintf("op: unknown op %q (subscribe, unsubscribe or ping)", engine.Truncate(f.Op))})
		}
	}
}

// reply queues a frame for the client, waiting for room: a client that
// sends faster than it reads waits on itself only.
func (s *wsSession) reply(f serverFrame) {
	s.c.enqueue(context.Background(), item{raw: f.bytes()})
}

func (s *wsSession) closeWith(code int, reason string) {
	s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

func (s *wsSession) subscribe(f clientFrame) {
	fail := func(code, msg string) {
		s.reply(serverFrame{Op: "error", ID: f.ID, Code: code, Message: msg})
	}
	if !engine.ValidName(f.ID) {
		fail("invalid_argument", "id: required, and must match ^[A-Za-z0-9._~:@-]{1,128}$")
		return
	}
	if err := router.CheckTopic(f.Topic); err != nil {
		fail("invalid_argument", err.Error())
		return
	}
	s.mu.Lock()
	_, dup := s.subs[f.ID]
	full := len(s.subs) >= s.n.cfg.MaxSubscriptions
	s.mu.Unlock()
	switch {
	case dup:
		fail("conflict", fmt.Sprintf("id: subscription %q exists on this connection", f.ID))
		return
	case full:
		s.n.m.refused.WithLabelValues("max_subscriptions").Inc()
		fail("invalid_argument", fmt.Sprintf("at most %d subscriptions per connection", s.n.cfg.MaxSubscriptions))
		return
	}
	sub, head, err := s.n.r.Subscribe(router.Request{ID: f.ID, Topics: []string{f.Topic}, AfterSeq: f.AfterSeq}, s.c)
	var ht *router.HistoryTruncatedError
	switch {
	case errors.As(err, &ht):
		s.reply(serverFrame{Op: "error", ID: f.ID, Code: "history_truncated", OldestSeq: u64(ht.OldestSeq),
			Message: fmt.Sprintf("after_seq: events after %d were removed by retention; the oldest kept is %d", *f.AfterSeq, ht.OldestSeq)})
		return
	case errors.Is(err, router.ErrClosed):
		fail("unavailable", "the server is shutting down")
		return
	case err != nil:
		fail("invalid_argument", err.Error())
		return
	}
	s.mu.Lock()
	s.subs[f.ID] = sub
	s.mu.Unlock()
	s.n.m.subs.WithLabelValues("ws").Inc()
	s.reply(serverFrame{Op: "subscribed", ID: f.ID, HeadSeq: u64(head)})
	sub.Start()
}

func (s *wsSession) unsubscribe(f clientFrame) {
	s.mu.Lock()
	sub, ok := s.subs[f.ID]
	s.mu.Unlock()
	if !ok {
		s.reply(serverFrame{Op: "error", ID: f.ID, Code: "not_found", Message: fmt.Sprintf("id: no subscription %q on this connection", engine.Truncate(f.ID))})
		return
	}
	s.n.r.Unsubscribe(sub)
	s.forget(sub)
}

// forget drops a subscription that ended from the session's table.
func (s *wsSession) forget(sub *router.Sub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sub.ID] == sub {
		delete(s.subs, sub.ID)
		s.n.m.subs.WithLabelValues("ws").Dec()
	}
}

func (s *wsSession) unsubscribeAll() {
	s.mu.Lock()
	subs := s.subs
	s.subs = map[string]*router.Sub{}
	s.mu.Unlock()
	for _, sub := range subs {
		s.n.r.Unsubscribe(sub)
		s.n.m.subs.WithLabelValues("ws").Dec()
	}
}

// wsWriter writes frames on the connection; only the writer goroutine uses
// it.
type wsWriter struct {
	ws       *websocket.Conn
	buf      []byte
	deadline time.Time // when the write deadline was last pushed out
}

// extend pushes the write deadline out, at most once a second: a client
// that does not read for writeWait is still disconnected, give or take 1 s.
func (w *wsWriter) extend() {
	if now := time.Now(); now.Sub(w.deadline) > time.Second {
		w.ws.SetWriteDeadline(now.Add(writeWait))
		w.deadline = now
	}
}

func (w *wsWriter) writeEvent(sub *router.Sub, ev *wal.Event) error {
	w.extend()
	if ev.Frames != nil {
		// A live event: every subscription with this id on any connection
		// gets the same prepared frame, framed once.
		pm := ev.Frames.Get("ws:"+sub.ID, func() any {
			msg := make([]byte, 0, len(ev.JSON)+len(sub.ID)+32)
			msg = append(msg, `{"op":"event","id":`...)
			msg = jsonx.AppendString(msg, sub.ID)
			msg = append(msg, `,"event":`...)
			msg = append(msg, ev.JSON...)
			msg = append(msg, '}')
			pm, err := fws.NewPreparedMessage(fws.TextMessage, msg)
			if err != nil {
				return err
			}
			return pm
		})
		switch pm := pm.(type) {
		case *fws.PreparedMessage:
			return w.ws.WritePreparedMessage(pm)
		case error:
			return pm
		}
	}
	wr, err := w.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	w.buf = append(w.buf[:0], `{"op":"event","id":`...)
	w.buf = jsonx.AppendString(w.buf, sub.ID)
	w.buf = append(w.buf, `,"event":`...)
	if _, err := wr.Write(w.buf); err != nil {
		return err
	}
	if _, err := wr.Write(ev.JSON); err != nil {
		return err
	}
	if _, err := wr.Write([]byte{'}'}); err != nil {
		return err
	}
	return wr.Close()
}

func (w *wsWriter) writeRaw(b []byte) error {
	w.extend()
	return w.ws.WriteMessage(websocket.TextMessage, b)
}

func (w *wsWriter) ping() error {
	return w.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait))
}

func (w *wsWriter) flush() error { return nil }
