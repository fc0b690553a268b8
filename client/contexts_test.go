package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestContexts(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	created, err := c.CreateContext(ctx, ContextCreate{
		ID: "c1", DisplayName: new("Support chat 1"), AgentIDs: []string{"a1", "a1", "a2"},
		Metadata: map[string]string{"team": "support", "draft": "yes"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.ID != "c1" || created.DisplayName != "Support chat 1" || !slices.Equal(created.AgentIDs, []string{"a1", "a2"}) ||
		created.Metadata["team"] != "support" || created.PinnedUnits == nil || len(created.PinnedUnits) != 0 ||
		created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) || time.Since(created.CreatedAt) > time.Minute {
		t.Fatalf("created %+v", created)
	}

	got, err := c.GetContext(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || got.DisplayName != created.DisplayName {
		t.Fatalf("got %+v, created %+v", got, created)
	}

	// Without an id the server assigns a ULID; an empty display name is
	// kept (a pointer to ""), an absent one is the id.
	anon, err := c.CreateContext(ctx, ContextCreate{})
	if err != nil {
		t.Fatal(err)
	}
	if len(anon.ID) != 26 || anon.DisplayName != anon.ID {
		t.Fatalf("anonymous context %+v", anon)
	}
	empty, err := c.CreateContext(ctx, ContextCreate{ID: "empty-name", DisplayName: new("")})
	if err != nil || empty.DisplayName != "" {
		t.Fatalf("empty display name: %+v, %v", empty, err)
	}

	// Dot names are valid ids and must not turn into dot-segments.
	for _, id := range []string{".", "..", "a:b@c~d"} {
		if _, err := c.CreateContext(ctx, ContextCreate{ID: id}); err != nil {
			t.Fatalf("create %q: %v", id, err)
		}
		if g, err := c.GetContext(ctx, id); err != nil || g.ID != id {
			t.Fatalf("get %q: %+v, %v", id, g, err)
		}
		if _, err := c.ListUnits(ctx, id, ListUnitsOptions{}); err != nil {
			t.Fatalf("list units of %q: %v", id, err)
		}
	}

	// PATCH: metadata merges, nil deletes; agents and pins.
	u, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "c1", AgentID: "a1", Type: UnitMessage})
	if err != nil {
		t.Fatal(err)
	}
	patched, err := c.PatchContext(ctx, "c1", ContextPatch{
		DisplayName: new("renamed"),
		Metadata:    map[string]*string{"status": new("closed"), "draft": nil, "absent": nil},
		AddAgents:   []string{"a3"}, RemoveAgents: []string{"a1"},
		Pin: []string{strings.ToLower(u.ID)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := map[string]string{"team": "support", "status": "closed"}
	if patched.DisplayName != "renamed" || fmt.Sprint(patched.Metadata) != fmt.Sprint(wantMeta) ||
		!slices.Equal(patched.AgentIDs, []string{"a2", "a3"}) || !slices.Equal(patched.PinnedUnits, []string{u.ID}) ||
		!patched.UpdatedAt.After(patched.CreatedAt) {
		t.Fatalf("patched %+v", patched)
	}
	unpinned, err := c.PatchContext(ctx, "c1", ContextPatch{Unpin: []string{u.ID}})
	if err != nil || len(unpinned.PinnedUnits) != 0 {
		t.Fatalf("unpin: %+v, %v", unpinned, err)
	}
	// An empty patch changes nothing.
	same, err := c.PatchContext(ctx, "c1", ContextPatch{})
	if err != nil || !same.UpdatedAt.Equal(unpinned.UpdatedAt) {
		t.Fatalf("empty patch: %+v, %v", same, err)
	}
}

func TestContextErrors(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c
	if _, err := c.CreateContext(ctx, ContextCreate{ID: "dup"}); err != nil {
		t.Fatal(err)
	}
	other, _, err := c.CreateUnit(ctx, WorkUnitCreate{ContextID: "other", AgentID: "a", Type: UnitPlan})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		call    func() error
		status  int
		code    string
		sent    error
		message string // a substring
	}{
		{"create existing", func() error { _, err := c.CreateContext(ctx, ContextCreate{ID: "dup"}); return err },
			409, "conflict", ErrConflict, `"dup"`},
		{"create bad id", func() error { _, err := c.CreateContext(ctx, ContextCreate{ID: "no spaces"}); return err },
			400, "invalid_argument", ErrInvalidArgument, "id:"},
		{"create too many metadata keys", func() error {
			m := map[string]string{}
			for i := range 65 {
				m[fmt.Sprint("k", i)] = "v"
			}
			_, err := c.CreateContext(ctx, ContextCreate{ID: "meta", Metadata: m})
			return err
		}, 400, "invalid_argument", ErrInvalidArgument, "metadata"},
		{"get missing", func() error { _, err := c.GetContext(ctx, "missing"); return err },
			404, "not_found", ErrNotFound, `"missing"`},
		{"get bad name", func() error { _, err := c.GetContext(ctx, "bad/name"); return err },
			0, "", nil, ""}, // a slash is another route: 404 or 400, either is an *Error
		{"get empty id", func() error { _, err := c.GetContext(ctx, ""); return err },
			0, "invalid_argument", ErrInvalidArgument, "id: required"},
		{"patch missing", func() error {
			_, err := c.PatchContext(ctx, "missing", ContextPatch{AddAgents: []string{"x"}})
			return err
		},
			404, "not_found", ErrNotFound, ""},
		{"patch pins another context's unit", func() error {
			_, err := c.PatchContext(ctx, "dup", ContextPatch{Pin: []string{other.ID}})
			return err
		}, 400, "invalid_argument", ErrInvalidArgument, "pin"},
		{"patch bad agent", func() error { _, err := c.PatchContext(ctx, "dup", ContextPatch{AddAgents: []string{""}}); return err },
			400, "invalid_argument", ErrInvalidArgument, "add_agents[0]"},
		{"list limit out of range", func() error { _, err := c.ListContexts(ctx, ListOptions{Limit: 1001}); return err },
			400, "invalid_argument", ErrInvalidArgument, "limit"},
		{"list bad cursor", func() error { _, err := c.ListContexts(ctx, ListOptions{Cursor: "!!"}); return err },
			400, "invalid_argument", ErrInvalidArgument, "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want an *Error", err, err)
			}
			if tc.code == "" {
				return
			}
			if e.Status != tc.status || e.Code != tc.code || !errors.Is(err, tc.sent) || !strings.Contains(e.Message, tc.message) || e.Details == nil {
				t.Fatalf("err = %#v, want %d %s containing %q", e, tc.status, tc.code, tc.message)
			}
		})
	}
}

func TestListContextsAndAllContexts(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	const n = 250
	var want []string
	for i := range n {
		id := fmt.Sprintf("ctx-%03d", i)
		want = append(want, id)
		if _, err := ts.c.CreateContext(ctx, ContextCreate{ID: id}); err != nil {
			t.Fatal(err)
		}
	}

	// By hand, with a page size.
	var got []string
	opts := ListOptions{Limit: 60}
	pagesSeen := 0
	for {
		page, err := ts.c.ListContexts(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pagesSeen++
		for _, c := range page.Contexts {
			got = append(got, c.ID)
		}
		if page.NextCursor == nil {
			break
		}
		opts.Cursor = *page.NextCursor
	}
	if !slices.Equal(got, want) || pagesSeen != 5 {
		t.Fatalf("%d pages, ids %v", pagesSeen, got)
	}

	// The iterator follows the cursors (default page size 100: 3 pages).
	got = got[:0]
	for c, err := range ts.c.AllContexts(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("AllContexts: %v", got)
	}

	// Stopping early stops.
	got = got[:0]
	for c, err := range ts.c.AllContexts(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.ID)
		if len(got) == 5 {
			break
		}
	}
	if !slices.Equal(got, want[:5]) {
		t.Fatalf("early stop: %v", got)
	}
}
