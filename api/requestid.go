package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/oklog/ulid/v2"

	"engram/internal/engine"
)

// HeaderRequestID carries a request's id, in the request (optional, from
// the client) and in every response.
const HeaderRequestID = "X-Request-Id"

var headerRequestID = []byte(HeaderRequestID)

// requestLog gives each request its id (the client's X-Request-Id when it is
// 1..128 characters of [A-Za-z0-9._~:@-], else a new ULID), answers it in
// X-Request-Id on every response (errors and upgrades included), and at
// debug level writes an access line. It runs first, so that every later log
// line about the request can carry the id (RequestID).
func requestLog(log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		setRequestID(c)
		err := c.Next()
		if log.Enabled(context.Background(), slog.LevelDebug) {
			status := c.Response().StatusCode()
			if err != nil {
				status, _, _, _ = classify(err)
			}
			// c.Path() is the path alone: a query string (which may carry
			// an access_token) is never logged.
			log.Debug("request", "method", c.Method(), "path", c.Path(), "status", status,
				"duration", time.Since(start), "request_id", RequestID(c))
		}
		return err
	}
}

// RequestID returns the id of the request c is serving, for handlers and
// log lines. The id lives in the response's X-Request-Id header only (no
// copy, no c.Locals entry: this is on every request's path); RequestID
// copies it out. A request that got no id yet gets one now: the answers
// fasthttp makes before any route runs (a timed-out or oversized request)
// get theirs this way, from the error handler.
func RequestID(c *fiber.Ctx) string {
	if id := c.Response().Header.PeekBytes(headerRequestID); len(id) > 0 {
		return string(id)
	}
	setRequestID(c)
	return string(c.Response().Header.PeekBytes(headerRequestID))
}

// setRequestID picks the request's id and sets the response header.
func setRequestID(c *fiber.Ctx) {
	if h := c.Request().Header.PeekBytes(headerRequestID); validRequestID(h) {
		c.Response().Header.SetCanonical(headerRequestID, h)
		return
	}
	var buf [ulid.EncodedSize]byte
	_ = ulid.Make().MarshalTextTo(buf[:]) // cannot fail: buf has the size
	c.Response().Header.SetCanonical(headerRequestID, buf[:])
}

// validRequestID: a client's id is kept when it is a valid name (the
// charset and length of every name in the API).
func validRequestID(b []byte) bool { return engine.ValidName(b) }

// audit writes the audit line of an admin action (or, with auth, of a
// refused credential): info level, "audit": true, the action, the request
// id and the client's address, then attrs (key, value pairs). attrs must
// never hold a body, a token, a key or a hash of one: name the key instead.
func (h *handlers) audit(c *fiber.Ctx, action string, attrs ...any) {
	audit(h.log, c, action, attrs...)
}

func audit(log *slog.Logger, c *fiber.Ctx, action string, attrs ...any) {
	args := make([]any, 0, 8+len(attrs))
	args = append(args, "audit", true, "action", action, "request_id", RequestID(c),
		"remote", c.Context().RemoteAddr().String())
	args = append(args, attrs...)
	log.Info("audit", args...)
}
