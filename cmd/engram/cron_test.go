package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// cronLine is the job JSON the cron subcommands print.
type cronLine struct {
	Name        string          `json:"name"`
	Schedule    string          `json:"schedule"`
	Timezone    string          `json:"timezone"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload"`
	CatchUp     string          `json:"catch_up"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	LastFiredAt *time.Time      `json:"last_fired_at"`
	NextFireAt  *time.Time      `json:"next_fire_at"`
}

// cronOut decodes the one job a subcommand printed.
func cronOut(t *testing.T, out string) cronLine {
	t.Helper()
	var j cronLine
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.Name == "" || j.CreatedAt.IsZero() ||
		!strings.HasSuffix(out, "}\n") || strings.Count(out, "\n") != 1 ||
		!strings.Contains(out, `"last_fired_at":`) || !strings.Contains(out, `"next_fire_at":`) {
		t.Fatalf("cron output %q: %v", out, err)
	}
	return j
}

func TestCronCommands(t *testing.T) {
	url := startServer(t)

	code, out, errs := runCLI(t, "cron", "put", "--server", url, "--schedule", "0 0 3 * * *", "--timezone", "Europe/Paris",
		"--queue", "reports", "--payload", `{"kind": "nightly"}`, "--catch-up", "once", "nightly")
	if code != 0 || errs != "" {
		t.Fatalf("put: exit %d, %q", code, errs)
	}
	j := cronOut(t, out)
	if j.Name != "nightly" || j.Schedule != "0 0 3 * * *" || j.Timezone != "Europe/Paris" || j.Queue != "reports" ||
		string(j.Payload) != `{"kind":"nightly"}` || j.CatchUp != "once" || j.LastFiredAt != nil || j.NextFireAt == nil {
		t.Fatalf("put: %+v", j)
	}
	// Get; flags after the argument.
	code, out, errs = runCLI(t, "cron", "get", "nightly", "--server", url)
	if got := cronOut(t, out); code != 0 || got.Name != "nightly" || !got.CreatedAt.Equal(j.CreatedAt) || !got.NextFireAt.Equal(*j.NextFireAt) {
		t.Fatalf("get: exit %d, %q, %q", code, out, errs)
	}
	// Replace with the defaults (UTC, skip, null); the payload from stdin
	// for another job.
	code, out, errs = runCLI(t, "cron", "put", "--server", url, "--schedule", "@hourly", "--queue", "other", "nightly")
	if r := cronOut(t, out); code != 0 || r.Timezone != "UTC" || r.CatchUp != "skip" || string(r.Payload) != "null" || !r.CreatedAt.Equal(j.CreatedAt) {
		t.Fatalf("replace: exit %d, %q, %q", code, out, errs)
	}
	withStdin(t, `"from stdin"`)
	code, out, errs = runCLI(t, "cron", "put", "--server", url, "--schedule", "*/5 * * * *", "--queue", "q", "--payload", "-", "a-job")
	if r := cronOut(t, out); code != 0 || string(r.Payload) != `"from stdin"` {
		t.Fatalf("put --payload -: exit %d, %q, %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "cron", "put", "--server", url, "--schedule", "@daily", "--queue", "q", "z-job"); code != 0 {
		t.Fatalf("put z-job: %q", errs)
	}

	// ls: by name, every page.
	lsNames := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"cron", "ls", "--server", url}, args...)...)
		if code != 0 {
			t.Fatalf("ls %q: exit %d, %q", args, code, errs)
		}
		var ns []string
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if line == "" {
				continue
			}
			ns = append(ns, cronOut(t, line+"\n").Name)
		}
		return strings.Join(ns, ",")
	}
	if got := lsNames(); got != "a-job,nightly,z-job" {
		t.Errorf("ls: %q", got)
	}
	if got := lsNames("--page-size", "1"); got != "a-job,nightly,z-job" {
		t.Errorf("ls --page-size 1: %q", got)
	}

	// rm: prints nothing; again, or a get after, is not found.
	if code, out, errs := runCLI(t, "cron", "rm", "--server", url, "nightly"); code != 0 || out != "" || errs != "" {
		t.Fatalf("rm: exit %d, %q, %q", code, out, errs)
	}
	if code, out, errs := runCLI(t, "cron", "rm", "--server", url, "nightly"); code != 1 || out != "" ||
		!strings.Contains(errs, `engram cron: engram: 404 not_found: cron job "nightly" not found`) {
		t.Fatalf("rm again: exit %d, %q", code, errs)
	}
	if code, out, errs := runCLI(t, "cron", "get", "--server", url, "nightly"); code != 1 || out != "" || !strings.Contains(errs, "404 not_found") {
		t.Fatalf("get after rm: exit %d, %q, %q", code, out, errs)
	}
	for _, n := range []string{"a-job", "z-job"} {
		if code, _, errs := runCLI(t, "cron", "rm", "--server", url, n); code != 0 {
			t.Fatalf("rm %s: %q", n, errs)
		}
	}
	if got := lsNames(); got != "" {
		t.Errorf("ls after rm: %q", got)
	}
}

// TestCronFiresCommand: a per-second job put with the CLI publishes on its
// queue.
func TestCronFiresCommand(t *testing.T) {
	url := startServer(t)
	if code, _, errs := runCLI(t, "cron", "put", "--server", url, "--schedule", "* * * * * *", "--queue", "ticks", "--payload", "7", "tick"); code != 0 {
		t.Fatalf("put: %q", errs)
	}
	code, out, errs := runCLI(t, "queue", "lease", "--server", url, "--wait", "3s", "ticks")
	var m struct {
		Payload struct {
			Job         string          `json:"job"`
			ScheduledAt time.Time       `json:"scheduled_at"`
			Payload     json.RawMessage `json:"payload"`
		} `json:"payload"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.Payload.Job != "tick" || string(m.Payload.Payload) != "7" || m.Payload.ScheduledAt.IsZero() {
		t.Fatalf("lease: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "cron", "get", "--server", url, "tick")
	if j := cronOut(t, out); code != 0 || j.LastFiredAt == nil || j.LastFiredAt.Before(m.Payload.ScheduledAt) {
		t.Fatalf("get after a fire: exit %d, %q, %q", code, out, errs)
	}
}

func TestCronUsage(t *testing.T) {
	url := startServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (in stdout for help)
	}{
		{[]string{"cron"}, 2, "Usage: engram cron <subcommand>"},
		{[]string{"cron", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"cron", "-h"}, 0, "Usage: engram cron <subcommand>"},
		{[]string{"cron", "put", "-h"}, 0, "Usage: engram cron put [flags] NAME"},
		{[]string{"cron", "ls", "-h"}, 0, "Usage: engram cron ls [flags]\n"},
		{[]string{"cron", "put", "--schedule", "@daily", "--queue", "q"}, 2, "want 1 argument, got 0"},
		{[]string{"cron", "put", "--queue", "q", "j"}, 2, "--schedule is required"},
		{[]string{"cron", "put", "--schedule", "@daily", "j"}, 2, "--queue is required"},
		{[]string{"cron", "put", "--schedule", "@daily", "--queue", "q", "--payload", "{", "j"}, 2, "--payload is not valid JSON"},
		{[]string{"cron", "put", "--schedule", "@daily", "--queue", "q", "--frob", "j"}, 2, "flag provided but not defined: -frob"},
		{[]string{"cron", "get"}, 2, "want 1 argument, got 0"},
		{[]string{"cron", "rm", "a", "b"}, 2, "want 1 argument, got 2"},
		{[]string{"cron", "ls", "a"}, 2, "want 0 arguments, got 1"},
		{[]string{"cron", "ls", "--page-size", "1001"}, 2, "--page-size must be 0 to 1000"},
		{[]string{"cron", "ls", "--server", "ftp://x"}, 1, "scheme must be http or https"},
		// The server's messages, exit status 1.
		{[]string{"cron", "put", "--server", url, "--schedule", "61 * * * *", "--queue", "q", "j"}, 1, `400 invalid_argument: schedule: minute field "61"`},
		{[]string{"cron", "put", "--server", url, "--schedule", "* * *", "--queue", "q", "j"}, 1, `schedule: "* * *" has 3 fields`},
		{[]string{"cron", "put", "--server", url, "--schedule", "@daily", "--queue", "q", "--timezone", "Mars/Olympus", "j"}, 1, `timezone: "Mars/Olympus"`},
		{[]string{"cron", "put", "--server", url, "--schedule", "@daily", "--queue", "q", "--catch-up", "all", "j"}, 1, `catch_up: "all" is not skip or once`},
		{[]string{"cron", "put", "--server", url, "--schedule", "@daily", "--queue", "a/b", "j"}, 1, `queue: "a/b" must match`},
		{[]string{"cron", "put", "--server", url, "--schedule", "@daily", "--queue", "q", "a b"}, 1, `name: "a b" must match`},
		{[]string{"cron", "put", "--server", url, "--schedule", "@daily", "--queue", "q", ""}, 1, "PutCron: name: required"},
		{[]string{"cron", "get", "--server", url, "nope"}, 1, `404 not_found: cron job "nope" not found`},
		{[]string{"cron", "rm", "--server", url, ""}, 1, "DeleteCron: name: required"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if tc.code == 0 {
			errs = out + errs
		}
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}

	if code, out, _ := runCLI(t, "help", "cron"); code != 0 || !strings.Contains(out, "put NAME --schedule EXPR --queue TOPIC [--timezone Z] [--payload JSON] [--catch-up skip|once]") {
		t.Fatalf("help cron: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "help"); code != 0 || !strings.Contains(out, "cron       create, get, delete and list cron jobs") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}
