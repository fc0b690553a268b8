package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 20 * time.Second // from exec to /readyz answering 200
	stopTimeout  = 30 * time.Second // from SIGTERM to exit
)

// logBuf collects a child's stderr. Writers never block; readers take a
// snapshot and a channel that is closed at the next write.
type logBuf struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *logBuf) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

func (b *logBuf) String() string {
	s, _ := b.snapshot()
	return s
}

// proc is one engram-server child process.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	log  *logBuf

	// Set once the "engram listening" line was read.
	Addr      string         // host:port to dial (127.0.0.1 for a wildcard listen address)
	URL       string         // http://Addr
	Listening map[string]any // the JSON log line

	exited  chan struct{} // closed when the process has exited and was waited for
	waitErr error         // cmd.Wait's error, set before exited is closed
}

var procCount struct {
	sync.Mutex
	n int
}

// launch starts engram-server with exactly args and returns at once. The
// process is killed (SIGKILL) in t.Cleanup if it still runs, and its log is
// printed if the test failed.
func launch(t testing.TB, args ...string) *proc {
	t.Helper()
	procCount.Lock()
	procCount.n++
	name := fmt.Sprintf("server#%d", procCount.n)
	procCount.Unlock()

	p := &proc{t: t, name: name, log: newLogBuf(), exited: make(chan struct{})}
	p.cmd = exec.Command(serverBin, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", serverBin, args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.hasExited() {
			_ = p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				t.Errorf("%s: pid %d did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("%s (pid %d, args %v) log:\n%s", p.name, p.cmd.Process.Pid, args, p.log.String())
		}
	})
	return p
}

// cleanEnv is the test's environment without ENGRAM_* settings, so that an
// operator's environment cannot change what the tests start.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENGRAM_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServer starts a server on a free loopback port with its data in
// dataDir and waits until /readyz answers 200.
func startServer(t testing.TB, dataDir string, extraArgs ...string) *proc {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--data", dataDir, "--log-format", "json"}, extraArgs...)
	p := launch(t, args...)
	if err := p.waitListening(startTimeout); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	p.waitReady(startTimeout)
	return p
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// logLines returns the JSON log lines with the given msg.
func (p *proc) logLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitListening reads the log until the "engram listening" line, and sets
// Addr and URL from it.
func (p *proc) waitListening(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		_, changed := p.log.snapshot()
		if lines := p.logLines("engram listening"); len(lines) > 0 {
			addr, _ := lines[0]["addr"].(string)
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("listening line has addr %q: %v", addr, err)
			}
			if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			p.Listening = lines[0]
			p.Addr = net.JoinHostPort(host, port)
			p.URL = "http://" + p.Addr
			return nil
		}
		select {
		case <-changed:
		case <-p.exited:
			if len(p.logLines("engram listening")) > 0 {
				continue
			}
			return fmt.Errorf("exited before listening: %v", p.waitErr)
		case <-deadline.C:
			return fmt.Errorf("no \"engram listening\" log line after %v", timeout)
		}
	}
}

// waitReady polls GET /readyz until it answers 200.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	var last string
	ok := pollUntil(timeout, 10*time.Millisecond, func() bool {
		if p.hasExited() {
			return true
		}
		status, body, err := p.do("GET", "/readyz", nil)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%d %s", status, body)
		return status == http.StatusOK
	})
	if p.hasExited() {
		p.t.Fatalf("%s exited while waiting for /readyz: %v", p.name, p.waitErr)
	}
	if !ok {
		p.t.Fatalf("%s: /readyz not 200 after %v; last: %s", p.name, timeout, last)
	}
}

// pollUntil calls cond every interval until it returns true or timeout
// passes; it reports whether cond returned true.
func pollUntil(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// waitExit waits for the process to exit and returns its exit code (-1 if a
// signal ended it); ok is false on timeout.
func (p *proc) waitExit(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Kill9 kills the server with SIGKILL (no shutdown) and waits for it to go.
func (p *proc) Kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.hasExited() {
		p.t.Fatalf("%s: SIGKILL: %v", p.name, err)
	}
	if _, ok := p.waitExit(10 * time.Second); !ok {
		p.t.Fatalf("%s: still running 10 s after SIGKILL", p.name)
	}
}

// Stop sends SIGTERM, waits for the exit and checks that the code is 0.
func (p *proc) Stop() {
	p.t.Helper()
	// A connection the transport dialled but never used counts as active for
	// its first 5 s (net/http and fasthttp alike), and a graceful stop waits
	// for it: close ours first, as a client that is done would.
	client.CloseIdleConnections()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("%s: SIGTERM: %v", p.name, err)
	}
	code, ok := p.waitExit(stopTimeout)
	if !ok {
		p.t.Fatalf("%s: still running %v after SIGTERM", p.name, stopTimeout)
	}
	if code != 0 {
		p.t.Fatalf("%s: exit code %d after SIGTERM, want 0 (%v)", p.name, code, p.waitErr)
	}
	if len(p.logLines("engram stopped")) != 1 {
		p.t.Errorf("%s: no \"engram stopped\" log line after SIGTERM", p.name)
	}
}

// do sends one request; body is sent as is (nil: no body). It never fails
// the test, so writer goroutines may use it.
func (p *proc) do(method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, p.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// response is a complete HTTP answer.
type response struct {
	Status int
	Body   []byte
	Header http.Header
}

func (r response) String() string {
	b := r.Body
	if len(b) > 512 {
		b = append(b[:512:512], "…"...)
	}
	return fmt.Sprintf("%d %s", r.Status, b)
}

// call sends a request and fails the test on a transport error. body may be
// nil, a string or []byte (sent as is), or any other value (sent as JSON).
func (p *proc) call(t testing.TB, method, path string, body any) response {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatalf("encode body: %v", err)
		}
	}
	var r io.Reader
	if raw != nil {
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, p.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{resp.StatusCode, b, resp.Header}
}

// must sends a request and fails the test unless the status is want.
func (p *proc) must(t testing.TB, want int, method, path string, body any) []byte {
	t.Helper()
	r := p.call(t, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	return r.Body
}

// headSeq reads engram_wal_head_seq from /metrics.
func (p *proc) headSeq(t testing.TB) uint64 {
	t.Helper()
	body := p.must(t, 200, "GET", "/metrics", nil)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "engram_wal_head_seq "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return uint64(f)
		}
	}
	t.Fatalf("/metrics has no engram_wal_head_seq line")
	return 0
}

// apiError is the error body of the contract.
type apiError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// checkError checks that r is an error answer of the contract with status
// and code, whose message contains field (skipped when empty).
func checkError(t testing.TB, r response, status int, code, field string) apiError {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d; body %s", r.Status, status, r)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &outer); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, r)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("error body must be exactly {\"error\": {...}}: %s", r)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		t.Fatalf("error object: %v: %s", err, r)
	}
	for _, k := range []string{"code", "message", "details"} {
		if _, ok := inner[k]; !ok {
			t.Errorf("error object lacks %q: %s", k, r)
		}
	}
	if len(inner) != 3 {
		t.Errorf("error object has keys other than code, message, details: %s", r)
	}
	var e apiError
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		t.Fatalf("error object: %v: %s", err, r)
	}
	if e.Details == nil {
		t.Errorf("error details must be an object, got %s", inner["details"])
	}
	if e.Code != code {
		t.Errorf("error code %q, want %q (%s)", e.Code, code, r)
	}
	if e.Message == "" {
		t.Errorf("empty error message: %s", r)
	}
	if field != "" && !strings.Contains(e.Message, field) {
		t.Errorf("error message %q does not name %q", e.Message, field)
	}
	return e
}
