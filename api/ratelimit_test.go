package api_test

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"engram/internal/server"
)

// TestRateLimitServer: the server's rate limit answers the contract's 429
// with Retry-After and counts it in engram_http_limit_hits_total; probes and
// scrapes are never limited.
func TestRateLimitServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rate   float64
		burst  int
		served int
	}{
		{"burst given", 1, 3, 3},
		{"default burst: two seconds' worth", 2, 0, 4},
		{"default burst: at least one", 0.1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := server.New(server.Config{DataDir: t.TempDir(), Sync: "none", RateLimit: tc.rate, RateBurst: tc.burst})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Shutdown(context.Background()) })
			for i := range tc.served {
				if r := do(t, srv, "GET", "/v1/contexts", ""); r.status != 200 {
					t.Fatalf("request %d: %d %s", i, r.status, r.body)
				}
			}
			r := do(t, srv, "GET", "/v1/contexts", "")
			if r.status != 429 {
				t.Fatalf("request %d: %d %s, want 429", tc.served, r.status, r.body)
			}
			checkErrorBody(t, r, "rate_limited", []string{"rate limit", "requests/s", "retry in"})
			if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || float64(ra) > 1/tc.rate+1 {
				t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
			}
			// A write over the limit changes nothing.
			head := srv.HeadSeq()
			if r := do(t, srv, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE"}`); r.status != 429 {
				t.Errorf("write over the limit: %d %s", r.status, r.body)
			}
			if srv.HeadSeq() != head {
				t.Errorf("a refused write committed: head %d → %d", head, srv.HeadSeq())
			}
			for range 10 {
				for _, p := range []string{"/healthz", "/readyz"} {
					if r := do(t, srv, "GET", p, ""); r.status != 200 {
						t.Fatalf("%s: %d %s", p, r.status, r.body)
					}
				}
			}
			m := do(t, srv, "GET", "/metrics", "")
			if m.status != 200 || !bytes.Contains(m.body, []byte(`engram_http_limit_hits_total{limit="rate_limited"} 2`)) {
				t.Errorf("/metrics: %d, rate_limited hits not 2:\n%s", m.status, grep(m.body, "engram_http_limit_hits_total"))
			}
			if !bytes.Contains(m.body, []byte(`status="429"`)) {
				t.Errorf("the 429s are not in engram_http_request_duration_seconds")
			}
		})
	}
}

// TestRateLimitOffByDefault: without RateLimit nothing is limited, and the
// rate_limited series exists at 0.
func TestRateLimitOffByDefault(t *testing.T) {
	srv := newServer(t, 0)
	for i := range 200 {
		if r := do(t, srv, "GET", "/v1/contexts", ""); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	m := do(t, srv, "GET", "/metrics", "")
	if !bytes.Contains(m.body, []byte(`engram_http_limit_hits_total{limit="rate_limited"} 0`)) {
		t.Errorf("no rate_limited series at 0:\n%s", grep(m.body, "engram_http_limit_hits_total"))
	}
}

func TestRateLimitConfigErrors(t *testing.T) {
	for _, cfg := range []server.Config{
		{RateLimit: -1}, {RateLimit: 2e9}, {RateBurst: -1},
	} {
		cfg.DataDir = t.TempDir()
		if srv, err := server.New(cfg); err == nil {
			srv.Shutdown(context.Background())
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func grep(b []byte, s string) string {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte(s)) {
			out = append(append(out, l...), '\n')
		}
	}
	return string(out)
}

// BenchmarkRateLimitMiddleware measures a request through the whole
// middleware chain to a cheap limited route (/v1/openapi.yaml), without a
// network, with the rate limit off (as before it existed), on but never
// biting (one client; 10,000 clients), and biting (every answer a 429).
func BenchmarkRateLimitMiddleware(b *testing.B) {
	addrs := make([]net.Addr, 10_000)
	for i := range addrs {
		addrs[i] = &net.TCPAddr{IP: net.IPv4(10, 0, byte(i/256), byte(i%256)), Port: 40000}
	}
	for _, tc := range []struct {
		name   string
		rate   float64
		burst  int
		status int
		addrs  []net.Addr
	}{
		{"off", 0, 0, 200, addrs[:1]},
		{"on, 1 client", 1e9, 1e9, 200, addrs[:1]},
		{"on, 10k clients", 1e9, 1e9, 200, addrs},
		{"on, refusing", 1e-6, 1, 429, addrs[:1]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := server.New(server.Config{DataDir: b.TempDir(), Sync: "none", RateLimit: tc.rate, RateBurst: tc.burst})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { srv.Shutdown(context.Background()) })
			h := srv.App().Handler()
			var ctx fasthttp.RequestCtx
			if tc.status == 429 { // take the one token
				ctx.Request.SetRequestURI("/v1/openapi.yaml")
				ctx.SetRemoteAddr(tc.addrs[0])
				h(&ctx)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod("GET")
				ctx.Request.SetRequestURI("/v1/openapi.yaml")
				ctx.SetRemoteAddr(tc.addrs[i%len(tc.addrs)])
				i++
				h(&ctx)
				if ctx.Response.StatusCode() != tc.status {
					b.Fatal(ctx.Response.StatusCode())
				}
			}
		})
	}
}
