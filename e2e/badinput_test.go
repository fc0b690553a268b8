package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// del marks a key to remove from a valid body.
type del struct{}

// unitWith is a valid work unit body with changes: key, value pairs; a del{}
// value removes the key.
func unitWith(kv ...any) map[string]any {
	u := map[string]any{"context_id": "c1", "agent_id": "a", "type": "MESSAGE"}
	for i := 0; i+1 < len(kv); i += 2 {
		if _, ok := kv[i+1].(del); ok {
			delete(u, kv[i].(string))
			continue
		}
		u[kv[i].(string)] = kv[i+1]
	}
	return u
}

func manyKeys(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

func nCopies[T any](n int, v func(i int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v(i)
	}
	return out
}

// oversize is a body of that many bytes, announced by Content-Length and
// never sent: the server must answer 413 from the header alone.
type oversize int64

// sendHeadersOnly sends a request's header announcing a body of n bytes and
// reads the answer. Sending no body keeps the server's early close clean (a
// close with unread data would reset the connection under the answer).
func (p *proc) sendHeadersOnly(t testing.TB, method, path string, n int64) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, p.Addr, n)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s with Content-Length %d: %v", method, path, n, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{resp.StatusCode, b, resp.Header}
}

func TestBadInput(t *testing.T) {
	p := startServer(t, t.TempDir())
	p.must(t, 201, "POST", "/v1/contexts", `{"id":"c1","metadata":{"m":"1"}}`)
	u1 := newID()
	p.must(t, 201, "POST", "/v1/workunits", unitWith("id", u1, "payload", "first"))
	self := newID()
	long := strings.Repeat("n", 129)
	deep := strings.Repeat("[", 100000)
	rel := func(target, typ string) []map[string]any {
		return []map[string]any{{"target_id": target, "type": typ}}
	}
	okUnit := func(i int) map[string]any { return unitWith("payload", i) }

	type badCase struct {
		name         string
		method, path string
		body         any
		status       int
		code, field  string
	}
	const (
		units, batch, contexts, c1 = "/v1/workunits", "/v1/workunits/batch", "/v1/contexts", "/v1/contexts/c1"
		inv                        = "invalid_argument"
	)
	cases := []badCase{
		// Bodies that are not the JSON document expected.
		{"malformed JSON", "POST", units, `{"context_id" "c1"}`, 400, inv, "body"},
		{"truncated JSON", "POST", units, `{"context_id":"c1","agent_id":"a"`, 400, inv, "body"},
		{"empty body", "POST", units, "", 400, inv, "body"},
		{"blank body", "POST", units, " \n\t", 400, inv, "body"},
		{"array body", "POST", units, `[]`, 400, inv, "body"},
		{"string body", "POST", units, `"unit"`, 400, inv, "body"},
		{"null body", "POST", units, `null`, 400, inv, "body"},
		{"null context body", "POST", contexts, `null`, 400, inv, "body"},
		{"null patch body", "PATCH", c1, `null`, 400, inv, "body"},
		{"data after the document", "POST", units, `{"context_id":"c1","agent_id":"a","type":"MESSAGE"} {}`, 400, inv, "body"},
		{"invalid UTF-8 outside strings", "POST", units, "{\xff}", 400, inv, "body"},
		{"invalid UTF-8 in a payload string", "POST", units, "{\"context_id\":\"c1\",\"agent_id\":\"a\",\"type\":\"MESSAGE\",\"payload\":\"a\xffb\"}", 400, inv, "UTF-8"},
		{"invalid UTF-8 in metadata", "POST", units, "{\"context_id\":\"c1\",\"agent_id\":\"a\",\"type\":\"MESSAGE\",\"metadata\":{\"k\":\"\xc3\"}}", 400, inv, "UTF-8"},
		{"unknown field", "POST", units, unitWith("bogus", 1), 400, inv, "bogus"},
		{"unknown relationship field", "POST", units, unitWith("relationships", []map[string]any{{"target_id": u1, "type": "CAUSES", "weight": 1}}), 400, inv, "weight"},
		{"deep nesting", "POST", units, deep, 400, inv, "body"},
		{"deep nesting in the payload", "POST", units, `{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":` + deep, 400, inv, "body"},
		{"deep nesting, closed", "POST", units, `{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, 400, inv, "body"},
		{"body over 1 MiB", "POST", units, oversize(1<<20 + 1), 413, "payload_too_large", "body"},
		{"body of 1 GiB", "POST", units, oversize(1 << 30), 413, "payload_too_large", "body"},
		{"batch over 1 MiB", "POST", batch, oversize(2 << 20), 413, "payload_too_large", "body"},
		{"patch over 1 MiB", "PATCH", c1, oversize(1<<20 + 1), 413, "payload_too_large", "body"},

		// Wrong types.
		{"context_id a number", "POST", units, unitWith("context_id", 1), 400, inv, "context_id"},
		{"agent_id a boolean", "POST", units, unitWith("agent_id", true), 400, inv, "agent_id"},
		{"type a number", "POST", units, unitWith("type", 5), 400, inv, "type"},
		{"id a number", "POST", units, unitWith("id", 123), 400, inv, "id"},
		{"metadata an array", "POST", units, unitWith("metadata", []string{"a"}), 400, inv, "metadata"},
		{"metadata value a number", "POST", units, unitWith("metadata", map[string]any{"k": 1}), 400, inv, "metadata"},
		{"relationships an object", "POST", units, unitWith("relationships", map[string]any{}), 400, inv, "relationships"},
		{"target_id a number", "POST", units, unitWith("relationships", []map[string]any{{"target_id": 5, "type": "CAUSES"}}), 400, inv, "target_id"},
		{"payload_base64 a number", "POST", units, unitWith("payload_base64", 5), 400, inv, "payload_base64"},

		// Missing required fields.
		{"no context_id", "POST", units, unitWith("context_id", del{}), 400, inv, "context_id"},
		{"no agent_id", "POST", units, unitWith("agent_id", del{}), 400, inv, "agent_id"},
		{"no type", "POST", units, unitWith("type", del{}), 400, inv, "type"},
		{"relationship without type", "POST", units, unitWith("relationships", []map[string]any{{"target_id": u1}}), 400, inv, "relationships[0].type"},
		{"relationship without target", "POST", units, unitWith("relationships", []map[string]any{{"type": "CAUSES"}}), 400, inv, "relationships[0].target_id"},

		// Names.
		{"context_id with a slash", "POST", units, unitWith("context_id", "a/b"), 400, inv, "context_id"},
		{"context_id of 129 characters", "POST", units, unitWith("context_id", long), 400, inv, "context_id"},
		{"empty context_id", "POST", units, unitWith("context_id", ""), 400, inv, "context_id"},
		{"context_id with a space", "POST", units, unitWith("context_id", "a b"), 400, inv, "context_id"},
		{"context_id not ASCII", "POST", units, unitWith("context_id", "café"), 400, inv, "context_id"},
		{"empty agent_id", "POST", units, unitWith("agent_id", ""), 400, inv, "agent_id"},
		{"agent_id with a slash", "POST", units, unitWith("agent_id", "x/y"), 400, inv, "agent_id"},
		{"agent_id of 129 characters", "POST", units, unitWith("agent_id", long), 400, inv, "agent_id"},
		{"malformed id", "POST", units, unitWith("id", "not-a-ulid"), 400, inv, "id"},
		{"id of 27 characters", "POST", units, unitWith("id", u1+"0"), 400, inv, "id"},
		{"id that overflows", "POST", units, unitWith("id", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), 400, inv, "id"},

		// Enums.
		{"unknown type", "POST", units, unitWith("type", "FOO"), 400, inv, `type: unknown work unit type "FOO"`},
		{"lower-case type", "POST", units, unitWith("type", "message"), 400, inv, "type"},
		{"unknown relationship type", "POST", units, unitWith("relationships", rel(u1, "BOGUS")), 400, inv, "relationships[0].type"},

		// Payloads and metadata.
		{"payload and payload_base64", "POST", units, unitWith("payload", "x", "payload_base64", "eA=="), 400, inv, "payload_base64"},
		{"invalid base64", "POST", units, unitWith("payload_base64", "!!!"), 400, inv, "payload_base64"},
		{"base64url is not base64", "POST", units, unitWith("payload_base64", "-_-_"), 400, inv, "payload_base64"},
		{"metadata with 65 keys", "POST", units, unitWith("metadata", manyKeys(65)), 400, inv, "metadata"},
		{"metadata value over 8192 bytes", "POST", units, unitWith("metadata", map[string]string{"k": strings.Repeat("v", 8193)}), 400, inv, "metadata"},
		{"metadata with an empty key", "POST", units, unitWith("metadata", map[string]string{"": "v"}), 400, inv, "metadata"},
		{"metadata key over 128 bytes", "POST", units, unitWith("metadata", map[string]string{long: "v"}), 400, inv, "metadata"},
		{"relationship metadata with 65 keys", "POST", units, unitWith("relationships", []map[string]any{{"target_id": u1, "type": "CAUSES", "metadata": manyKeys(65)}}), 400, inv, "relationships[0].metadata"},

		// Relationships.
		{"malformed target", "POST", units, unitWith("relationships", rel("nope", "CAUSES")), 400, inv, "relationships[0].target_id"},
		{"missing target", "POST", units, unitWith("relationships", rel(newID(), "CAUSES")), 400, inv, "relationships[0].target_id"},
		{"missing target in a new context", "POST", units, unitWith("context_id", "fresh", "relationships", rel(newID(), "CAUSES")), 400, inv, "relationships[0].target_id"},
		{"self-relationship", "POST", units, unitWith("id", self, "relationships", rel(self, "CAUSES")), 400, inv, "relationships[0].target_id"},
		{"self-relationship in lower case", "POST", units, unitWith("id", self, "relationships", rel(strings.ToLower(self), "CAUSES")), 400, inv, "relationships[0].target_id"},
		{"257 relationships", "POST", units, unitWith("relationships", nCopies(257, func(int) map[string]any { return map[string]any{"target_id": u1, "type": "CAUSES"} })), 400, inv, "relationships"},

		// Same id, other content.
		{"existing id with other content", "POST", units, unitWith("id", u1, "payload", "second"), 409, "conflict", u1},

		// Batches.
		{"1001 units", "POST", batch, map[string]any{"units": nCopies(1001, okUnit)}, 400, inv, "units"},
		{"0 units", "POST", batch, `{"units":[]}`, 400, inv, "units"},
		{"no units", "POST", batch, `{}`, 400, inv, "units"},
		{"null units", "POST", batch, `{"units":null}`, 400, inv, "units"},
		{"units an object", "POST", batch, `{"units":{}}`, 400, inv, "units"},
		{"unknown batch field", "POST", batch, `{"unit":[]}`, 400, inv, "unit"},
		{"duplicate ids", "POST", batch, map[string]any{"units": []any{unitWith("id", self), okUnit(1), unitWith("id", strings.ToLower(self))}}, 400, inv, "units[2].id"},
		{"bad unit in a batch", "POST", batch, map[string]any{"units": []any{okUnit(0), unitWith("type", "FOO")}}, 400, inv, "units[1].type"},
		{"bad name in a batch", "POST", batch, map[string]any{"units": []any{okUnit(0), okUnit(1), unitWith("context_id", "new/ctx")}}, 400, inv, "units[2].context_id"},
		{"missing target in a batch", "POST", batch, map[string]any{"units": []any{unitWith("context_id", "fresh"), unitWith("relationships", rel(newID(), "CAUSES"))}}, 400, inv, "units[1].relationships[0].target_id"},
		{"conflict in a batch", "POST", batch, map[string]any{"units": []any{unitWith("context_id", "fresh"), unitWith("id", u1)}}, 409, "conflict", "units[1].id"},

		// Contexts.
		{"context id with a slash", "POST", contexts, `{"id":"a/b"}`, 400, inv, "id"},
		{"context id of 129 characters", "POST", contexts, map[string]any{"id": long}, 400, inv, "id"},
		{"context id a number", "POST", contexts, `{"id":7}`, 400, inv, "id"},
		{"display_name over 256 bytes", "POST", contexts, map[string]any{"id": "d", "display_name": strings.Repeat("d", 257)}, 400, inv, "display_name"},
		{"bad agent in agent_ids", "POST", contexts, `{"id":"d","agent_ids":["ok","not ok"]}`, 400, inv, "agent_ids[1]"},
		{"agent_ids a string", "POST", contexts, `{"id":"d","agent_ids":"a"}`, 400, inv, "agent_ids"},
		{"context metadata with 65 keys", "POST", contexts, map[string]any{"id": "d", "metadata": manyKeys(65)}, 400, inv, "metadata"},
		{"unknown context field", "POST", contexts, `{"id":"d","name":"x"}`, 400, inv, "name"},
		{"malformed context JSON", "POST", contexts, `{"id":`, 400, inv, "body"},
		{"existing context", "POST", contexts, `{"id":"c1"}`, 409, "conflict", "c1"},
		{"context body over 1 MiB", "POST", contexts, oversize(1<<20 + 1), 413, "payload_too_large", "body"},

		// Patches.
		{"patch with an empty body", "PATCH", c1, "", 400, inv, "body"},
		{"patch malformed JSON", "PATCH", c1, `{"pin":[`, 400, inv, "body"},
		{"patch unknown field", "PATCH", c1, `{"pinned":[]}`, 400, inv, "pinned"},
		{"pin a malformed id", "PATCH", c1, `{"pin":["xyz"]}`, 400, inv, "pin[0]"},
		{"pin a missing unit", "PATCH", c1, map[string]any{"pin": []string{newID()}}, 400, inv, "pin[0]"},
		{"pin with a bad second id", "PATCH", c1, map[string]any{"pin": []string{u1, "xyz"}}, 400, inv, "pin[1]"},
		{"unpin a malformed id", "PATCH", c1, `{"unpin":[""]}`, 400, inv, "unpin[0]"},
		{"add a bad agent", "PATCH", c1, `{"add_agents":["a/b"]}`, 400, inv, "add_agents[0]"},
		{"remove a bad agent", "PATCH", c1, `{"remove_agents":[""]}`, 400, inv, "remove_agents[0]"},
		{"patch display_name over 256 bytes", "PATCH", c1, map[string]any{"display_name": strings.Repeat("d", 257)}, 400, inv, "display_name"},
		{"patch metadata value over 8192 bytes", "PATCH", c1, map[string]any{"metadata": map[string]string{"k": strings.Repeat("v", 8193)}}, 400, inv, "metadata"},
		{"patch leaving 65 metadata keys", "PATCH", c1, map[string]any{"metadata": manyKeys(64)}, 400, inv, "metadata"},
		{"patch a context with a bad name", "PATCH", "/v1/contexts/" + long, `{}`, 400, inv, "id"},
		{"patch a missing context", "PATCH", "/v1/contexts/missing", `{"display_name":"x"}`, 404, "not_found", "missing"},

		// Query parameters and paths.
		{"limit=abc", "GET", "/v1/contexts?limit=abc", nil, 400, inv, "limit"},
		{"limit=1001", "GET", "/v1/contexts?limit=1001", nil, 400, inv, "limit"},
		{"limit=0", "GET", "/v1/contexts?limit=0", nil, 400, inv, "limit"},
		{"cursor=garbage", "GET", "/v1/contexts?cursor=garbage", nil, 400, inv, "cursor"},
		{"units limit=abc", "GET", "/v1/contexts/c1/workunits?limit=abc", nil, 400, inv, "limit"},
		{"units cursor=garbage", "GET", "/v1/contexts/c1/workunits?cursor=garbage", nil, 400, inv, "cursor"},
		{"malformed ULID in a path", "GET", "/v1/workunits/not-a-ulid", nil, 400, inv, "id"},
		{"malformed ULID in a related path", "GET", "/v1/workunits/not-a-ulid/related", nil, 400, inv, "id"},
		{"context name too long in a path", "GET", "/v1/contexts/" + long, nil, 400, inv, "id"},
		{"context name too long in a units path", "GET", "/v1/contexts/" + long + "/workunits", nil, 400, inv, "context_id"},
	}

	snapshot := func(t *testing.T) (uint64, []byte, []byte) {
		return p.headSeq(t),
			p.must(t, 200, "GET", "/v1/contexts?limit=1000", nil),
			p.must(t, 200, "GET", "/v1/contexts/c1/workunits?limit=1000", nil)
	}
	head0, ctxs0, units0 := snapshot(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if n, ok := tc.body.(oversize); ok {
				r = p.sendHeadersOnly(t, tc.method, tc.path, int64(n))
			} else {
				r = p.call(t, tc.method, tc.path, tc.body)
			}
			checkError(t, r, tc.status, tc.code, tc.field)
			head, ctxs, us := snapshot(t)
			if head != head0 {
				t.Errorf("head seq moved from %d to %d", head0, head)
			}
			if !bytes.Equal(ctxs, ctxs0) {
				t.Errorf("contexts changed:\n%s\nwas\n%s", ctxs, ctxs0)
			}
			if !bytes.Equal(us, units0) {
				t.Errorf("c1's units changed:\n%s\nwas\n%s", us, units0)
			}
		})
	}
	for _, ctx := range []string{"fresh", "d"} {
		checkError(t, p.call(t, "GET", "/v1/contexts/"+ctx, nil), 404, "not_found", ctx)
	}
	checkError(t, p.call(t, "GET", "/v1/workunits/"+self, nil), 404, "not_found", self)
	if lines := p.logLines("request failed"); len(lines) != 0 {
		t.Errorf("bad input logged %d server errors: %v", len(lines), lines)
	}
	t.Run("413 reaches a client that sends the whole body", func(t *testing.T) {
		for _, size := range []int{1 << 20, 8 << 20} {
			body := mustJSON(t, unitWith("payload", strings.Repeat("x", size)))
			for range 20 {
				checkError(t, p.call(t, "POST", units, body), 413, "payload_too_large", "body")
			}
		}
	})

	// Still serving, and a clean stop.
	p.must(t, 200, "GET", "/healthz", nil)
	p.must(t, 201, "POST", units, unitWith("payload", "after"))
	p.Stop()
}
