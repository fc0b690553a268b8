package api

import (
	_ "embed"
	"errors"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/cron"
	"engram/internal/engine"
	"engram/internal/jsonx"
	"engram/internal/lockmgr"
	"engram/internal/notifier"
	"engram/internal/search"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the contract document served at /v1/openapi.yaml.
func OpenAPI() []byte { return openapiYAML }

// Config configures the HTTP app.
type Config struct {
	// MaxBody is the largest request body in bytes. Zero means 1 MiB.
	MaxBody int
	// Ready reports whether the server accepts writes (for /readyz). Nil
	// means always ready.
	Ready func() bool
	// Gatherer serves /metrics. Nil means /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Registerer receives the HTTP metrics. Nil means they are not
	// registered.
	Registerer prometheus.Registerer
	// Notifier serves /v1/ws and /v1/events. Nil means those routes answer
	// 404.
	Notifier *notifier.Notifier
	// Locks serves /v1/locks. Nil means those routes answer 404.
	Locks *lockmgr.Manager
	// Cron serves /v1/cron. Nil means those routes answer 404.
	Cron *cron.Scheduler
	// Search serves /v1/search and /v1/admin/reindex. Nil means those
	// routes answer 404.
	Search *search.Index
	// Backup serves GET /v1/admin/backup. Nil means that route answers 404.
	Backup BackupSource
	// ConnClosing reports whether the server already closed the connection a
	// request came on (shutdown closes idle keep-alive connections, and one
	// may hold a request read just before). Such a request is refused
	// before it runs: it could never be answered. Nil means never.
	ConnClosing func(net.Conn) bool
	// ReadTimeout, WriteTimeout and IdleTimeout bound a connection's phases.
	// Zero means 30 s, 30 s and 120 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// LimitHit counts a request refused by a limit (one of Limits). Nil
	// means limit hits are not counted.
	LimitHit func(limit string)
	// RateLimit is the requests a second each client may make (a token
	// bucket per RateKey; see ratelimit.go). Zero means no rate limit.
	RateLimit float64
	// RateBurst is the bucket's size: the requests a client may make at once
	// after being idle. Zero means max(1, 2 × RateLimit).
	RateBurst int
	// RateKey names the client a request counts against. It is the hook
	// for auth, which is to set it to the authenticated principal (the
	// key's name or the JWT subject); the IP key is binary, so a printable
	// name cannot collide with it. Nil, or an empty result, means the
	// remote IP address of the connection (no forwarding header is
	// trusted).
	RateKey func(c *fiber.Ctx) string
}

type handlers struct {
	eng *engine.Engine
	cfg Config
	log *slog.Logger
}

// New builds the Fiber app serving the API over eng.
func New(eng *engine.Engine, cfg Config, log *slog.Logger) *fiber.App {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	app := fiber.New(fiber.Config{
		BodyLimit:             cfg.MaxBody,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		DisableStartupMessage: true,
		UnescapePath:          true,
		ErrorHandler:          errorHandler(log, cfg.LimitHit),
		// The request line and headers must fit in this buffer: fasthttp's
		// 4 KiB default is too small for a search q of 2048 bytes of
		// non-ASCII text (6 KiB percent-encoded). A longer head is 431.
		ReadBufferSize: 16 << 10,
	})
	h := &handlers{eng: eng, cfg: cfg, log: log}
	app.Use(requestLog(log))
	app.Use(recoverer(log))
	if cfg.ConnClosing != nil {
		app.Use(func(c *fiber.Ctx) error {
			if cfg.ConnClosing(c.Context().Conn()) {
				return &apiError{fiber.StatusServiceUnavailable, "unavailable", "the server is shutting down"}
			}
			return c.Next()
		})
	}
	app.Use(httpMetrics(cfg.Registerer))
	if cfg.RateLimit > 0 {
		if cfg.RateBurst == 0 {
			cfg.RateBurst = defaultRateBurst(cfg.RateLimit)
		}
		app.Use(rateLimit(newRateLimiter(cfg.RateLimit, cfg.RateBurst, rateMaxKeys, nil), cfg.RateKey))
	}

	app.Get("/healthz", func(c *fiber.Ctx) error { return sendJSON(c, 200, []byte(`{"status":"ok"}`)) })
	app.Get("/readyz", h.readyz)
	app.Get("/metrics", h.metrics)
	app.Get("/v1/openapi.yaml", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "application/yaml")
		return c.Send(openapiYAML)
	})

	if cfg.Notifier != nil {
		app.Get("/v1/ws", cfg.Notifier.WebSocket())
		app.Get("/v1/events", cfg.Notifier.SSE)
		app.Get("/stream", cfg.Notifier.IIIStream())
		app.Get("/stream/:stream/:group", cfg.Notifier.IIIStream())
	}

	v1 := app.Group("/v1")
	v1.Post("/contexts", h.createContext)
	v1.Get("/contexts", h.listContexts)
	v1.Get("/contexts/:id", h.getContext)
	v1.Patch("/contexts/:id", h.patchContext)
	v1.Get("/contexts/:id/workunits", h.listUnits)
	v1.Post("/workunits", h.createUnit)
	v1.Post("/workunits/batch", h.createBatch)
	v1.Get("/workunits/:id", h.getUnit)
	v1.Get("/workunits/:id/related", h.related)
	v1.Get("/streams", h.listStreams)
	v1.Get("/streams/:stream", h.listGroups)
	v1.Get("/streams/:stream/:group", h.listItems)
	v1.Post("/streams/:stream/:group/events", h.sendEvent)
	v1.Put("/streams/:stream/:group/:item", h.putItem)
	v1.Get("/streams/:stream/:group/:item", h.getItem)
	v1.Patch("/streams/:stream/:group/:item", h.patchItem)
	v1.Delete("/streams/:stream/:group/:item", h.deleteItem)
	v1.Post("/functions/:function_id", h.callFunction)
	if cfg.Locks != nil {
		v1.Post("/locks", h.acquireLock)
		v1.Get("/locks", h.getLocks)
		v1.Post("/locks/:lock_id/renew", h.renewLock)
		v1.Delete("/locks/:lock_id", h.releaseLock)
	}
	if cfg.Cron != nil {
		v1.Get("/cron", h.listCron)
		v1.Put("/cron/:name", h.putCron)
		v1.Get("/cron/:name", h.getCron)
		v1.Delete("/cron/:name", h.deleteCron)
	}
	if cfg.Search != nil {
		v1.Get("/search", h.search)
		v1.Post("/admin/reindex", h.reindex)
		v1.Get("/admin/reindex", h.reindexStatus)
	}
	if cfg.Backup != nil {
		v1.Get("/admin/backup", h.backup)
	}
	v1.Get("/queues", h.listQueues)
	v1.Get("/queues/:topic", h.queueStats)
	v1.Post("/queues/:topic/messages", h.publish)
	v1.Post("/queues/:topic/lease", h.lease)
	v1.Post("/queues/:topic/ack", h.ack)
	v1.Post("/queues/:topic/nack", h.nack)
	v1.Get("/queues/:topic/dead", h.listDead)
	v1.Post("/queues/:topic/redrive", h.redrive)

	// Anything else, whatever the method: the JSON 404 of the contract.
	app.Use(func(c *fiber.Ctx) error {
		return &apiError{fiber.StatusNotFound, "not_found", "no route for " + c.Method() + " " + c.Path()}
	})
	return app
}

func sendJSON(c *fiber.Ctx, status int, body []byte) error {
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// decode decodes the request body into v, strictly.
func decode(c *fiber.Ctx, v any) error {
	if err := jsonx.Decode(c.Body(), v); err != nil {
		return engine.Invalid(err)
	}
	return nil
}

// queryLimit reads the limit parameter: absent is 0 (the default); present
// it must be 1..MaxListLimit.
func queryLimit(c *fiber.Ctx) (int, error) {
	return queryInt(c, "limit", 1, engine.MaxListLimit)
}

// queryInt reads the integer query parameter name: absent (or empty) is 0;
// present it must be a decimal integer in lo..hi (hi math.MaxInt: no upper
// bound).
func queryInt(c *fiber.Ctx, name string, lo, hi int) (int, error) {
	s := c.Query(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, badRequest("%s: %s is out of range", name, engine.Truncate(s))
	case err != nil:
		return 0, badRequest("%s: %q is not an integer", name, engine.Truncate(s))
	case n < lo && hi == math.MaxInt:
		return 0, badRequest("%s: %d is less than %d", name, n, lo)
	case n < lo || n > hi:
		return 0, badRequest("%s: %d out of range %d..%d", name, n, lo, hi)
	}
	return n, nil
}

// appendList appends {"<name>":[items...],"next_cursor":..} to dst.
func appendList(dst []byte, name string, items [][]byte, next string) []byte {
	size := len(name) + len(next) + 32
	for _, it := range items {
		size += len(it) + 1
	}
	dst = append(dst[:len(dst):len(dst)], make([]byte, 0, size)...)[:len(dst)]
	dst = append(dst, `{"`...)
	dst = append(dst, name...)
	dst = append(dst, `":[`...)
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, it...)
	}
	dst = append(dst, `],"next_cursor":`...)
	if next == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, next)
	}
	return append(dst, '}')
}
