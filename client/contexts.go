package client

import (
	"context"
	"iter"
	"net/http"
	"time"
)

// Context groups work units (a conversation, a task, a session), as stored
// and as carried by context.* events.
type Context struct {
	ID          string            `json:"id"`
	DisplayName string            `json:"display_name"`
	AgentIDs    []string          `json:"agent_ids"`
	PinnedUnits []string          `json:"pinned_units"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// ContextCreate is the body of CreateContext. Every field is optional.
type ContextCreate struct {
	// ID is the context id (a name). Empty means the server assigns a ULID.
	ID string `json:"id,omitempty"`
	// DisplayName is the display name. Nil means the id; a pointer to ""
	// sets an empty name.
	DisplayName *string `json:"display_name,omitempty"`
	// AgentIDs are the context's agents; duplicates are stored once.
	AgentIDs []string `json:"agent_ids,omitempty"`
	// Metadata is string to string, at most 64 keys.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ContextPatch is the body of PatchContext. Nil and empty fields change
// nothing.
type ContextPatch struct {
	// DisplayName replaces the display name when not nil.
	DisplayName *string `json:"display_name,omitempty"`
	// Metadata merges into the context's metadata: a non-nil value sets the
	// key, a nil value deletes it.
	Metadata map[string]*string `json:"metadata,omitempty"`
	// AddAgents adds agent ids; RemoveAgents removes them.
	AddAgents    []string `json:"add_agents,omitempty"`
	RemoveAgents []string `json:"remove_agents,omitempty"`
	// Pin pins work units of this context (another context's unit is 400);
	// Unpin unpins them.
	Pin   []string `json:"pin,omitempty"`
	Unpin []string `json:"unpin,omitempty"`
}

// ContextList is one page of ListContexts.
type ContextList struct {
	Contexts []Context `json:"contexts"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// CreateContext creates a context (POST /v1/contexts). An existing id is
// ErrConflict.
func (c *Client) CreateContext(ctx context.Context, in ContextCreate) (*Context, error) {
	var out Context
	if _, err := c.do(ctx, http.MethodPost, "/v1/contexts", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetContext returns a context (GET /v1/contexts/{id}); ErrNotFound if
// there is none.
func (c *Client) GetContext(ctx context.Context, id string) (*Context, error) {
	if err := requireID("GetContext", "id", id); err != nil {
		return nil, err
	}
	var out Context
	if _, err := c.do(ctx, http.MethodGet, "/v1/contexts/"+segment(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListContexts returns one page of contexts, by id (GET /v1/contexts).
func (c *Client) ListContexts(ctx context.Context, opts ListOptions) (*ContextList, error) {
	var out ContextList
	if _, err := c.do(ctx, http.MethodGet, "/v1/contexts", opts.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllContexts iterates over every context, by id, following the cursors.
// An error is yielded once, as the last element.
func (c *Client) AllContexts(ctx context.Context) iter.Seq2[Context, error] {
	return pages("", func(cursor string) ([]Context, *string, error) {
		page, err := c.ListContexts(ctx, ListOptions{Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		return page.Contexts, page.NextCursor, nil
	})
}

// PatchContext updates a context (PATCH /v1/contexts/{id}) and returns it
// as it is after the change.
func (c *Client) PatchContext(ctx context.Context, id string, p ContextPatch) (*Context, error) {
	if err := requireID("PatchContext", "id", id); err != nil {
		return nil, err
	}
	var out Context
	if _, err := c.do(ctx, http.MethodPatch, "/v1/contexts/"+segment(id), nil, p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
