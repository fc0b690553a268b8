package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"engram/client"
	"engram/internal/server"
)

func hitIDs(res *client.SearchResult) []string {
	ids := make([]string, len(res.Hits))
	for i, h := range res.Hits {
		ids[i] = h.ID
	}
	return ids
}

func TestSearch(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)

	units, _, err := c.CreateUnits(ctx, []client.WorkUnitCreate{
		{ContextID: "ops", AgentID: "alice", Type: client.UnitMessage, Payload: json.RawMessage(`"The deploy failed: disk full on db-2"`)},
		{ContextID: "ops", AgentID: "bob", Type: client.UnitPlan, Payload: json.RawMessage(`{"steps":["free disk space","retry the deploy"]}`)},
		{ContextID: "chat", AgentID: "alice", Type: client.UnitMessage, Payload: json.RawMessage(`"lunch first"`), Metadata: map[string]string{"topic": "deploy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetItem(ctx, "tickets", "open", "OPS-1", map[string]any{"title": "Disk full", "n": 1}); err != nil {
		t.Fatal(err)
	}
	// An item write answers no seq: a unit written after it carries one
	// that covers it.
	last, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{ContextID: "chat", AgentID: "bob", Type: client.UnitObservation})
	if err != nil {
		t.Fatal(err)
	}

	res, err := c.Search(ctx, client.SearchQuery{Q: "deploy", Sort: client.SortRecent, Count: true, MinSeq: last.Seq})
	if err != nil {
		t.Fatal(err)
	}
	if got := hitIDs(res); !slices.Equal(got, []string{units[2].ID, units[1].ID, units[0].ID}) || res.Total == nil || *res.Total != 3 || res.IndexedSeq < last.Seq {
		t.Fatalf("recent: %v, total %v, indexed_seq %d", got, res.Total, res.IndexedSeq)
	}
	h := res.Hits[2]
	if h.Kind != client.KindWorkUnit || h.ContextID != "ops" || h.Seq != units[0].Seq || h.Score != 0 || // recent: no score
		h.Snippet != "The <mark>deploy</mark> failed: disk full on db-2" {
		t.Errorf("hit %+v", h)
	}

	res, err = c.Search(ctx, client.SearchQuery{Q: `"disk full"`, Kind: client.KindStreamItem, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 1 || res.Hits[0].ID != "OPS-1" || res.Hits[0].Stream != "tickets" || res.Hits[0].Group != "open" ||
		res.Hits[0].Kind != client.KindStreamItem || res.Total != nil {
		t.Errorf("item: %+v", res)
	}

	for _, tc := range []struct {
		q    client.SearchQuery
		want []string
	}{
		{client.SearchQuery{Q: "deploy", ContextID: "ops", AgentID: "bob"}, []string{units[1].ID}},
		{client.SearchQuery{Q: "deploy OR disk", Type: client.UnitMessage}, []string{units[0].ID, units[2].ID}},
		{client.SearchQuery{Q: "disk", Stream: "tickets"}, []string{"OPS-1"}},
		{client.SearchQuery{Q: "deploy", Sort: client.SortRecent, Limit: 1, Offset: 1}, []string{units[1].ID}},
		{client.SearchQuery{Q: "lun*"}, []string{units[2].ID}},
	} {
		res, err := c.Search(ctx, tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		got := hitIDs(res)
		if tc.q.Sort != client.SortRecent {
			slices.Sort(got)
			slices.Sort(tc.want)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.q, got, tc.want)
		}
	}

	// Bad input is ErrInvalidArgument naming the parameter.
	for q, field := range map[client.SearchQuery]string{
		{}:                                  "q: ",
		{Q: "deploy AND"}:                   "q: ",
		{Q: "x", Limit: 1001}:               "limit: ",
		{Q: "x", Offset: -1}:                "offset: ",
		{Q: "x", Sort: "newest"}:            "sort: ",
		{Q: "x", Kind: "doc"}:               "kind: ",
		{Q: "x", ContextID: "a b"}:          "context_id: ",
		{Q: "x", AgentID: "a", Stream: "s"}: "stream: ",
	} {
		_, err := c.Search(ctx, q)
		var e *client.Error
		if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &e) || !strings.HasPrefix(e.Message, field) {
			t.Errorf("%+v: %v, want invalid_argument %q", q, err, field)
		}
	}
}

func TestSearchLagging(t *testing.T) {
	t.Parallel()
	c := lockServer(t)
	ctx := lockCtx(t)
	u, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{ContextID: "c", AgentID: "a", Type: client.UnitMessage, Payload: json.RawMessage(`"hello"`)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Search(ctx, client.SearchQuery{Q: "hello", MinSeq: u.Seq + 100})
	n, ok := client.SearchLagging(err)
	if !errors.Is(err, client.ErrUnavailable) || !ok || n != u.Seq {
		t.Fatalf("min_seq ahead: %v; SearchLagging %d, %v (want %d)", err, n, ok, u.Seq)
	}
	if _, ok := client.SearchLagging(errors.New("other")); ok {
		t.Error("SearchLagging of another error")
	}
}

func TestReindex(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	var last uint64
	for _, p := range []string{`"alpha beta"`, `"beta gamma"`, `{"x":"gamma delta"}`} {
		u, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{ContextID: "c", AgentID: "a", Type: client.UnitMessage, Payload: json.RawMessage(p)})
		if err != nil {
			t.Fatal(err)
		}
		last = u.Seq
	}
	before, err := c.Search(ctx, client.SearchQuery{Q: "beta OR gamma", MinSeq: last, Count: true})
	if err != nil {
		t.Fatal(err)
	}

	st, err := c.Reindex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rebuilding || st.Reason != "requested over the API" || st.HeadSeq != last || st.StartedAt == nil ||
		time.Since(*st.StartedAt) > time.Minute || st.Done(st.HeadSeq) {
		t.Fatalf("reindex: %+v", st)
	}
	head := st.HeadSeq
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err = c.ReindexStatus(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Done(head) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild not done after 30 s: %+v", st)
		}
	}
	if st.IndexedSeq != head || st.Phase != "" {
		t.Errorf("after: %+v", st)
	}
	after, err := c.Search(ctx, client.SearchQuery{Q: "beta OR gamma", Count: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hitIDs(after), hitIDs(before)) || *after.Total != 3 || *before.Total != 3 {
		t.Errorf("after the rebuild %v (total %d), before %v (total %d)", hitIDs(after), *after.Total, hitIDs(before), *before.Total)
	}
}

// An agent writes a work unit, then finds it by its text: MinSeq makes the
// search wait for the index to hold the write.
func ExampleClient_Search() {
	// An in-process server for the example; a real program passes the
	// server's URL to client.New.
	dir, err := os.MkdirTemp("", "engram-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Sync: "none"})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	c, err := client.New("http://" + srv.Addr())
	if err != nil {
		log.Fatal(err)
	}

	u, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{
		ContextID: "ops", AgentID: "oncall", Type: client.UnitObservation,
		Payload: json.RawMessage(`{"summary": "The deploy failed: disk full on db-2"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Search(ctx, client.SearchQuery{Q: `"disk full" OR deploy*`, ContextID: "ops", MinSeq: u.Seq})
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range res.Hits {
		fmt.Println(h.Kind, h.ID == u.ID, h.Snippet)
	}
	// Output:
	// workunit true The <mark>deploy</mark> failed: <mark>disk full</mark> on db-2
}
