package tlsreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"engram/internal/testcert"
)

// newPair makes a self-signed pair; write puts it at cfg's paths.
func newPair(t *testing.T, serial int64, notAfter time.Time) testcert.Pair {
	return testcert.New(t, serial, notAfter)
}

func write(t *testing.T, p testcert.Pair, cfg Config) { p.Write(t, cfg.CertFile, cfg.KeyFile) }

func paths(t *testing.T) Config {
	dir := t.TempDir()
	return Config{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
}

// syncBuf is a log destination safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNew(t *testing.T) {
	cfg := paths(t)
	a := newPair(t, 1001, time.Now().Add(time.Hour))
	write(t, a, cfg)
	other := newPair(t, 1002, time.Now().Add(time.Hour))

	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Leaf().SerialNumber.Int64(); got != 1001 {
		t.Fatalf("serial %d, want 1001", got)
	}
	c, err := r.GetCertificate(nil)
	if err != nil || c.Leaf.SerialNumber.Int64() != 1001 {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}

	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no cert", Config{KeyFile: cfg.KeyFile}, "cert file: required"},
		{"no key", Config{CertFile: cfg.CertFile}, "key file: required"},
		{"missing cert file", Config{CertFile: filepath.Join(dir, "none.pem"), KeyFile: cfg.KeyFile}, "none.pem"},
		{"not PEM", Config{CertFile: file("junk.pem", []byte("junk")), KeyFile: cfg.KeyFile}, "junk.pem"},
		{"key of another cert", Config{CertFile: cfg.CertFile, KeyFile: file("other.KeyPEM", other.KeyPEM)}, "private key does not match"},
		{"cert and key swapped", Config{CertFile: cfg.KeyFile, KeyFile: cfg.CertFile}, "tlsreload: load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestNewExpiredWarns(t *testing.T) {
	cfg := paths(t)
	write(t, newPair(t, 7, time.Now().Add(-time.Minute)), cfg)
	var log syncBuf
	if _, err := New(cfg, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "outside its validity period") {
		t.Fatalf("no warning for an expired certificate:\n%s", log.String())
	}
}

// TestReload: a good pair replaces the served one for new handshakes only; a
// bad one is refused, logged, and the old pair stays.
func TestReload(t *testing.T) {
	cfg := paths(t)
	a := newPair(t, 1, time.Now().Add(time.Hour))
	b := newPair(t, 2, time.Now().Add(2*time.Hour))
	write(t, a, cfg)
	var log syncBuf
	r, err := New(cfg, slog.New(slog.NewJSONHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { // echo
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(a.Cert)
	roots.AddCert(b.Cert)
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serial := func(c *tls.Conn) int64 { return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64() }
	echo := func(c *tls.Conn) {
		t.Helper()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
	}

	old := dial()
	defer old.Close()
	if s := serial(old); s != 1 {
		t.Fatalf("first connection: serial %d, want 1", s)
	}

	write(t, b, cfg)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := r.Leaf().SerialNumber.Int64(); s != 2 {
		t.Fatalf("after reload: serial %d, want 2", s)
	}
	c := dial()
	if s := serial(c); s != 2 {
		t.Fatalf("new connection after reload: serial %d, want 2", s)
	}
	echo(c)
	c.Close()
	echo(old) // the old session goes on
	if !strings.Contains(log.String(), `"msg":"tls: reloaded"`) || !strings.Contains(log.String(), `"serial":"2"`) {
		t.Fatalf("no reload line with the new serial:\n%s", log.String())
	}

	// Broken files: the reload fails and serial 2 is still served.
	for _, tc := range []struct {
		name       string
		cert, key  []byte
		removeCert bool
	}{
		{"truncated cert", b.CertPEM[:len(b.CertPEM)/2], b.KeyPEM, false},
		{"key of another cert", b.CertPEM, a.KeyPEM, false},
		{"empty key", b.CertPEM, nil, false},
		{"cert removed", nil, b.KeyPEM, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(t, testcert.Pair{CertPEM: tc.cert, KeyPEM: tc.key}, cfg)
			if tc.removeCert {
				os.Remove(cfg.CertFile)
			}
			before := strings.Count(log.String(), "reload failed")
			if err := r.Reload(); err == nil {
				t.Fatal("reload of a broken pair succeeded")
			}
			if n := strings.Count(log.String(), "reload failed"); n != before+1 {
				t.Fatalf("no error logged:\n%s", log.String())
			}
			if s := r.Leaf().SerialNumber.Int64(); s != 2 {
				t.Fatalf("serial %d after a failed reload, want 2", s)
			}
			c := dial()
			defer c.Close()
			if s := serial(c); s != 2 {
				t.Fatalf("new connection after a failed reload: serial %d, want 2", s)
			}
			echo(c)
		})
	}

	// And the files fixed again: the next reload takes them.
	write(t, a, cfg)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	c = dial()
	defer c.Close()
	if s := serial(c); s != 1 {
		t.Fatalf("after fixing the files: serial %d, want 1", s)
	}
}

func TestTLSConfigMinVersion(t *testing.T) {
	cfg := paths(t)
	write(t, newPair(t, 3, time.Now().Add(time.Hour)), cfg)
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*tls.Conn).Handshake()
		c.Close()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	<-done
}
