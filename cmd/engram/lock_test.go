package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// lockLine is the lock JSON the lock subcommands print.
type lockLine struct {
	LockID       string    `json:"lock_id"`
	Resources    []string  `json:"resources"`
	Holder       string    `json:"holder"`
	FencingToken uint64    `json:"fencing_token"`
	AcquiredAt   time.Time `json:"acquired_at"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// lockOut decodes the one lock a subcommand printed.
func lockOut(t *testing.T, out string) lockLine {
	t.Helper()
	var l lockLine
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.LockID == "" || l.FencingToken == 0 || l.AcquiredAt.IsZero() ||
		!strings.HasSuffix(out, "}\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("lock output %q: %v", out, err)
	}
	return l
}

func TestLockCommands(t *testing.T) {
	url := startServer(t)

	code, out, errs := runCLI(t, "lock", "acquire", "--server", url, "--holder", "agent-1", "--ttl", "1m", "repo/main", "deploy/prod")
	if code != 0 || errs != "" {
		t.Fatalf("acquire: exit %d, %q", code, errs)
	}
	l1 := lockOut(t, out)
	if l1.Holder != "agent-1" || strings.Join(l1.Resources, ",") != "repo/main,deploy/prod" || l1.FencingToken != 1 || l1.ExpiresAt.Sub(l1.AcquiredAt) != time.Minute {
		t.Fatalf("acquire: %+v", l1)
	}
	// Get by either resource; flags after the arguments.
	code, out, errs = runCLI(t, "lock", "get", "deploy/prod", "--server", url)
	if got := lockOut(t, out); code != 0 || got.LockID != l1.LockID || !got.ExpiresAt.Equal(l1.ExpiresAt) {
		t.Fatalf("get: exit %d, %q, %q", code, out, errs)
	}
	// Held: exit status 1, the holder named on stderr, nothing on stdout.
	code, out, errs = runCLI(t, "lock", "acquire", "--server", url, "--holder", "agent-2", "--ttl", "1s", "--wait", "100ms", "deploy/prod")
	if code != 1 || out != "" || !strings.Contains(errs, `engram lock: engram: 409 conflict: resource "deploy/prod" is held by "agent-1"`) {
		t.Fatalf("held: exit %d, %q, %q", code, out, errs)
	}
	// A free resource: exit status 1.
	code, out, errs = runCLI(t, "lock", "get", "--server", url, "free")
	if code != 1 || out != "" || !strings.Contains(errs, `404 not_found: resource "free" is not locked`) {
		t.Fatalf("get free: exit %d, %q, %q", code, out, errs)
	}

	// Renew: the same lock, later expiry.
	code, out, errs = runCLI(t, "lock", "renew", "--server", url, "--ttl", "2m", l1.LockID)
	if r := lockOut(t, out); code != 0 || r.LockID != l1.LockID || r.FencingToken != 1 || !r.ExpiresAt.After(l1.ExpiresAt) {
		t.Fatalf("renew: exit %d, %q, %q", code, out, errs)
	}

	// More locks, then ls: by resource, each lock once, across pages.
	for _, args := range [][]string{{"--holder", "h2", "repo/dev"}, {"--holder", "h3", "other"}} {
		if code, _, errs := runCLI(t, append([]string{"lock", "acquire", "--server", url, "--ttl", "1h"}, args...)...); code != 0 {
			t.Fatalf("acquire %q: %q", args, errs)
		}
	}
	lsHolders := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"lock", "ls", "--server", url}, args...)...)
		if code != 0 {
			t.Fatalf("ls %q: exit %d, %q", args, code, errs)
		}
		var hs []string
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if line == "" {
				continue
			}
			hs = append(hs, lockOut(t, line+"\n").Holder)
		}
		return strings.Join(hs, ",")
	}
	// By resource: deploy/prod (agent-1), other, repo/dev, repo/main
	// (agent-1 again: not repeated).
	if got := lsHolders(); got != "agent-1,h3,h2" {
		t.Errorf("ls: %q", got)
	}
	if got := lsHolders("--page-size", "1"); got != "agent-1,h3,h2" {
		t.Errorf("ls --page-size 1: %q", got)
	}
	if got := lsHolders("repo/"); got != "h2,agent-1" {
		t.Errorf("ls repo/: %q", got)
	}
	if got := lsHolders("nothing"); got != "" {
		t.Errorf("ls nothing: %q", got)
	}

	// Release: prints nothing; again, or a renew after, is gone.
	if code, out, errs := runCLI(t, "lock", "release", "--server", url, l1.LockID); code != 0 || out != "" || errs != "" {
		t.Fatalf("release: exit %d, %q, %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "lock", "release", "--server", url, l1.LockID); code != 1 || !strings.Contains(errs, "engram lock: engram: 410 gone: lock "+l1.LockID) {
		t.Fatalf("release again: exit %d, %q", code, errs)
	}
	if code, _, errs := runCLI(t, "lock", "renew", "--server", url, "--ttl", "1m", l1.LockID); code != 1 || !strings.Contains(errs, "410 gone") {
		t.Fatalf("renew after release: exit %d, %q", code, errs)
	}
	// Now free: a new acquire with a greater fencing token.
	code, out, errs = runCLI(t, "lock", "acquire", "--server", url, "--holder", "agent-2", "--ttl", "1m", "deploy/prod")
	if l := lockOut(t, out); code != 0 || l.FencingToken <= 3 {
		t.Fatalf("acquire after release: exit %d, %q, %q", code, out, errs)
	}
}

// TestLockAcquireWaits: acquire --wait gets the lock when its holder
// releases it.
func TestLockAcquireWaits(t *testing.T) {
	url := startServer(t)
	code, out, errs := runCLI(t, "lock", "acquire", "--server", url, "--holder", "a", "--ttl", "1m", "r")
	if code != 0 {
		t.Fatal(errs)
	}
	held := lockOut(t, out)
	time.AfterFunc(300*time.Millisecond, func() { runCLI(t, "lock", "release", "--server", url, held.LockID) })
	t0 := time.Now()
	code, out, errs = runCLI(t, "lock", "acquire", "--server", url, "--holder", "b", "--ttl", "1m", "--wait", "10s", "r")
	if l := lockOut(t, out); code != 0 || l.Holder != "b" || time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("waiting acquire: exit %d, %q, %q after %v", code, out, errs, time.Since(t0))
	}
}

func TestLockUsage(t *testing.T) {
	url := startServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (in stdout for help)
	}{
		{[]string{"lock"}, 2, "Usage: engram lock <subcommand>"},
		{[]string{"lock", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"lock", "-h"}, 0, "Usage: engram lock <subcommand>"},
		{[]string{"lock", "acquire", "-h"}, 0, "Usage: engram lock acquire [flags] RESOURCE..."},
		{[]string{"lock", "acquire", "--holder", "h", "--ttl", "1s"}, 2, "want at least one RESOURCE"},
		{[]string{"lock", "acquire", "--ttl", "1s", "r"}, 2, "--holder is required"},
		{[]string{"lock", "acquire", "--holder", "h", "r"}, 2, "--ttl is required"},
		{[]string{"lock", "acquire", "--holder", "h", "--ttl", "0s", "r"}, 2, "--ttl is required"},
		{[]string{"lock", "acquire", "--holder", "h", "--ttl", "soon", "r"}, 2, `"soon" is not a duration`},
		{[]string{"lock", "acquire", "--holder", "h", "--ttl", "1s", "--wait", "x", "r"}, 2, `"x" is not a duration`},
		{[]string{"lock", "renew", "--ttl", "1s"}, 2, "want 1 argument, got 0"},
		{[]string{"lock", "renew", "01JDQ8ZK5W3V6X7Y8Z9A0B1C2D"}, 2, "--ttl is required"},
		{[]string{"lock", "release"}, 2, "want 1 argument, got 0"},
		{[]string{"lock", "release", "a", "b"}, 2, "want 1 argument, got 2"},
		{[]string{"lock", "get"}, 2, "want 1 argument, got 0"},
		{[]string{"lock", "ls", "a", "b"}, 2, "want 0 to 1 arguments, got 2"},
		{[]string{"lock", "ls", "--page-size", "1001"}, 2, "--page-size must be 0 to 1000"},
		{[]string{"lock", "ls", "--server", "ftp://x"}, 1, "scheme must be http or https"},
		// The server's messages, exit status 1.
		{[]string{"lock", "acquire", "--server", url, "--holder", "h", "--ttl", "50ms", "r"}, 1, "400 invalid_argument: ttl_ms: 50 out of range 100..86400000"},
		{[]string{"lock", "acquire", "--server", url, "--holder", "h", "--ttl", "1s", "--wait", "61s", "r"}, 1, "wait_ms: 61000 out of range"},
		{[]string{"lock", "acquire", "--server", url, "--holder", "h", "--ttl", "1s", "r", "r"}, 1, `resources[1]: "r" is listed twice`},
		{[]string{"lock", "acquire", "--server", url, "--holder", "h", "--ttl", "1s", "a\nb"}, 1, "resources[0]: "},
		{[]string{"lock", "acquire", "--server", url, "--holder", strings.Repeat("h", 257), "--ttl", "1s", "r"}, 1, "holder: must be 1 to 256 bytes"},
		{[]string{"lock", "renew", "--server", url, "--ttl", "1s", "nope"}, 1, `lock_id: "nope" is not a ULID`},
		{[]string{"lock", "renew", "--server", url, "--ttl", "1s", "01JDQ8ZK5W3V6X7Y8Z9A0B1C2D"}, 1, "410 gone"},
		{[]string{"lock", "release", "--server", url, "nope"}, 1, `lock_id: "nope" is not a ULID`},
		{[]string{"lock", "get", "--server", url, ""}, 1, "resource: required"},
		{[]string{"lock", "ls", "--server", url, strings.Repeat("p", 513)}, 1, "prefix: must be at most 512 bytes"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if tc.code == 0 {
			errs = out + errs
		}
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}

	if code, out, _ := runCLI(t, "help", "lock"); code != 0 || !strings.Contains(out, "acquire RESOURCE... --holder H --ttl D [--wait D]") {
		t.Fatalf("help lock: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "help"); code != 0 || !strings.Contains(out, "lock       acquire, renew, release") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}
