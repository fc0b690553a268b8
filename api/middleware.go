package api

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// recoverer turns a handler panic into a 500, logged with its stack, so one
// bad request cannot take the server down.
func recoverer(log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("handler panicked", "method", c.Method(), "path", c.Path(), "panic", p, "stack", string(debug.Stack()),
					"request_id", RequestID(c))
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return c.Next()
	}
}

// httpMetrics records request durations by route template, method and
// status. Unmatched paths share one label value, so label cardinality stays
// bounded whatever clients send.
func httpMetrics(reg prometheus.Registerer) fiber.Handler {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "engram_http_request_duration_seconds",
		Help:    "HTTP request durations by route, method and status.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"route", "method", "status"})
	if reg != nil {
		reg.MustRegister(hist)
	}
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		status := c.Response().StatusCode()
		if err != nil {
			status, _, _, _ = classify(err)
		}
		route := c.Route().Path
		if route == "/" && c.Path() != "/" {
			route = "unmatched"
		}
		// c.Method() aliases fasthttp's request buffer, which the next
		// request reuses: the label must own its bytes.
		hist.WithLabelValues(route, strings.Clone(c.Method()), strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		return err
	}
}
