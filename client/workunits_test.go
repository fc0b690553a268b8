package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"engram/internal/server"
)

func TestCreateAndGetUnit(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	in := WorkUnitCreate{
		ID: NewID(), ContextID: "c1", AgentID: "a1", Type: UnitToolResult,
		Metadata: map[string]string{"tool": "search"},
		Payload:  json.RawMessage(`{"results": 3, "items": ["x", "y"]}`),
	}
	u, created, err := c.CreateUnit(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !created || u.ID != in.ID || u.Seq == 0 || u.ContextID != "c1" || u.AgentID != "a1" || u.Type != UnitToolResult ||
		u.Metadata["tool"] != "search" || u.Timestamp.IsZero() || u.PayloadBase64 != nil || u.Relationships == nil {
		t.Fatalf("created %v %+v", created, u)
	}
	var payload struct {
		Results int      `json:"results"`
		Items   []string `json:"items"`
	}
	if err := json.Unmarshal(u.Payload, &payload); err != nil || payload.Results != 3 || len(payload.Items) != 2 {
		t.Fatalf("payload %s: %v", u.Payload, err)
	}
	// The context came into being with the unit.
	if cx, err := c.GetContext(ctx, "c1"); err != nil || !slices.Equal(cx.AgentIDs, []string{"a1"}) {
		t.Fatalf("context: %+v, %v", cx, err)
	}

	// The same id and content again: 200, the stored unit.
	again, created, err := c.CreateUnit(ctx, in)
	if err != nil || created || again.Seq != u.Seq || !again.Timestamp.Equal(u.Timestamp) {
		t.Fatalf("retry: created=%v %+v %v", created, again, err)
	}
	// A unit read back is a valid retry too.
	got, err := c.GetUnit(ctx, strings.ToLower(u.ID))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != u.Seq || got.ID != u.ID || !bytes.Equal(compact(t, got.Payload), compact(t, u.Payload)) {
		t.Fatalf("get %+v, want %+v", got, u)
	}
	if _, created, err := c.CreateUnit(ctx, got.Retry()); err != nil || created {
		t.Fatalf("retry of a read-back unit: created=%v %v", created, err)
	}
	// The same id with other content: 409.
	in.Payload = json.RawMessage(`"other"`)
	_, _, err = c.CreateUnit(ctx, in)
	var e *Error
	if !errors.As(err, &e) || e.Status != 409 || !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}

	// Binary payloads, a null payload and no payload.
	bin := []byte{0, 1, 2, 0xff, 'x'}
	b, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c1", AgentID: "a1", Type: UnitObservation, PayloadBase64: BinaryPayload(bin)})
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := b.Binary(); err != nil || !bytes.Equal(dec, bin) || b.Payload != nil {
		t.Fatalf("binary: %q %v (payload %s)", dec, err, b.Payload)
	}
	null, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c1", AgentID: "a1", Type: UnitObservation, Payload: json.RawMessage(`null`)})
	if err != nil || null.Payload != nil || null.PayloadBase64 != nil { // the server stores null as none
		t.Fatalf("null payload: %s %v", null.Payload, err)
	}
	none, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c1", AgentID: "a1", Type: UnitObservation})
	if err != nil || none.Payload != nil || none.PayloadBase64 != nil {
		t.Fatalf("no payload: %+v %v", none, err)
	}
	if dec, err := none.Binary(); dec != nil || err != nil {
		t.Fatalf("Binary of no payload: %q %v", dec, err)
	}
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestUnitErrors(t *testing.T) {
	ts := startWith(t, server.Config{MaxBody: 4096})
	ctx := ctxT(t)
	c := ts.c
	for _, tc := range []struct {
		name    string
		call    func() error
		status  int
		sent    error
		message string
	}{
		{"unknown type", func() error {
			_, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", AgentID: "a", Type: "FOO"})
			return err
		}, 400, ErrInvalidArgument, `type: unknown work unit type "FOO"`},
		{"missing agent", func() error {
			_, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", Type: UnitMessage})
			return err
		}, 400, ErrInvalidArgument, "agent_id"},
		{"both payloads", func() error {
			_, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", AgentID: "a", Type: UnitMessage,
				Payload: json.RawMessage(`1`), PayloadBase64: BinaryPayload([]byte("x"))})
			return err
		}, 400, ErrInvalidArgument, "payload"},
		{"missing relationship target", func() error {
			_, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", AgentID: "a", Type: UnitMessage,
				Relationships: []Relationship{{TargetID: NewID(), Type: RelCauses}}})
			return err
		}, 400, ErrInvalidArgument, "relationships[0].target_id"},
		{"too large", func() error {
			_, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c", AgentID: "a", Type: UnitMessage,
				Payload: json.RawMessage(`"` + strings.Repeat("x", 5000) + `"`)})
			return err
		}, 413, ErrPayloadTooLarge, ""},
		{"empty batch", func() error { _, _, err := c.CreateUnits(ctx, nil); return err }, 400, ErrInvalidArgument, "units"},
		{"batch names the index", func() error {
			_, _, err := c.CreateUnits(ctx, []WorkUnitCreate{
				{ContextID: "c", AgentID: "a", Type: UnitMessage},
				{ContextID: "c", AgentID: "a", Type: "BAR"},
			})
			return err
		}, 400, ErrInvalidArgument, "units[1].type"},
		{"get malformed id", func() error { _, err := c.GetUnit(ctx, "not-a-ulid"); return err }, 400, ErrInvalidArgument, "id"},
		{"get missing", func() error { _, err := c.GetUnit(ctx, NewID()); return err }, 404, ErrNotFound, "not found"},
		{"list unknown context", func() error { _, err := c.ListUnits(ctx, "nope", ListUnitsOptions{}); return err }, 404, ErrNotFound, ""},
		{"list bad order", func() error { _, err := c.ListUnits(ctx, "c", ListUnitsOptions{Order: "up"}); return err }, 400, ErrInvalidArgument, "order"},
		{"related missing", func() error { _, err := c.Related(ctx, NewID(), RelatedOptions{}); return err }, 404, ErrNotFound, ""},
		{"related bad direction", func() error {
			_, err := c.Related(ctx, NewID(), RelatedOptions{Direction: "sideways"})
			return err
		}, 400, ErrInvalidArgument, "direction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || !errors.Is(err, tc.sent) || !strings.Contains(e.Message, tc.message) {
				t.Fatalf("err = %#v, want %d containing %q", err, tc.status, tc.message)
			}
		})
	}
	// Nothing was written by the failures (not even a context).
	if _, err := c.GetContext(ctx, "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("context c after failed writes: %v", err)
	}
}

func TestCreateUnitsBatch(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	first := NewID()
	in := []WorkUnitCreate{
		{ID: first, ContextID: "b1", AgentID: "a1", Type: UnitPlan, Payload: json.RawMessage(`"plan"`)},
		{ContextID: "b1", AgentID: "a2", Type: UnitToolCall, Relationships: []Relationship{{TargetID: first, Type: RelDependsOn}}},
		{ContextID: "b2", AgentID: "a3", Type: UnitMessage},
	}
	units, created, err := ts.c.CreateUnits(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !created || len(units) != 3 || units[0].ID != first || units[1].Relationships[0].TargetID != first ||
		units[1].Relationships[0].Metadata == nil {
		t.Fatalf("created=%v %+v", created, units)
	}
	for i := 1; i < len(units); i++ {
		if units[i].Seq != units[i-1].Seq+1 {
			t.Fatalf("seqs not contiguous: %d then %d", units[i-1].Seq, units[i].Seq)
		}
	}
	// Every unit already there: 200, the stored units.
	again, created, err := ts.c.CreateUnits(ctx, []WorkUnitCreate{units[0].Retry(), units[1].Retry()})
	if err != nil || created || again[0].Seq != units[0].Seq || again[1].Seq != units[1].Seq {
		t.Fatalf("retry: created=%v %+v %v", created, again, err)
	}
	// One of them with other content: the whole batch is 409.
	changed := units[0].Retry()
	changed.Payload = json.RawMessage(`"changed"`)
	if _, _, err := ts.c.CreateUnits(ctx, []WorkUnitCreate{{ContextID: "b1", AgentID: "a1", Type: UnitMessage}, changed}); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting batch: %v", err)
	}
}

func TestListUnitsAndAllUnits(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	const n = 250
	batch := make([]WorkUnitCreate, n)
	for i := range batch {
		typ, agent := UnitMessage, "even"
		if i%2 == 1 {
			typ, agent = UnitReasoning, "odd"
		}
		batch[i] = WorkUnitCreate{ContextID: "l", AgentID: agent, Type: typ, Payload: json.RawMessage(`1`)}
	}
	units, _, err := ts.c.CreateUnits(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	seqs := func(us []WorkUnit) []uint64 {
		out := make([]uint64, len(us))
		for i, u := range us {
			out[i] = u.Seq
		}
		return out
	}
	all := seqs(units)

	// Default: newest first, 100.
	page, err := ts.c.ListUnits(ctx, "l", ListUnitsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Units) != 100 || page.Units[0].Seq != all[n-1] || page.NextCursor == nil {
		t.Fatalf("default page: %d units, first %d", len(page.Units), page.Units[0].Seq)
	}
	// Pages by hand, oldest first.
	var got []uint64
	opts := ListUnitsOptions{Order: OrderAsc, Limit: 70}
	for {
		page, err := ts.c.ListUnits(ctx, "l", opts)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqs(page.Units)...)
		if page.NextCursor == nil {
			break
		}
		opts.Cursor = *page.NextCursor
	}
	if !slices.Equal(got, all) {
		t.Fatalf("asc pages: %v", got)
	}

	collect := func(opts ListUnitsOptions) []uint64 {
		t.Helper()
		var out []uint64
		for u, err := range ts.c.AllUnits(ctx, "l", opts) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, u.Seq)
		}
		return out
	}
	if got := collect(ListUnitsOptions{Order: OrderAsc}); !slices.Equal(got, all) {
		t.Fatalf("AllUnits asc: %v", got)
	}
	desc := slices.Clone(all)
	slices.Reverse(desc)
	if got := collect(ListUnitsOptions{Limit: 33}); !slices.Equal(got, desc) {
		t.Fatalf("AllUnits desc: %v", got)
	}
	// Filters and bounds.
	if got := collect(ListUnitsOptions{Order: OrderAsc, Type: UnitReasoning}); len(got) != n/2 || got[0] != all[1] {
		t.Fatalf("type filter: %d units", len(got))
	}
	if got := collect(ListUnitsOptions{Order: OrderAsc, AgentID: "even", Limit: 10}); len(got) != n/2 || got[0] != all[0] {
		t.Fatalf("agent filter: %d units", len(got))
	}
	if got := collect(ListUnitsOptions{Order: OrderAsc, After: units[9].ID, Before: units[20].ID}); !slices.Equal(got, all[10:20]) {
		t.Fatalf("after/before: %v", got)
	}
	// An error ends the iteration after being yielded once.
	calls := 0
	for _, err := range ts.c.AllUnits(ctx, "missing", ListUnitsOptions{}) {
		calls++
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	}
	if calls != 1 {
		t.Fatalf("yielded %d times", calls)
	}
}

func TestRelated(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	mk := func(rels ...Relationship) *WorkUnit {
		t.Helper()
		u, _, err := ts.c.CreateUnit(ctx, WorkUnitCreate{ContextID: "r", AgentID: "a", Type: UnitMessage, Relationships: rels})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a := mk()
	b := mk(Relationship{TargetID: a.ID, Type: RelCauses, Metadata: map[string]string{"why": "because"}})
	c := mk(Relationship{TargetID: a.ID, Type: RelReferences}, Relationship{TargetID: b.ID, Type: RelRespondsTo})

	ids := func(id string, opts RelatedOptions) []string {
		t.Helper()
		var out []string
		for u, err := range ts.c.AllRelated(ctx, id, opts) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, u.ID)
		}
		return out
	}
	sorted := func(s ...string) []string { return slices.Sorted(slices.Values(s)) }
	if got := ids(c.ID, RelatedOptions{Direction: DirectionOut}); !slices.Equal(got, []string{a.ID, b.ID}) {
		t.Errorf("out of c: %v", got)
	}
	if got := ids(a.ID, RelatedOptions{Direction: DirectionIn}); !slices.Equal(sorted(got...), sorted(b.ID, c.ID)) {
		t.Errorf("in of a: %v", got)
	}
	if got := ids(a.ID, RelatedOptions{Direction: DirectionIn, Type: RelCauses}); !slices.Equal(got, []string{b.ID}) {
		t.Errorf("in of a, CAUSES: %v", got)
	}
	if got := ids(b.ID, RelatedOptions{Limit: 1}); !slices.Equal(got, []string{a.ID, c.ID}) {
		t.Errorf("both of b, one per page: %v", got)
	}
	page, err := ts.c.Related(ctx, b.ID, RelatedOptions{Direction: DirectionOut})
	if err != nil || len(page.Units) != 1 || page.Units[0].ID != a.ID || page.NextCursor != nil {
		t.Fatalf("Related page: %+v %v", page, err)
	}
	if b.Relationships[0].Metadata["why"] != "because" {
		t.Errorf("relationship metadata: %+v", b.Relationships)
	}
}
