package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"engram/api"
	"engram/internal/engine"
	"engram/internal/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp keeps one process-wide goroutine that refreshes the Date
		// header; it is started once and never stopped.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// After a listener's shutdown, its worker pool's cleaner notices the
		// stop only when its idle sleep (10 s) ends (TestBodyLimit).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// newServer builds a server over a temp dir without listening; it is shut
// down when the test ends.
func newServer(t *testing.T, maxBody int64) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Sync: "none", MaxBody: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request through app.Test.
func do(t *testing.T, srv *server.Server, method, path, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// checkErrorBody asserts the contract's error shape: exactly
// {"error":{"code","message","details":{}}} as application/json.
func checkErrorBody(t *testing.T, r response, wantCode string, wantMsg []string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &outer); err != nil {
		t.Fatalf("error body %q is not a JSON object: %v", r.body, err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("error body %s: want exactly one key \"error\"", r.body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		t.Fatalf("error body %s: error is not an object", r.body)
	}
	keys := make([]string, 0, len(inner))
	for k := range inner {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"code", "details", "message"}) {
		t.Errorf("error body %s: keys %v, want code, details, message", r.body, keys)
	}
	var e struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	}
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Details == nil {
		t.Errorf("error body %s: details is not an object", r.body)
	}
	if e.Code != wantCode {
		t.Errorf("code %q, want %q (body %s)", e.Code, wantCode, r.body)
	}
	if e.Message == "" {
		t.Errorf("empty message: %s", r.body)
	}
	for _, s := range wantMsg {
		if !strings.Contains(e.Message, s) {
			t.Errorf("message %q does not contain %q", e.Message, s)
		}
	}
}

// A check inspects a 2xx body; x expands the scenario variables.
type check func(t *testing.T, body []byte, x func(string) string)

type scenario struct {
	name       string
	method     string
	path       string
	body       string
	wantStatus int
	wantCode   string   // error code, for non-2xx
	wantMsg    []string // substrings of the error message
	noWrite    bool     // a 2xx that must not commit anything
	check      check
	skip       string
}

// run runs the scenarios in order against srv. In paths and bodies, every
// key of vars in braces is replaced by its value.
func run(t *testing.T, srv *server.Server, vars map[string]string, scenarios []scenario) {
	t.Helper()
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	repl := strings.NewReplacer(pairs...)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.skip != "" {
				t.Skip(sc.skip)
			}
			before := srv.HeadSeq()
			r := do(t, srv, sc.method, repl.Replace(sc.path), repl.Replace(sc.body))
			if r.status != sc.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body %s", sc.method, sc.path, r.status, sc.wantStatus, r.body)
			}
			if r.status >= 400 {
				msgs := make([]string, len(sc.wantMsg))
				for i, m := range sc.wantMsg {
					msgs[i] = repl.Replace(m)
				}
				checkErrorBody(t, r, sc.wantCode, msgs)
				if after := srv.HeadSeq(); after != before {
					t.Errorf("bad input changed the log: head seq %d -> %d", before, after)
				}
			} else {
				if sc.noWrite && srv.HeadSeq() != before {
					t.Errorf("head seq %d -> %d, want no write", before, srv.HeadSeq())
				}
				if sc.method != http.MethodHead && sc.path != "/metrics" && sc.path != "/v1/openapi.yaml" {
					if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
						t.Errorf("Content-Type %q, want application/json", ct)
					}
					if !json.Valid(r.body) {
						t.Errorf("body is not JSON: %s", r.body)
					}
				}
			}
			if sc.check != nil {
				sc.check(t, r.body, repl.Replace)
			}
		})
	}
}

func jsonField(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
}

type unitOut struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	ContextID string `json:"context_id"`
	AgentID   string `json:"agent_id"`
	Type      string `json:"type"`
}

type unitList struct {
	Units      []unitOut `json:"units"`
	NextCursor *string   `json:"next_cursor"`
}

func wantUnits(ids ...string) check {
	return func(t *testing.T, body []byte, x func(string) string) {
		t.Helper()
		var l unitList
		jsonField(t, body, &l)
		got := make([]string, len(l.Units))
		for i, u := range l.Units {
			got[i] = u.ID
		}
		want := make([]string, len(ids))
		for i, id := range ids {
			want[i] = x(id)
		}
		if !slices.Equal(got, want) {
			t.Errorf("units %v, want %v", got, want)
		}
	}
}

func hasNext(want bool) check {
	return func(t *testing.T, body []byte, _ func(string) string) {
		t.Helper()
		var l struct {
			NextCursor *string `json:"next_cursor"`
		}
		jsonField(t, body, &l)
		if (l.NextCursor != nil) != want {
			t.Errorf("next_cursor = %v, want present=%v (%s)", l.NextCursor, want, body)
		}
	}
}

func all(fs ...check) check {
	return func(t *testing.T, body []byte, x func(string) string) {
		t.Helper()
		for _, f := range fs {
			f(t, body, x)
		}
	}
}

func contains(subs ...string) check {
	return func(t *testing.T, body []byte, x func(string) string) {
		t.Helper()
		for _, s := range subs {
			if s = x(s); !bytes.Contains(body, []byte(s)) {
				t.Errorf("body %s does not contain %s", body, s)
			}
		}
	}
}

// fixture writes, through the engine, context c1 with units u1 (MESSAGE by
// a1) and u2 (PLAN by a2, CAUSES u1), and u3 in context c2.
func fixture(t *testing.T, srv *server.Server) map[string]string {
	t.Helper()
	eng := srv.Engine()
	ctx := context.Background()
	name := "Chat one"
	if _, err := eng.CreateContext(ctx, engine.ContextInput{ID: "c1", DisplayName: &name, AgentIDs: []string{"a1"}, Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	res, err := eng.CreateUnits(ctx, []engine.UnitInput{
		{ContextID: "c1", AgentID: "a1", Type: "MESSAGE", Payload: json.RawMessage(`{"text":"hi"}`)},
		{ContextID: "c2", AgentID: "a1", Type: "MESSAGE"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var u1, u3 unitOut
	jsonField(t, res.Units[0], &u1)
	jsonField(t, res.Units[1], &u3)
	res, err = eng.CreateUnit(ctx, &engine.UnitInput{ContextID: "c1", AgentID: "a2", Type: "PLAN",
		Relationships: []engine.RelationshipInput{{TargetID: u1.ID, Type: "CAUSES"}}})
	if err != nil {
		t.Fatal(err)
	}
	var u2 unitOut
	jsonField(t, res.Units[0], &u2)
	return map[string]string{
		"u1": u1.ID, "u2": u2.ID, "u3": u3.ID,
		"u1lower": strings.ToLower(u1.ID),
		"unknown": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"idem":    "01J00000000000000000000ABC",
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	b.WriteString("}")
	return b.String()
}

func batchOf(n int) string {
	units := make([]string, n)
	for i := range units {
		units[i] = `{"context_id":"big","agent_id":"a","type":"MESSAGE"}`
	}
	return `{"units":[` + strings.Join(units, ",") + `]}`
}

func TestScenarios(t *testing.T) {
	srv := newServer(t, 0)
	vars := fixture(t, srv)
	const unit = `{"context_id":"c1","agent_id":"a1","type":"MESSAGE"`
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)

	scenarios := []scenario{
		// Operations.
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200, check: contains(`{"status":"ok"}`)},
		{name: "readyz", method: "GET", path: "/readyz", wantStatus: 200, check: contains(`{"status":"ready"}`)},
		{name: "openapi", method: "GET", path: "/v1/openapi.yaml", wantStatus: 200, check: contains("openapi: 3.1.0")},
		{name: "pprof is not served", method: "GET", path: "/debug/pprof/", wantStatus: 404, wantCode: "not_found"},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"no route for GET /"}},
		{name: "unknown route", method: "GET", path: "/v1/nothing", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"/v1/nothing"}},
		{name: "unknown version", method: "POST", path: "/v2/workunits", body: unit + "}", wantStatus: 404, wantCode: "not_found"},
		{name: "healthz wrong method", method: "POST", path: "/healthz", wantStatus: 404, wantCode: "not_found"},
		{name: "readyz wrong method", method: "DELETE", path: "/readyz", wantStatus: 404, wantCode: "not_found"},
		{name: "metrics wrong method", method: "POST", path: "/metrics", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "openapi wrong method", method: "PUT", path: "/v1/openapi.yaml", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "head of a GET route", method: "HEAD", path: "/v1/contexts", wantStatus: 200},

		// Contexts.
		{name: "create context", method: "POST", path: "/v1/contexts", body: `{"id":"new1","display_name":"New <1>","agent_ids":["a","b","a"],"metadata":{"x":"y"}}`,
			wantStatus: 201, check: contains(`"id":"new1"`, `"agent_ids":["a","b"]`, `"metadata":{"x":"y"}`, `"pinned_units":[]`)},
		{name: "create context no body", method: "POST", path: "/v1/contexts", wantStatus: 201, check: contains(`"agent_ids":[]`)},
		{name: "create context empty object", method: "POST", path: "/v1/contexts", body: `{}`, wantStatus: 201},
		{name: "create context null body", method: "POST", path: "/v1/contexts", body: `null`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: "}},
		{name: "create context conflict", method: "POST", path: "/v1/contexts", body: `{"id":"new1"}`, wantStatus: 409, wantCode: "conflict", wantMsg: []string{`"new1"`}},
		{name: "create context bad id", method: "POST", path: "/v1/contexts", body: `{"id":"has space"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: "}},
		{name: "create context unknown field", method: "POST", path: "/v1/contexts", body: `{"id":"x1","colour":"red"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"colour: unknown field"}},
		{name: "create context wrong type", method: "POST", path: "/v1/contexts", body: `{"id":5}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: expected a string"}},
		{name: "create context metadata type", method: "POST", path: "/v1/contexts", body: `{"metadata":{"k":1}}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"metadata"}},
		{name: "create context truncated", method: "POST", path: "/v1/contexts", body: `{"id":`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: truncated JSON"}},
		{name: "create context malformed", method: "POST", path: "/v1/contexts", body: `{id:1}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: malformed JSON"}},
		{name: "create context array", method: "POST", path: "/v1/contexts", body: `[]`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: expected a JSON object"}},
		{name: "create context trailing data", method: "POST", path: "/v1/contexts", body: `{"id":"x2"} {"id":"x3"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: unexpected data"}},
		{name: "create context too deep", method: "POST", path: "/v1/contexts", body: `{"agent_ids":` + deep + `}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"nested deeper than 64"}},
		{name: "create context bad agent", method: "POST", path: "/v1/contexts", body: `{"agent_ids":["ok","no way"]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"agent_ids[1]: "}},
		{name: "create context long display name", method: "POST", path: "/v1/contexts", body: `{"display_name":"` + strings.Repeat("d", 257) + `"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"display_name: "}},
		{name: "create context 65 metadata keys", method: "POST", path: "/v1/contexts", body: `{"metadata":` + manyKeys(65) + `}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"metadata: 65 keys"}},
		{name: "contexts wrong method", method: "DELETE", path: "/v1/contexts", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"DELETE /v1/contexts"}},
		{name: "contexts put", method: "PUT", path: "/v1/contexts", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "list contexts", method: "GET", path: "/v1/contexts", wantStatus: 200, check: all(hasNext(false), contains(`"id":"c1"`, `"id":"c2"`, `"id":"new1"`))},
		{name: "list contexts page", method: "GET", path: "/v1/contexts?limit=1", wantStatus: 200, check: all(hasNext(true), contains(`"contexts":[{`))},
		{name: "list contexts limit 1000", method: "GET", path: "/v1/contexts?limit=1000", wantStatus: 200},
		{name: "list contexts limit too big", method: "GET", path: "/v1/contexts?limit=1001", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit: "}},
		{name: "list contexts limit negative", method: "GET", path: "/v1/contexts?limit=-1", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit: "}},
		{name: "list contexts limit zero", method: "GET", path: "/v1/contexts?limit=0", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit: "}},
		{name: "list contexts limit not a number", method: "GET", path: "/v1/contexts?limit=ten", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{`limit: "ten" is not an integer`}},
		{name: "list contexts bad cursor", method: "GET", path: "/v1/contexts?cursor=nonsense!", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"cursor: "}},
		{name: "get context", method: "GET", path: "/v1/contexts/c1", wantStatus: 200, check: contains(`"display_name":"Chat one"`, `"metadata":{"k":"v"}`)},
		{name: "get auto context", method: "GET", path: "/v1/contexts/c2", wantStatus: 200, check: contains(`"display_name":"c2"`, `"agent_ids":["a1"]`)},
		{name: "get context unknown", method: "GET", path: "/v1/contexts/nope", wantStatus: 404, wantCode: "not_found", wantMsg: []string{`"nope"`}},
		{name: "get context bad id", method: "GET", path: "/v1/contexts/bad%20id", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: "}},
		{name: "context wrong method", method: "DELETE", path: "/v1/contexts/c1", wantStatus: 404, wantCode: "not_found"},
		{name: "context post", method: "POST", path: "/v1/contexts/c1", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "patch context", method: "PATCH", path: "/v1/contexts/c1", body: `{"display_name":"Renamed","metadata":{"k":null,"n":"1"},"add_agents":["a9"],"pin":["{u1lower}"]}`,
			wantStatus: 200, check: contains(`"display_name":"Renamed"`, `"metadata":{"n":"1"}`, `"agent_ids":["a1","a9"]`, `"pinned_units":["{u1}"]`)},
		{name: "patch context no-op", method: "PATCH", path: "/v1/contexts/c1", body: `{}`, wantStatus: 200, noWrite: true, check: contains(`"display_name":"Renamed"`)},
		{name: "patch context same values", method: "PATCH", path: "/v1/contexts/c1", body: `{"display_name":"Renamed","pin":["{u1}"],"remove_agents":["zz"]}`, wantStatus: 200, noWrite: true},
		{name: "patch context empty body", method: "PATCH", path: "/v1/contexts/c1", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: empty"}},
		{name: "patch context unknown", method: "PATCH", path: "/v1/contexts/nope", body: `{"display_name":"x"}`, wantStatus: 404, wantCode: "not_found"},
		{name: "patch context bad id", method: "PATCH", path: "/v1/contexts/a%20b", body: `{}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: "}},
		{name: "patch context pin other context", method: "PATCH", path: "/v1/contexts/c1", body: `{"pin":["{u3}"]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"pin[0]: ", `"c2"`}},
		{name: "patch context pin unknown unit", method: "PATCH", path: "/v1/contexts/c1", body: `{"pin":["{u1}","{unknown}"]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"pin[1]: "}},
		{name: "patch context pin bad id", method: "PATCH", path: "/v1/contexts/c1", body: `{"pin":["x"]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"pin[0]: "}},
		{name: "patch context metadata type", method: "PATCH", path: "/v1/contexts/c1", body: `{"metadata":{"k":1}}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"metadata"}},
		{name: "patch context metadata over limit", method: "PATCH", path: "/v1/contexts/c1", body: `{"metadata":` + manyKeys(64) + `}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"metadata: the patch leaves 65 keys"}},
		{name: "patch context unknown field", method: "PATCH", path: "/v1/contexts/c1", body: `{"name":"x"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"name: unknown field"}},
		{name: "patch context bad agent", method: "PATCH", path: "/v1/contexts/c1", body: `{"remove_agents":["a/b"]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"remove_agents[0]: "}},
		{name: "context after patches", method: "GET", path: "/v1/contexts/c1", wantStatus: 200, check: contains(`"display_name":"Renamed"`, `"metadata":{"n":"1"}`)},

		// Work units.
		{name: "create unit", method: "POST", path: "/v1/workunits", body: `{"id":"{idem}","context_id":"c1","agent_id":"a1","type":"TOOL_CALL","metadata":{"tool":"search"},"payload":{"q":"x","n":1}}`,
			wantStatus: 201, check: contains(`"id":"{idem}"`, `"payload":{"q":"x","n":1}`, `"relationships":[]`)},
		{name: "create unit retry", method: "POST", path: "/v1/workunits", body: `{"payload":{"n":1,"q":"x"},"type":"TOOL_CALL","agent_id":"a1","context_id":"c1","id":"01j00000000000000000000abc","metadata":{"tool":"search"}}`,
			wantStatus: 200, noWrite: true, check: contains(`"id":"{idem}"`, `"payload":{"q":"x","n":1}`)},
		{name: "create unit conflict", method: "POST", path: "/v1/workunits", body: `{"id":"{idem}","context_id":"c1","agent_id":"a1","type":"TOOL_CALL","metadata":{"tool":"search"},"payload":{"q":"y","n":1}}`,
			wantStatus: 409, wantCode: "conflict", wantMsg: []string{"id: ", "{idem}"}},
		{name: "create unit new context", method: "POST", path: "/v1/workunits", body: `{"context_id":"c3","agent_id":"z","type":"OBSERVATION","payload_base64":"AAEC"}`,
			wantStatus: 201, check: contains(`"payload_base64":"AAEC"`)},
		{name: "auto context exists", method: "GET", path: "/v1/contexts/c3", wantStatus: 200, check: contains(`"agent_ids":["z"]`)},
		{name: "create unit no type", method: "POST", path: "/v1/workunits", body: `{"context_id":"c1","agent_id":"a1"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"type: required"}},
		{name: "create unit bad type", method: "POST", path: "/v1/workunits", body: `{"context_id":"c1","agent_id":"a1","type":"FOO"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{`type: unknown work unit type "FOO"`}},
		{name: "create unit no context", method: "POST", path: "/v1/workunits", body: `{"agent_id":"a1","type":"MESSAGE"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"context_id: required"}},
		{name: "create unit bad agent", method: "POST", path: "/v1/workunits", body: `{"context_id":"c1","agent_id":"a 1","type":"MESSAGE"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"agent_id: "}},
		{name: "create unit bad id", method: "POST", path: "/v1/workunits", body: unit + `,"id":"nope"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: "}},
		{name: "create unit unknown field", method: "POST", path: "/v1/workunits", body: unit + `,"extra":true}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"extra: unknown field"}},
		{name: "create unit type error", method: "POST", path: "/v1/workunits", body: `{"context_id":"c1","agent_id":"a1","type":7}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"type: expected a string"}},
		{name: "create unit both payloads", method: "POST", path: "/v1/workunits", body: unit + `,"payload":1,"payload_base64":"AA=="}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"payload_base64: "}},
		{name: "create unit bad base64", method: "POST", path: "/v1/workunits", body: unit + `,"payload_base64":"%%%"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"payload_base64: "}},
		{name: "create unit null payload", method: "POST", path: "/v1/workunits", body: unit + `,"payload":null,"payload_base64":"AA=="}`, wantStatus: 201},
		{name: "create unit unknown target", method: "POST", path: "/v1/workunits", body: unit + `,"relationships":[{"target_id":"{unknown}","type":"CAUSES"}]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"relationships[0].target_id: "}},
		{name: "create unit bad relationship type", method: "POST", path: "/v1/workunits", body: unit + `,"relationships":[{"target_id":"{u1}","type":"LIKES"}]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"relationships[0].type: "}},
		{name: "create unit 65 metadata keys", method: "POST", path: "/v1/workunits", body: unit + `,"metadata":` + manyKeys(65) + `}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"metadata: 65 keys"}},
		{name: "create unit empty body", method: "POST", path: "/v1/workunits", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"body: empty"}},
		{name: "create unit deep payload", method: "POST", path: "/v1/workunits", body: unit + `,"payload":` + deep + `}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"nested deeper"}},
		{name: "workunits wrong method", method: "GET", path: "/v1/workunits", wantStatus: 404, wantCode: "not_found"},

		// Batches.
		{name: "batch", method: "POST", path: "/v1/workunits/batch", body: `{"units":[` + unit + `},{"id":"01J00000000000000000000BBB","context_id":"c1","agent_id":"a2","type":"PLAN","relationships":[{"target_id":"{u1}","type":"REFERENCES"}]}]}`,
			wantStatus: 201, check: func(t *testing.T, body []byte, _ func(string) string) {
				var l unitList
				jsonField(t, body, &l)
				if len(l.Units) != 2 || l.Units[1].Seq != l.Units[0].Seq+1 || l.Units[1].ID != "01J00000000000000000000BBB" {
					t.Errorf("batch answer %s", body)
				}
			}},
		{name: "batch retry", method: "POST", path: "/v1/workunits/batch", body: `{"units":[{"id":"01J00000000000000000000BBB","context_id":"c1","agent_id":"a2","type":"PLAN","relationships":[{"target_id":"{u1lower}","type":"REFERENCES","metadata":{}}]}]}`,
			wantStatus: 200, noWrite: true},
		{name: "batch empty", method: "POST", path: "/v1/workunits/batch", body: `{"units":[]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units: empty"}},
		{name: "batch no units", method: "POST", path: "/v1/workunits/batch", body: `{}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units: "}},
		{name: "batch too many", method: "POST", path: "/v1/workunits/batch", body: batchOf(1001), wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units: 1001 units, at most 1000"}},
		{name: "batch bad unit", method: "POST", path: "/v1/workunits/batch", body: `{"units":[` + unit + `},` + unit + `},` + unit + `},{"context_id":"c1","agent_id":"a1","type":"FOO"}]}`,
			wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{`units[3].type: unknown work unit type "FOO"`}},
		{name: "batch atomic", method: "POST", path: "/v1/workunits/batch", body: `{"units":[{"context_id":"atomic","agent_id":"a","type":"MESSAGE"},{"context_id":"atomic","agent_id":"a","type":"MESSAGE","relationships":[{"target_id":"{unknown}","type":"CAUSES"}]}]}`,
			wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units[1].relationships[0].target_id: "}},
		{name: "batch atomic left no context", method: "GET", path: "/v1/contexts/atomic", wantStatus: 404, wantCode: "not_found"},
		{name: "batch conflict", method: "POST", path: "/v1/workunits/batch", body: `{"units":[` + unit + `},{"id":"{idem}","context_id":"c1","agent_id":"a1","type":"TOOL_CALL"}]}`,
			wantStatus: 409, wantCode: "conflict", wantMsg: []string{"units[1].id: "}},
		{name: "batch unknown field", method: "POST", path: "/v1/workunits/batch", body: `{"units":[` + unit + `}],"atomic":true}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"atomic: unknown field"}},
		{name: "batch units not array", method: "POST", path: "/v1/workunits/batch", body: `{"units":{}}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units: expected an array"}},
		{name: "batch type error names path", method: "POST", path: "/v1/workunits/batch", body: `{"units":[{"type":1}]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"units[0].type: expected a string"}},
		{name: "batch wrong method", method: "PUT", path: "/v1/workunits/batch", body: `{}`, wantStatus: 404, wantCode: "not_found"},

		// Reading units.
		{name: "get unit", method: "GET", path: "/v1/workunits/{u1}", wantStatus: 200, check: contains(`"id":"{u1}"`, `"payload":{"text":"hi"}`)},
		{name: "get unit lowercase", method: "GET", path: "/v1/workunits/{u1lower}", wantStatus: 200, check: contains(`"id":"{u1}"`)},
		{name: "get unit unknown", method: "GET", path: "/v1/workunits/{unknown}", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"{unknown}"}},
		{name: "get unit bad id", method: "GET", path: "/v1/workunits/not-a-ulid", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: ", "not a ULID"}},
		{name: "unit wrong method", method: "DELETE", path: "/v1/workunits/{u1}", wantStatus: 404, wantCode: "not_found"},
		{name: "unit patch", method: "PATCH", path: "/v1/workunits/{u1}", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "list units", method: "GET", path: "/v1/contexts/c3/workunits", wantStatus: 200, check: all(hasNext(false), contains(`"type":"OBSERVATION"`))},
		{name: "list units asc", method: "GET", path: "/v1/contexts/c1/workunits?order=asc&limit=2", wantStatus: 200, check: all(wantUnits("{u1}", "{u2}"), hasNext(true))},
		{name: "list units desc before", method: "GET", path: "/v1/contexts/c1/workunits?before={u2}", wantStatus: 200, check: wantUnits("{u1}")},
		{name: "list units after", method: "GET", path: "/v1/contexts/c1/workunits?order=asc&after={u1}&limit=1", wantStatus: 200, check: wantUnits("{u2}")},
		{name: "list units type", method: "GET", path: "/v1/contexts/c1/workunits?type=PLAN&agent_id=a2&order=asc", wantStatus: 200, check: all(contains(`"id":"{u2}"`), hasNext(false))},
		{name: "list units agent", method: "GET", path: "/v1/contexts/c1/workunits?agent_id=nobody", wantStatus: 200, check: wantUnits()},
		{name: "list units bad order", method: "GET", path: "/v1/contexts/c1/workunits?order=up", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"order: "}},
		{name: "list units bad type", method: "GET", path: "/v1/contexts/c1/workunits?type=FOO", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"type: "}},
		{name: "list units bad agent", method: "GET", path: "/v1/contexts/c1/workunits?agent_id=a%2Fb", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"agent_id: "}},
		{name: "list units bad before", method: "GET", path: "/v1/contexts/c1/workunits?before=x", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"before: "}},
		{name: "list units unknown after", method: "GET", path: "/v1/contexts/c1/workunits?after={unknown}", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"after: "}},
		{name: "list units bad limit", method: "GET", path: "/v1/contexts/c1/workunits?limit=5000", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit: "}},
		{name: "list units bad cursor", method: "GET", path: "/v1/contexts/c1/workunits?cursor=abc", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"cursor: "}},
		{name: "list units unknown context", method: "GET", path: "/v1/contexts/nope/workunits", wantStatus: 404, wantCode: "not_found"},
		{name: "list units bad context", method: "GET", path: "/v1/contexts/a%20b/workunits", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"context_id: "}},
		{name: "list units wrong method", method: "POST", path: "/v1/contexts/c1/workunits", body: unit + "}", wantStatus: 404, wantCode: "not_found"},
		{name: "related out", method: "GET", path: "/v1/workunits/{u2}/related?direction=out", wantStatus: 200, check: all(wantUnits("{u1}"), hasNext(false))},
		{name: "related in", method: "GET", path: "/v1/workunits/{u1}/related?direction=in&type=CAUSES", wantStatus: 200, check: wantUnits("{u2}")},
		{name: "related both", method: "GET", path: "/v1/workunits/{u1}/related", wantStatus: 200, check: contains(`"id":"{u2}"`, `"id":"01J00000000000000000000BBB"`)},
		{name: "related page", method: "GET", path: "/v1/workunits/{u1}/related?limit=1", wantStatus: 200, check: hasNext(true)},
		{name: "related bad direction", method: "GET", path: "/v1/workunits/{u1}/related?direction=up", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"direction: "}},
		{name: "related bad type", method: "GET", path: "/v1/workunits/{u1}/related?type=LIKES", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"type: "}},
		{name: "related bad limit", method: "GET", path: "/v1/workunits/{u1}/related?limit=x", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit: "}},
		{name: "related bad cursor", method: "GET", path: "/v1/workunits/{u1}/related?cursor=zz", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"cursor: "}},
		{name: "related unknown", method: "GET", path: "/v1/workunits/{unknown}/related", wantStatus: 404, wantCode: "not_found"},
		{name: "related bad id", method: "GET", path: "/v1/workunits/xyz/related", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id: "}},
		{name: "related wrong method", method: "POST", path: "/v1/workunits/{u1}/related", body: `{}`, wantStatus: 404, wantCode: "not_found"},

		// Metrics last, so that the requests above are in them.
		{name: "metrics", method: "GET", path: "/metrics", wantStatus: 200, check: contains(
			"engram_http_request_duration_seconds_bucket",
			`route="/v1/workunits"`, `route="unmatched"`, `status="404"`,
			"engram_wal_head_seq", "engram_wal_commands_total", "go_goroutines", "process_")},
	}
	run(t, srv, vars, scenarios)
}

// TestBodyLimit: a body over MaxBody is 413 with the error body. app.Test
// returns fasthttp's ErrBodyTooLarge instead of the response it wrote, so
// these requests go over an in-memory listener.
func TestBodyLimit(t *testing.T) {
	srv := newServer(t, 1024)
	vars := fixture(t, srv)
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- srv.App().Listener(ln) }()
	t.Cleanup(func() {
		if err := srv.App().ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Error(err)
		}
		<-served
	})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.Dial() },
	}}
	t.Cleanup(client.CloseIdleConnections)

	pad := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"unit over limit", "POST", "/v1/workunits", `{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":"` + pad(2000) + `"}`, 413},
		{"batch over limit", "POST", "/v1/workunits/batch", `{"units":[{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":"` + pad(1100) + `"}]}`, 413},
		{"context over limit", "POST", "/v1/contexts", `{"display_name":"` + pad(1024) + `"}`, 413},
		{"patch over limit", "PATCH", "/v1/contexts/c1", `{"display_name":"` + pad(4096) + `"}`, 413},
		{"unknown route over limit", "POST", "/v1/nowhere", pad(5000), 413},
		{"unit under limit", "POST", "/v1/workunits", `{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":"` + pad(900) + `"}`, 201},
		{"get still works", "GET", "/v1/workunits/{u1}", "", 200},
	}
	repl := strings.NewReplacer("{u1}", vars["u1"])
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.HeadSeq()
			req, err := http.NewRequest(tc.method, "http://engram"+repl.Replace(tc.path), strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 413 {
				checkErrorBody(t, response{resp.StatusCode, resp.Header, body}, "payload_too_large", []string{"body: "})
				if srv.HeadSeq() != before {
					t.Errorf("oversized body wrote: head %d -> %d", before, srv.HeadSeq())
				}
			}
		})
	}
}

// TestOpenAPI: the served document parses and lists exactly the routes the
// app serves, with their methods.
func TestOpenAPI(t *testing.T) {
	srv := newServer(t, 0)
	r := do(t, srv, "GET", "/v1/openapi.yaml", "")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(r.body, api.OpenAPI()) {
		t.Error("served document differs from api.OpenAPI()")
	}
	var doc struct {
		OpenAPI string                            `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node   `yaml:"paths"`
		Comps   map[string]map[string]interface{} `yaml:"components"`
	}
	if err := yaml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "post", "put", "patch", "delete":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	routed := map[string]bool{}
	for _, rt := range srv.App().GetRoutes(true) {
		if rt.Method == "HEAD" {
			continue // Fiber adds HEAD to every GET
		}
		p := rt.Path
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, ":") {
				p = strings.Replace(p, seg, "{"+seg[1:]+"}", 1)
			}
		}
		routed[rt.Method+" "+p] = true
	}
	if len(routed) < 13 {
		t.Fatalf("only %d routes found: %v", len(routed), routed)
	}
	for r := range routed {
		if !documented[r] {
			t.Errorf("%s is routed but not in openapi.yaml", r)
		}
	}
	for d := range documented {
		if !routed[d] {
			t.Errorf("%s is in openapi.yaml but not routed", d)
		}
	}
	// Every $ref points at a component that exists.
	var raw map[string]any
	if err := yaml.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					parts := strings.Split(strings.TrimPrefix(s, "#/components/"), "/")
					if len(parts) != 2 || doc.Comps[parts[0]][parts[1]] == nil {
						t.Errorf("dangling $ref %s", s)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
}

// TestMetrics: /metrics is Prometheus text with the server's metrics.
func TestMetrics(t *testing.T) {
	srv := newServer(t, 0)
	do(t, srv, "POST", "/v1/workunits", `{"context_id":"m","agent_id":"a","type":"MESSAGE"}`)
	do(t, srv, "GET", "/v1/nope", "")
	r := do(t, srv, "GET", "/metrics", "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		"# TYPE engram_http_request_duration_seconds histogram",
		`route="/v1/workunits",status="201"} 1`,
		`route="unmatched",status="404"} 1`,
		"# TYPE engram_wal_head_seq gauge",
		fmt.Sprintf("engram_wal_head_seq %d", srv.HeadSeq()),
		`engram_wal_commands_total{result="ok"} 1`,
		"# TYPE go_goroutines gauge",
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Unknown paths share one label value: cardinality stays bounded.
	for i := range 5 {
		do(t, srv, "GET", fmt.Sprintf("/random/%d", i), "")
	}
	r = do(t, srv, "GET", "/metrics", "")
	if bytes.Contains(r.body, []byte("/random/")) {
		t.Error("unmatched paths appear as label values")
	}
}

// TestMetricsMethodLabel: the method label is the request's method.
func TestMetricsMethodLabel(t *testing.T) {
	srv := newServer(t, 0)
	do(t, srv, "POST", "/v1/workunits", `{"context_id":"m","agent_id":"a","type":"MESSAGE"}`)
	do(t, srv, "GET", "/healthz", "")
	r := do(t, srv, "GET", "/metrics", "")
	want := `engram_http_request_duration_seconds_count{method="POST",route="/v1/workunits",status="201"} 1`
	if !bytes.Contains(r.body, []byte(want)) {
		t.Errorf("metrics lack %s", want)
		for _, l := range strings.Split(string(r.body), "\n") {
			if strings.Contains(l, "_count{") {
				t.Log(l)
			}
		}
	}
}

// TestHeadSeqAcrossErrors: a burst of bad requests leaves the log as it was,
// and a good one after them gets the next seq.
func TestHeadSeqAcrossErrors(t *testing.T) {
	srv := newServer(t, 0)
	r := do(t, srv, "POST", "/v1/workunits", `{"context_id":"h","agent_id":"a","type":"MESSAGE"}`)
	if r.status != 201 {
		t.Fatal(r.status)
	}
	head := srv.HeadSeq()
	for _, body := range []string{`{`, `{"context_id":"h"}`, `{"context_id":"h","agent_id":"a","type":"X"}`, `""`, `[]`, `{"units":[]}`, "{\"a\":1}\n{}"} {
		do(t, srv, "POST", "/v1/workunits", body)
		do(t, srv, "POST", "/v1/workunits/batch", body)
		do(t, srv, "POST", "/v1/contexts", body)
		do(t, srv, "PATCH", "/v1/contexts/h", body)
	}
	if srv.HeadSeq() != head {
		t.Fatalf("bad requests moved head %d -> %d", head, srv.HeadSeq())
	}
	r = do(t, srv, "POST", "/v1/workunits", `{"context_id":"h","agent_id":"a","type":"MESSAGE"}`)
	var u unitOut
	jsonField(t, r.body, &u)
	if u.Seq != head+1 {
		t.Errorf("next unit seq %d, want %d (gapless)", u.Seq, head+1)
	}
}

// TestAfterShutdown: once the sequencer is closed the server is not ready
// and writes answer 503 unavailable, with the error body.
func TestAfterShutdown(t *testing.T) {
	srv := newServer(t, 0)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, srv, nil, []scenario{
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200},
		{name: "readyz", method: "GET", path: "/readyz", wantStatus: 503, wantCode: "unavailable", wantMsg: []string{"not ready"}},
		{name: "create unit", method: "POST", path: "/v1/workunits", body: `{"context_id":"c","agent_id":"a","type":"MESSAGE"}`, wantStatus: 503, wantCode: "unavailable"},
		{name: "create context", method: "POST", path: "/v1/contexts", body: `{"id":"c"}`, wantStatus: 503, wantCode: "unavailable"},
		{name: "bad input is still 400", method: "POST", path: "/v1/workunits", body: `{"context_id":"c"}`, wantStatus: 400, wantCode: "invalid_argument"},
	})
}
