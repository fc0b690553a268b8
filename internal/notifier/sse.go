package notifier

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
	"engram/internal/router"
	"engram/internal/wal"
)

// HistoryTruncated is returned by the SSE handler, before the stream starts,
// when after_seq is older than retention keeps; the api maps it to 410.
type HistoryTruncated struct{ OldestSeq uint64 }

func (e *HistoryTruncated) Error() string {
	return fmt.Sprintf("after_seq: history truncated: the oldest event kept is %d", e.OldestSeq)
}

// BadRequest is an SSE request the handler refuses before streaming.
type BadRequest struct{ Msg string }

func (e *BadRequest) Error() string { return e.Msg }

// SSE is the handler of GET /v1/events.
func (n *Notifier) SSE(c *fiber.Ctx) error {
	var topics []string
	for _, t := range c.Context().QueryArgs().PeekMulti("topic") {
		topics = append(topics, string(t))
	}
	if len(topics) == 0 {
		return &BadRequest{"topic: at least one topic parameter is required"}
	}
	if len(topics) > n.cfg.MaxSubscriptions {
		n.m.refused.WithLabelValues("max_subscriptions").Inc()
		return &BadRequest{fmt.Sprintf("topic: at most %d topics per stream", n.cfg.MaxSubscriptions)}
	}
	for _, t := range topics {
		if err := router.CheckTopic(t); err != nil {
			return &BadRequest{err.Error()}
		}
	}
	var after *uint64
	field, raw := "after_seq", c.Query("after_seq")
	if raw == "" {
		field, raw = "Last-Event-ID", c.Get("Last-Event-ID")
	}
	if raw != "" {
		v, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return &BadRequest{fmt.Sprintf("%s: %q is not a seq (a non-negative integer)", field, engine.Truncate(raw))}
		}
		after = &v
	}

	cn := newConn(n, "sse")
	cn.ctlFrame = func(_ *router.Sub, reason error, last uint64) ctlFrame {
		f := cutNotice(reason, last)
		f.Op = ""
		return ctlFrame{raw: append(append([]byte("event: error\ndata: "), f.bytes()...), "\n\n"...), last: true}
	}
	if !n.admit(cn) {
		return fiber.NewError(fiber.StatusServiceUnavailable, "too many real-time connections")
	}
	sub, _, err := n.r.Subscribe(router.Request{ID: "sse", Topics: topics, AfterSeq: after}, cn)
	if err != nil {
		n.release(cn)
		var ht *router.HistoryTruncatedError
		if errors.As(err, &ht) {
			return &HistoryTruncated{OldestSeq: ht.OldestSeq}
		}
		if errors.Is(err, router.ErrClosed) {
			return fiber.NewError(fiber.StatusServiceUnavailable, "the server is shutting down")
		}
		return &BadRequest{err.Error()}
	}
	n.m.subs.WithLabelValues("sse").Inc()

	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderConnection, "keep-alive")
	c.Set("X-Accel-Buffering", "no")
	netConn := c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			n.r.Unsubscribe(sub)
			n.m.subs.WithLabelValues("sse").Dec()
			cn.close()
			n.release(cn)
		}()
		sw := &sseWriter{w: w, conn: netConn}
		// The subscription exists already: once the client reads this, it
		// gets every later event.
		if err := sw.writeRaw([]byte(": ok\n\n")); err != nil {
			return
		}
		if err := sw.flush(); err != nil {
			return
		}
		sub.Start()
		if err := cn.writeLoop(sw, n.cfg.SSEHeartbeat); err != nil {
			n.log.Debug("sse stream ended", "err", err)
		}
	})
	return nil
}

// sseWriter writes an SSE stream. The server's write timeout covers a whole
// response; a stream lives on, so each flush sets its own deadline.
type sseWriter struct {
	w    *bufio.Writer
	conn net.Conn
	buf  []byte
}

func (s *sseWriter) writeEvent(_ *router.Sub, ev *wal.Event) error {
	s.buf = append(s.buf[:0], "id: "...)
	s.buf = strconv.AppendUint(s.buf, ev.Seq, 10)
	s.buf = append(s.buf, "\nevent: "...)
	s.buf = append(s.buf, ev.Type...)
	s.buf = append(s.buf, "\ndata: "...)
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	if _, err := s.w.Write(ev.JSON); err != nil {
		return err
	}
	_, err := s.w.WriteString("\n\n")
	return err
}

func (s *sseWriter) writeRaw(b []byte) error {
	_, err := s.w.Write(b)
	return err
}

func (s *sseWriter) ping() error { return s.writeRaw([]byte(": ping\n\n")) }

func (s *sseWriter) flush() error {
	if s.conn != nil {
		s.conn.SetWriteDeadline(time.Now().Add(writeWait))
	}
	return s.w.Flush()
}
