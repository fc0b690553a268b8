package api

import (
	"bytes"
	"encoding/json"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
)

func (h *handlers) createContext(c *fiber.Ctx) error {
	var in engine.ContextInput
	if len(bytes.TrimSpace(c.Body())) > 0 { // no body means {}
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	ctxJSON, err := h.eng.CreateContext(c.UserContext(), in)
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusCreated, ctxJSON)
}

func (h *handlers) listContexts(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	items, next, err := h.eng.ListContexts(limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, appendList(nil, "contexts", raws(items), next))
}

func (h *handlers) getContext(c *fiber.Ctx) error {
	ctxJSON, err := h.eng.GetContext(c.Params("id"))
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, ctxJSON)
}

func (h *handlers) patchContext(c *fiber.Ctx) error {
	var p engine.ContextPatch
	if err := decode(c, &p); err != nil {
		return err
	}
	ctxJSON, err := h.eng.PatchContext(c.UserContext(), c.Params("id"), p)
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, ctxJSON)
}

func raws(items []json.RawMessage) [][]byte {
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}
