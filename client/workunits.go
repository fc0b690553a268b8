package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
	"time"
)

// UnitType is a work unit's type.
type UnitType string

// The work unit types.
const (
	UnitMessage     UnitType = "MESSAGE"
	UnitReasoning   UnitType = "REASONING"
	UnitToolCall    UnitType = "TOOL_CALL"
	UnitToolResult  UnitType = "TOOL_RESULT"
	UnitObservation UnitType = "OBSERVATION"
	UnitPlan        UnitType = "PLAN"
	UnitError       UnitType = "ERROR"
	UnitSystem      UnitType = "SYSTEM"
)

// RelationshipType is the type of a relationship between work units.
type RelationshipType string

// The relationship types.
const (
	RelSequential RelationshipType = "SEQUENTIAL"
	RelCauses     RelationshipType = "CAUSES"
	RelDependsOn  RelationshipType = "DEPENDS_ON"
	RelReferences RelationshipType = "REFERENCES"
	RelRespondsTo RelationshipType = "RESPONDS_TO"
)

// Relationship links a work unit to another one, its target.
type Relationship struct {
	TargetID string           `json:"target_id"`
	Type     RelationshipType `json:"type"`
	// Metadata is string to string; the server always returns it ({} when
	// empty), and nil sends none.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// WorkUnit is an immutable record written by an agent into a context, as
// stored and as carried by workunit.created events.
type WorkUnit struct {
	ID        string            `json:"id"`
	Seq       uint64            `json:"seq"`
	ContextID string            `json:"context_id"`
	AgentID   string            `json:"agent_id"`
	Type      UnitType          `json:"type"`
	Timestamp time.Time         `json:"timestamp"`
	Metadata  map[string]string `json:"metadata"`
	// Payload is the JSON payload as written; nil when the unit has none
	// (or has a binary one).
	Payload json.RawMessage `json:"payload,omitempty"`
	// PayloadBase64 is the binary payload in standard base64, nil when the
	// unit has none. See Binary.
	PayloadBase64 *string        `json:"payload_base64,omitempty"`
	Relationships []Relationship `json:"relationships"`
}

// Binary decodes the unit's binary payload (PayloadBase64); nil when it has
// none.
func (u *WorkUnit) Binary() ([]byte, error) {
	if u.PayloadBase64 == nil {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(*u.PayloadBase64)
}

// Retry returns the unit's client-set fields as a WorkUnitCreate: sending it
// again is an idempotent retry (200 with the stored unit).
func (u *WorkUnit) Retry() WorkUnitCreate {
	return WorkUnitCreate{
		ID: u.ID, ContextID: u.ContextID, AgentID: u.AgentID, Type: u.Type,
		Metadata: u.Metadata, Payload: u.Payload, PayloadBase64: u.PayloadBase64,
		Relationships: u.Relationships,
	}
}

// WorkUnitCreate is a work unit to write. ContextID, AgentID and Type are
// required.
type WorkUnitCreate struct {
	// ID is a ULID of your choosing (see NewID), which makes a retry
	// idempotent. Empty means the server assigns one.
	ID        string   `json:"id,omitempty"`
	ContextID string   `json:"context_id"`
	AgentID   string   `json:"agent_id"`
	Type      UnitType `json:"type"`
	// Metadata is string to string, at most 64 keys.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Payload is any JSON value; nil sends none. The server stores a JSON
	// null as no payload. At most one of Payload and PayloadBase64.
	Payload json.RawMessage `json:"payload,omitempty"`
	// PayloadBase64 is a binary payload in standard base64 with padding
	// (see BinaryPayload); nil sends none.
	PayloadBase64 *string `json:"payload_base64,omitempty"`
	// Relationships target existing units, or units earlier in the same
	// batch.
	Relationships []Relationship `json:"relationships,omitempty"`
}

// BinaryPayload encodes b for WorkUnitCreate.PayloadBase64.
func BinaryPayload(b []byte) *string {
	s := base64.StdEncoding.EncodeToString(b)
	return &s
}

// WorkUnitList is one page of work units.
type WorkUnitList struct {
	Units []WorkUnit `json:"units"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// CreateUnit writes one work unit (POST /v1/workunits). created is true
// when the unit was written (201), false when a unit with the same ID and
// the same content already existed (200: an idempotent retry; unit is the
// stored one). The same ID with other content is ErrConflict.
func (c *Client) CreateUnit(ctx context.Context, in WorkUnitCreate) (unit *WorkUnit, created bool, err error) {
	var out WorkUnit
	status, err := c.do(ctx, http.MethodPost, "/v1/workunits", nil, in, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusCreated, nil
}

// CreateUnits writes 1 to 1000 work units atomically (POST
// /v1/workunits/batch) and returns them in request order with contiguous
// seqs. created is false when every unit already existed (200).
func (c *Client) CreateUnits(ctx context.Context, units []WorkUnitCreate) (out []WorkUnit, created bool, err error) {
	in := struct {
		Units []WorkUnitCreate `json:"units"`
	}{units}
	if in.Units == nil {
		in.Units = []WorkUnitCreate{} // let the server name the problem
	}
	var res struct {
		Units []WorkUnit `json:"units"`
	}
	status, err := c.do(ctx, http.MethodPost, "/v1/workunits/batch", nil, in, &res)
	if err != nil {
		return nil, false, err
	}
	return res.Units, status == http.StatusCreated, nil
}

// GetUnit returns a work unit (GET /v1/workunits/{id}); ErrNotFound if
// there is none, ErrInvalidArgument if id is not a ULID.
func (c *Client) GetUnit(ctx context.Context, id string) (*WorkUnit, error) {
	if err := requireID("GetUnit", "id", id); err != nil {
		return nil, err
	}
	var out WorkUnit
	if _, err := c.do(ctx, http.MethodGet, "/v1/workunits/"+segment(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Order is the order of a listing by seq.
type Order string

// The orders.
const (
	OrderDesc Order = "desc" // newest first (the default)
	OrderAsc  Order = "asc"  // oldest first
)

// ListUnitsOptions selects and pages a context's work units. The zero value
// asks for the newest 100.
type ListUnitsOptions struct {
	// Limit is the page size, 1 to 1000. Zero means the server's default
	// (100).
	Limit int
	// Order is OrderDesc (empty means this) or OrderAsc.
	Order Order
	// Before keeps units with a smaller seq than that unit's (an id).
	Before string
	// After keeps units with a greater seq than that unit's (an id).
	After string
	// Type keeps units of that type.
	Type UnitType
	// AgentID keeps units written by that agent.
	AgentID string
	// Cursor is the NextCursor of the previous page (with the same other
	// options).
	Cursor string
}

func (o ListUnitsOptions) query() url.Values {
	q := ListOptions{Limit: o.Limit, Cursor: o.Cursor}.query(nil)
	for k, v := range map[string]string{
		"order": string(o.Order), "before": o.Before, "after": o.After,
		"type": string(o.Type), "agent_id": o.AgentID,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// ListUnits returns one page of a context's work units, ordered by seq
// (GET /v1/contexts/{id}/workunits). With Type or AgentID a page may hold
// fewer units than Limit (even none) while NextCursor is not nil. An unknown
// context is ErrNotFound.
func (c *Client) ListUnits(ctx context.Context, contextID string, opts ListUnitsOptions) (*WorkUnitList, error) {
	if err := requireID("ListUnits", "context_id", contextID); err != nil {
		return nil, err
	}
	var out WorkUnitList
	if _, err := c.do(ctx, http.MethodGet, "/v1/contexts/"+segment(contextID)+"/workunits", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllUnits iterates over a context's work units selected by opts, from
// opts.Cursor on, following the cursors. An error is yielded once, as the
// last element.
func (c *Client) AllUnits(ctx context.Context, contextID string, opts ListUnitsOptions) iter.Seq2[WorkUnit, error] {
	return pages(opts.Cursor, func(cursor string) ([]WorkUnit, *string, error) {
		o := opts
		o.Cursor = cursor
		page, err := c.ListUnits(ctx, contextID, o)
		if err != nil {
			return nil, nil, err
		}
		return page.Units, page.NextCursor, nil
	})
}

// Direction is the direction Related follows relationships in.
type Direction string

// The directions.
const (
	DirectionBoth Direction = "both" // out, then in (the default)
	DirectionOut  Direction = "out"  // the units this one's relationships target
	DirectionIn   Direction = "in"   // the units whose relationships target this one
)

// RelatedOptions selects and pages Related.
type RelatedOptions struct {
	// Direction is DirectionBoth (empty means this), DirectionOut or
	// DirectionIn.
	Direction Direction
	// Type keeps relationships of that type.
	Type RelationshipType
	// Limit is the page size, 1 to 1000. Zero means the server's default.
	Limit int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

func (o RelatedOptions) query() url.Values {
	q := ListOptions{Limit: o.Limit, Cursor: o.Cursor}.query(nil)
	if o.Direction != "" {
		q.Set("direction", string(o.Direction))
	}
	if o.Type != "" {
		q.Set("type", string(o.Type))
	}
	return q
}

// Related returns one page of the units one relationship hop from unit id
// (GET /v1/workunits/{id}/related). An unknown unit is ErrNotFound.
func (c *Client) Related(ctx context.Context, id string, opts RelatedOptions) (*WorkUnitList, error) {
	if err := requireID("Related", "id", id); err != nil {
		return nil, err
	}
	var out WorkUnitList
	if _, err := c.do(ctx, http.MethodGet, "/v1/workunits/"+segment(id)+"/related", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllRelated iterates over every unit Related selects, from opts.Cursor on.
func (c *Client) AllRelated(ctx context.Context, id string, opts RelatedOptions) iter.Seq2[WorkUnit, error] {
	return pages(opts.Cursor, func(cursor string) ([]WorkUnit, *string, error) {
		o := opts
		o.Cursor = cursor
		page, err := c.Related(ctx, id, o)
		if err != nil {
			return nil, nil, err
		}
		return page.Units, page.NextCursor, nil
	})
}
