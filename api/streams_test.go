package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// body checks a 2xx body is exactly want (compact JSON).
func body(want string) check {
	return func(t *testing.T, b []byte, x func(string) string) {
		t.Helper()
		if got := string(bytes.TrimSpace(b)); got != x(want) {
			t.Errorf("body %s, want %s", got, x(want))
		}
	}
}

func TestStreamScenarios(t *testing.T) {
	srv := newServer(t, 4096)
	long := strings.Repeat("x", 129)
	run(t, srv, map[string]string{"long": long}, []scenario{
		// REST.
		{name: "put creates", method: "PUT", path: "/v1/streams/room/g1/alice", body: `{"status":"online"}`, wantStatus: 200,
			check: body(`{"old_value":null,"new_value":{"status":"online"}}`)},
		{name: "put replaces", method: "PUT", path: "/v1/streams/room/g1/alice", body: `{"status":"away"}`, wantStatus: 200,
			check: body(`{"old_value":{"status":"online"},"new_value":{"status":"away"}}`)},
		{name: "put scalar", method: "PUT", path: "/v1/streams/room/g1/bob", body: `42`, wantStatus: 200,
			check: body(`{"old_value":null,"new_value":42}`)},
		{name: "get", method: "GET", path: "/v1/streams/room/g1/alice", wantStatus: 200, noWrite: true,
			check: body(`{"value":{"status":"away"}}`)},
		{name: "get absent", method: "GET", path: "/v1/streams/room/g1/carol", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"room/g1/carol"}},
		{name: "list group", method: "GET", path: "/v1/streams/room/g1", wantStatus: 200, noWrite: true,
			check: body(`{"items":[{"id":"alice","value":{"status":"away"}},{"id":"bob","value":42}],"next_cursor":null}`)},
		{name: "list groups", method: "GET", path: "/v1/streams/room", wantStatus: 200, check: body(`{"groups":["g1"],"next_cursor":null}`)},
		{name: "list streams", method: "GET", path: "/v1/streams", wantStatus: 200, check: body(`{"streams":[{"id":"room","groups":["g1"]}],"count":1,"next_cursor":null}`)},
		{name: "patch", method: "PATCH", path: "/v1/streams/room/g1/alice",
			body: `{"ops":[{"type":"increment","path":"n","by":2},{"type":"append","path":"status","value":1},{"type":"set","path":"x","value":true}]}`, wantStatus: 200,
			check: body(`{"old_value":{"status":"away"},"new_value":{"n":2,"status":"away","x":true},"errors":[{"op_index":1,"code":"append.type_mismatch","message":"ops[1]: field \"status\" is a string; only a string can be appended to it, not a number"}]}`)},
		{name: "send", method: "POST", path: "/v1/streams/room/g1/events", body: `{"type":"typing","data":{"who":"alice"},"id":"alice"}`, wantStatus: 202},
		{name: "delete", method: "DELETE", path: "/v1/streams/room/g1/bob", wantStatus: 200, check: body(`{"old_value":42}`)},
		{name: "delete absent", method: "DELETE", path: "/v1/streams/room/g1/bob", wantStatus: 404, wantCode: "not_found"},

		// Bad input: 4xx naming the field, nothing written.
		{name: "bad stream name", method: "PUT", path: "/v1/streams/{long}/g/i", body: `1`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"stream_name"}},
		{name: "bad group name", method: "GET", path: "/v1/streams/s/g%20h", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"group_id"}},
		{name: "bad item name", method: "DELETE", path: "/v1/streams/s/g/a%21b", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"item_id"}},
		{name: "put no body", method: "PUT", path: "/v1/streams/s/g/i", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"value: required"}},
		{name: "put bad JSON", method: "PUT", path: "/v1/streams/s/g/i", body: `{"a":`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"value: not valid JSON"}},
		{name: "patch no ops", method: "PATCH", path: "/v1/streams/s/g/i", body: `{}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"ops: required"}},
		{name: "patch unknown op", method: "PATCH", path: "/v1/streams/s/g/i", body: `{"ops":[{"type":"explode","path":"a"}]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"ops[0].type"}},
		{name: "patch by not a number", method: "PATCH", path: "/v1/streams/s/g/i", body: `{"ops":[{"type":"increment","path":"a","by":"1"}]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"ops[0].by"}},
		{name: "patch unknown field", method: "PATCH", path: "/v1/streams/s/g/i", body: `{"ops":[],"x":1}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"x: unknown field"}},
		{name: "send no type", method: "POST", path: "/v1/streams/s/g/events", body: `{"data":1}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"type: required"}},
		{name: "send bad id", method: "POST", path: "/v1/streams/s/g/events", body: `{"type":"t","id":"a b"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"id:"}},
		{name: "limit out of range", method: "GET", path: "/v1/streams/room/g1?limit=1001", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"limit"}},
		{name: "bad cursor", method: "GET", path: "/v1/streams/room/g1?cursor=zz", wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"cursor"}},

		// iii functions.
		{name: "fn set", method: "POST", path: "/v1/functions/stream::set", body: `{"stream_name":"room","group_id":"g2","item_id":"a","data":{"v":1}}`, wantStatus: 200,
			check: body(`{"old_value":null,"new_value":{"v":1}}`)},
		{name: "fn set null", method: "POST", path: "/v1/functions/stream::set", body: `{"stream_name":"room","group_id":"g2","item_id":"n","data":null}`, wantStatus: 200,
			check: body(`{"old_value":null,"new_value":null}`)},
		{name: "fn get", method: "POST", path: "/v1/functions/stream::get", body: `{"stream_name":"room","group_id":"g2","item_id":"a"}`, wantStatus: 200, noWrite: true, check: body(`{"v":1}`)},
		{name: "fn get absent", method: "POST", path: "/v1/functions/stream::get", body: `{"stream_name":"room","group_id":"g2","item_id":"zz"}`, wantStatus: 200, noWrite: true, check: body(`null`)},
		{name: "fn update", method: "POST", path: "/v1/functions/stream::update", body: `{"stream_name":"room","group_id":"g2","item_id":"a","ops":[{"type":"increment","path":"v","by":1}]}`, wantStatus: 200,
			check: body(`{"old_value":{"v":1},"new_value":{"v":2}}`)},
		{name: "fn list", method: "POST", path: "/v1/functions/stream::list", body: `{"stream_name":"room","group_id":"g2"}`, wantStatus: 200, noWrite: true, check: body(`{"group":[{"v":2},null]}`)},
		{name: "fn list empty", method: "POST", path: "/v1/functions/stream::list", body: `{"stream_name":"room","group_id":"none"}`, wantStatus: 200, check: body(`{"group":[]}`)},
		{name: "fn list_groups", method: "POST", path: "/v1/functions/stream::list_groups", body: `{"stream_name":"room"}`, wantStatus: 200, check: body(`{"groups":["g1","g2"]}`)},
		{name: "fn list_all", method: "POST", path: "/v1/functions/stream::list_all", body: `{}`, wantStatus: 200, check: body(`{"stream":[{"id":"room","groups":["g1","g2"]}],"count":1}`)},
		{name: "fn send", method: "POST", path: "/v1/functions/stream::send", body: `{"stream_name":"room","group_id":"g2","type":"t","data":{}}`, wantStatus: 200},
		{name: "fn delete", method: "POST", path: "/v1/functions/stream::delete", body: `{"stream_name":"room","group_id":"g2","item_id":"n"}`, wantStatus: 200, check: body(`{"old_value":null}`)},
		{name: "fn delete absent", method: "POST", path: "/v1/functions/stream::delete", body: `{"stream_name":"room","group_id":"g2","item_id":"n"}`, wantStatus: 200, noWrite: true, check: body(`{"old_value":null}`)},
		{name: "fn unknown", method: "POST", path: "/v1/functions/stream::explode", body: `{}`, wantStatus: 404, wantCode: "not_found", wantMsg: []string{`"stream::explode"`, "stream::set"}},
		{name: "fn missing field", method: "POST", path: "/v1/functions/stream::set", body: `{"stream_name":"room","group_id":"g2","item_id":"a"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"data: required"}},
		{name: "fn foreign field", method: "POST", path: "/v1/functions/stream::get", body: `{"stream_name":"room","group_id":"g2","item_id":"a","ops":[]}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"ops: unknown field"}},
		{name: "fn unknown field", method: "POST", path: "/v1/functions/stream::get", body: `{"stream":"room"}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"stream: unknown field"}},
		{name: "fn bad name", method: "POST", path: "/v1/functions/stream::set", body: `{"stream_name":"a/b","group_id":"g","item_id":"i","data":1}`, wantStatus: 400, wantCode: "invalid_argument", wantMsg: []string{"stream_name"}},
		{name: "fn bad data", method: "POST", path: "/v1/functions/stream::set", body: `{"stream_name":"a","group_id":"g","item_id":"i","data":"` + "\xff" + `"}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "fn not an object", method: "POST", path: "/v1/functions/stream::list_all", body: `[]`, wantStatus: 400, wantCode: "invalid_argument"},
	})
}

// TestStreamListLargeGroup: stream::list streams a large group from one
// snapshot as valid JSON, every value once, in id order.
func TestStreamListLargeGroup(t *testing.T) {
	srv := newServer(t, 0)
	const n = 3000
	for i := range n {
		r := do(t, srv, "PUT", fmt.Sprintf("/v1/streams/big/g/i%05d", i), fmt.Sprintf(`{"i":%d}`, i))
		if r.status != 200 {
			t.Fatalf("put %d: %d %s", i, r.status, r.body)
		}
	}
	r := do(t, srv, "POST", "/v1/functions/stream::list", `{"stream_name":"big","group_id":"g"}`)
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var out struct {
		Group []struct {
			I int `json:"i"`
		} `json:"group"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("list body is not JSON: %v", err)
	}
	if len(out.Group) != n {
		t.Fatalf("%d values, want %d", len(out.Group), n)
	}
	for i, v := range out.Group {
		if v.I != i {
			t.Fatalf("value %d is %d", i, v.I)
		}
	}
}
