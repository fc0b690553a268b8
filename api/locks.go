package api

import (
	"github.com/gofiber/fiber/v2"

	"engram/internal/lockmgr"
)

func (h *handlers) acquireLock(c *fiber.Ctx) error {
	var in lockmgr.AcquireInput
	if err := decode(c, &in); err != nil {
		return err
	}
	ctx, stop := waitContext(c)
	defer stop()
	l, err := h.cfg.Locks.Acquire(ctx, in)
	if err != nil {
		return err
	}
	if clientGone(c) {
		// Nobody will learn of this lock: give it back at once rather
		// than leave its resources held until it expires.
		h.cfg.Locks.Release(c.UserContext(), l.LockID)
		return c.SendStatus(fiber.StatusNoContent)
	}
	return sendValue(c, fiber.StatusCreated, l)
}

func (h *handlers) getLocks(c *fiber.Ctx) error {
	resource, hasResource := c.Queries()["resource"]
	_, hasPrefix := c.Queries()["prefix"]
	if hasResource {
		if hasPrefix || c.Query("cursor") != "" || c.Query("limit") != "" {
			return badRequest("resource: takes no prefix, limit or cursor beside it")
		}
		l, err := h.cfg.Locks.Get(resource)
		if err != nil {
			return err
		}
		return sendValue(c, fiber.StatusOK, l)
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	locks, next, err := h.cfg.Locks.List(c.Query("prefix"), limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, struct {
		Locks      []*lockmgr.Lock `json:"locks"`
		NextCursor *string         `json:"next_cursor"`
	}{locks, cursorOrNull(next)})
}

func (h *handlers) renewLock(c *fiber.Ctx) error {
	var in struct {
		TTLMs *int64 `json:"ttl_ms"`
	}
	if err := decode(c, &in); err != nil {
		return err
	}
	l, err := h.cfg.Locks.Renew(c.UserContext(), c.Params("lock_id"), in.TTLMs)
	if err != nil {
		return err
	}
	return sendValue(c, fiber.StatusOK, l)
}

func (h *handlers) releaseLock(c *fiber.Ctx) error {
	if err := h.cfg.Locks.Release(c.UserContext(), c.Params("lock_id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
