// Package server wires Engram together: storage, the sequencer, the engine
// and the HTTP app, in the order they must open and close. cmd/server adds
// configuration and signals; the bench and tests start a Server in-process.
//
// It owns no logic of its own beyond lifecycle.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"engram/api"
	"engram/internal/backup"
	"engram/internal/cron"
	"engram/internal/engine"
	"engram/internal/lockmgr"
	"engram/internal/notifier"
	"engram/internal/router"
	"engram/internal/search"
	"engram/internal/storage"
	"engram/internal/wal"
)

// Version is the server's version, set at build time with
// -ldflags "-X engram/internal/server.Version=…".
var Version = "dev"

// Config configures a Server.
type Config struct {
	// Addr is the listen address. Empty means 127.0.0.1:8080; port 0 picks a
	// free port (see Addr after Start).
	Addr string
	// DataDir holds the store. Empty means ./data.
	DataDir string
	// Sync is "always" (empty means this: every acknowledged write is
	// fsynced) or "none" (commits are not fsynced: faster, and a crash of
	// the machine may lose recent acknowledged writes).
	Sync string
	// MaxBody is the largest request body in bytes. Zero means 1 MiB.
	MaxBody int64
	// RetentionAge drops log events older than this (state is kept). Zero
	// keeps them.
	RetentionAge time.Duration
	// RetentionEvents keeps at most this many of the newest log events.
	// Zero keeps all.
	RetentionEvents uint64
	// MaxConnections caps WebSocket and SSE connections. Zero means 10,000.
	MaxConnections int
	// MaxSubscriptions caps subscriptions per WebSocket connection and
	// topics per SSE stream. Zero means 256.
	MaxSubscriptions int
	// StreamMaxItems caps the items of one stream group. Zero means
	// 1,000,000.
	StreamMaxItems int
	// StreamSyncMax caps the items a /stream join's sync frame holds; a
	// larger group answers the join with sync_too_large. Zero means 10,000.
	StreamSyncMax int
	// QueueMetricsTopics caps the topics engram_queue_depth names; the rest
	// are summed as "other". Zero means 100.
	QueueMetricsTopics int
	// ReadTimeout bounds the reading of a request (and a new connection's
	// wait for its first); WriteTimeout the writing of a response;
	// IdleTimeout a keep-alive connection's wait for its next request.
	// Zero means 30 s, 30 s and 120 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// RateLimit is the requests a second each client (today: each remote
	// IP address) may make; RateBurst the requests it may make at once.
	// RateLimit zero means no rate limit; RateBurst zero means
	// max(1, 2 × RateLimit).
	RateLimit float64
	RateBurst int
	// TLS, when not nil, makes the server speak HTTPS only (its
	// GetCertificate may change the certificate while it runs). Nil means
	// plain HTTP.
	TLS *tls.Config
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
}

// Server is a running Engram.
type Server struct {
	cfg  Config
	log  *slog.Logger
	db   *storage.DB
	seq  *wal.Sequencer
	rt   *router.Router
	ntf  *notifier.Notifier
	eng  *engine.Engine
	lck  *lockmgr.Manager
	crn  *cron.Scheduler
	idx  *search.Index
	app  *fiber.App
	reg  *prometheus.Registry
	ln   net.Listener
	serr chan error
	hits *limitHits

	closeOnce sync.Once
	closeErr  error
}

// New opens the store and builds the server; Start makes it listen.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.Sync == "" {
		cfg.Sync = "always"
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Sync != "always" && cfg.Sync != "none":
		return nil, fmt.Errorf("server: sync: %q is not always or none", cfg.Sync)
	case cfg.MaxBody < 1 || cfg.MaxBody > 1<<30:
		return nil, fmt.Errorf("server: max body: %d bytes is outside 1 B..1 GiB", cfg.MaxBody)
	case cfg.RetentionAge < 0:
		return nil, fmt.Errorf("server: retention age: %v < 0", cfg.RetentionAge)
	case cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("server: negative timeout: read %v, write %v, idle %v", cfg.ReadTimeout, cfg.WriteTimeout, cfg.IdleTimeout)
	case !(cfg.RateLimit >= 0 && cfg.RateLimit <= 1e9): // NaN fails both
		return nil, fmt.Errorf("server: rate limit: %v requests/s is outside 0..1e9", cfg.RateLimit)
	case cfg.RateBurst < 0 || cfg.RateBurst > 1e9:
		return nil, fmt.Errorf("server: rate burst: %d is outside 0..1e9", cfg.RateBurst)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), serr: make(chan error, 1)}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.hits = newLimitHits(s.reg)

	db, err := storage.Open(storage.Config{Dir: cfg.DataDir}, s.log)
	if err != nil {
		return nil, err
	}
	s.db = db
	s.rt, err = router.New(db, db.HeadSeq(), router.Config{
		Registerer: s.reg,
		Retention: router.Retention{
			MaxAge: cfg.RetentionAge, MaxEvents: cfg.RetentionEvents,
			Head: func() uint64 { return s.seq.Head() },
			// The log is kept until the search index holds it.
			Floor: func() uint64 { return s.idx.IndexedSeq() },
		},
	}, s.log)
	if err != nil {
		db.Close()
		return nil, err
	}
	// The search index follows the log from its checkpoint; the sequencer
	// tells it of each durable batch. It is opened before the sequencer so
	// that the first commit's Notify finds it.
	s.idx, err = search.Open(search.Config{
		Dir: filepath.Join(cfg.DataDir, "search"), Store: db, Registerer: s.reg,
		Head: func() uint64 { return s.seq.Head() },
	}, s.log)
	if err != nil {
		s.rt.Close()
		db.Close()
		return nil, err
	}
	s.seq, err = wal.New(db, wal.Config{NoSync: cfg.Sync == "none", Registerer: s.reg, Publish: func(evs []wal.Event) {
		s.rt.Publish(evs)
		s.idx.Notify()
	}}, s.log)
	if err != nil {
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, err
	}
	s.eng, err = engine.New(db, s.seq, engine.Config{
		MaxValueBytes: int(cfg.MaxBody), MaxGroupItems: cfg.StreamMaxItems,
		QueueMetricsTopics: cfg.QueueMetricsTopics, Registerer: s.reg,
	}, s.log)
	if err != nil {
		s.seq.Close()
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, err
	}
	// Presence: joins of a process that ended without their leaves (a
	// crash) are left now, before any client can join.
	if n, err := s.eng.RecoverJoins(context.Background()); err != nil {
		s.seq.Close()
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, fmt.Errorf("server: recover stream joins: %w", err)
	} else if n > 0 {
		s.log.Info("emitted stream.leave for joins left open by the last run", "joins", n)
	}
	s.lck, err = lockmgr.New(db, s.seq, lockmgr.Config{Registerer: s.reg}, s.log)
	if err != nil {
		s.seq.Close()
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, err
	}
	s.crn, err = cron.New(db, s.seq, s.eng, cron.Config{Registerer: s.reg, Locks: s.lck}, s.log)
	if err != nil {
		s.seq.Close()
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, err
	}
	// The queue timer, the lock expiry loop and the cron loop: leases and
	// locks that expired while the server was down are handled at their
	// first look, and cron times missed meanwhile per their catch_up.
	s.eng.Start()
	s.lck.Start()
	s.crn.Start()
	s.idx.Start()
	s.ntf, err = notifier.New(s.rt, notifier.Config{
		MaxConnections: cfg.MaxConnections, MaxSubscriptions: cfg.MaxSubscriptions, Registerer: s.reg,
		Streams: s.eng, StreamSyncMax: cfg.StreamSyncMax,
	}, s.log)
	if err != nil {
		s.crn.Close()
		s.lck.Close()
		s.eng.Close()
		s.seq.Close()
		s.idx.Close()
		s.rt.Close()
		db.Close()
		return nil, err
	}
	s.app = api.New(s.eng, api.Config{
		MaxBody:    int(cfg.MaxBody),
		Ready:      s.seq.Healthy,
		Gatherer:   s.reg,
		Registerer: s.reg,
		Notifier:   s.ntf,
		Locks:      s.lck,
		Cron:       s.crn,
		Search:     s.idx,
		Backup:     backup.New(db, backup.Config{Version: Version}, s.log),
		ConnClosing: func(c net.Conn) bool {
			lc, ok := asLingerConn(c)
			return ok && lc.closed.Load()
		},
		ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		LimitHit: s.hits.hit,
	}, s.log)
	s.app.Server().ConnState = connState // the timeouts' counts (limits.go)
	return s, nil
}

// Router is the server's router.
func (s *Server) Router() *router.Router { return s.rt }

// Engine is the server's engine (for in-process tools).
func (s *Server) Engine() *engine.Engine { return s.eng }

// Store is the server's store.
func (s *Server) Store() *storage.DB { return s.db }

// HeadSeq is the last committed seq.
func (s *Server) HeadSeq() uint64 { return s.seq.Head() }

// App is the HTTP app (for in-process tests with app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = lingerListener{Listener: ln, hits: s.hits}
	if s.cfg.TLS != nil {
		// TLS above the lingering close: close_notify goes out before the
		// FIN, and the connection's counts see through *tls.Conn.
		s.ln = tls.NewListener(s.ln, s.cfg.TLS)
	}
	go func() { s.serr <- s.app.Listener(s.ln) }()
	s.log.Info("engram listening",
		"version", Version, "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil, "data", s.db.Dir(),
		"layout", storage.LayoutVersion, "new_store", s.db.Created(),
		"head_seq", s.seq.Head(), "sync", s.cfg.Sync, "max_body", s.cfg.MaxBody)
	return nil
}

// Addr is the address the server listens on, after Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Done delivers the serve loop's error if it stops on its own.
func (s *Server) Done() <-chan error { return s.serr }

// Shutdown stops accepting connections, lets in-flight requests finish (until
// ctx ends), then drains the sequencer and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var errs []error
		// Streams and long-polling leases first: they would hold the HTTP
		// shutdown open. The queue timer stops with them.
		s.ntf.Close()
		s.crn.Close() // before the engine and the locks it fires with
		s.eng.Close()
		s.lck.Close()
		s.idx.Stop() // searches parked on min_seq answer now
		if s.ln != nil {
			if err := s.app.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, fmt.Errorf("server: http shutdown: %w", err))
			}
			// Fiber closes only a listener its serve loop has registered:
			// a Shutdown right after Start would leave it open.
			s.ln.Close()
		}
		// After the HTTP shutdown (no query is running) and before the
		// store closes under the indexer.
		if err := s.idx.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := s.seq.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := s.rt.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, err)
		}
		s.closeErr = errors.Join(errs...)
		s.log.Info("engram stopped", "head_seq", s.seq.Head(), "err", s.closeErr)
	})
	return s.closeErr
}

// Search is the server's search index.
func (s *Server) Search() *search.Index { return s.idx }
