package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
)

var (
	// ErrClosed reports a Submit after Close.
	ErrClosed = errors.New("wal: sequencer closed")
	// ErrUnavailable reports that the store can no longer commit (a failed
	// commit leaves the sequencer read-only until restart).
	ErrUnavailable = errors.New("wal: storage unavailable")
	// ErrCommandPanic reports a command that panicked; its writes were
	// discarded and the server goes on.
	ErrCommandPanic = errors.New("wal: command panicked")
)

// A Command runs on the writer goroutine, reads and stages writes through tx,
// and returns the result handed back to Submit's caller. A Command that
// returns an error leaves no trace.
type Command func(tx *Tx) (any, error)

// Config configures a Sequencer.
type Config struct {
	// NoSync commits batches without fsync (--sync=none). Zero: every batch
	// is fsynced before any of its commands is answered.
	NoSync bool
	// MaxBatch caps the commands in one batch. Zero means 1024.
	MaxBatch int
	// MaxBatchBytes caps a batch's size; the command that crosses it is the
	// batch's last. Zero means 32 MiB.
	MaxBatchBytes int
	// QueueSize bounds the commands waiting for the writer; Submit blocks
	// (or gives up with its context) when it is full. Zero means 4096.
	QueueSize int
	// Publish receives each committed batch's events in seq order, on the
	// writer goroutine, after the fsync. It must not block. Nil: events are
	// not handed on.
	Publish func([]Event)
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
}

type request struct {
	cmd  Command
	res  any
	err  error
	done chan struct{}
}

// Sequencer is the single writer.
type Sequencer struct {
	db   *storage.DB
	cfg  Config
	log  *slog.Logger
	reqs chan *request

	mu     sync.RWMutex // guards closed against sends on reqs
	closed bool
	donec  chan struct{}

	next   uint64        // writer-owned: seq of the next event
	head   atomic.Uint64 // last committed seq
	failed atomic.Bool

	m metrics
}

type metrics struct {
	batchCommands prometheus.Histogram
	batchBytes    prometheus.Histogram
	fsync         prometheus.Histogram
	commands      *prometheus.CounterVec
	commitErrors  prometheus.Counter
	head          prometheus.GaugeFunc
}

// New starts a sequencer over db, continuing after db's head seq.
func New(db *storage.DB, cfg Config, log *slog.Logger) (*Sequencer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 1024
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 32 << 20
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.MaxBatch < 0:
		return nil, fmt.Errorf("wal: Config.MaxBatch %d < 0", cfg.MaxBatch)
	case cfg.MaxBatchBytes < 0:
		return nil, fmt.Errorf("wal: Config.MaxBatchBytes %d < 0", cfg.MaxBatchBytes)
	case cfg.QueueSize < 0:
		return nil, fmt.Errorf("wal: Config.QueueSize %d < 0", cfg.QueueSize)
	}
	s := &Sequencer{
		db:    db,
		cfg:   cfg,
		log:   log,
		reqs:  make(chan *request, cfg.QueueSize),
		donec: make(chan struct{}),
		next:  db.HeadSeq() + 1,
	}
	s.head.Store(db.HeadSeq())
	s.initMetrics()
	go s.run()
	return s, nil
}

func (s *Sequencer) initMetrics() {
	s.m = metrics{
		batchCommands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "engram_wal_batch_commands",
			Help:    "Commands per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "engram_wal_batch_bytes",
			Help:    "Bytes per committed batch.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "engram_wal_commit_seconds",
			Help:    "Time to commit one batch, fsync included (with --sync=always).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "engram_wal_commands_total",
			Help: "Commands applied, by result (ok, error).",
		}, []string{"result"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "engram_wal_commit_errors_total",
			Help: "Batches whose commit failed.",
		}),
		head: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "engram_wal_head_seq",
			Help: "The last committed seq.",
		}, func() float64 { return float64(s.head.Load()) }),
	}
	if r := s.cfg.Registerer; r != nil {
		r.MustRegister(s.m.batchCommands, s.m.batchBytes, s.m.fsync, s.m.commands, s.m.commitErrors, s.m.head)
	}
}

// Head is the last committed seq.
func (s *Sequencer) Head() uint64 { return s.head.Load() }

// Healthy reports whether the sequencer accepts writes.
func (s *Sequencer) Healthy() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.closed && !s.failed.Load()
}

// Submit queues cmd and waits for its answer, which comes only after the
// batch holding it is committed (and fsynced unless NoSync). ctx bounds the
// wait for a place in the queue; once queued, the command is applied and
// answered whatever ctx does, so a result is never lost half-way.
func (s *Sequencer) Submit(ctx context.Context, cmd Command) (any, error) {
	if s.failed.Load() {
		return nil, ErrUnavailable
	}
	r := &request{cmd: cmd, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return nil, ctx.Err()
	}
	<-r.done
	return r.res, r.err
}

// Close stops taking commands, applies and answers the ones already queued,
// and waits for the writer to stop. It does not close the store.
func (s *Sequencer) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.donec
	return nil
}

func (s *Sequencer) run() {
	defer close(s.donec)
	batch := make([]*request, 0, s.cfg.MaxBatch)
	var events []Event
	for {
		first, ok := <-s.reqs
		if !ok {
			return
		}
		b := s.db.NewIndexedBatch()
		batch, events = batch[:0], events[:0]
		batch = append(batch, first)
		events = s.apply(b, first, events)
	fill:
		for len(batch) < s.cfg.MaxBatch && b.Len() < s.cfg.MaxBatchBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				events = s.apply(b, r, events)
			default:
				break fill
			}
		}
		s.commit(b, batch, events)
	}
}

// apply runs one command and moves its staged writes into b when it
// succeeds.
func (s *Sequencer) apply(b *pebble.Batch, r *request, events []Event) []Event {
	if s.failed.Load() {
		r.err = ErrUnavailable
		return events
	}
	tx := &Tx{batch: b, now: s.cfg.Now(), first: s.next}
	r.res, r.err = s.call(r.cmd, tx)
	if r.err != nil {
		r.res = nil
		s.m.commands.WithLabelValues("error").Inc()
		return events
	}
	for _, o := range tx.ops {
		var err error
		if o.del {
			err = b.Delete(o.key, nil)
		} else {
			err = b.Set(o.key, o.value, nil)
		}
		if err != nil {
			// A batch write fails only on a closed or oversized batch: the
			// batch can no longer be trusted.
			s.log.Error("wal: staging into batch failed", "err", err)
			s.failed.Store(true)
			r.res, r.err = nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
			return events
		}
	}
	s.next += uint64(len(tx.events))
	s.m.commands.WithLabelValues("ok").Inc()
	return append(events, tx.events...)
}

func (s *Sequencer) call(cmd Command, tx *Tx) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("wal: command panicked", "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("%w: %v", ErrCommandPanic, p)
		}
	}()
	return cmd(tx)
}

// commit makes the batch durable, then publishes its events and answers its
// commands. On failure every command of the batch fails and the seqs it
// reserved are given back.
func (s *Sequencer) commit(b *pebble.Batch, batch []*request, events []Event) {
	defer b.Close()
	if len(events) > 0 || !b.Empty() {
		if len(events) > 0 {
			if err := storage.SetHeadSeq(b, events[len(events)-1].Seq); err != nil {
				s.fail(batch, events, err)
				return
			}
		}
		size := b.Len()
		start := time.Now()
		if err := s.db.Commit(b, !s.cfg.NoSync); err != nil {
			s.fail(batch, events, err)
			return
		}
		s.m.fsync.Observe(time.Since(start).Seconds())
		s.m.batchBytes.Observe(float64(size))
		s.m.batchCommands.Observe(float64(len(batch)))
		if len(events) > 0 {
			s.head.Store(events[len(events)-1].Seq)
			if s.cfg.Publish != nil {
				s.cfg.Publish(events)
			}
		}
	}
	for _, r := range batch {
		close(r.done)
	}
}

func (s *Sequencer) fail(batch []*request, events []Event, err error) {
	s.log.Error("wal: commit failed; refusing writes until restart", "err", err, "commands", len(batch))
	s.m.commitErrors.Inc()
	s.failed.Store(true)
	if len(events) > 0 {
		s.next = events[0].Seq
	}
	for _, r := range batch {
		if r.err == nil {
			r.res, r.err = nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		close(r.done)
	}
}
