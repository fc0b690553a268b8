package api_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"engram/internal/server"
)

// ldetails checks the details of an error body: exactly want, whose values
// are expanded with the scenario variables.
func ldetails(want map[string]string) check {
	return func(t *testing.T, b []byte, x func(string) string) {
		t.Helper()
		var e struct {
			Error struct {
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("body %s: %v", b, err)
		}
		got := e.Error.Details
		if len(got) != len(want) {
			t.Errorf("details %v, want %v", got, want)
		}
		for k, w := range want {
			if s, ok := got[k].(string); !ok || s != x(w) {
				t.Errorf("details.%s = %v, want %q (body %s)", k, got[k], x(w), b)
			}
		}
	}
}

// lrelease sends DELETE /v1/locks/{id} and checks the status; a 204 has no
// body and writes an event.
func lrelease(t *testing.T, srv *server.Server, id string, want int) {
	t.Helper()
	before := srv.HeadSeq()
	r := do(t, srv, "DELETE", "/v1/locks/"+id, "")
	if r.status != want {
		t.Fatalf("release %s: status %d, want %d; body %s", id, r.status, want, r.body)
	}
	if want == 204 {
		if len(r.body) != 0 {
			t.Errorf("204 with a body: %q", r.body)
		}
		if after := srv.HeadSeq(); after < before+1 { // a woken waiter may add its own
			t.Errorf("release: head seq %d -> %d, want an event", before, after)
		}
	}
}

func lresources(n int) string {
	rs := make([]string, n)
	for i := range rs {
		rs[i] = fmt.Sprintf(`"r%d"`, i)
	}
	return `[` + strings.Join(rs, ",") + `]`
}

func TestLockScenarios(t *testing.T) {
	srv := newServer(t, 0)
	v := map[string]string{
		"long":    strings.Repeat("x", 513),
		"max":     strings.Repeat("m", 512),
		"unknown": "01JDQ8ZK5W3V6X7Y8Z9A0B1C2D",
	}
	const bad = "invalid_argument"
	lock := func(id, resources, holder string, token int) string {
		return `{"lock_id":"{` + id + `}","resources":` + resources + `,"holder":"` + holder + `","fencing_token":` + fmt.Sprint(token) + `,"acquired_at":"<t>","expires_at":"<t>"}`
	}
	const acq = "/v1/locks"

	// Acquire, look up, conflicts. A fresh log: fencing tokens are exact.
	run(t, srv, v, []scenario{
		{name: "list empty", method: "GET", path: acq, wantStatus: 200, noWrite: true, check: qshape(v, `{"locks":[],"next_cursor":null}`)},
		{name: "list empty with a prefix", method: "GET", path: acq + "?prefix=a/&limit=5", wantStatus: 200, noWrite: true, check: qshape(v, `{"locks":[],"next_cursor":null}`)},
		{name: "get a free resource", method: "GET", path: acq + "?resource=a/b", wantStatus: 404, wantCode: "not_found", wantMsg: []string{`resource "a/b" is not locked`}},
		{name: "acquire two", method: "POST", path: acq, body: `{"resources":["a/b","c"],"holder":"agent-1","ttl_ms":60000}`, wantStatus: 201,
			check: all(qcap(v, "l1", "lock_id", "l1exp", "expires_at"), qnear("expires_at", time.Minute), qnear("acquired_at", 0),
				qshape(v, `{"lock_id":"{l1}","resources":["a/b","c"],"holder":"agent-1","fencing_token":1,"acquired_at":"<t>","expires_at":"<t>"}`))},
		{name: "acquire with wait on a free resource", method: "POST", path: acq, body: `{"resources":["a/c"],"holder":"agent-2","ttl_ms":86400000,"wait_ms":60000}`, wantStatus: 201,
			check: all(qcap(v, "l2", "lock_id", "l2exp", "expires_at"), qnear("expires_at", 24*time.Hour),
				qshape(v, `{"lock_id":"{l2}","resources":["a/c"],"holder":"agent-2","fencing_token":2,"acquired_at":"<t>","expires_at":"<t>"}`))},
	})
	run(t, srv, v, []scenario{
		{name: "get by its first resource", method: "GET", path: acq + "?resource=a/b", wantStatus: 200, noWrite: true, check: qshape(v, lock("l1", `["a/b","c"]`, "agent-1", 1))},
		{name: "get by its second resource", method: "GET", path: acq + "?resource=c", wantStatus: 200, noWrite: true, check: qshape(v, lock("l1", `["a/b","c"]`, "agent-1", 1))},
		{name: "get escaped", method: "GET", path: acq + "?resource=a%2Fc", wantStatus: 200, noWrite: true, check: qshape(v, lock("l2", `["a/c"]`, "agent-2", 2))},
		{name: "get a prefix of a resource is free", method: "GET", path: acq + "?resource=a/", wantStatus: 404, wantCode: "not_found"},
		{name: "held: 409 with details", method: "POST", path: acq, body: `{"resources":["c"],"holder":"agent-2","ttl_ms":1000}`, wantStatus: 409, wantCode: "conflict",
			wantMsg: []string{`resource "c" is held by "agent-1" until {l1exp}`},
			check:   ldetails(map[string]string{"held_by": "agent-1", "lock_id": "{l1}", "resource": "c", "expires_at": "{l1exp}"})},
		{name: "all or none: names the first held resource", method: "POST", path: acq, body: `{"resources":["x","a/c","a/b"],"holder":"agent-3","ttl_ms":1000,"wait_ms":0}`, wantStatus: 409, wantCode: "conflict",
			check: ldetails(map[string]string{"held_by": "agent-2", "lock_id": "{l2}", "resource": "a/c", "expires_at": "{l2exp}"})},
		{name: "all or none: x is still free", method: "GET", path: acq + "?resource=x", wantStatus: 404, wantCode: "not_found"},
		{name: "held for the whole wait", method: "POST", path: acq, body: `{"resources":["c"],"holder":"agent-2","ttl_ms":1000,"wait_ms":50}`, wantStatus: 409, wantCode: "conflict",
			check: ldetails(map[string]string{"held_by": "agent-1", "lock_id": "{l1}", "resource": "c", "expires_at": "{l1exp}"})},
		{name: "the same holder is no exception", method: "POST", path: acq, body: `{"resources":["a/b"],"holder":"agent-1","ttl_ms":1000}`, wantStatus: 409, wantCode: "conflict"},

		// Listing.
		{name: "list all", method: "GET", path: acq, wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l1", `["a/b","c"]`, "agent-1", 1)+`,`+lock("l2", `["a/c"]`, "agent-2", 2)+`],"next_cursor":null}`)},
		{name: "list an empty prefix is all", method: "GET", path: acq + "?prefix=", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l1", `["a/b","c"]`, "agent-1", 1)+`,`+lock("l2", `["a/c"]`, "agent-2", 2)+`],"next_cursor":null}`)},
		{name: "list a prefix", method: "GET", path: acq + "?prefix=a/", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l1", `["a/b","c"]`, "agent-1", 1)+`,`+lock("l2", `["a/c"]`, "agent-2", 2)+`],"next_cursor":null}`)},
		{name: "list another prefix", method: "GET", path: acq + "?prefix=c", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l1", `["a/b","c"]`, "agent-1", 1)+`],"next_cursor":null}`)},
		{name: "list a prefix without locks", method: "GET", path: acq + "?prefix=zz", wantStatus: 200, noWrite: true, check: qshape(v, `{"locks":[],"next_cursor":null}`)},
		{name: "list page 1", method: "GET", path: acq + "?limit=2", wantStatus: 200, noWrite: true,
			check: all(qcap(v, "p2", "next_cursor"), hasNext(true), contains(`{"locks":[{"lock_id":"{l1}",`, `,{"lock_id":"{l2}",`))},
		{name: "prefix page 1", method: "GET", path: acq + "?prefix=a/&limit=1", wantStatus: 200, noWrite: true,
			check: all(qcap(v, "pa", "next_cursor"), hasNext(true), contains(`{"locks":[{"lock_id":"{l1}",`))},
	})
	run(t, srv, v, []scenario{
		// A lock of several resources is listed once per page, at its
		// first matching resource, and may come again on a later page.
		{name: "list page 2 lists l1 again, at c", method: "GET", path: acq + "?limit=2&cursor={p2}", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l1", `["a/b","c"]`, "agent-1", 1)+`],"next_cursor":null}`)},
		{name: "prefix page 2", method: "GET", path: acq + "?prefix=a/&limit=1&cursor={pa}", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"locks":[`+lock("l2", `["a/c"]`, "agent-2", 2)+`],"next_cursor":null}`)},

		// Renew.
		{name: "renew", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":120000}`, wantStatus: 200,
			check: all(qnear("expires_at", 2*time.Minute), qshape(v, lock("l1", `["a/b","c"]`, "agent-1", 1)))},
		{name: "renew shortest", method: "POST", path: acq + "/{l2}/renew", body: `{"ttl_ms":86400000}`, wantStatus: 200,
			check: qshape(v, lock("l2", `["a/c"]`, "agent-2", 2))},
		{name: "renew an unknown lock is gone", method: "POST", path: acq + "/{unknown}/renew", body: `{"ttl_ms":1000}`, wantStatus: 410, wantCode: "gone", wantMsg: []string{"lock {unknown}: released or expired"}},
		{name: "release an unknown lock is gone", method: "DELETE", path: acq + "/{unknown}", wantStatus: 410, wantCode: "gone"},

		// Boundaries that are valid.
		{name: "64 resources, ttl 100 ms", method: "POST", path: acq, body: `{"resources":` + lresources(64) + `,"holder":"h","ttl_ms":100,"wait_ms":0}`, wantStatus: 201,
			check: contains(`"resources":["r0","r1",`, `"fencing_token":3,`)},
		{name: "512-byte resource, 256-byte holder", method: "POST", path: acq, body: `{"resources":["{max}"],"holder":"` + strings.Repeat("h", 256) + `","ttl_ms":60000}`, wantStatus: 201,
			check: all(qcap(v, "lmax", "lock_id"), contains(`"fencing_token":4,`))},
		{name: "unicode, spaces and query characters", method: "POST", path: acq, body: `{"resources":["café/ü ß","a&b=c+d%e?f#g"],"holder":"agent ✓","ttl_ms":60000}`, wantStatus: 201,
			check: all(qcap(v, "luni", "lock_id"), contains(`"resources":["café/ü ß","a\u0026b=c+d%e?f#g"]`, `"holder":"agent ✓"`))},
	})
	v["l1lower"] = strings.ToLower(v["l1"])
	run(t, srv, v, []scenario{
		{name: "get the 512-byte resource", method: "GET", path: acq + "?resource={max}", wantStatus: 200, noWrite: true, check: contains(`"lock_id":"{lmax}"`)},
		{name: "get a unicode resource", method: "GET", path: acq + "?resource=" + url.QueryEscape("café/ü ß"), wantStatus: 200, noWrite: true, check: contains(`"lock_id":"{luni}"`)},
		{name: "get a resource with query characters", method: "GET", path: acq + "?resource=" + url.QueryEscape("a&b=c+d%e?f#g"), wantStatus: 200, noWrite: true, check: contains(`"lock_id":"{luni}"`)},
		{name: "list a unicode prefix", method: "GET", path: acq + "?prefix=" + url.QueryEscape("café/"), wantStatus: 200, noWrite: true, check: contains(`{"locks":[{"lock_id":"{luni}"`, `"next_cursor":null}`)},
		{name: "renew a lower-case id", method: "POST", path: acq + "/{l1lower}/renew", body: `{"ttl_ms":60000}`, wantStatus: 200,
			check: qshape(v, lock("l1", `["a/b","c"]`, "agent-1", 1))},
	})

	// Bad input: 4xx naming the field, nothing written.
	run(t, srv, v, []scenario{
		// Acquire bodies.
		{name: "acquire no body", method: "POST", path: acq, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: empty"}},
		{name: "acquire array body", method: "POST", path: acq, body: `[]`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: expected a JSON object"}},
		{name: "acquire truncated", method: "POST", path: acq, body: `{"resources":`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: truncated JSON"}},
		{name: "acquire malformed", method: "POST", path: acq, body: `{resources:1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: malformed JSON"}},
		{name: "acquire trailing data", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000} {}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: unexpected data"}},
		{name: "acquire not UTF-8", method: "POST", path: acq, body: "{\"resources\":[\"\xff\"],\"holder\":\"h\",\"ttl_ms\":1000}", wantStatus: 400, wantCode: bad, wantMsg: []string{"not valid UTF-8"}},
		{name: "acquire unknown field", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000,"colour":"red"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"colour: unknown field"}},
		{name: "acquire resource field", method: "POST", path: acq, body: `{"resource":"q","holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: unknown field"}},
		{name: "resources missing", method: "POST", path: acq, body: `{"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources: 0 resources, want 1..64"}},
		{name: "resources null", method: "POST", path: acq, body: `{"resources":null,"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources: 0 resources"}},
		{name: "resources empty", method: "POST", path: acq, body: `{"resources":[],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources: 0 resources, want 1..64"}},
		{name: "65 resources", method: "POST", path: acq, body: `{"resources":` + lresources(65) + `,"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources: 65 resources, want 1..64"}},
		{name: "resources a string", method: "POST", path: acq, body: `{"resources":"q","holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources: "}},
		{name: "resource a number", method: "POST", path: acq, body: `{"resources":["q",7],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources"}},
		{name: "resource empty", method: "POST", path: acq, body: `{"resources":["q",""],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[1]: required"}},
		{name: "resource 513 bytes", method: "POST", path: acq, body: `{"resources":["{long}"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[0]: longer than 512 bytes"}},
		{name: "resource with a newline", method: "POST", path: acq, body: `{"resources":["a\nb"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[0]: ", "control character"}},
		{name: "resource with NUL", method: "POST", path: acq, body: `{"resources":["q","a\u0000"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[1]: ", "control character"}},
		{name: "resource with DEL", method: "POST", path: acq, body: `{"resources":["a` + "\x7f" + `"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[0]: ", "control character"}},
		{name: "resource with C1 control", method: "POST", path: acq, body: `{"resources":["a\u0085"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[0]: ", "control character"}},
		{name: "resource lone surrogate", method: "POST", path: acq, body: `{"resources":["a\ud800"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"resources[0]: "}, skip: "encoding/json turns a lone surrogate into U+FFFD, which is printable"},
		{name: "resource listed twice", method: "POST", path: acq, body: `{"resources":["q","r","q"],"holder":"h","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{`resources[2]: "q" is listed twice`}},
		{name: "holder missing", method: "POST", path: acq, body: `{"resources":["q"],"ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"holder: required"}},
		{name: "holder empty", method: "POST", path: acq, body: `{"resources":["q"],"holder":"","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"holder: required"}},
		{name: "holder 257 bytes", method: "POST", path: acq, body: `{"resources":["q"],"holder":"` + strings.Repeat("h", 257) + `","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"holder: must be 1 to 256 bytes"}},
		{name: "holder with a tab", method: "POST", path: acq, body: `{"resources":["q"],"holder":"a\tb","ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"holder: ", "control characters"}},
		{name: "holder a number", method: "POST", path: acq, body: `{"resources":["q"],"holder":1,"ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"holder: expected a string"}},
		{name: "ttl_ms missing", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: required"}},
		{name: "ttl_ms null", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":null}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: required"}},
		{name: "ttl_ms 99", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":99}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 99 out of range 100..86400000"}},
		{name: "ttl_ms 0", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":0}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 0 out of range"}},
		{name: "ttl_ms over 24 h", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":86400001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 86400001 out of range 100..86400000"}},
		{name: "ttl_ms a string", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":"1000"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: expected a number"}},
		{name: "ttl_ms a fraction", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000.5}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: "}},
		{name: "wait_ms negative", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000,"wait_ms":-1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: -1 out of range 0..60000"}},
		{name: "wait_ms over 60 s", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000,"wait_ms":60001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: 60001 out of range 0..60000"}},
		{name: "wait_ms a bool", method: "POST", path: acq, body: `{"resources":["q"],"holder":"h","ttl_ms":1000,"wait_ms":true}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: expected a number"}},
		{name: "a bad field beside a held resource is 400", method: "POST", path: acq, body: `{"resources":["c"],"holder":"h","ttl_ms":1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 1 out of range"}},

		// Lookups.
		{name: "resource and prefix", method: "GET", path: acq + "?resource=a/b&prefix=a/", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: takes no prefix, limit or cursor"}},
		{name: "resource and an empty prefix", method: "GET", path: acq + "?resource=a/b&prefix=", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: takes no prefix"}},
		{name: "resource and limit", method: "GET", path: acq + "?resource=a/b&limit=5", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: takes no prefix, limit or cursor"}},
		{name: "resource and cursor", method: "GET", path: acq + "?resource=a/b&cursor={p2}", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: takes no prefix, limit or cursor"}},
		{name: "resource empty", method: "GET", path: acq + "?resource=", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: required"}},
		{name: "resource 513 bytes", method: "GET", path: acq + "?resource={long}", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: longer than 512 bytes"}},
		{name: "resource with a control character", method: "GET", path: acq + "?resource=a%01b", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: ", "control character"}},
		{name: "resource not UTF-8", method: "GET", path: acq + "?resource=a%FFb", wantStatus: 400, wantCode: bad, wantMsg: []string{"resource: not valid UTF-8"}},
		{name: "prefix 513 bytes", method: "GET", path: acq + "?prefix={long}", wantStatus: 400, wantCode: bad, wantMsg: []string{"prefix: must be at most 512 bytes"}},
		{name: "prefix not UTF-8", method: "GET", path: acq + "?prefix=%FF", wantStatus: 400, wantCode: bad, wantMsg: []string{"prefix: "}},
		{name: "limit 0", method: "GET", path: acq + "?limit=0", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: 0 out of range 1..1000"}},
		{name: "limit 1001", method: "GET", path: acq + "?prefix=a&limit=1001", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: 1001 out of range"}},
		{name: "limit not a number", method: "GET", path: acq + "?limit=ten", wantStatus: 400, wantCode: bad, wantMsg: []string{`limit: "ten" is not an integer`}},
		{name: "malformed cursor", method: "GET", path: acq + "?cursor=%21%21", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: malformed"}},
		{name: "a cursor of another listing", method: "GET", path: acq + "?cursor=cXVldWU6eA", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: malformed or from another listing"}},

		// Renew and release.
		{name: "renew a malformed id", method: "POST", path: acq + "/nope/renew", body: `{"ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{`lock_id: "nope" is not a ULID`}},
		{name: "renew an id of 27 characters", method: "POST", path: acq + "/{unknown}0/renew", body: `{"ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"lock_id: "}},
		{name: "renew an id over 128 bits", method: "POST", path: acq + "/81JDQ8ZK5W3V6X7Y8Z9A0B1C2D/renew", body: `{"ttl_ms":1000}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"lock_id: "}},
		{name: "renew no body", method: "POST", path: acq + "/{l1}/renew", wantStatus: 400, wantCode: bad, wantMsg: []string{"body: empty"}},
		{name: "renew ttl_ms missing", method: "POST", path: acq + "/{l1}/renew", body: `{}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: required"}},
		{name: "renew ttl_ms 99", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":99}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 99 out of range 100..86400000"}},
		{name: "renew ttl_ms over 24 h", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":86400001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: 86400001 out of range"}},
		{name: "renew ttl_ms a string", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":"1s"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"ttl_ms: expected a number"}},
		{name: "renew unknown field", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":1000,"wait_ms":0}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: unknown field"}},
		{name: "renew a malformed id with a bad body names the id", method: "POST", path: acq + "/nope/renew", body: `{}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"lock_id: "}},
		{name: "release a malformed id", method: "DELETE", path: acq + "/not-a-ulid", wantStatus: 400, wantCode: bad, wantMsg: []string{`lock_id: "not-a-ulid" is not a ULID`}},
		{name: "no route: GET a lock by id", method: "GET", path: acq + "/{l1}", wantStatus: 404, wantCode: "not_found"},
		{name: "no route: PUT", method: "PUT", path: acq, body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "no route: renew by GET", method: "GET", path: acq + "/{l1}/renew", wantStatus: 404, wantCode: "not_found"},
	})

	// Release: 204, then the lock is gone for renew and release, and its
	// resources are free.
	lrelease(t, srv, v["l1"], 204)
	run(t, srv, v, []scenario{
		{name: "release again is gone", method: "DELETE", path: acq + "/{l1}", wantStatus: 410, wantCode: "gone", wantMsg: []string{"lock {l1}: released or expired"}},
		{name: "renew after release is gone", method: "POST", path: acq + "/{l1}/renew", body: `{"ttl_ms":1000}`, wantStatus: 410, wantCode: "gone", wantMsg: []string{"lock {l1}: released or expired"}},
		{name: "its resource is free", method: "GET", path: acq + "?resource=c", wantStatus: 404, wantCode: "not_found", wantMsg: []string{`resource "c" is not locked`}},
		{name: "its other resource is free", method: "GET", path: acq + "?resource=a/b", wantStatus: 404, wantCode: "not_found"},
		{name: "no longer listed", method: "GET", path: acq + "?prefix=a/", wantStatus: 200, noWrite: true, check: qshape(v, `{"locks":[`+lock("l2", `["a/c"]`, "agent-2", 2)+`],"next_cursor":null}`)},
		{name: "acquire it again: a greater token", method: "POST", path: acq, body: `{"resources":["c"],"holder":"agent-2","ttl_ms":1000}`, wantStatus: 201,
			check: contains(`"resources":["c"],"holder":"agent-2","fencing_token":6,`)},
	})
}

// lacquire runs an acquire in another goroutine and delivers its answer.
type lresult struct {
	status int
	body   []byte
	err    error
	took   time.Duration
}

func lacquire(srv *server.Server, body string) <-chan lresult {
	done := make(chan lresult, 1)
	go func() {
		start := time.Now()
		st, b, err := qdo(srv, "POST", "/v1/locks", body)
		done <- lresult{st, b, err, time.Since(start)}
	}()
	return done
}

// lwaiting polls /metrics until n acquires are waiting.
func lwaiting(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	want := fmt.Sprintf("\nengram_locks_waiting %d\n", n)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, srv, "GET", "/metrics", "")
		if strings.Contains(string(r.body), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q", strings.TrimSpace(want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLockWait: a waiting acquire gets the lock as soon as it is released;
// a newcomer does not jump the line, even onto a resource that is free at
// that moment; a wait that ends is 409.
func TestLockWait(t *testing.T) {
	srv := newServer(t, 0)
	r := do(t, srv, "POST", "/v1/locks", `{"resources":["A"],"holder":"h1","ttl_ms":60000}`)
	if r.status != 201 {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	l1 := qpick(t, r.body, "lock_id")

	// W waits for A (held) and B (free): it queues on both.
	w := lacquire(srv, `{"resources":["A","B"],"holder":"w","ttl_ms":60000,"wait_ms":20000}`)
	lwaiting(t, srv, 1)
	before := srv.HeadSeq()
	// A newcomer on B, free but waited for, without waiting: 409 naming B
	// only.
	n := do(t, srv, "POST", "/v1/locks", `{"resources":["B"],"holder":"n","ttl_ms":60000}`)
	if n.status != 409 {
		t.Fatalf("newcomer on a waited-for resource: %d %s", n.status, n.body)
	}
	checkErrorBody(t, response{n.status, n.header, n.body}, "conflict", []string{`"B"`})
	ldetails(map[string]string{"resource": "B"})(t, n.body, func(s string) string { return s })
	// A newcomer on A with a short wait: behind W, then 409 naming h1.
	start := time.Now()
	n = do(t, srv, "POST", "/v1/locks", `{"resources":["A"],"holder":"n","ttl_ms":60000,"wait_ms":100}`)
	if n.status != 409 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("newcomer on A: %d after %v: %s", n.status, time.Since(start), n.body)
	}
	ldetails(map[string]string{"held_by": "h1", "lock_id": l1, "resource": "A", "expires_at": qpick(t, r.body, "expires_at")})(t, n.body, func(s string) string { return s })
	if srv.HeadSeq() != before {
		t.Errorf("409s wrote events: head %d -> %d", before, srv.HeadSeq())
	}
	select {
	case res := <-w:
		t.Fatalf("the waiter returned before the release: %d %s", res.status, res.body)
	default:
	}

	// The release wakes W at once.
	released := time.Now()
	lrelease(t, srv, l1, 204)
	res := <-w
	if res.err != nil || res.status != 201 {
		t.Fatalf("waiter: %d %s %v", res.status, res.body, res.err)
	}
	if d := time.Since(released); d > 5*time.Second {
		t.Errorf("waiter got the lock %v after the release", d)
	}
	if got := qpick(t, res.body, "holder"); got != "w" {
		t.Errorf("holder %q, want w", got)
	}
	if got := qpick(t, res.body, "fencing_token"); got != "2" {
		t.Errorf("fencing token %s, want 2", got)
	}
	lw := qpick(t, res.body, "lock_id")

	// Two waiters on B: first come, first served.
	first := lacquire(srv, `{"resources":["B"],"holder":"first","ttl_ms":60000,"wait_ms":20000}`)
	lwaiting(t, srv, 1)
	second := lacquire(srv, `{"resources":["B"],"holder":"second","ttl_ms":60000,"wait_ms":20000}`)
	lwaiting(t, srv, 2)
	lrelease(t, srv, lw, 204)
	r1 := <-first
	if r1.status != 201 || qpick(t, r1.body, "holder") != "first" {
		t.Fatalf("first waiter: %d %s", r1.status, r1.body)
	}
	lrelease(t, srv, qpick(t, r1.body, "lock_id"), 204)
	r2 := <-second
	if r2.status != 201 || qpick(t, r2.body, "holder") != "second" {
		t.Fatalf("second waiter: %d %s", r2.status, r2.body)
	}
}

// TestLockExpiry: a lock is free from its expires_at on; the expiry writes
// lock.expired without a request; renew and release of it are gone.
func TestLockExpiry(t *testing.T) {
	srv := newServer(t, 0)
	r := do(t, srv, "POST", "/v1/locks", `{"resources":["e"],"holder":"h","ttl_ms":100}`)
	if r.status != 201 {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	id := qpick(t, r.body, "lock_id")
	deadline := time.Now().Add(10 * time.Second)
	for srv.HeadSeq() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no lock.expired event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if g := do(t, srv, "GET", "/v1/locks?resource=e", ""); g.status != 404 {
		t.Errorf("get an expired lock's resource: %d %s", g.status, g.body)
	}
	if g := do(t, srv, "POST", "/v1/locks/"+id+"/renew", `{"ttl_ms":1000}`); g.status != 410 {
		t.Errorf("renew an expired lock: %d %s", g.status, g.body)
	}
	lrelease(t, srv, id, 410)
	if l := do(t, srv, "GET", "/v1/locks", ""); string(l.body) != `{"locks":[],"next_cursor":null}` {
		t.Errorf("list after expiry: %s", l.body)
	}
	// A waiter gets the resource when the holder's lock expires.
	r = do(t, srv, "POST", "/v1/locks", `{"resources":["e"],"holder":"h","ttl_ms":300}`)
	w := do(t, srv, "POST", "/v1/locks", `{"resources":["e"],"holder":"w","ttl_ms":1000,"wait_ms":10000}`)
	if w.status != 201 || qpick(t, w.body, "holder") != "w" {
		t.Fatalf("waiter on an expiring lock: %d %s", w.status, w.body)
	}
}

// TestLockEvents: every change is one event on the topic "locks" whose data
// is the lock.
func TestLockEvents(t *testing.T) {
	srv := newServer(t, 0)
	a := do(t, srv, "POST", "/v1/locks", `{"resources":["x","y"],"holder":"h","ttl_ms":60000}`)
	id := qpick(t, a.body, "lock_id")
	rn := do(t, srv, "POST", "/v1/locks/"+id+"/renew", `{"ttl_ms":120000}`)
	lrelease(t, srv, id, 204)
	b := do(t, srv, "POST", "/v1/locks", `{"resources":["y"],"holder":"h2","ttl_ms":100}`)
	idb := qpick(t, b.body, "lock_id")
	deadline := time.Now().Add(10 * time.Second)
	for srv.HeadSeq() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("no lock.expired event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The released lock's data is as last renewed.
	var renewed map[string]any
	json.Unmarshal(rn.body, &renewed)
	var acquired, acquiredB map[string]any
	json.Unmarshal(a.body, &acquired)
	json.Unmarshal(b.body, &acquiredB)
	wants := []struct {
		typ  string
		data map[string]any
	}{
		{"lock.acquired", acquired},
		{"lock.renewed", renewed},
		{"lock.released", renewed},
		{"lock.acquired", acquiredB},
		{"lock.expired", acquiredB},
	}
	evs := qevents(t, srv, 0)
	if len(evs) != len(wants) {
		t.Fatalf("%d events, want %d: %v", len(evs), len(wants), evs)
	}
	for i, w := range wants {
		e := evs[i]
		got, _ := json.Marshal(e["data"])
		want, _ := json.Marshal(w.data)
		if e["type"] != w.typ || e["topic"] != "locks" || string(got) != string(want) {
			t.Errorf("event %d: %v on %v %s, want %s on locks %s", i, e["type"], e["topic"], got, w.typ, want)
		}
	}
	if evs[0]["data"].(map[string]any)["lock_id"] != id || evs[4]["data"].(map[string]any)["lock_id"] != idb {
		t.Errorf("event lock ids: %v", evs)
	}
}
