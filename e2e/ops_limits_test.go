package e2e_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/oklog/ulid/v2"
)

// limitSeries is the series of engram_http_limit_hits_total for limit.
func limitSeries(limit string) string {
	return `engram_http_limit_hits_total{limit="` + limit + `"}`
}

// slowClient dials addr, sends prefix at once, then slow one byte every gap
// until the server closes the connection (or give is over); it returns what
// the server wrote and how long after the dial the connection ended.
func slowClient(addr, prefix, slow string, gap, give time.Duration) (string, time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, prefix); err != nil {
		return "", 0, err
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c) // until the server closes (or resets)
		got <- b
	}()
	t := time.NewTicker(gap)
	defer t.Stop()
	deadline := time.After(give)
	for i := 0; ; i++ {
		select {
		case b := <-got:
			return string(b), time.Since(start), nil
		case <-deadline:
			return "", time.Since(start), fmt.Errorf("still open after %v", give)
		case <-t.C:
			if i < len(slow) {
				c.Write([]byte{slow[i]}) // fails once the server closed: the read says so
			}
		}
	}
}

// TestLimitsSlowClients: clients that send a request a byte at a time (its
// head or its body), or nothing at all, are cut off at about --read-timeout
// with a 408, while other clients keep being answered at normal latency;
// a client that stops reading a large answer is cut off at about
// --write-timeout; an idle keep-alive connection is closed at about
// --idle-timeout. Each counts in engram_http_limit_hits_total.
func TestLimitsSlowClients(t *testing.T) {
	const readTO, writeTO, idleTO = time.Second, time.Second, 1500 * time.Millisecond
	p := startServer(t, t.TempDir(), "--read-timeout", readTO.String(), "--write-timeout", writeTO.String(),
		"--idle-timeout", idleTO.String())
	before := mustScrape(t, p)

	t.Run("slowloris", func(t *testing.T) {
		const slowHeads, slowBodies, silent = 20, 10, 5
		head := "GET /healthz HTTP/1.1\r\nHost: engram\r\nX-Slow: " + strings.Repeat("a", 200) + "\r\n\r\n"
		bodyHead := "POST /v1/workunits HTTP/1.1\r\nHost: engram\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n"
		body := `{"context_id":"slow","agent_id":"a","type":"MESSAGE"}` + strings.Repeat(" ", 80)
		type result struct {
			kind   string
			answer string
			took   time.Duration
			err    error
		}
		results := make(chan result, slowHeads+slowBodies+silent)
		var wg sync.WaitGroup
		for i := range slowHeads + slowBodies + silent {
			wg.Go(func() {
				switch {
				case i < slowHeads:
					a, took, err := slowClient(p.Addr, "", head, 50*time.Millisecond, 10*readTO)
					results <- result{kind: "slow head", answer: a, took: took, err: err}
				case i < slowHeads+slowBodies:
					// The head goes at once; only the body trickles.
					a, took, err := slowClient(p.Addr, bodyHead, body, 50*time.Millisecond, 10*readTO)
					results <- result{kind: "slow body", answer: a, took: took, err: err}
				default:
					a, took, err := slowClient(p.Addr, "", "", 50*time.Millisecond, 10*readTO)
					results <- result{kind: "silent", answer: a, took: took, err: err}
				}
			})
		}

		// Meanwhile others are served: reads and durable writes.
		stop := make(chan struct{})
		var served, failed int
		var worst time.Duration
		var lastErr error
		var mu sync.Mutex
		var others sync.WaitGroup
		for w := range 4 {
			others.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					var status int
					var err error
					if n%2 == 0 {
						status, _, err = p.do("GET", "/healthz", nil)
					} else {
						status, _, err = p.do("POST", "/v1/workunits", []byte(fmt.Sprintf(`{"context_id":"ok-%d","agent_id":"a","type":"MESSAGE"}`, w)))
					}
					took := time.Since(start)
					mu.Lock()
					if err != nil || (status != 200 && status != 201) {
						failed++
						lastErr = fmt.Errorf("status %d, err %v", status, err)
					} else {
						served++
						worst = max(worst, took)
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		close(stop)
		others.Wait()
		close(results)

		for r := range results {
			switch {
			case r.err != nil:
				t.Errorf("%s client: %v", r.kind, r.err)
			case r.took < readTO-100*time.Millisecond || r.took > readTO+2*time.Second:
				t.Errorf("%s client cut off after %v, want about %v", r.kind, r.took, readTO)
			case !strings.HasPrefix(r.answer, "HTTP/1.1 408"):
				t.Errorf("%s client got %q, want a 408", r.kind, clip([]byte(r.answer)))
			case !strings.Contains(r.answer, "X-Request-Id: "):
				t.Errorf("%s client's 408 has no X-Request-Id: %q", r.kind, clip([]byte(r.answer)))
			}
		}
		t.Logf("meanwhile %d requests served, %d failed, slowest %v", served, failed, worst)
		if failed > 0 {
			t.Errorf("%d requests of other clients failed (last: %v)", failed, lastErr)
		}
		if served < 20 {
			t.Errorf("only %d requests of other clients served", served)
		}
		if worst > 500*time.Millisecond {
			t.Errorf("slowest request of another client took %v", worst)
		}
		m := mustScrape(t, p)
		if got := m[limitSeries("read_timeout")] - before[limitSeries("read_timeout")]; got != slowHeads+slowBodies+silent {
			t.Errorf("read_timeout hits %v, want %d", got, slowHeads+slowBodies+silent)
		}
		if got := m[limitSeries("idle_timeout")]; got != 0 {
			t.Errorf("idle_timeout hits %v before any keep-alive connection idled", got)
		}
	})

	t.Run("slow reader", func(t *testing.T) {
		// About 11 MB of answer: more than the socket buffers of both ends
		// hold, so the server's write blocks while the client reads nothing.
		payload := `"` + strings.Repeat("x", 900<<10) + `"`
		for range 12 {
			p.must(t, 201, "POST", "/v1/workunits", `{"context_id":"big","agent_id":"a","type":"MESSAGE","payload":`+payload+`}`)
		}
		m0 := mustScrape(t, p)[limitSeries("write_timeout")]
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return serr
		}}
		c, err := d.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if _, err := io.WriteString(c, "GET /v1/contexts/big/workunits?limit=12 HTTP/1.1\r\nHost: engram\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		var cut time.Duration
		if !pollUntil(10*writeTO, 20*time.Millisecond, func() bool {
			cut = time.Since(start)
			return mustScrape(t, p)[limitSeries("write_timeout")] > m0
		}) {
			t.Fatalf("write_timeout not counted %v after the request", 10*writeTO)
		}
		if cut < writeTO-100*time.Millisecond || cut > writeTO+2*time.Second {
			t.Errorf("slow reader cut off after %v, want about %v", cut, writeTO)
		}
		// Reading now gets part of the answer, then the end.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= resp.ContentLength {
			t.Errorf("read %d of %d bytes (err %v): the answer was not cut", n, resp.ContentLength, err)
		}
		p.must(t, 200, "GET", "/healthz", nil) // others are still served
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		m0 := mustScrape(t, p)[limitSeries("idle_timeout")]
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: engram\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * idleTO))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("idle connection: read %v, want EOF", err)
		}
		if took := time.Since(start); took < idleTO-100*time.Millisecond || took > idleTO+2*time.Second {
			t.Errorf("idle connection closed after %v, want about %v", took, idleTO)
		}
		if !pollUntil(5*time.Second, 10*time.Millisecond, func() bool {
			return mustScrape(t, p)[limitSeries("idle_timeout")] > m0
		}) {
			t.Errorf("idle_timeout not counted")
		}
	})
	p.Stop()
}

// TestLimitsMetrics: the body size, JSON depth and subscription limits
// count when they refuse.
func TestLimitsMetrics(t *testing.T) {
	p := startServer(t, t.TempDir(), "--max-body", "4KiB", "--max-subscriptions", "2")
	m0 := mustScrape(t, p)
	checkError(t, p.call(t, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE","payload":"`+strings.Repeat("x", 5000)+`"}`),
		413, "payload_too_large", "body")
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	checkError(t, p.call(t, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE","payload":`+deep+`}`),
		400, "invalid_argument", "nested deeper")
	checkError(t, p.call(t, "GET", sseURL("", []string{"contexts/a", "contexts/b", "contexts/c"}, -1), nil), 400, "invalid_argument", "topic")
	w := openWS(t, p)
	w.subscribe(t, "s1", "contexts/a", -1)
	w.subscribe(t, "s2", "contexts/b", -1)
	w.mustSend(t, subscribeFrame("s3", "contexts/c", -1))
	if f := w.mustFrame(t, "error", "s3"); f.Code != "invalid_argument" {
		t.Errorf("third subscription: %s", f)
	}
	w.closeNow()
	m := mustScrape(t, p)
	for series, want := range map[string]float64{
		limitSeries("body_too_large"):                                  1,
		limitSeries("json_too_deep"):                                   1,
		`engram_connections_refused_total{reason="max_subscriptions"}`: 2,
	} {
		if got := m[series] - m0[series]; got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	stopQuiet(t, p)
}

// TestOpsRequestID: X-Request-Id comes back on every answer: the client's
// when valid, else a fresh ULID; on errors, WebSocket upgrades and SSE
// streams too.
func TestOpsRequestID(t *testing.T) {
	p := startServer(t, t.TempDir())
	get := func(method, path, id string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, p.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct{ name, method, path, sent string }{
		{"given", "GET", "/healthz", "trace-1:a@b"},
		{"given on 404", "GET", "/v1/nowhere", "trace-2"},
		{"given on 400", "GET", "/v1/workunits/not-a-ulid", "trace-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := get(tc.method, tc.path, tc.sent).Header.Get("X-Request-Id"); got != tc.sent {
				t.Errorf("X-Request-Id %q, want %q", got, tc.sent)
			}
		})
	}
	for _, tc := range []struct{ name, sent string }{
		{"generated", ""},
		{"invalid replaced", "no spaces allowed"},
		{"too long replaced", strings.Repeat("x", 129)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := get("GET", "/healthz", tc.sent).Header.Get("X-Request-Id")
			if _, err := ulid.ParseStrict(got); err != nil {
				t.Errorf("X-Request-Id %q is not a ULID", got)
			}
		})
	}
	t.Run("websocket upgrade", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, p.URL+"/v1/ws", &websocket.DialOptions{
			HTTPClient: rtClient, HTTPHeader: http.Header{"X-Request-Id": {"ws-1"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if got := resp.Header.Get("X-Request-Id"); got != "ws-1" {
			t.Errorf("101 X-Request-Id %q, want ws-1", got)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("sse", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", sseURL(p.URL, []string{"contexts/c"}, -1), nil)
		req.Header.Set("X-Request-Id", "sse-1")
		resp, err := rtClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "sse-1" {
			t.Errorf("SSE: status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
		}
	})
	stopQuiet(t, p)
}

// TestOpsPprof: --pprof-addr serves the profiler on its own loopback
// listener; the API port answers /debug/pprof/ with the JSON 404; a
// non-loopback --pprof-addr is refused at start.
func TestOpsPprof(t *testing.T) {
	p := startServer(t, t.TempDir(), "--pprof-addr", "127.0.0.1:0")
	lines := p.logLines("pprof listening")
	if len(lines) != 1 {
		t.Fatalf("%d \"pprof listening\" lines", len(lines))
	}
	addr, _ := lines[0]["addr"].(string)
	if addr == "" || strings.HasSuffix(addr, ":"+strings.Split(p.Addr, ":")[1]) {
		t.Fatalf("pprof addr %q (API on %s)", addr, p.Addr)
	}
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/cmdline":           "engram-server",
	} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("pprof %s: %d %s", path, resp.StatusCode, clip(b))
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/cmdline"} {
		checkError(t, p.call(t, "GET", path, nil), 404, "not_found", "")
	}
	p.Stop()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("pprof still listening on %s after the stop", addr)
	}

	t.Run("not loopback", func(t *testing.T) {
		q := launch(t, "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--pprof-addr", "0.0.0.0:0")
		code, ok := q.waitExit(10 * time.Second)
		if !ok {
			t.Fatal("still running after 10 s")
		}
		if log := q.log.String(); code != 2 || !strings.Contains(log, "--pprof-addr") || !strings.Contains(log, "loopback") {
			t.Errorf("exit %d, log:\n%s", code, log)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		q := startServer(t, t.TempDir())
		if n := len(q.logLines("pprof listening")); n != 0 {
			t.Errorf("pprof listening without --pprof-addr")
		}
		q.Stop()
	})
}
