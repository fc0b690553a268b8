package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"engram/internal/testcert"
)

// tlsClient trusts the given certificates; without keep-alive, each request
// is a new handshake (and sees the certificate served at that moment).
func tlsClient(certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   20 * time.Second,
	}
}

// tlsDo sends one request over hc and returns the status, the body and the
// serial of the server's certificate.
func tlsDo(hc *http.Client, method, url string, body any) (int, []byte, int64, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return resp.StatusCode, b, 0, errors.New("answer not over TLS")
	}
	return resp.StatusCode, b, resp.TLS.PeerCertificates[0].SerialNumber.Int64(), err
}

func mustTLS(t *testing.T, hc *http.Client, want int, method, url string, body any) ([]byte, int64) {
	t.Helper()
	status, b, serial, err := tlsDo(hc, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, status, b, want)
	}
	return b, serial
}

// startTLS starts the binary with --tls-cert/--tls-key and waits for
// /readyz over https; p.URL is the https URL.
func startTLS(t *testing.T, hc *http.Client, certFile, keyFile string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-format", "json",
		"--tls-cert", certFile, "--tls-key", keyFile}, extra...)
	p := launch(t, args...)
	if err := p.waitListening(startTimeout); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	p.URL = "https://" + p.Addr
	var last error
	if !pollUntil(startTimeout, 10*time.Millisecond, func() bool {
		var status int
		status, _, _, last = tlsDo(hc, "GET", p.URL+"/readyz", nil)
		return last == nil && status == 200 || p.hasExited()
	}) || p.hasExited() {
		t.Fatalf("%s: not ready over https: %v (exited: %v)", p.name, last, p.hasExited())
	}
	return p
}

// waitLog waits for the n-th log line with msg and returns it.
func waitLog(t *testing.T, p *proc, msg string, n int) map[string]any {
	t.Helper()
	var lines []map[string]any
	if !pollUntil(10*time.Second, 10*time.Millisecond, func() bool {
		lines = p.logLines(msg)
		return len(lines) >= n
	}) {
		t.Fatalf("%s: %d %q log lines after 10 s, want %d", p.name, len(lines), msg, n)
	}
	return lines[n-1]
}

// TestTLS: the binary serves HTTPS with the pair of --tls-cert/--tls-key,
// WebSocket included; SIGHUP reloads the pair for new connections while
// open ones go on, and a broken pair is refused with the old one kept.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a, b := testcert.New(t, 1001, time.Now().Add(24*time.Hour)), testcert.New(t, 2002, time.Now().Add(24*time.Hour))
	a.Write(t, certFile, keyFile)
	hc := tlsClient(a.Cert, b.Cert)
	p := startTLS(t, hc, certFile, keyFile)
	if on, _ := p.Listening["tls"].(bool); !on {
		t.Errorf("listening line without tls=true: %v", p.Listening)
	}
	if l := waitLog(t, p, "tls: serving", 1); l["serial"] != "1001" {
		t.Errorf("tls: serving line %v, want serial 1001", l)
	}

	// HTTPS works, with certificate A.
	if _, serial := mustTLS(t, hc, 200, "GET", p.URL+"/healthz", nil); serial != 1001 {
		t.Fatalf("serial %d, want 1001", serial)
	}
	mustTLS(t, hc, 201, "POST", p.URL+"/v1/contexts", map[string]any{"id": "tls", "agent_ids": []string{"a"}})

	// Plain HTTP to the TLS port fails cleanly: an error (or a refusal)
	// for the client, and the server goes on.
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + p.Addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP to the TLS port answered 200")
		}
	}
	// A client that does not trust the server is refused at the handshake.
	if _, _, _, err := tlsDo(tlsClient(), "GET", p.URL+"/healthz", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusting client: %v, want a certificate error", err)
	}
	mustTLS(t, hc, 200, "GET", p.URL+"/readyz", nil)
	// Failed handshakes are any client's to cause: no error line for them.
	if lines := p.logLines("request failed"); len(lines) != 0 {
		t.Errorf("error lines after failed handshakes: %v", lines)
	}

	// A WebSocket over wss: subscribed, and live events arrive.
	w, status, body, err := dialWS(context.Background(), p.URL, hc)
	if err != nil {
		t.Fatalf("wss dial: %v (%d %s)", err, status, body)
	}
	t.Cleanup(w.closeNow)
	w.subscribe(t, "s", "contexts/tls", -1)
	unit := func(payload string) {
		t.Helper()
		mustTLS(t, hc, 201, "POST", p.URL+"/v1/workunits", map[string]any{"context_id": "tls", "agent_id": "a", "type": "MESSAGE", "payload": payload})
		ev, err := decodeEvent(w.mustFrame(t, "event", "s").Event)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "workunit.created" {
			t.Fatalf("event %+v", ev)
		}
	}
	unit("before reload")

	// Certificate B and SIGHUP: new connections get B, the WebSocket goes on.
	b.Write(t, certFile, keyFile)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	l := waitLog(t, p, "tls: reloaded", 1)
	if l["serial"] != "2002" || !strings.Contains(fmt.Sprint(l["subject"]), "engram test 2002") || l["not_after"] == nil {
		t.Errorf("reload line %v, want serial 2002, its subject and not_after", l)
	}
	if _, serial := mustTLS(t, hc, 200, "GET", p.URL+"/healthz", nil); serial != 2002 {
		t.Fatalf("after SIGHUP: serial %d, want 2002", serial)
	}
	unit("after reload")
	w.pingPong(t)

	// A broken certificate file: SIGHUP logs an error, B is still served.
	if err := os.WriteFile(certFile, b.CertPEM[:len(b.CertPEM)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	l = waitLog(t, p, "tls: reload failed, still serving the previous certificate", 1)
	if l["level"] != "ERROR" || !strings.Contains(fmt.Sprint(l["err"]), "cert.pem") {
		t.Errorf("failed reload line %v, want an ERROR naming the file", l)
	}
	if _, serial := mustTLS(t, hc, 200, "GET", p.URL+"/healthz", nil); serial != 2002 {
		t.Fatalf("after a failed reload: serial %d, want 2002", serial)
	}
	unit("after a failed reload")
	if n := len(p.logLines("tls: reloaded")); n != 1 {
		t.Errorf("%d tls: reloaded lines, want 1", n)
	}

	if err := w.closeNormal(); err != nil {
		t.Errorf("ws close: %v", err)
	}
	p.Stop()
	if log := p.log.String(); strings.Contains(log, "panic") {
		t.Errorf("the server log mentions a panic:\n%s", log)
	}
}

// TestTLSLockWaiterDisconnect: over TLS too, a client that gives up while
// waiting for a lock is noticed (its close_notify comes before its FIN).
func TestTLSLockWaiterDisconnect(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a := testcert.New(t, 7, time.Now().Add(24*time.Hour))
	a.Write(t, certFile, keyFile)
	hc := tlsClient(a.Cert)
	p := startTLS(t, hc, certFile, keyFile)
	mustTLS(t, hc, 201, "POST", p.URL+"/v1/locks", map[string]any{"resources": []string{"r"}, "holder": "A", "ttl_ms": 30000})

	waiting := func() float64 {
		b, _ := mustTLS(t, hc, 200, "GET", p.URL+"/metrics", nil)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "engram_locks_waiting "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return f
			}
		}
		t.Fatal("/metrics has no engram_locks_waiting")
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"resources": []string{"r"}, "holder": "ghost", "ttl_ms": 60000, "wait_ms": 20000})
	req, _ := http.NewRequestWithContext(ctx, "POST", p.URL+"/v1/locks", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	ghost := make(chan error, 1)
	go func() {
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		ghost <- err
	}()
	if !pollUntil(10*time.Second, 10*time.Millisecond, func() bool { return waiting() == 1 }) {
		t.Fatal("the ghost never waited")
	}
	cancel()
	if err := <-ghost; !errors.Is(err, context.Canceled) {
		t.Fatalf("the ghost's request: %v, want it cancelled", err)
	}
	if !pollUntil(2*time.Second, 10*time.Millisecond, func() bool { return waiting() == 0 }) {
		t.Errorf("engram_locks_waiting still 1 2 s after the TLS client closed its connection")
	}
	p.Stop()
}

// TestTLSStartErrors: half a pair is a configuration error (exit 2); a pair
// that does not load stops the start (exit 1); both name what is wrong.
func TestTLSStartErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.New(t, 1, time.Now().Add(24*time.Hour)).Write(t, certFile, keyFile)
	other := filepath.Join(dir, "other.key")
	if err := os.WriteFile(other, testcert.New(t, 2, time.Now().Add(24*time.Hour)).KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"cert without key", []string{"--tls-cert", certFile}, 2, "--tls-key"},
		{"key without cert", []string{"--tls-key", keyFile}, 2, "--tls-cert"},
		{"missing cert file", []string{"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", keyFile}, 1, "none.pem"},
		{"key of another cert", []string{"--tls-cert", certFile, "--tls-key", other}, 1, "does not match"},
		{"TLS does not lift the loopback rule", []string{"--tls-cert", certFile, "--tls-key", keyFile, "--addr", "0.0.0.0:0"}, 2, "--insecure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := launch(t, append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-format", "json"}, tc.args...)...)
			code, ok := p.waitExit(10 * time.Second)
			if !ok {
				t.Fatal("still running after 10 s")
			}
			if code != tc.code || !strings.Contains(p.log.String(), tc.want) {
				t.Errorf("exit %d (want %d), log (want %q):\n%s", code, tc.code, tc.want, p.log.String())
			}
			if strings.Contains(p.log.String(), "engram listening") {
				t.Errorf("it listened")
			}
		})
	}
}

// TestTLSSighupWithoutTLS: SIGHUP to a plain server logs that there is
// nothing to reload, and the server goes on.
func TestTLSSighupWithoutTLS(t *testing.T) {
	p := startServer(t, t.TempDir())
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "SIGHUP: nothing to reload (no --tls-cert)", 1)
	p.must(t, 200, "GET", "/readyz", nil)
	p.Stop()
}
