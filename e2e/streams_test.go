package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Streams over REST and /v1/functions, against the binary: shapes, the
// events each change logs, bad input, and exactness under concurrency.

// bodyIs checks that an answer's body is the JSON value want: the same keys
// at every level (none more, none less) and the same values.
func bodyIs(want string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if !jsonEqual(r.Body, []byte(want)) {
			t.Errorf("body %s, want %s", clip(r.Body), want)
		}
	}
}

// seqBody checks a {"seq": n} answer (exactly that key) whose n is the head
// of the log after it.
func seqBody(p *proc) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		head := p.headSeq(t)
		bodyIs(`{"seq":`+strconv.FormatUint(head, 10)+`}`)(t, r)
	}
}

// markerTopic is where streamLog posts its end marker: a stream of its own,
// so that no group under test sees it.
const markerTopic = "streams/e2e-marker/m"

// streamLog reads the log's events on topics (exact or prefix) in seq order:
// an SSE stream from after_seq=0, read up to a marker event posted on
// markerTopic once the stream was live.
func streamLog(t testing.TB, p *proc, topics ...string) []eventJSON {
	t.Helper()
	return streamLogAfter(t, p, 0, topics...)
}

// streamLogAfter is streamLog from after_seq=after.
func streamLogAfter(t testing.TB, p *proc, after uint64, topics ...string) []eventJSON {
	t.Helper()
	s := mustSSE(t, nil, sseURL(p.URL, append(slices.Clone(topics), markerTopic), int64(after)), "")
	defer s.close()
	var m struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(p.must(t, 202, "POST", "/v1/streams/e2e-marker/m/events", `{"type":"e2e.marker"}`), &m); err != nil || m.Seq == 0 {
		t.Fatalf("marker event: %v %+v", err, m)
	}
	var out []eventJSON
	for {
		ev := s.mustEvent(t)
		if n := len(out); n > 0 && ev.Seq <= out[n-1].Seq {
			t.Fatalf("SSE replay: seq %d after %d", ev.Seq, out[n-1].Seq)
		}
		if ev.Topic == markerTopic {
			if ev.Seq == m.Seq {
				return out
			}
			continue
		}
		if !matchesAny(topics, ev.Topic) {
			t.Fatalf("SSE replay of %v: event on %s", topics, ev.Topic)
		}
		out = append(out, ev)
	}
}

// wantEvent is an event expected in the log.
type wantEvent struct {
	typ, topic, data string
}

// checkEvents checks that got are exactly want (type, topic, data as JSON),
// in order.
func checkEvents(t testing.TB, got []eventJSON, want []wantEvent) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("event %d: missing, want %s %s %s", i, want[i].typ, want[i].topic, want[i].data)
		case i >= len(want):
			t.Errorf("event %d: unexpected seq %d %s %s %s", i, got[i].Seq, got[i].Type, got[i].Topic, clip(got[i].Data))
		case got[i].Type != want[i].typ || got[i].Topic != want[i].topic || !jsonEqual(got[i].Data, []byte(want[i].data)):
			t.Errorf("event %d (seq %d): %s %s %s, want %s %s %s", i, got[i].Seq, got[i].Type, got[i].Topic, clip(got[i].Data),
				want[i].typ, want[i].topic, want[i].data)
		}
	}
}

func TestStreamsREST(t *testing.T) {
	p := startServer(t, t.TempDir())
	const g1 = "/v1/streams/rs/g1/"
	patch := func(ops ...string) string { return `{"ops":[` + strings.Join(ops, ",") + `]}` }
	runScenarios(t, p, []scenario{
		{name: "create", method: "PUT", path: g1 + "b", body: `{"id":"b","n":1}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":{"id":"b","n":1}}`)},
		{name: "replace", method: "PUT", path: g1 + "b", body: `{"id":"b","n":2}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":{"id":"b","n":1},"new_value":{"id":"b","n":2}}`)},
		{name: "get", method: "GET", path: g1 + "b", status: 200, check: bodyIs(`{"value":{"id":"b","n":2}}`)},
		{name: "create a string", method: "PUT", path: g1 + "a", body: `"text"`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":"text"}`)},
		{name: "create a number", method: "PUT", path: g1 + "c", body: `3.5`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":3.5}`)},
		{name: "create an array", method: "PUT", path: g1 + "d", body: `[1, "x", null, {"k": []}]`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":[1,"x",null,{"k":[]}]}`)},
		{name: "create null", method: "PUT", path: g1 + "e", body: `null`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":null}`)},
		{name: "create nested", method: "PUT", path: g1 + "f", body: "{ \"deep\": {\"a\": [true, false]},\n \"u\": \"h\u00e9\u2603\" }", status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":{"deep":{"a":[true,false]},"u":"hé☃"}}`)},
		{name: "get null", method: "GET", path: g1 + "e", status: 200, check: bodyIs(`{"value":null}`)},
		{name: "get nested", method: "GET", path: g1 + "f", status: 200, check: bodyIs(`{"value":{"deep":{"a":[true,false]},"u":"hé☃"}}`)},
		{name: "replace null", method: "PUT", path: g1 + "e", body: `0`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":0}`)},
		{name: "patch", method: "PATCH", path: g1 + "b", status: 200, events: 1,
			body:  patch(`{"type":"increment","path":"n","by":5}`, `{"type":"set","path":"tag","value":"x"}`),
			check: bodyIs(`{"old_value":{"id":"b","n":2},"new_value":{"id":"b","n":7,"tag":"x"}}`)},
		{name: "patch an absent item", method: "PATCH", path: g1 + "g", status: 200, events: 1,
			body:  patch(`{"type":"merge","value":{"k":1}}`),
			check: bodyIs(`{"old_value":null,"new_value":{"k":1}}`)},
		{name: "get the patched item", method: "GET", path: g1 + "g", status: 200, check: bodyIs(`{"value":{"k":1}}`)},
		{name: "send", method: "POST", path: g1 + "events", body: `{"type":"typing","data":{"who":"u"},"id":"b"}`, status: 202, events: 1,
			check: seqBody(p)},
		{name: "send without id and data", method: "POST", path: g1 + "events", body: `{"type":"ping"}`, status: 202, events: 1,
			check: seqBody(p)},
		{name: "a send changes no item", method: "GET", path: g1 + "b", status: 200, check: bodyIs(`{"value":{"id":"b","n":7,"tag":"x"}}`)},
		{name: "no item named events", method: "GET", path: g1 + "events", status: 404, code: "not_found", field: "events"},
		{name: "another group", method: "PUT", path: "/v1/streams/rs/g2/x", body: `1`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":1}`)},
		{name: "another stream", method: "PUT", path: "/v1/streams/rs2/g/y", body: `2`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":2}`)},
		{name: "groups", method: "GET", path: "/v1/streams/rs", status: 200, check: bodyIs(`{"groups":["g1","g2"],"next_cursor":null}`)},
		{name: "streams", method: "GET", path: "/v1/streams", status: 200,
			check: bodyIs(`{"streams":[{"id":"rs","groups":["g1","g2"]},{"id":"rs2","groups":["g"]}],"count":2,"next_cursor":null}`)},
		{name: "delete", method: "DELETE", path: g1 + "b", status: 200, events: 1,
			check: bodyIs(`{"old_value":{"id":"b","n":7,"tag":"x"}}`)},
		{name: "get deleted", method: "GET", path: g1 + "b", status: 404, code: "not_found", field: "rs/g1/b"},
		{name: "delete deleted", method: "DELETE", path: g1 + "b", status: 404, code: "not_found", field: "rs/g1/b"},
		{name: "get an absent item", method: "GET", path: g1 + "nope", status: 404, code: "not_found", field: "nope"},
		{name: "get in an absent stream", method: "GET", path: "/v1/streams/none/g/i", status: 404, code: "not_found", field: "none/g/i"},
		{name: "delete in an absent stream", method: "DELETE", path: "/v1/streams/none/g/i", status: 404, code: "not_found", field: "none/g/i"},
		{name: "groups of an absent stream", method: "GET", path: "/v1/streams/none", status: 200, check: bodyIs(`{"groups":[],"next_cursor":null}`)},
		{name: "items of an absent group", method: "GET", path: "/v1/streams/rs/none", status: 200, check: bodyIs(`{"items":[],"next_cursor":null}`)},
		{name: "delete a group's last item", method: "DELETE", path: "/v1/streams/rs2/g/y", status: 200, events: 1, check: bodyIs(`{"old_value":2}`)},
		{name: "an emptied stream is not listed", method: "GET", path: "/v1/streams", status: 200,
			check: bodyIs(`{"streams":[{"id":"rs","groups":["g1","g2"]}],"count":1,"next_cursor":null}`)},
		{name: "an emptied group is not listed", method: "GET", path: "/v1/streams/rs2", status: 200, check: bodyIs(`{"groups":[],"next_cursor":null}`)},
		{name: "unknown route under streams", method: "GET", path: "/v1/streams/rs/g1/a/b", status: 404, code: "not_found"},
	})

	t.Run("paging", func(t *testing.T) {
		values := map[string]string{"a": `"text"`, "c": `3.5`, "d": `[1,"x",null,{"k":[]}]`, "e": `0`,
			"f": `{"deep":{"a":[true,false]},"u":"hé☃"}`, "g": `{"k":1}`}
		ids := []string{"a", "c", "d", "e", "f", "g"}
		for _, limit := range []int{0, 1, 2, 4, 5, 6, 7, 1000} {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				q := "/v1/streams/rs/g1"
				if limit > 0 {
					q += "?limit=" + strconv.Itoa(limit)
				}
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				raw := p.must(t, 200, "GET", q, nil)
				checkKeys(t, q, raw, []string{"items", "next_cursor"}, nil)
				var pg struct {
					Items      []json.RawMessage `json:"items"`
					NextCursor *string           `json:"next_cursor"`
				}
				if err := json.Unmarshal(raw, &pg); err != nil || pg.Items == nil {
					t.Fatalf("GET %s: %v: %s", q, err, raw)
				}
				eff := limit
				if eff == 0 {
					eff = 100
				}
				if rest := len(ids) - len(got); len(pg.Items) != min(rest, eff) {
					t.Fatalf("GET %s: %d items, %d were left", q, len(pg.Items), rest)
				}
				for _, it := range pg.Items {
					var x struct {
						ID string `json:"id"`
					}
					json.Unmarshal(it, &x)
					if want := `{"id":"` + x.ID + `","value":` + values[x.ID] + `}`; values[x.ID] == "" || !jsonEqual(it, []byte(want)) {
						t.Errorf("GET %s: item %s, want %s", q, it, want)
					}
					got = append(got, x.ID)
				}
				if (pg.NextCursor == nil) != (len(got) == len(ids)) || pg.NextCursor != nil && *pg.NextCursor == "" {
					t.Fatalf("GET %s: next_cursor %v with %d of %d items listed", q, pg.NextCursor, len(got), len(ids))
				}
				if pg.NextCursor == nil {
					break
				}
				if pages > len(ids) {
					t.Fatalf("limit %d: more pages than items", limit)
				}
				cursor = *pg.NextCursor
			}
			if !slices.Equal(got, ids) {
				t.Errorf("limit %d: listed %v, want %v", limit, got, ids)
			}
		}
	})

	t.Run("events", func(t *testing.T) {
		const tg1, tg2, trs2 = "streams/rs/g1", "streams/rs/g2", "streams/rs2/g"
		got := streamLog(t, p, "streams/rs/*", trs2)
		checkEvents(t, got, []wantEvent{
			{"stream.created", tg1, `{"id":"b","old_value":null,"new_value":{"id":"b","n":1}}`},
			{"stream.updated", tg1, `{"id":"b","old_value":{"id":"b","n":1},"new_value":{"id":"b","n":2}}`},
			{"stream.created", tg1, `{"id":"a","old_value":null,"new_value":"text"}`},
			{"stream.created", tg1, `{"id":"c","old_value":null,"new_value":3.5}`},
			{"stream.created", tg1, `{"id":"d","old_value":null,"new_value":[1,"x",null,{"k":[]}]}`},
			{"stream.created", tg1, `{"id":"e","old_value":null,"new_value":null}`},
			{"stream.created", tg1, `{"id":"f","old_value":null,"new_value":{"deep":{"a":[true,false]},"u":"hé☃"}}`},
			// e held null: the item existed, so this is an update.
			{"stream.updated", tg1, `{"id":"e","old_value":null,"new_value":0}`},
			{"stream.updated", tg1, `{"id":"b","old_value":{"id":"b","n":2},"new_value":{"id":"b","n":7,"tag":"x"}}`},
			{"stream.created", tg1, `{"id":"g","old_value":null,"new_value":{"k":1}}`},
			{"stream.event", tg1, `{"id":"b","type":"typing","data":{"who":"u"}}`},
			{"stream.event", tg1, `{"id":null,"type":"ping","data":null}`},
			{"stream.created", tg2, `{"id":"x","old_value":null,"new_value":1}`},
			{"stream.created", trs2, `{"id":"y","old_value":null,"new_value":2}`},
			{"stream.deleted", tg1, `{"id":"b","old_value":{"id":"b","n":7,"tag":"x"},"new_value":null}`},
			{"stream.deleted", trs2, `{"id":"y","old_value":2,"new_value":null}`},
		})
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 {
				t.Errorf("seqs %d then %d: these writes were the only ones", got[i-1].Seq, got[i].Seq)
			}
		}
	})
	p.Stop()
}

func TestStreamFunctions(t *testing.T) {
	p := startServer(t, t.TempDir())
	const fn = "/v1/functions/"
	ref := func(item string) string { return `"stream_name":"fs","group_id":"g","item_id":"` + item + `"` }
	inv := "invalid_argument"
	runScenarios(t, p, []scenario{
		{name: "set creates", method: "POST", path: fn + "stream::set", body: `{` + ref("b") + `,"data":{"n":1}}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":{"n":1}}`)},
		{name: "set replaces", method: "POST", path: fn + "stream::set", body: `{` + ref("b") + `,"data":{"n":2}}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":{"n":1},"new_value":{"n":2}}`)},
		{name: "set null data", method: "POST", path: fn + "stream::set", body: `{` + ref("a") + `,"data":null}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":null}`)},
		{name: "set a string", method: "POST", path: fn + "stream::set", body: `{` + ref("a") + `,"data":"x"}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":"x"}`)},
		{name: "get is the bare value", method: "POST", path: fn + "stream::get", body: `{` + ref("b") + `}`, status: 200,
			check: bodyIs(`{"n":2}`)},
		{name: "get a string", method: "POST", path: fn + "stream::get", body: `{` + ref("a") + `}`, status: 200,
			check: bodyIs(`"x"`)},
		{name: "get absent is null", method: "POST", path: fn + "stream::get", body: `{` + ref("zz") + `}`, status: 200,
			check: bodyIs(`null`)},
		{name: "get in an absent stream is null", method: "POST", path: fn + "stream::get", body: `{"stream_name":"none","group_id":"g","item_id":"i"}`, status: 200,
			check: bodyIs(`null`)},
		{name: "list in id order", method: "POST", path: fn + "stream::list", body: `{"stream_name":"fs","group_id":"g"}`, status: 200,
			check: bodyIs(`{"group":["x",{"n":2}]}`)},
		{name: "list an absent group", method: "POST", path: fn + "stream::list", body: `{"stream_name":"fs","group_id":"none"}`, status: 200,
			check: bodyIs(`{"group":[]}`)},
		{name: "set in another group", method: "POST", path: fn + "stream::set", body: `{"stream_name":"fs","group_id":"g2","item_id":"i","data":[1]}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":[1]}`)},
		{name: "list_groups", method: "POST", path: fn + "stream::list_groups", body: `{"stream_name":"fs"}`, status: 200,
			check: bodyIs(`{"groups":["g","g2"]}`)},
		{name: "list_groups of an absent stream", method: "POST", path: fn + "stream::list_groups", body: `{"stream_name":"none"}`, status: 200,
			check: bodyIs(`{"groups":[]}`)},
		{name: "list_all", method: "POST", path: fn + "stream::list_all", body: `{}`, status: 200,
			check: bodyIs(`{"stream":[{"id":"fs","groups":["g","g2"]}],"count":1}`)},
		{name: "send", method: "POST", path: fn + "stream::send", body: `{"stream_name":"fs","group_id":"g","type":"t","data":{"k":1},"id":"b"}`, status: 200, events: 1,
			check: seqBody(p)},
		{name: "send without id", method: "POST", path: fn + "stream::send", body: `{"stream_name":"fs","group_id":"g","type":"t2","data":null}`, status: 200, events: 1,
			check: seqBody(p)},
		{name: "update", method: "POST", path: fn + "stream::update", body: `{` + ref("b") + `,"ops":[{"type":"increment","path":"n","by":2}]}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":{"n":2},"new_value":{"n":4}}`)},
		{name: "update with a failing op", method: "POST", path: fn + "stream::update", status: 200, events: 1,
			body: `{` + ref("b") + `,"ops":[{"type":"append","path":"n","value":1},{"type":"set","path":"m","value":true}]}`,
			check: func(t *testing.T, r response) {
				var v struct {
					Errors []map[string]any `json:"errors"`
				}
				json.Unmarshal(r.Body, &v)
				if len(v.Errors) != 1 || v.Errors[0]["message"] == "" {
					t.Fatalf("errors %v", v.Errors)
				}
				msg, _ := v.Errors[0]["message"].(string)
				bodyIs(`{"old_value":{"n":4},"new_value":{"n":4,"m":true},"errors":[{"op_index":0,"code":"append.type_mismatch","message":`+
					strconv.Quote(msg)+`}]}`)(t, r)
			}},
		{name: "update an absent item", method: "POST", path: fn + "stream::update", body: `{` + ref("c") + `,"ops":[{"type":"decrement","path":"d","by":3}]}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":null,"new_value":{"d":-3}}`)},
		{name: "delete", method: "POST", path: fn + "stream::delete", body: `{` + ref("b") + `}`, status: 200, events: 1,
			check: bodyIs(`{"old_value":{"n":4,"m":true}}`)},
		{name: "delete absent is old_value null and no event", method: "POST", path: fn + "stream::delete", body: `{` + ref("b") + `}`, status: 200,
			check: bodyIs(`{"old_value":null}`)},
		{name: "get deleted", method: "POST", path: fn + "stream::get", body: `{` + ref("b") + `}`, status: 200, check: bodyIs(`null`)},
		{name: "REST sees the functions' writes", method: "GET", path: "/v1/streams/fs/g", status: 200,
			check: bodyIs(`{"items":[{"id":"a","value":"x"},{"id":"c","value":{"d":-3}}],"next_cursor":null}`)},

		{name: "unknown function", method: "POST", path: fn + "stream::nope", body: `{}`, status: 404, code: "not_found", field: `"stream::nope"`},
		{name: "unknown function outside stream::", method: "POST", path: fn + "state::get", body: `{}`, status: 404, code: "not_found", field: "state::get"},
		{name: "set without data", method: "POST", path: fn + "stream::set", body: `{` + ref("b") + `}`, status: 400, code: inv, field: "data"},
		{name: "set without item_id", method: "POST", path: fn + "stream::set", body: `{"stream_name":"fs","group_id":"g","data":1}`, status: 400, code: inv, field: "item_id"},
		{name: "get without item_id", method: "POST", path: fn + "stream::get", body: `{"stream_name":"fs","group_id":"g"}`, status: 400, code: inv, field: "item_id"},
		{name: "delete without group_id", method: "POST", path: fn + "stream::delete", body: `{"stream_name":"fs","item_id":"a"}`, status: 400, code: inv, field: "group_id"},
		{name: "list without group_id", method: "POST", path: fn + "stream::list", body: `{"stream_name":"fs"}`, status: 400, code: inv, field: "group_id"},
		{name: "list_groups without stream_name", method: "POST", path: fn + "stream::list_groups", body: `{}`, status: 400, code: inv, field: "stream_name"},
		{name: "send without type", method: "POST", path: fn + "stream::send", body: `{"stream_name":"fs","group_id":"g","data":1}`, status: 400, code: inv, field: "type"},
		{name: "send without data", method: "POST", path: fn + "stream::send", body: `{"stream_name":"fs","group_id":"g","type":"t"}`, status: 400, code: inv, field: "data"},
		{name: "update without ops", method: "POST", path: fn + "stream::update", body: `{` + ref("a") + `}`, status: 400, code: inv, field: "ops"},
		{name: "get with data", method: "POST", path: fn + "stream::get", body: `{` + ref("a") + `,"data":1}`, status: 400, code: inv, field: "data"},
		{name: "set with ops", method: "POST", path: fn + "stream::set", body: `{` + ref("a") + `,"data":1,"ops":[]}`, status: 400, code: inv, field: "ops"},
		{name: "update with data", method: "POST", path: fn + "stream::update", body: `{` + ref("a") + `,"ops":[{"type":"set","path":"k","value":1}],"data":1}`, status: 400, code: inv, field: "data"},
		{name: "list with item_id", method: "POST", path: fn + "stream::list", body: `{` + ref("a") + `}`, status: 400, code: inv, field: "item_id"},
		{name: "list_all with stream_name", method: "POST", path: fn + "stream::list_all", body: `{"stream_name":"fs"}`, status: 400, code: inv, field: "stream_name"},
		{name: "send with item_id", method: "POST", path: fn + "stream::send", body: `{` + ref("a") + `,"type":"t","data":1}`, status: 400, code: inv, field: "item_id"},
		{name: "a field no function has", method: "POST", path: fn + "stream::get", body: `{` + ref("a") + `,"bogus":1}`, status: 400, code: inv, field: "bogus"},
		{name: "stream_name a number", method: "POST", path: fn + "stream::get", body: `{"stream_name":5,"group_id":"g","item_id":"a"}`, status: 400, code: inv, field: "stream_name"},
		{name: "bad stream_name", method: "POST", path: fn + "stream::set", body: `{"stream_name":"a b","group_id":"g","item_id":"a","data":1}`, status: 400, code: inv, field: "stream_name"},
		{name: "bad item_id", method: "POST", path: fn + "stream::delete", body: `{"stream_name":"fs","group_id":"g","item_id":""}`, status: 400, code: inv, field: "item_id"},
		{name: "bad send id", method: "POST", path: fn + "stream::send", body: `{"stream_name":"fs","group_id":"g","type":"t","data":1,"id":"a/b"}`, status: 400, code: inv, field: "id"},
		{name: "set data invalid", method: "POST", path: fn + "stream::set", body: `{` + ref("a") + `,"data":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, status: 400, code: inv, field: "body"},
		{name: "update bad op", method: "POST", path: fn + "stream::update", body: `{` + ref("a") + `,"ops":[{"type":"rename","path":"k"}]}`, status: 400, code: inv, field: "ops[0].type"},
		{name: "payload not an object", method: "POST", path: fn + "stream::list_all", body: `[]`, status: 400, code: inv, field: "body"},
		{name: "no payload is {}", method: "POST", path: fn + "stream::list_all", body: ``, status: 200,
			check: bodyIs(`{"stream":[{"id":"fs","groups":["g","g2"]}],"count":1}`)},
		{name: "a blank payload is {}", method: "POST", path: fn + "stream::list_all", body: " \n", status: 200,
			check: bodyIs(`{"stream":[{"id":"fs","groups":["g","g2"]}],"count":1}`)},
		{name: "no payload for a function that needs one", method: "POST", path: fn + "stream::get", body: ``, status: 400, code: inv, field: "stream_name"},
		{name: "nothing changed", method: "POST", path: fn + "stream::list", body: `{"stream_name":"fs","group_id":"g"}`, status: 200,
			check: bodyIs(`{"group":["x",{"d":-3}]}`)},
	})
	t.Run("events", func(t *testing.T) {
		const tg, tg2 = "streams/fs/g", "streams/fs/g2"
		checkEvents(t, streamLog(t, p, "streams/fs/*"), []wantEvent{
			{"stream.created", tg, `{"id":"b","old_value":null,"new_value":{"n":1}}`},
			{"stream.updated", tg, `{"id":"b","old_value":{"n":1},"new_value":{"n":2}}`},
			{"stream.created", tg, `{"id":"a","old_value":null,"new_value":null}`},
			{"stream.updated", tg, `{"id":"a","old_value":null,"new_value":"x"}`},
			{"stream.created", tg2, `{"id":"i","old_value":null,"new_value":[1]}`},
			{"stream.event", tg, `{"id":"b","type":"t","data":{"k":1}}`},
			{"stream.event", tg, `{"id":null,"type":"t2","data":null}`},
			{"stream.updated", tg, `{"id":"b","old_value":{"n":2},"new_value":{"n":4}}`},
			{"stream.updated", tg, `{"id":"b","old_value":{"n":4},"new_value":{"n":4,"m":true}}`},
			{"stream.created", tg, `{"id":"c","old_value":null,"new_value":{"d":-3}}`},
			{"stream.deleted", tg, `{"id":"b","old_value":{"n":4,"m":true},"new_value":null}`},
		})
	})
	p.Stop()
}

// TestStreamBadInput: every bad request gets its 4xx with a message naming
// the field (or the limit), and changes nothing: no item, no group, no
// event.
func TestStreamBadInput(t *testing.T) {
	const maxBody = 64 << 10
	p := startServer(t, t.TempDir(), "--max-body", "64KiB", "--stream-max-items", "2")
	const g, a = "/v1/streams/bs/g", "/v1/streams/bs/g/a"
	p.must(t, 200, "PUT", a, `{"n":1,"s":"x"}`)
	p.must(t, 200, "PUT", g+"/big", `"`+strings.Repeat("b", 40<<10)+`"`)
	p.must(t, 200, "PUT", "/v1/streams/bs/g2/c", `[]`)

	long := strings.Repeat("n", 129)
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	overBody := `"` + strings.Repeat("v", maxBody) + `"`
	op := `{"type":"increment","path":"n","by":1}`
	ops := func(ops ...string) string { return `{"ops":[` + strings.Join(ops, ",") + `]}` }
	const inv, tooLarge = "invalid_argument", "payload_too_large"
	type badCase struct {
		name         string
		method, path string
		body         any
		status       int
		code, field  string
	}
	cases := []badCase{
		// Names in the path.
		{"stream name with a space", "PUT", "/v1/streams/a%20b/g/a", `1`, 400, inv, "stream_name"},
		{"stream name of 129", "PUT", "/v1/streams/" + long + "/g/a", `1`, 400, inv, "stream_name"},
		{"group name of 129", "PUT", "/v1/streams/bs/" + long + "/a", `1`, 400, inv, "group_id"},
		{"item name not ASCII", "PUT", "/v1/streams/bs/g/caf%C3%A9", `1`, 400, inv, "item_id"},
		{"item name with a quote", "PATCH", "/v1/streams/bs/g/a%22", ops(op), 400, inv, "item_id"},
		{"delete with a bad group", "DELETE", "/v1/streams/bs/g%21/a", nil, 400, inv, "group_id"},
		{"get with a bad item", "GET", "/v1/streams/bs/g/" + long, nil, 400, inv, "item_id"},
		{"list a bad group", "GET", "/v1/streams/bs/" + long, nil, 400, inv, "group_id"},
		{"groups of a bad stream", "GET", "/v1/streams/" + long, nil, 400, inv, "stream_name"},
		{"send to a bad group", "POST", "/v1/streams/bs/a%20b/events", `{"type":"t"}`, 400, inv, "group_id"},
		// Values.
		{"value not JSON", "PUT", a, `{"n":`, 400, inv, "value"},
		{"value two documents", "PUT", a, `1 2`, 400, inv, "value"},
		{"no value", "PUT", a, "", 400, inv, "value"},
		{"value invalid UTF-8", "PUT", a, "\"a\xffb\"", 400, inv, "value"},
		{"value too deep", "PUT", a, deep, 400, inv, "value"},
		{"value over --max-body", "PUT", a, overBody, 413, tooLarge, "body"},
		{"value of 1 GiB announced", "PUT", a, oversize(1 << 30), 413, tooLarge, "body"},
		{"function value over --max-body", "POST", "/v1/functions/stream::set", `{"stream_name":"bs","group_id":"g","item_id":"a","data":` + overBody + `}`, 413, tooLarge, "body"},
		{"patch value over --max-body", "PATCH", a, ops(`{"type":"set","path":"k","value":` + overBody + `}`), 413, tooLarge, "body"},
		{"send data over --max-body", "POST", g + "/events", `{"type":"t","data":` + overBody + `}`, 413, tooLarge, "body"},
		{"patch result over --max-body", "PATCH", g + "/big", ops(`{"type":"append","value":"` + strings.Repeat("c", 30<<10) + `"}`), 400, inv, "ops"},
		// A full group (--stream-max-items 2) takes no new item.
		{"new item in a full group", "PUT", g + "/new", `1`, 409, "conflict", "stream-max-items"},
		{"patch a new item in a full group", "PATCH", g + "/new", ops(op), 409, "conflict", "stream-max-items"},
		{"function set a new item in a full group", "POST", "/v1/functions/stream::set", `{"stream_name":"bs","group_id":"g","item_id":"new","data":1}`, 409, "conflict", "stream-max-items"},
		// Update ops.
		{"patch not JSON", "PATCH", a, `{"ops":[`, 400, inv, "body"},
		{"patch invalid UTF-8", "PATCH", a, "{\"ops\":[{\"type\":\"set\",\"path\":\"k\",\"value\":\"\xc3\"}]}", 400, inv, "UTF-8"},
		{"patch too deep", "PATCH", a, ops(`{"type":"set","path":"k","value":` + deep + `}`), 400, inv, "body"},
		{"ops missing", "PATCH", a, `{}`, 400, inv, "ops"},
		{"ops null", "PATCH", a, `{"ops":null}`, 400, inv, "ops"},
		{"ops empty", "PATCH", a, `{"ops":[]}`, 400, inv, "ops"},
		{"ops an object", "PATCH", a, `{"ops":{}}`, 400, inv, "ops"},
		{"1001 ops", "PATCH", a, ops(nCopies(1001, func(int) string { return op })...), 400, inv, "ops"},
		{"unknown op type", "PATCH", a, ops(op, `{"type":"rename","path":"n"}`), 400, inv, "ops[1].type"},
		{"op without type", "PATCH", a, ops(`{"path":"n"}`), 400, inv, "ops[0].type"},
		{"by a string", "PATCH", a, ops(`{"type":"increment","path":"n","by":"1"}`), 400, inv, "ops[0].by"},
		{"by missing", "PATCH", a, ops(`{"type":"decrement","path":"n"}`), 400, inv, "ops[0].by"},
		{"by out of range", "PATCH", a, ops(`{"type":"increment","path":"n","by":1e400}`), 400, inv, "ops[0].by"},
		{"set without path", "PATCH", a, ops(`{"type":"set","value":1}`), 400, inv, "ops[0].path"},
		{"set with an array path", "PATCH", a, ops(`{"type":"set","path":["k"],"value":1}`), 400, inv, "ops[0].path"},
		{"merge without value", "PATCH", a, ops(`{"type":"merge","path":"k"}`), 400, inv, "ops[0].value"},
		{"unknown op field", "PATCH", a, ops(`{"type":"set","path":"k","value":1,"when":2}`), 400, inv, "when"},
		{"unknown patch field", "PATCH", a, `{"ops":[` + op + `],"if":1}`, 400, inv, "if"},
		// Custom events.
		{"send without type", "POST", g + "/events", `{"data":1}`, 400, inv, "type"},
		{"send with an empty type", "POST", g + "/events", `{"type":""}`, 400, inv, "type"},
		{"send type a number", "POST", g + "/events", `{"type":1}`, 400, inv, "type"},
		{"send type over 256 bytes", "POST", g + "/events", `{"type":"` + strings.Repeat("t", 257) + `"}`, 400, inv, "type"},
		{"send with a bad id", "POST", g + "/events", `{"type":"t","id":"a b"}`, 400, inv, "id"},
		{"send not JSON", "POST", g + "/events", `{"type":`, 400, inv, "body"},
		{"send unknown field", "POST", g + "/events", `{"type":"t","item":"a"}`, 400, inv, "item"},
		// Listing.
		{"limit=0", "GET", g + "?limit=0", nil, 400, inv, "limit"},
		{"limit=1001", "GET", g + "?limit=1001", nil, 400, inv, "limit"},
		{"limit=x", "GET", g + "?limit=x", nil, 400, inv, "limit"},
		{"cursor=garbage", "GET", g + "?cursor=garbage", nil, 400, inv, "cursor"},
	}
	for _, c := range []struct{ name, fn, payload, field string }{
		{"function with bad group", "stream::set", `{"stream_name":"bs","group_id":"","item_id":"a","data":1}`, "group_id"},
		{"function update with 1001 ops", "stream::update", `{"stream_name":"bs","group_id":"g","item_id":"a","ops":[` + strings.Join(nCopies(1001, func(int) string { return op }), ",") + `]}`, "ops"},
		{"function update, by not a number", "stream::update", `{"stream_name":"bs","group_id":"g","item_id":"a","ops":[{"type":"increment","path":"n","by":true}]}`, "ops[0].by"},
		{"function update, ops missing", "stream::update", `{"stream_name":"bs","group_id":"g","item_id":"a"}`, "ops"},
		{"function set, data invalid UTF-8", "stream::set", "{\"stream_name\":\"bs\",\"group_id\":\"g\",\"item_id\":\"a\",\"data\":\"\xff\"}", "UTF-8"},
		{"function send, type missing", "stream::send", `{"stream_name":"bs","group_id":"g","data":1}`, "type"},
	} {
		cases = append(cases, badCase{c.name, "POST", "/v1/functions/" + c.fn, c.payload, 400, inv, c.field})
	}

	snapshot := func(t *testing.T) (uint64, []byte) {
		t.Helper()
		var b bytes.Buffer
		for _, q := range []string{"/v1/streams", "/v1/streams/bs", "/v1/streams/bs/g?limit=1000", "/v1/streams/bs/g2", "/v1/streams/a%20b/g/a"} {
			r := p.call(t, "GET", q, nil)
			fmt.Fprintf(&b, "%s: %d %s\n", q, r.Status, r.Body)
		}
		return p.headSeq(t), b.Bytes()
	}
	head0, state0 := snapshot(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if n, ok := tc.body.(oversize); ok {
				r = p.sendHeadersOnly(t, tc.method, tc.path, int64(n))
			} else {
				r = p.call(t, tc.method, tc.path, tc.body)
			}
			checkError(t, r, tc.status, tc.code, tc.field)
			head, state := snapshot(t)
			if head != head0 {
				t.Errorf("head seq moved from %d to %d", head0, head)
			}
			if !bytes.Equal(state, state0) {
				t.Errorf("streams changed:\n%s\nwas\n%s", state, state0)
			}
		})
	}
	if lines := p.logLines("request failed"); len(lines) != 0 {
		t.Errorf("bad input logged %d server errors: %v", len(lines), lines)
	}
	// No event of any kind reached the log for the group.
	if evs := streamLog(t, p, "streams/bs/*"); len(evs) != 3 {
		t.Errorf("the log has %d events on streams/bs/*, want the 3 seeding writes", len(evs))
	}
	p.must(t, 200, "PATCH", a, ops(op))
	bodyIs(`{"value":{"n":2,"s":"x"}}`)(t, p.call(t, "GET", a, nil))
	p.Stop()
}

// TestStreamIncrementExact: concurrent increments of one item neither lose
// nor repeat one, and the log holds one event per increment, in order.
func TestStreamIncrementExact(t *testing.T) {
	p := startServer(t, t.TempDir())
	const clients, per, path = 64, 100, "/v1/streams/cnt/g/c"
	body := []byte(`{"ops":[{"type":"increment","path":"n","by":1}]}`)
	seen := make([]atomic.Int32, clients*per+2)
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
		first  sync.Once
		ferr   error
	)
	fail := func(err error) {
		failed.Add(1)
		first.Do(func() { ferr = err })
	}
	for range clients {
		wg.Go(func() {
			for range per {
				if failed.Load() > 0 {
					return
				}
				status, b, err := p.do("PATCH", path, body)
				if err != nil || status != 200 {
					fail(fmt.Errorf("PATCH %s: %d %s %v", path, status, clip(b), err))
					return
				}
				var ch struct {
					Old *struct {
						N *int `json:"n"`
					} `json:"old_value"`
					New struct {
						N int `json:"n"`
					} `json:"new_value"`
				}
				if err := json.Unmarshal(b, &ch); err != nil {
					fail(fmt.Errorf("PATCH answer %s: %v", b, err))
					return
				}
				old := 0
				if ch.Old != nil && ch.Old.N != nil {
					old = *ch.Old.N
				}
				want := fmt.Sprintf(`{"old_value":{"n":%d},"new_value":{"n":%d}}`, old, old+1)
				if ch.Old == nil {
					want = `{"old_value":null,"new_value":{"n":1}}`
				}
				if ch.New.N < 1 || ch.New.N > clients*per || !jsonEqual(b, []byte(want)) {
					fail(fmt.Errorf("PATCH answer %s", b))
					return
				}
				seen[ch.New.N].Add(1)
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		t.Fatal(ferr)
	}
	for n := 1; n <= clients*per; n++ {
		if c := seen[n].Load(); c != 1 {
			t.Errorf("new_value %d answered %d times", n, c)
		}
	}
	bodyIs(`{"value":{"n":6400}}`)(t, p.call(t, "GET", path, nil))

	evs := streamLog(t, p, "streams/cnt/g")
	if len(evs) != clients*per {
		t.Fatalf("the log holds %d events for the item, want %d", len(evs), clients*per)
	}
	for i, ev := range evs {
		typ, old := "stream.updated", fmt.Sprintf(`{"n":%d}`, i)
		if i == 0 {
			typ, old = "stream.created", "null"
		}
		if want := fmt.Sprintf(`{"id":"c","old_value":%s,"new_value":{"n":%d}}`, old, i+1); ev.Type != typ || !jsonEqual(ev.Data, []byte(want)) {
			t.Fatalf("event %d (seq %d): %s %s, want %s %s", i, ev.Seq, ev.Type, ev.Data, typ, want)
		}
	}
	p.Stop()
}

// TestStreamUpdateSemantics: one update of several ops, some failing, is one
// event; the failing ops are reported by index and code, the others apply.
func TestStreamUpdateSemantics(t *testing.T) {
	p := startServer(t, t.TempDir())
	const path = "/v1/streams/up/g/i"
	p.must(t, 200, "PUT", path, `{"s":"str","n":1,"o":{},"l":[1]}`)
	type opErr struct {
		index int
		code  string
	}
	for _, tc := range []struct {
		name      string
		ops       []string
		old, new  string
		wantCodes []opErr
	}{
		{
			name: "mixed",
			ops: []string{
				`{"type":"set","path":"a","value":1}`,
				`{"type":"increment","path":"s","by":1}`,
				`{"type":"append","path":"n","value":2}`,
				`{"type":"increment","path":"n","by":2}`,
				`{"type":"merge","value":[1]}`,
				`{"type":"merge","path":["o","p"],"value":{"q":true}}`,
				`{"type":"remove","path":"s"}`,
				`{"type":"set","path":"__proto__","value":1}`,
				`{"type":"decrement","path":"n","by":0.5}`,
				`{"type":"append","path":"l","value":[2]}`,
				`{"type":"set","path":"a.b","value":"dots are literal"}`,
			},
			old:       `{"s":"str","n":1,"o":{},"l":[1]}`,
			new:       `{"a":1,"n":2.5,"o":{"p":{"q":true}},"l":[1,[2]],"a.b":"dots are literal"}`,
			wantCodes: []opErr{{1, "increment.not_number"}, {2, "append.type_mismatch"}, {4, "merge.value.not_an_object"}, {7, "set.path.proto_polluted"}},
		},
		{
			name:      "every op fails",
			ops:       []string{`{"type":"increment","path":"o","by":1}`, `{"type":"merge","path":["x",""],"value":{}}`},
			old:       `{"a":1,"n":2.5,"o":{"p":{"q":true}},"l":[1,[2]],"a.b":"dots are literal"}`,
			new:       `{"a":1,"n":2.5,"o":{"p":{"q":true}},"l":[1,[2]],"a.b":"dots are literal"}`,
			wantCodes: []opErr{{0, "increment.not_number"}, {1, "merge.path.empty_segment"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head0 := p.headSeq(t)
			r := p.call(t, "PATCH", path, `{"ops":[`+strings.Join(tc.ops, ",")+`]}`)
			if r.Status != 200 {
				t.Fatalf("PATCH: %s", r)
			}
			checkKeys(t, "PATCH answer", r.Body, []string{"old_value", "new_value", "errors"}, nil)
			var ch struct {
				Old    json.RawMessage   `json:"old_value"`
				New    json.RawMessage   `json:"new_value"`
				Errors []json.RawMessage `json:"errors"`
			}
			if err := json.Unmarshal(r.Body, &ch); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(ch.Old, []byte(tc.old)) || !jsonEqual(ch.New, []byte(tc.new)) {
				t.Errorf("old_value %s new_value %s, want %s %s", ch.Old, ch.New, tc.old, tc.new)
			}
			var got []opErr
			for _, raw := range ch.Errors {
				checkKeys(t, "op error", raw, []string{"op_index", "code", "message"}, nil)
				var e struct {
					Index   int    `json:"op_index"`
					Code    string `json:"code"`
					Message string `json:"message"`
				}
				json.Unmarshal(raw, &e)
				if e.Message == "" {
					t.Errorf("op error without a message: %s", raw)
				}
				got = append(got, opErr{e.Index, e.Code})
			}
			if !slices.Equal(got, tc.wantCodes) {
				t.Errorf("errors %v, want %v", got, tc.wantCodes)
			}
			if head := p.headSeq(t); head != head0+1 {
				t.Errorf("the update committed %d events, want 1", head-head0)
			}
			bodyIs(`{"value":`+tc.new+`}`)(t, p.call(t, "GET", path, nil))
			evs := streamLog(t, p, "streams/up/g")
			last := evs[len(evs)-1]
			if want := `{"id":"i","old_value":` + tc.old + `,"new_value":` + tc.new + `}`; last.Seq != head0+1 || last.Type != "stream.updated" || !jsonEqual(last.Data, []byte(want)) {
				t.Errorf("the update's event: seq %d %s %s, want seq %d stream.updated %s", last.Seq, last.Type, last.Data, head0+1, want)
			}
		})
	}
	p.Stop()
}

// TestStreamNames: every character names allow, dots alone included, works
// over REST, /v1/functions and /stream alike.
func TestStreamNames(t *testing.T) {
	p := startServer(t, t.TempDir())
	names := []string{".", "..", "...", "a:b@c~d", "_-.~", "A0", strings.Repeat("z", 128)}
	for _, n := range names {
		bodyIs(`{"old_value":null,"new_value":`+strconv.Quote(n)+`}`)(t, p.call(t, "PUT", "/v1/streams/../g./"+n, strconv.Quote(n)))
	}
	sorted := slices.Sorted(slices.Values(names))
	var values, items []string
	for _, n := range sorted {
		bodyIs(`{"value":`+strconv.Quote(n)+`}`)(t, p.call(t, "GET", "/v1/streams/../g./"+n, nil))
		bodyIs(strconv.Quote(n))(t, p.call(t, "POST", "/v1/functions/stream::get", `{"stream_name":"..","group_id":"g.","item_id":`+strconv.Quote(n)+`}`))
		values = append(values, strconv.Quote(n))
		items = append(items, `{"id":`+strconv.Quote(n)+`,"value":`+strconv.Quote(n)+`}`)
	}
	bodyIs(`{"items":[`+strings.Join(items, ",")+`],"next_cursor":null}`)(t, p.call(t, "GET", "/v1/streams/../g.", nil))
	bodyIs(`{"group":[`+strings.Join(values, ",")+`]}`)(t, p.call(t, "POST", "/v1/functions/stream::list", `{"stream_name":"..","group_id":"g."}`))
	bodyIs(`{"streams":[{"id":"..","groups":["g."]}],"count":1,"next_cursor":null}`)(t, p.call(t, "GET", "/v1/streams", nil))
	bodyIs(`{"groups":["g."],"next_cursor":null}`)(t, p.call(t, "GET", "/v1/streams/..", nil))
	w := dialIII(t, p, "/stream")
	w.send(t, joinFrame("s", "..", "g."))
	w.nextStream(t, "..", "g.", nil, `{"type":"sync","data":[`+strings.Join(values, ",")+`]}`)
	p.must(t, 200, "DELETE", "/v1/streams/../g./..", nil)
	w.nextStream(t, "..", "g.", ptr(".."), `{"type":"delete","data":".."}`)
	w.closeNormal(t)
	stopQuiet(t, p)
}

// TestStreamGroupCount: concurrent creates, updates and deletes keep a
// group's item count exact: the log's event types agree with the items'
// presence, and after a restart --stream-max-items and --stream-sync-max
// take effect at exactly the count REST lists.
func TestStreamGroupCount(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	const workers, per, keys = 32, 40, 16
	path := func(k string) string { return "/v1/streams/gc/g/" + k }
	var (
		wg   sync.WaitGroup
		errs [workers]error
	)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range per {
				k := fmt.Sprintf("k%02d", rng.IntN(keys))
				var (
					status int
					b      []byte
					err    error
				)
				switch rng.IntN(3) {
				case 0:
					status, b, err = p.do("PUT", path(k), []byte(`{"w":`+strconv.Itoa(w)+`}`))
				case 1:
					if status, b, err = p.do("DELETE", path(k), nil); status == 404 {
						status = 200
					}
				default:
					status, b, err = p.do("PATCH", path(k), []byte(`{"ops":[{"type":"set","path":"w","value":`+strconv.Itoa(w)+`}]}`))
				}
				if err != nil || status != 200 {
					errs[w] = fmt.Errorf("%s: %d %s %v", k, status, clip(b), err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var listed struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	json.Unmarshal(p.must(t, 200, "GET", "/v1/streams/gc/g?limit=1000", nil), &listed)
	var ids []string
	for _, it := range listed.Items {
		ids = append(ids, it.ID)
	}
	present := map[string]bool{}
	for _, ev := range streamLog(t, p, "streams/gc/g") {
		var d struct {
			ID string `json:"id"`
		}
		json.Unmarshal(ev.Data, &d)
		if was := present[d.ID]; ev.Type == "stream.created" && was || ev.Type != "stream.created" && !was {
			t.Errorf("seq %d: %s of %s, which was present: %v", ev.Seq, ev.Type, d.ID, was)
		}
		present[d.ID] = ev.Type != "stream.deleted"
	}
	var fromLog []string
	for _, k := range slices.Sorted(maps.Keys(present)) {
		if present[k] {
			fromLog = append(fromLog, k)
		}
	}
	if !slices.Equal(fromLog, ids) {
		t.Fatalf("the log leaves items %v, REST lists %v", fromLog, ids)
	}
	n := len(ids)
	t.Logf("%d items left", n)
	p.Stop()

	p2 := startServer(t, dir, "--stream-max-items", strconv.Itoa(n+1), "--stream-sync-max", strconv.Itoa(n+1))
	w := dialIII(t, p2, "/stream")
	w.send(t, joinFrame("a", "gc", "g"))
	w.next(t)
	p2.must(t, 200, "PUT", path("new1"), `1`)
	w.next(t)
	checkError(t, p2.call(t, "PUT", path("new2"), `2`), 409, "conflict", "stream-max-items")
	w.send(t, joinFrame("b", "gc", "g"))
	var f struct {
		Type  string `json:"type"`
		Event struct {
			Data []json.RawMessage `json:"data"`
		} `json:"event"`
	}
	if raw := w.next(t); json.Unmarshal(raw, &f) != nil || f.Type != "stream" || len(f.Event.Data) != n+1 {
		t.Errorf("join of a group at --stream-sync-max: %s", clip(raw))
	}
	w.closeNormal(t)
	for _, k := range append(ids, "new1") {
		p2.must(t, 200, "DELETE", path(k), nil)
	}
	bodyIs(`{"groups":[],"next_cursor":null}`)(t, p2.call(t, "GET", "/v1/streams/gc", nil))
	bodyIs(`{"streams":[],"count":0,"next_cursor":null}`)(t, p2.call(t, "GET", "/v1/streams", nil))
	stopQuiet(t, p2)
}
