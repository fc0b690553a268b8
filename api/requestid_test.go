package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/valyala/fasthttp/fasthttputil"

	"engram/api"
	"engram/internal/server"
)

// syncBuf is a log sink that tests read while the server writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuf) lines(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newLoggedServer is newServer with a JSON logger at level into the
// returned buffer.
func newLoggedServer(t *testing.T, maxBody int64, level slog.Level) (*server.Server, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Sync: "none", MaxBody: maxBody,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv, logs
}

// TestRequestID: every answer carries X-Request-Id: the client's when it is
// valid, else a new ULID; errors included.
func TestRequestID(t *testing.T) {
	srv := newServer(t, 0)
	long := strings.Repeat("a", 128)
	unit := `{"context_id":"c","agent_id":"a","type":"MESSAGE"}`
	cases := []struct {
		name, method, path, body string
		sent                     string // X-Request-Id sent; "" sends none
		status                   int
		echoed                   bool // the answer carries sent; else a fresh ULID
	}{
		{"given", "GET", "/healthz", "", "req-1", 200, true},
		{"given, every allowed character", "GET", "/healthz", "", "AZaz09._~:@-", 200, true},
		{"given, 128 characters", "GET", "/healthz", "", long, 200, true},
		{"given on a write", "POST", "/v1/workunits", unit, "w-1", 201, true},
		{"generated", "GET", "/healthz", "", "", 200, false},
		{"generated on a write", "POST", "/v1/workunits", unit, "", 201, false},
		{"too long replaced", "GET", "/healthz", "", long + "a", 200, false},
		{"space replaced", "GET", "/healthz", "", "a b", 200, false},
		{"slash replaced", "GET", "/healthz", "", "a/b", 200, false},
		{"non-ASCII replaced", "GET", "/healthz", "", "é", 200, false},
		{"on 404", "GET", "/v1/nowhere", "", "nf-1", 404, true},
		{"on 400", "POST", "/v1/workunits", `{"context_id":`, "bad-1", 400, true},
		{"generated on 400", "POST", "/v1/workunits", `{`, "", 400, false},
		{"on 404 of a unit", "GET", "/v1/workunits/01J00000000000000000000000", "", "", 404, false},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest(tc.method, tc.path, body)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.sent != "" {
				req.Header.Set(api.HeaderRequestID, tc.sent)
			}
			resp, err := srv.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			got := resp.Header.Values(api.HeaderRequestID)
			if len(got) != 1 {
				t.Fatalf("X-Request-Id %q, want one value", got)
			}
			if tc.echoed {
				if got[0] != tc.sent {
					t.Errorf("X-Request-Id %q, want the client's %q", got[0], tc.sent)
				}
				return
			}
			if _, err := ulid.ParseStrict(got[0]); err != nil {
				t.Errorf("X-Request-Id %q is not a ULID: %v", got[0], err)
			}
			if seen[got[0]] {
				t.Errorf("X-Request-Id %q given twice", got[0])
			}
			seen[got[0]] = true
		})
	}
}

// TestRequestIDOnServerErrors: answers that fasthttp makes before any route
// runs (413 here) carry the id too, and count as limit hits.
func TestRequestIDOnServerErrors(t *testing.T) {
	srv := newServer(t, 1024)
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- srv.App().Listener(ln) }()
	t.Cleanup(func() {
		if err := srv.App().ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Error(err)
		}
		<-served
	})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.Dial() },
	}}
	t.Cleanup(client.CloseIdleConnections)
	for _, sent := range []string{"big-1", ""} {
		req, _ := http.NewRequest("POST", "http://engram/v1/workunits", strings.NewReader(strings.Repeat("x", 2000)))
		if sent != "" {
			req.Header.Set(api.HeaderRequestID, sent)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get(api.HeaderRequestID)
		switch {
		case resp.StatusCode != 413:
			t.Errorf("status %d, want 413", resp.StatusCode)
		case sent != "" && got != sent:
			t.Errorf("X-Request-Id %q, want %q", got, sent)
		case sent == "":
			if _, err := ulid.ParseStrict(got); err != nil {
				t.Errorf("X-Request-Id %q is not a ULID", got)
			}
		}
	}
	r := do(t, srv, "GET", "/metrics", "")
	if want := `engram_http_limit_hits_total{limit="body_too_large"} 2`; !bytes.Contains(r.body, []byte(want)) {
		t.Errorf("metrics lack %s", want)
	}
}

// TestLimitHits: a body nested too deep counts as json_too_deep, whatever
// route refused it; other bad input counts as no limit.
func TestLimitHits(t *testing.T) {
	srv := newServer(t, 0)
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	for _, rq := range []struct{ method, path, body string }{
		{"POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE","payload":` + deep + `}`},
		{"PUT", "/v1/streams/s/g/i", deep},
		{"POST", "/v1/workunits", `{"context_id":`},            // malformed: no limit
		{"POST", "/v1/workunits", `{"context_id":"c"}`},        // invalid: no limit
		{"POST", "/v1/queues/q/messages", `{"payload":[[1]]}`}, // fine
	} {
		do(t, srv, rq.method, rq.path, rq.body)
	}
	r := do(t, srv, "GET", "/metrics", "")
	for _, want := range []string{
		`engram_http_limit_hits_total{limit="json_too_deep"} 2`,
		`engram_http_limit_hits_total{limit="body_too_large"} 0`,
		`engram_http_limit_hits_total{limit="read_timeout"} 0`,
		`engram_http_limit_hits_total{limit="write_timeout"} 0`,
		`engram_http_limit_hits_total{limit="idle_timeout"} 0`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAccessAndAuditLog: at debug level each request has an access line
// with its id and no query string; an admin action writes an audit line
// with the id and the client's address, and never the body.
func TestAccessAndAuditLog(t *testing.T) {
	srv, logs := newLoggedServer(t, 0, slog.LevelDebug)
	req := httptest.NewRequest("GET", "/v1/search?q=secret-term&access_token=tok-123", nil)
	req.Header.Set(api.HeaderRequestID, "acc-1")
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	req = httptest.NewRequest("POST", "/v1/admin/reindex", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.HeaderRequestID, "adm-1")
	resp, err = srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("reindex: status %d", resp.StatusCode)
	}

	var access map[string]any
	for _, l := range logs.lines("request") {
		if l["request_id"] == "acc-1" {
			access = l
		}
	}
	if access == nil {
		t.Fatalf("no access line with request_id acc-1:\n%s", logs)
	}
	if access["path"] != "/v1/search" || access["method"] != "GET" || access["status"] == nil || access["duration"] == nil {
		t.Errorf("access line %v", access)
	}
	if s := logs.String(); strings.Contains(s, "tok-123") || strings.Contains(s, "secret-term") {
		t.Errorf("the log holds the query string:\n%s", s)
	}

	audits := logs.lines("audit")
	if len(audits) != 1 {
		t.Fatalf("%d audit lines, want 1:\n%s", len(audits), logs)
	}
	a := audits[0]
	if a["audit"] != true || a["action"] != "reindex" || a["request_id"] != "adm-1" || a["remote"] == nil || a["level"] != "INFO" {
		t.Errorf("audit line %v", a)
	}

	// At info level there is no access line.
	srv2, logs2 := newLoggedServer(t, 0, slog.LevelInfo)
	do(t, srv2, "GET", "/healthz", "")
	if n := len(logs2.lines("request")); n != 0 {
		t.Errorf("%d access lines at info level", n)
	}
}
