package e2e_test

import (
	"strings"
	"testing"
)

// scenario is one request against a running server and what must come of it.
// Scenarios of a table run in order against one server, so a later one may
// rely on what an earlier one wrote.
type scenario struct {
	name   string
	method string
	path   string
	body   any // nil, string/[]byte (sent as is), func() any (called when the scenario runs) or a value sent as JSON
	status int
	// For an error status: the code, and a string the message must contain
	// (the field it names).
	code, field string
	// events is how many events the request must commit (the change of
	// engram_wal_head_seq): 0 for reads, errors and no-op writes.
	events uint64
	check  func(t *testing.T, r response)
}

func runScenarios(t *testing.T, p *proc, table []scenario) {
	t.Helper()
	for _, sc := range table {
		ok := t.Run(sc.name, func(t *testing.T) {
			before := p.headSeq(t)
			body := sc.body
			if f, ok := body.(func() any); ok {
				body = f()
			}
			r := p.call(t, sc.method, sc.path, body)
			if sc.status >= 400 {
				checkError(t, r, sc.status, sc.code, sc.field)
			} else if r.Status != sc.status {
				t.Fatalf("%s %s: got %s, want status %d", sc.method, sc.path, r, sc.status)
			} else if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s: Content-Type %q, want application/json", sc.method, sc.path, ct)
			}
			if after := p.headSeq(t); after != before+sc.events {
				t.Errorf("%s %s committed %d events (head %d → %d), want %d", sc.method, sc.path, after-before, before, after, sc.events)
			}
			if sc.check != nil {
				sc.check(t, r)
			}
		})
		if !ok {
			// Later scenarios build on this one.
			t.FailNow()
		}
	}
}
