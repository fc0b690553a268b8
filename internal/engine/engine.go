package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
	"engram/internal/wal"
)

// Store is what the engine reads: the committed state.
type Store interface {
	Get(key []byte) ([]byte, error)
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
	NewSnapshot() *pebble.Snapshot
}

// Sequencer is where the engine's commands go.
type Sequencer interface {
	Submit(ctx context.Context, cmd wal.Command) (any, error)
}

var (
	_ Store     = (*storage.DB)(nil)
	_ Sequencer = (*wal.Sequencer)(nil)
)

// Config holds the engine's limits. The zero value of each field means its
// default.
type Config struct {
	// MaxValueBytes bounds a stream item's value JSON, after an update too
	// (default 1 MiB: the default body limit).
	MaxValueBytes int
	// MaxGroupItems bounds the items of one stream group (default
	// 1,000,000).
	MaxGroupItems int
	// QueueMetricsTopics caps the topics engram_queue_depth reports by
	// name; the rest are summed under topic="other" (default 100).
	QueueMetricsTopics int
	// Registerer receives the engine's metrics. Nil means they are not
	// registered.
	Registerer prometheus.Registerer
}

// Defaults of Config.
const (
	DefaultMaxValueBytes      = 1 << 20
	DefaultMaxGroupItems      = 1_000_000
	DefaultQueueMetricsTopics = 100
)

// Engine runs the domain's commands and queries.
type Engine struct {
	store Store
	seq   Sequencer
	cfg   Config
	log   *slog.Logger
	known knownSet // owned by the writer: touched only inside commands

	readyLow  map[string][]byte     // owned by the writer: see qtx.readyLowOf
	timerLow  [16]storage.ScanFloor // by namespace's low nibble: see timerFloor
	qwait     qwaiters
	qm        queueMetrics
	qtimer    queueTimer
	qstop     chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	started   atomic.Bool
}

// New returns an engine reading from store and writing through seq.
func New(store Store, seq Sequencer, cfg Config, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxValueBytes == 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	if cfg.MaxGroupItems == 0 {
		cfg.MaxGroupItems = DefaultMaxGroupItems
	}
	if cfg.QueueMetricsTopics == 0 {
		cfg.QueueMetricsTopics = DefaultQueueMetricsTopics
	}
	if cfg.QueueMetricsTopics < 0 {
		return nil, fmt.Errorf("engine: QueueMetricsTopics: %d is negative", cfg.QueueMetricsTopics)
	}
	if cfg.MaxValueBytes < 0 {
		return nil, fmt.Errorf("engine: MaxValueBytes: %d is negative", cfg.MaxValueBytes)
	}
	if cfg.MaxGroupItems < 0 {
		return nil, fmt.Errorf("engine: MaxGroupItems: %d is negative", cfg.MaxGroupItems)
	}
	e := &Engine{
		store: store, seq: seq, cfg: cfg, log: log, known: knownSet{},
		readyLow: map[string][]byte{},
		qwait:    qwaiters{ch: map[string]chan struct{}{}},
		qm:       newQueueMetrics(),
		qtimer:   queueTimer{wake: make(chan struct{}, 1), done: make(chan struct{})},
		qstop:    make(chan struct{}),
	}
	if cfg.Registerer != nil {
		for _, c := range e.qm.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("engine: register metrics: %w", err)
			}
		}
		depth := &depthCollector{e: e, maxTopics: cfg.QueueMetricsTopics, desc: prometheus.NewDesc(
			"engram_queue_depth", "Queue messages by topic and state (topics past the cap are summed as \"other\").",
			[]string{"topic", "state"}, nil)}
		if err := cfg.Registerer.Register(depth); err != nil {
			return nil, fmt.Errorf("engine: register metrics: %w", err)
		}
	}
	return e, nil
}

// knownSet remembers context ids known to exist, so that a write to an
// existing context needs no lookup. Contexts are never deleted, so an entry
// never goes stale; it is derived state (rebuilt by lookups after a
// restart), and bounded: past maxKnown it starts over.
type knownSet map[string]struct{}

const maxKnown = 1 << 20

func (k knownSet) has(id string) bool { _, ok := k[id]; return ok }

func (k knownSet) add(id string) {
	if len(k) >= maxKnown {
		clear(k)
	}
	k[id] = struct{}{}
}

// get reads key from the committed store, mapping absence to ok=false.
func (e *Engine) get(key []byte) ([]byte, bool, error) {
	v, err := e.store.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// Cursors are opaque to clients: base64url of a short tagged string, so that
// a cursor from one listing is rejected by another.
func encodeCursor(tag, v string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tag + ":" + v))
}

// EncodeCursor makes the cursor of a listing (its tag) that resumes after v.
// The listings beside the engine (locks, cron) use it too.
func EncodeCursor(tag, v string) string { return encodeCursor(tag, v) }

// DecodeCursor reads a cursor made by EncodeCursor with the same tag; any
// other string is an invalid-argument error naming the cursor.
func DecodeCursor(tag, c string) (string, error) { return decodeCursor(tag, c) }

func decodeCursor(tag, c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < len(tag)+1 || string(b[:len(tag)+1]) != tag+":" {
		return "", invalidf("cursor: malformed or from another listing")
	}
	return string(b[len(tag)+1:]), nil
}

func decodeSeqCursor(tag, c string) (uint64, error) {
	s, err := decodeCursor(tag, c)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, invalidf("cursor: malformed")
	}
	return n, nil
}

// CheckLimit validates a list limit, applying the default for 0.
func CheckLimit(limit int) (int, error) {
	if limit == 0 {
		return DefaultListLimit, nil
	}
	if limit < 1 || limit > MaxListLimit {
		return 0, invalidf("limit: %d out of range 1..%d", limit, MaxListLimit)
	}
	return limit, nil
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
