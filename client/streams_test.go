package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// jsonEq reports whether two JSON texts hold the same value.
func jsonEq(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	return fmt.Sprintf("%#v", g) == fmt.Sprintf("%#v", w)
}

func TestStreamItems(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	// Create: the old value is null.
	ch, err := c.SetItem(ctx, "chat", "room-1", "alice", map[string]any{"name": "Alice", "online": true})
	if err != nil {
		t.Fatal(err)
	}
	if string(ch.OldValue) != "null" || !jsonEq(t, ch.NewValue, `{"name":"Alice","online":true}`) || ch.Errors != nil {
		t.Fatalf("create: %+v", ch)
	}
	// Replace: the old value is the previous one; a RawMessage goes as it is.
	ch, err = c.SetItem(ctx, "chat", "room-1", "alice", json.RawMessage(` {"name": "Alice", "online": false} `))
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, ch.OldValue, `{"name":"Alice","online":true}`) || string(ch.NewValue) != `{"name":"Alice","online":false}` {
		t.Fatalf("replace: %+v", ch)
	}
	v, err := c.GetItem(ctx, "chat", "room-1", "alice")
	if err != nil || string(v) != `{"name":"Alice","online":false}` {
		t.Fatalf("get: %s, %v", v, err)
	}

	// Any JSON is a value, null (a nil value) too.
	for _, tc := range []struct {
		in   any
		want string
	}{{"text", `"text"`}, {42, `42`}, {[]int{1, 2}, `[1,2]`}, {nil, `null`}, {json.RawMessage(`false`), `false`}} {
		if _, err := c.SetItem(ctx, "chat", "room-1", "scalar", tc.in); err != nil {
			t.Fatalf("set %#v: %v", tc.in, err)
		}
		if v, err := c.GetItem(ctx, "chat", "room-1", "scalar"); err != nil || string(v) != tc.want {
			t.Fatalf("get after set %#v: %s, %v", tc.in, v, err)
		}
	}

	// Dot names are valid names and must not turn into dot-segments.
	for _, name := range []string{".", "..", "a:b@c~d", "events"} {
		if _, err := c.SetItem(ctx, name, name, name, name); err != nil {
			t.Fatalf("set %q: %v", name, err)
		}
		if v, err := c.GetItem(ctx, name, name, name); err != nil || string(v) != `"`+name+`"` {
			t.Fatalf("get %q: %s, %v", name, v, err)
		}
		if page, err := c.ListItems(ctx, name, name, ListOptions{}); err != nil || len(page.Items) != 1 || page.Items[0].ID != name {
			t.Fatalf("list %q: %+v, %v", name, page, err)
		}
		if groups, err := c.ListGroups(ctx, name); err != nil || !slices.Equal(groups, []string{name}) {
			t.Fatalf("groups of %q: %v, %v", name, groups, err)
		}
	}

	// Delete returns the last value; the item is gone.
	old, err := c.DeleteItem(ctx, "chat", "room-1", "alice")
	if err != nil || string(old) != `{"name":"Alice","online":false}` {
		t.Fatalf("delete: %s, %v", old, err)
	}
	if _, err := c.GetItem(ctx, "chat", "room-1", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := c.DeleteItem(ctx, "chat", "room-1", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
}

func TestStreamUpdate(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	// An absent item starts as {}; the ops apply in order as one change.
	ch, err := c.UpdateItem(ctx, "game", "g1", "score",
		OpSet("name", "p1"),
		OpIncrement("points", 5),
		OpIncrement("points", 10),
		OpDecrement("lives", 1),
		OpMerge(nil, map[string]any{"level": 1}),
		OpMerge([]string{"stats", "moves"}, map[string]int{"up": 2}),
		OpAppend([]string{"log"}, "start"),
		OpAppend([]string{"tags"}, []string{"a"}),
		OpSet("tmp", nil),
		OpRemove("tmp"),
	)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"p1","points":15,"lives":-1,"level":1,"stats":{"moves":{"up":2}},"log":"start","tags":[["a"]]}`
	if string(ch.OldValue) != "null" || !jsonEq(t, ch.NewValue, want) || len(ch.Errors) != 0 {
		t.Fatalf("update: old %s new %s errors %+v", ch.OldValue, ch.NewValue, ch.Errors)
	}

	// A failing op is skipped and reported; the others still apply.
	ch, err = c.UpdateItem(ctx, "game", "g1", "score",
		OpIncrement("name", 1),          // not a number
		OpSet("ok", true),               // applies
		OpMerge(nil, []int{1}),          // not an object
		OpAppend([]string{"points"}, 1), // a number is no array
		OpMerge([]string{"__proto__"}, map[string]int{"x": 1}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEq(t, ch.OldValue, want) {
		t.Fatalf("old value %s", ch.OldValue)
	}
	var nv map[string]any
	json.Unmarshal(ch.NewValue, &nv)
	if nv["ok"] != true || nv["name"] != "p1" {
		t.Fatalf("new value %s", ch.NewValue)
	}
	var codes []string
	for i, e := range ch.Errors {
		if e.Message == "" {
			t.Errorf("errors[%d] without a message: %+v", i, e)
		}
		codes = append(codes, fmt.Sprint(e.OpIndex, " ", e.Code))
	}
	wantCodes := []string{"0 increment.not_number", "2 merge.value.not_an_object", "3 append.type_mismatch", "4 merge.path.proto_polluted"}
	if !slices.Equal(codes, wantCodes) {
		t.Fatalf("errors %+v, want codes %v", ch.Errors, wantCodes)
	}

	// The root: set replaces the value, increment of a fresh item sets it.
	if ch, err := c.UpdateItem(ctx, "game", "g1", "counter", OpIncrement("", 3), OpDecrement("", 1)); err != nil || string(ch.NewValue) != "2" {
		t.Fatalf("root counter: %+v, %v", ch, err)
	}
	if ch, err := c.UpdateItem(ctx, "game", "g1", "counter", OpSet("", "reset")); err != nil || string(ch.NewValue) != `"reset"` || string(ch.OldValue) != "2" {
		t.Fatalf("root set: %+v, %v", ch, err)
	}

	// An op of the caller's own making: a float amount.
	if ch, err := c.UpdateItem(ctx, "game", "g1", "f", StreamOp{Type: "increment", Path: "x", By: "0.5"}); err != nil || !jsonEq(t, ch.NewValue, `{"x":0.5}`) {
		t.Fatalf("float by: %+v, %v", ch, err)
	}
}

func TestStreamLists(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	if streams, err := c.ListStreams(ctx); err != nil || len(streams) != 0 {
		t.Fatalf("no streams: %v, %v", streams, err)
	}
	if groups, err := c.ListGroups(ctx, "none"); err != nil || len(groups) != 0 {
		t.Fatalf("no groups: %v, %v", groups, err)
	}
	if page, err := c.ListItems(ctx, "none", "none", ListOptions{}); err != nil || len(page.Items) != 0 || page.NextCursor != nil {
		t.Fatalf("no items: %+v, %v", page, err)
	}

	const n = 25
	var want []string
	for i := range n {
		id := fmt.Sprintf("item-%02d", i)
		want = append(want, id)
		if _, err := c.SetItem(ctx, "s1", "big", id, i); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range [][2]string{{"s1", "small"}, {"s2", "a"}, {"s2", "b"}} {
		if _, err := c.SetItem(ctx, ref[0], ref[1], "x", true); err != nil {
			t.Fatal(err)
		}
	}

	// By hand, 10 a page: 3 pages, the last one short and without a cursor.
	var got []string
	opts := ListOptions{Limit: 10}
	pagesSeen := 0
	for {
		page, err := c.ListItems(ctx, "s1", "big", opts)
		if err != nil {
			t.Fatal(err)
		}
		pagesSeen++
		for _, it := range page.Items {
			var v int
			if err := json.Unmarshal(it.Value, &v); err != nil || fmt.Sprintf("item-%02d", v) != it.ID {
				t.Fatalf("item %s = %s", it.ID, it.Value)
			}
			got = append(got, it.ID)
		}
		if page.NextCursor == nil {
			break
		}
		opts.Cursor = *page.NextCursor
	}
	if !slices.Equal(got, want) || pagesSeen != 3 {
		t.Fatalf("%d pages, ids %v", pagesSeen, got)
	}

	// The iterator follows the cursors, with pages of 4 (7 pages).
	got = got[:0]
	for it, err := range c.AllItems(ctx, "s1", "big", ListOptions{Limit: 4}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("AllItems: %v", got)
	}
	// From a cursor on, and stopping early.
	first, err := c.ListItems(ctx, "s1", "big", ListOptions{Limit: 20})
	if err != nil || first.NextCursor == nil {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	got = got[:0]
	for it, err := range c.AllItems(ctx, "s1", "big", ListOptions{Limit: 2, Cursor: *first.NextCursor}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.ID)
		if len(got) == 3 {
			break
		}
	}
	if !slices.Equal(got, want[20:23]) {
		t.Fatalf("from a cursor: %v", got)
	}
	// An error ends the iteration, yielded once.
	var errs int
	for _, err := range c.AllItems(ctx, "s1", "big", ListOptions{Cursor: "!!"}) {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("bad cursor: %v", err)
		}
		errs++
	}
	if errs != 1 {
		t.Fatalf("%d errors yielded", errs)
	}

	groups, err := c.ListGroups(ctx, "s1")
	if err != nil || !slices.Equal(groups, []string{"big", "small"}) {
		t.Fatalf("groups: %v, %v", groups, err)
	}
	streams, err := c.ListStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(streams) != "[{s1 [big small]} {s2 [a b]}]" {
		t.Fatalf("streams: %v", streams)
	}

	// A group whose last item is deleted is listed no more.
	if _, err := c.DeleteItem(ctx, "s1", "small", "x"); err != nil {
		t.Fatal(err)
	}
	if groups, err := c.ListGroups(ctx, "s1"); err != nil || !slices.Equal(groups, []string{"big"}) {
		t.Fatalf("groups after delete: %v, %v", groups, err)
	}
}

func TestStreamSendEvent(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	if _, err := c.SetItem(ctx, "chat", "room-1", "alice", "here"); err != nil {
		t.Fatal(err)
	}
	seq1, err := c.SendEvent(ctx, "chat", "room-1", "typing", map[string]string{"user": "alice"}, "")
	if err != nil || seq1 == 0 {
		t.Fatalf("send: %d, %v", seq1, err)
	}
	seq2, err := c.SendEvent(ctx, "chat", "room-1", "ping", nil, "ev-1")
	if err != nil || seq2 <= seq1 {
		t.Fatalf("send: %d (after %d), %v", seq2, seq1, err)
	}
	// No item changed.
	if page, err := c.ListItems(ctx, "chat", "room-1", ListOptions{}); err != nil || len(page.Items) != 1 {
		t.Fatalf("items: %+v, %v", page, err)
	}

	// Subscribers of the group's topic get the change and the events.
	from := uint64(0)
	sub, err := c.Subscribe(ctx, "streams/chat/room-1", SubscribeOptions{AfterSeq: &from})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []string
	for range 3 {
		ev := <-sub.Events()
		got = append(got, fmt.Sprint(ev.Seq, " ", ev.Type, " ", string(ev.Data)))
	}
	want := []string{
		fmt.Sprint(seq1-1, ` stream.created {"id":"alice","old_value":null,"new_value":"here"}`),
		fmt.Sprint(seq1, ` stream.event {"id":null,"type":"typing","data":{"user":"alice"}}`),
		fmt.Sprint(seq2, ` stream.event {"id":"ev-1","type":"ping","data":null}`),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestStreamErrors(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c
	if _, err := c.SetItem(ctx, "s", "g", "i", 1); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 129)

	for _, tc := range []struct {
		name    string
		call    func() error
		status  int
		code    string
		sent    error
		message string // a substring
	}{
		{"get missing", func() error { _, err := c.GetItem(ctx, "s", "g", "missing"); return err },
			404, "not_found", ErrNotFound, "s/g/missing"},
		{"get missing group", func() error { _, err := c.GetItem(ctx, "s", "nogroup", "i"); return err },
			404, "not_found", ErrNotFound, "not found"},
		{"delete missing", func() error { _, err := c.DeleteItem(ctx, "s", "g", "missing"); return err },
			404, "not_found", ErrNotFound, "not found"},
		{"set bad stream name", func() error { _, err := c.SetItem(ctx, "no spaces", "g", "i", 1); return err },
			400, "invalid_argument", ErrInvalidArgument, `stream_name: "no spaces" must match`},
		{"set too long group", func() error { _, err := c.SetItem(ctx, "s", long, "i", 1); return err },
			400, "invalid_argument", ErrInvalidArgument, "group_id:"},
		{"get bad item", func() error { _, err := c.GetItem(ctx, "s", "g", "a b"); return err },
			400, "invalid_argument", ErrInvalidArgument, "item_id:"},
		{"list bad group", func() error { _, err := c.ListItems(ctx, "s", "a b", ListOptions{}); return err },
			400, "invalid_argument", ErrInvalidArgument, "group_id:"},
		{"groups bad stream", func() error { _, err := c.ListGroups(ctx, "a b"); return err },
			400, "invalid_argument", ErrInvalidArgument, "stream_name:"},
		{"send bad group", func() error { _, err := c.SendEvent(ctx, "s", "a b", "t", nil, ""); return err },
			400, "invalid_argument", ErrInvalidArgument, "group_id:"},
		{"send without type", func() error { _, err := c.SendEvent(ctx, "s", "g", "", nil, ""); return err },
			400, "invalid_argument", ErrInvalidArgument, "type: required"},
		{"send bad id", func() error { _, err := c.SendEvent(ctx, "s", "g", "t", nil, "a b"); return err },
			400, "invalid_argument", ErrInvalidArgument, "id:"},
		{"list limit out of range", func() error { _, err := c.ListItems(ctx, "s", "g", ListOptions{Limit: 1001}); return err },
			400, "invalid_argument", ErrInvalidArgument, "limit"},
		{"list bad cursor", func() error { _, err := c.ListItems(ctx, "s", "g", ListOptions{Cursor: "!!"}); return err },
			400, "invalid_argument", ErrInvalidArgument, "cursor"},
		{"update without ops", func() error { _, err := c.UpdateItem(ctx, "s", "g", "i"); return err },
			400, "invalid_argument", ErrInvalidArgument, "ops"},
		{"update unknown op", func() error {
			_, err := c.UpdateItem(ctx, "s", "g", "i", StreamOp{Type: "frobnicate", Path: "x"})
			return err
		},
			400, "invalid_argument", ErrInvalidArgument, `ops[0].type: unknown op type "frobnicate"`},
		{"update merge without value", func() error { _, err := c.UpdateItem(ctx, "s", "g", "i", OpSet("a", 1), OpMerge(nil, nil)); return err },
			400, "invalid_argument", ErrInvalidArgument, "ops[1].value"},
		{"update bad item", func() error { _, err := c.UpdateItem(ctx, "s", "g", "a b", OpSet("a", 1)); return err },
			400, "invalid_argument", ErrInvalidArgument, "item_id:"},
		{"set empty stream", func() error { _, err := c.SetItem(ctx, "", "g", "i", 1); return err },
			0, "invalid_argument", ErrInvalidArgument, "SetItem: stream_name: required"},
		{"get empty item", func() error { _, err := c.GetItem(ctx, "s", "g", ""); return err },
			0, "invalid_argument", ErrInvalidArgument, "GetItem: item_id: required"},
		{"list empty group", func() error { _, err := c.ListItems(ctx, "s", "", ListOptions{}); return err },
			0, "invalid_argument", ErrInvalidArgument, "ListItems: group_id: required"},
		{"groups empty stream", func() error { _, err := c.ListGroups(ctx, ""); return err },
			0, "invalid_argument", ErrInvalidArgument, "ListGroups: stream_name: required"},
		{"send empty group", func() error { _, err := c.SendEvent(ctx, "s", "", "t", nil, ""); return err },
			0, "invalid_argument", ErrInvalidArgument, "SendEvent: group_id: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want an *Error", err, err)
			}
			if e.Status != tc.status || e.Code != tc.code || !errors.Is(err, tc.sent) || !strings.Contains(e.Message, tc.message) || e.Details == nil {
				t.Fatalf("err = %#v, want %d %s containing %q", e, tc.status, tc.code, tc.message)
			}
		})
	}

	// A value that cannot be encoded fails in the client, before any request.
	if _, err := c.SetItem(ctx, "s", "g", "i", json.RawMessage(`{bad`)); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("bad raw value: %v", err)
	}
	if _, err := c.UpdateItem(ctx, "s", "g", "i", OpSet("x", func() {})); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("unencodable op value: %v", err)
	}
	// Nothing changed.
	if v, err := c.GetItem(ctx, "s", "g", "i"); err != nil || string(v) != "1" {
		t.Fatalf("item after errors: %s, %v", v, err)
	}
}
