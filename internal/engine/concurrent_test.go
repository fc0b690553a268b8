package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"engram/internal/engine"
)

// TestConcurrentCreates: concurrent writers sharing the sequencer's batches
// see each other's writes: one context.created per new context, one write
// per client id, and retries answered from the batch's own writes.
func TestConcurrentCreates(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	const n = 32
	id := newID()
	var wg sync.WaitGroup
	results := make([]engine.CreateResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Half the writers retry the same unit; the others write fresh
			// units into the same new context.
			in := engine.UnitInput{ContextID: "shared", AgentID: fmt.Sprintf("a%d", i%4), Type: "MESSAGE"}
			if i%2 == 0 {
				in = engine.UnitInput{ID: id, ContextID: "shared", AgentID: "a0", Type: "MESSAGE", Payload: json.RawMessage(`{"x":1}`)}
			}
			results[i], errs[i] = v.e.CreateUnit(ctx, &in)
		})
	}
	wg.Wait()
	created := 0
	var first json.RawMessage
	for i := 0; i < n; i += 2 {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		if first == nil {
			first = results[i].Units[0]
		} else if !bytes.Equal(first, results[i].Units[0]) {
			t.Errorf("writer %d got %s, writer 0 %s", i, results[i].Units[0], first)
		}
	}
	if created != 1 {
		t.Errorf("%d writers created the same id, want 1", created)
	}
	for i := 1; i < n; i += 2 {
		if errs[i] != nil || !results[i].Created {
			t.Fatalf("writer %d: %v Created=%v", i, errs[i], results[i].Created)
		}
	}
	// Events: one context.created, then n/2+1 units, gapless.
	ctxEvents, unitEvents := 0, 0
	for seq := uint64(1); seq <= v.head(); seq++ {
		switch ev := v.event(t, seq); ev.Type {
		case "context.created":
			ctxEvents++
			if seq != 1 {
				t.Errorf("context.created at seq %d, want 1", seq)
			}
		case "workunit.created":
			unitEvents++
		default:
			t.Errorf("event %d: %s", seq, ev.Type)
		}
	}
	if ctxEvents != 1 || unitEvents != n/2+1 {
		t.Errorf("%d context.created and %d workunit.created, want 1 and %d", ctxEvents, unitEvents, n/2+1)
	}
	p, err := v.e.ListUnits(engine.ListQuery{ContextID: "shared", Limit: 1000})
	if err != nil || len(p.Units) != n/2+1 {
		t.Errorf("listing: %d units, %v", len(p.Units), err)
	}
}

// TestConcurrentConflicts: writers racing with different content for one
// id: exactly one wins, the others get ErrConflict.
func TestConcurrentConflicts(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	const n = 16
	id := newID()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			in := engine.UnitInput{ID: id, ContextID: "race", AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage(fmt.Sprint(i))}
			_, errs[i] = v.e.CreateUnit(ctx, &in)
		})
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, engine.ErrConflict):
		default:
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d winners, want 1", wins)
	}
	if v.head() != 2 { // context.created + the unit
		t.Errorf("head %d, want 2", v.head())
	}
}
