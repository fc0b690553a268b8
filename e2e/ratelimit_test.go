package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (127.0.0.2: another client as far as the server can tell).
func clientFrom(t testing.TB, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	probe, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("cannot use source address %s here (%v): client independence is covered by the api unit tests", ip, err)
	}
	probe.Close()
	tr := &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// getFrom sends GET path with hc and returns the status and Retry-After.
func getFrom(hc *http.Client, p *proc, path string) (int, string, []byte, error) {
	resp, err := hc.Get(p.URL + path)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), b, err
}

// TestRateLimit: with --rate-limit 20 --rate-burst 5, a client hammering the
// API gets 429 rate_limited with Retry-After, each counted in
// engram_http_limit_hits_total{limit="rate_limited"}, and is served at about
// the configured rate; another client (another source address) is served
// meanwhile; /healthz, /readyz and /metrics are never limited; a WebSocket
// opened before is not limited frame by frame; and after waiting Retry-After
// the hammering client is served again.
func TestRateLimit(t *testing.T) {
	const rate, burst = 20, 5
	p := startServer(t, t.TempDir(), "--rate-limit", strconv.Itoa(rate), "--rate-burst", strconv.Itoa(burst))
	other := clientFrom(t, "127.0.0.2")
	m0 := mustScrape(t, p)

	// A WebSocket opened while the client still has tokens: its frames are
	// not requests.
	w := openWS(t, p)

	// The hammer: 4 goroutines from 127.0.0.1 for a second.
	const hammerFor = time.Second
	var served, refused, probesOK atomic.Int64
	var mu sync.Mutex
	var errs []string
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, s)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < hammerFor {
				st, ra, b, err := getFrom(client, p, "/v1/contexts")
				switch {
				case err != nil:
					fail(err.Error())
				case st == 200:
					served.Add(1)
				case st == 429 && ra == "1" && jsonCode(b) == "rate_limited":
					refused.Add(1)
				default:
					fail("status " + strconv.Itoa(st) + ", Retry-After " + strconv.Quote(ra) + ": " + string(b))
				}
			}
		})
	}
	// Meanwhile, from the same address: the probes and the scrape.
	wg.Go(func() {
		for time.Since(start) < hammerFor {
			for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
				if st, _, b, err := getFrom(client, p, path); err != nil || st != 200 {
					fail(path + ": " + strconv.Itoa(st) + " " + clip(b) + " " + errString(err))
				} else {
					probesOK.Add(1)
				}
			}
		}
	})
	// And the other client, at a polite pace, is always served.
	var otherServed int
	for time.Since(start) < hammerFor {
		st, _, b, err := getFrom(other, p, "/v1/contexts")
		if err != nil || st != 200 {
			t.Errorf("the other client: %d %s %v", st, clip(b), err)
		} else {
			otherServed++
		}
		time.Sleep(100 * time.Millisecond) // its own pace: 10/s, under the limit
	}
	// The WebSocket's frames go through while the HTTP client is refused.
	for i := range 50 {
		w.mustSend(t, `{"op":"ping"}`)
		if f := w.mustNext(t); f.Op != "pong" {
			t.Fatalf("ping %d: %s", i, f)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, e := range errs {
		t.Error(e)
	}
	t.Logf("in %v: hammer served %d, refused %d; other served %d; probes served %d",
		elapsed.Round(time.Millisecond), served.Load(), refused.Load(), otherServed, probesOK.Load())
	if refused.Load() == 0 {
		t.Fatal("the hammering client was never refused")
	}
	// Served: the burst, then the rate (with a token of slack for the edges).
	if most := burst + int64(rate*elapsed.Seconds()) + 1; served.Load() > most || served.Load() < burst {
		t.Errorf("hammer served %d in %v; want %d..%d", served.Load(), elapsed, burst, most)
	}
	if otherServed < 5 {
		t.Errorf("the other client was served %d times", otherServed)
	}
	if probesOK.Load() == 0 {
		t.Error("no probe was made")
	}

	// Every refusal counted, nothing else.
	m := mustScrape(t, p)
	if got := m[limitSeries("rate_limited")] - m0[limitSeries("rate_limited")]; got != float64(refused.Load()) {
		t.Errorf("%s rose by %v, want %d (the 429s)", limitSeries("rate_limited"), got, refused.Load())
	}

	// The bucket refills at the rate (a token every 50 ms), and on a loaded
	// machine more than that may pass between two steps here: drain spends
	// what came back, so that the next request is refused.
	drain := func() {
		for range 200 {
			if st, _, _, _ := getFrom(client, p, "/v1/contexts"); st == 429 {
				return
			}
		}
		t.Fatal("the hammering client is not refused any more")
	}

	// Over the limit, a new WebSocket is refused like any request. A token
	// may refill between the drain and the dial: then the dial succeeds and
	// is tried again; a limiter that ignored upgrades would never refuse.
	ctx := context.Background()
	wsRefused := false
	for try := 0; try < 5 && !wsRefused; try++ {
		drain()
		conn, status, _, err := dialWS(ctx, p.URL, nil)
		if err == nil {
			conn.closeNow()
			continue
		}
		wsRefused = status == 429
	}
	if !wsRefused {
		t.Error("no WebSocket upgrade was refused while over the limit (5 tries)")
	}

	// Waiting Retry-After is enough.
	var st int
	var ra string
	var b []byte
	var err error
	for range 200 {
		if st, ra, b, err = getFrom(client, p, "/v1/contexts"); err != nil || st == 429 {
			break
		}
	}
	if err != nil || st != 429 {
		t.Fatalf("right after the hammer: %d %s %v, want 429", st, clip(b), err)
	}
	secs, err := strconv.Atoi(ra)
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", ra)
	}
	time.Sleep(time.Duration(secs) * time.Second) // what the server told the client to do
	if st, _, b, err := getFrom(client, p, "/v1/contexts"); err != nil || st != 200 {
		t.Errorf("after waiting Retry-After (%d s): %d %s %v", secs, st, clip(b), err)
	}
	w.closeNow()
	stopQuiet(t, p)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// jsonCode is the code of a contract error body ("" if it is none).
func jsonCode(b []byte) string {
	var e struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" || e.Error.Details == nil {
		return ""
	}
	return e.Error.Code
}
