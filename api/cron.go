package api

import (
	"github.com/gofiber/fiber/v2"

	"engram/internal/cron"
)

func (h *handlers) putCron(c *fiber.Ctx) error {
	var in cron.PutInput
	if err := decode(c, &in); err != nil {
		return err
	}
	j, err := h.cfg.Cron.Put(c.UserContext(), c.Params("name"), in)
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, j)
}

func (h *handlers) getCron(c *fiber.Ctx) error {
	j, err := h.cfg.Cron.Get(c.Params("name"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, j)
}

func (h *handlers) listCron(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	jobs, next, err := h.cfg.Cron.List(limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Jobs       []*cron.Job `json:"jobs"`
		NextCursor *string     `json:"next_cursor"`
	}{jobs, cursorOrNull(next)})
}

func (h *handlers) deleteCron(c *fiber.Ctx) error {
	if err := h.cfg.Cron.Delete(c.UserContext(), c.Params("name")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
