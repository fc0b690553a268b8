package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"engram/internal/engine"
)

func agents(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("agent-%04d", i)
	}
	return out
}

func TestCreateContext(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()

	t.Run("defaults", func(t *testing.T) {
		before := v.head()
		raw, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		c := parseContext(t, raw)
		if c.ID != "c1" || c.DisplayName != "c1" || c.AgentIDs == nil || len(c.AgentIDs) != 0 ||
			c.PinnedUnits == nil || c.Metadata == nil || c.CreatedAt == "" || c.CreatedAt != c.UpdatedAt {
			t.Errorf("context = %s", raw)
		}
		if !bytes.Contains(raw, []byte(`"agent_ids":[]`)) || !bytes.Contains(raw, []byte(`"pinned_units":[]`)) || !bytes.Contains(raw, []byte(`"metadata":{}`)) {
			t.Errorf("empty collections not [] / {}: %s", raw)
		}
		if v.head() != before+1 {
			t.Errorf("head %d -> %d, want one event", before, v.head())
		}
		ev := v.event(t, v.head())
		if ev.Type != "context.created" || ev.Topic != "contexts/c1" || !bytes.Contains(ev.JSON, raw) {
			t.Errorf("event %s", ev.JSON)
		}
		if got := v.getContext(t, "c1"); !bytes.Equal(got, raw) {
			t.Errorf("GetContext = %s, want %s", got, raw)
		}
	})
	t.Run("all fields", func(t *testing.T) {
		name := "Chat <one> & \"two\""
		raw, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "c2", DisplayName: &name,
			AgentIDs: []string{"b", "a", "b"}, Metadata: map[string]string{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		c := parseContext(t, raw)
		if c.DisplayName != name || !slices.Equal(c.AgentIDs, []string{"b", "a"}) || c.Metadata["k"] != "v" {
			t.Errorf("context = %s", raw)
		}
	})
	t.Run("empty display name", func(t *testing.T) {
		empty := ""
		raw, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "c3", DisplayName: &empty})
		if err != nil {
			t.Fatal(err)
		}
		if c := parseContext(t, raw); c.DisplayName != "" {
			t.Errorf("display_name = %q", c.DisplayName)
		}
	})
	t.Run("server id", func(t *testing.T) {
		raw, err := v.e.CreateContext(ctx, engine.ContextInput{})
		if err != nil {
			t.Fatal(err)
		}
		c := parseContext(t, raw)
		if _, err := ulid.ParseStrict(c.ID); err != nil || c.DisplayName != c.ID {
			t.Errorf("server-assigned id %q: %v", c.ID, err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		before := v.head()
		_, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "c1"})
		wantErr(t, err, engine.ErrConflict, `"c1"`, "already exists")
		if v.head() != before {
			t.Error("conflict wrote")
		}
	})
	long := strings.Repeat("n", engine.MaxDisplayNameLen+1)
	ok := strings.Repeat("n", engine.MaxDisplayNameLen)
	invalid := []struct {
		name string
		in   engine.ContextInput
		subs []string
	}{
		{"bad id", engine.ContextInput{ID: "a b"}, []string{"id: ", "must match"}},
		{"long id", engine.ContextInput{ID: strings.Repeat("i", 129)}, []string{"id: "}},
		{"display name too long", engine.ContextInput{ID: "x", DisplayName: &long}, []string{"display_name: longer than 256"}},
		{"too many agents", engine.ContextInput{ID: "x", AgentIDs: agents(engine.MaxContextAgents + 1)}, []string{"agent_ids: 1025 agents, at most 1024"}},
		{"bad agent", engine.ContextInput{ID: "x", AgentIDs: []string{"ok", "not ok"}}, []string{"agent_ids[1]: "}},
		{"empty agent", engine.ContextInput{ID: "x", AgentIDs: []string{""}}, []string{"agent_ids[0]: required"}},
		{"too much metadata", engine.ContextInput{ID: "x", Metadata: manyMeta(65)}, []string{"metadata: 65 keys"}},
		{"metadata value too long", engine.ContextInput{ID: "x", Metadata: map[string]string{"k": strings.Repeat("v", 8193)}}, []string{"metadata.k: "}},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			before := v.head()
			_, err := v.e.CreateContext(ctx, tc.in)
			wantErr(t, err, engine.ErrInvalid, tc.subs...)
			if v.head() != before {
				t.Error("invalid input wrote")
			}
		})
	}
	t.Run("limits exactly", func(t *testing.T) {
		if _, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "max", DisplayName: &ok, AgentIDs: agents(engine.MaxContextAgents), Metadata: manyMeta(64)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("get errors", func(t *testing.T) {
		_, err := v.e.GetContext("nope")
		wantErr(t, err, engine.ErrNotFound, `"nope"`)
		_, err = v.e.GetContext("a/b")
		wantErr(t, err, engine.ErrInvalid, "id: ")
		_, err = v.e.GetContext("")
		wantErr(t, err, engine.ErrInvalid, "id: required")
	})
}

func TestListContexts(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	want := []string{"a", "a.", "a.b", "a0", "b", "B", "z~", "~"}
	for _, id := range want {
		if _, err := v.e.CreateContext(ctx, engine.ContextInput{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	v.mustCreate(t, msg("auto", "x")) // an auto-created context is listed too
	want = append(want, "auto")
	slices.Sort(want) // by id, bytewise
	for _, limit := range []int{0, 1, 2, 3, len(want), len(want) + 1, 1000} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			cursor := ""
			for range 100 {
				items, next, err := v.e.ListContexts(limit, cursor)
				if err != nil {
					t.Fatal(err)
				}
				if limit > 0 && len(items) > limit {
					t.Fatalf("%d items, limit %d", len(items), limit)
				}
				for _, it := range items {
					got = append(got, parseContext(t, it).ID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	t.Run("exact page has no cursor", func(t *testing.T) {
		_, next, err := v.e.ListContexts(len(want), "")
		if err != nil || next != "" {
			t.Errorf("next %q, %v", next, err)
		}
	})
	p, err := v.e.ListUnits(engine.ListQuery{ContextID: "auto", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = p
	for _, tc := range []struct {
		name   string
		limit  int
		cursor string
	}{
		{"limit too big", 1001, ""},
		{"negative limit", -1, ""},
		{"garbage cursor", 10, "%%%"},
		{"foreign cursor", 10, "dWQ6NQ"}, // ud:5
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := v.e.ListContexts(tc.limit, tc.cursor)
			wantErr(t, err, engine.ErrInvalid)
		})
	}
}

func TestPatchContext(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	name := "first"
	if _, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "p", DisplayName: &name, AgentIDs: []string{"a1", "a2"},
		Metadata: map[string]string{"keep": "1", "drop": "2"}}); err != nil {
		t.Fatal(err)
	}
	u1 := v.mustCreate(t, msg("p", "a1")).ID
	u2 := v.mustCreate(t, msg("p", "a1")).ID
	foreign := v.mustCreate(t, msg("elsewhere", "a1")).ID
	created := parseContext(t, v.getContext(t, "p")).CreatedAt

	sp := func(s string) *string { return &s }
	steps := []struct {
		name  string
		patch engine.ContextPatch
		check func(t *testing.T, c ctxJSON)
		noop  bool
	}{
		{name: "display name", patch: engine.ContextPatch{DisplayName: sp("second")},
			check: func(t *testing.T, c ctxJSON) {
				if c.DisplayName != "second" {
					t.Errorf("display_name %q", c.DisplayName)
				}
			}},
		{name: "metadata merge and delete", patch: engine.ContextPatch{Metadata: map[string]*string{"drop": nil, "new": sp("3"), "gone": nil}},
			check: func(t *testing.T, c ctxJSON) {
				if len(c.Metadata) != 2 || c.Metadata["keep"] != "1" || c.Metadata["new"] != "3" {
					t.Errorf("metadata %v", c.Metadata)
				}
			}},
		{name: "agents", patch: engine.ContextPatch{AddAgents: []string{"a3", "a1", "a3"}, RemoveAgents: []string{"a2", "zz"}},
			check: func(t *testing.T, c ctxJSON) {
				if !slices.Equal(c.AgentIDs, []string{"a1", "a3"}) {
					t.Errorf("agents %v", c.AgentIDs)
				}
			}},
		{name: "pin", patch: engine.ContextPatch{Pin: []string{u2, strings.ToLower(u1), u2}},
			check: func(t *testing.T, c ctxJSON) {
				if !slices.Equal(c.PinnedUnits, []string{u2, u1}) {
					t.Errorf("pins %v", c.PinnedUnits)
				}
			}},
		{name: "unpin", patch: engine.ContextPatch{Unpin: []string{strings.ToLower(u2)}},
			check: func(t *testing.T, c ctxJSON) {
				if !slices.Equal(c.PinnedUnits, []string{u1}) {
					t.Errorf("pins %v", c.PinnedUnits)
				}
			}},
		{name: "empty patch", patch: engine.ContextPatch{}, noop: true},
		{name: "same values", patch: engine.ContextPatch{DisplayName: sp("second"), Metadata: map[string]*string{"keep": sp("1"), "absent": nil},
			AddAgents: []string{"a1"}, RemoveAgents: []string{"a2"}, Pin: []string{u1}, Unpin: []string{u2}}, noop: true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := v.head()
			old := v.getContext(t, "p")
			raw, err := v.e.PatchContext(ctx, "p", st.patch)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.getContext(t, "p"); !bytes.Equal(got, raw) {
				t.Errorf("answer %s differs from stored %s", raw, got)
			}
			if st.noop {
				if v.head() != before {
					t.Errorf("no-op patch wrote an event: head %d -> %d", before, v.head())
				}
				if !bytes.Equal(raw, old) {
					t.Errorf("no-op patch changed the context: %s -> %s", old, raw)
				}
				return
			}
			if v.head() != before+1 {
				t.Errorf("head %d -> %d, want one event", before, v.head())
			}
			ev := v.event(t, v.head())
			if ev.Type != "context.updated" || ev.Topic != "contexts/p" || !bytes.Contains(ev.JSON, raw) {
				t.Errorf("event %s", ev.JSON)
			}
			c := parseContext(t, raw)
			if c.CreatedAt != created || c.UpdatedAt < c.CreatedAt {
				t.Errorf("created_at %s updated_at %s (created %s)", c.CreatedAt, c.UpdatedAt, created)
			}
			st.check(t, c)
		})
	}

	invalid := []struct {
		name  string
		id    string
		patch engine.ContextPatch
		kind  error
		subs  []string
	}{
		{"unknown context", "nope", engine.ContextPatch{DisplayName: sp("x")}, engine.ErrNotFound, []string{`"nope"`}},
		{"bad id", "a b", engine.ContextPatch{}, engine.ErrInvalid, []string{"id: "}},
		{"display name too long", "p", engine.ContextPatch{DisplayName: sp(strings.Repeat("d", 257))}, engine.ErrInvalid, []string{"display_name: "}},
		{"metadata key too long", "p", engine.ContextPatch{Metadata: map[string]*string{strings.Repeat("k", 129): sp("v")}}, engine.ErrInvalid, []string{"metadata: key"}},
		{"metadata delete key too long", "p", engine.ContextPatch{Metadata: map[string]*string{strings.Repeat("k", 129): nil}}, engine.ErrInvalid, []string{"metadata: key"}},
		{"metadata empty key", "p", engine.ContextPatch{Metadata: map[string]*string{"": sp("v")}}, engine.ErrInvalid, []string{"metadata: empty key"}},
		{"metadata value too long", "p", engine.ContextPatch{Metadata: map[string]*string{"k": sp(strings.Repeat("v", 8193))}}, engine.ErrInvalid, []string{"metadata.k: "}},
		{"metadata result over 64", "p", engine.ContextPatch{Metadata: func() map[string]*string {
			m := map[string]*string{}
			for k := range manyMeta(63) {
				m["x"+k] = sp("v")
			}
			return m
		}()}, engine.ErrInvalid, []string{"metadata: the patch leaves 65 keys, at most 64"}},
		{"bad add agent", "p", engine.ContextPatch{AddAgents: []string{"a/b"}}, engine.ErrInvalid, []string{"add_agents[0]: "}},
		{"bad remove agent", "p", engine.ContextPatch{RemoveAgents: []string{"ok", ""}}, engine.ErrInvalid, []string{"remove_agents[1]: "}},
		{"add agents list too long", "p", engine.ContextPatch{AddAgents: agents(1025)}, engine.ErrInvalid, []string{"add_agents: 1025 agents"}},
		{"pin bad id", "p", engine.ContextPatch{Pin: []string{u1, "nope"}}, engine.ErrInvalid, []string{"pin[1]: ", "not a ULID"}},
		{"pin unknown unit", "p", engine.ContextPatch{Pin: []string{newID()}}, engine.ErrInvalid, []string{"pin[0]: ", "not found"}},
		{"pin unit of other context", "p", engine.ContextPatch{Pin: []string{foreign}}, engine.ErrInvalid, []string{"pin[0]: ", "elsewhere"}},
		{"unpin bad id", "p", engine.ContextPatch{Unpin: []string{"x"}}, engine.ErrInvalid, []string{"unpin[0]: "}},
		{"pin list too long", "p", engine.ContextPatch{Pin: make([]string, 1025)}, engine.ErrInvalid, []string{"pin: 1025 ids"}},
		{"unpin list too long", "p", engine.ContextPatch{Unpin: make([]string, 1025)}, engine.ErrInvalid, []string{"unpin: 1025 ids"}},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			before := v.head()
			old, _ := v.e.GetContext("p")
			_, err := v.e.PatchContext(ctx, tc.id, tc.patch)
			wantErr(t, err, tc.kind, tc.subs...)
			if v.head() != before {
				t.Errorf("rejected patch wrote: head %d -> %d", before, v.head())
			}
			if now, _ := v.e.GetContext("p"); !bytes.Equal(now, old) {
				t.Errorf("rejected patch changed the context: %s", now)
			}
		})
	}
}

// TestPatchContextLimits fills a context to its agent and pin limits.
func TestPatchContextLimits(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	if _, err := v.e.CreateContext(ctx, engine.ContextInput{ID: "full", AgentIDs: agents(engine.MaxContextAgents)}); err != nil {
		t.Fatal(err)
	}
	before := v.head()
	_, err := v.e.PatchContext(ctx, "full", engine.ContextPatch{AddAgents: []string{"one-more"}})
	wantErr(t, err, engine.ErrInvalid, "add_agents: the context would have 1025 agents, at most 1024")
	// Swapping one agent for another stays within the limit.
	if _, err := v.e.PatchContext(ctx, "full", engine.ContextPatch{AddAgents: []string{"one-more"}, RemoveAgents: []string{"agent-0000"}}); err != nil {
		t.Fatal(err)
	}
	if v.head() != before+1 {
		t.Errorf("head %d -> %d", before, v.head())
	}

	units := make([]engine.UnitInput, 1000)
	for i := range units {
		units[i] = msg("full", "one-more")
	}
	var unitIDs []string
	for range 2 {
		res, err := v.e.CreateUnits(ctx, units)
		if err != nil {
			t.Fatal(err)
		}
		unitIDs = append(unitIDs, ids(t, res.Units)...)
	}
	if _, err := v.e.PatchContext(ctx, "full", engine.ContextPatch{Pin: unitIDs[:engine.MaxPinnedUnits]}); err != nil {
		t.Fatal(err)
	}
	before = v.head()
	_, err = v.e.PatchContext(ctx, "full", engine.ContextPatch{Pin: unitIDs[engine.MaxPinnedUnits : engine.MaxPinnedUnits+1]})
	wantErr(t, err, engine.ErrInvalid, "pin: the context would have 1025 pinned units, at most 1024")
	if v.head() != before {
		t.Error("rejected pin wrote")
	}
	// Re-pinning pinned units is a no-op.
	if _, err := v.e.PatchContext(ctx, "full", engine.ContextPatch{Pin: unitIDs[:10]}); err != nil || v.head() != before {
		t.Errorf("re-pin: %v, head %d -> %d", err, before, v.head())
	}
	c := parseContext(t, v.getContext(t, "full"))
	if len(c.PinnedUnits) != engine.MaxPinnedUnits || len(c.AgentIDs) != engine.MaxContextAgents {
		t.Errorf("%d pins, %d agents", len(c.PinnedUnits), len(c.AgentIDs))
	}
}
