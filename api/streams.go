package api

import (
	"bufio"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
	"engram/internal/jsonx"
)

func itemRef(c *fiber.Ctx) engine.ItemRef {
	return engine.ItemRef{Stream: c.Params("stream"), Group: c.Params("group"), Item: c.Params("item")}
}

func (h *handlers) putItem(c *fiber.Ctx) error {
	ch, err := h.eng.SetItem(c.UserContext(), itemRef(c), c.Body())
	if err != nil {
		return err
	}
	return sendChange(c, ch)
}

func (h *handlers) getItem(c *fiber.Ctx) error {
	v, err := h.eng.GetItem(itemRef(c))
	if err != nil {
		return err
	}
	b := append(append([]byte(`{"value":`), v...), '}')
	return sendJSON(c, fiber.StatusOK, b)
}

func (h *handlers) deleteItem(c *fiber.Ctx) error {
	ch, err := h.eng.DeleteItem(c.UserContext(), itemRef(c))
	if err != nil {
		return err
	}
	b := append(append([]byte(`{"old_value":`), ch.OldValue...), '}')
	return sendJSON(c, fiber.StatusOK, b)
}

// updateBody is the body of PATCH /v1/streams/{stream}/{group}/{item}.
type updateBody struct {
	Ops []engine.StreamOp `json:"ops"`
}

func (h *handlers) patchItem(c *fiber.Ctx) error {
	var in updateBody
	if err := decode(c, &in); err != nil {
		return err
	}
	if in.Ops == nil {
		return badRequest("ops: required (an array of update ops)")
	}
	ch, err := h.eng.UpdateItem(c.UserContext(), itemRef(c), in.Ops)
	if err != nil {
		return err
	}
	return sendChange(c, ch)
}

// sendChange answers {"old_value":..,"new_value":..,"errors"?:[..]}.
func sendChange(c *fiber.Ctx, ch *engine.StreamChange) error {
	return sendValue(c, fiber.StatusOK, ch)
}

func (h *handlers) listItems(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	items, next, err := h.eng.ListItems(c.Params("stream"), c.Params("group"), limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	raw := make([][]byte, len(items))
	for i, it := range items {
		b := append([]byte(`{"id":`), jsonx.AppendString(nil, it.ID)...)
		b = append(b, `,"value":`...)
		b = append(b, it.Value...)
		raw[i] = append(b, '}')
	}
	return sendJSON(c, fiber.StatusOK, appendList(nil, "items", raw, next))
}

func (h *handlers) listGroups(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	groups, next, err := h.eng.ListGroupsPage(c.Params("stream"), limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Groups     []string `json:"groups"`
		NextCursor *string  `json:"next_cursor"`
	}{groups, cursorOrNull(next)})
}

func (h *handlers) listStreams(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	streams, next, err := h.eng.ListStreamsPage(limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Streams    []engine.StreamGroups `json:"streams"`
		Count      int                   `json:"count"`
		NextCursor *string               `json:"next_cursor"`
	}{streams, len(streams), cursorOrNull(next)})
}

func (h *handlers) sendEvent(c *fiber.Ctx) error {
	var in engine.SendInput
	if err := decode(c, &in); err != nil {
		return err
	}
	seq, err := h.eng.SendEvent(c.UserContext(), c.Params("stream"), c.Params("group"), in)
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusAccepted, append(strconv.AppendUint([]byte(`{"seq":`), seq, 10), '}'))
}

// streamGroupValues streams {"<key>":[value,...]} of a whole group from one
// snapshot, so that a group of any size is never held in memory at once.
func (h *handlers) streamGroupValues(c *fiber.Ctx, stream, group, key string) error {
	scan, err := h.eng.ScanGroup(stream, group)
	if err != nil {
		return err
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer scan.Close()
		w.WriteString(`{"`)
		w.WriteString(key)
		w.WriteString(`":[`)
		first := true
		for {
			_, v, ok := scan.Next()
			if !ok {
				break
			}
			if !first {
				w.WriteByte(',')
			}
			first = false
			if _, err := w.Write(v); err != nil {
				return // the client went away
			}
		}
		if err := scan.Err(); err != nil {
			// The status is sent: all that is left is to end the body
			// short, so that the client sees broken JSON, not a short list.
			h.log.Error("stream list failed", "stream", stream, "group", group, "err", err)
			return
		}
		w.WriteString("]}")
	})
	return nil
}
