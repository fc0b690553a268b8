package api

import (
	"bytes"
	"encoding/json"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
)

// publishBody is one message, or {"messages": [..]} for a batch.
type publishBody struct {
	engine.PublishInput
	Messages []engine.PublishInput `json:"messages"`
}

func (h *handlers) publish(c *fiber.Ctx) error {
	var in publishBody
	if err := decode(c, &in); err != nil {
		return err
	}
	if in.Messages == nil && !mentionsMessages(c.Body()) {
		p, err := h.eng.PublishOne(c.UserContext(), c.Params("topic"), in.PublishInput)
		if err != nil {
			return err
		}
		status := fiber.StatusCreated
		if p.Duplicate {
			status = fiber.StatusOK
		}
		return sendValue(c, status, struct {
			Messages []engine.Published `json:"messages"`
		}{[]engine.Published{p}})
	}
	single := in.PublishInput
	if single.Payload != nil || single.DelayMs != nil || single.DedupeID != nil || single.MaxAttempts != nil || single.BackoffMs != nil || single.Group != nil {
		return badRequest("messages: a batch takes no message fields beside it")
	}
	if in.Messages == nil {
		return badRequest("messages: must be an array of 1..%d messages", engine.MaxPublishBatch)
	}
	if len(in.Messages) == 0 {
		return badRequest("messages: empty, want 1..%d messages", engine.MaxPublishBatch)
	}
	out, err := h.eng.Publish(c.UserContext(), c.Params("topic"), in.Messages)
	if err != nil {
		return err
	}
	status := fiber.StatusOK // every message was a duplicate
	for _, p := range out {
		if !p.Duplicate {
			status = fiber.StatusCreated
		}
	}
	return sendValue(c, status, struct {
		Messages []engine.Published `json:"messages"`
	}{out})
}

func (h *handlers) lease(c *fiber.Ctx) error {
	var in engine.LeaseInput
	if len(c.Body()) > 0 {
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	ctx, stop := waitContext(c)
	defer stop()
	out, err := h.eng.Lease(ctx, c.Params("topic"), in)
	if err != nil {
		return err
	}
	if len(out) > 0 && clientGone(c) {
		// Nobody will see these leases: make the messages ready again now
		// rather than at the end of their visibility.
		zero := int64(0)
		for _, m := range out {
			h.eng.Nack(c.UserContext(), c.Params("topic"), engine.NackInput{Receipt: m.Receipt, DelayMs: &zero})
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
	return sendValue(c, fiber.StatusOK, struct {
		Messages []engine.Leased `json:"messages"`
	}{out})
}

func (h *handlers) ack(c *fiber.Ctx) error {
	var in struct {
		Receipts []string `json:"receipts"`
	}
	if err := decode(c, &in); err != nil {
		return err
	}
	if in.Receipts == nil {
		return badRequest("receipts: required")
	}
	out, err := h.eng.Ack(c.UserContext(), c.Params("topic"), in.Receipts)
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, out)
}

func (h *handlers) nack(c *fiber.Ctx) error {
	var in engine.NackInput
	if err := decode(c, &in); err != nil {
		return err
	}
	out, err := h.eng.Nack(c.UserContext(), c.Params("topic"), in)
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, out)
}

func (h *handlers) listDead(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	msgs, next, err := h.eng.ListDead(c.Params("topic"), limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Messages   []engine.DeadMessage `json:"messages"`
		NextCursor *string              `json:"next_cursor"`
	}{msgs, cursorOrNull(next)})
}

func (h *handlers) redrive(c *fiber.Ctx) error {
	if len(c.Body()) > 0 { // optional, and it takes no field: strict like every body
		var in struct{}
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	n, err := h.eng.Redrive(c.UserContext(), c.Params("topic"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Redriven int `json:"redriven"`
	}{n})
}

func (h *handlers) queueStats(c *fiber.Ctx) error {
	st, err := h.eng.QueueStatsOf(c.Params("topic"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, st)
}

func (h *handlers) listQueues(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	qs, next, err := h.eng.ListQueues(limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Queues     []engine.QueueStats `json:"queues"`
		NextCursor *string             `json:"next_cursor"`
	}{qs, cursorOrNull(next)})
}

func cursorOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// sendValue answers v as JSON.
func sendValue(c *fiber.Ctx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sendJSON(c, status, b)
}

// mentionsMessages reports whether a publish body has a "messages" member
// (null decodes to a nil slice like an absent one, and is refused). Only
// bodies that mention the name at all are decoded a second time.
func mentionsMessages(body []byte) bool {
	if !bytes.Contains(body, []byte(`"messages"`)) {
		return false
	}
	var probe struct {
		Messages json.RawMessage `json:"messages"`
	}
	json.Unmarshal(body, &probe) // decoded strictly before
	return probe.Messages != nil
}
