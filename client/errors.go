package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinels for errors.Is. An *Error matches the sentinel of its code (and,
// for a code this client does not know, the sentinel of its status).
var (
	ErrInvalidArgument  = errors.New("client: invalid argument")
	ErrUnauthenticated  = errors.New("client: unauthenticated")
	ErrPermissionDenied = errors.New("client: permission denied")
	ErrNotFound         = errors.New("client: not found")
	ErrConflict         = errors.New("client: conflict")
	ErrGone             = errors.New("client: gone")
	// ErrHistoryTruncated: the events after the requested seq were removed
	// by retention. Errors that match it also match ErrGone, and carry
	// Error.OldestSeq.
	ErrHistoryTruncated = errors.New("client: history truncated")
	ErrPayloadTooLarge  = errors.New("client: payload too large")
	ErrRateLimited      = errors.New("client: rate limited")
	ErrUnavailable      = errors.New("client: unavailable")
	ErrInternal         = errors.New("client: internal server error")
)

// codes maps each stable error code to its status and sentinels.
var codes = map[string]struct {
	status    int
	sentinels []error
}{
	"invalid_argument":  {http.StatusBadRequest, []error{ErrInvalidArgument}},
	"unauthenticated":   {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	"permission_denied": {http.StatusForbidden, []error{ErrPermissionDenied}},
	"not_found":         {http.StatusNotFound, []error{ErrNotFound}},
	"conflict":          {http.StatusConflict, []error{ErrConflict}},
	"gone":              {http.StatusGone, []error{ErrGone}},
	"history_truncated": {http.StatusGone, []error{ErrHistoryTruncated, ErrGone}},
	"payload_too_large": {http.StatusRequestEntityTooLarge, []error{ErrPayloadTooLarge}},
	"rate_limited":      {http.StatusTooManyRequests, []error{ErrRateLimited}},
	"unavailable":       {http.StatusServiceUnavailable, []error{ErrUnavailable}},
	"internal":          {http.StatusInternalServerError, []error{ErrInternal}},
}

// statusCode is the code of a status, for answers without an Engram error
// body (a proxy's 502, say).
func statusCode(status int) string {
	for code, c := range codes {
		if c.status == status && code != "history_truncated" {
			return code
		}
	}
	switch {
	case status >= 500:
		return "internal"
	case status >= 400:
		return "invalid_argument"
	}
	return "unknown"
}

// Error is an error answered by the server: the body
// {"error": {"code", "message", "details"}} of a non-2xx answer, or an
// error frame of a subscription.
type Error struct {
	// Status is the HTTP status. For a subscription's error frame it is the
	// status the same code has over HTTP (410 for history_truncated).
	Status int
	// Code is the stable error code ("not_found", "conflict", ...). Match on
	// it (or with errors.Is), not on Message.
	Code string
	// Message says what was wrong, naming the field where there is one.
	Message string
	// Details is the machine-readable extra information (numbers decode as
	// float64). Empty when there is none.
	Details map[string]any
	// RetryAfter is the Retry-After header of a 429 or 503 answer, zero
	// when absent.
	RetryAfter time.Duration
	// OldestSeq is the oldest seq the server still keeps, for
	// history_truncated; zero otherwise.
	OldestSeq uint64
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("engram: %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("engram: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	c, ok := codes[e.Code]
	if !ok {
		c, ok = codes[statusCode(e.Status)]
	}
	if !ok {
		return false
	}
	for _, s := range c.sentinels {
		if s == target {
			return true
		}
	}
	return false
}

// temporary reports whether retrying the same request later may succeed.
func (e *Error) temporary() bool {
	switch e.Code {
	case "unavailable", "internal", "rate_limited":
		return true
	}
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error *struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
	} `json:"error"`
}

// readError builds the *Error of a non-2xx answer.
func readError(resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := parseError(resp.StatusCode, b)
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	return e
}

// parseError builds an *Error from a status and an answer body, which need
// not be Engram's error JSON.
func parseError(status int, body []byte) *Error {
	e := &Error{Status: status}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		if len(eb.Error.Details) > 0 {
			json.Unmarshal(eb.Error.Details, &e.Details)
			var d struct {
				OldestSeq uint64 `json:"oldest_seq"`
			}
			if json.Unmarshal(eb.Error.Details, &d) == nil {
				e.OldestSeq = d.OldestSeq
			}
		}
	} else {
		e.Code = statusCode(status)
		msg := string(bytes.TrimSpace(body))
		if len(msg) > 256 {
			msg = msg[:256] + "…"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		e.Message = msg
	}
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	return e
}
