package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// runCLI runs the CLI with args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

// withStdin makes `-` arguments read s for the rest of the test.
func withStdin(t *testing.T, s string) {
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

func TestStreamSetGetDelete(t *testing.T) {
	url := startServer(t)
	steps := []struct {
		args       []string
		stdin      string
		code       int
		out, errIn string
	}{
		{[]string{"stream", "set", "--server", url, "chat/room-1/alice", `{"name": "Alice"}`}, "", 0,
			`{"old_value":null,"new_value":{"name":"Alice"}}` + "\n", ""},
		// Flags may follow the arguments.
		{[]string{"stream", "get", "chat/room-1/alice", "--server", url}, "", 0, `{"name":"Alice"}` + "\n", ""},
		// - reads the value from stdin.
		{[]string{"stream", "set", "--server", url, "chat/room-1/alice", "-"}, " [1, 2,\n 3]\n", 0,
			`{"old_value":{"name":"Alice"},"new_value":[1,2,3]}` + "\n", ""},
		// -- ends the flags, for a value that starts with -.
		{[]string{"stream", "set", "--server", url, "--", "chat/room-1/n", "-5"}, "", 0,
			`{"old_value":null,"new_value":-5}` + "\n", ""},
		{[]string{"stream", "get", "--server", url, "chat/room-1/n"}, "", 0, "-5\n", ""},
		{[]string{"stream", "delete", "--server", url, "chat/room-1/alice"}, "", 0, "[1,2,3]\n", ""},
		{[]string{"stream", "get", "--server", url, "chat/room-1/alice"}, "", 1, "",
			"engram stream: engram: 404 not_found: stream item chat/room-1/alice not found"},
		{[]string{"stream", "delete", "--server", url, "chat/room-1/alice"}, "", 1, "", "not_found"},
		// A bad name: the server's message.
		{[]string{"stream", "set", "--server", url, "chat/room 1/x", "1"}, "", 1, "",
			`400 invalid_argument: group_id: "room 1" must match`},
	}
	for _, s := range steps {
		withStdin(t, s.stdin)
		code, out, errs := runCLI(t, s.args...)
		if code != s.code || out != s.out || !strings.Contains(errs, s.errIn) {
			t.Fatalf("%q: exit %d (want %d), stdout %q (want %q), stderr %q (want it to contain %q)",
				s.args, code, s.code, out, s.out, errs, s.errIn)
		}
	}
}

func TestStreamUpdateCommand(t *testing.T) {
	url := startServer(t)
	code, out, errs := runCLI(t, "stream", "update", "--server", url, "game/g1/p1",
		`[{"type":"set","path":"name","value":"p1"},{"type":"increment","path":"big","by":9007199254740993}]`,
		"--inc", "points=5", "--inc", "points", "--dec", "lives=2", "--set", `tags=["a"]`,
		"--append", `tags="b"`, "--merge", `{"level":1}`, "--set", "tmp=null", "--remove", "tmp")
	want := `{"old_value":null,"new_value":{"big":9007199254740993,"level":1,"lives":-2,"name":"p1","points":6,"tags":["a","b"]}}` + "\n"
	if code != 0 || out != want || errs != "" {
		t.Fatalf("exit %d, stdout %q (want %q), stderr %q", code, out, want, errs)
	}

	// OPS from stdin.
	withStdin(t, `[{"type":"merge","path":["stats","moves"],"value":{"up":1}}]`)
	code, out, errs = runCLI(t, "stream", "update", "--server", url, "game/g1/p2", "-")
	if want := `{"old_value":null,"new_value":{"stats":{"moves":{"up":1}}}}` + "\n"; code != 0 || out != want {
		t.Fatalf("stdin ops: exit %d, stdout %q (want %q), stderr %q", code, out, want, errs)
	}

	// A skipped op: the change is printed, the exit status is 1.
	code, out, errs = runCLI(t, "stream", "update", "--server", url, "game/g1/p1", "--inc", "name", "--inc", "points=1")
	if code != 1 || !strings.Contains(out, `"points":7`) || !strings.Contains(out, `"errors":[{"op_index":0,"code":"increment.not_number"`) ||
		!strings.Contains(errs, "1 of 2 ops skipped (the others were applied): op 0: increment.not_number:") {
		t.Fatalf("skipped op: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A malformed op is the server's 400 and changes nothing.
	code, _, errs = runCLI(t, "stream", "update", "--server", url, "game/g1/p1", `[{"type":"frobnicate","path":"x"}]`)
	if code != 1 || !strings.Contains(errs, `ops[0].type: unknown op type "frobnicate"`) {
		t.Fatalf("bad op: exit %d, stderr %q", code, errs)
	}
	if code, out, _ := runCLI(t, "stream", "get", "--server", url, "game/g1/p1"); code != 0 || !strings.Contains(out, `"points":7`) {
		t.Fatalf("after a bad op: exit %d, %q", code, out)
	}
}

func TestStreamLs(t *testing.T) {
	url := startServer(t)
	if code, out, errs := runCLI(t, "stream", "ls", "--server", url); code != 0 || out != "" {
		t.Fatalf("empty: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	var want strings.Builder
	for i := range 7 {
		id := fmt.Sprintf("item-%d", i)
		if code, _, errs := runCLI(t, "stream", "set", "--server", url, "s1/big/"+id, fmt.Sprintf(`{"n": %d}`, i)); code != 0 {
			t.Fatal(errs)
		}
		fmt.Fprintf(&want, "%s\t{\"n\":%d}\n", id, i)
	}
	for _, ref := range []string{"s1/small/x", "s2/a/x", "s2/b/x"} {
		if code, _, errs := runCLI(t, "stream", "set", "--server", url, ref, "true"); code != 0 {
			t.Fatal(errs)
		}
	}
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"stream", "ls", "--server", url}, "s1/big\ns1/small\ns2/a\ns2/b\n"},
		{[]string{"stream", "ls", "--server", url, "s2"}, "a\nb\n"},
		{[]string{"stream", "ls", "--server", url, "s2/"}, "a\nb\n"},
		{[]string{"stream", "ls", "--server", url, "nothing"}, ""},
		// Every page: 7 items 2 a page is 4 pages.
		{[]string{"stream", "ls", "--server", url, "--page-size", "2", "s1/big"}, want.String()},
		{[]string{"stream", "ls", "--server", url, "s1/big"}, want.String()},
		{[]string{"stream", "ls", "--server", url, "s1/none"}, ""},
	} {
		if code, out, errs := runCLI(t, tc.args...); code != 0 || out != tc.out {
			t.Errorf("%q: exit %d, stdout %q (want %q), stderr %q", tc.args, code, out, tc.out, errs)
		}
	}
}

func TestStreamUsage(t *testing.T) {
	url := startServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (in stdout for help)
	}{
		{[]string{"stream"}, 2, "Usage: engram stream <subcommand>"},
		{[]string{"stream", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"stream", "-h"}, 0, "Usage: engram stream <subcommand>"},
		{[]string{"stream", "get", "-h"}, 0, "Usage: engram stream get [flags] STREAM/GROUP/ITEM"},
		{[]string{"stream", "get"}, 2, "want 1 argument, got 0"},
		{[]string{"stream", "get", "a/b/c", "d"}, 2, "want 1 argument, got 2"},
		{[]string{"stream", "get", "a/b"}, 2, `want STREAM/GROUP/ITEM, got "a/b"`},
		{[]string{"stream", "get", "a//c"}, 2, `want STREAM/GROUP/ITEM, got "a//c"`},
		{[]string{"stream", "get", "a/b/c/d"}, 2, "want STREAM/GROUP/ITEM"},
		{[]string{"stream", "get", "--bogus", "a/b/c"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"stream", "set", "a/b/c"}, 2, "want 2 arguments, got 1"},
		{[]string{"stream", "set", "a/b/c", "not json"}, 2, "VALUE is not valid JSON"},
		{[]string{"stream", "set", "a/b/c", "-5"}, 2, "flag provided but not defined: -5"},
		{[]string{"stream", "update", "a/b/c"}, 2, "no ops"},
		{[]string{"stream", "update", "a/b/c", `{"type":"set"}`}, 2, "OPS: json: cannot unmarshal object"},
		{[]string{"stream", "update", "a/b/c", `[{"type":"set","bogus":1}]`}, 2, `OPS: json: unknown field "bogus"`},
		{[]string{"stream", "update", "a/b/c", `null`}, 2, "want a JSON array of ops"},
		{[]string{"stream", "update", "a/b/c", "--inc", "n=x"}, 2, `invalid value "n=x" for flag -inc: "x" is not a number`},
		{[]string{"stream", "update", "a/b/c", "--set", "n"}, 2, "want K=JSON"},
		{[]string{"stream", "update", "a/b/c", "--set", "n=alice"}, 2, "is not valid JSON"},
		{[]string{"stream", "ls", "a/b/c"}, 2, `want STREAM or STREAM/GROUP, got "a/b/c"`},
		{[]string{"stream", "ls", "a", "b"}, 2, "want 0 to 1 arguments, got 2"},
		{[]string{"stream", "ls", "--page-size", "1001"}, 2, "--page-size must be 0 to 1000"},
		{[]string{"stream", "ls", "--server", "ftp://x"}, 1, "scheme must be http or https"},
		{[]string{"stream", "ls", "--server", url, "--page-size", "1", "s/bad name"}, 1, "invalid_argument: group_id:"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if tc.code == 0 {
			errs = out + errs
		}
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}

	// `engram help stream` prints the usage on stdout; `engram help` lists
	// the command.
	if code, out, _ := runCLI(t, "help", "stream"); code != 0 || !strings.Contains(out, "update STREAM/GROUP/ITEM [OPS|-]") {
		t.Fatalf("help stream: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "help"); code != 0 || !strings.Contains(out, "stream     get, set, update") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}
