package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewValidatesBaseURL(t *testing.T) {
	for _, tc := range []struct {
		in, base string // base empty: New fails
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"https://example.com/engram/", "https://example.com/engram"},
		{"ftp://example.com", ""},
		{"ws://example.com", ""},
		{"localhost:8080", ""},
		{"127.0.0.1:8080", ""},
		{"http://", ""},
		{"", ""},
		{"http://user:pw@example.com", ""},
		{"http://example.com/?x=1", ""},
		{"http://example.com/#frag", ""},
		{"http://exa mple.com", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := New(tc.in)
			switch {
			case tc.base == "" && err == nil:
				t.Fatalf("New(%q) = %q, want an error", tc.in, c.BaseURL())
			case tc.base != "" && err != nil:
				t.Fatalf("New(%q): %v", tc.in, err)
			case tc.base != "" && c.BaseURL() != tc.base:
				t.Fatalf("BaseURL = %q, want %q", c.BaseURL(), tc.base)
			}
		})
	}
}

func TestOptionsSetHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer hs.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	c, err := New(hs.URL, WithHTTPClient(hc), WithToken("s3cret"), WithUserAgent("agent/7"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := <-got
	if a := h.Get("Authorization"); a != "Bearer s3cret" {
		t.Errorf("Authorization = %q", a)
	}
	if ua := h.Get("User-Agent"); ua != "agent/7" {
		t.Errorf("User-Agent = %q", ua)
	}

	c, _ = New(hs.URL, WithHTTPClient(hc))
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	h = <-got
	if a, ok := h["Authorization"]; ok {
		t.Errorf("Authorization sent without a token: %q", a)
	}
	if ua := h.Get("User-Agent"); ua != DefaultUserAgent {
		t.Errorf("User-Agent = %q, want %q", ua, DefaultUserAgent)
	}
}

func TestHealthAndReady(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	if err := ts.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestErrorsWithoutEngramBody: answers that do not come from Engram (a
// proxy's) still become an *Error with a code derived from the status.
func TestErrorsWithoutEngramBody(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/contexts/bad-gateway":
			http.Error(w, "upstream exploded", http.StatusBadGateway)
		case "/v1/contexts/slow-down":
			w.Header().Set("Retry-After", "3")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"rate limit exceeded","details":{}}}`))
		case "/v1/contexts/teapot":
			w.WriteHeader(http.StatusTeapot)
		case "/v1/contexts/garbage":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id":`))
		}
	}))
	defer hs.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, _ := New(hs.URL, WithHTTPClient(hc))
	ctx := context.Background()

	_, err := c.GetContext(ctx, "bad-gateway")
	var e *Error
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "internal" || e.Message != "upstream exploded" || !errors.Is(err, ErrInternal) {
		t.Errorf("502: %#v", err)
	}
	_, err = c.GetContext(ctx, "slow-down")
	if !errors.As(err, &e) || e.Status != 429 || !errors.Is(err, ErrRateLimited) || e.RetryAfter != 3*time.Second {
		t.Errorf("429: %#v", err)
	}
	_, err = c.GetContext(ctx, "teapot")
	if !errors.As(err, &e) || e.Status != 418 || e.Code != "invalid_argument" || e.Message != "I'm a teapot" {
		t.Errorf("418: %#v", err)
	}
	_, err = c.GetContext(ctx, "garbage")
	if err == nil || !strings.Contains(err.Error(), "client: GET /v1/contexts/garbage: decode 200 answer") {
		t.Errorf("truncated 200: %v", err)
	}
}

func TestNetworkErrorsNameTheRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	c, _ := New("http://" + addr)
	_, err = c.GetContext(context.Background(), "c1")
	var op *net.OpError
	if err == nil || !strings.HasPrefix(err.Error(), "client: GET /v1/contexts/c1: ") || !errors.As(err, &op) {
		t.Fatalf("err = %v, want a wrapped *net.OpError", err)
	}
	if strings.Count(err.Error(), addr) > 1 {
		t.Errorf("the address is repeated: %v", err)
	}

	ts := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", AgentID: "a", Type: UnitMessage})
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "client: POST /v1/workunits: ") {
		t.Fatalf("err = %v, want a wrapped context.Canceled", err)
	}
}

func TestErrorIs(t *testing.T) {
	all := []error{ErrInvalidArgument, ErrUnauthenticated, ErrPermissionDenied, ErrNotFound, ErrConflict,
		ErrGone, ErrHistoryTruncated, ErrPayloadTooLarge, ErrRateLimited, ErrUnavailable, ErrInternal}
	for _, tc := range []struct {
		err  *Error
		want []error
	}{
		{&Error{Status: 400, Code: "invalid_argument"}, []error{ErrInvalidArgument}},
		{&Error{Status: 401, Code: "unauthenticated"}, []error{ErrUnauthenticated}},
		{&Error{Status: 403, Code: "permission_denied"}, []error{ErrPermissionDenied}},
		{&Error{Status: 404, Code: "not_found"}, []error{ErrNotFound}},
		{&Error{Status: 409, Code: "conflict"}, []error{ErrConflict}},
		{&Error{Status: 410, Code: "gone"}, []error{ErrGone}},
		{&Error{Status: 410, Code: "history_truncated"}, []error{ErrHistoryTruncated, ErrGone}},
		{&Error{Status: 413, Code: "payload_too_large"}, []error{ErrPayloadTooLarge}},
		{&Error{Status: 429, Code: "rate_limited"}, []error{ErrRateLimited}},
		{&Error{Status: 503, Code: "unavailable"}, []error{ErrUnavailable}},
		{&Error{Status: 500, Code: "internal"}, []error{ErrInternal}},
		{&Error{Status: 404, Code: "some_future_code"}, []error{ErrNotFound}}, // by status
		{&Error{Code: "lagged"}, nil},
	} {
		t.Run(tc.err.Code, func(t *testing.T) {
			for _, s := range all {
				want := false
				for _, w := range tc.want {
					want = want || w == s
				}
				if got := errors.Is(tc.err, s); got != want {
					t.Errorf("errors.Is(%v, %v) = %v", tc.err, s, got)
				}
			}
		})
	}
}
