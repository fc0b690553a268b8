package engine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
)

// GetUnit returns a work unit's JSON.
func (e *Engine) GetUnit(id string) (json.RawMessage, error) {
	u, err := ParseID("id", id)
	if err != nil {
		return nil, err
	}
	return e.unit(u)
}

// unit reads a unit's JSON: its locator, then the value it points to.
func (e *Engine) unit(u ulid.ULID) (json.RawMessage, error) {
	loc, ok, err := e.get(storage.UnitKey(u))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFoundf("work unit %s not found", u)
	}
	v, ok, err := e.get(loc)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("engine: unit %s: its record at %x is missing", u, loc)
	}
	_, _, unitJSON, err := storage.SplitUnitValue(v)
	if err != nil {
		return nil, fmt.Errorf("engine: unit %s: %w", u, err)
	}
	return unitJSON, nil
}

// ListQuery selects work units of a context.
type ListQuery struct {
	ContextID string
	Limit     int    // 0 = DefaultListLimit
	Asc       bool   // oldest first; default newest first
	Before    string // unit id: only units with a smaller seq
	After     string // unit id: only units with a greater seq
	Type      string // filter
	AgentID   string // filter
	Cursor    string
}

// ListPage is one page of a listing. Next is empty at the end.
type ListPage struct {
	Units []json.RawMessage
	Next  string
}

// ListUnits lists a context's units in seq order. A filtered page examines
// at most maxFilteredScan index entries, so it may hold fewer than Limit
// units while Next is set.
func (e *Engine) ListUnits(q ListQuery) (ListPage, error) {
	if err := checkName("context_id", q.ContextID); err != nil {
		return ListPage{}, err
	}
	limit, err := CheckLimit(q.Limit)
	if err != nil {
		return ListPage{}, err
	}
	var typ byte
	if q.Type != "" {
		if typ, err = unitTypes.check("type", q.Type); err != nil {
			return ListPage{}, err
		}
	}
	if q.AgentID != "" {
		if err := checkName("agent_id", q.AgentID); err != nil {
			return ListPage{}, err
		}
	}
	// Bounds as seqs: (lo, hi) exclusive.
	var lo, hi uint64 = 0, ^uint64(0)
	if q.After != "" {
		if lo, err = e.boundSeq("after", q.After); err != nil {
			return ListPage{}, err
		}
	}
	if q.Before != "" {
		if hi, err = e.boundSeq("before", q.Before); err != nil {
			return ListPage{}, err
		}
	}
	tag := "ud"
	if q.Asc {
		tag = "ua"
	}
	if q.Cursor != "" {
		c, err := decodeSeqCursor(tag, q.Cursor)
		if err != nil {
			return ListPage{}, err
		}
		if q.Asc {
			lo = max(lo, c)
		} else {
			hi = min(hi, c)
		}
	}
	if _, err := e.GetContext(q.ContextID); err != nil {
		return ListPage{}, err
	}
	page := ListPage{Units: make([]json.RawMessage, 0, min(limit, 128))}
	if lo >= hi || hi-lo < 2 {
		return page, nil
	}
	it, err := e.store.NewIter(storage.ContextUnitKey(q.ContextID, lo+1), storage.ContextUnitKey(q.ContextID, hi))
	if err != nil {
		return ListPage{}, err
	}
	defer it.Close()
	step, ok := it.Next, it.First()
	if !q.Asc {
		step, ok = it.Prev, it.Last()
	}
	filtered := typ != 0 || q.AgentID != ""
	scanned := 0
	var last uint64
	for ; ok; ok = step() {
		if len(page.Units) == limit || (filtered && scanned == maxFilteredScan) {
			page.Next = encodeCursor(tag, strconv.FormatUint(last, 10))
			return page, nil
		}
		scanned++
		if last, err = storage.TrailingSeq(it.Key()); err != nil {
			return ListPage{}, err
		}
		t, agent, unitJSON, err := storage.SplitUnitValue(it.Value())
		if err != nil {
			return ListPage{}, fmt.Errorf("engine: unit at seq %d: %w", last, err)
		}
		if (typ != 0 && t != typ) || (q.AgentID != "" && string(agent) != q.AgentID) {
			continue
		}
		page.Units = append(page.Units, bytes.Clone(unitJSON))
	}
	return page, it.Error()
}

func (e *Engine) boundSeq(field, id string) (uint64, error) {
	u, err := ParseID(field, id)
	if err != nil {
		return 0, err
	}
	raw, err := e.unit(u)
	if errors.Is(err, ErrNotFound) {
		return 0, invalidf("%s: work unit %s not found", field, u)
	}
	if err != nil {
		return 0, err
	}
	var h unitHead
	if err := json.Unmarshal(raw, &h); err != nil {
		return 0, fmt.Errorf("engine: decode unit %s: %w", u, err)
	}
	return h.Seq, nil
}

// RelatedQuery selects the units one hop away along relationships.
type RelatedQuery struct {
	ID        string
	Direction string // out, in or both (default)
	Type      string // relationship type filter
	Limit     int
	Cursor    string
}

// Related lists units one hop from a unit: first the targets of its own
// relationships (out, in their order), then the units whose relationships
// target it (in, by their id). A unit appears once per direction.
func (e *Engine) Related(q RelatedQuery) (ListPage, error) {
	id, err := ParseID("id", q.ID)
	if err != nil {
		return ListPage{}, err
	}
	limit, err := CheckLimit(q.Limit)
	if err != nil {
		return ListPage{}, err
	}
	var typ byte
	if q.Type != "" {
		if typ, err = relTypes.check("type", q.Type); err != nil {
			return ListPage{}, err
		}
	}
	out, in := true, true
	switch q.Direction {
	case "", "both":
	case "out":
		in = false
	case "in":
		out = false
	default:
		return ListPage{}, invalidf("direction: unknown direction %q (one of out, in, both)", Truncate(q.Direction))
	}
	// The cursor is "o<index>" (next out relationship) or "i<base64 source>"
	// (the last in-source returned).
	outFrom, inAfter := 0, []byte(nil)
	if q.Cursor != "" {
		c, err := decodeCursor("rel", q.Cursor)
		if err != nil || len(c) < 1 {
			return ListPage{}, invalidf("cursor: malformed or from another listing")
		}
		switch c[0] {
		case 'o':
			if outFrom, err = strconv.Atoi(c[1:]); err != nil || outFrom < 0 {
				return ListPage{}, invalidf("cursor: malformed")
			}
		case 'i':
			out = false
			if inAfter, err = base64.RawURLEncoding.DecodeString(c[1:]); err != nil || (len(inAfter) != 16 && len(inAfter) != 0) {
				return ListPage{}, invalidf("cursor: malformed")
			}
		default:
			return ListPage{}, invalidf("cursor: malformed")
		}
	}
	raw, err := e.unit(id)
	if err != nil {
		return ListPage{}, err
	}
	page := ListPage{Units: make([]json.RawMessage, 0, min(limit, 64))}
	if out {
		var s struct {
			Relationships []RelationshipInput `json:"relationships"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return ListPage{}, fmt.Errorf("engine: decode unit %s: %w", id, err)
		}
		// A target already listed on an earlier page counts as seen.
		seen := map[string]bool{}
		for j := 0; j < outFrom && j < len(s.Relationships); j++ {
			if r := s.Relationships[j]; typ == 0 || relTypes.name(typ) == r.Type {
				seen[r.TargetID] = true
			}
		}
		for j := outFrom; j < len(s.Relationships); j++ {
			r := s.Relationships[j]
			if (typ != 0 && relTypes.name(typ) != r.Type) || seen[r.TargetID] {
				continue
			}
			if len(page.Units) == limit {
				page.Next = encodeCursor("rel", "o"+strconv.Itoa(j))
				return page, nil
			}
			seen[r.TargetID] = true
			t, err := ParseID("target_id", r.TargetID)
			if err != nil {
				return ListPage{}, err
			}
			u, err := e.unit(t)
			if err != nil {
				return ListPage{}, err
			}
			page.Units = append(page.Units, u)
		}
	}
	if !in {
		return page, nil
	}
	prefix := storage.UnitInPrefix(id)
	lower := prefix
	if len(inAfter) != 0 {
		// Past every entry of the last source returned.
		lower = storage.PrefixEnd(append(bytes.Clone(prefix), inAfter...))
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return ListPage{}, err
	}
	defer it.Close()
	var last []byte // the last in-source returned on this page
	for ok := it.First(); ok; ok = it.Next() {
		_, src, t, err := storage.DecodeUnitIn(it.Key())
		if err != nil {
			return ListPage{}, err
		}
		if (typ != 0 && t != typ) || bytes.Equal(src[:], last) {
			continue // a second relationship of the same source
		}
		if len(page.Units) == limit {
			page.Next = encodeCursor("rel", "i"+base64.RawURLEncoding.EncodeToString(last))
			return page, nil
		}
		last = src[:]
		u, err := e.unit(src)
		if err != nil {
			return ListPage{}, err
		}
		page.Units = append(page.Units, u)
	}
	return page, it.Error()
}
