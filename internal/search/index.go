package search

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
)

// Store is what the index reads: the committed log and the state records.
type Store interface {
	Get(key []byte) ([]byte, error)
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
	NewSnapshot() *pebble.Snapshot
	OldestSeq() (uint64, error)
}

var _ Store = (*storage.DB)(nil)

// Config configures an Index.
type Config struct {
	// Dir holds the index files (index.db and SQLite's -wal and -shm).
	// Required.
	Dir string
	// Store is the storage the index follows. Required.
	Store Store
	// Head reports the last durable seq: the indexer never reads past it,
	// so the index never holds an event a crash could take back. Required.
	Head func() uint64
	// BatchEvents is the most log events one index transaction covers.
	// Zero means 10,000.
	BatchEvents int
	// MaxTextBytes caps the text indexed per document; the rest of a longer
	// document is not searchable. Zero means 256 KiB.
	MaxTextBytes int
	// Readers is the size of the query connection pool. Zero means 4.
	Readers int
	// QueryTimeout bounds one query; a longer one is interrupted. Zero
	// means 10 s.
	QueryTimeout time.Duration
	// Settle is how long the indexer lets commits gather before it indexes
	// them, unless a query waits on min_seq (then it indexes at once) or a
	// full batch is waiting. Each FTS5 transaction writes a new segment
	// that later merges cost CPU, so under a stream of small commits a few
	// large transactions are much cheaper than many small ones. Zero means
	// 50 ms; negative means no settling.
	Settle time.Duration
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
}

// indexFile is the index's file name inside Config.Dir.
const indexFile = "index.db"

// reasonNoFile is the rebuild reason of a new index file (a first start, or
// a deleted index).
const reasonNoFile = "no index file yet"

// Index is the search index: it follows the log in the background and
// answers queries.
type Index struct {
	cfg  Config
	log  *slog.Logger
	path string

	// mu guards f: queries hold it shared; replacing the file (a rebuild)
	// holds it exclusively. The indexer goroutine is the only writer.
	mu sync.RWMutex
	f  *files

	indexed atomic.Uint64 // the checkpoint: every event up to it is indexed
	nextNeg int64         // owned by the indexer goroutine

	progressAt time.Time // the indexer's last progress log of a rebuild

	advMu sync.Mutex
	adv   chan struct{} // closed when indexed advances, then replaced

	wake    chan struct{} // Notify
	waiters atomic.Int32  // WaitFor calls waiting for the indexer
	hurry   chan struct{} // a WaitFor began waiting: stop settling
	rebuild chan string   // requested rebuilds, with their reason
	status  atomic.Pointer[Status]

	fresh    bool // the file was created by Open: run reports filling it as a rebuild
	started  atomic.Bool
	stopOnce sync.Once
	stopc    chan struct{}
	donec    chan struct{}
	m        *metrics
}

// Status is what the index is doing.
type Status struct {
	// IndexedSeq is the checkpoint: every event up to it is searchable.
	IndexedSeq uint64 `json:"indexed_seq"`
	// HeadSeq is the last durable seq of the log.
	HeadSeq uint64 `json:"head_seq"`
	// Rebuilding is true from the start of a rebuild until the index has
	// caught up with the log again.
	Rebuilding bool `json:"rebuilding"`
	// Reason says why the last rebuild started (empty if none ran).
	Reason string `json:"reason,omitempty"`
	// Phase is "scan" while a rebuild reads state records (the part of the
	// log retention removed), "log" while it replays the log, and "" once
	// caught up.
	Phase string `json:"phase,omitempty"`
	// Scanned counts the state records a rebuild's scan has read.
	Scanned int64 `json:"scanned,omitempty"`
	// StartedAt is when the last rebuild began.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// Open opens the index in cfg.Dir, creating it when absent. An index that
// cannot be used (corrupt, another schema, ahead of the log, an unfinished
// rebuild) is set aside and rebuilt once Start runs.
func Open(cfg Config, log *slog.Logger) (*Index, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Dir == "":
		return nil, errors.New("search: Config.Dir is required")
	case cfg.Store == nil:
		return nil, errors.New("search: Config.Store is required")
	case cfg.Head == nil:
		return nil, errors.New("search: Config.Head is required")
	case cfg.BatchEvents < 0:
		return nil, fmt.Errorf("search: Config.BatchEvents %d < 0", cfg.BatchEvents)
	case cfg.MaxTextBytes < 0:
		return nil, fmt.Errorf("search: Config.MaxTextBytes %d < 0", cfg.MaxTextBytes)
	case cfg.Readers < 0:
		return nil, fmt.Errorf("search: Config.Readers %d < 0", cfg.Readers)
	case cfg.QueryTimeout < 0:
		return nil, fmt.Errorf("search: Config.QueryTimeout %v < 0", cfg.QueryTimeout)
	}
	if cfg.BatchEvents == 0 {
		cfg.BatchEvents = 10000
	}
	if cfg.MaxTextBytes == 0 {
		cfg.MaxTextBytes = 256 << 10
	}
	if cfg.Readers == 0 {
		cfg.Readers = 4
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = 50 * time.Millisecond
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	x := &Index{
		cfg: cfg, log: log, path: filepath.Join(cfg.Dir, indexFile),
		adv: make(chan struct{}), wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), rebuild: make(chan string, 1),
		stopc: make(chan struct{}), donec: make(chan struct{}),
	}
	x.status.Store(&Status{})
	x.m = newMetrics(x, cfg.Registerer)

	reason := ""
	if _, err := os.Stat(x.path); errors.Is(err, os.ErrNotExist) {
		// A new file is an empty index at checkpoint 0: the indexer fills
		// it from the log like any rebuild (run reports it as one).
		x.fresh = true
	}
	f, st, err := openFiles(x.path, cfg.Readers)
	switch {
	case err != nil:
		reason = fmt.Sprintf("the index could not be opened (%v)", err)
		if err := x.setAside(); err != nil {
			return nil, err
		}
		if f, st, err = openFiles(x.path, cfg.Readers); err != nil {
			return nil, fmt.Errorf("search: create %s: %w", x.path, err)
		}
	case st.building:
		reason = "an earlier rebuild did not finish"
	}
	x.f = f
	x.nextNeg = st.nextNeg
	if reason == "" {
		x.indexed.Store(st.checkpoint)
	} else {
		x.rebuild <- reason
	}
	return x, nil
}

// setAside moves an unusable index file to index.db.bad (replacing an older
// one, so that bad copies never pile up) for a post-mortem, and removes its
// WAL and shared-memory files.
func (x *Index) setAside() error {
	if err := os.Rename(x.path, x.path+".bad"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("search: set aside %s: %w", x.path, err)
	}
	if err := removeFiles(x.path); err != nil {
		return fmt.Errorf("search: %w", err)
	}
	return nil
}

// Start starts the indexer.
func (x *Index) Start() {
	if x.started.Swap(true) {
		return
	}
	go x.run()
}

// Stop stops the indexer and ends every min_seq wait (they answer
// LagError); queries without one still run until Close. A server stops the
// index first, so that its HTTP shutdown need not wait out parked queries.
func (x *Index) Stop() {
	x.stopOnce.Do(func() { close(x.stopc) })
	if x.started.Load() {
		<-x.donec
	}
}

// Close stops the index (see Stop) and closes its files.
func (x *Index) Close() error {
	x.Stop()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.f == nil {
		return nil
	}
	err := x.f.close()
	x.f = nil
	return err
}

// Notify tells the indexer that the log has grown. It never blocks.
func (x *Index) Notify() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// IndexedSeq is the checkpoint: every event up to it is searchable.
func (x *Index) IndexedSeq() uint64 { return x.indexed.Load() }

// Reindex asks for a rebuild from storage. The index answers queries from
// what it has rebuilt so far meanwhile (IndexedSeq says how far).
//
// A request while a rebuild is under way joins it: the rebuild in progress
// already reads everything committed before it ends.
func (x *Index) Reindex(reason string) Status {
	if !x.status.Load().Rebuilding {
		x.retryRebuild(reason)
	}
	return x.Status()
}

// Status reports what the index is doing.
func (x *Index) Status() Status {
	st := *x.status.Load()
	st.IndexedSeq = x.indexed.Load()
	st.HeadSeq = x.cfg.Head()
	if len(x.rebuild) > 0 {
		st.Rebuilding = true
	}
	return st
}

// WaitFor waits until the index holds seq, ctx ends or timeout passes, and
// reports whether it holds seq.
func (x *Index) WaitFor(ctx context.Context, seq uint64, timeout time.Duration) bool {
	if x.indexed.Load() >= seq {
		return true
	}
	x.waiters.Add(1)
	defer x.waiters.Add(-1)
	select {
	case x.hurry <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		x.advMu.Lock()
		ch := x.adv
		x.advMu.Unlock()
		if x.indexed.Load() >= seq {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return x.indexed.Load() >= seq
		case <-ctx.Done():
			return x.indexed.Load() >= seq
		case <-x.stopc:
			return x.indexed.Load() >= seq
		}
	}
}

// advance publishes a new checkpoint to waiters.
func (x *Index) advance(seq uint64) {
	x.indexed.Store(seq)
	x.advMu.Lock()
	close(x.adv)
	x.adv = make(chan struct{})
	x.advMu.Unlock()
}
