package e2e_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWrites: requests that race in one group commit still see
// each other's writes.
func TestConcurrentWrites(t *testing.T) {
	p := startServer(t, t.TempDir())
	const n = 16

	t.Run("the same unit posted concurrently is written once", func(t *testing.T) {
		before := p.headSeq(t)
		body := mustJSON(t, map[string]any{"id": newID(), "context_id": "race-1", "agent_id": "a", "type": "MESSAGE", "payload": "once"})
		statuses, bodies := make([]int, n), make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				status, b, err := p.do("POST", "/v1/workunits", body)
				if err != nil {
					t.Error(err)
				}
				statuses[i], bodies[i] = status, b
			})
		}
		wg.Wait()
		created := 0
		for i := range n {
			switch statuses[i] {
			case 201:
				created++
			case 200:
			default:
				t.Errorf("request %d: %d %s", i, statuses[i], bodies[i])
			}
			if !bytes.Equal(bodies[i], bodies[0]) {
				t.Errorf("request %d answered\n%s\nrequest 0\n%s", i, bodies[i], bodies[0])
			}
		}
		if created != 1 {
			t.Errorf("%d answers were 201, want exactly 1", created)
		}
		if after := p.headSeq(t); after != before+2 {
			t.Errorf("%d events committed, want 2 (context.created, workunit.created)", after-before)
		}
	})

	t.Run("units racing into a new context create it once", func(t *testing.T) {
		before := p.headSeq(t)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				body := mustJSON(t, map[string]any{"context_id": "race-2", "agent_id": fmt.Sprintf("a%d", i), "type": "MESSAGE"})
				if status, b, err := p.do("POST", "/v1/workunits", body); err != nil || status != 201 {
					t.Errorf("POST: %d %v %s", status, err, b)
				}
			})
		}
		wg.Wait()
		after := p.headSeq(t)
		if after != before+n+1 {
			t.Errorf("%d events committed, want %d", after-before, n+1)
		}
		raws, _ := listAll(t, p, "/v1/contexts/race-2/workunits?order=asc", "units")
		us := decodeUnits(t, raws)
		if len(us) != n {
			t.Fatalf("%d units in race-2, want %d", len(us), n)
		}
		// One context.created, then the units: before+2 .. after.
		for i, u := range us {
			if u.Seq != before+2+uint64(i) {
				t.Errorf("unit %d has seq %d, want %d", i, u.Seq, before+2+uint64(i))
			}
		}
		c := decodeContext(t, p.must(t, 200, "GET", "/v1/contexts/race-2", nil))
		if len(c.AgentIDs) != 1 || c.AgentIDs[0] != us[0].AgentID {
			t.Errorf("context agents %v, want the first unit's agent %s", c.AgentIDs, us[0].AgentID)
		}
	})

	t.Run("concurrent context creation: one wins", func(t *testing.T) {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				status, b, err := p.do("POST", "/v1/contexts", []byte(`{"id":"race-3"}`))
				if err != nil || (status != 201 && status != 409) {
					t.Errorf("POST /v1/contexts: %d %v %s", status, err, b)
				}
				mu.Lock()
				codes[status]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if codes[201] != 1 || codes[409] != n-1 {
			t.Errorf("answers %v, want one 201 and %d 409", codes, n-1)
		}
	})
}

// TestLimitsAccepted: input at each documented limit is accepted.
func TestLimitsAccepted(t *testing.T) {
	p := startServer(t, t.TempDir())
	name128 := strings.Repeat("n", 128)
	target := newID()
	p.must(t, 201, "POST", "/v1/workunits", map[string]any{"id": target, "context_id": "lim", "agent_id": "a", "type": "MESSAGE"})
	rels := make([]map[string]string, 256)
	for i := range rels {
		rels[i] = map[string]string{"target_id": target, "type": "REFERENCES"}
	}
	batch := make([]map[string]any, 1000)
	for i := range batch {
		batch[i] = map[string]any{"context_id": "lim-batch", "agent_id": "a", "type": "MESSAGE", "payload": i}
	}
	runScenarios(t, p, []scenario{
		{name: "names of 128 characters", method: "POST", path: "/v1/workunits", status: 201, events: 2,
			body: map[string]any{"context_id": name128, "agent_id": name128, "type": "SYSTEM"}},
		{name: "all name characters", method: "POST", path: "/v1/workunits", status: 201, events: 2,
			body: map[string]any{"context_id": "Az09._~:@-", "agent_id": "-@:~_.90zA", "type": "ERROR"}},
		{name: "64 metadata keys, values of 8192 bytes", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: map[string]any{"context_id": "lim", "agent_id": "a", "type": "MESSAGE",
				"metadata": func() map[string]string {
					m := manyKeys(64)
					m["k000"] = strings.Repeat("v", 8192)
					m[strings.Repeat("k", 128)] = "long key"
					delete(m, "k001")
					return m
				}()}},
		{name: "256 relationships", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: map[string]any{"context_id": "lim", "agent_id": "a", "type": "MESSAGE", "relationships": rels}},
		{name: "1000 units in a batch", method: "POST", path: "/v1/workunits/batch", status: 201, events: 1001,
			body: map[string]any{"units": batch}},
		{name: "page of 1000", method: "GET", path: "/v1/contexts/lim-batch/workunits?limit=1000", status: 200,
			check: func(t *testing.T, r response) {
				if pg := decodePage(t, "units", r.Body); len(pg.Items) != 1000 || pg.Next != "" {
					t.Errorf("%d units, next %q", len(pg.Items), pg.Next)
				}
			}},
		{name: "body just under 1 MiB", method: "POST", path: "/v1/workunits", status: 201, events: 1,
			body: `{"context_id":"lim","agent_id":"a","type":"MESSAGE","payload":"` + strings.Repeat("x", 1<<20-100) + `"}`},
		{name: "display_name of 256 bytes", method: "POST", path: "/v1/contexts", status: 201, events: 1,
			body: map[string]any{"id": "lim-ctx", "display_name": strings.Repeat("d", 256)}},
	})
}
