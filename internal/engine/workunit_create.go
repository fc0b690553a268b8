package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// CreateResult is the outcome of creating units.
type CreateResult struct {
	// Units are the units' JSON, in request order: new ones as written,
	// existing identical ones as stored.
	Units []json.RawMessage
	// Created is false when every unit already existed (an idempotent
	// retry): nothing was written.
	Created bool
}

// CreateUnit creates one work unit.
func (e *Engine) CreateUnit(ctx context.Context, in *UnitInput) (CreateResult, error) {
	return e.createUnits(ctx, []*UnitInput{in}, false)
}

// CreateUnits creates 1 to MaxBatchUnits work units at once: all or none,
// with contiguous seqs in request order (after the context.created events of
// contexts the batch brings into being).
func (e *Engine) CreateUnits(ctx context.Context, ins []UnitInput) (CreateResult, error) {
	if len(ins) == 0 {
		return CreateResult{}, invalidf("units: empty, send 1 to %d units", MaxBatchUnits)
	}
	if len(ins) > MaxBatchUnits {
		return CreateResult{}, invalidf("units: %d units, at most %d", len(ins), MaxBatchUnits)
	}
	ptrs := make([]*UnitInput, len(ins))
	for i := range ins {
		ptrs[i] = &ins[i]
	}
	return e.createUnits(ctx, ptrs, true)
}

func (e *Engine) createUnits(ctx context.Context, ins []*UnitInput, batch bool) (CreateResult, error) {
	prefix := func(i int) string {
		if batch {
			return fmt.Sprintf("units[%d].", i)
		}
		return ""
	}
	units := make([]*preparedUnit, len(ins))
	index := make(map[ulid.ULID]int, len(ins))
	for i, in := range ins {
		p, err := prepare(prefix(i), in)
		if err != nil {
			return CreateResult{}, err
		}
		if j, dup := index[p.id]; dup {
			return CreateResult{}, invalidf("%sid: %s repeats units[%d].id", prefix(i), p.id, j)
		}
		index[p.id] = i
		units[i] = p
	}
	for i, p := range units {
		for j := range p.rels {
			r := &p.rels[j]
			k, ok := index[r.target]
			if !ok {
				continue
			}
			if k > i {
				return CreateResult{}, invalidf("%srelationships[%d].target_id: %s is a later unit of the batch; a target must come earlier", prefix(i), j, r.target)
			}
			r.inBatch = true
		}
	}
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		return e.applyCreate(tx, units, prefix)
	})
	if err != nil {
		return CreateResult{}, err
	}
	return res.(CreateResult), nil
}

// applyCreate is the command: it runs on the writer.
func (e *Engine) applyCreate(tx *wal.Tx, units []*preparedUnit, prefix func(int) string) (CreateResult, error) {
	out := CreateResult{Units: make([]json.RawMessage, len(units))}
	fresh := make([]bool, len(units))
	for i, p := range units {
		if !p.clientID {
			fresh[i] = true // server-made ULIDs do not collide
			continue
		}
		stored, found, err := txUnit(tx, p.id)
		if err != nil {
			return out, err
		}
		if !found {
			fresh[i] = true
			continue
		}
		same, err := p.sameContent(stored)
		if err != nil {
			return out, err
		}
		if !same {
			return out, conflictf("%sid: work unit %s already exists with other content", prefix(i), p.id)
		}
		out.Units[i] = stored
	}
	for i, p := range units {
		if !fresh[i] {
			continue
		}
		for j, r := range p.rels {
			if r.inBatch {
				continue
			}
			ok, err := tx.Has(storage.UnitKey(r.target))
			if err != nil {
				return out, err
			}
			if !ok {
				return out, invalidf("%srelationships[%d].target_id: work unit %s not found", prefix(i), j, r.target)
			}
		}
	}

	now := tx.Now()
	ts := wal.FormatTime(now)
	// Contexts the batch brings into being, with their agents, in order of
	// first appearance.
	var newContexts []*Context
	seen := map[string]*Context{}
	for i, p := range units {
		if !fresh[i] {
			continue
		}
		c, done := seen[p.contextID]
		if !done {
			ok, err := e.contextExists(tx, p.contextID)
			if err != nil {
				return out, err
			}
			if ok {
				seen[p.contextID] = nil
				continue
			}
			c = newContext(p.contextID, nil, ts)
			seen[p.contextID] = c
			newContexts = append(newContexts, c)
		}
		if c != nil {
			c.AgentIDs = append(c.AgentIDs, p.agentID)
		}
	}
	for _, c := range newContexts {
		c.AgentIDs = dedupe(c.AgentIDs)
		if _, err := putContext(tx, c, "context.created"); err != nil {
			return out, err
		}
	}

	for i, p := range units {
		if !fresh[i] {
			continue
		}
		out.Created = true
		seq := tx.NextSeq()
		// The stored value is a short header, then the unit's JSON: rec is
		// that JSON, a view of the same bytes.
		val := storage.AppendUnitValue(make([]byte, 0, p.size()+len(p.agentID)+48), p.typ, p.agentID, nil)
		hdr := len(val)
		val = p.appendRecord(val, seq, ts)
		rec := val[hdr:]
		loc := storage.ContextUnitKey(p.contextID, seq)
		tx.Set(loc, val)
		tx.Set(storage.UnitKey(p.id), loc)
		if got := tx.EmitUnit(ContextTopic(p.contextID), "workunit.created", rec, loc); got != seq {
			return out, fmt.Errorf("engine: seq %d emitted as %d", seq, got)
		}
		for _, r := range p.rels {
			tx.Set(storage.UnitInKey(r.target, p.id, r.typ), nil)
		}
		out.Units[i] = rec
	}
	for _, c := range newContexts {
		e.known.add(c.ID)
	}
	return out, nil
}

// txUnit reads a unit's JSON as a command sees it.
func txUnit(tx *wal.Tx, id ulid.ULID) ([]byte, bool, error) {
	loc, err := tx.Get(storage.UnitKey(id))
	if isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := tx.Get(loc)
	if err != nil {
		return nil, false, fmt.Errorf("engine: unit %s: %w", id, err)
	}
	_, _, unitJSON, err := storage.SplitUnitValue(v)
	return unitJSON, err == nil, err
}

// contextExists reports whether a context exists, as a command sees it.
func (e *Engine) contextExists(tx *wal.Tx, id string) (bool, error) {
	if e.known.has(id) {
		return true, nil
	}
	ok, err := tx.Has(storage.ContextKey(id))
	if ok {
		e.known.add(id)
	}
	return ok, err
}
