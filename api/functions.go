package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
)

// POST /v1/functions/{function_id} runs iii's stream functions with iii's
// payloads and result shapes, so that iii-style callers work unchanged:
//
//	stream::set         {stream_name, group_id, item_id, data}  → {"old_value", "new_value"}
//	stream::get         {stream_name, group_id, item_id}        → the bare value, or null
//	stream::delete      {stream_name, group_id, item_id}        → {"old_value"} (null when absent)
//	stream::list        {stream_name, group_id}                 → {"group": [value, ...]}
//	stream::list_groups {stream_name}                           → {"groups": [group_id, ...]}
//	stream::list_all    {}                                      → {"stream": [{"id", "groups"}], "count"}
//	stream::send        {stream_name, group_id, type, data, id?} → {"seq"}
//	stream::update      {stream_name, group_id, item_id, ops}   → {"old_value", "new_value", "errors"?}

// functionInput is the union of the stream functions' payload fields; each
// function checks that only its own are present.
type functionInput struct {
	StreamName *string           `json:"stream_name"`
	GroupID    *string           `json:"group_id"`
	ItemID     *string           `json:"item_id"`
	Data       json.RawMessage   `json:"data"`
	Ops        []engine.StreamOp `json:"ops"`
	Type       *string           `json:"type"`
	ID         *string           `json:"id"`
}

type streamFunction struct {
	fields []string // the payload's fields; the first ones up to required are required
	req    int
	run    func(h *handlers, c *fiber.Ctx, in *functionInput) error
}

var streamFunctions = map[string]streamFunction{
	"stream::set":         {[]string{"stream_name", "group_id", "item_id", "data"}, 4, (*handlers).fnSet},
	"stream::get":         {[]string{"stream_name", "group_id", "item_id"}, 3, (*handlers).fnGet},
	"stream::delete":      {[]string{"stream_name", "group_id", "item_id"}, 3, (*handlers).fnDelete},
	"stream::list":        {[]string{"stream_name", "group_id"}, 2, (*handlers).fnList},
	"stream::list_groups": {[]string{"stream_name"}, 1, (*handlers).fnListGroups},
	"stream::list_all":    {nil, 0, (*handlers).fnListAll},
	"stream::send":        {[]string{"stream_name", "group_id", "type", "data", "id"}, 4, (*handlers).fnSend},
	"stream::update":      {[]string{"stream_name", "group_id", "item_id", "ops"}, 4, (*handlers).fnUpdate},
}

func functionNames() string {
	names := make([]string, 0, len(streamFunctions))
	for n := range streamFunctions {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (h *handlers) callFunction(c *fiber.Ctx) error {
	id := c.Params("function_id")
	fn, ok := streamFunctions[id]
	if !ok {
		return &apiError{fiber.StatusNotFound, "not_found",
			"function " + strconv.Quote(engine.Truncate(id)) + " not found (known: " + functionNames() + ")"}
	}
	var in functionInput
	// No payload is {} (stream::list_all takes nothing).
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	if err := checkFields(&in, fn); err != nil {
		return err
	}
	return fn.run(h, c, &in)
}

// checkFields rejects a payload missing a required field or carrying a
// field of another function.
func checkFields(in *functionInput, fn streamFunction) error {
	present := map[string]bool{
		"stream_name": in.StreamName != nil, "group_id": in.GroupID != nil, "item_id": in.ItemID != nil,
		"data": in.Data != nil, "ops": in.Ops != nil, "type": in.Type != nil, "id": in.ID != nil,
	}
	for i, f := range fn.fields {
		if i < fn.req && !present[f] {
			return badRequest("%s: required", f)
		}
		delete(present, f)
	}
	for _, f := range []string{"stream_name", "group_id", "item_id", "data", "ops", "type", "id"} {
		if present[f] {
			return badRequest("%s: unknown field for this function", f)
		}
	}
	return nil
}

func (in *functionInput) ref() engine.ItemRef {
	return engine.ItemRef{Stream: deref(in.StreamName), Group: deref(in.GroupID), Item: deref(in.ItemID)}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (h *handlers) fnSet(c *fiber.Ctx, in *functionInput) error {
	ch, err := h.eng.SetItem(c.UserContext(), in.ref(), in.Data)
	if err != nil {
		return renameField(err, "value", "data")
	}
	return sendChange(c, ch)
}

func (h *handlers) fnGet(c *fiber.Ctx, in *functionInput) error {
	v, err := h.eng.GetItem(in.ref())
	if errors.Is(err, engine.ErrNotFound) {
		return sendJSON(c, fiber.StatusOK, []byte("null"))
	}
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, v)
}

func (h *handlers) fnDelete(c *fiber.Ctx, in *functionInput) error {
	ch, err := h.eng.DeleteItem(c.UserContext(), in.ref())
	if errors.Is(err, engine.ErrNotFound) {
		// iii: deleting an absent item is not an error and emits nothing.
		return sendJSON(c, fiber.StatusOK, []byte(`{"old_value":null}`))
	}
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, append(append([]byte(`{"old_value":`), ch.OldValue...), '}'))
}

func (h *handlers) fnList(c *fiber.Ctx, in *functionInput) error {
	return h.streamGroupValues(c, deref(in.StreamName), deref(in.GroupID), "group")
}

func (h *handlers) fnListGroups(c *fiber.Ctx, in *functionInput) error {
	groups, err := h.eng.ListGroups(deref(in.StreamName))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Groups []string `json:"groups"`
	}{groups})
}

// fnListAll answers iii's {"stream":[{"id","groups"}],"count"}, whole.
func (h *handlers) fnListAll(c *fiber.Ctx, _ *functionInput) error {
	streams, err := h.eng.ListStreams()
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Stream []engine.StreamGroups `json:"stream"`
		Count  int                   `json:"count"`
	}{streams, len(streams)})
}

func (h *handlers) fnSend(c *fiber.Ctx, in *functionInput) error {
	seq, err := h.eng.SendEvent(c.UserContext(), deref(in.StreamName), deref(in.GroupID),
		engine.SendInput{Type: deref(in.Type), Data: in.Data, ID: in.ID})
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, append(strconv.AppendUint([]byte(`{"seq":`), seq, 10), '}'))
}

func (h *handlers) fnUpdate(c *fiber.Ctx, in *functionInput) error {
	ch, err := h.eng.UpdateItem(c.UserContext(), in.ref(), in.Ops)
	if err != nil {
		return err
	}
	return sendChange(c, ch)
}

// renameField rewrites an engine message about field from into the
// function payload's name for it.
func renameField(err error, from, to string) error {
	var ee *engine.Error
	if errors.As(err, &ee) && strings.HasPrefix(ee.Msg, from+":") {
		return &engine.Error{Kind: ee.Kind, Msg: to + ee.Msg[len(from):], Details: ee.Details}
	}
	return err
}
