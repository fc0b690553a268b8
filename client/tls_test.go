package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"engram/internal/server"
	"engram/internal/testcert"
)

// selfSigned is a certificate for 127.0.0.1, and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	p := testcert.New(t, 42, time.Now().Add(time.Hour))
	return p.TLS(), p.Pool()
}

// TestTLS: over https the client trusts a self-signed server through
// WithTLSConfig, for requests and for WebSocket subscriptions alike.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv, err := server.New(server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	ctx := ctxT(t)
	base := "https://" + srv.Addr()
	// No keep-alive: nothing idle is left for goleak.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	untrusted, err := New(base, WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if err := untrusted.Health(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("health without the CA: %v, want a certificate error", err)
	}

	c, err := New(base, WithHTTPClient(hc), WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if tc := hc.Transport.(*http.Transport).TLSClientConfig; tc != nil && tc.RootCAs != nil {
		t.Fatal("WithTLSConfig changed the caller's transport")
	}
	if _, err := c.CreateContext(ctx, ContextCreate{ID: "tls", AgentIDs: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, "contexts/tls", SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	u, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "tls", AgentID: "a", Type: UnitMessage})
	if err != nil {
		t.Fatal(err)
	}
	if got := unitOf(t, next(t, sub, 10*time.Second)); got.ID != u.ID {
		t.Fatalf("event of unit %s, want %s", got.ID, u.ID)
	}
}

func TestWithTLSConfigNeedsAnHTTPTransport(t *testing.T) {
	hc := &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) { return nil, nil })}
	if _, err := New("https://127.0.0.1:1", WithHTTPClient(hc), WithTLSConfig(&tls.Config{})); err == nil {
		t.Fatal("New accepted WithTLSConfig over a transport it cannot configure")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
