package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// leasedLine is a line of `queue lease`.
type leasedLine struct {
	ID             string          `json:"id"`
	Payload        json.RawMessage `json:"payload"`
	Attempt        int             `json:"attempt"`
	Receipt        string          `json:"receipt"`
	LeaseExpiresAt time.Time       `json:"lease_expires_at"`
	PublishedAt    time.Time       `json:"published_at"`
}

// leaseCLI runs `queue lease` with args and decodes its lines.
func leaseCLI(t *testing.T, args ...string) []leasedLine {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"queue", "lease"}, args...)...)
	if code != 0 {
		t.Fatalf("lease %q: exit %d, stderr %q", args, code, errs)
	}
	var msgs []leasedLine
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m leasedLine
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("lease line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// publishedOut decodes the output of `queue publish`.
func publishedOut(t *testing.T, out string) (id string, duplicate bool) {
	t.Helper()
	var p struct {
		ID          string    `json:"id"`
		Seq         uint64    `json:"seq"`
		AvailableAt time.Time `json:"available_at"`
		Duplicate   *bool     `json:"duplicate"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.ID == "" || p.Seq == 0 || p.AvailableAt.IsZero() || p.Duplicate == nil || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("publish output %q: %v", out, err)
	}
	return p.ID, *p.Duplicate
}

func TestQueuePublishLeaseAckCommands(t *testing.T) {
	url := startServer(t)

	code, out, errs := runCLI(t, "queue", "publish", "--server", url, "jobs", `{"n": 1}`)
	if code != 0 {
		t.Fatalf("publish: exit %d, %q", code, errs)
	}
	id1, dup := publishedOut(t, out)
	if dup {
		t.Fatal("first publish is a duplicate")
	}
	// Flags after the arguments; a dedupe id seen before is a duplicate.
	code, out, errs = runCLI(t, "queue", "publish", "jobs", `"two"`, "--server", url, "--dedupe-id", "d-2")
	if _, dup := publishedOut(t, out); code != 0 || dup {
		t.Fatalf("publish 2: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "queue", "publish", "--server", url, "--dedupe-id", "d-2", "jobs", `"again"`)
	if _, dup := publishedOut(t, out); code != 0 || !dup {
		t.Fatalf("publish again: exit %d, %q, %q", code, out, errs)
	}
	// - reads the payload from stdin; -- ends the flags.
	withStdin(t, " [1, 2]\n")
	if code, _, errs := runCLI(t, "queue", "publish", "--server", url, "jobs", "-"); code != 0 {
		t.Fatalf("publish from stdin: %q", errs)
	}
	if code, _, errs := runCLI(t, "queue", "publish", "--server", url, "--", "jobs", "-5"); code != 0 {
		t.Fatalf("publish -5: %q", errs)
	}
	if code, out, _ := runCLI(t, "queue", "stats", "--server", url, "jobs"); code != 0 ||
		out != `{"topic":"jobs","ready":4,"leased":0,"delayed":0,"dead":0}`+"\n" {
		t.Fatalf("stats: exit %d, %q", code, out)
	}

	// Lease prints one message a line, in publish order.
	msgs := leaseCLI(t, "--server", url, "--max", "3", "--visibility", "1m", "jobs")
	if len(msgs) != 3 || msgs[0].ID != id1 || string(msgs[0].Payload) != `{"n":1}` || string(msgs[1].Payload) != `"two"` ||
		string(msgs[2].Payload) != `[1,2]` || msgs[0].Attempt != 1 || msgs[0].Receipt == "" || msgs[0].LeaseExpiresAt.Sub(msgs[0].PublishedAt) < 50*time.Second {
		t.Fatalf("lease: %+v", msgs)
	}
	// Ack: a stale receipt is reported with exit status 1.
	code, out, errs = runCLI(t, "queue", "ack", "--server", url, "jobs", msgs[0].Receipt, msgs[1].Receipt)
	if code != 0 || out != `{"acked":2,"stale":[]}`+"\n" || errs != "" {
		t.Fatalf("ack: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "queue", "ack", "--server", url, "jobs", msgs[0].Receipt, msgs[2].Receipt)
	if code != 1 || out != fmt.Sprintf(`{"acked":1,"stale":[%q]}`, msgs[0].Receipt)+"\n" ||
		!strings.Contains(errs, "engram queue: 1 of 2 receipts stale") {
		t.Fatalf("stale ack: exit %d, %q, %q", code, out, errs)
	}

	// The last one: nack with a delay, then it is delayed; a long poll gets
	// it when it is ready.
	msgs = leaseCLI(t, "--server", url, "jobs")
	if len(msgs) != 1 || string(msgs[0].Payload) != "-5" {
		t.Fatalf("lease -5: %+v", msgs)
	}
	code, out, errs = runCLI(t, "queue", "nack", "--server", url, "--delay", "200ms", "--error", "busy", "jobs", msgs[0].Receipt)
	if code != 0 || !strings.Contains(out, `"attempt":1,"state":"delayed","available_at":"`) {
		t.Fatalf("nack: exit %d, %q, %q", code, out, errs)
	}
	if code, out, _ := runCLI(t, "queue", "stats", "--server", url, "jobs"); code != 0 ||
		out != `{"topic":"jobs","ready":0,"leased":0,"delayed":1,"dead":0}`+"\n" {
		t.Fatalf("stats after nack: exit %d, %q", code, out)
	}
	if got := leaseCLI(t, "--server", url, "jobs"); len(got) != 0 {
		t.Fatalf("lease of a delayed message: %+v", got)
	}
	again := leaseCLI(t, "--server", url, "--wait", "5s", "jobs")
	if len(again) != 1 || again[0].ID != msgs[0].ID || again[0].Attempt != 2 {
		t.Fatalf("long poll: %+v", again)
	}
	// The old receipt is stale: 410.
	code, _, errs = runCLI(t, "queue", "nack", "--server", url, "jobs", msgs[0].Receipt)
	if code != 1 || !strings.Contains(errs, "engram queue: engram: 410 gone: receipt: stale") {
		t.Fatalf("stale nack: exit %d, %q", code, errs)
	}
	// A wait that ends without a message prints nothing.
	t0 := time.Now()
	if got := leaseCLI(t, "--server", url, "--wait", "200ms", "jobs"); len(got) != 0 || time.Since(t0) < 150*time.Millisecond {
		t.Fatalf("empty long poll: %+v after %v", got, time.Since(t0))
	}
}

func TestQueueDeadRedriveCommands(t *testing.T) {
	url := startServer(t)
	// Three messages of one attempt each die on their first nack.
	for i := range 3 {
		if code, _, errs := runCLI(t, "queue", "publish", "--server", url, "--max-attempts", "1", "--group", "g", "work", fmt.Sprint(i)); code != 0 {
			t.Fatal(errs)
		}
		msgs := leaseCLI(t, "--server", url, "work")
		if len(msgs) != 1 || string(msgs[0].Payload) != fmt.Sprint(i) {
			t.Fatalf("lease %d: %+v", i, msgs)
		}
		code, out, errs := runCLI(t, "queue", "nack", "--server", url, "--error", fmt.Sprint("failed ", i), "work", msgs[0].Receipt)
		if code != 0 || !strings.Contains(out, `"state":"dead","available_at":null`) {
			t.Fatalf("nack %d: exit %d, %q, %q", i, code, out, errs)
		}
	}
	// Every page, in the order they died.
	code, out, errs := runCLI(t, "queue", "dead", "--server", url, "--page-size", "2", "work")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("dead: exit %d, %q, %q", code, out, errs)
	}
	for i, line := range lines {
		var d struct {
			Payload json.RawMessage `json:"payload"`
			Attempt int             `json:"attempt"`
			Error   string          `json:"error"`
			DeadAt  time.Time       `json:"dead_at"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil || string(d.Payload) != fmt.Sprint(i) || d.Attempt != 1 ||
			d.Error != fmt.Sprint("failed ", i) || d.DeadAt.IsZero() {
			t.Fatalf("dead line %d: %q, %v", i, line, err)
		}
	}
	if code, out, _ := runCLI(t, "queue", "dead", "--server", url, "none"); code != 0 || out != "" {
		t.Fatalf("no dead letters: exit %d, %q", code, out)
	}

	if code, out, errs := runCLI(t, "queue", "redrive", "--server", url, "work"); code != 0 || out != `{"redriven":3}`+"\n" {
		t.Fatalf("redrive: exit %d, %q, %q", code, out, errs)
	}
	if code, out, _ := runCLI(t, "queue", "publish", "--server", url, "--delay", "1h", "other", "null"); code != 0 {
		t.Fatalf("publish other: %q", out)
	}
	// Every topic, by name.
	code, out, errs = runCLI(t, "queue", "stats", "--server", url)
	want := `{"topic":"other","ready":0,"leased":0,"delayed":1,"dead":0}` + "\n" +
		`{"topic":"work","ready":3,"leased":0,"delayed":0,"dead":0}` + "\n"
	if code != 0 || out != want {
		t.Fatalf("stats of all: exit %d, %q (want %q), %q", code, out, want, errs)
	}
	// FIFO group: one at a time, attempt counts restarted.
	msgs := leaseCLI(t, "--server", url, "--max", "10", "work")
	if len(msgs) != 1 || string(msgs[0].Payload) != "0" || msgs[0].Attempt != 1 {
		t.Fatalf("lease after redrive: %+v", msgs)
	}
}

func TestQueueUsage(t *testing.T) {
	url := startServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (in stdout for help)
	}{
		{[]string{"queue"}, 2, "Usage: engram queue <subcommand>"},
		{[]string{"queue", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"queue", "-h"}, 0, "Usage: engram queue <subcommand>"},
		{[]string{"queue", "publish", "-h"}, 0, "Usage: engram queue publish [flags] TOPIC PAYLOAD|-"},
		{[]string{"queue", "publish", "t"}, 2, "want 2 arguments, got 1"},
		{[]string{"queue", "publish", "t", "not json"}, 2, "PAYLOAD is not valid JSON"},
		{[]string{"queue", "publish", "--delay", "soon", "t", "1"}, 2, `invalid value "soon" for flag -delay`},
		{[]string{"queue", "publish", "--backoff", "x", "t", "1"}, 2, `"x" is not a duration`},
		{[]string{"queue", "lease"}, 2, "want 1 argument, got 0"},
		{[]string{"queue", "lease", "--max", "x", "t"}, 2, `invalid value "x" for flag -max`},
		{[]string{"queue", "ack", "t"}, 2, "want TOPIC and at least one RECEIPT, got 1 arguments"},
		{[]string{"queue", "nack", "t"}, 2, "want 2 arguments, got 1"},
		{[]string{"queue", "stats", "a", "b"}, 2, "want 0 to 1 arguments, got 2"},
		{[]string{"queue", "dead"}, 2, "want 1 argument, got 0"},
		{[]string{"queue", "dead", "--page-size", "1001", "t"}, 2, "--page-size must be 0 to 1000"},
		{[]string{"queue", "redrive", "a", "b"}, 2, "want 1 argument, got 2"},
		{[]string{"queue", "stats", "--server", "ftp://x"}, 1, "scheme must be http or https"},
		// The server's messages, exit status 1.
		{[]string{"queue", "publish", "--server", url, "bad topic", "1"}, 1, `400 invalid_argument: topic: "bad topic" must match`},
		{[]string{"queue", "publish", "--server", url, "--max-attempts", "0", "--delay", "-1s", "t", "1"}, 1, "delay_ms: -1000 out of range"},
		{[]string{"queue", "lease", "--server", url, "--wait", "31s", "t"}, 1, "wait_ms: 31000 out of range"},
		{[]string{"queue", "ack", "--server", url, "t", ""}, 1, "receipts[0]: \"\" is not a receipt"},
		{[]string{"queue", "nack", "--server", url, "t", "nonsense"}, 1, "400 invalid_argument: receipt: \"nonsense\" is not a receipt"},
		{[]string{"queue", "dead", "--server", url, "a b"}, 1, "invalid_argument: topic"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if tc.code == 0 {
			errs = out + errs
		}
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}

	if code, out, _ := runCLI(t, "help", "queue"); code != 0 || !strings.Contains(out, "lease   TOPIC [--max N] [--visibility D] [--wait D]") {
		t.Fatalf("help queue: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "help"); code != 0 || !strings.Contains(out, "queue      publish, lease, ack") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}
