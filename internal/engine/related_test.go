package engine_test

import (
	"slices"
	"strings"
	"testing"

	"engram/internal/engine"
)

func rel(target, typ string) engine.RelationshipInput {
	return engine.RelationshipInput{TargetID: target, Type: typ}
}

// relatedAll pages with the given limit and returns every id in order.
func relatedAll(t *testing.T, v *env, q engine.RelatedQuery) []string {
	t.Helper()
	var got []string
	for range 1000 {
		p, err := v.e.Related(q)
		if err != nil {
			t.Fatalf("Related(%+v): %v", q, err)
		}
		if q.Limit > 0 && len(p.Units) > q.Limit {
			t.Fatalf("page of %d, limit %d", len(p.Units), q.Limit)
		}
		got = append(got, ids(t, p.Units)...)
		if p.Next == "" {
			return got
		}
		q.Cursor = p.Next
	}
	t.Fatal("paging does not end")
	return nil
}

func TestRelated(t *testing.T) {
	v := newEnv(t)
	a := v.mustCreate(t, msg("c", "x")).ID
	b := v.mustCreate(t, msg("c", "x")).ID
	// x relates to a twice (two types) and to b. (Non-adjacent repeats
	// are TestRelatedOutOnceAcrossPages.)
	xin := msg("c", "x")
	xin.Relationships = []engine.RelationshipInput{rel(a, "CAUSES"), rel(a, "REFERENCES"), rel(b, "REFERENCES")}
	x := v.mustCreate(t, xin).ID
	// Sources of x, created with ids in a known order: s1 < s2 < s3.
	s1, s2, s3 := newID(), newID(), newID()
	in3 := engine.UnitInput{ID: s3, ContextID: "d", AgentID: "y", Type: "PLAN", Relationships: []engine.RelationshipInput{rel(x, "RESPONDS_TO")}}
	v.mustCreate(t, in3)
	in1 := engine.UnitInput{ID: s1, ContextID: "d", AgentID: "y", Type: "PLAN", Relationships: []engine.RelationshipInput{rel(x, "CAUSES"), rel(x, "DEPENDS_ON"), rel(a, "CAUSES")}}
	v.mustCreate(t, in1)
	in2 := engine.UnitInput{ID: s2, ContextID: "c", AgentID: "y", Type: "PLAN", Relationships: []engine.RelationshipInput{rel(strings.ToLower(x), "DEPENDS_ON")}}
	v.mustCreate(t, in2)

	tests := []struct {
		name string
		q    engine.RelatedQuery
		want []string
	}{
		{"out", engine.RelatedQuery{ID: x, Direction: "out"}, []string{a, b}},
		{"in", engine.RelatedQuery{ID: x, Direction: "in"}, []string{s1, s2, s3}},
		{"both", engine.RelatedQuery{ID: x, Direction: "both"}, []string{a, b, s1, s2, s3}},
		{"default both", engine.RelatedQuery{ID: strings.ToLower(x)}, []string{a, b, s1, s2, s3}},
		{"out CAUSES", engine.RelatedQuery{ID: x, Direction: "out", Type: "CAUSES"}, []string{a}},
		{"out REFERENCES", engine.RelatedQuery{ID: x, Direction: "out", Type: "REFERENCES"}, []string{a, b}},
		{"in DEPENDS_ON", engine.RelatedQuery{ID: x, Direction: "in", Type: "DEPENDS_ON"}, []string{s1, s2}},
		{"in CAUSES", engine.RelatedQuery{ID: x, Direction: "in", Type: "CAUSES"}, []string{s1}},
		{"both RESPONDS_TO", engine.RelatedQuery{ID: x, Type: "RESPONDS_TO"}, []string{s3}},
		{"both SEQUENTIAL", engine.RelatedQuery{ID: x, Type: "SEQUENTIAL"}, nil},
		{"target in", engine.RelatedQuery{ID: a, Direction: "in"}, []string{x, s1}},
		{"target out", engine.RelatedQuery{ID: a, Direction: "out"}, nil},
		{"leaf", engine.RelatedQuery{ID: s3, Direction: "in"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.e.Related(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(t, p.Units); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if p.Next != "" {
				t.Errorf("Next %q on a complete page", p.Next)
			}
		})
		t.Run(tc.name+"/paged", func(t *testing.T) {
			for _, limit := range []int{1, 2, 3} {
				q := tc.q
				q.Limit = limit
				if got := relatedAll(t, v, q); !slices.Equal(got, tc.want) {
					t.Errorf("limit %d: got %v\nwant %v", limit, got, tc.want)
				}
			}
		})
	}
}

// TestRelatedOutOnceAcrossPages: a target named by two relationships that
// are not adjacent appears once, even when the listing is paged.
func TestRelatedOutOnceAcrossPages(t *testing.T) {
	v := newEnv(t)
	a := v.mustCreate(t, msg("c", "x")).ID
	b := v.mustCreate(t, msg("c", "x")).ID
	in := msg("c", "x")
	in.Relationships = []engine.RelationshipInput{rel(a, "CAUSES"), rel(b, "CAUSES"), rel(a, "REFERENCES")}
	x := v.mustCreate(t, in).ID
	want := []string{a, b}
	if got := ids(t, mustPage(t, v, engine.RelatedQuery{ID: x, Direction: "out"}).Units); !slices.Equal(got, want) {
		t.Fatalf("unpaged: %v, want %v", got, want)
	}
	if got := relatedAll(t, v, engine.RelatedQuery{ID: x, Direction: "out", Limit: 1}); !slices.Equal(got, want) {
		t.Errorf("limit 1: %v, want %v", got, want)
	}
}

func mustPage(t *testing.T, v *env, q engine.RelatedQuery) engine.ListPage {
	t.Helper()
	p, err := v.e.Related(q)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRelatedErrors(t *testing.T) {
	v := newEnv(t)
	a := v.mustCreate(t, msg("c", "x")).ID
	in := msg("c", "x")
	in.Relationships = []engine.RelationshipInput{rel(a, "CAUSES")}
	v.mustCreate(t, in)
	lc, _ := pageCursor(t, v)
	tests := []struct {
		name string
		q    engine.RelatedQuery
		kind error
		subs []string
	}{
		{"bad id", engine.RelatedQuery{ID: "zzz"}, engine.ErrInvalid, []string{"id: ", "not a ULID"}},
		{"unknown id", engine.RelatedQuery{ID: newID()}, engine.ErrNotFound, []string{"not found"}},
		{"bad direction", engine.RelatedQuery{ID: a, Direction: "sideways"}, engine.ErrInvalid, []string{`direction: unknown direction "sideways"`}},
		{"bad type", engine.RelatedQuery{ID: a, Type: "FRIEND"}, engine.ErrInvalid, []string{"type: unknown relationship type"}},
		{"bad limit", engine.RelatedQuery{ID: a, Limit: 1001}, engine.ErrInvalid, []string{"limit: "}},
		{"garbage cursor", engine.RelatedQuery{ID: a, Cursor: "***"}, engine.ErrInvalid, []string{"cursor: "}},
		{"list cursor", engine.RelatedQuery{ID: a, Cursor: lc}, engine.ErrInvalid, []string{"cursor: "}},
		{"bad out cursor", engine.RelatedQuery{ID: a, Cursor: "cmVsOm94"}, engine.ErrInvalid, []string{"cursor: "}},        // rel:ox
		{"negative out cursor", engine.RelatedQuery{ID: a, Cursor: "cmVsOm8tMQ"}, engine.ErrInvalid, []string{"cursor: "}}, // rel:o-1
		{"bad in cursor", engine.RelatedQuery{ID: a, Cursor: "cmVsOmlAQA"}, engine.ErrInvalid, []string{"cursor: "}},       // rel:i@@
		{"empty rel cursor", engine.RelatedQuery{ID: a, Cursor: "cmVsOg"}, engine.ErrInvalid, []string{"cursor: "}},        // rel:
		{"unknown rel cursor", engine.RelatedQuery{ID: a, Cursor: "cmVsOnp4"}, engine.ErrInvalid, []string{"cursor: "}},    // rel:zx
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.e.Related(tc.q)
			wantErr(t, err, tc.kind, tc.subs...)
		})
	}
}

func pageCursor(t *testing.T, v *env) (string, error) {
	t.Helper()
	p, err := v.e.ListUnits(engine.ListQuery{ContextID: "c", Limit: 1})
	if err != nil || p.Next == "" {
		t.Fatalf("setup: %v", err)
	}
	return p.Next, nil
}
