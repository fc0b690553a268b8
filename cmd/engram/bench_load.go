package main

// Load drivers for the bench: wrk (an external, lean C load generator) when
// it is installed, else a closed-loop fasthttp client in this process. A
// net/http client saturates 2 cores near 6k req/s, far below what the
// server can do, so it is never used to measure throughput.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// loadSpec describes one closed-loop HTTP load run.
type loadSpec struct {
	URL         string // full URL, e.g. http://127.0.0.1:4000/v1/workunits
	Method      string // GET or POST
	Body        []byte // request body (POST)
	ContentType string // for POST; default application/json
	Clients     int    // concurrent connections, each with one request in flight
	// Duration is how long to run. When Requests > 0 instead, each client
	// sends exactly Requests requests (fasthttp driver only).
	Duration time.Duration
	Requests int
}

// loadResult is what a driver measured. Latencies are in microseconds.
type loadResult struct {
	Driver       string  `json:"driver"`
	Clients      int     `json:"clients"`
	Requests     int64   `json:"requests"`
	DurationSec  float64 `json:"duration_s"`
	ReqPerSec    float64 `json:"req_per_s"`
	Non2xx       int64   `json:"non_2xx"`
	SocketErrors int64   `json:"socket_errors"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p999_us"`
	MaxUs        float64 `json:"max_us"`
	MeanUs       float64 `json:"mean_us"`
	// FirstError is the first transport error or non-2xx answer seen (fasthttp only).
	FirstError string `json:"first_error,omitempty"`
}

// invalidReason explains why a run's figures cannot be trusted, or "".
func (r loadResult) invalidReason() string {
	var parts []string
	if r.Requests == 0 {
		parts = append(parts, "no request completed")
	}
	if r.Non2xx > 0 {
		parts = append(parts, fmt.Sprintf("%d non-2xx responses", r.Non2xx))
	}
	if r.SocketErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d socket errors/timeouts", r.SocketErrors))
	}
	if r.FirstError != "" && (r.Non2xx > 0 || r.SocketErrors > 0) {
		parts = append(parts, "first: "+r.FirstError)
	}
	return strings.Join(parts, "; ")
}

// driver runs closed-loop HTTP load.
type driver interface {
	Name() string     // "wrk" or "fasthttp"
	Describe() string // for the report: version, path, how it is invoked
	Run(ctx context.Context, spec loadSpec) (loadResult, error)
}

// pickDriver returns the driver named by flag ("auto", "wrk" or "fasthttp").
func pickDriver(name string) (driver, error) {
	switch name {
	case "auto", "":
		if p, err := exec.LookPath("wrk"); err == nil {
			return newWrkDriver(p), nil
		}
		return fasthttpDriver{}, nil
	case "wrk":
		p, err := exec.LookPath("wrk")
		if err != nil {
			return nil, fmt.Errorf("--driver wrk: wrk is not on PATH (apt-get install wrk)")
		}
		return newWrkDriver(p), nil
	case "fasthttp":
		return fasthttpDriver{}, nil
	}
	return nil, fmt.Errorf("--driver: unknown driver %q (want auto, wrk or fasthttp)", name)
}

// ---------------------------------------------------------------- wrk

type wrkDriver struct {
	path    string
	version string
}

func newWrkDriver(path string) *wrkDriver {
	d := &wrkDriver{path: path}
	// `wrk --version` prints its banner and exits with status 1.
	out, _ := exec.Command(path, "--version").CombinedOutput()
	if line, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(line, "wrk ") {
		// "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
		if i := strings.Index(line, " Copyright"); i > 0 {
			line = line[:i]
		}
		d.version = strings.TrimSpace(line)
	}
	return d
}

func (d *wrkDriver) Name() string { return "wrk" }

func (d *wrkDriver) Describe() string {
	v := d.version
	if v == "" {
		v = "wrk"
	}
	return fmt.Sprintf("%s (%s), `wrk -t2 -cN -dD --latency --timeout 10s -s script.lua URL` (-t1 -c1 for 1 client); a separate process on the same cores", v, d.path)
}

// wrkResultMarker starts the one line of JSON that the generated script's
// done() prints.
const wrkResultMarker = "ENGRAM_WRK_RESULT "

// wrkScript returns the Lua script for spec: request method/body/headers and
// a done() that prints one JSON line with the summary and percentiles.
func wrkScript(spec loadSpec) (string, error) {
	var b strings.Builder
	method := spec.Method
	if method == "" {
		method = "GET"
	}
	fmt.Fprintf(&b, "wrk.method = %q\n", method)
	if len(spec.Body) > 0 {
		// A Lua long string holds the body verbatim; pick a level whose
		// closing bracket does not occur in the body.
		eq := "="
		for bytes.Contains(spec.Body, []byte("]"+eq+"]")) {
			eq += "="
			if len(eq) > 16 {
				return "", errors.New("wrk script: cannot quote body")
			}
		}
		// A newline right after the opening bracket is dropped by Lua, so
		// a body that starts with one would lose it: none of ours do.
		fmt.Fprintf(&b, "wrk.body = [%s[%s]%s]\n", eq, spec.Body, eq)
		ct := spec.ContentType
		if ct == "" {
			ct = "application/json"
		}
		fmt.Fprintf(&b, "wrk.headers[\"Content-Type\"] = %q\n", ct)
	}
	// summary.errors.status counts answers with status > 399; wrk counts
	// no other non-2xx. Percentiles are in microseconds.
	b.WriteString(`
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('` + wrkResultMarker + `{"requests":%d,"duration_us":%d,"bytes":%d,` +
		`"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},` +
		`"latency_us":{"p50":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
`)
	return b.String(), nil
}

// wrkSummary is the JSON line printed by the script's done().
type wrkSummary struct {
	Requests   int64 `json:"requests"`
	DurationUs int64 `json:"duration_us"`
	Bytes      int64 `json:"bytes"`
	Errors     struct {
		Connect int64 `json:"connect"`
		Read    int64 `json:"read"`
		Write   int64 `json:"write"`
		Status  int64 `json:"status"`
		Timeout int64 `json:"timeout"`
	} `json:"errors"`
	Latency struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p999"`
		Max  float64 `json:"max"`
		Mean float64 `json:"mean"`
	} `json:"latency_us"`
}

// parseWrkOutput finds the result line in wrk's stdout and converts it.
func parseWrkOutput(out []byte, clients int) (loadResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, wrkResultMarker)
		if i < 0 {
			continue
		}
		var s wrkSummary
		if err := json.Unmarshal([]byte(line[i+len(wrkResultMarker):]), &s); err != nil {
			return loadResult{}, fmt.Errorf("wrk result line %q: %w", line, err)
		}
		r := loadResult{
			Driver:       "wrk",
			Clients:      clients,
			Requests:     s.Requests,
			DurationSec:  float64(s.DurationUs) / 1e6,
			Non2xx:       s.Errors.Status,
			SocketErrors: s.Errors.Connect + s.Errors.Read + s.Errors.Write + s.Errors.Timeout,
			P50us:        s.Latency.P50,
			P99us:        s.Latency.P99,
			P999us:       s.Latency.P999,
			MaxUs:        s.Latency.Max,
			MeanUs:       s.Latency.Mean,
		}
		if r.DurationSec > 0 {
			r.ReqPerSec = float64(r.Requests) / r.DurationSec
		}
		return r, nil
	}
	return loadResult{}, fmt.Errorf("wrk printed no %q line; output:\n%s", strings.TrimSpace(wrkResultMarker), out)
}

// wrkArgs returns wrk's command line for spec (without the program name).
func wrkArgs(spec loadSpec, script string) []string {
	threads := 2
	if spec.Clients < threads {
		threads = spec.Clients
	}
	secs := int(math.Ceil(spec.Duration.Seconds()))
	if secs < 1 {
		secs = 1 // wrk takes whole seconds
	}
	return []string{
		fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", spec.Clients), fmt.Sprintf("-d%ds", secs),
		"--latency", "--timeout", "10s", "-s", script, spec.URL,
	}
}

func (d *wrkDriver) Run(ctx context.Context, spec loadSpec) (loadResult, error) {
	if spec.Requests > 0 {
		return loadResult{}, errors.New("wrk driver: fixed request counts are not supported")
	}
	script, err := wrkScript(spec)
	if err != nil {
		return loadResult{}, err
	}
	dir, err := os.MkdirTemp("", "engram-wrk-*")
	if err != nil {
		return loadResult{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bench.lua")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return loadResult{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.path, wrkArgs(spec, path)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v: %s%s", err, stderr.Bytes(), stdout.Bytes())
	}
	return parseWrkOutput(stdout.Bytes(), spec.Clients)
}

// ---------------------------------------------------------------- fasthttp

// fasthttpDriver runs Clients goroutines in this process, each with its own
// fasthttp.HostClient holding one connection, in a closed loop.
type fasthttpDriver struct{}

func (fasthttpDriver) Name() string { return "fasthttp" }

func (fasthttpDriver) Describe() string {
	return "fasthttp closed loop: N goroutines in the bench process, one fasthttp.HostClient (1 connection) each, latencies in an HdrHistogram"
}

// newLatencyHist returns a histogram for latencies in microseconds, 1 µs to 10 min.
func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

func (fasthttpDriver) Run(ctx context.Context, spec loadSpec) (loadResult, error) {
	uri := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(uri)
	if err := uri.Parse(nil, []byte(spec.URL)); err != nil {
		return loadResult{}, fmt.Errorf("fasthttp driver: url %q: %w", spec.URL, err)
	}
	addr := string(uri.Host())
	method := spec.Method
	if method == "" {
		method = fasthttp.MethodGet
	}
	ct := spec.ContentType
	if ct == "" {
		ct = "application/json"
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    = newLatencyHist()
		requests atomic.Int64
		non2xx   atomic.Int64
		sockErrs atomic.Int64
		firstErr atomic.Value // string
	)
	deadline := time.Now().Add(spec.Duration)
	start := time.Now()
	for i := 0; i < spec.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &fasthttp.HostClient{
				Addr:                addr,
				MaxConns:            1,
				ReadTimeout:         30 * time.Second,
				WriteTimeout:        30 * time.Second,
				MaxResponseBodySize: 256 << 20,
			}
			defer hc.CloseIdleConnections()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(spec.URL)
			req.Header.SetMethod(method)
			if len(spec.Body) > 0 {
				req.Header.SetContentType(ct)
				req.SetBodyRaw(spec.Body)
			}
			h := newLatencyHist()
			for n := 0; ; n++ {
				if spec.Requests > 0 {
					if n >= spec.Requests {
						break
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				if ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				err := hc.Do(req, resp)
				lat := time.Since(t0)
				if err != nil {
					sockErrs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond) // don't spin on a dead server
					continue
				}
				if code := resp.StatusCode(); code < 200 || code > 299 {
					non2xx.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %.200s", code, resp.Body()))
				}
				h.RecordValue(max(lat.Microseconds(), 1))
				requests.Add(1)
			}
			mu.Lock()
			total.Merge(h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := loadResult{
		Driver:       "fasthttp",
		Clients:      spec.Clients,
		Requests:     requests.Load(),
		DurationSec:  elapsed.Seconds(),
		Non2xx:       non2xx.Load(),
		SocketErrors: sockErrs.Load(),
	}
	fillPercentiles(&r, total)
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	if r.DurationSec > 0 {
		r.ReqPerSec = float64(r.Requests) / r.DurationSec
	}
	return r, ctx.Err()
}

// fillPercentiles copies p50/p99/p99.9/max/mean (µs) from h into r.
func fillPercentiles(r *loadResult, h *hdrhistogram.Histogram) {
	if h.TotalCount() == 0 {
		return
	}
	r.P50us = float64(h.ValueAtQuantile(50))
	r.P99us = float64(h.ValueAtQuantile(99))
	r.P999us = float64(h.ValueAtQuantile(99.9))
	r.MaxUs = float64(h.Max())
	r.MeanUs = h.Mean()
}

// doOnce sends one request and returns its status and body (preflight
// checks, preloading data).
func doOnce(url, method string, body []byte) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(method)
	if len(body) > 0 {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	c := &fasthttp.Client{ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	if err := c.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}
