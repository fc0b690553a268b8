package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// Streams are key/value state in three levels, stream > group > item, whose
// values are any JSON and whose every change is an event on the topic
// streams/{stream}/{group}. Names match ^[A-Za-z0-9._~:@-]{1,128}$.

// StreamChange is the result of a change to a stream item.
type StreamChange struct {
	// OldValue is the item's value before the change: the JSON null when
	// the item was absent.
	OldValue json.RawMessage `json:"old_value"`
	// NewValue is the item's value after the change.
	NewValue json.RawMessage `json:"new_value"`
	// Errors lists the ops of an UpdateItem that were skipped (the others
	// were applied); empty otherwise.
	Errors []OpError `json:"errors,omitempty"`
}

// OpError reports one op of an UpdateItem that was skipped.
type OpError struct {
	// OpIndex is the op's index in the request.
	OpIndex int `json:"op_index"`
	// Code is stable: "increment.not_number", "append.type_mismatch",
	// "set.target_not_object", "merge.value.not_an_object",
	// "merge.path.too_deep", ... Match on it, not on Message.
	Code    string `json:"code"`
	Message string `json:"message"`
}

// StreamOp is one op of UpdateItem. Build it with OpSet, OpIncrement,
// OpDecrement, OpRemove, OpMerge or OpAppend; the fields are exported for
// ops those do not cover (a float By, say).
type StreamOp struct {
	// Type is "set", "increment", "decrement", "remove", "merge" or
	// "append".
	Type string `json:"type"`
	// Path is a string for set, increment, decrement and remove: one
	// literal first-level key, "" being the root (dots are not split).
	// For merge and append it is nil (the root), a string or a []string of
	// literal segments.
	Path any `json:"path,omitempty"`
	// Value is the value of set, merge and append, encoded with
	// encoding/json (a json.RawMessage is sent as it is). Nil sends none,
	// which set takes as null.
	Value any `json:"value,omitempty"`
	// By is the amount of increment and decrement, a JSON number.
	By json.Number `json:"by,omitempty"`
}

// OpSet sets the first-level key path ("" is the root: the whole value) to
// value.
func OpSet(path string, value any) StreamOp {
	if value == nil {
		value = json.RawMessage("null")
	}
	return StreamOp{Type: "set", Path: path, Value: value}
}

// OpIncrement adds by to the number at the first-level key path; a missing
// key is set to by.
func OpIncrement(path string, by int64) StreamOp {
	return StreamOp{Type: "increment", Path: path, By: json.Number(strconv.FormatInt(by, 10))}
}

// OpDecrement subtracts by from the number at the first-level key path; a
// missing key is set to -by.
func OpDecrement(path string, by int64) StreamOp {
	return StreamOp{Type: "decrement", Path: path, By: json.Number(strconv.FormatInt(by, 10))}
}

// OpRemove removes the first-level key path.
func OpRemove(path string) StreamOp {
	return StreamOp{Type: "remove", Path: path}
}

// OpMerge merges the object value into the object at path (nil or empty:
// the root), creating missing or non-object intermediates as {}.
func OpMerge(path []string, value any) StreamOp {
	op := StreamOp{Type: "merge", Value: value}
	if len(path) > 0 {
		op.Path = path
	}
	return op
}

// OpAppend appends value to the array at path (nil or empty: the root), or
// concatenates it to the string there; a missing leaf starts the array (or,
// for a string value at a one-segment path, the string).
func OpAppend(path []string, value any) StreamOp {
	op := StreamOp{Type: "append", Value: value}
	if len(path) > 0 {
		op.Path = path
	}
	return op
}

// StreamItem is an item of a stream group.
type StreamItem struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"value"`
}

// StreamItemList is one page of ListItems.
type StreamItemList struct {
	Items []StreamItem `json:"items"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// StreamGroups is a stream with its groups.
type StreamGroups struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
}

// itemPath is the path of an item, after checking that no name is empty
// (an empty one would make another route).
func itemPath(op, stream, group, item string) (string, error) {
	if err := requireID(op, "stream_name", stream); err != nil {
		return "", err
	}
	if err := requireID(op, "group_id", group); err != nil {
		return "", err
	}
	if err := requireID(op, "item_id", item); err != nil {
		return "", err
	}
	return "/v1/streams/" + segment(stream) + "/" + segment(group) + "/" + segment(item), nil
}

// groupPath is the path of a group, after checking that no name is empty.
func groupPath(op, stream, group string) (string, error) {
	if err := requireID(op, "stream_name", stream); err != nil {
		return "", err
	}
	if err := requireID(op, "group_id", group); err != nil {
		return "", err
	}
	return "/v1/streams/" + segment(stream) + "/" + segment(group), nil
}

// SetItem sets an item's value (PUT /v1/streams/{stream}/{group}/{item}).
// value is encoded with encoding/json (a json.RawMessage is sent as it is);
// nil is the JSON null.
func (c *Client) SetItem(ctx context.Context, stream, group, item string, value any) (*StreamChange, error) {
	p, err := itemPath("SetItem", stream, group, item)
	if err != nil {
		return nil, err
	}
	if value == nil {
		value = json.RawMessage("null") // nil would send no body
	}
	var out StreamChange
	if _, err := c.do(ctx, http.MethodPut, p, nil, value, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetItem returns an item's value (GET
// /v1/streams/{stream}/{group}/{item}); ErrNotFound if there is none.
func (c *Client) GetItem(ctx context.Context, stream, group, item string) (json.RawMessage, error) {
	p, err := itemPath("GetItem", stream, group, item)
	if err != nil {
		return nil, err
	}
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// DeleteItem deletes an item (DELETE /v1/streams/{stream}/{group}/{item})
// and returns its last value; ErrNotFound if there is none.
func (c *Client) DeleteItem(ctx context.Context, stream, group, item string) (old json.RawMessage, err error) {
	p, err := itemPath("DeleteItem", stream, group, item)
	if err != nil {
		return nil, err
	}
	var out struct {
		OldValue json.RawMessage `json:"old_value"`
	}
	if _, err := c.do(ctx, http.MethodDelete, p, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.OldValue, nil
}

// UpdateItem applies ops to an item in order, as one change with one event
// (PATCH /v1/streams/{stream}/{group}/{item}). An absent item starts as {}.
// An op that cannot apply to the value is skipped and reported in the
// change's Errors while the others apply: check Errors, a nil error does
// not mean every op applied. A malformed request (no ops, an unknown type,
// a missing field) is ErrInvalidArgument and changes nothing.
func (c *Client) UpdateItem(ctx context.Context, stream, group, item string, ops ...StreamOp) (*StreamChange, error) {
	p, err := itemPath("UpdateItem", stream, group, item)
	if err != nil {
		return nil, err
	}
	in := struct {
		Ops []StreamOp `json:"ops"`
	}{ops}
	if in.Ops == nil {
		in.Ops = []StreamOp{} // let the server name the problem
	}
	var out StreamChange
	if _, err := c.do(ctx, http.MethodPatch, p, nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListItems returns one page of a group's items, by id (GET
// /v1/streams/{stream}/{group}). A group without items is an empty page,
// not an error.
func (c *Client) ListItems(ctx context.Context, stream, group string, opts ListOptions) (*StreamItemList, error) {
	p, err := groupPath("ListItems", stream, group)
	if err != nil {
		return nil, err
	}
	var out StreamItemList
	if _, err := c.do(ctx, http.MethodGet, p, opts.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllItems iterates over a group's items, by id, from opts.Cursor on,
// following the cursors with pages of opts.Limit items. An error is yielded
// once, as the last element. The items are read page by page, not from one
// snapshot: a change made meanwhile may or may not be seen.
func (c *Client) AllItems(ctx context.Context, stream, group string, opts ListOptions) iter.Seq2[StreamItem, error] {
	return pages(opts.Cursor, func(cursor string) ([]StreamItem, *string, error) {
		page, err := c.ListItems(ctx, stream, group, ListOptions{Limit: opts.Limit, Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		return page.Items, page.NextCursor, nil
	})
}

// ListGroups returns the groups of a stream that hold items, by id (GET
// /v1/streams/{stream}, every page). An unknown stream has no groups.
func (c *Client) ListGroups(ctx context.Context, stream string) ([]string, error) {
	if err := requireID("ListGroups", "stream_name", stream); err != nil {
		return nil, err
	}
	var groups []string
	q := url.Values{"limit": {"1000"}}
	for {
		var out struct {
			Groups     []string `json:"groups"`
			NextCursor *string  `json:"next_cursor"`
		}
		if _, err := c.do(ctx, http.MethodGet, "/v1/streams/"+segment(stream), q, nil, &out); err != nil {
			return nil, err
		}
		groups = append(groups, out.Groups...)
		if out.NextCursor == nil {
			if groups == nil {
				groups = []string{}
			}
			return groups, nil
		}
		q.Set("cursor", *out.NextCursor)
	}
}

// ListStreams returns every stream that holds items, with its groups, by id
// (GET /v1/streams, every page).
func (c *Client) ListStreams(ctx context.Context) ([]StreamGroups, error) {
	var streams []StreamGroups
	q := url.Values{"limit": {"1000"}}
	for {
		var out struct {
			Streams    []StreamGroups `json:"streams"`
			NextCursor *string        `json:"next_cursor"`
		}
		if _, err := c.do(ctx, http.MethodGet, "/v1/streams", q, nil, &out); err != nil {
			return nil, err
		}
		for _, sg := range out.Streams {
			// A stream's groups may continue from the previous page.
			if n := len(streams); n > 0 && streams[n-1].ID == sg.ID {
				streams[n-1].Groups = append(streams[n-1].Groups, sg.Groups...)
				continue
			}
			streams = append(streams, sg)
		}
		if out.NextCursor == nil {
			if streams == nil {
				streams = []StreamGroups{}
			}
			return streams, nil
		}
		q.Set("cursor", *out.NextCursor)
	}
}

// SendEvent sends a custom event of type typ to a group's subscribers (POST
// /v1/streams/{stream}/{group}/events) and returns its seq. The event is
// logged, so resuming subscribers get it too, but it changes no item. data
// is encoded with encoding/json (nil: null); id, when not empty, names the
// event for the subscribers.
func (c *Client) SendEvent(ctx context.Context, stream, group, typ string, data any, id string) (seq uint64, err error) {
	p, err := groupPath("SendEvent", stream, group)
	if err != nil {
		return 0, err
	}
	in := struct {
		Type string  `json:"type"`
		Data any     `json:"data,omitempty"`
		ID   *string `json:"id,omitempty"`
	}{Type: typ, Data: data}
	if id != "" {
		in.ID = &id
	}
	var out struct {
		Seq uint64 `json:"seq"`
	}
	if _, err := c.do(ctx, http.MethodPost, p+"/events", nil, in, &out); err != nil {
		return 0, err
	}
	return out.Seq, nil
}
