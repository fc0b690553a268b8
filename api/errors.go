package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"engram/internal/backup"
	"engram/internal/engine"
	"engram/internal/jsonx"
	"engram/internal/notifier"
	"engram/internal/search"
	"engram/internal/wal"
)

// errorTable maps the errors of the layers below to a status and a stable
// code. The first kind that matches wins.
var errorTable = []struct {
	kind   error
	status int
	code   string
}{
	{engine.ErrInvalid, fiber.StatusBadRequest, "invalid_argument"},
	{engine.ErrNotFound, fiber.StatusNotFound, "not_found"},
	{engine.ErrConflict, fiber.StatusConflict, "conflict"},
	{engine.ErrGone, fiber.StatusGone, "gone"},
	{wal.ErrUnavailable, fiber.StatusServiceUnavailable, "unavailable"},
	{wal.ErrClosed, fiber.StatusServiceUnavailable, "unavailable"},
	{context.Canceled, fiber.StatusServiceUnavailable, "unavailable"},
	{context.DeadlineExceeded, fiber.StatusServiceUnavailable, "unavailable"},
}

// statusCodes gives the code of a status that Fiber or fasthttp produced
// itself (oversized body, unknown route, timeouts).
var statusCodes = map[int]string{
	fiber.StatusBadRequest:            "invalid_argument",
	fiber.StatusUnauthorized:          "unauthenticated",
	fiber.StatusForbidden:             "permission_denied",
	fiber.StatusNotFound:              "not_found",
	fiber.StatusConflict:              "conflict",
	fiber.StatusGone:                  "gone",
	fiber.StatusRequestEntityTooLarge: "payload_too_large",
	fiber.StatusTooManyRequests:       "rate_limited",
	fiber.StatusServiceUnavailable:    "unavailable",
}

// apiError is an error raised by a handler itself (bad query parameter,
// unknown route) with its status and code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{fiber.StatusBadRequest, "invalid_argument", fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error errorInner `json:"error"`
}

type errorInner struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// classify gives err's status, code, client message and details.
func classify(err error) (int, string, string, map[string]any) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.code, ae.msg, nil
	}
	var rl *rateLimited
	if errors.As(err, &rl) {
		return fiber.StatusTooManyRequests, "rate_limited", err.Error(),
			map[string]any{"retry_after_ms": rl.wait.Milliseconds(), "limit_per_s": rl.perSecond, "burst": rl.burst}
	}
	var ht *notifier.HistoryTruncated
	if errors.As(err, &ht) {
		return fiber.StatusGone, "history_truncated", err.Error(), map[string]any{"oldest_seq": ht.OldestSeq}
	}
	var br *notifier.BadRequest
	if errors.As(err, &br) {
		return fiber.StatusBadRequest, "invalid_argument", br.Msg, nil
	}
	var lag *search.LagError
	if errors.As(err, &lag) {
		return fiber.StatusServiceUnavailable, "unavailable", err.Error(),
			map[string]any{"indexed_seq": lag.IndexedSeq, "min_seq": lag.MinSeq}
	}
	if errors.Is(err, backup.ErrBusy) {
		return fiber.StatusConflict, "conflict", err.Error(), nil
	}
	if errors.Is(err, search.ErrUnavailable) {
		return fiber.StatusServiceUnavailable, "unavailable", err.Error(), nil
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code, ok := statusCodes[fe.Code]
		switch {
		case ok:
		case fe.Code >= 500:
			code = "internal"
		default:
			code = "invalid_argument"
		}
		msg := fe.Message
		if fe.Code == fiber.StatusRequestEntityTooLarge {
			msg = "body: larger than the configured limit (--max-body)"
		}
		return fe.Code, code, msg, nil
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			var details map[string]any
			var ee *engine.Error
			if errors.As(err, &ee) {
				details = ee.Details
			}
			msg := err.Error()
			if row.status == fiber.StatusServiceUnavailable {
				msg = "storage unavailable: " + msg
			}
			return row.status, row.code, msg, details
		}
	}
	return fiber.StatusInternalServerError, "internal", "internal error", nil
}

// errorHandler is Fiber's ErrorHandler: every non-2xx answer goes through it,
// also those fasthttp makes before any route runs (408, 413, 431), which get
// their request id here. limitHit (nil: not counted) counts the answers that
// a limit caused.
func errorHandler(log *slog.Logger, limitHit func(limit string)) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		status, code, msg, details := classify(err)
		id := RequestID(c)
		switch {
		case errors.Is(err, fiber.ErrBadGateway):
			// Fiber's answer to a connection that failed before a request
			// was read (a TLS handshake the client gave up on, a reset):
			// no handler ran (none proxies), nobody gets the answer, and
			// any client can cause it, so it is no error line.
			log.Debug("connection failed before a request was read", "err", err, "request_id", id)
		case status >= 500:
			log.Error("request failed", "method", c.Method(), "path", c.Path(), "status", status, "err", err, "request_id", id)
		}
		if limitHit != nil {
			switch {
			case status == fiber.StatusRequestEntityTooLarge:
				limitHit(LimitBodyTooLarge)
			case status == fiber.StatusRequestHeaderFieldsTooLarge:
				limitHit(LimitHeaderTooLarge)
			case status == fiber.StatusTooManyRequests:
				limitHit(LimitRateLimited)
			case status == fiber.StatusBadRequest && jsonx.CheckDepth(c.Body(), jsonx.MaxDepth) != nil:
				// Checked here, on the 400 path only: whichever decoder
				// refused the body, it nests deeper than the limit.
				limitHit(LimitJSONTooDeep)
			}
		}
		if details == nil {
			details = map[string]any{}
		}
		return c.Status(status).JSON(errorBody{errorInner{code, msg, details}})
	}
}
