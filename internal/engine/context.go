package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// Context is a group of work units.
type Context struct {
	ID          string            `json:"id"`
	DisplayName string            `json:"display_name"`
	AgentIDs    []string          `json:"agent_ids"`
	PinnedUnits []string          `json:"pinned_units"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   string            `json:"created_at"`
	UpdatedAt   string            `json:"updated_at"`
}

// ContextInput is the body of POST /v1/contexts.
type ContextInput struct {
	ID          string            `json:"id"`
	DisplayName *string           `json:"display_name"`
	AgentIDs    []string          `json:"agent_ids"`
	Metadata    map[string]string `json:"metadata"`
}

// ContextPatch is the body of PATCH /v1/contexts/{id}. A nil metadata value
// deletes the key.
type ContextPatch struct {
	DisplayName  *string            `json:"display_name"`
	Metadata     map[string]*string `json:"metadata"`
	AddAgents    []string           `json:"add_agents"`
	RemoveAgents []string           `json:"remove_agents"`
	Pin          []string           `json:"pin"`
	Unpin        []string           `json:"unpin"`
}

// ContextTopic is the event topic of a context.
func ContextTopic(id string) string { return "contexts/" + id }

func newContext(id string, agents []string, now string) *Context {
	return &Context{
		ID: id, DisplayName: id, AgentIDs: agents, PinnedUnits: []string{},
		Metadata: map[string]string{}, CreatedAt: now, UpdatedAt: now,
	}
}

func (c *Context) normalize() {
	if c.AgentIDs == nil {
		c.AgentIDs = []string{}
	}
	if c.PinnedUnits == nil {
		c.PinnedUnits = []string{}
	}
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
}

func checkAgents(field string, ids []string, max int) error {
	if len(ids) > max {
		return invalidf("%s: %d agents, at most %d", field, len(ids), max)
	}
	for i, a := range ids {
		if err := checkName(fmt.Sprintf("%s[%d]", field, i), a); err != nil {
			return err
		}
	}
	return nil
}

func checkDisplayName(s string) error {
	if len(s) > MaxDisplayNameLen {
		return invalidf("display_name: longer than %d bytes", MaxDisplayNameLen)
	}
	return nil
}

// putContext stages the context record and its event.
func putContext(tx *wal.Tx, c *Context, typ string) ([]byte, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("engine: encode context: %w", err)
	}
	tx.Set(storage.ContextKey(c.ID), data)
	tx.Emit(ContextTopic(c.ID), typ, data, nil)
	return data, nil
}

// CreateContext creates a context; conflict if the id exists.
func (e *Engine) CreateContext(ctx context.Context, in ContextInput) (json.RawMessage, error) {
	if in.ID == "" {
		in.ID = ulid.Make().String()
	} else if err := checkName("id", in.ID); err != nil {
		return nil, err
	}
	if in.DisplayName != nil {
		if err := checkDisplayName(*in.DisplayName); err != nil {
			return nil, err
		}
	}
	if err := checkAgents("agent_ids", in.AgentIDs, MaxContextAgents); err != nil {
		return nil, err
	}
	if err := checkMetadata("metadata", in.Metadata); err != nil {
		return nil, err
	}
	agents := dedupe(in.AgentIDs)
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		if ok, err := tx.Has(storage.ContextKey(in.ID)); err != nil {
			return nil, err
		} else if ok {
			return nil, conflictf("context %q already exists", in.ID)
		}
		c := newContext(in.ID, agents, wal.FormatTime(tx.Now()))
		if in.DisplayName != nil {
			c.DisplayName = *in.DisplayName
		}
		if in.Metadata != nil {
			c.Metadata = in.Metadata
		}
		data, err := putContext(tx, c, "context.created")
		if err == nil {
			e.known.add(c.ID)
		}
		return data, err
	})
	if err != nil {
		return nil, err
	}
	return res.([]byte), nil
}

// GetContext returns a context's JSON.
func (e *Engine) GetContext(id string) (json.RawMessage, error) {
	if err := checkName("id", id); err != nil {
		return nil, err
	}
	v, ok, err := e.get(storage.ContextKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFoundf("context %q not found", id)
	}
	return v, nil
}

// ListContexts lists contexts by id.
func (e *Engine) ListContexts(limit int, cursor string) ([]json.RawMessage, string, error) {
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	lower := storage.ContextPrefix()
	if cursor != "" {
		after, err := decodeCursor("ctx", cursor)
		if err != nil {
			return nil, "", err
		}
		// The smallest key after the cursor's: its key with a 0 byte added.
		lower = append(storage.ContextKey(after), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(storage.ContextPrefix()))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := make([]json.RawMessage, 0, min(limit, 64))
	var last string
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, encodeCursor("ctx", last), nil
		}
		if last, err = storage.ContextID(it.Key()); err != nil {
			return nil, "", err
		}
		out = append(out, slices.Clone(it.Value()))
	}
	return out, "", it.Error()
}

// PatchContext changes a context. A patch that changes nothing answers the
// context as it is and writes no event.
func (e *Engine) PatchContext(ctx context.Context, id string, p ContextPatch) (json.RawMessage, error) {
	if err := checkName("id", id); err != nil {
		return nil, err
	}
	if p.DisplayName != nil {
		if err := checkDisplayName(*p.DisplayName); err != nil {
			return nil, err
		}
	}
	if len(p.Metadata) > maxPatchListElements {
		return nil, invalidf("metadata: %d keys, at most %d", len(p.Metadata), maxPatchListElements)
	}
	for k, v := range p.Metadata {
		val := "" // null: the key is deleted
		if v != nil {
			val = *v
		}
		if err := checkMetadataEntry("metadata", k, val); err != nil {
			return nil, err
		}
	}
	if err := checkAgents("add_agents", p.AddAgents, maxPatchListElements); err != nil {
		return nil, err
	}
	if err := checkAgents("remove_agents", p.RemoveAgents, maxPatchListElements); err != nil {
		return nil, err
	}
	if len(p.Unpin) > maxPatchListElements {
		return nil, invalidf("unpin: %d ids, at most %d", len(p.Unpin), maxPatchListElements)
	}
	unpin := make([]string, len(p.Unpin))
	for i, s := range p.Unpin {
		u, err := ParseID(fmt.Sprintf("unpin[%d]", i), s)
		if err != nil {
			return nil, err
		}
		unpin[i] = u.String()
	}
	// Units are immutable and never deleted, so pins are checked before the
	// command runs.
	pin, err := e.checkPins(id, p.Pin)
	if err != nil {
		return nil, err
	}
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		raw, err := tx.Get(storage.ContextKey(id))
		if err != nil {
			if isNotFound(err) {
				return nil, notFoundf("context %q not found", id)
			}
			return nil, err
		}
		var c Context
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("engine: decode context %q: %w", id, err)
		}
		c.normalize()
		before, _ := json.Marshal(&c)
		if p.DisplayName != nil {
			c.DisplayName = *p.DisplayName
		}
		for k, v := range p.Metadata {
			if v == nil {
				delete(c.Metadata, k)
			} else {
				c.Metadata[k] = *v
			}
		}
		if len(c.Metadata) > MaxMetadataKeys {
			return nil, invalidf("metadata: the patch leaves %d keys, at most %d", len(c.Metadata), MaxMetadataKeys)
		}
		c.AgentIDs = dedupe(append(c.AgentIDs, p.AddAgents...))
		c.AgentIDs = without(c.AgentIDs, p.RemoveAgents)
		if len(c.AgentIDs) > MaxContextAgents {
			return nil, invalidf("add_agents: the context would have %d agents, at most %d", len(c.AgentIDs), MaxContextAgents)
		}
		c.PinnedUnits = dedupe(append(c.PinnedUnits, pin...))
		c.PinnedUnits = without(c.PinnedUnits, unpin)
		if len(c.PinnedUnits) > MaxPinnedUnits {
			return nil, invalidf("pin: the context would have %d pinned units, at most %d", len(c.PinnedUnits), MaxPinnedUnits)
		}
		if after, _ := json.Marshal(&c); string(after) == string(before) {
			return json.RawMessage(raw), nil
		}
		c.UpdatedAt = wal.FormatTime(tx.Now())
		data, err := putContext(tx, &c, "context.updated")
		return json.RawMessage(data), err
	})
	if err != nil {
		return nil, err
	}
	return res.(json.RawMessage), nil
}

// checkPins validates ids to pin: each must be a work unit of the context.
func (e *Engine) checkPins(contextID string, ids []string) ([]string, error) {
	if len(ids) > maxPatchListElements {
		return nil, invalidf("pin: %d ids, at most %d", len(ids), maxPatchListElements)
	}
	out := make([]string, len(ids))
	for i, s := range ids {
		field := fmt.Sprintf("pin[%d]", i)
		u, err := ParseID(field, s)
		if err != nil {
			return nil, err
		}
		raw, err := e.unit(u)
		if errors.Is(err, ErrNotFound) {
			return nil, invalidf("%s: work unit %s not found", field, u)
		}
		if err != nil {
			return nil, err
		}
		var head unitHead
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("engine: decode unit %s: %w", u, err)
		}
		if head.ContextID != contextID {
			return nil, invalidf("%s: work unit %s belongs to context %q, not %q", field, u, head.ContextID, contextID)
		}
		out[i] = u.String()
	}
	return out, nil
}

// dedupe removes repeated strings, keeping first occurrences in order.
func dedupe(s []string) []string {
	out := make([]string, 0, len(s))
	seen := make(map[string]struct{}, len(s))
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

// without removes from s every string in drop.
func without(s, drop []string) []string {
	if len(drop) == 0 {
		return s
	}
	set := make(map[string]struct{}, len(drop))
	for _, d := range drop {
		set[d] = struct{}{}
	}
	return slices.DeleteFunc(s, func(v string) bool { _, ok := set[v]; return ok })
}
