package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// step is one allow call and what it must answer.
type step struct {
	advance time.Duration // first move the clock
	key     string
	ok      bool
	wait    time.Duration // when !ok
}

func runSteps(t *testing.T, l *rateLimiter, clk *fakeClock, steps []step) {
	t.Helper()
	for i, s := range steps {
		clk.advance(s.advance)
		ok, wait := l.allow(s.key)
		if ok != s.ok || (!ok && wait != s.wait) {
			t.Fatalf("step %d (%q after +%v): allow = %v, %v; want %v, %v", i, s.key, s.advance, ok, wait, s.ok, s.wait)
		}
	}
}

// TestRateLimiterBucket: a burst, then refusals that name the wait and take
// no token, then a refill at the configured rate.
func TestRateLimiterBucket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then wait", 10, 3, []step{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0},
			{0, "a", false, 100 * time.Millisecond},
			{0, "a", false, 100 * time.Millisecond}, // a refusal takes nothing
			{60 * time.Millisecond, "a", false, 40 * time.Millisecond},
			{40 * time.Millisecond, "a", true, 0}, // waited as told: served
			{0, "a", false, 100 * time.Millisecond},
		}},
		{"refill caps at burst", 10, 2, []step{
			{0, "a", true, 0}, {0, "a", true, 0},
			{time.Hour, "a", true, 0}, {0, "a", true, 0},
			{0, "a", false, 100 * time.Millisecond},
		}},
		{"slow rate", 0.5, 1, []step{
			{0, "a", true, 0},
			{0, "a", false, 2 * time.Second},
			{500 * time.Millisecond, "a", false, 1500 * time.Millisecond},
			{1500 * time.Millisecond, "a", true, 0},
		}},
		{"keys are independent", 1, 2, []step{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", false, time.Second},
			{0, "b", true, 0}, {0, "b", true, 0}, {0, "b", false, time.Second},
			{0, "a", false, time.Second},
			{0, "", true, 0}, // the empty key is a key like any other here
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			runSteps(t, newRateLimiter(tc.rate, tc.burst, rateMaxKeys, clk.now), clk, tc.steps)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		wait time.Duration
		want int64
	}{
		{0, 1}, {time.Nanosecond, 1}, {50 * time.Millisecond, 1}, {time.Second, 1},
		{time.Second + time.Nanosecond, 2}, {2500 * time.Millisecond, 3}, {time.Minute, 60},
	} {
		if got := retryAfter(tc.wait); got != tc.want {
			t.Errorf("retryAfter(%v) = %d, want %d", tc.wait, got, tc.want)
		}
	}
}

func TestDefaultRateBurst(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want int
	}{{0.1, 1}, {0.5, 1}, {0.75, 2}, {1, 2}, {20, 40}, {2.4, 5}} {
		if got := defaultRateBurst(tc.rate); got != tc.want {
			t.Errorf("defaultRateBurst(%v) = %d, want %d", tc.rate, got, tc.want)
		}
	}
}

// TestRateLimiterForgetsIdleBuckets: buckets idle for their fill time go at
// the next sweep, which changes nothing a client can see; a bucket that is
// not full yet stays.
func TestRateLimiterForgetsIdleBuckets(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(10, 5, rateMaxKeys, clk.now) // fill 500 ms, sweep every 1 s
	const n = 10_000
	for i := range n {
		if ok, _ := l.allow("old-" + strconv.Itoa(i)); !ok {
			t.Fatal("first request refused")
		}
	}
	if got := l.size(); got != n {
		t.Fatalf("size %d, want %d", got, n)
	}
	// "busy" empties its bucket 100 ms before the sweep: it holds 1 token
	// at the sweep, not 5, and must keep that.
	clk.advance(900 * time.Millisecond)
	for range 5 {
		l.allow("busy")
	}
	clk.advance(100 * time.Millisecond)
	for i := range n {
		l.allow("new-" + strconv.Itoa(i))
	}
	if got := l.size(); got != n+1 {
		t.Errorf("after the sweep: size %d, want %d (the new keys and busy)", got, n+1)
	}
	runSteps(t, l, clk, []step{
		{0, "busy", true, 0},
		{0, "busy", false, 100 * time.Millisecond},
		// A forgotten bucket comes back full, as it would have been.
		{0, "old-1", true, 0}, {0, "old-1", true, 0}, {0, "old-1", true, 0}, {0, "old-1", true, 0}, {0, "old-1", true, 0},
		{0, "old-1", false, 100 * time.Millisecond},
	})
}

// TestRateLimiterCap: however many keys come within one fill time, the map
// holds at most maxKeys buckets, and a key in use is not the one evicted.
func TestRateLimiterCap(t *testing.T) {
	clk := newFakeClock()
	const maxKeys = 10 * rateShards
	l := newRateLimiter(1, 1, maxKeys, clk.now) // fill 1 s: nothing is swept below
	if ok, _ := l.allow("hot"); !ok {
		t.Fatal("hot refused")
	}
	for i := range 100_000 {
		clk.advance(time.Nanosecond)
		l.allow("k" + strconv.Itoa(i))
		if ok, _ := l.allow("hot"); ok {
			t.Fatalf("after %d keys: hot was served again: its bucket was evicted", i)
		}
		if i%1000 == 0 {
			if got := l.size(); got > maxKeys {
				t.Fatalf("after %d keys: size %d > %d", i, got, maxKeys)
			}
		}
	}
	if got := l.size(); got > maxKeys {
		t.Fatalf("size %d > %d", got, maxKeys)
	}
}

// TestRateLimiterConcurrent: under the race detector, concurrent callers on
// shared and distinct keys; exactly burst requests of a shared key pass while
// the clock stands still.
func TestRateLimiterConcurrent(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(1, 50, rateMaxKeys, clk.now)
	var mu sync.Mutex
	passed := 0
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if ok, _ := l.allow("shared"); ok {
					mu.Lock()
					passed++
					mu.Unlock()
				}
				l.allow(fmt.Sprintf("g%d-%d", g, i))
			}
		})
	}
	wg.Wait()
	if passed != 50 {
		t.Errorf("%d requests of the shared key passed, want the burst, 50", passed)
	}
}

// rateApp is an app with only the rate limit in front of a few routes; the
// rate key is the X-Key header (empty: the remote IP).
func rateApp(l *rateLimiter, hits *[]string) *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(slog.New(slog.DiscardHandler), func(limit string) { *hits = append(*hits, limit) }),
	})
	app.Use(rateLimit(l, func(c *fiber.Ctx) string { return c.Get("X-Key") }))
	ok := func(c *fiber.Ctx) error { return c.SendString("ok") }
	app.Get("/healthz", ok)
	app.Get("/readyz", ok)
	app.Get("/metrics", ok)
	app.Get("/v1/x", ok)
	app.Use(func(c *fiber.Ctx) error { return &apiError{fiber.StatusNotFound, "not_found", "no route"} })
	return app
}

// TestRateLimitMiddleware: the 429 answer (body, Retry-After, metric), the
// exempt paths, and that a client served again after waiting Retry-After.
func TestRateLimitMiddleware(t *testing.T) {
	clk := newFakeClock()
	var hits []string
	app := rateApp(newRateLimiter(10, 2, rateMaxKeys, clk.now), &hits)
	get := func(key, path string) (int, string, []byte) {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		if key != "" {
			req.Header.Set("X-Key", key)
		}
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), b
	}
	for i := range 2 {
		if st, _, b := get("a", "/v1/x"); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, b)
		}
	}
	st, ra, b := get("a", "/v1/x")
	if st != 429 || ra != "1" {
		t.Fatalf("over the limit: status %d, Retry-After %q, body %s", st, ra, b)
	}
	var body struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	e := body.Error
	if e.Code != "rate_limited" || e.Message != "rate limit: over 10 requests/s (burst 2) for this client; retry in 100ms" {
		t.Errorf("error %+v", e)
	}
	if e.Details["retry_after_ms"] != 100.0 || e.Details["limit_per_s"] != 10.0 || e.Details["burst"] != 2.0 {
		t.Errorf("details %v", e.Details)
	}
	if len(hits) != 1 || hits[0] != LimitRateLimited {
		t.Errorf("limit hits %v, want [%s]", hits, LimitRateLimited)
	}

	// Exempt: the probes and the scrape, however the router spells them.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/healthz/", "/HEALTHZ", "/Metrics/"} {
		for range 5 {
			if st, _, b := get("a", p); st != 200 {
				t.Errorf("GET %s: %d %s, want 200 (exempt)", p, st, b)
			}
		}
	}
	// Everything else counts, unknown routes included.
	for _, p := range []string{"/v1/x", "/healthzz", "/v1/healthz", "/nope", "/metrics/x"} {
		if st, ra, _ := get("a", p); st != 429 || ra != "1" {
			t.Errorf("GET %s: %d (Retry-After %q), want 429", p, st, ra)
		}
	}
	// Another key is served; an empty key falls back to the remote IP.
	if st, _, _ := get("b", "/v1/x"); st != 200 {
		t.Errorf("key b: %d", st)
	}
	for i, want := range []int{200, 200, 429} {
		if st, _, _ := get("", "/v1/x"); st != want {
			t.Errorf("remote IP, request %d: %d, want %d", i, st, want)
		}
	}
	clk.advance(100 * time.Millisecond)
	if st, _, b := get("a", "/v1/x"); st != 200 {
		t.Errorf("after the wait: %d %s", st, b)
	}
	if st, _, _ := get("a", "/v1/x"); st != 429 {
		t.Errorf("second after the wait: %d, want 429", st)
	}
}

// TestRateLimitRemoteIP: the default key is the connection's address,
// without its port, and no header changes it.
func TestRateLimitRemoteIP(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(1, 1, rateMaxKeys, clk.now)
	h := rateLimit(l, nil)
	app := fiber.New(fiber.Config{DisableStartupMessage: true, ErrorHandler: errorHandler(slog.New(slog.DiscardHandler), nil)})
	app.Use(h)
	app.Get("/v1/x", func(c *fiber.Ctx) error { return c.SendString("ok") })
	serve := app.Handler()
	send := func(ip string, port int, xff string) int {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/v1/x")
		if xff != "" {
			ctx.Request.Header.Set("X-Forwarded-For", xff)
		}
		ctx.SetRemoteAddr(&net.TCPAddr{IP: net.ParseIP(ip), Port: port})
		serve(&ctx)
		return ctx.Response.StatusCode()
	}
	for _, tc := range []struct {
		ip   string
		port int
		xff  string
		want int
	}{
		{"192.0.2.1", 1000, "", 200},
		{"192.0.2.1", 1001, "", 429},             // another connection, same address
		{"192.0.2.1", 1002, "198.51.100.7", 429}, // forwarding headers are not trusted
		{"192.0.2.2", 1000, "", 200},
		{"2001:db8::1", 1000, "", 200},
		{"2001:db8::1", 1000, "", 429},
	} {
		if got := send(tc.ip, tc.port, tc.xff); got != tc.want {
			t.Errorf("%s:%d (X-Forwarded-For %q): %d, want %d", tc.ip, tc.port, tc.xff, got, tc.want)
		}
	}
}

// BenchmarkRateLimiterAllow: the bucket lookup and take alone, from all
// cores, on one key and spread over many.
func BenchmarkRateLimiterAllow(b *testing.B) {
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	for _, tc := range []struct {
		name string
		keys []string
	}{{"one key", keys[:1]}, {"10k keys", keys}} {
		b.Run(tc.name, func(b *testing.B) {
			l := newRateLimiter(1e9, 1e9, rateMaxKeys, nil) // never bites
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					l.allow(tc.keys[i%len(tc.keys)])
					i++
				}
			})
		})
	}
}
