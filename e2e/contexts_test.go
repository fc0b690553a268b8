package e2e_test

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

func TestContexts(t *testing.T) {
	p := startServer(t, t.TempDir())
	uA, uB := newID(), newID() // units of ctx-a and ctx-b
	var created []byte         // ctx-a as created
	var last contextJSON       // ctx-a after the latest change

	// wantCtx decodes a context answer, checks it against want (created_at
	// and updated_at aside) and remembers it as the latest ctx-a.
	wantCtx := func(want contextJSON, changed bool) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			c := decodeContext(t, r.Body)
			if c.ID != want.ID || c.DisplayName != want.DisplayName ||
				!slices.Equal(c.AgentIDs, want.AgentIDs) || !slices.Equal(c.PinnedUnits, want.PinnedUnits) ||
				!maps.Equal(c.Metadata, want.Metadata) {
				t.Errorf("context:\n got %+v\nwant %+v", c, want)
			}
			if last.ID != "" {
				if c.CreatedAt != last.CreatedAt {
					t.Errorf("created_at changed from %s to %s", last.CreatedAt, c.CreatedAt)
				}
				if changed && c.UpdatedAt <= last.UpdatedAt {
					t.Errorf("updated_at %s not after %s on a change", c.UpdatedAt, last.UpdatedAt)
				}
				if !changed && c.UpdatedAt != last.UpdatedAt {
					t.Errorf("updated_at changed from %s to %s without a change", last.UpdatedAt, c.UpdatedAt)
				}
			}
			last = c
		}
	}
	unit := func(id, ctx string) map[string]any {
		return map[string]any{"id": id, "context_id": ctx, "agent_id": "a1", "type": "MESSAGE", "payload": "hi"}
	}

	runScenarios(t, p, []scenario{
		{name: "create with id", method: "POST", path: "/v1/contexts", status: 201, events: 1,
			body: map[string]any{"id": "ctx-a", "display_name": "Alpha", "agent_ids": []string{"a1", "a2", "a1"},
				"metadata": map[string]string{"k": "v", "x": "1"}},
			check: func(t *testing.T, r response) {
				created = r.Body
				wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha", AgentIDs: []string{"a1", "a2"},
					PinnedUnits: []string{}, Metadata: map[string]string{"k": "v", "x": "1"}}, true)(t, r)
				if last.CreatedAt != last.UpdatedAt {
					t.Errorf("new context: created_at %s != updated_at %s", last.CreatedAt, last.UpdatedAt)
				}
			}},
		{name: "create same id again", method: "POST", path: "/v1/contexts", status: 409, code: "conflict", field: "ctx-a",
			body: map[string]any{"id": "ctx-a", "display_name": "Alpha", "agent_ids": []string{"a1", "a2", "a1"},
				"metadata": map[string]string{"k": "v", "x": "1"}}},
		{name: "create same id other content", method: "POST", path: "/v1/contexts", body: `{"id":"ctx-a"}`,
			status: 409, code: "conflict", field: "ctx-a"},
		{name: "create without id", method: "POST", path: "/v1/contexts", body: `{"agent_ids":["z"]}`, status: 201, events: 1,
			check: func(t *testing.T, r response) {
				c := decodeContext(t, r.Body)
				if _, err := ulid.ParseStrict(c.ID); err != nil {
					t.Errorf("server-assigned id %q is not a ULID", c.ID)
				}
				if c.DisplayName != c.ID || !slices.Equal(c.AgentIDs, []string{"z"}) || len(c.Metadata) != 0 {
					t.Errorf("server-assigned context: %+v", c)
				}
			}},
		{name: "create with empty body", method: "POST", path: "/v1/contexts", body: "", status: 201, events: 1,
			check: func(t *testing.T, r response) {
				c := decodeContext(t, r.Body)
				if _, err := ulid.ParseStrict(c.ID); err != nil || c.DisplayName != c.ID {
					t.Errorf("context from an empty body: %+v", c)
				}
			}},
		{name: "get", method: "GET", path: "/v1/contexts/ctx-a", status: 200,
			check: func(t *testing.T, r response) {
				if !bytes.Equal(r.Body, created) {
					t.Errorf("GET answers\n%s\nPOST answered\n%s", r.Body, created)
				}
			}},
		{name: "get missing", method: "GET", path: "/v1/contexts/nope", status: 404, code: "not_found", field: "nope"},
		{name: "get bad name", method: "GET", path: "/v1/contexts/" + strings.Repeat("n", 129), status: 400, code: "invalid_argument", field: "id"},
		{name: "patch display_name", method: "PATCH", path: "/v1/contexts/ctx-a", body: `{"display_name":"Alpha 2"}`, status: 200, events: 1,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a1", "a2"},
				PinnedUnits: []string{}, Metadata: map[string]string{"k": "v", "x": "1"}}, true)},
		{name: "patch metadata merges, null deletes", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: `{"metadata":{"k":null,"n":"2","x":"1"}}`, status: 200, events: 1,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a1", "a2"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, true)},
		{name: "patch deleting a missing key changes nothing", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: `{"metadata":{"gone":null}}`, status: 200,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a1", "a2"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, false)},
		{name: "patch agents", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: `{"add_agents":["a3","a2"],"remove_agents":["a1"]}`, status: 200, events: 1,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, true)},
		{name: "empty patch writes nothing", method: "PATCH", path: "/v1/contexts/ctx-a", body: `{}`, status: 200,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, false)},
		{name: "unit of ctx-a", method: "POST", path: "/v1/workunits", body: unit(uA, "ctx-a"), status: 201, events: 1},
		{name: "unit of ctx-b creates ctx-b", method: "POST", path: "/v1/workunits", body: unit(uB, "ctx-b"), status: 201, events: 2},
		{name: "pin", method: "PATCH", path: "/v1/contexts/ctx-a", body: map[string]any{"pin": []string{uA}}, status: 200, events: 1,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{uA}, Metadata: map[string]string{"n": "2", "x": "1"}}, true)},
		{name: "pin again in lower case changes nothing", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: map[string]any{"pin": []string{strings.ToLower(uA)}}, status: 200,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{uA}, Metadata: map[string]string{"n": "2", "x": "1"}}, false)},
		{name: "pin a unit of another context", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: map[string]any{"pin": []string{uB}}, status: 400, code: "invalid_argument", field: "pin[0]"},
		{name: "pin a malformed id", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: `{"pin":["not-a-ulid"]}`, status: 400, code: "invalid_argument", field: "pin[0]"},
		{name: "pin a missing unit", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: map[string]any{"pin": []string{uA, newID()}}, status: 400, code: "invalid_argument", field: "pin[1]"},
		{name: "unpin a malformed id", method: "PATCH", path: "/v1/contexts/ctx-a",
			body: `{"unpin":["xyz"]}`, status: 400, code: "invalid_argument", field: "unpin[0]"},
		{name: "unpin", method: "PATCH", path: "/v1/contexts/ctx-a", body: map[string]any{"unpin": []string{uA}}, status: 200, events: 1,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, true)},
		{name: "patch a missing context", method: "PATCH", path: "/v1/contexts/nope", body: `{"display_name":"x"}`,
			status: 404, code: "not_found", field: "nope"},
		{name: "get after patches", method: "GET", path: "/v1/contexts/ctx-a", status: 200,
			check: wantCtx(contextJSON{ID: "ctx-a", DisplayName: "Alpha 2", AgentIDs: []string{"a2", "a3"},
				PinnedUnits: []string{}, Metadata: map[string]string{"n": "2", "x": "1"}}, false)},
	})
}

func TestContextPaging(t *testing.T) {
	p := startServer(t, t.TempDir())
	var want []string
	for i := range 23 {
		want = append(want, fmt.Sprintf("p-%02d", i))
	}
	// Ids that sort apart byte-wise: upper case before lower case, '~' last.
	want = append(want, "A", "Z", "a", "z~", "~", "0", "p-1", "p-1.5")
	for _, id := range want {
		p.must(t, 201, "POST", "/v1/contexts", map[string]any{"id": id})
	}
	slices.Sort(want)

	for _, limit := range []int{1, 5, 7, len(want), len(want) + 1, 0} { // 0: no limit parameter
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			path := fmt.Sprintf("/v1/contexts?limit=%d", limit)
			if limit == 0 {
				path = "/v1/contexts"
			}
			raws, pages := listAll(t, p, path, "contexts")
			var got []string
			for _, r := range raws {
				got = append(got, decodeContext(t, r).ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("paged listing:\n got %v\nwant %v", got, want)
			}
			wantPages := 1
			if limit > 0 {
				wantPages = max(1, (len(want)+limit-1)/limit)
			}
			if pages != wantPages {
				t.Errorf("%d pages, want %d", pages, wantPages)
			}
		})
	}

	t.Run("limit out of range", func(t *testing.T) {
		// openapi.yaml: 1 to 1000, anything else is 400 (an absent limit is 100).
		for _, l := range []string{"0", "1001", "-1", "abc", "1.5", ""} {
			if l == "" {
				p.must(t, 200, "GET", "/v1/contexts?limit=", nil)
				continue
			}
			checkError(t, p.call(t, "GET", "/v1/contexts?limit="+l, nil), 400, "invalid_argument", "limit")
		}
		p.must(t, 200, "GET", "/v1/contexts?limit=1000", nil)
	})
}
