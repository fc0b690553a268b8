package api

import (
	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
)

func (h *handlers) createUnit(c *fiber.Ctx) error {
	var in engine.UnitInput
	if err := decode(c, &in); err != nil {
		return err
	}
	res, err := h.eng.CreateUnit(c.UserContext(), &in)
	if err != nil {
		return err
	}
	return sendJSON(c, createdStatus(res), res.Units[0])
}

func (h *handlers) createBatch(c *fiber.Ctx) error {
	var in engine.BatchInput
	if err := decode(c, &in); err != nil {
		return err
	}
	res, err := h.eng.CreateUnits(c.UserContext(), in.Units)
	if err != nil {
		return err
	}
	size := 16
	for _, u := range res.Units {
		size += len(u) + 1
	}
	body := append(make([]byte, 0, size), `{"units":[`...)
	for i, u := range res.Units {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, u...)
	}
	return sendJSON(c, createdStatus(res), append(body, "]}"...))
}

// createdStatus is 201 when anything was written, 200 for a retry that
// found every unit already stored.
func createdStatus(res engine.CreateResult) int {
	if res.Created {
		return fiber.StatusCreated
	}
	return fiber.StatusOK
}

func (h *handlers) getUnit(c *fiber.Ctx) error {
	u, err := h.eng.GetUnit(c.Params("id"))
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, u)
}

func (h *handlers) listUnits(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	q := engine.ListQuery{
		ContextID: c.Params("id"),
		Limit:     limit,
		Before:    c.Query("before"),
		After:     c.Query("after"),
		Type:      c.Query("type"),
		AgentID:   c.Query("agent_id"),
		Cursor:    c.Query("cursor"),
	}
	switch o := c.Query("order"); o {
	case "", "desc":
	case "asc":
		q.Asc = true
	default:
		return badRequest("order: unknown order %q (asc or desc)", engine.Truncate(o))
	}
	page, err := h.eng.ListUnits(q)
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, appendList(nil, "units", raws(page.Units), page.Next))
}

func (h *handlers) related(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	page, err := h.eng.Related(engine.RelatedQuery{
		ID:        c.Params("id"),
		Direction: c.Query("direction"),
		Type:      c.Query("type"),
		Limit:     limit,
		Cursor:    c.Query("cursor"),
	})
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, appendList(nil, "units", raws(page.Units), page.Next))
}
