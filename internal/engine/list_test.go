package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"engram/internal/engine"
)

var unitTypes = []string{"MESSAGE", "REASONING", "TOOL_CALL", "TOOL_RESULT", "OBSERVATION", "PLAN", "ERROR", "SYSTEM"}

// listFixture creates n units in context "c" (types and agents cycling)
// plus noise in context "other", and returns the units of "c" in seq order.
func listFixture(t *testing.T, v *env, n int) []unit {
	t.Helper()
	var out []unit
	for i := range n {
		in := engine.UnitInput{ContextID: "c", AgentID: fmt.Sprintf("agent%d", i%3), Type: unitTypes[i%4]}
		// Client ids that do not follow seq order.
		if i%2 == 0 {
			in.ID = fmt.Sprintf("%026d", 1000-i)
		}
		out = append(out, v.mustCreate(t, in))
		if i%5 == 0 {
			v.mustCreate(t, msg("other", "agent0"))
		}
	}
	return out
}

func unitIDs(us []unit) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func filterUnits(us []unit, f func(u unit) bool) []unit {
	var out []unit
	for _, u := range us {
		if f(u) {
			out = append(out, u)
		}
	}
	return out
}

// pageAll follows the cursor to the end and returns every id, failing on a
// repeat.
func pageAll(t *testing.T, v *env, q engine.ListQuery) ([]string, int) {
	t.Helper()
	var got []string
	pages := 0
	for {
		p, err := v.e.ListUnits(q)
		if err != nil {
			t.Fatalf("ListUnits(%+v): %v", q, err)
		}
		pages++
		if q.Limit > 0 && len(p.Units) > q.Limit {
			t.Fatalf("page of %d units, limit %d", len(p.Units), q.Limit)
		}
		got = append(got, ids(t, p.Units)...)
		if p.Next == "" {
			break
		}
		if pages > 100000 {
			t.Fatal("paging does not end")
		}
		q.Cursor = p.Next
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("unit %s listed twice", id)
		}
		seen[id] = true
	}
	return got, pages
}

func TestListUnits(t *testing.T) {
	v := newEnv(t)
	all := listFixture(t, v, 30)
	asc := unitIDs(all)
	desc := reversed(asc)
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("fixture seqs not increasing")
		}
	}
	byType := func(typ string) []unit { return filterUnits(all, func(u unit) bool { return u.Type == typ }) }
	byAgent := func(a string) []unit { return filterUnits(all, func(u unit) bool { return u.AgentID == a }) }
	mid := all[10].ID
	late := all[25].ID

	tests := []struct {
		name string
		q    engine.ListQuery
		want []string
	}{
		{"default desc", engine.ListQuery{ContextID: "c"}, desc},
		{"asc", engine.ListQuery{ContextID: "c", Asc: true}, asc},
		{"limit", engine.ListQuery{ContextID: "c", Limit: 3}, desc[:3]},
		{"limit asc", engine.ListQuery{ContextID: "c", Limit: 3, Asc: true}, asc[:3]},
		{"before", engine.ListQuery{ContextID: "c", Before: mid}, reversed(asc[:10])},
		{"before asc", engine.ListQuery{ContextID: "c", Before: mid, Asc: true}, asc[:10]},
		{"after", engine.ListQuery{ContextID: "c", After: mid}, reversed(asc[11:])},
		{"after asc", engine.ListQuery{ContextID: "c", After: mid, Asc: true}, asc[11:]},
		{"between", engine.ListQuery{ContextID: "c", After: mid, Before: late, Asc: true}, asc[11:25]},
		{"between lowercase ids", engine.ListQuery{ContextID: "c", After: strings.ToLower(mid), Before: strings.ToLower(late)}, reversed(asc[11:25])},
		{"empty range", engine.ListQuery{ContextID: "c", After: late, Before: mid}, nil},
		{"adjacent bounds", engine.ListQuery{ContextID: "c", After: all[10].ID, Before: all[11].ID}, nil},
		{"type", engine.ListQuery{ContextID: "c", Type: "TOOL_CALL"}, reversed(unitIDs(byType("TOOL_CALL")))},
		{"type none", engine.ListQuery{ContextID: "c", Type: "SYSTEM"}, nil},
		{"agent asc", engine.ListQuery{ContextID: "c", AgentID: "agent1", Asc: true}, unitIDs(byAgent("agent1"))},
		{"agent unknown", engine.ListQuery{ContextID: "c", AgentID: "nobody"}, nil},
		{"type and agent", engine.ListQuery{ContextID: "c", Type: "MESSAGE", AgentID: "agent0", Asc: true},
			unitIDs(filterUnits(all, func(u unit) bool { return u.Type == "MESSAGE" && u.AgentID == "agent0" }))},
		{"type after", engine.ListQuery{ContextID: "c", Type: "REASONING", After: mid, Asc: true},
			unitIDs(filterUnits(all[11:], func(u unit) bool { return u.Type == "REASONING" }))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.e.ListUnits(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			got := ids(t, p.Units)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if tc.q.Limit == 0 && p.Next != "" {
				t.Errorf("Next = %q on a complete listing", p.Next)
			}
		})
		// Every limit pages through the same units exactly once.
		t.Run(tc.name+"/paged", func(t *testing.T) {
			for _, limit := range []int{1, 2, 7, len(tc.want), len(tc.want) + 1} {
				if limit == 0 {
					continue
				}
				q := tc.q
				if q.Limit != 0 {
					continue
				}
				q.Limit = limit
				got, pages := pageAll(t, v, q)
				if !slices.Equal(got, tc.want) {
					t.Errorf("limit %d: got %v\nwant %v", limit, got, tc.want)
				}
				if max := (len(tc.want)+limit-1)/limit + 1; pages > max {
					t.Errorf("limit %d: %d pages for %d units", limit, pages, len(tc.want))
				}
			}
		})
	}
}

func TestListUnitsErrors(t *testing.T) {
	v := newEnv(t)
	all := listFixture(t, v, 5)
	p, err := v.e.ListUnits(engine.ListQuery{ContextID: "c", Limit: 1})
	if err != nil || p.Next == "" {
		t.Fatalf("setup: %v %q", err, p.Next)
	}
	descCursor := p.Next
	ctxs, ctxCursor, err := v.e.ListContexts(1, "")
	if err != nil || len(ctxs) != 1 || ctxCursor == "" {
		t.Fatalf("setup: %v", err)
	}
	tests := []struct {
		name string
		q    engine.ListQuery
		kind error
		subs []string
	}{
		{"no context", engine.ListQuery{}, engine.ErrInvalid, []string{"context_id: required"}},
		{"bad context", engine.ListQuery{ContextID: "a b"}, engine.ErrInvalid, []string{"context_id: "}},
		{"unknown context", engine.ListQuery{ContextID: "nope"}, engine.ErrNotFound, []string{`"nope"`}},
		{"limit high", engine.ListQuery{ContextID: "c", Limit: 1001}, engine.ErrInvalid, []string{"limit: 1001"}},
		{"limit negative", engine.ListQuery{ContextID: "c", Limit: -5}, engine.ErrInvalid, []string{"limit: "}},
		{"bad type", engine.ListQuery{ContextID: "c", Type: "NOPE"}, engine.ErrInvalid, []string{"type: unknown work unit type"}},
		{"bad agent", engine.ListQuery{ContextID: "c", AgentID: "a/b"}, engine.ErrInvalid, []string{"agent_id: "}},
		{"bad before", engine.ListQuery{ContextID: "c", Before: "x"}, engine.ErrInvalid, []string{"before: ", "not a ULID"}},
		{"unknown after", engine.ListQuery{ContextID: "c", After: newID()}, engine.ErrInvalid, []string{"after: ", "not found"}},
		{"garbage cursor", engine.ListQuery{ContextID: "c", Cursor: "!!!"}, engine.ErrInvalid, []string{"cursor: "}},
		{"desc cursor used asc", engine.ListQuery{ContextID: "c", Cursor: descCursor, Asc: true}, engine.ErrInvalid, []string{"cursor: "}},
		{"context cursor", engine.ListQuery{ContextID: "c", Cursor: ctxCursor}, engine.ErrInvalid, []string{"cursor: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.e.ListUnits(tc.q)
			wantErr(t, err, tc.kind, tc.subs...)
		})
	}
	_ = all
}

// TestListUnitsFilteredScanBudget: a filtered page examines at most 10,000
// index entries, so a sparse filter yields short pages with a cursor; paging
// on finds every match.
func TestListUnitsFilteredScanBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,500 units")
	}
	v := newEnv(t)
	ctx := context.Background()
	const total = 10500
	match := map[int]bool{0: true, 1: true, 4999: true, 10499: true}
	var want []string // seq order
	batch := make([]engine.UnitInput, 0, 1000)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		res, err := v.e.CreateUnits(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, raw := range res.Units {
			if batch[i].Type == "PLAN" {
				want = append(want, parseUnit(t, raw).ID)
			}
		}
		batch = batch[:0]
	}
	for i := range total {
		in := engine.UnitInput{ContextID: "big", AgentID: "bulk", Type: "MESSAGE"}
		if match[i] {
			in.Type, in.AgentID = "PLAN", "rare"
		}
		batch = append(batch, in)
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()

	for _, q := range []engine.ListQuery{
		{ContextID: "big", Type: "PLAN", Limit: 10},
		{ContextID: "big", AgentID: "rare", Limit: 10},
		{ContextID: "big", Type: "PLAN", Limit: 10, Asc: true},
	} {
		t.Run(fmt.Sprintf("type=%s agent=%s asc=%v", q.Type, q.AgentID, q.Asc), func(t *testing.T) {
			p, err := v.e.ListUnits(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Units) >= q.Limit || p.Next == "" {
				t.Fatalf("first page: %d units, Next %q; want fewer than %d and a cursor", len(p.Units), p.Next, q.Limit)
			}
			// Newest first, the first 10,000 entries hold seqs 10499 and 4999;
			// oldest first, 0, 1 and 4999.
			wantFirst := 2
			if q.Asc {
				wantFirst = 3
			}
			if len(p.Units) != wantFirst {
				t.Errorf("first page has %d units, want %d", len(p.Units), wantFirst)
			}
			got, pages := pageAll(t, v, q)
			w := want
			if !q.Asc {
				w = reversed(want)
			}
			if !slices.Equal(got, w) {
				t.Errorf("paged: %v, want %v", got, w)
			}
			if pages != 2 {
				t.Errorf("%d pages, want 2", pages)
			}
		})
	}
	// Unfiltered listings are bounded by the limit, not the budget.
	p, err := v.e.ListUnits(engine.ListQuery{ContextID: "big", Limit: 1000})
	if err != nil || len(p.Units) != 1000 || p.Next == "" {
		t.Errorf("unfiltered page: %d units %v", len(p.Units), err)
	}
}
