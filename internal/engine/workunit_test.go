package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"engram/internal/engine"
	"engram/internal/jsonx"
)

func strp(s string) *string { return &s }

func manyMeta(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

func rels(n int, target string) []engine.RelationshipInput {
	out := make([]engine.RelationshipInput, n)
	for i := range out {
		out[i] = engine.RelationshipInput{TargetID: target, Type: "CAUSES"}
	}
	return out
}

// TestUnitValidation runs every validation rule of a work unit, alone and as
// the fourth unit of a batch (whose field names carry "units[3].").
func TestUnitValidation(t *testing.T) {
	v := newEnv(t)
	target := v.mustCreate(t, msg("base", "a1")).ID
	selfID := newID()

	tests := []struct {
		name   string
		mutate func(u *engine.UnitInput)
		field  string // "" = valid
		subs   []string
	}{
		{name: "valid minimal", mutate: func(u *engine.UnitInput) {}},
		{name: "valid client id", mutate: func(u *engine.UnitInput) { u.ID = newID() }},
		{name: "valid lowercase id", mutate: func(u *engine.UnitInput) { u.ID = strings.ToLower(newID()) }},
		{name: "valid every type", mutate: func(u *engine.UnitInput) { u.Type = "SYSTEM" }},
		{name: "bad id", mutate: func(u *engine.UnitInput) { u.ID = "not-a-ulid" }, field: "id", subs: []string{"not a ULID"}},
		{name: "id overflow", mutate: func(u *engine.UnitInput) { u.ID = "8" + strings.Repeat("0", 25) }, field: "id"},
		{name: "id with I", mutate: func(u *engine.UnitInput) { u.ID = "0" + strings.Repeat("I", 25) }, field: "id"},
		{name: "context_id missing", mutate: func(u *engine.UnitInput) { u.ContextID = "" }, field: "context_id", subs: []string{"required"}},
		{name: "context_id slash", mutate: func(u *engine.UnitInput) { u.ContextID = "a/b" }, field: "context_id", subs: []string{"must match"}},
		{name: "context_id too long", mutate: func(u *engine.UnitInput) { u.ContextID = strings.Repeat("c", 129) }, field: "context_id"},
		{name: "context_id 128", mutate: func(u *engine.UnitInput) { u.ContextID = strings.Repeat("c", 128) }},
		{name: "agent_id missing", mutate: func(u *engine.UnitInput) { u.AgentID = "" }, field: "agent_id", subs: []string{"required"}},
		{name: "agent_id space", mutate: func(u *engine.UnitInput) { u.AgentID = "a b" }, field: "agent_id", subs: []string{"must match"}},
		{name: "type missing", mutate: func(u *engine.UnitInput) { u.Type = "" }, field: "type", subs: []string{"required"}},
		{name: "type unknown", mutate: func(u *engine.UnitInput) { u.Type = "FOO" }, field: "type", subs: []string{`unknown work unit type "FOO"`, "MESSAGE"}},
		{name: "type lowercase", mutate: func(u *engine.UnitInput) { u.Type = "message" }, field: "type"},
		{name: "metadata 64 keys", mutate: func(u *engine.UnitInput) { u.Metadata = manyMeta(64) }},
		{name: "metadata 65 keys", mutate: func(u *engine.UnitInput) { u.Metadata = manyMeta(65) }, field: "metadata", subs: []string{"65 keys, at most 64"}},
		{name: "metadata empty key", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"": "v"} }, field: "metadata", subs: []string{"empty key"}},
		{name: "metadata key 128", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{strings.Repeat("k", 128): "v"} }},
		{name: "metadata key 129", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{strings.Repeat("k", 129): "v"} }, field: "metadata", subs: []string{"longer than 128"}},
		{name: "metadata value 8192", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"k": strings.Repeat("v", 8192)} }},
		{name: "metadata value 8193", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"k": strings.Repeat("v", 8193)} }, field: "metadata.k", subs: []string{"longer than 8192"}},
		{name: "metadata value empty", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"k": ""} }},
		{name: "metadata value bad utf-8", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"k": "a\xffb"} }, field: "metadata.k", subs: []string{"UTF-8"}},
		{name: "metadata key bad utf-8", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"k\xc3": "v"} }, field: "metadata.", subs: []string{"UTF-8"}},
		{name: "metadata unicode", mutate: func(u *engine.UnitInput) { u.Metadata = map[string]string{"ключ": "値 <&>"} }},
		{name: "payload object", mutate: func(u *engine.UnitInput) { u.Payload = json.RawMessage(`{"a":[1,2]}`) }},
		{name: "payload null", mutate: func(u *engine.UnitInput) { u.Payload = json.RawMessage(`null`) }},
		{name: "payload_base64", mutate: func(u *engine.UnitInput) { u.PayloadBase64 = strp("aGVsbG8=") }},
		{name: "payload_base64 empty", mutate: func(u *engine.UnitInput) { u.PayloadBase64 = strp("") }},
		{name: "payload null with payload_base64", mutate: func(u *engine.UnitInput) {
			u.Payload = json.RawMessage(`null`)
			u.PayloadBase64 = strp("aGVsbG8=")
		}},
		{name: "payload and payload_base64", mutate: func(u *engine.UnitInput) {
			u.Payload = json.RawMessage(`"x"`)
			u.PayloadBase64 = strp("aGVsbG8=")
		}, field: "payload_base64", subs: []string{"not both"}},
		{name: "payload_base64 bad char", mutate: func(u *engine.UnitInput) { u.PayloadBase64 = strp("not base64!") }, field: "payload_base64", subs: []string{"not standard base64"}},
		{name: "payload_base64 url alphabet", mutate: func(u *engine.UnitInput) { u.PayloadBase64 = strp("-_-_") }, field: "payload_base64"},
		{name: "payload_base64 unpadded", mutate: func(u *engine.UnitInput) { u.PayloadBase64 = strp("aGVsbG8") }, field: "payload_base64"},
		{name: "relationships 256", mutate: func(u *engine.UnitInput) { u.Relationships = rels(256, target) }},
		{name: "relationships 257", mutate: func(u *engine.UnitInput) { u.Relationships = rels(257, target) }, field: "relationships", subs: []string{"257, at most 256"}},
		{name: "relationship target bad", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "CAUSES"}, {TargetID: "nope", Type: "CAUSES"}}
		}, field: "relationships[1].target_id", subs: []string{"not a ULID"}},
		{name: "relationship target missing", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{Type: "CAUSES"}}
		}, field: "relationships[0].target_id"},
		{name: "relationship target unknown", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "CAUSES"}, {TargetID: newID(), Type: "CAUSES"}}
		}, field: "relationships[1].target_id", subs: []string{"not found"}},
		{name: "relationship target lowercase", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: strings.ToLower(target), Type: "CAUSES"}}
		}},
		{name: "relationship type unknown", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "LIKES"}}
		}, field: "relationships[0].type", subs: []string{`unknown relationship type "LIKES"`}},
		{name: "relationship type missing", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target}}
		}, field: "relationships[0].type", subs: []string{"required"}},
		{name: "relationship metadata too many", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "CAUSES", Metadata: manyMeta(65)}}
		}, field: "relationships[0].metadata", subs: []string{"at most 64"}},
		{name: "relationship metadata ok", mutate: func(u *engine.UnitInput) {
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "DEPENDS_ON", Metadata: map[string]string{"why": "because"}}}
		}},
		{name: "self relationship", mutate: func(u *engine.UnitInput) {
			u.ID = selfID
			u.Relationships = []engine.RelationshipInput{{TargetID: selfID, Type: "CAUSES"}}
		}, field: "relationships[0].target_id", subs: []string{"itself"}},
		{name: "self relationship other case", mutate: func(u *engine.UnitInput) {
			u.ID = strings.ToLower(selfID)
			u.Relationships = []engine.RelationshipInput{{TargetID: target, Type: "CAUSES"}, {TargetID: selfID, Type: "REFERENCES"}}
		}, field: "relationships[1].target_id", subs: []string{"itself"}},
	}
	for _, tc := range tests {
		for _, batch := range []bool{false, true} {
			name := tc.name + "/single"
			if batch {
				name = tc.name + "/batch"
			}
			t.Run(name, func(t *testing.T) {
				in := msg("c-"+strings.ReplaceAll(tc.name, " ", "-"), "agent")
				tc.mutate(&in)
				before := v.head()
				var err error
				var res engine.CreateResult
				prefix := ""
				if batch {
					prefix = "units[3]."
					units := []engine.UnitInput{msg("other", "a"), msg("other", "b"), msg("other", "c"), in}
					res, err = v.e.CreateUnits(context.Background(), units)
				} else {
					res, err = v.e.CreateUnit(context.Background(), &in)
				}
				if tc.field == "" {
					if err != nil {
						t.Fatalf("valid input rejected: %v", err)
					}
					if !res.Created || v.head() <= before {
						t.Errorf("Created=%v head %d -> %d", res.Created, before, v.head())
					}
					return
				}
				want := prefix + tc.field
				if !strings.HasSuffix(want, ".") {
					want += ": "
				}
				wantErr(t, err, engine.ErrInvalid, append([]string{want}, tc.subs...)...)
				if batch && !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error %q does not start with %q", err, prefix)
				}
				if got := v.head(); got != before {
					t.Errorf("head seq %d -> %d after rejected input", before, got)
				}
			})
		}
	}
}

func TestBatchValidation(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	dup := newID()
	later := newID()
	tests := []struct {
		name  string
		units []engine.UnitInput
		subs  []string
	}{
		{"empty", nil, []string{"units: empty"}},
		{"too many", make([]engine.UnitInput, engine.MaxBatchUnits+1), []string{"units: 1001 units, at most 1000"}},
		{"repeated id", []engine.UnitInput{
			{ID: dup, ContextID: "c", AgentID: "a", Type: "PLAN"},
			{ID: strings.ToLower(dup), ContextID: "c", AgentID: "a", Type: "PLAN"},
		}, []string{"units[1].id: ", "repeats units[0].id"}},
		{"later target", []engine.UnitInput{
			{ContextID: "c", AgentID: "a", Type: "PLAN", Relationships: []engine.RelationshipInput{{TargetID: later, Type: "CAUSES"}}},
			{ID: later, ContextID: "c", AgentID: "a", Type: "PLAN"},
		}, []string{"units[0].relationships[0].target_id: ", "later unit"}},
		{"bad unit", []engine.UnitInput{msg("c", "a"), {ContextID: "c", AgentID: "a"}}, []string{"units[1].type: required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := v.head()
			_, err := v.e.CreateUnits(ctx, tc.units)
			wantErr(t, err, engine.ErrInvalid, tc.subs...)
			if v.head() != before {
				t.Errorf("head seq %d -> %d", before, v.head())
			}
		})
	}
}

// TestCreateUnitsAtomic: a batch with one bad relationship target stores
// nothing, not even the context it would have created.
func TestCreateUnitsAtomic(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	v.mustCreate(t, msg("existing", "a"))
	before := v.head()
	first, second := newID(), newID()
	units := []engine.UnitInput{
		{ID: first, ContextID: "fresh", AgentID: "a", Type: "MESSAGE"},
		{ID: second, ContextID: "existing", AgentID: "a", Type: "PLAN",
			Relationships: []engine.RelationshipInput{{TargetID: first, Type: "CAUSES"}}},
		{ContextID: "fresh", AgentID: "b", Type: "ERROR",
			Relationships: []engine.RelationshipInput{{TargetID: first, Type: "CAUSES"}, {TargetID: newID(), Type: "REFERENCES"}}},
	}
	_, err := v.e.CreateUnits(ctx, units)
	wantErr(t, err, engine.ErrInvalid, "units[2].relationships[1].target_id: ", "not found")
	if v.head() != before {
		t.Errorf("head seq %d -> %d", before, v.head())
	}
	if _, err := v.e.GetContext("fresh"); err == nil {
		t.Error("the batch's auto-context was created")
	} else {
		wantErr(t, err, engine.ErrNotFound)
	}
	for _, id := range []string{first, second} {
		_, err := v.e.GetUnit(id)
		wantErr(t, err, engine.ErrNotFound, id)
	}
	page, err := v.e.ListUnits(engine.ListQuery{ContextID: "existing"})
	if err != nil || len(page.Units) != 1 {
		t.Errorf("existing context has %d units (%v), want 1", len(page.Units), err)
	}
	// The same batch with the bad relationship fixed goes through.
	units[2].Relationships = units[2].Relationships[:1]
	if _, err := v.e.CreateUnits(ctx, units); err != nil {
		t.Fatal(err)
	}
}

// TestCreateUnitsSeqs: a batch's context.created events come first, then
// the units with contiguous seqs in request order.
func TestCreateUnitsSeqs(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	v.mustCreate(t, msg("old", "x"))
	start := v.head()
	units := []engine.UnitInput{
		{ContextID: "new1", AgentID: "a1", Type: "MESSAGE"},
		{ContextID: "old", AgentID: "a9", Type: "PLAN"},
		{ContextID: "new2", AgentID: "b1", Type: "TOOL_CALL"},
		{ContextID: "new1", AgentID: "a2", Type: "TOOL_RESULT"},
		{ContextID: "new1", AgentID: "a1", Type: "OBSERVATION"},
	}
	// Client ids in descending order: seq order must follow the request,
	// not the ids.
	for i := len(units) - 1; i >= 0; i-- {
		units[i].ID = newID()
	}
	res, err := v.e.CreateUnits(ctx, units)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Units) != len(units) {
		t.Fatalf("Created=%v units=%d", res.Created, len(res.Units))
	}
	for i, want := range []struct{ typ, topic string }{
		{"context.created", "contexts/new1"},
		{"context.created", "contexts/new2"},
	} {
		ev := v.event(t, start+1+uint64(i))
		if ev.Type != want.typ || ev.Topic != want.topic {
			t.Errorf("event %d: %s on %s, want %s on %s", ev.Seq, ev.Type, ev.Topic, want.typ, want.topic)
		}
	}
	for i, raw := range res.Units {
		u := parseUnit(t, raw)
		wantSeq := start + 3 + uint64(i)
		if u.Seq != wantSeq || u.ID != units[i].ID || u.ContextID != units[i].ContextID || u.Type != units[i].Type {
			t.Errorf("units[%d] = %+v, want seq %d id %s", i, u, wantSeq, units[i].ID)
		}
		ev := v.event(t, u.Seq)
		if ev.Type != "workunit.created" || ev.Topic != "contexts/"+u.ContextID {
			t.Errorf("event %d: %s on %s", ev.Seq, ev.Type, ev.Topic)
		}
		if !bytes.Contains(ev.JSON, raw) {
			t.Errorf("event %d JSON %s does not carry the unit %s", ev.Seq, ev.JSON, raw)
		}
		got, err := v.e.GetUnit(u.ID)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("GetUnit(%s) = %s, %v; want %s", u.ID, got, err, raw)
		}
	}
	if v.head() != start+2+uint64(len(units)) {
		t.Errorf("head %d, want %d", v.head(), start+2+uint64(len(units)))
	}
	// Auto-created contexts carry the batch's agents in order of first
	// appearance; an existing context is left alone.
	c1 := parseContext(t, v.getContext(t, "new1"))
	if strings.Join(c1.AgentIDs, ",") != "a1,a2" || c1.DisplayName != "new1" {
		t.Errorf("new1 = %+v", c1)
	}
	old := parseContext(t, v.getContext(t, "old"))
	if strings.Join(old.AgentIDs, ",") != "x" {
		t.Errorf("old agents = %v, want [x]", old.AgentIDs)
	}
}

func TestUnitJSON(t *testing.T) {
	v := newEnv(t)
	target := v.mustCreate(t, msg("c", "a")).ID
	in := engine.UnitInput{
		ContextID: "c", AgentID: "a", Type: "REASONING",
		Metadata:      map[string]string{"z": "last", "a": "first <&>", "q": "\"quoted\"\n"},
		Payload:       json.RawMessage("{ \"b\" : [1, 2.50, \"x y\"],\n \"a\": null }"),
		Relationships: []engine.RelationshipInput{{TargetID: strings.ToLower(target), Type: "RESPONDS_TO", Metadata: map[string]string{"k": "v"}}},
	}
	res, err := v.e.CreateUnit(context.Background(), &in)
	if err != nil {
		t.Fatal(err)
	}
	raw := res.Units[0]
	if !json.Valid(raw) {
		t.Fatalf("not valid JSON: %s", raw)
	}
	u := parseUnit(t, raw)
	if string(u.Payload) != `{"b":[1,2.50,"x y"],"a":null}` {
		t.Errorf("payload = %s, want compacted with its key order and number text kept", u.Payload)
	}
	if u.Metadata["a"] != "first <&>" || u.Metadata["q"] != "\"quoted\"\n" || len(u.Metadata) != 3 {
		t.Errorf("metadata = %v", u.Metadata)
	}
	if len(u.Relationships) != 1 || u.Relationships[0].TargetID != target || u.Relationships[0].Metadata["k"] != "v" {
		t.Errorf("relationships = %+v", u.Relationships)
	}
	if u.PayloadBase64 != nil {
		t.Errorf("payload_base64 present: %s", raw)
	}
	if len(u.ID) != 26 || u.Timestamp == "" || !strings.HasSuffix(u.Timestamp, "Z") {
		t.Errorf("id %q timestamp %q", u.ID, u.Timestamp)
	}
	// The stored unit decodes strictly as an input (so it can be sent back).
	var back engine.UnitInput
	if err := jsonx.Decode(raw, &back); err != nil {
		t.Errorf("stored unit does not decode as UnitInput: %v", err)
	}
	// Metadata keys are written sorted, and empty collections as {} / [].
	if i, j := bytes.Index(raw, []byte(`"a":"first`)), bytes.Index(raw, []byte(`"z":"last"`)); i < 0 || j < i {
		t.Errorf("metadata keys not sorted: %s", raw)
	}
	plain := v.mustCreate(t, msg("c", "a"))
	got := v.getUnit(t, plain.ID)
	if !bytes.Contains(got, []byte(`"metadata":{}`)) || !bytes.Contains(got, []byte(`"relationships":[]`)) || bytes.Contains(got, []byte(`"payload`)) {
		t.Errorf("minimal unit = %s", got)
	}
}

func TestPayloadNullIsAbsent(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	id := newID()
	in := engine.UnitInput{ID: id, ContextID: "c", AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage("null")}
	res, err := v.e.CreateUnit(ctx, &in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(res.Units[0], []byte("payload")) {
		t.Errorf("null payload stored: %s", res.Units[0])
	}
	before := v.head()
	again := engine.UnitInput{ID: id, ContextID: "c", AgentID: "a", Type: "MESSAGE"}
	res2, err := v.e.CreateUnit(ctx, &again)
	if err != nil || res2.Created || !bytes.Equal(res2.Units[0], res.Units[0]) {
		t.Errorf("retry without payload: %v Created=%v", err, res2.Created)
	}
	if v.head() != before {
		t.Error("retry wrote")
	}
	// null beside payload_base64 is not "both".
	b := engine.UnitInput{ContextID: "c", AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage("null"), PayloadBase64: strp("AAEC")}
	res3, err := v.e.CreateUnit(ctx, &b)
	if err != nil {
		t.Fatal(err)
	}
	if u := parseUnit(t, res3.Units[0]); u.PayloadBase64 == nil || *u.PayloadBase64 != "AAEC" || u.Payload != nil {
		t.Errorf("unit = %s", res3.Units[0])
	}
}

// TestIdempotentRetry: the same client id with the same content answers the
// stored unit; other content is a conflict. Neither writes.
func TestIdempotentRetry(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	target := v.mustCreate(t, msg("c", "a")).ID
	id := newID()
	decode := func(s string) engine.UnitInput {
		var in engine.UnitInput
		s = strings.ReplaceAll(s, "$ID", id)
		s = strings.ReplaceAll(s, "$id", strings.ToLower(id))
		s = strings.ReplaceAll(s, "$T", target)
		s = strings.ReplaceAll(s, "$t", strings.ToLower(target))
		if err := jsonx.Decode([]byte(s), &in); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		return in
	}
	orig := decode(`{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL",
		"metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},
		"relationships":[{"target_id":"$T","type":"CAUSES"}]}`)
	res, err := v.e.CreateUnit(ctx, &orig)
	if err != nil {
		t.Fatal(err)
	}
	stored := res.Units[0]
	same := []struct{ name, in string }{
		{"identical", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"payload key order and space", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"j":"w","k":"v"},"payload":{ "a" : [1,{"x":3,"y":2}], "b":1 },"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"field order", `{"relationships":[{"type":"CAUSES","target_id":"$T"}],"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"agent_id":"a","context_id":"c","id":"$ID"}`},
		{"lowercase ids", `{"id":"$id","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$t","type":"CAUSES","metadata":{}}]}`},
		{"read back with server fields", string(stored)},
	}
	for _, tc := range same {
		t.Run("same/"+tc.name, func(t *testing.T) {
			before := v.head()
			in := decode(tc.in)
			res, err := v.e.CreateUnit(ctx, &in)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if res.Created || !bytes.Equal(res.Units[0], stored) {
				t.Errorf("Created=%v unit=%s, want false and %s", res.Created, res.Units[0], stored)
			}
			if v.head() != before {
				t.Errorf("retry wrote: head %d -> %d", before, v.head())
			}
		})
	}
	// Metadata omitted vs {}.
	id2 := newID()
	a := engine.UnitInput{ID: id2, ContextID: "c", AgentID: "a", Type: "PLAN"}
	r1, err := v.e.CreateUnit(ctx, &a)
	if err != nil {
		t.Fatal(err)
	}
	b := engine.UnitInput{ID: id2, ContextID: "c", AgentID: "a", Type: "PLAN", Metadata: map[string]string{}, Relationships: []engine.RelationshipInput{}}
	r2, err := v.e.CreateUnit(ctx, &b)
	if err != nil || r2.Created || !bytes.Equal(r1.Units[0], r2.Units[0]) {
		t.Errorf("metadata {} vs omitted: %v Created=%v", err, r2.Created)
	}

	conflicts := []struct{ name, in string }{
		{"other payload", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":2,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"number text", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1.0,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"array order", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[{"y":2,"x":3},1]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"no payload", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"other metadata", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"other type", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_RESULT","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"other agent", `{"id":"$ID","context_id":"c","agent_id":"b","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"other context", `{"id":"$ID","context_id":"d","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
		{"no relationships", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]}}`},
		{"relationship type", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"REFERENCES"}]}`},
		{"relationship metadata", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload":{"b":1,"a":[1,{"y":2,"x":3}]},"relationships":[{"target_id":"$T","type":"CAUSES","metadata":{"x":"y"}}]}`},
		{"payload as base64", `{"id":"$ID","context_id":"c","agent_id":"a","type":"TOOL_CALL","metadata":{"k":"v","j":"w"},"payload_base64":"AA==","relationships":[{"target_id":"$T","type":"CAUSES"}]}`},
	}
	for _, tc := range conflicts {
		t.Run("conflict/"+tc.name, func(t *testing.T) {
			before := v.head()
			in := decode(tc.in)
			_, err := v.e.CreateUnit(ctx, &in)
			wantErr(t, err, engine.ErrConflict, "id: ", id, "other content")
			if v.head() != before {
				t.Errorf("conflict wrote: head %d -> %d", before, v.head())
			}
			if got := v.getUnit(t, id); !bytes.Equal(got, stored) {
				t.Errorf("stored unit changed: %s", got)
			}
		})
	}
	t.Run("conflict in batch names the unit", func(t *testing.T) {
		before := v.head()
		in := decode(conflicts[0].in)
		_, err := v.e.CreateUnits(ctx, []engine.UnitInput{msg("c", "a"), in})
		wantErr(t, err, engine.ErrConflict, "units[1].id: ")
		if v.head() != before {
			t.Errorf("head %d -> %d", before, v.head())
		}
	})
}

func TestBatchRetry(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	a, b, c := newID(), newID(), newID()
	batch := []engine.UnitInput{
		{ID: a, ContextID: "k", AgentID: "x", Type: "MESSAGE", Payload: json.RawMessage(`{"n":1,"m":2}`)},
		{ID: b, ContextID: "k", AgentID: "x", Type: "PLAN", Relationships: []engine.RelationshipInput{{TargetID: a, Type: "SEQUENTIAL"}}},
	}
	first, err := v.e.CreateUnits(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	head := v.head()
	retry := []engine.UnitInput{
		{ID: strings.ToLower(a), ContextID: "k", AgentID: "x", Type: "MESSAGE", Payload: json.RawMessage(`{"m":2,"n":1}`)},
		{ID: b, ContextID: "k", AgentID: "x", Type: "PLAN", Relationships: []engine.RelationshipInput{{TargetID: strings.ToLower(a), Type: "SEQUENTIAL"}}},
	}
	res, err := v.e.CreateUnits(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || v.head() != head {
		t.Errorf("full retry: Created=%v head %d -> %d", res.Created, head, v.head())
	}
	for i := range res.Units {
		if !bytes.Equal(res.Units[i], first.Units[i]) {
			t.Errorf("units[%d] = %s, want %s", i, res.Units[i], first.Units[i])
		}
	}
	// A retry that adds a unit writes only the new one.
	mixed := append(retry, engine.UnitInput{ID: c, ContextID: "k", AgentID: "x", Type: "SYSTEM", Relationships: []engine.RelationshipInput{{TargetID: b, Type: "CAUSES"}}})
	res, err = v.e.CreateUnits(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || v.head() != head+1 {
		t.Errorf("partial retry: Created=%v head %d -> %d, want +1", res.Created, head, v.head())
	}
	if !bytes.Equal(res.Units[0], first.Units[0]) || parseUnit(t, res.Units[2]).Seq != head+1 {
		t.Errorf("partial retry units: %s", res.Units)
	}
}

// TestInvalidUTF8Payload: a payload string holding bytes that are not
// UTF-8 must not reach storage (and every later response) as such.
func TestInvalidUTF8Payload(t *testing.T) {
	v := newEnv(t)
	var in engine.UnitInput
	if err := jsonx.Decode([]byte("{\"context_id\":\"c\",\"agent_id\":\"a\",\"type\":\"MESSAGE\",\"payload\":\"a\xffb\"}"), &in); err != nil {
		return // rejected as bad input: fine
	}
	res, err := v.e.CreateUnit(context.Background(), &in)
	if err != nil {
		wantErr(t, err, engine.ErrInvalid, "payload")
		return
	}
	if !utf8Valid(res.Units[0]) {
		t.Fatalf("stored unit is not UTF-8: %q", res.Units[0])
	}
}
