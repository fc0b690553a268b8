package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

var unitTypes = []string{"MESSAGE", "REASONING", "TOOL_CALL", "TOOL_RESULT", "OBSERVATION", "PLAN", "ERROR", "SYSTEM"}

func TestListUnits(t *testing.T) {
	p := startServer(t, t.TempDir())

	// 240 units in one batch: two of every three in lctx, the others in
	// "other", so lctx's seqs have holes. The client-chosen ids decrease
	// while seqs increase: listings must follow seq, not id.
	const n = 240
	ids := make([]string, n)
	for i := range ids {
		ids[i] = ulid.MustNew(ulid.Now()-uint64(i), ulid.DefaultEntropy()).String()
	}
	var units []map[string]any
	for i, id := range ids {
		ctx := "lctx"
		if i%3 == 2 {
			ctx = "other"
		}
		units = append(units, map[string]any{"id": id, "context_id": ctx, "agent_id": fmt.Sprintf("ag-%d", i%5),
			"type": unitTypes[i%len(unitTypes)], "payload": i})
	}
	p.must(t, 201, "POST", "/v1/workunits/batch", map[string]any{"units": units})

	// all is lctx's units in seq order, as the ground truth.
	var all []unitJSON
	for i, id := range ids {
		if i%3 == 2 {
			continue
		}
		u := decodeUnit(t, p.must(t, 200, "GET", "/v1/workunits/"+id, nil))
		all = append(all, u)
	}
	if len(all) != 160 {
		t.Fatalf("%d units in lctx, want 160", len(all))
	}
	reversed := slices.Clone(all)
	slices.Reverse(reversed)
	filter := func(us []unitJSON, keep func(unitJSON) bool) []unitJSON {
		var out []unitJSON
		for _, u := range us {
			if keep(u) {
				out = append(out, u)
			}
		}
		return out
	}
	base := "/v1/contexts/lctx/workunits"

	cases := []struct {
		name  string
		query string
		want  []unitJSON
	}{
		{"asc", "order=asc&limit=1000", all},
		{"desc explicit", "order=desc&limit=1000", reversed},
		{"asc pages of 7", "order=asc&limit=7", all},
		{"desc pages of 9", "limit=9", reversed},
		{"asc pages of 1", "order=asc&limit=1", all},
		{"asc one exact page", "order=asc&limit=160", all},
		{"after, asc", "order=asc&after=" + all[40].ID, all[41:]},
		{"after, desc", "after=" + all[40].ID, reversed[:len(all)-41]},
		{"before, desc", "before=" + all[40].ID, reversed[len(all)-40:]},
		{"before, asc, paged", "order=asc&limit=6&before=" + all[40].ID, all[:40]},
		{"after and before", "order=asc&limit=5&after=" + all[10].ID + "&before=" + all[20].ID, all[11:20]},
		{"after and before, lower-case ids", "after=" + strings.ToLower(all[10].ID) + "&before=" + strings.ToLower(all[20].ID), reversed[len(all)-20 : len(all)-11]},
		{"after the last", "after=" + all[159].ID, nil},
		{"before the first", "order=asc&before=" + all[0].ID, nil},
		{"after equals before", "after=" + all[5].ID + "&before=" + all[5].ID, nil},
		{"type", "type=TOOL_CALL&limit=3", filter(reversed, func(u unitJSON) bool { return u.Type == "TOOL_CALL" })},
		{"agent_id", "order=asc&agent_id=ag-1&limit=4", filter(all, func(u unitJSON) bool { return u.AgentID == "ag-1" })},
		{"type and agent_id", "order=asc&agent_id=ag-3&type=PLAN", filter(all, func(u unitJSON) bool { return u.AgentID == "ag-3" && u.Type == "PLAN" })},
		{"type with no match", "type=SYSTEM&agent_id=ag-0&order=asc", filter(all, func(u unitJSON) bool { return u.AgentID == "ag-0" && u.Type == "SYSTEM" })},
		{"unknown agent", "agent_id=nobody", nil},
		{"filter and bounds", "order=asc&type=MESSAGE&after=" + all[3].ID + "&before=" + all[100].ID,
			filter(all[4:100], func(u unitJSON) bool { return u.Type == "MESSAGE" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raws, _ := listAll(t, p, base+"?"+tc.query, "units")
			got := decodeUnits(t, raws)
			if !slices.Equal(unitIDs(got), unitIDs(tc.want)) {
				t.Errorf("listing %s:\n got %d units %v\nwant %d units %v", tc.query, len(got), seqs(got), len(tc.want), seqs(tc.want))
			}
			for _, u := range got {
				if u.ContextID != "lctx" {
					t.Errorf("unit %s of context %q in lctx's listing", u.ID, u.ContextID)
				}
			}
		})
	}

	t.Run("default limit is 100, newest first", func(t *testing.T) {
		for _, q := range []string{"", "?limit=", "?order=desc"} {
			pg := decodePage(t, "units", p.must(t, 200, "GET", base+q, nil))
			got := decodeUnits(t, pg.Items)
			if !slices.Equal(unitIDs(got), unitIDs(reversed[:100])) || pg.Next == "" {
				t.Errorf("%q: %d units (seqs %v), next %q; want the newest 100 and a cursor", q, len(got), seqs(got), pg.Next)
			}
			// The cursor continues where the page ended.
			pg2 := decodePage(t, "units", p.must(t, 200, "GET", base+"?cursor="+url.QueryEscape(pg.Next), nil))
			if got := decodeUnits(t, pg2.Items); !slices.Equal(unitIDs(got), unitIDs(reversed[100:])) || pg2.Next != "" {
				t.Errorf("second page: seqs %v next %q", seqs(got), pg2.Next)
			}
		}
	})
	t.Run("listing bodies are the stored units", func(t *testing.T) {
		raws, _ := listAll(t, p, base+"?order=asc&limit=50", "units")
		for _, raw := range raws {
			var u unitJSON
			if err := json.Unmarshal(raw, &u); err != nil {
				t.Fatal(err)
			}
			if got := p.must(t, 200, "GET", "/v1/workunits/"+u.ID, nil); string(got) != string(raw) {
				t.Errorf("listed\n%s\nGET\n%s", raw, got)
			}
		}
	})
	t.Run("bad queries", func(t *testing.T) {
		asc := decodePage(t, "units", p.must(t, 200, "GET", base+"?order=asc&limit=2", nil))
		ctxPage := decodePage(t, "contexts", p.must(t, 200, "GET", "/v1/contexts?limit=1", nil))
		for _, tc := range []struct{ query, field string }{
			{"limit=1001", "limit"},
			{"limit=0", "limit"},
			{"limit=-1", "limit"},
			{"limit=abc", "limit"},
			{"order=sideways", "order"},
			{"order=ASC", "order"},
			{"type=FOO", "type"},
			{"type=message", "type"},
			{"agent_id=" + url.QueryEscape("a/b"), "agent_id"},
			{"agent_id=" + strings.Repeat("a", 129), "agent_id"},
			{"before=not-a-ulid", "before"},
			{"after=not-a-ulid", "after"},
			{"before=" + newID(), "before"},
			{"cursor=garbage!", "cursor"},
			{"cursor=" + url.QueryEscape(asc.Next), "cursor"}, // an asc cursor in a desc listing
			{"cursor=" + url.QueryEscape(ctxPage.Next), "cursor"},
		} {
			checkError(t, p.call(t, "GET", base+"?"+tc.query, nil), 400, "invalid_argument", tc.field)
		}
		p.must(t, 200, "GET", base+"?limit=1000", nil)
		checkError(t, p.call(t, "GET", "/v1/contexts/nope/workunits", nil), 404, "not_found", "nope")
	})
}

func seqs(us []unitJSON) []uint64 {
	out := make([]uint64, len(us))
	for i, u := range us {
		out[i] = u.Seq
	}
	return out
}

func TestRelated(t *testing.T) {
	p := startServer(t, t.TempDir())
	// In id order, so that "in" (by source id) is predictable: A < B < C < D.
	ids := []string{newID(), newID(), newID(), newID()}
	slices.Sort(ids)
	A, B, C, D := ids[0], ids[1], ids[2], ids[3]
	rel := func(target, typ string) map[string]string { return map[string]string{"target_id": target, "type": typ} }
	p.must(t, 201, "POST", "/v1/workunits/batch", map[string]any{"units": []map[string]any{
		{"id": A, "context_id": "r", "agent_id": "ag", "type": "MESSAGE"},
		{"id": B, "context_id": "r", "agent_id": "ag", "type": "MESSAGE", "relationships": []any{rel(A, "CAUSES")}},
		{"id": C, "context_id": "r", "agent_id": "ag", "type": "MESSAGE", "relationships": []any{rel(A, "REFERENCES"), rel(B, "DEPENDS_ON")}},
	}})
	// D in its own request and another context: relationships cross contexts.
	p.must(t, 201, "POST", "/v1/workunits", map[string]any{"id": D, "context_id": "r2", "agent_id": "ag", "type": "MESSAGE",
		"relationships": []any{rel(C, "RESPONDS_TO"), rel(A, "CAUSES"), rel(C, "SEQUENTIAL")}})

	for _, tc := range []struct {
		id, query string
		want      []string
	}{
		{A, "direction=out", nil},
		{A, "direction=in", []string{B, C, D}},
		{A, "direction=both", []string{B, C, D}},
		{A, "", []string{B, C, D}},
		{A, "direction=in&type=CAUSES", []string{B, D}},
		{A, "direction=in&type=SEQUENTIAL", nil},
		{B, "direction=out", []string{A}},
		{B, "direction=in", []string{C}},
		{B, "direction=both", []string{A, C}},
		{C, "direction=out", []string{A, B}},
		{C, "direction=out&type=DEPENDS_ON", []string{B}},
		{C, "direction=in", []string{D}},
		{C, "direction=in&type=SEQUENTIAL", []string{D}},
		{C, "", []string{A, B, D}},
		{C, "limit=1", []string{A, B, D}},
		{D, "direction=out", []string{C, A}},
		{D, "direction=out&limit=1", []string{C, A}},
		{D, "limit=1", []string{C, A}},
		{D, "direction=out&type=CAUSES", []string{A}},
		{D, "direction=in", nil},
		{strings.ToLower(B), "direction=out", []string{A}},
	} {
		t.Run(tc.id[20:]+"?"+tc.query, func(t *testing.T) {
			raws, _ := listAll(t, p, "/v1/workunits/"+tc.id+"/related?"+tc.query, "units")
			if got := unitIDs(decodeUnits(t, raws)); !slices.Equal(got, tc.want) {
				t.Errorf("related(%s, %s) = %v, want %v", tc.id, tc.query, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		path, code, field string
		status            int
	}{
		{"/v1/workunits/" + A + "/related?direction=sideways", "invalid_argument", "direction", 400},
		{"/v1/workunits/" + A + "/related?type=FOO", "invalid_argument", "type", 400},
		{"/v1/workunits/" + A + "/related?limit=1001", "invalid_argument", "limit", 400},
		{"/v1/workunits/" + A + "/related?limit=0", "invalid_argument", "limit", 400},
		{"/v1/workunits/" + A + "/related?cursor=garbage", "invalid_argument", "cursor", 400},
		{"/v1/workunits/not-a-ulid/related", "invalid_argument", "id", 400},
		{"/v1/workunits/" + newID() + "/related", "not_found", "not found", 404},
	} {
		checkError(t, p.call(t, "GET", tc.path, nil), tc.status, tc.code, tc.field)
	}
}
