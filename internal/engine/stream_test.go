package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"engram/internal/engine"
	"engram/internal/wal"
)

func ref(s, g, i string) engine.ItemRef { return engine.ItemRef{Stream: s, Group: g, Item: i} }

// eventData decodes the data of the logged event with seq and checks its
// type and topic.
func (v *env) streamEvent(tb testing.TB, seq uint64, typ, topic string) map[string]json.RawMessage {
	tb.Helper()
	ev := v.event(tb, seq)
	if ev.Type != typ || ev.Topic != topic {
		tb.Fatalf("event %d: %s on %s, want %s on %s", seq, ev.Type, ev.Topic, typ, topic)
	}
	var e struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(ev.JSON, &e); err != nil {
		tb.Fatalf("event %d: %v", seq, err)
	}
	return e.Data
}

func wantJSON(tb testing.TB, what string, got []byte, want string) {
	tb.Helper()
	if string(got) != want {
		tb.Errorf("%s = %s, want %s", what, got, want)
	}
}

func TestStreamItemLifecycle(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	r := ref("room", "g1", "alice")
	topic := "streams/room/g1"

	ch, err := v.e.SetItem(ctx, r, []byte(` {"status": "online"} `))
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "old", ch.OldValue, "null")
	wantJSON(t, "new", ch.NewValue, `{"status":"online"}`)
	d := v.streamEvent(t, ch.Seq, engine.StreamCreated, topic)
	wantJSON(t, "created.id", d["id"], `"alice"`)
	wantJSON(t, "created.old_value", d["old_value"], "null")
	wantJSON(t, "created.new_value", d["new_value"], `{"status":"online"}`)

	ch, err = v.e.SetItem(ctx, r, []byte(`[1,2]`))
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "old", ch.OldValue, `{"status":"online"}`)
	d = v.streamEvent(t, ch.Seq, engine.StreamUpdated, topic)
	wantJSON(t, "updated.old_value", d["old_value"], `{"status":"online"}`)
	wantJSON(t, "updated.new_value", d["new_value"], `[1,2]`)

	got, err := v.e.GetItem(r)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "get", got, `[1,2]`)

	ch, err = v.e.DeleteItem(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "deleted old", ch.OldValue, `[1,2]`)
	d = v.streamEvent(t, ch.Seq, engine.StreamDeleted, topic)
	wantJSON(t, "deleted.new_value", d["new_value"], "null")

	head := v.head()
	_, err = v.e.GetItem(r)
	wantErr(t, err, engine.ErrNotFound, "room/g1/alice")
	_, err = v.e.DeleteItem(ctx, r)
	wantErr(t, err, engine.ErrNotFound)
	if v.head() != head {
		t.Errorf("a failed delete wrote: head %d → %d", head, v.head())
	}
	groups, err := v.e.ListGroups("room")
	if err != nil || len(groups) != 0 {
		t.Errorf("groups after the last delete = %v, %v; want none", groups, err)
	}
}

func TestStreamBadInput(t *testing.T) {
	v := newEnvCfg(t, engine.Config{MaxValueBytes: 256})
	ctx := context.Background()
	cases := []struct {
		name  string
		r     engine.ItemRef
		value string
		field string
	}{
		{"empty stream", ref("", "g", "i"), `1`, "stream_name: required"},
		{"bad group", ref("s", "a/b", "i"), `1`, "group_id:"},
		{"bad item", ref("s", "g", strings.Repeat("x", 129)), `1`, "item_id:"},
		{"no value", ref("s", "g", "i"), ``, "value: required"},
		{"invalid JSON", ref("s", "g", "i"), `{"a":`, "value: not valid JSON"},
		{"two values", ref("s", "g", "i"), `1 2`, "value: not valid JSON"},
		{"invalid UTF-8", ref("s", "g", "i"), "\"\xff\"", "value: not valid UTF-8"},
		{"too deep", ref("s", "g", "i"), strings.Repeat("[", 65) + strings.Repeat("]", 65), "value: nested deeper"},
		{"too large", ref("s", "g", "i"), `"` + strings.Repeat("x", 256) + `"`, "over the limit of 256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			head := v.head()
			_, err := v.e.SetItem(ctx, tc.r, []byte(tc.value))
			wantErr(t, err, engine.ErrInvalid, tc.field)
			if v.head() != head {
				t.Errorf("bad input wrote")
			}
		})
	}
	// An update that would grow the value past the limit fails whole.
	if _, err := v.e.SetItem(ctx, ref("s", "g", "i"), []byte(`{"a":"`+strings.Repeat("x", 40)+`"}`)); err != nil {
		t.Fatal(err)
	}
	head := v.head()
	_, err := v.e.UpdateItem(ctx, ref("s", "g", "i"), []engine.StreamOp{
		{Type: "append", Path: json.RawMessage(`"a"`), Value: json.RawMessage(`"` + strings.Repeat("y", 230) + `"`)},
	})
	wantErr(t, err, engine.ErrInvalid, "ops: the updated value would be")
	if v.head() != head {
		t.Errorf("an oversized update wrote")
	}
}

func TestStreamUpdateOneEvent(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	r := ref("doc", "d1", "x")
	ch, err := v.e.UpdateItem(ctx, r, []engine.StreamOp{
		{Type: "set", Path: json.RawMessage(`"title"`), Value: json.RawMessage(`"hello"`)},
		{Type: "increment", Path: json.RawMessage(`"title"`), By: json.RawMessage(`1`)},
		{Type: "increment", Path: json.RawMessage(`"n"`), By: json.RawMessage(`5`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "old", ch.OldValue, "null")
	wantJSON(t, "new", ch.NewValue, `{"n":5,"title":"hello"}`)
	if len(ch.Errors) != 1 || ch.Errors[0].OpIndex != 1 || ch.Errors[0].Code != "increment.not_number" {
		t.Errorf("errors = %+v, want op 1 increment.not_number", ch.Errors)
	}
	if ch.Seq != v.head() {
		t.Errorf("update seq %d, head %d: want one event", ch.Seq, v.head())
	}
	v.streamEvent(t, ch.Seq, engine.StreamCreated, "streams/doc/d1")

	// Ops that are malformed as a whole fail the request and write nothing.
	head := v.head()
	_, err = v.e.UpdateItem(ctx, r, []engine.StreamOp{{Type: "explode"}})
	wantErr(t, err, engine.ErrInvalid, "ops[0].type")
	_, err = v.e.UpdateItem(ctx, r, nil)
	wantErr(t, err, engine.ErrInvalid, "ops")
	if v.head() != head {
		t.Errorf("a malformed update wrote")
	}
}

// TestStreamConcurrentIncrements: 64 clients × 100 increments of one item
// end exact, because each update is a read-modify-write on the writer.
func TestStreamConcurrentIncrements(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	r := ref("c", "g", "counter")
	start := v.head()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for range 100 {
				if _, err := v.e.UpdateItem(ctx, r, []engine.StreamOp{
					{Type: "increment", Path: json.RawMessage(`"n"`), By: json.RawMessage(`1`)},
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := v.e.GetItem(r)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "counter", got, `{"n":6400}`)
	if n := v.head() - start; n != 6400 {
		t.Errorf("%d events for 6400 updates", n)
	}
}

func TestStreamListing(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	const n = 250
	for i := range n {
		if _, err := v.e.SetItem(ctx, ref("s1", "g1", fmt.Sprintf("item-%04d", i)), fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"b", "a", "c"} {
		if _, err := v.e.SetItem(ctx, ref("s2", g, "x"), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	// Paging walks every item once, by id.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		items, next, err := v.e.ListItems("s1", "g1", 100, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			got = append(got, it.ID)
		}
		if next == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		cursor = next
	}
	if len(got) != n || got[0] != "item-0000" || got[n-1] != fmt.Sprintf("item-%04d", n-1) {
		t.Errorf("listed %d items from %v to %v", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("items out of order at %d: %s after %s", i, got[i], got[i-1])
		}
	}
	if _, _, err := v.e.ListItems("s1", "g1", 0, "bogus!"); err == nil {
		t.Error("a malformed cursor was accepted")
	}
	if _, _, err := v.e.ListItems("s1", "g1", 1001, ""); err == nil {
		t.Error("limit 1001 was accepted")
	}

	groups, err := v.e.ListGroups("s2")
	if err != nil || strings.Join(groups, ",") != "a,b,c" {
		t.Errorf("groups = %v, %v", groups, err)
	}
	streams, err := v.e.ListStreams()
	if err != nil || len(streams) != 2 || streams[0].ID != "s1" || strings.Join(streams[1].Groups, ",") != "a,b,c" {
		t.Errorf("streams = %+v, %v", streams, err)
	}

	// A scan reads the whole group from one snapshot, with its seq.
	scan, err := v.e.ScanGroup("s1", "g1")
	if err != nil {
		t.Fatal(err)
	}
	head := v.head()
	if _, err := v.e.SetItem(ctx, ref("s1", "g1", "zzz"), []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		_, _, ok := scan.Next()
		if !ok {
			break
		}
		count++
	}
	if err := scan.Err(); err != nil {
		t.Fatal(err)
	}
	scan.Close()
	if count != n || scan.Count != n || scan.Seq != head {
		t.Errorf("scan: %d items, count %d, seq %d; want %d, %d, %d", count, scan.Count, scan.Seq, n, n, head)
	}
}

func TestStreamGroupLimit(t *testing.T) {
	v := newEnvCfg(t, engine.Config{MaxGroupItems: 3})
	ctx := context.Background()
	for i := range 3 {
		if _, err := v.e.SetItem(ctx, ref("s", "g", fmt.Sprint(i)), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	head := v.head()
	_, err := v.e.SetItem(ctx, ref("s", "g", "3"), []byte(`1`))
	wantErr(t, err, engine.ErrConflict, "holds 3 items", "--stream-max-items")
	_, err = v.e.UpdateItem(ctx, ref("s", "g", "3"), []engine.StreamOp{{Type: "set", Path: json.RawMessage(`"a"`), Value: json.RawMessage(`1`)}})
	wantErr(t, err, engine.ErrConflict)
	if v.head() != head {
		t.Error("a refused item wrote")
	}
	// Existing items still change, other groups fill, and a delete makes room.
	if _, err := v.e.SetItem(ctx, ref("s", "g", "0"), []byte(`2`)); err != nil {
		t.Error(err)
	}
	if _, err := v.e.SetItem(ctx, ref("s", "other", "3"), []byte(`1`)); err != nil {
		t.Error(err)
	}
	if _, err := v.e.DeleteItem(ctx, ref("s", "g", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.SetItem(ctx, ref("s", "g", "3"), []byte(`1`)); err != nil {
		t.Error(err)
	}
}

func TestStreamSend(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	id := "alice"
	seq, err := v.e.SendEvent(ctx, "room", "g", engine.SendInput{Type: "typing", Data: json.RawMessage(`{"on":true}`), ID: &id})
	if err != nil {
		t.Fatal(err)
	}
	d := v.streamEvent(t, seq, engine.StreamEvent, "streams/room/g")
	wantJSON(t, "id", d["id"], `"alice"`)
	wantJSON(t, "type", d["type"], `"typing"`)
	wantJSON(t, "data", d["data"], `{"on":true}`)
	seq, err = v.e.SendEvent(ctx, "room", "g", engine.SendInput{Type: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	d = v.streamEvent(t, seq, engine.StreamEvent, "streams/room/g")
	wantJSON(t, "id", d["id"], "null")
	wantJSON(t, "data", d["data"], "null")
	if groups, _ := v.e.ListGroups("room"); len(groups) != 0 {
		t.Errorf("send stored state: groups %v", groups)
	}
	head := v.head()
	_, err = v.e.SendEvent(ctx, "room", "g", engine.SendInput{})
	wantErr(t, err, engine.ErrInvalid, "type: required")
	_, err = v.e.SendEvent(ctx, "room", "g", engine.SendInput{Type: strings.Repeat("t", 257)})
	wantErr(t, err, engine.ErrInvalid, "type:")
	_, err = v.e.SendEvent(ctx, "room", "g", engine.SendInput{Type: "x", Data: json.RawMessage(`{`)})
	wantErr(t, err, engine.ErrInvalid, "data:")
	if v.head() != head {
		t.Error("a bad send wrote")
	}
}

func TestStreamPresence(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	item := "doc1"
	a, err := v.e.JoinStream(ctx, engine.Join{Stream: "room", Group: "g", SubscriptionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	d := v.streamEvent(t, v.head(), engine.StreamJoin, "streams/room/g")
	wantJSON(t, "join", mustMarshal(t, d), `{"context":null,"id":null,"subscription_id":"s1"}`)
	if _, err := v.e.JoinStream(ctx, engine.Join{Stream: "room", Group: "g", Item: &item, SubscriptionID: "s2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.JoinStream(ctx, engine.Join{Stream: "room", Group: "h", SubscriptionID: "s3"}); err != nil {
		t.Fatal(err)
	}
	if err := v.e.LeaveStream(ctx, a); err != nil {
		t.Fatal(err)
	}
	d = v.streamEvent(t, v.head(), engine.StreamLeave, "streams/room/g")
	wantJSON(t, "leave", mustMarshal(t, d), `{"context":null,"id":null,"subscription_id":"s1"}`)
	// A second leave of the same join emits nothing.
	head := v.head()
	if err := v.e.LeaveStream(ctx, a); err != nil || v.head() != head {
		t.Errorf("second leave: %v, head %d → %d", err, head, v.head())
	}
	// Recovery leaves the two open joins, once.
	n, err := v.e.RecoverJoins(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RecoverJoins = %d, %v; want 2", n, err)
	}
	if v.head() != head+2 {
		t.Errorf("recovery wrote %d events, want 2", v.head()-head)
	}
	seen := map[string]bool{}
	for seq := head + 1; seq <= v.head(); seq++ {
		ev := v.event(t, seq)
		if ev.Type != engine.StreamLeave {
			t.Errorf("event %d is %s", seq, ev.Type)
		}
		seen[ev.Topic] = true
	}
	if !seen["streams/room/g"] || !seen["streams/room/h"] {
		t.Errorf("recovered leaves on %v", seen)
	}
	if n, err := v.e.RecoverJoins(ctx); err != nil || n != 0 {
		t.Errorf("second recovery = %d, %v", n, err)
	}

	bad := []engine.Join{
		{Stream: "", Group: "g", SubscriptionID: "s"},
		{Stream: "s", Group: "g/h", SubscriptionID: "s"},
		{Stream: "s", Group: "g"},
		{Stream: "s", Group: "g", SubscriptionID: strings.Repeat("x", 257)},
	}
	for _, j := range bad {
		if _, err := v.e.JoinStream(ctx, j); err == nil {
			t.Errorf("join %+v accepted", j)
		}
	}
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var _ = wal.Event{}

// TestStreamListPages: groups and streams page by (stream, group), every
// group once, a stream's groups continuing on the next page.
func TestStreamListPages(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	for _, sg := range [][2]string{{"a", "g1"}, {"a", "g2"}, {"a", "g3"}, {"b", "g1"}, {"c", "g1"}, {"c", "g2"}} {
		if _, err := v.e.SetItem(ctx, ref(sg[0], sg[1], "x"), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := v.e.ListStreamsPage(2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range page {
			for _, g := range s.Groups {
				got = append(got, s.ID+"/"+g)
				n++
			}
		}
		if n > 2 {
			t.Fatalf("page of %d groups, limit 2", n)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != "a/g1,a/g2,a/g3,b/g1,c/g1,c/g2" {
		t.Errorf("streams pages: %v", got)
	}
	groups, next, err := v.e.ListGroupsPage("a", 2, "")
	if err != nil || strings.Join(groups, ",") != "g1,g2" || next == "" {
		t.Fatalf("groups page 1: %v %q %v", groups, next, err)
	}
	groups, next, err = v.e.ListGroupsPage("a", 2, next)
	if err != nil || strings.Join(groups, ",") != "g3" || next != "" {
		t.Fatalf("groups page 2: %v %q %v", groups, next, err)
	}
	if _, _, err := v.e.ListStreamsPage(0, "bogus"); err == nil {
		t.Error("a malformed cursor was accepted")
	}
}
