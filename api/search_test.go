package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"engram/api"
	"engram/internal/server"
)

type searchHit struct {
	Kind      string  `json:"kind"`
	ID        string  `json:"id"`
	ContextID string  `json:"context_id"`
	Stream    string  `json:"stream"`
	Group     string  `json:"group"`
	Score     float64 `json:"score"`
	Snippet   string  `json:"snippet"`
	Seq       uint64  `json:"seq"`
}

type searchResult struct {
	Hits       []searchHit `json:"hits"`
	Total      *int64      `json:"total"`
	IndexedSeq uint64      `json:"indexed_seq"`
}

// searchFor runs GET /v1/search with the query parameters kv (pairs) and
// min_seq = the head seq, so that the answer holds every write so far.
func searchFor(t *testing.T, srv *server.Server, kv ...string) searchResult {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	v.Set("min_seq", fmt.Sprint(srv.HeadSeq()))
	r := do(t, srv, "GET", "/v1/search?"+v.Encode(), "")
	if r.status != 200 {
		t.Fatalf("search %v: status %d: %s", kv, r.status, r.body)
	}
	var res searchResult
	jsonField(t, r.body, &res)
	if res.IndexedSeq < srv.HeadSeq() {
		t.Fatalf("search %v: indexed_seq %d < min_seq %d", kv, res.IndexedSeq, srv.HeadSeq())
	}
	return res
}

func totalOf(res searchResult) string {
	if res.Total == nil {
		return "none"
	}
	return fmt.Sprint(*res.Total)
}

// hitIDs are the ids of the hits, in answer order.
func hitIDs(res searchResult) []string {
	ids := make([]string, len(res.Hits))
	for i, h := range res.Hits {
		ids[i] = h.ID
	}
	return ids
}

// wantHits checks the ids of a search answer: in order when ordered, else
// as a set.
func wantHits(ordered bool, ids ...string) check {
	return func(t *testing.T, body []byte, x func(string) string) {
		t.Helper()
		var res searchResult
		jsonField(t, body, &res)
		got := hitIDs(res)
		want := make([]string, len(ids))
		for i, id := range ids {
			want[i] = x(id)
		}
		if !ordered {
			slices.Sort(got)
			slices.Sort(want)
		}
		if !slices.Equal(got, want) {
			t.Errorf("hits %v, want %v (body %s)", got, want, body)
		}
	}
}

// wantTotal checks "total": absent for want < 0.
func wantTotal(want int64) check {
	return func(t *testing.T, body []byte, _ func(string) string) {
		t.Helper()
		var res searchResult
		jsonField(t, body, &res)
		switch {
		case want < 0 && res.Total != nil:
			t.Errorf("total %d, want none (body %s)", *res.Total, body)
		case want >= 0 && (res.Total == nil || *res.Total != want):
			t.Errorf("total %v, want %d (body %s)", res.Total, want, body)
		}
	}
}

// newestFirst checks that the hits' seqs strictly decrease.
func newestFirst(t *testing.T, body []byte, _ func(string) string) {
	t.Helper()
	var res searchResult
	jsonField(t, body, &res)
	for i := 1; i < len(res.Hits); i++ {
		if res.Hits[i].Seq >= res.Hits[i-1].Seq {
			t.Errorf("hit %d seq %d after seq %d: not newest first (body %s)", i, res.Hits[i].Seq, res.Hits[i-1].Seq, body)
		}
	}
}

// searchFixture writes, over the REST routes, work units in contexts ops
// and chat and stream items in tickets/open and notes/daily, and returns
// their ids and seqs as scenario variables ({u1}, {u1seq}, ..., {head}).
//
//	u1 ops  alice MESSAGE     "The deploy to production failed: disk full on db-2" {ticket: OPS-42}
//	u2 ops  bob   PLAN        {"steps": ["free disk space on db-2", "retry the deploy"], "n": 2, "note": {"deep": [["quokka nested leaf"]]}}
//	u3 chat alice MESSAGE     "Lunch at noon? The deploy can wait." {mood: hungry}
//	u4 chat bob   OBSERVATION binary payload {sensor: "thermometer reading"}
//	u5 chat bob   TOOL_RESULT 31337 (no text: no document)
//	tickets/open/OPS-42 {"title": "Disk full on db-2", "owner": "alice"}
//	tickets/open/OPS-43 "Rotate the deploy keys"
//	notes/daily/mon     {"text": "standup moved to 10am"}
func searchFixture(t *testing.T, srv *server.Server) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for i, body := range []string{
		`{"context_id":"ops","agent_id":"alice","type":"MESSAGE","payload":"The deploy to production failed: disk full on db-2","metadata":{"ticket":"OPS-42"}}`,
		`{"context_id":"ops","agent_id":"bob","type":"PLAN","payload":{"steps":["free disk space on db-2","retry the deploy"],"n":2,"note":{"deep":[["quokka nested leaf"]]}}}`,
		`{"context_id":"chat","agent_id":"alice","type":"MESSAGE","payload":"Lunch at noon? The deploy can wait.","metadata":{"mood":"hungry"}}`,
		`{"context_id":"chat","agent_id":"bob","type":"OBSERVATION","payload_base64":"AAEC","metadata":{"sensor":"thermometer reading"}}`,
		`{"context_id":"chat","agent_id":"bob","type":"TOOL_RESULT","payload":31337}`,
	} {
		r := do(t, srv, "POST", "/v1/workunits", body)
		if r.status != 201 {
			t.Fatalf("unit %d: %d %s", i+1, r.status, r.body)
		}
		var u unitOut
		jsonField(t, r.body, &u)
		vars[fmt.Sprintf("u%d", i+1)] = u.ID
		vars[fmt.Sprintf("u%dseq", i+1)] = fmt.Sprint(u.Seq)
	}
	for _, it := range []struct{ path, value string }{
		{"tickets/open/OPS-42", `{"title":"Disk full on db-2","owner":"alice"}`},
		{"tickets/open/OPS-43", `"Rotate the deploy keys"`},
		{"notes/daily/mon", `{"text":"standup moved to 10am"}`},
	} {
		if r := do(t, srv, "PUT", "/v1/streams/"+it.path, it.value); r.status != 200 {
			t.Fatalf("put %s: %d %s", it.path, r.status, r.body)
		}
	}
	vars["head"] = fmt.Sprint(srv.HeadSeq())
	return vars
}

func TestSearchScenarios(t *testing.T) {
	srv := newServer(t, 0)
	vars := searchFixture(t, srv)
	const s = "/v1/search?min_seq={head}&"
	bad := func(name, query, field string, more ...string) scenario {
		return scenario{name: name, method: "GET", path: "/v1/search?" + query, wantStatus: 400, wantCode: "invalid_argument",
			wantMsg: append([]string{field + ": "}, more...)}
	}
	scenarios := []scenario{
		// Query syntax.
		{name: "term", method: "GET", path: s + "q=deploy", wantStatus: 200, noWrite: true,
			check: all(wantHits(false, "{u1}", "{u2}", "{u3}", "OPS-43"), wantTotal(-1), contains(`"indexed_seq":`))},
		{name: "term any case", method: "GET", path: s + "q=DEPLOY", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}", "{u3}", "OPS-43")},
		{name: "phrase", method: "GET", path: s + "q=%22disk+full%22", wantStatus: 200, check: wantHits(false, "{u1}", "OPS-42")},
		{name: "prefix", method: "GET", path: s + "q=therm*", wantStatus: 200, check: wantHits(false, "{u4}")},
		{name: "AND", method: "GET", path: s + "q=deploy+AND+disk", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}")},
		{name: "implicit AND", method: "GET", path: s + "q=deploy+disk", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}")},
		{name: "OR", method: "GET", path: s + "q=lunch+OR+standup", wantStatus: 200, check: wantHits(false, "{u3}", "mon")},
		{name: "NOT", method: "GET", path: s + "q=deploy+NOT+disk", wantStatus: 200, check: wantHits(false, "{u3}", "OPS-43")},
		{name: "parentheses", method: "GET", path: s + "q=(lunch+OR+rotate)+AND+deploy", wantStatus: 200, check: wantHits(false, "{u3}", "OPS-43")},
		{name: "no match", method: "GET", path: s + "q=zebra", wantStatus: 200, check: all(body(`{"hits":[],"indexed_seq":{head}}`))},

		// What is indexed.
		{name: "nested string leaf", method: "GET", path: s + "q=quokka", wantStatus: 200,
			check: all(wantHits(false, "{u2}"), contains(`"snippet":"free disk space on db-2\nretry the deploy\n<mark>quokka</mark> nested leaf"`))},
		{name: "unit metadata", method: "GET", path: s + "q=hungry", wantStatus: 200, check: wantHits(false, "{u3}")},
		{name: "metadata of a binary unit", method: "GET", path: s + "q=thermometer", wantStatus: 200, check: wantHits(false, "{u4}")},
		{name: "object keys are not text", method: "GET", path: s + "q=steps+OR+title+OR+owner+OR+sensor", wantStatus: 200, check: wantHits(false)},
		{name: "numbers are not text", method: "GET", path: s + "q=31337", wantStatus: 200, check: wantHits(false)},
		{name: "stream item value", method: "GET", path: s + "q=owner+OR+alice", wantStatus: 200, check: wantHits(false, "OPS-42")},

		// Hit fields.
		{name: "unit hit", method: "GET", path: s + "q=production", wantStatus: 200,
			check: func(t *testing.T, b []byte, x func(string) string) {
				var res searchResult
				jsonField(t, b, &res)
				if len(res.Hits) != 1 {
					t.Fatalf("hits %s", b)
				}
				h := res.Hits[0]
				if h.Kind != "workunit" || h.ID != x("{u1}") || h.ContextID != "ops" || h.Stream != "" || h.Group != "" ||
					fmt.Sprint(h.Seq) != x("{u1seq}") || h.Score <= 0 ||
					h.Snippet != "The deploy to <mark>production</mark> failed: disk full on db-2\nOPS-42" {
					t.Errorf("hit %+v", h)
				}
				if strings.Contains(string(b), `"stream"`) || strings.Contains(string(b), `"total"`) {
					t.Errorf("empty fields in %s", b)
				}
			}},
		{name: "item hit", method: "GET", path: s + "q=rotate", wantStatus: 200,
			check: func(t *testing.T, b []byte, x func(string) string) {
				var res searchResult
				jsonField(t, b, &res)
				if len(res.Hits) != 1 {
					t.Fatalf("hits %s", b)
				}
				h := res.Hits[0]
				if h.Kind != "stream_item" || h.ID != "OPS-43" || h.Stream != "tickets" || h.Group != "open" || h.ContextID != "" ||
					h.Seq == 0 || h.Snippet != "<mark>Rotate</mark> the deploy keys" {
					t.Errorf("hit %+v", h)
				}
				if strings.Contains(string(b), `"context_id"`) {
					t.Errorf("empty context_id in %s", b)
				}
			}},

		// Filters.
		{name: "kind workunit", method: "GET", path: s + "q=deploy&kind=workunit", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}", "{u3}")},
		{name: "kind stream_item", method: "GET", path: s + "q=deploy&kind=stream_item", wantStatus: 200, check: wantHits(false, "OPS-43")},
		{name: "context_id", method: "GET", path: s + "q=deploy&context_id=chat", wantStatus: 200, check: wantHits(false, "{u3}")},
		{name: "context_id unknown", method: "GET", path: s + "q=deploy&context_id=nowhere", wantStatus: 200, check: wantHits(false)},
		{name: "agent_id", method: "GET", path: s + "q=deploy&agent_id=bob", wantStatus: 200, check: wantHits(false, "{u2}")},
		{name: "type", method: "GET", path: s + "q=deploy&type=MESSAGE", wantStatus: 200, check: wantHits(false, "{u1}", "{u3}")},
		{name: "context, agent and type", method: "GET", path: s + "q=deploy&context_id=ops&agent_id=alice&type=MESSAGE&kind=workunit", wantStatus: 200, check: wantHits(false, "{u1}")},
		{name: "stream", method: "GET", path: s + "q=disk+OR+standup&stream=tickets", wantStatus: 200, check: wantHits(false, "OPS-42")},
		{name: "stream other", method: "GET", path: s + "q=disk+OR+standup&stream=notes&kind=stream_item", wantStatus: 200, check: wantHits(false, "mon")},
		{name: "a filter is exact, not a prefix", method: "GET", path: s + "q=deploy&context_id=op", wantStatus: 200, check: wantHits(false)},

		// Order, count and pages.
		{name: "recent", method: "GET", path: s + "q=deploy&sort=recent", wantStatus: 200,
			check: all(wantHits(true, "OPS-43", "{u3}", "{u2}", "{u1}"), newestFirst)},
		{name: "relevance explicit", method: "GET", path: s + "q=deploy&sort=relevance", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}", "{u3}", "OPS-43")},
		{name: "count", method: "GET", path: s + "q=deploy&count=true&limit=1", wantStatus: 200, check: all(wantTotal(4), func(t *testing.T, b []byte, _ func(string) string) {
			var res searchResult
			jsonField(t, b, &res)
			if len(res.Hits) != 1 {
				t.Errorf("%d hits, want 1", len(res.Hits))
			}
		})},
		{name: "count false", method: "GET", path: s + "q=deploy&count=false", wantStatus: 200, check: wantTotal(-1)},
		{name: "count of nothing", method: "GET", path: s + "q=zebra&count=true", wantStatus: 200, check: body(`{"hits":[],"total":0,"indexed_seq":{head}}`)},
		{name: "limit", method: "GET", path: s + "q=deploy&sort=recent&limit=2", wantStatus: 200, check: wantHits(true, "OPS-43", "{u3}")},
		{name: "offset", method: "GET", path: s + "q=deploy&sort=recent&limit=2&offset=2", wantStatus: 200, check: wantHits(true, "{u2}", "{u1}")},
		{name: "offset past the end", method: "GET", path: s + "q=deploy&offset=10000&count=true", wantStatus: 200, check: all(wantHits(false), wantTotal(4))},
		{name: "limit 1000", method: "GET", path: s + "q=deploy&limit=1000", wantStatus: 200, check: wantHits(false, "{u1}", "{u2}", "{u3}", "OPS-43")},
		{name: "empty limit is the default", method: "GET", path: s + "q=deploy&limit=", wantStatus: 200},
		{name: "min_seq 0", method: "GET", path: "/v1/search?q=deploy&min_seq=0", wantStatus: 200},
		{name: "q of 2048 bytes percent-encoded", method: "GET", path: s + "q=" + strings.Repeat("%C3%A9", 1024), wantStatus: 200, check: wantHits(false)},

		// Bad input: 400 naming the parameter, never a 500.
		bad("q missing", "", "q", "required"),
		bad("q blank", "q=+++", "q", "required"),
		bad("q too long", "q="+strings.Repeat("a", 2049), "q", "2049 bytes"),
		bad("q open parenthesis", "q=(deploy+OR+disk", "q", "'(' not closed"),
		bad("q close parenthesis", "q=deploy)+OR+(disk", "q", "')'"),
		bad("q open quote", "q=%22disk+full", "q", "not closed"),
		bad("q dangling AND", "q=hello+AND", "q", "syntax error"),
		bad("q leading NOT", "q=NOT+disk", "q", "syntax error"),
		bad("q unknown column", "q=foo:bar", "q", "no such column: foo"),
		bad("q bare punctuation", "q=c%2B%2B", "q", "syntax error"),
		bad("q bare star", "q=*", "q", "syntax error"),
		bad("q NUL", "q=a%00b", "q", "NUL"),
		bad("kind", "q=x&kind=unit", "kind", `"unit"`),
		bad("sort", "q=x&sort=newest", "sort", `"newest"`),
		bad("limit 0", "q=x&limit=0", "limit", "1..1000"),
		bad("limit 1001", "q=x&limit=1001", "limit", "1..1000"),
		bad("limit abc", "q=x&limit=abc", "limit", `"abc" is not an integer`),
		bad("limit negative", "q=x&limit=-3", "limit"),
		bad("limit fraction", "q=x&limit=2.5", "limit"),
		bad("offset -1", "q=x&offset=-1", "offset", "0..10000"),
		bad("offset 10001", "q=x&offset=10001", "offset", "0..10000"),
		bad("offset abc", "q=x&offset=abc", "offset"),
		bad("min_seq abc", "q=x&min_seq=abc", "min_seq", `"abc" is not an integer`),
		bad("min_seq negative", "q=x&min_seq=-1", "min_seq"),
		bad("min_seq too large", "q=x&min_seq=99999999999999999999999", "min_seq"),
		bad("count", "q=x&count=yes", "count", `"yes"`),
		bad("context_id bad name", "q=x&context_id=a+b", "context_id", "must match"),
		bad("context_id too long", "q=x&context_id="+strings.Repeat("c", 129), "context_id"),
		bad("agent_id bad name", "q=x&agent_id=a%2Fb", "agent_id"),
		bad("type bad name", "q=x&type=MESS%20AGE", "type"),
		bad("stream bad name", "q=x&stream=a%2Fb", "stream"),
		bad("context_id with stream", "q=x&context_id=ops&stream=tickets", "stream", "one or the other"),
		bad("agent_id with stream", "q=x&agent_id=bob&stream=tickets", "stream"),
		bad("stream_item with context_id", "q=x&kind=stream_item&context_id=ops", "kind"),
		bad("workunit with stream", "q=x&kind=workunit&stream=tickets", "kind"),
		{name: "search wrong method", method: "POST", path: "/v1/search?q=x", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "reindex wrong method", method: "PUT", path: "/v1/admin/reindex", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "reindex unknown field", method: "POST", path: "/v1/admin/reindex", body: `{"now":true}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"now: unknown field"}},
	}
	run(t, srv, vars, scenarios)

	// The same queries answer the same after a rebuild from storage.
	queries := [][]string{
		{"q", "deploy"}, {"q", "deploy", "sort", "recent"}, {"q", "\"disk full\""}, {"q", "quokka"},
		{"q", "deploy", "context_id", "ops"}, {"q", "disk", "stream", "tickets"}, {"q", "deploy", "count", "true", "limit", "1"},
	}
	before := make([]searchResult, len(queries))
	for i, q := range queries {
		before[i] = searchFor(t, srv, q...)
	}
	reindex(t, srv)
	for i, q := range queries {
		after := searchFor(t, srv, q...)
		a, _ := json.Marshal(after.Hits)
		b, _ := json.Marshal(before[i].Hits)
		if string(a) != string(b) || totalOf(after) != totalOf(before[i]) {
			t.Errorf("%v after the rebuild: total %s\n%s\nbefore: total %s\n%s", q, totalOf(after), a, totalOf(before[i]), b)
		}
	}
}

type reindexStatus struct {
	IndexedSeq uint64  `json:"indexed_seq"`
	HeadSeq    uint64  `json:"head_seq"`
	Rebuilding bool    `json:"rebuilding"`
	Reason     string  `json:"reason"`
	Phase      string  `json:"phase"`
	StartedAt  *string `json:"started_at"`
}

// reindex asks for a rebuild over the API and polls its status until the
// index has caught up with the log again.
func reindex(t *testing.T, srv *server.Server) {
	t.Helper()
	head := srv.HeadSeq()
	r := do(t, srv, "POST", "/v1/admin/reindex", "")
	if r.status != 202 {
		t.Fatalf("POST /v1/admin/reindex: %d %s", r.status, r.body)
	}
	var st reindexStatus
	jsonField(t, r.body, &st)
	if !st.Rebuilding || st.Reason != "requested over the API" || st.HeadSeq != head || st.StartedAt == nil {
		t.Fatalf("reindex answer %s", r.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, *st.StartedAt); err != nil || !strings.HasSuffix(*st.StartedAt, "Z") || len(*st.StartedAt) != len("2026-11-22T10:00:00.123456789Z") {
		t.Errorf("started_at %q is not RFC 3339 UTC with nanoseconds", *st.StartedAt)
	}
	if srv.HeadSeq() != head {
		t.Errorf("reindex wrote to the log: head %d -> %d", head, srv.HeadSeq())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, srv, "GET", "/v1/admin/reindex", "")
		if r.status != 200 {
			t.Fatalf("GET /v1/admin/reindex: %d %s", r.status, r.body)
		}
		var st reindexStatus
		jsonField(t, r.body, &st)
		if !st.Rebuilding && st.IndexedSeq == st.HeadSeq {
			if st.Reason != "requested over the API" || st.Phase != "" || st.HeadSeq != head {
				t.Errorf("status after the rebuild: %s", r.body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild not done after 30 s: %s", r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSearchChanges: an item's update replaces its text, a delete removes
// it, and a value without text leaves no document.
func TestSearchChanges(t *testing.T) {
	srv := newServer(t, 0)
	searchFixture(t, srv)
	ids := func(kv ...string) []string {
		t.Helper()
		got := hitIDs(searchFor(t, srv, kv...))
		slices.Sort(got)
		return got
	}
	if got := ids("q", "rotate"); !slices.Equal(got, []string{"OPS-43"}) {
		t.Fatalf("before: %v", got)
	}

	do(t, srv, "PUT", "/v1/streams/tickets/open/OPS-43", `{"title":"Renew the signing certificates"}`)
	if got := ids("q", "rotate OR keys"); len(got) != 0 {
		t.Errorf("old text still found after the update: %v", got)
	}
	res := searchFor(t, srv, "q", "certificates")
	if len(res.Hits) != 1 || res.Hits[0].ID != "OPS-43" || res.Hits[0].Seq != srv.HeadSeq() {
		t.Errorf("after the update: %+v (head %d)", res.Hits, srv.HeadSeq())
	}
	if got := ids("q", "deploy", "kind", "stream_item"); len(got) != 0 {
		t.Errorf("deploy still in an item: %v", got)
	}

	// A patch is an update too.
	if r := do(t, srv, "PATCH", "/v1/streams/tickets/open/OPS-43", `{"ops":[{"type":"set","path":"title","value":"Renew the TLS certificates"}]}`); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if got := ids("q", "signing"); len(got) != 0 {
		t.Errorf("text before the patch still found: %v", got)
	}
	if got := ids("q", "tls"); !slices.Equal(got, []string{"OPS-43"}) {
		t.Errorf("patched text: %v", got)
	}

	// A value without text: the item has no document.
	do(t, srv, "PUT", "/v1/streams/tickets/open/OPS-43", `7`)
	if got := ids("q", "tls OR certificates"); len(got) != 0 {
		t.Errorf("found after a value without text: %v", got)
	}

	do(t, srv, "DELETE", "/v1/streams/notes/daily/mon", "")
	if got := ids("q", "standup"); len(got) != 0 {
		t.Errorf("found after the delete: %v", got)
	}
	// Put back, it is found again, once.
	do(t, srv, "PUT", "/v1/streams/notes/daily/mon", `["standup", "standup again"]`)
	if got := ids("q", "standup", "count", "true"); !slices.Equal(got, []string{"mon"}) {
		t.Errorf("after the put back: %v", got)
	}
	if got := ids("q", "disk", "kind", "stream_item"); !slices.Equal(got, []string{"OPS-42"}) {
		t.Errorf("other items: %v", got)
	}
}

// TestSearchLag: a min_seq the index does not reach within 5 s is 503
// unavailable with the index's seq in the details.
func TestSearchLag(t *testing.T) {
	t.Parallel()
	srv := newServer(t, 0)
	searchFixture(t, srv)
	head := srv.HeadSeq()
	start := time.Now()
	run(t, srv, map[string]string{"head": fmt.Sprint(head), "ahead": fmt.Sprint(head + 1000)}, []scenario{
		{name: "min_seq ahead", method: "GET", path: "/v1/search?q=deploy&min_seq={ahead}", wantStatus: 503, wantCode: "unavailable",
			wantMsg: []string{"min_seq {ahead}", "seq {head}"},
			check: func(t *testing.T, b []byte, x func(string) string) {
				var e struct {
					Error struct {
						Details map[string]any `json:"details"`
					} `json:"error"`
				}
				jsonField(t, b, &e)
				if d := e.Error.Details; fmt.Sprint(d["indexed_seq"]) != x("{head}") || fmt.Sprint(d["min_seq"]) != x("{ahead}") || len(d) != 2 {
					t.Errorf("details %v", d)
				}
			}},
	})
	if d := time.Since(start); d < 4900*time.Millisecond {
		t.Errorf("answered after %v, want the 5 s wait", d)
	}
}

// TestSearchClosed: an index that is closed answers 503 unavailable.
func TestSearchClosed(t *testing.T) {
	srv := newServer(t, 0)
	searchFixture(t, srv)
	searchFor(t, srv, "q", "deploy")
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, srv, nil, []scenario{
		{name: "search", method: "GET", path: "/v1/search?q=deploy", wantStatus: 503, wantCode: "unavailable", wantMsg: []string{"search"}},
		{name: "bad input is still 400", method: "GET", path: "/v1/search?q=deploy&limit=0", wantStatus: 400, wantCode: "invalid_argument"},
		{name: "status", method: "GET", path: "/v1/admin/reindex", wantStatus: 200},
	})
}

// TestSearchNotConfigured: without an index the search routes are unknown.
func TestSearchNotConfigured(t *testing.T) {
	srv := newServer(t, 0)
	app := api.New(srv.Engine(), api.Config{}, nil)
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/search?q=x"}, {"POST", "/v1/admin/reindex"}, {"GET", "/v1/admin/reindex"},
	} {
		resp, err := app.Test(httptest.NewRequest(r.method, r.path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s %s: %d, want 404", r.method, r.path, resp.StatusCode)
		}
	}
}
