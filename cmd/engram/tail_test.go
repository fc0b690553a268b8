package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"engram/internal/engine"
	"engram/internal/server"
)

func startServer(t *testing.T) string {
	t.Helper()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none"})
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
	for i := range 3 {
		in := engine.UnitInput{ContextID: "c1", AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage(`"` + strings.Repeat("x", i) + `"`)}
		if _, err := srv.Engine().CreateUnit(context.Background(), &in); err != nil {
			t.Fatal(err)
		}
	}
	return "http://" + srv.Addr()
}

func TestTailPrintsEventsAsJSONLines(t *testing.T) {
	url := startServer(t)
	var out, errb bytes.Buffer
	code := dispatch([]string{"tail", "--server", url, "--topic", "contexts/*", "--after-seq", "0", "--count", "4"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines: %q", len(lines), out.String())
	}
	for i, l := range lines {
		var ev struct {
			Seq   uint64 `json:"seq"`
			Type  string `json:"type"`
			Topic string `json:"topic"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		if ev.Seq != uint64(i+1) || ev.Topic != "contexts/c1" {
			t.Fatalf("line %d: %+v", i, ev)
		}
	}
}

func TestTailAndHealthErrors(t *testing.T) {
	url := startServer(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tail"}, 2, "--topic is required"},
		{[]string{"tail", "--server", url, "--topic", "a//b"}, 1, "topic"},
		{[]string{"tail", "--server", url, "--topic", "contexts/c1", "--after-seq", "999"}, 1, "ahead"},
		{[]string{"tail", "--server", "ftp://x", "--topic", "contexts/c1"}, 1, "http"},
		{[]string{"health", "--server", url}, 0, ""},
	}
	// A port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	cases = append(cases, struct {
		args []string
		code int
		want string
	}{[]string{"health", "--server", dead, "--timeout", "1s"}, 1, "not ready"})
	for _, tc := range cases {
		var out, errb bytes.Buffer
		if code := dispatch(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errb.String(), tc.want)
		}
	}
}
