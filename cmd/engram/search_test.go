package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"engram/client"
	"engram/internal/server"
)

// searchData writes work units and stream items through url and returns
// the units and the seq of the last write.
//
//	units[0] ops  alice MESSAGE "The deploy to production failed: disk full on db-2"
//	units[1] ops  bob   PLAN    {"steps": ["free disk space", "retry the deploy"]}
//	units[2] chat alice MESSAGE "lunch first, deploy later"
//	tickets/open/OPS-1 {"title": "Disk full on db-2"}
func searchData(t *testing.T, url string) ([]client.WorkUnit, uint64) {
	t.Helper()
	c, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.SetItem(ctx, "tickets", "open", "OPS-1", map[string]string{"title": "Disk full on db-2"}); err != nil {
		t.Fatal(err)
	}
	units, _, err := c.CreateUnits(ctx, []client.WorkUnitCreate{
		{ContextID: "ops", AgentID: "alice", Type: client.UnitMessage, Payload: json.RawMessage(`"The deploy to production failed: disk full on db-2"`)},
		{ContextID: "ops", AgentID: "bob", Type: client.UnitPlan, Payload: json.RawMessage(`{"steps":["free disk space","retry the deploy"]}`)},
		{ContextID: "chat", AgentID: "alice", Type: client.UnitMessage, Payload: json.RawMessage(`"lunch first, deploy later"`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return units, units[2].Seq
}

func TestSearchCommand(t *testing.T) {
	url := startServer(t)
	units, last := searchData(t, url)
	minSeq := fmt.Sprint(last)

	// One hit, readably: its line, its snippet, the summary.
	code, out, errs := runCLI(t, "search", "--server", url, "--min-seq", minSeq, "production")
	want := fmt.Sprintf("seq %d  workunit %s  context ops  score ", units[0].Seq, units[0].ID)
	if code != 0 || errs != "" || !strings.HasPrefix(out, want) ||
		!strings.HasSuffix(out, "\n    The deploy to **production** failed: disk full on db-2\n1 hit (index complete up to seq "+minSeq+")\n") {
		t.Fatalf("one hit: exit %d, stdout %q (want it to start with %q), stderr %q", code, out, want, errs)
	}

	// A stream item; words of the query joined; flags after them.
	code, out, errs = runCLI(t, "search", `"disk`, `full"`, "--server", url, "--stream", "tickets")
	if code != 0 || !strings.HasPrefix(out, "seq ") || !strings.Contains(out, "  stream_item OPS-1  stream tickets/open  score ") ||
		!strings.Contains(out, "\n    **Disk full** on db-2\n1 hit (") {
		t.Fatalf("item: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// Newest first, a page, and the count of all matches.
	code, out, errs = runCLI(t, "search", "--server", url, "--sort", "recent", "--count", "--limit", "2", "--offset", "1", "deploy")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], fmt.Sprintf("seq %d  workunit %s", units[1].Seq, units[1].ID)) ||
		!strings.HasPrefix(lines[2], fmt.Sprintf("seq %d  workunit %s", units[0].Seq, units[0].ID)) ||
		lines[1] != "    free disk space / retry the **deploy**" || !strings.HasPrefix(lines[4], "hits 2 to 3 of 3 (") {
		t.Fatalf("recent page: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// Filters.
	for _, tc := range []struct {
		args []string
		want []string // ids
	}{
		{[]string{"--context", "ops", "deploy"}, []string{units[0].ID, units[1].ID}},
		{[]string{"--agent", "alice", "--type", "MESSAGE", "deploy"}, []string{units[0].ID, units[2].ID}},
		{[]string{"--kind", "stream_item", "disk"}, []string{"OPS-1"}},
		{[]string{"--kind", "workunit", "lunch OR production"}, []string{units[0].ID, units[2].ID}},
		{[]string{"zebra"}, nil},
	} {
		code, out, errs := runCLI(t, append([]string{"search", "--server", url, "--json", "--sort", "recent"}, tc.args...)...)
		var res client.SearchResult
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", tc.args, code, out, errs)
		}
		var got []string
		for _, h := range res.Hits {
			got = append(got, h.ID)
		}
		if strings.Join(got, ",") != strings.Join(reversed(tc.want), ",") {
			t.Errorf("%q: hits %v, want %v", tc.args, got, reversed(tc.want))
		}
		if len(res.Hits) > 0 && !strings.Contains(out, "<mark>") {
			t.Errorf("%q: the JSON escapes <mark>: %s", tc.args, out)
		}
	}
	if code, out, _ := runCLI(t, "search", "--server", url, "zebra"); code != 0 || !strings.HasPrefix(out, "no hits (index complete up to seq ") {
		t.Errorf("no hits: exit %d, %q", code, out)
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestSearchUsage(t *testing.T) {
	url := startServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (in stdout for help)
	}{
		{[]string{"search", "-h"}, 0, "Usage: engram search [flags] QUERY..."},
		{[]string{"search"}, 2, "want a QUERY"},
		{[]string{"search", "--sort", "newest", "x"}, 2, "--sort must be relevance or recent"},
		{[]string{"search", "--kind", "doc", "x"}, 2, "--kind must be workunit or stream_item"},
		{[]string{"search", "--limit", "1001", "x"}, 2, "--limit must be 0 to 1000"},
		{[]string{"search", "--offset", "-1", "x"}, 2, "--offset must be 0 to 10000"},
		{[]string{"search", "--min-seq", "abc", "x"}, 2, `invalid value "abc" for flag -min-seq`},
		{[]string{"search", "--server", "ftp://x", "x"}, 1, "scheme must be http or https"},
		// The server's messages, exit status 1.
		{[]string{"search", "--server", url, "deploy AND"}, 1, "engram search: engram: 400 invalid_argument: q: syntax error"},
		{[]string{"search", "--server", url, "(deploy"}, 1, "400 invalid_argument: q: syntax error: 1 '(' not closed"},
		{[]string{"search", "--server", url, "foo:bar"}, 1, "q: no such column: foo"},
		{[]string{"search", "--server", url, "--context", "a b", "x"}, 1, `400 invalid_argument: context_id: "a b" must match`},
		{[]string{"search", "--server", url, "--context", "c", "--stream", "s", "x"}, 1, "400 invalid_argument: stream: "},
		{[]string{"reindex", "-h"}, 0, "Usage: engram reindex [flags]"},
		{[]string{"reindex", "extra"}, 2, "want 0 arguments, got 1"},
		{[]string{"reindex", "--data", t.TempDir(), "--server", url}, 2, "--data rebuilds offline: it takes no --server or --token"},
		{[]string{"reindex", "--data", filepath.Join(t.TempDir(), "none")}, 1, "no such file or directory"},
		{[]string{"reindex", "--data", t.TempDir()}, 1, "holds no Engram data"},
		{[]string{"reindex", "--server", "http://127.0.0.1:1"}, 1, "engram reindex: client: POST /v1/admin/reindex: "},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if tc.code == 0 {
			errs = out + errs
		}
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want it to contain %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}
	code, out, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "  search     full-text search") || !strings.Contains(out, "  reindex    rebuild the search index") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}

// fastReindexPoll makes engram reindex poll every 10 ms for the test.
func fastReindexPoll(t *testing.T) {
	old := reindexPoll
	reindexPoll = 10 * time.Millisecond
	t.Cleanup(func() { reindexPoll = old })
}

func TestReindexCommand(t *testing.T) {
	fastReindexPoll(t)
	url := startServer(t)
	_, last := searchData(t, url)
	code, out, errs := runCLI(t, "reindex", "--server", url)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	done := fmt.Sprintf("done: indexed_seq %d, head_seq %d (", last, last)
	if code != 0 || errs != "" || lines[0] != fmt.Sprintf("rebuild requested: head_seq %d", last) ||
		!strings.HasPrefix(lines[len(lines)-1], done) {
		t.Fatalf("exit %d, stdout %q (want it to end with %q), stderr %q", code, out, done, errs)
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, "rebuilding: ") || !strings.Contains(l, fmt.Sprintf("/%d", last)) {
			t.Errorf("progress line %q", l)
		}
	}
	// The rebuilt index answers as before.
	code, out, _ = runCLI(t, "search", "--server", url, "--count", "deploy")
	if code != 0 || !strings.HasSuffix(out, fmt.Sprintf("3 hits of 3 (index complete up to seq %d)\n", last)) {
		t.Fatalf("search after: exit %d, %q", code, out)
	}
}

// TestReindexOffline: engram reindex --data refuses a directory a server
// holds; once the server is stopped it rebuilds the index (here a corrupt
// one), and the next server starts with the whole log indexed.
func TestReindexOffline(t *testing.T) {
	fastReindexPoll(t)
	dir := t.TempDir()
	start := func() *server.Server {
		srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Sync: "none"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	stop := func(srv *server.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv := start()
	units, last := searchData(t, "http://"+srv.Addr())

	code, out, errs := runCLI(t, "reindex", "--data", dir)
	if code != 1 || !strings.Contains(errs, "is a server running on "+dir+"?") {
		t.Fatalf("while the server runs: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	stop(srv)

	// A corrupt index file: the rebuild replaces it.
	if err := os.WriteFile(filepath.Join(dir, "search", "index.db"), []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "reindex", "--data", dir)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errs != "" || lines[0] != fmt.Sprintf("rebuilding %s: head_seq %d", filepath.Join(dir, "search", "index.db"), last) ||
		!strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf("done: indexed_seq %d, head_seq %d (", last, last)) {
		t.Fatalf("offline: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	srv = start()
	defer stop(srv)
	if st := srv.Search().Status(); st.IndexedSeq != last {
		t.Errorf("the next server's index: %+v, want indexed_seq %d at once", st, last)
	}
	c, err := client.New("http://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(context.Background(), client.SearchQuery{Q: "production", MinSeq: last})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].ID != units[0].ID || res.Hits[0].Seq != units[0].Seq {
		t.Fatalf("search after the offline rebuild: %+v, %v", res, err)
	}
}
