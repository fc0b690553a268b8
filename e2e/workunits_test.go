package e2e_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestWorkUnits(t *testing.T) {
	p := startServer(t, t.TempDir())
	id1, idLower, idB64, idE, idRel := newID(), newID(), newID(), newID(), newID()
	stored := map[string][]byte{} // answers to remember, by name
	keep := func(name string) func(*testing.T, response) {
		return func(t *testing.T, r response) { stored[name] = r.Body }
	}
	sameAs := func(name string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			if !bytes.Equal(r.Body, stored[name]) {
				t.Errorf("answer\n%s\nis not the stored unit\n%s", r.Body, stored[name])
			}
		}
	}
	var first []byte // the answer to the first create of id1
	var firstUnit unitJSON
	head0 := p.headSeq(t)

	// The same content as body1 with keys in another order, blanks in the
	// payload and the id in lower case.
	body1 := `{"id":"` + id1 + `","context_id":"auto-ctx","agent_id":"agent-x","type":"TOOL_CALL",` +
		`"metadata":{"b":"2","a":"1"},"payload":{"tool":"grep","args":["-r","x"],"n":1.50}}`
	body1b := `{"payload":{ "n":1.50, "args":[ "-r", "x" ], "tool":"grep" },"type":"TOOL_CALL","agent_id":"agent-x",` +
		`"metadata":{"a":"1","b":"2"},"context_id":"auto-ctx","id":"` + strings.ToLower(id1) + `"}`
	same := func(t *testing.T, r response) {
		if !bytes.Equal(r.Body, first) {
			t.Errorf("answer\n%s\nis not the stored unit\n%s", r.Body, first)
		}
	}

	runScenarios(t, p, []scenario{
		{name: "create with client id auto-creates the context", method: "POST", path: "/v1/workunits", body: body1,
			status: 201, events: 2,
			check: func(t *testing.T, r response) {
				first = r.Body
				u := decodeUnit(t, r.Body)
				firstUnit = u
				if u.ID != id1 || u.ContextID != "auto-ctx" || u.AgentID != "agent-x" || u.Type != "TOOL_CALL" ||
					!maps.Equal(u.Metadata, map[string]string{"a": "1", "b": "2"}) || len(u.Relationships) != 0 ||
					u.PayloadBase64 != nil {
					t.Errorf("created unit: %s", r.Body)
				}
				var payload map[string]any
				if err := json.Unmarshal(u.Payload, &payload); err != nil || payload["tool"] != "grep" || payload["n"] != 1.5 {
					t.Errorf("payload %s", u.Payload)
				}
				// The context.created event comes first.
				if u.Seq != head0+2 {
					t.Errorf("seq %d, want %d (after the context.created event %d)", u.Seq, head0+2, head0+1)
				}
			}},
		{name: "the auto-created context", method: "GET", path: "/v1/contexts/auto-ctx", status: 200,
			check: func(t *testing.T, r response) {
				c := decodeContext(t, r.Body)
				if c.DisplayName != "auto-ctx" || !slices.Contains(c.AgentIDs, "agent-x") || len(c.PinnedUnits) != 0 || len(c.Metadata) != 0 {
					t.Errorf("auto-created context: %s", r.Body)
				}
				if c.CreatedAt != firstUnit.Timestamp {
					t.Errorf("context created_at %s, unit timestamp %s: one command, one time", c.CreatedAt, firstUnit.Timestamp)
				}
			}},
		{name: "get", method: "GET", path: "/v1/workunits/" + id1, status: 200, check: same},
		{name: "get with lower-case id", method: "GET", path: "/v1/workunits/" + strings.ToLower(id1), status: 200, check: same},
		{name: "retry with the same bytes", method: "POST", path: "/v1/workunits", body: body1, status: 200, check: same},
		{name: "retry with the same content written otherwise", method: "POST", path: "/v1/workunits", body: body1b, status: 200, check: same},
		{name: "retry with the stored unit itself", method: "POST", path: "/v1/workunits", body: func() any { return first }, status: 200, check: same},
		{name: "same id other payload", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: id1,
			body: strings.Replace(body1, `"n":1.50`, `"n":2`, 1)},
		{name: "same id other agent", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: id1,
			body: strings.Replace(body1, `agent-x`, `agent-y`, 1)},
		{name: "same id other context", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: id1,
			body: strings.Replace(body1, `auto-ctx`, `auto-ctx-2`, 1)},
		{name: "same id without metadata", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: id1,
			body: strings.Replace(body1, `"metadata":{"b":"2","a":"1"},`, ``, 1)},
		{name: "lower-case id is stored upper-case", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: map[string]any{"id": strings.ToLower(idLower), "context_id": "auto-ctx", "agent_id": "agent-x", "type": "MESSAGE"},
			check: func(t *testing.T, r response) {
				u := decodeUnit(t, r.Body)
				if u.ID != idLower {
					t.Errorf("id %q, want %q", u.ID, idLower)
				}
				if u.Payload != nil || u.PayloadBase64 != nil {
					t.Errorf("a unit without payload answers one: %s", r.Body)
				}
				if got := p.must(t, 200, "GET", "/v1/workunits/"+strings.ToLower(idLower), nil); !bytes.Equal(got, r.Body) {
					t.Errorf("GET %s\n%s\nwant\n%s", idLower, got, r.Body)
				}
			}},
		{name: "payload_base64", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: map[string]any{"id": idB64, "context_id": "auto-ctx", "agent_id": "agent-2", "type": "OBSERVATION",
				"payload_base64": "AAECAwT/+w=="},
			check: func(t *testing.T, r response) {
				u := decodeUnit(t, r.Body)
				if u.PayloadBase64 == nil || *u.PayloadBase64 != "AAECAwT/+w==" || u.Payload != nil {
					t.Errorf("payload_base64 unit: %s", r.Body)
				}
				if got := p.must(t, 200, "GET", "/v1/workunits/"+idB64, nil); !bytes.Equal(got, r.Body) {
					t.Errorf("GET %s\n%s\nwant\n%s", idB64, got, r.Body)
				}
			}},
		{name: "server-assigned ids are not idempotent", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: `{"context_id":"auto-ctx","agent_id":"agent-x","type":"MESSAGE","payload":"twice"}`,
			check: func(t *testing.T, r response) {
				u := decodeUnit(t, r.Body)
				r2 := p.must(t, 201, "POST", "/v1/workunits", `{"context_id":"auto-ctx","agent_id":"agent-x","type":"MESSAGE","payload":"twice"}`)
				u2 := decodeUnit(t, r2)
				if u2.ID == u.ID || u2.Seq != u.Seq+1 {
					t.Errorf("second server-assigned unit: %s after %s", r2, r.Body)
				}
			}},
		{name: "no metadata, no relationships", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: `{"id":"` + idE + `","context_id":"auto-ctx","agent_id":"agent-x","type":"PLAN"}`, check: keep("E")},
		{name: "retry: absent metadata and relationships are {} and []", method: "POST", path: "/v1/workunits", status: 200,
			body:  `{"id":"` + idE + `","context_id":"auto-ctx","agent_id":"agent-x","type":"PLAN","metadata":{},"relationships":[],"payload":null}`,
			check: sameAs("E")},
		{name: "retry: a payload is other content", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: idE,
			body: `{"id":"` + idE + `","context_id":"auto-ctx","agent_id":"agent-x","type":"PLAN","payload":{}}`},
		{name: "relationships and their metadata", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: map[string]any{"id": idRel, "context_id": "auto-ctx", "agent_id": "agent-x", "type": "TOOL_RESULT", "payload": []int{1, 2},
				"relationships": []map[string]any{
					{"target_id": strings.ToLower(id1), "type": "RESPONDS_TO", "metadata": map[string]string{"why": "answer"}},
					{"target_id": idB64, "type": "REFERENCES"},
				}},
			check: func(t *testing.T, r response) {
				u := decodeUnit(t, r.Body)
				want := []relJSON{
					{TargetID: id1, Type: "RESPONDS_TO", Metadata: map[string]string{"why": "answer"}},
					{TargetID: idB64, Type: "REFERENCES", Metadata: map[string]string{}},
				}
				if len(u.Relationships) != 2 {
					t.Fatalf("relationships: %s", r.Body)
				}
				for i, w := range want {
					g := u.Relationships[i]
					if g.TargetID != w.TargetID || g.Type != w.Type || !maps.Equal(g.Metadata, w.Metadata) || g.Metadata == nil {
						t.Errorf("relationship %d: %+v, want %+v", i, g, w)
					}
				}
				stored["rel"] = r.Body
			}},
		{name: "retry: target case and absent relationship metadata do not matter", method: "POST", path: "/v1/workunits", status: 200,
			body: map[string]any{"id": idRel, "context_id": "auto-ctx", "agent_id": "agent-x", "type": "TOOL_RESULT", "payload": []int{1, 2},
				"relationships": []map[string]any{
					{"target_id": id1, "type": "RESPONDS_TO", "metadata": map[string]string{"why": "answer"}},
					{"target_id": strings.ToLower(idB64), "type": "REFERENCES", "metadata": map[string]string{}},
				}},
			check: sameAs("rel")},
		{name: "retry: relationship order matters", method: "POST", path: "/v1/workunits", status: 409, code: "conflict", field: idRel,
			body: map[string]any{"id": idRel, "context_id": "auto-ctx", "agent_id": "agent-x", "type": "TOOL_RESULT", "payload": []int{1, 2},
				"relationships": []map[string]any{
					{"target_id": idB64, "type": "REFERENCES"},
					{"target_id": id1, "type": "RESPONDS_TO", "metadata": map[string]string{"why": "answer"}},
				}}},
		{name: "get a missing unit", method: "GET", path: "/v1/workunits/" + newID(), status: 404, code: "not_found", field: "not found"},
		{name: "get a malformed id", method: "GET", path: "/v1/workunits/not-a-ulid", status: 400, code: "invalid_argument", field: "id"},
		{name: "get an id that overflows", method: "GET", path: "/v1/workunits/8ZZZZZZZZZZZZZZZZZZZZZZZZZ", status: 400, code: "invalid_argument", field: "id"},
	})
}

func TestBatch(t *testing.T) {
	p := startServer(t, t.TempDir())
	p.must(t, 201, "POST", "/v1/contexts", `{"id":"existing"}`)
	a, b, c, d := newID(), newID(), newID(), newID()
	mk := func(id, ctx string, rels ...string) map[string]any {
		u := map[string]any{"id": id, "context_id": ctx, "agent_id": "ag", "type": "PLAN", "payload": map[string]string{"id": id}}
		var rs []map[string]string
		for i := 0; i+1 < len(rels); i += 2 {
			rs = append(rs, map[string]string{"target_id": rels[i], "type": rels[i+1]})
		}
		if rs != nil {
			u["relationships"] = rs
		}
		return u
	}
	batch := func(units ...map[string]any) map[string]any { return map[string]any{"units": units} }
	var stored []byte
	// contiguous checks that the answer holds ids in order with seqs from
	// first on.
	contiguous := func(first func() uint64, ids ...string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			pg := struct {
				Units []json.RawMessage `json:"units"`
			}{}
			if err := json.Unmarshal(r.Body, &pg); err != nil || len(pg.Units) != len(ids) {
				t.Fatalf("batch answer: %v: %s", err, r.Body)
			}
			checkKeys(t, "batch answer", r.Body, []string{"units"}, nil)
			s := first()
			for i, raw := range pg.Units {
				u := decodeUnit(t, raw)
				if u.ID != ids[i] || u.Seq != s+uint64(i) {
					t.Errorf("units[%d]: id %s seq %d, want id %s seq %d", i, u.ID, u.Seq, ids[i], s+uint64(i))
				}
				if got := p.must(t, 200, "GET", "/v1/workunits/"+u.ID, nil); !bytes.Equal(got, raw) {
					t.Errorf("GET %s\n%s\nbatch answered\n%s", u.ID, got, raw)
				}
			}
		}
	}
	var head uint64
	snapHead := func(t *testing.T, _ response) { head = p.headSeq(t) }
	notStored := func(ids ...string) func(*testing.T, response) {
		return func(t *testing.T, _ response) {
			for _, id := range ids {
				checkError(t, p.call(t, "GET", "/v1/workunits/"+id, nil), 404, "not_found", id)
			}
		}
	}
	x, y, z := newID(), newID(), newID()
	x2, x3, x4 := newID(), newID(), newID()
	m1, m2, m3, missing := newID(), newID(), newID(), newID()

	runScenarios(t, p, []scenario{
		{name: "head", method: "GET", path: "/readyz", status: 200, check: snapHead},
		{name: "batch in a new context with relationships to earlier units", method: "POST", path: "/v1/workunits/batch",
			body:   batch(mk(a, "bctx"), mk(b, "bctx", a, "CAUSES"), mk(c, "bctx", a, "REFERENCES", b, "DEPENDS_ON")),
			status: 201, events: 4,
			check: func(t *testing.T, r response) {
				stored = r.Body
				contiguous(func() uint64 { return head + 2 }, a, b, c)(t, r)
				ctx := decodeContext(t, p.must(t, 200, "GET", "/v1/contexts/bctx", nil))
				if !slices.Equal(ctx.AgentIDs, []string{"ag"}) {
					t.Errorf("batch-created context agents %v", ctx.AgentIDs)
				}
			}},
		{name: "retry of the whole batch", method: "POST", path: "/v1/workunits/batch",
			body:   batch(mk(a, "bctx"), mk(b, "bctx", a, "CAUSES"), mk(c, "bctx", a, "REFERENCES", b, "DEPENDS_ON")),
			status: 200,
			check: func(t *testing.T, r response) {
				if !bytes.Equal(r.Body, stored) {
					t.Errorf("retry answered\n%s\nfirst answer\n%s", r.Body, stored)
				}
			}},
		{name: "head again", method: "GET", path: "/readyz", status: 200, check: snapHead},
		{name: "batch over two new contexts and an existing one", method: "POST", path: "/v1/workunits/batch",
			body:   batch(mk(x, "n1"), mk(y, "existing", x, "SEQUENTIAL"), mk(z, "n2", c, "SEQUENTIAL")),
			status: 201, events: 5,
			check: func(t *testing.T, r response) {
				contiguous(func() uint64 { return head + 3 }, x, y, z)(t, r)
				for _, id := range []string{"n1", "n2"} {
					p.must(t, 200, "GET", "/v1/contexts/"+id, nil)
				}
			}},
		{name: "head once more", method: "GET", path: "/readyz", status: 200, check: snapHead},
		{name: "partial retry writes only the new unit", method: "POST", path: "/v1/workunits/batch",
			body: batch(mk(a, "bctx"), mk(d, "bctx", c, "CAUSES")), status: 201, events: 1,
			check: func(t *testing.T, r response) {
				var pg struct {
					Units []json.RawMessage `json:"units"`
				}
				if err := json.Unmarshal(r.Body, &pg); err != nil || len(pg.Units) != 2 {
					t.Fatalf("answer: %s", r.Body)
				}
				if got := decodeUnit(t, pg.Units[0]); got.ID != a {
					t.Errorf("units[0] is %s, want the stored %s", got.ID, a)
				}
				if got := p.must(t, 200, "GET", "/v1/workunits/"+a, nil); !bytes.Equal(got, pg.Units[0]) {
					t.Errorf("existing unit answered as\n%s\nstored\n%s", pg.Units[0], got)
				}
				if u := decodeUnit(t, pg.Units[1]); u.ID != d || u.Seq != head+1 {
					t.Errorf("new unit %s seq %d, want %s seq %d", u.ID, u.Seq, d, head+1)
				}
			}},
		{name: "relationship to a later unit of the batch", method: "POST", path: "/v1/workunits/batch",
			body:   batch(mk(x2, "never"), mk(x3, "never", x4, "CAUSES"), mk(x4, "never")),
			status: 400, code: "invalid_argument", field: "units[1].relationships[0].target_id",
			check: func(t *testing.T, r response) {
				notStored(x2, x3, x4)(t, r)
				checkError(t, p.call(t, "GET", "/v1/contexts/never", nil), 404, "not_found", "never")
			}},
		{name: "relationship to a missing unit stores nothing", method: "POST", path: "/v1/workunits/batch",
			body:   batch(mk(m1, "never"), mk(m2, "never", m1, "CAUSES"), mk(m3, "never2", missing, "CAUSES")),
			status: 400, code: "invalid_argument", field: "units[2].relationships[0].target_id",
			check: func(t *testing.T, r response) {
				notStored(m1, m2, m3, missing)(t, r)
				for _, ctx := range []string{"never", "never2"} {
					checkError(t, p.call(t, "GET", "/v1/contexts/"+ctx, nil), 404, "not_found", ctx)
				}
			}},
		{name: "conflict in one unit stores nothing", method: "POST", path: "/v1/workunits/batch",
			body:   map[string]any{"units": []map[string]any{mk(m1, "never"), {"id": b, "context_id": "bctx", "agent_id": "other", "type": "PLAN"}}},
			status: 409, code: "conflict", field: "units[1].id",
			check: func(t *testing.T, r response) {
				notStored(m1)(t, r)
				checkError(t, p.call(t, "GET", "/v1/contexts/never", nil), 404, "not_found", "never")
			}},
	})

	t.Run("listing after batches", func(t *testing.T) {
		raws, _ := listAll(t, p, "/v1/contexts/bctx/workunits?order=asc", "units")
		if got := unitIDs(decodeUnits(t, raws)); !slices.Equal(got, []string{a, b, c, d}) {
			t.Errorf("bctx units %v, want %v", got, []string{a, b, c, d})
		}
	})
}
