package api

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/common/expfmt"
)

func (h *handlers) readyz(c *fiber.Ctx) error {
	if h.cfg.Ready != nil && !h.cfg.Ready() {
		return &apiError{fiber.StatusServiceUnavailable, "unavailable", "not ready: storage is not accepting writes"}
	}
	return sendJSON(c, fiber.StatusOK, []byte(`{"status":"ready"}`))
}

func (h *handlers) metrics(c *fiber.Ctx) error {
	if h.cfg.Gatherer == nil {
		return &apiError{fiber.StatusNotFound, "not_found", "metrics are not enabled"}
	}
	mfs, err := h.cfg.Gatherer.Gather()
	if err != nil {
		h.log.Warn("gathering metrics", "err", err)
	}
	var buf bytes.Buffer
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	c.Set(fiber.HeaderContentType, string(format))
	return c.Send(buf.Bytes())
}
