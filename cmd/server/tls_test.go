package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigTLS: --tls-cert and --tls-key come from flags, environment or
// file, and only together. TLS does not lift the loopback rule: that waits
// for auth.
func TestConfigTLS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "engram.yaml")
	if err := os.WriteFile(file, []byte("tls_cert: /file/cert.pem\ntls_key: /file/key.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(dir, "half.yaml")
	if err := os.WriteFile(half, []byte("tls_key: /file/key.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		args           []string
		env            map[string]string
		cert, key, err string // err: a part of the error, "" for none
	}{
		{"off by default", nil, nil, "", "", ""},
		{"flags", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, nil, "c.pem", "k.pem", ""},
		{"env", nil, map[string]string{"ENGRAM_TLS_CERT": "ec.pem", "ENGRAM_TLS_KEY": "ek.pem"}, "ec.pem", "ek.pem", ""},
		{"file", []string{"--config", file}, nil, "/file/cert.pem", "/file/key.pem", ""},
		{"flag over env over file", []string{"--config", file, "--tls-cert", "f.pem"}, map[string]string{"ENGRAM_TLS_KEY": "ek.pem"}, "f.pem", "ek.pem", ""},
		{"cert without key", []string{"--tls-cert", "c.pem"}, nil, "", "", "--tls-key (ENGRAM_TLS_KEY, tls_key) is missing"},
		{"key without cert", nil, map[string]string{"ENGRAM_TLS_KEY": "k.pem"}, "", "", "--tls-cert (ENGRAM_TLS_CERT, tls_cert) is missing"},
		{"key without cert in file", []string{"--config", half}, nil, "", "", "--tls-cert"},
		{"TLS still needs --insecure off loopback", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--addr", "0.0.0.0:8443"}, nil, "", "", "--insecure"},
		{"TLS with --insecure", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--addr", "0.0.0.0:8443", "--insecure"}, nil, "c.pem", "k.pem", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, env(tc.env), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to mention %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TLSCert != tc.cert || c.TLSKey != tc.key {
				t.Fatalf("cert %q key %q, want %q %q", c.TLSCert, c.TLSKey, tc.cert, tc.key)
			}
		})
	}
}
