package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"engram/internal/engine"
	"engram/internal/server"
	"engram/internal/testcert"
)

// startTLSServer runs an in-process server over https with a self-signed
// certificate, one event in its log, and returns its URL and the
// certificate's PEM file.
func startTLSServer(t *testing.T) (url, caFile string) {
	t.Helper()
	p := testcert.New(t, 9, time.Now().Add(time.Hour))
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, p.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none",
		TLS: &tls.Config{Certificates: []tls.Certificate{p.TLS()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	in := engine.UnitInput{ContextID: "c1", AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage(`"x"`)}
	if _, err := srv.Engine().CreateUnit(context.Background(), &in); err != nil {
		t.Fatal(err)
	}
	return "https://" + srv.Addr(), caFile
}

// TestCA: --ca (or ENGRAM_CA) makes the subcommands trust a self-signed
// server, over HTTPS and WSS alike.
func TestCA(t *testing.T) {
	url, ca := startTLSServer(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	out := filepath.Join(t.TempDir(), "b.tar")
	for _, tc := range []struct {
		name string
		args []string
		env  string // ENGRAM_CA
		code int
		want string // in stdout (code 0) or stderr
	}{
		{"health without --ca", []string{"health", "--server", url}, "", 1, "certificate"},
		{"health with --ca", []string{"health", "--server", url, "--ca", ca}, "", 0, "ready"},
		{"health with ENGRAM_CA", []string{"health", "--server", url}, ca, 0, "ready"},
		{"tail over wss", []string{"tail", "--server", url, "--ca", ca, "--topic", "contexts/c1", "--after-seq", "0", "--count", "1"}, "", 0, `"seq":1`},
		{"group subcommand", []string{"queue", "stats", "--server", url, "--ca", ca}, "", 0, ""},
		{"backup", []string{"backup", "--server", url, "--ca", ca, "-o", out}, "", 0, "bytes, head_seq"},
		{"backup without --ca", []string{"backup", "--server", url, "-o", out}, "", 1, "certificate"},
		{"missing --ca file", []string{"health", "--server", url, "--ca", filepath.Join(t.TempDir(), "none.pem")}, "", 1, "--ca"},
		{"--ca without a certificate", []string{"health", "--server", url, "--ca", junk}, "", 1, "holds no PEM certificate"},
		{"reindex --data refuses --ca", []string{"reindex", "--data", t.TempDir(), "--ca", ca}, "", 2, "--ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ENGRAM_CA", tc.env)
			var stdout, stderr bytes.Buffer
			code := dispatch(tc.args, &stdout, &stderr)
			got := stderr.String()
			if code == 0 {
				got = stdout.String()
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("exit %d (want %d); stdout %q; stderr %q (want %q)", code, tc.code, stdout.String(), stderr.String(), tc.want)
			}
		})
	}
}
