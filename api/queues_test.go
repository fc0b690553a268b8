package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"engram/internal/server"
	"engram/internal/wal"
)

var (
	reQTime    = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"`)
	reQReceipt = regexp.MustCompile(`"r1\.[A-Za-z0-9_-]+"`)
	reQULID    = regexp.MustCompile(`"[0-7][0-9A-HJKMNP-TV-Z]{25}"`)
)

// qshape checks a 2xx body is exactly want once normalized: ids and receipts
// captured in v are written back as {name}, other ULIDs as <id>, receipts as
// <r> and timestamps (RFC 3339, nanoseconds, UTC) as <t>.
func qshape(v map[string]string, want string) check {
	return func(t *testing.T, b []byte, _ func(string) string) {
		t.Helper()
		got := string(bytes.TrimSpace(b))
		for name, val := range v {
			q := `"` + val + `"`
			if reQULID.MatchString(q) || reQReceipt.MatchString(q) {
				got = strings.ReplaceAll(got, q, `"{`+name+`}"`)
			}
		}
		got = reQReceipt.ReplaceAllString(got, `"<r>"`)
		got = reQULID.ReplaceAllString(got, `"<id>"`)
		got = reQTime.ReplaceAllString(got, `"<t>"`)
		if got != want {
			t.Errorf("body\n %s\nnormalized\n %s\nwant\n %s", b, got, want)
		}
	}
}

// qpick returns the value at a dotted path ("messages.0.receipt") of a JSON
// body, strings unquoted.
func qpick(t *testing.T, b []byte, path string) string {
	t.Helper()
	var cur any
	if err := json.Unmarshal(b, &cur); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(c) {
				t.Fatalf("body %s has no %s", b, path)
			}
			cur = c[i]
		default:
			t.Fatalf("body %s has no %s", b, path)
		}
	}
	if s, ok := cur.(string); ok {
		return s
	}
	out, _ := json.Marshal(cur)
	return string(out)
}

// qcap stores the values at paths under names in v, for later scenarios.
func qcap(v map[string]string, namePath ...string) check {
	return func(t *testing.T, b []byte, _ func(string) string) {
		t.Helper()
		for i := 0; i+1 < len(namePath); i += 2 {
			v[namePath[i]] = qpick(t, b, namePath[i+1])
		}
	}
}

// qnear checks the time at path is about d from now.
func qnear(path string, d time.Duration) check {
	return func(t *testing.T, b []byte, _ func(string) string) {
		t.Helper()
		at, err := time.Parse(time.RFC3339Nano, qpick(t, b, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if off := time.Until(at) - d; off < -5*time.Second || off > time.Second {
			t.Errorf("%s is %v from now, want about %v", path, time.Until(at), d)
		}
	}
}

func qbatch(n int, msg string) string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = msg
	}
	return `{"messages":[` + strings.Join(ms, ",") + `]}`
}

func qreceipts(n int) string {
	rs := make([]string, n)
	for i := range rs {
		rs[i] = `"r"`
	}
	return `{"receipts":[` + strings.Join(rs, ",") + `]}`
}

func TestQueueScenarios(t *testing.T) {
	srv := newServer(t, 0)
	v := map[string]string{"long": strings.Repeat("x", 129)}
	const bad = "invalid_argument"
	zero := func(topic string) string {
		return `{"topic":"` + topic + `","ready":0,"leased":0,"delayed":0,"dead":0}`
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)

	// Publishing, counts and bad input. A fresh log: seqs are exact.
	run(t, srv, v, []scenario{
		{name: "list queues empty", method: "GET", path: "/v1/queues", wantStatus: 200, noWrite: true, check: qshape(v, `{"queues":[],"next_cursor":null}`)},
		{name: "stats of an unused topic", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, noWrite: true, check: qshape(v, zero("jobs"))},
		{name: "dead of an unused topic", method: "GET", path: "/v1/queues/jobs/dead", wantStatus: 200, noWrite: true, check: qshape(v, `{"messages":[],"next_cursor":null}`)},
		{name: "publish one", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":{"n":1}}`, wantStatus: 201,
			check: all(qshape(v, `{"messages":[{"id":"<id>","seq":1,"available_at":"<t>"}]}`), qcap(v, "m1", "messages.0.id"), qnear("messages.0.available_at", 0))},
		{name: "publish null payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":null,"max_attempts":1,"backoff_ms":0}`, wantStatus: 201,
			check: all(qshape(v, `{"messages":[{"id":"<id>","seq":2,"available_at":"<t>"}]}`), qcap(v, "m2", "messages.0.id"))},
		{name: "publish with dedupe id", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":"a","dedupe_id":"d-1","max_attempts":5}`, wantStatus: 201,
			check: all(qshape(v, `{"messages":[{"id":"<id>","seq":3,"available_at":"<t>"}]}`), qcap(v, "m3", "messages.0.id"))},
		{name: "duplicate answers 200 with the first", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":"other","dedupe_id":"d-1"}`, wantStatus: 200, noWrite: true,
			check: qshape(v, `{"messages":[{"id":"{m3}","seq":3,"available_at":"<t>","duplicate":true}]}`)},
		{name: "duplicate batch answers 200", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1,"dedupe_id":"d-1"},{"payload":2,"dedupe_id":"d-1"}]}`, wantStatus: 200, noWrite: true,
			check: qshape(v, `{"messages":[{"id":"{m3}","seq":3,"available_at":"<t>","duplicate":true},{"id":"{m3}","seq":3,"available_at":"<t>","duplicate":true}]}`)},
		{name: "batch with a duplicate and new ones is 201", method: "POST", path: "/v1/queues/jobs/messages",
			body: `{"messages":[{"payload":1,"dedupe_id":"d-1"},{"payload":2,"dedupe_id":"d-2","backoff_ms":60000},{"payload":3,"dedupe_id":"d-2"}]}`, wantStatus: 201,
			check: all(qcap(v, "m4", "messages.1.id"), qshape(v, `{"messages":[{"id":"{m3}","seq":3,"available_at":"<t>","duplicate":true},{"id":"{m4}","seq":4,"available_at":"<t>"},{"id":"{m4}","seq":4,"available_at":"<t>","duplicate":true}]}`))},
		{name: "batch with a group and a delay", method: "POST", path: "/v1/queues/fifo/messages",
			body: `{"messages":[{"payload":"g1","group":"g"},{"payload":"g2","group":"g"},{"payload":"later","delay_ms":3600000}]}`, wantStatus: 201,
			check: all(qcap(v, "g1", "messages.0.id", "g2", "messages.1.id", "later", "messages.2.id"), qnear("messages.2.available_at", time.Hour),
				qshape(v, `{"messages":[{"id":"{g1}","seq":5,"available_at":"<t>"},{"id":"{g2}","seq":6,"available_at":"<t>"},{"id":"{later}","seq":7,"available_at":"<t>"}]}`))},
		{name: "stats count blocked messages as ready", method: "GET", path: "/v1/queues/fifo", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"topic":"fifo","ready":2,"leased":0,"delayed":1,"dead":0}`)},
		{name: "stats", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, check: qshape(v, `{"topic":"jobs","ready":4,"leased":0,"delayed":0,"dead":0}`)},
		{name: "list queues", method: "GET", path: "/v1/queues", wantStatus: 200,
			check: qshape(v, `{"queues":[{"topic":"fifo","ready":2,"leased":0,"delayed":1,"dead":0},{"topic":"jobs","ready":4,"leased":0,"delayed":0,"dead":0}],"next_cursor":null}`)},
		{name: "list queues page", method: "GET", path: "/v1/queues?limit=1", wantStatus: 200,
			check: all(hasNext(true), qcap(v, "qcursor", "next_cursor"), contains(`{"queues":[{"topic":"fifo",`))},

		// Bad topics, on every route.
		{name: "publish bad topic", method: "POST", path: "/v1/queues/a%20b/messages", body: `{"payload":1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{`topic: "a b" must match`}},
		{name: "publish long topic", method: "POST", path: "/v1/queues/{long}/messages", body: `{"payload":1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "stats bad topic", method: "GET", path: "/v1/queues/a%21b", wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "lease bad topic", method: "POST", path: "/v1/queues/{long}/lease", wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "ack bad topic", method: "POST", path: "/v1/queues/a%20b/ack", body: `{"receipts":["r"]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "nack bad topic", method: "POST", path: "/v1/queues/a%20b/nack", body: `{"receipt":"r"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "dead bad topic", method: "GET", path: "/v1/queues/a%20b/dead", wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},
		{name: "redrive bad topic", method: "POST", path: "/v1/queues/{long}/redrive", wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: "}},

		// Publish: bad bodies and fields, each naming the field; nothing written.
		{name: "publish no body", method: "POST", path: "/v1/queues/jobs/messages", wantStatus: 400, wantCode: bad, wantMsg: []string{"body: empty"}},
		{name: "publish no payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"payload: required"}},
		{name: "publish fields but no payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{"delay_ms":5}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"payload: required"}},
		{name: "publish messages null", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":null}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: must be an array"}},
		{name: "publish array body", method: "POST", path: "/v1/queues/jobs/messages", body: `[{"payload":1}]`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: expected a JSON object"}},
		{name: "publish truncated", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: truncated JSON"}},
		{name: "publish malformed", method: "POST", path: "/v1/queues/jobs/messages", body: `{payload:1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: malformed JSON"}},
		{name: "publish trailing data", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1} {}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: unexpected data"}},
		{name: "publish not UTF-8", method: "POST", path: "/v1/queues/jobs/messages", body: "{\"payload\":\"\xff\"}", wantStatus: 400, wantCode: bad, wantMsg: []string{"not valid UTF-8"}},
		{name: "publish too deep", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":` + deep + `}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"nested deeper than 64"}},
		{name: "publish unknown field", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"colour":"red"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"colour: unknown field"}},
		{name: "publish topic field", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"topic":"jobs"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"topic: unknown field"}},
		{name: "delay_ms negative", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"delay_ms":-1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: -1 out of range 0..2592000000"}},
		{name: "delay_ms over 30 days", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"delay_ms":2592000001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: 2592000001 out of range"}},
		{name: "delay_ms a string", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"delay_ms":"5"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: expected a number"}},
		{name: "delay_ms a fraction", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"delay_ms":1.5}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: "}},
		{name: "max_attempts zero", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"max_attempts":0}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"max_attempts: 0 out of range 1..1000"}},
		{name: "max_attempts 1001", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"max_attempts":1001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"max_attempts: 1001 out of range 1..1000"}},
		{name: "backoff_ms negative", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"backoff_ms":-1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"backoff_ms: -1 out of range 0..86400000"}},
		{name: "backoff_ms over 24 h", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"backoff_ms":86400001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"backoff_ms: 86400001 out of range"}},
		{name: "dedupe_id empty", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"dedupe_id":""}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"dedupe_id: must be 1 to 256 bytes"}},
		{name: "dedupe_id 257 bytes", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"dedupe_id":"` + strings.Repeat("d", 257) + `"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"dedupe_id: "}},
		{name: "dedupe_id a number", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"dedupe_id":7}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"dedupe_id: expected a string"}},
		{name: "group bad name", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"group":"a b"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{`group: "a b" must match`}},
		{name: "group empty", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"group":""}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"group: required"}},
		{name: "group too long", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":1,"group":"{long}"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"group: "}},

		// Publish: batches.
		{name: "batch beside payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1}],"payload":1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: a batch takes no message fields beside it"}},
		{name: "batch beside null payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1}],"payload":null}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: a batch takes no message fields"}},
		{name: "batch beside delay_ms", method: "POST", path: "/v1/queues/jobs/messages", body: `{"delay_ms":0,"messages":[{"payload":1}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: a batch takes no message fields"}},
		{name: "batch beside group", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1}],"group":"g"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: a batch takes no message fields"}},
		{name: "batch beside dedupe_id", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1}],"dedupe_id":"x"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: a batch takes no message fields"}},
		{name: "empty batch", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: empty, want 1..1000 messages"}},
		{name: "1001 messages", method: "POST", path: "/v1/queues/jobs/messages", body: qbatch(1001, `{"payload":1}`), wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: 1001 messages, want 1..1000"}},
		{name: "messages not an array", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":{}}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages: expected an array"}},
		{name: "batch message not an object", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},2]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages[1]: expected an object"}},
		{name: "batch message without payload", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},{"delay_ms":1}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages[1].payload: required"}},
		{name: "batch message out of range", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},{"payload":1},{"payload":1,"max_attempts":0}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages[2].max_attempts: 0 out of range 1..1000"}},
		{name: "batch message wrong type", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},{"payload":1,"delay_ms":"x"}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages[1].delay_ms: expected a number"}},
		{name: "batch message bad group", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},{"payload":1,"group":"a/b"}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"messages[1].group: "}},
		{name: "batch message unknown field", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1},{"payload":1,"x":1}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"x: unknown field"}},
		{name: "batch of one out of range", method: "POST", path: "/v1/queues/jobs/messages", body: `{"messages":[{"payload":1,"backoff_ms":-5}]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"backoff_ms: -5 out of range"}},
		{name: "1000 messages", method: "POST", path: "/v1/queues/bulk/messages", body: qbatch(1000, `{"payload":1}`), wantStatus: 201,
			check: func(t *testing.T, b []byte, _ func(string) string) {
				if got := qpick(t, b, "messages.999.seq"); got != "1007" {
					t.Errorf("last seq %s, want 1007", got)
				}
			}},
		{name: "bulk stats", method: "GET", path: "/v1/queues/bulk", wantStatus: 200, check: qshape(v, `{"topic":"bulk","ready":1000,"leased":0,"delayed":0,"dead":0}`)},
		{name: "jobs unchanged by bad publishes", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, check: qshape(v, `{"topic":"jobs","ready":4,"leased":0,"delayed":0,"dead":0}`)},

		// Lease: bad bodies.
		{name: "lease max zero", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":0}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"max: 0 out of range 1..1000"}},
		{name: "lease max 1001", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":1001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"max: 1001 out of range 1..1000"}},
		{name: "lease max a string", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":"1"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"max: expected a number"}},
		{name: "lease visibility zero", method: "POST", path: "/v1/queues/jobs/lease", body: `{"visibility_ms":0}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"visibility_ms: 0 out of range 1..43200000"}},
		{name: "lease visibility over 12 h", method: "POST", path: "/v1/queues/jobs/lease", body: `{"visibility_ms":43200001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"visibility_ms: 43200001 out of range"}},
		{name: "lease wait negative", method: "POST", path: "/v1/queues/jobs/lease", body: `{"wait_ms":-1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: -1 out of range 0..30000"}},
		{name: "lease wait over 30 s", method: "POST", path: "/v1/queues/jobs/lease", body: `{"wait_ms":30001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"wait_ms: 30001 out of range 0..30000"}},
		{name: "lease unknown field", method: "POST", path: "/v1/queues/jobs/lease", body: `{"count":1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"count: unknown field"}},
		{name: "lease array body", method: "POST", path: "/v1/queues/jobs/lease", body: `[]`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: expected a JSON object"}},
		{name: "lease malformed", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: malformed JSON"}},

		// Ack and nack: bad bodies and receipts.
		{name: "ack no body", method: "POST", path: "/v1/queues/jobs/ack", wantStatus: 400, wantCode: bad, wantMsg: []string{"body: empty"}},
		{name: "ack no receipts", method: "POST", path: "/v1/queues/jobs/ack", body: `{}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: required"}},
		{name: "ack receipts null", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":null}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: required"}},
		{name: "ack receipts empty", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":[]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: 0 receipts, want 1..1000"}},
		{name: "ack 1001 receipts", method: "POST", path: "/v1/queues/jobs/ack", body: qreceipts(1001), wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: 1001 receipts, want 1..1000"}},
		{name: "ack empty receipt", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["r",""]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts[0]: \"r\" is not a receipt"}},
		{name: "ack receipt too long", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["` + strings.Repeat("r", 129) + `"]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts[0]:", "is not a receipt"}},
		{name: "ack receipt a number", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":[1]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts[0]: expected a string"}},
		{name: "ack receipts a string", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":"r"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: expected an array"}},
		{name: "ack unknown field", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["r"],"receipt":"r"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipt: unknown field"}},
		{name: "nack no body", method: "POST", path: "/v1/queues/jobs/nack", wantStatus: 400, wantCode: bad, wantMsg: []string{"body: empty"}},
		{name: "nack no receipt", method: "POST", path: "/v1/queues/jobs/nack", body: `{"error":"x"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipt: required"}},
		{name: "nack delay negative", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"r","delay_ms":-1}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: -1 out of range 0..2592000000"}},
		{name: "nack delay over 30 days", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"r","delay_ms":2592000001}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"delay_ms: 2592000001 out of range"}},
		{name: "nack error too long", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"r","error":"` + strings.Repeat("e", 4097) + `"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"error: longer than 4096 bytes"}},
		{name: "nack error not a string", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"r","error":{}}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"error: expected a string"}},
		{name: "nack receipts field", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipts":["r"]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts: unknown field"}},
		{name: "nack a string that is not a receipt", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"not-a-receipt"}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipt: \"not-a-receipt\" is not a receipt"}},
		{name: "ack a string that is not a receipt", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["bogus"]}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"receipts[0]: \"bogus\" is not a receipt"}},

		// Lists and redrive: bad parameters and bodies.
		{name: "list queues limit zero", method: "GET", path: "/v1/queues?limit=0", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: 0 out of range 1..1000"}},
		{name: "list queues limit 1001", method: "GET", path: "/v1/queues?limit=1001", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: "}},
		{name: "list queues limit not a number", method: "GET", path: "/v1/queues?limit=ten", wantStatus: 400, wantCode: bad, wantMsg: []string{`limit: "ten" is not an integer`}},
		{name: "list queues bad cursor", method: "GET", path: "/v1/queues?cursor=zz", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: "}},
		{name: "dead limit zero", method: "GET", path: "/v1/queues/jobs/dead?limit=0", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: "}},
		{name: "dead limit negative", method: "GET", path: "/v1/queues/jobs/dead?limit=-1", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: "}},
		{name: "dead limit 1001", method: "GET", path: "/v1/queues/jobs/dead?limit=1001", wantStatus: 400, wantCode: bad, wantMsg: []string{"limit: "}},
		{name: "dead bad cursor", method: "GET", path: "/v1/queues/jobs/dead?cursor=nonsense!", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: "}},
		{name: "dead cursor of another listing", method: "GET", path: "/v1/queues/jobs/dead?cursor={qcursor}", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: "}},
		{name: "redrive unknown field", method: "POST", path: "/v1/queues/jobs/redrive", body: `{"all":true}`, wantStatus: 400, wantCode: bad, wantMsg: []string{"all: unknown field"}},
		{name: "redrive array body", method: "POST", path: "/v1/queues/jobs/redrive", body: `[]`, wantStatus: 400, wantCode: bad, wantMsg: []string{"body: expected a JSON object"}},

		// Methods the routes do not have.
		{name: "delete queue", method: "DELETE", path: "/v1/queues/jobs", wantStatus: 404, wantCode: "not_found", wantMsg: []string{"no route for DELETE /v1/queues/jobs"}},
		{name: "post queues", method: "POST", path: "/v1/queues", body: `{}`, wantStatus: 404, wantCode: "not_found"},
		{name: "get messages", method: "GET", path: "/v1/queues/jobs/messages", wantStatus: 404, wantCode: "not_found"},
		{name: "get lease", method: "GET", path: "/v1/queues/jobs/lease", wantStatus: 404, wantCode: "not_found"},
		{name: "delete dead", method: "DELETE", path: "/v1/queues/jobs/dead", wantStatus: 404, wantCode: "not_found"},
		{name: "get redrive", method: "GET", path: "/v1/queues/jobs/redrive", wantStatus: 404, wantCode: "not_found"},
	})

	// Leases, acks, nacks, dead letters and redrive. jobs holds m1, m2
	// (max_attempts 1), m3 and m4 (backoff 60 s), ready in that order.
	run(t, srv, v, []scenario{
		{name: "list queues next page", method: "GET", path: "/v1/queues?limit=1&cursor={qcursor}", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"queues":[{"topic":"jobs","ready":4,"leased":0,"delayed":0,"dead":0}],"next_cursor":null}`)},
		{name: "lease with defaults", method: "POST", path: "/v1/queues/jobs/lease", wantStatus: 200,
			check: all(qcap(v, "r1", "messages.0.receipt"), qnear("messages.0.lease_expires_at", 30*time.Second),
				qshape(v, `{"messages":[{"id":"{m1}","payload":{"n":1},"attempt":1,"receipt":"{r1}","lease_expires_at":"<t>","published_at":"<t>"}]}`))},
		{name: "lease two", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":2,"visibility_ms":600000,"wait_ms":0}`, wantStatus: 200,
			check: all(qcap(v, "r2", "messages.0.receipt", "r3", "messages.1.receipt"), qnear("messages.1.lease_expires_at", 10*time.Minute),
				qshape(v, `{"messages":[{"id":"{m2}","payload":null,"attempt":1,"receipt":"{r2}","lease_expires_at":"<t>","published_at":"<t>"},{"id":"{m3}","payload":"a","attempt":1,"receipt":"{r3}","lease_expires_at":"<t>","published_at":"<t>"}]}`))},
		{name: "stats while leased", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, check: qshape(v, `{"topic":"jobs","ready":1,"leased":3,"delayed":0,"dead":0}`)},
	})
	// Each run's paths and bodies see the values captured by the runs before.
	run(t, srv, v, []scenario{
		{name: "ack with stale ones", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["{r1}","{r1}"]}`, wantStatus: 200,
			check: qshape(v, `{"acked":1,"stale":["{r1}"]}`)},
		// The second {r1} is stale: the first acked it in the same request.
		{name: "ack again is stale", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["{r1}"]}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"acked":0,"stale":["{r1}"]}`)},
		{name: "ack on another topic is stale", method: "POST", path: "/v1/queues/fifo/ack", body: `{"receipts":["{r3}"]}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"acked":0,"stale":["{r3}"]}`)},
		{name: "nack on another topic is gone", method: "POST", path: "/v1/queues/fifo/nack", body: `{"receipt":"{r3}"}`, wantStatus: 410, wantCode: "gone", wantMsg: []string{"receipt: stale"}},
		{name: "nack an acked receipt is gone", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r1}"}`, wantStatus: 410, wantCode: "gone", wantMsg: []string{"receipt: stale"}},
		{name: "nack with a delay", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r3}","delay_ms":3600000,"error":"boom"}`, wantStatus: 200,
			check: all(qnear("available_at", time.Hour), qshape(v, `{"id":"{m3}","attempt":1,"state":"delayed","available_at":"<t>"}`))},
		{name: "nack twice is gone", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r3}"}`, wantStatus: 410, wantCode: "gone", wantMsg: []string{"receipt: stale"}},
		{name: "ack a nacked receipt is stale", method: "POST", path: "/v1/queues/jobs/ack", body: `{"receipts":["{r3}"]}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"acked":0,"stale":["{r3}"]}`)},
		{name: "nack at max_attempts is dead", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r2}","delay_ms":0,"error":"fatal"}`, wantStatus: 200,
			check: qshape(v, `{"id":"{m2}","attempt":1,"state":"dead","available_at":null}`)},
		{name: "lease the last ready one", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":10,"visibility_ms":600000}`, wantStatus: 200,
			check: all(qcap(v, "r4", "messages.0.receipt"), qshape(v, `{"messages":[{"id":"{m4}","payload":2,"attempt":1,"receipt":"{r4}","lease_expires_at":"<t>","published_at":"<t>"}]}`))},
	})
	run(t, srv, v, []scenario{
		{name: "nack with delay 0 is ready at once", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r4}","delay_ms":0}`, wantStatus: 200,
			check: all(qnear("available_at", 0), qshape(v, `{"id":"{m4}","attempt":1,"state":"ready","available_at":"<t>"}`))},
		{name: "lease it again", method: "POST", path: "/v1/queues/jobs/lease", body: `{"visibility_ms":600000}`, wantStatus: 200,
			check: all(qcap(v, "r5", "messages.0.receipt"), qshape(v, `{"messages":[{"id":"{m4}","payload":2,"attempt":2,"receipt":"{r5}","lease_expires_at":"<t>","published_at":"<t>"}]}`))},
	})
	run(t, srv, v, []scenario{
		{name: "an earlier lease's receipt is stale", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r4}"}`, wantStatus: 410, wantCode: "gone"},
		{name: "nack without delay backs off", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r5}"}`, wantStatus: 200,
			check: all(qnear("available_at", 120*time.Second), qshape(v, `{"id":"{m4}","attempt":2,"state":"delayed","available_at":"<t>"}`))},
		{name: "stats after nacks", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, check: qshape(v, `{"topic":"jobs","ready":0,"leased":0,"delayed":2,"dead":1}`)},
		{name: "lease finds nothing", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":5}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"messages":[]}`)},
		{name: "lease waits then finds nothing", method: "POST", path: "/v1/queues/jobs/lease", body: `{"wait_ms":50}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"messages":[]}`)},
		{name: "publish a mortal one", method: "POST", path: "/v1/queues/jobs/messages", body: `{"payload":[1,2],"max_attempts":1}`, wantStatus: 201, check: qcap(v, "m5", "messages.0.id")},
		{name: "lease it", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":3,"visibility_ms":600000}`, wantStatus: 200, check: qcap(v, "r6", "messages.0.receipt")},
	})
	run(t, srv, v, []scenario{
		{name: "nack it dead without an error", method: "POST", path: "/v1/queues/jobs/nack", body: `{"receipt":"{r6}"}`, wantStatus: 200,
			check: qshape(v, `{"id":"{m5}","attempt":1,"state":"dead","available_at":null}`)},
		{name: "dead letters", method: "GET", path: "/v1/queues/jobs/dead", wantStatus: 200, noWrite: true,
			check: qshape(v, `{"messages":[{"id":"{m2}","payload":null,"attempt":1,"error":"fatal","dead_at":"<t>"},{"id":"{m5}","payload":[1,2],"attempt":1,"error":"","dead_at":"<t>"}],"next_cursor":null}`)},
		{name: "dead letters page", method: "GET", path: "/v1/queues/jobs/dead?limit=1", wantStatus: 200,
			check: all(qcap(v, "dcursor", "next_cursor"), hasNext(true), contains(`{"messages":[{"id":"{m2}","payload":null,"attempt":1,"error":"fatal","dead_at":"`))},
	})
	run(t, srv, v, []scenario{
		{name: "dead letters next page", method: "GET", path: "/v1/queues/jobs/dead?limit=1&cursor={dcursor}", wantStatus: 200,
			check: qshape(v, `{"messages":[{"id":"{m5}","payload":[1,2],"attempt":1,"error":"","dead_at":"<t>"}],"next_cursor":null}`)},
		{name: "queue cursor is not a dead cursor", method: "GET", path: "/v1/queues?cursor={dcursor}", wantStatus: 400, wantCode: bad, wantMsg: []string{"cursor: "}},
		{name: "redrive", method: "POST", path: "/v1/queues/jobs/redrive", wantStatus: 200, check: qshape(v, `{"redriven":2}`)},
		{name: "stats after redrive", method: "GET", path: "/v1/queues/jobs", wantStatus: 200, check: qshape(v, `{"topic":"jobs","ready":2,"leased":0,"delayed":2,"dead":0}`)},
		{name: "redrive nothing", method: "POST", path: "/v1/queues/jobs/redrive", wantStatus: 200, noWrite: true, check: qshape(v, `{"redriven":0}`)},
		{name: "redrive with an empty object", method: "POST", path: "/v1/queues/jobs/redrive", body: `{}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"redriven":0}`)},
		{name: "dead letters empty", method: "GET", path: "/v1/queues/jobs/dead", wantStatus: 200, check: qshape(v, `{"messages":[],"next_cursor":null}`)},
		{name: "redriven start again at attempt 1", method: "POST", path: "/v1/queues/jobs/lease", body: `{"max":10,"visibility_ms":600000}`, wantStatus: 200,
			check: qshape(v, `{"messages":[{"id":"{m2}","payload":null,"attempt":1,"receipt":"<r>","lease_expires_at":"<t>","published_at":"<t>"},{"id":"{m5}","payload":[1,2],"attempt":1,"receipt":"<r>","lease_expires_at":"<t>","published_at":"<t>"}]}`)},

		// FIFO: one message of a group at a time, in publish order.
		{name: "fifo lease takes the group head only", method: "POST", path: "/v1/queues/fifo/lease", body: `{"max":10,"visibility_ms":600000}`, wantStatus: 200,
			check: all(qcap(v, "rg1", "messages.0.receipt"), qshape(v, `{"messages":[{"id":"{g1}","payload":"g1","attempt":1,"receipt":"{rg1}","lease_expires_at":"<t>","published_at":"<t>"}]}`))},
		{name: "fifo next is blocked", method: "POST", path: "/v1/queues/fifo/lease", body: `{"max":10}`, wantStatus: 200, noWrite: true, check: qshape(v, `{"messages":[]}`)},
		{name: "fifo stats", method: "GET", path: "/v1/queues/fifo", wantStatus: 200, check: qshape(v, `{"topic":"fifo","ready":1,"leased":1,"delayed":1,"dead":0}`)},
	})
	run(t, srv, v, []scenario{
		{name: "fifo ack the head", method: "POST", path: "/v1/queues/fifo/ack", body: `{"receipts":["{rg1}"]}`, wantStatus: 200, check: qshape(v, `{"acked":1,"stale":[]}`)},
		{name: "fifo next is leasable", method: "POST", path: "/v1/queues/fifo/lease", body: `{"max":10}`, wantStatus: 200,
			check: qshape(v, `{"messages":[{"id":"{g2}","payload":"g2","attempt":1,"receipt":"<r>","lease_expires_at":"<t>","published_at":"<t>"}]}`)},
	})
}

// qdo sends one request without a *testing.T (for other goroutines).
func qdo(srv *server.Server, method, path, body string) (int, []byte, error) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestQueueLongPoll: a lease with wait_ms returns as soon as a message is
// published, and with no message at the end of the wait.
func TestQueueLongPoll(t *testing.T) {
	srv := newServer(t, 0)
	type result struct {
		status int
		body   []byte
		err    error
		took   time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		st, b, err := qdo(srv, "POST", "/v1/queues/lp/lease", `{"wait_ms":10000}`)
		done <- result{st, b, err, time.Since(start)}
	}()
	time.Sleep(100 * time.Millisecond)
	if r := do(t, srv, "POST", "/v1/queues/lp/messages", `{"payload":"wake"}`); r.status != 201 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	r := <-done
	if r.err != nil || r.status != 200 {
		t.Fatalf("lease: %d %s %v", r.status, r.body, r.err)
	}
	if got := qpick(t, r.body, "messages.0.payload"); got != "wake" {
		t.Errorf("leased payload %q, want wake (%s)", got, r.body)
	}
	if r.took > 5*time.Second {
		t.Errorf("lease took %v: the publish did not wake it", r.took)
	}

	start := time.Now()
	e := do(t, srv, "POST", "/v1/queues/lp/lease", `{"wait_ms":200}`)
	if e.status != 200 || string(e.body) != `{"messages":[]}` {
		t.Fatalf("empty long poll: %d %s", e.status, e.body)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("long poll returned after %v, before its wait", took)
	}
}

// qevents reads the log's events after seq from storage.
func qevents(t *testing.T, srv *server.Server, after uint64) []map[string]any {
	t.Helper()
	var out []map[string]any
	for seq := after + 1; seq <= srv.HeadSeq(); seq++ {
		ev, err := wal.ReadEvent(srv.Store(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(ev.JSON, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// qwait polls a topic's counts until they are want.
func qwait(t *testing.T, srv *server.Server, topic, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, srv, "GET", "/v1/queues/"+topic, "")
		if string(r.body) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %s, want %s", r.body, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueEvents: every queue change is one event on queues/{topic} whose
// data is the message without its payload, with the fields of its type; an
// expired lease is queue.nacked with reason lease_expired, then queue.dead.
func TestQueueEvents(t *testing.T) {
	srv := newServer(t, 0)
	pub := do(t, srv, "POST", "/v1/queues/ev/messages", `{"payload":{"secret":"s3cr3t"},"max_attempts":2,"backoff_ms":0,"group":"g"}`)
	if pub.status != 201 {
		t.Fatalf("publish: %d %s", pub.status, pub.body)
	}
	id := qpick(t, pub.body, "messages.0.id")

	// Two leases that expire: the first makes it ready again, the second
	// kills it (max_attempts 2).
	l := do(t, srv, "POST", "/v1/queues/ev/lease", `{"visibility_ms":30}`)
	stale := qpick(t, l.body, "messages.0.receipt")
	qwait(t, srv, "ev", `{"topic":"ev","ready":1,"leased":0,"delayed":0,"dead":0}`)
	if r := do(t, srv, "POST", "/v1/queues/ev/nack", `{"receipt":"`+stale+`"}`); r.status != 410 {
		t.Errorf("nack of an expired lease: %d %s", r.status, r.body)
	}
	do(t, srv, "POST", "/v1/queues/ev/lease", `{"visibility_ms":30}`)
	qwait(t, srv, "ev", `{"topic":"ev","ready":0,"leased":0,"delayed":0,"dead":1}`)
	dead := do(t, srv, "GET", "/v1/queues/ev/dead", "")
	qshape(map[string]string{"id": id}, `{"messages":[{"id":"{id}","payload":{"secret":"s3cr3t"},"attempt":2,"error":"lease expired","dead_at":"<t>"}],"next_cursor":null}`)(t, dead.body, nil)

	// Redrive, then a nack with an error, then an ack.
	do(t, srv, "POST", "/v1/queues/ev/redrive", "")
	l = do(t, srv, "POST", "/v1/queues/ev/lease", `{"visibility_ms":600000}`)
	if r := do(t, srv, "POST", "/v1/queues/ev/nack", `{"receipt":"`+qpick(t, l.body, "messages.0.receipt")+`","error":"oops"}`); r.status != 200 {
		t.Fatalf("nack: %d %s", r.status, r.body)
	}
	l = do(t, srv, "POST", "/v1/queues/ev/lease", `{"visibility_ms":600000}`)
	if r := do(t, srv, "POST", "/v1/queues/ev/ack", `{"receipts":["`+qpick(t, l.body, "messages.0.receipt")+`"]}`); string(r.body) != `{"acked":1,"stale":[]}` {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	qwait(t, srv, "ev", `{"topic":"ev","ready":0,"leased":0,"delayed":0,"dead":0}`)
	if r := do(t, srv, "GET", "/v1/queues", ""); string(r.body) != `{"queues":[],"next_cursor":null}` {
		t.Errorf("a topic without messages is still listed: %s", r.body)
	}

	type want struct {
		typ     string
		attempt float64
		keys    []string // data keys beside id and attempt
		extra   map[string]any
	}
	wants := []want{
		{"queue.published", 0, []string{"available_at", "group", "max_attempts", "published_at"}, map[string]any{"group": "g", "max_attempts": 2.0}},
		{"queue.leased", 1, []string{"lease_expires_at"}, nil},
		{"queue.nacked", 1, []string{"available_at", "error", "reason"}, map[string]any{"reason": "lease_expired", "error": "lease expired"}},
		{"queue.leased", 2, []string{"lease_expires_at"}, nil},
		{"queue.dead", 2, []string{"dead_at", "error", "reason"}, map[string]any{"reason": "lease_expired", "error": "lease expired"}},
		{"queue.redriven", 0, []string{"available_at"}, nil},
		{"queue.leased", 1, []string{"lease_expires_at"}, nil},
		{"queue.nacked", 1, []string{"available_at", "error", "reason"}, map[string]any{"reason": "nack", "error": "oops"}},
		{"queue.leased", 2, []string{"lease_expires_at"}, nil},
		{"queue.acked", 2, nil, nil},
	}
	evs := qevents(t, srv, 0)
	if len(evs) != len(wants) {
		for _, e := range evs {
			t.Log(e)
		}
		t.Fatalf("%d events, want %d", len(evs), len(wants))
	}
	for i, w := range wants {
		e := evs[i]
		if e["type"] != w.typ || e["topic"] != "queues/ev" {
			t.Errorf("event %d: %v %v, want %s on queues/ev", i, e["type"], e["topic"], w.typ)
			continue
		}
		data, _ := e["data"].(map[string]any)
		var keys []string
		for k := range data {
			if k != "id" && k != "attempt" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, w.keys) {
			t.Errorf("event %d (%s): data keys %v beside id and attempt, want %v: %v", i, w.typ, keys, w.keys, data)
		}
		if data["id"] != id || data["attempt"] != w.attempt {
			t.Errorf("event %d (%s): id %v attempt %v, want %s %v", i, w.typ, data["id"], data["attempt"], id, w.attempt)
		}
		for k, x := range w.extra {
			if data[k] != x {
				t.Errorf("event %d (%s): %s = %v, want %v", i, w.typ, k, data[k], x)
			}
		}
		for _, k := range []string{"published_at", "available_at", "lease_expires_at", "dead_at"} {
			if s, ok := data[k].(string); ok && !reQTime.MatchString(`"`+s+`"`) {
				t.Errorf("event %d (%s): %s %q is not RFC 3339 with nanoseconds", i, w.typ, k, s)
			}
		}
		if raw, _ := json.Marshal(data); bytes.Contains(raw, []byte("s3cr3t")) {
			t.Errorf("event %d (%s) carries the payload: %s", i, w.typ, raw)
		}
	}
	if t.Failed() {
		for _, e := range evs {
			t.Log(fmt.Sprint(e))
		}
	}
}
