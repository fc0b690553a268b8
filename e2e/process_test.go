package e2e_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondProcessSameDataDir: a second server on a data dir in use exits
// non-zero at once and says why; the first one is unharmed.
func TestSecondProcessSameDataDir(t *testing.T) {
	dir := t.TempDir()
	first := startServer(t, dir)
	first.must(t, 201, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE","payload":"kept"}`)

	start := time.Now()
	second := launch(t, "--addr", "127.0.0.1:0", "--data", dir, "--log-format", "json")
	code, ok := second.waitExit(10 * time.Second)
	if !ok {
		t.Fatalf("second server on %s still running after 10 s", dir)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second server took %v to give up", took)
	}
	if code == 0 {
		t.Errorf("second server exited 0")
	}
	if log := second.log.String(); !strings.Contains(log, "in use by another process") {
		t.Errorf("second server's log does not say the dir is in use by another process:\n%s", log)
	}
	if strings.Contains(second.log.String(), "engram listening") {
		t.Errorf("second server listened")
	}

	first.must(t, 200, "GET", "/readyz", nil)
	first.must(t, 201, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE","payload":"still"}`)
	if head := first.headSeq(t); head != 3 {
		t.Errorf("head seq %d, want 3", head)
	}
	first.Stop()

	// Once the first is gone, the dir opens again, with its data.
	third := startServer(t, dir)
	if head := third.headSeq(t); head != 3 {
		t.Errorf("reopened: head seq %d, want 3", head)
	}
	third.Stop()
}

// TestListenAddress: without auth only loopback addresses are allowed, unless
// --insecure.
func TestListenAddress(t *testing.T) {
	t.Run("non-loopback without --insecure exits 2", func(t *testing.T) {
		p := launch(t, "--addr", "0.0.0.0:0", "--data", t.TempDir(), "--log-format", "json")
		code, ok := p.waitExit(10 * time.Second)
		if !ok {
			t.Fatalf("still running after 10 s")
		}
		if code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
		if log := p.log.String(); !strings.Contains(log, "--insecure") || !strings.Contains(log, "loopback") {
			t.Errorf("message does not explain loopback and --insecure:\n%s", log)
		}
	})
	t.Run("non-loopback with --insecure starts", func(t *testing.T) {
		p := startServer(t, t.TempDir(), "--addr", "0.0.0.0:0", "--insecure")
		p.Stop()
	})
	t.Run("non-loopback with --insecure=true starts", func(t *testing.T) {
		p := startServer(t, t.TempDir(), "--addr", "0.0.0.0:0", "--insecure=true")
		if addr, _ := p.Listening["addr"].(string); !strings.HasPrefix(addr, "0.0.0.0:") && !strings.HasPrefix(addr, "[::]:") {
			t.Errorf("listening on %q", addr)
		}
		p.must(t, 201, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE"}`)
		p.Stop()
	})
	t.Run("localhost is loopback", func(t *testing.T) {
		p := startServer(t, t.TempDir(), "--addr", "localhost:0")
		p.Stop()
	})
}

// TestBadFlags: configuration errors exit 2 and name the setting.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad sync", []string{"--sync", "sometimes"}, "--sync"},
		{"bad max-body", []string{"--max-body", "lots"}, "--max-body"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"bad addr", []string{"--addr", "nowhere"}, "--addr"},
		{"unknown flag", []string{"--bogus"}, "bogus"},
		{"argument", []string{"extra"}, "extra"},
		{"missing config file", []string{"--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := launch(t, append([]string{"--addr", "127.0.0.1:0", "--data", dir}, tc.args...)...)
			code, ok := p.waitExit(10 * time.Second)
			if !ok {
				t.Fatalf("still running after 10 s")
			}
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if log := p.log.String(); !strings.Contains(log, tc.want) {
				t.Errorf("message does not name %q:\n%s", tc.want, log)
			}
		})
	}
}
