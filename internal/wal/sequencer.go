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
	// MaxInflight caps the committed batches waiting for their fsync. While
	// that many are syncing, the writer keeps applying new commands into the
	// next batch and commits it when a sync completes (or it is full): so a
	// batch holds every command that arrived during one fsync. Zero means 1.
	MaxInflight int
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
	// lastNow is the last command's time (the writer's: see apply).
	lastNow time.Time

	// syncq carries committed-but-not-yet-synced batches from the writer
	// to the syncer, in commit order.
	syncq chan *pending
	// synced tells the writer that the syncer finished a batch.
	synced chan struct{}

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
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 1
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
	case cfg.MaxInflight < 0:
		return nil, fmt.Errorf("wal: Config.MaxInflight %d < 0", cfg.MaxInflight)
	}
	s := &Sequencer{
		db:     db,
		cfg:    cfg,
		log:    log,
		reqs:   make(chan *request, cfg.QueueSize),
		syncq:  make(chan *pending, cfg.MaxInflight+1),
		synced: make(chan struct{}, cfg.MaxInflight+1),
		donec:  make(chan struct{}),
		next:   db.HeadSeq() + 1,
	}
	s.head.Store(db.HeadSeq())
	s.initMetrics()
	go s.run()
	go s.syncLoop()
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

// pending is a batch between commit and fsync.
type pending struct {
	b      *pebble.Batch
	reqs   []*request
	events []Event
	start  time.Time
	err    error // the commit failed: answer every command with it
}

// run is the writer. It applies queued commands into the open batch and
// commits that batch (without waiting for its fsync) as soon as fewer than
// MaxInflight batches are syncing, or when it is full; then the syncer waits
// for the fsync, publishes and answers. While a batch syncs, the next one
// fills and is applied, and its commands read the syncing batch's writes (a
// committed batch is visible before its fsync). Nothing is answered here.
func (s *Sequencer) run() {
	defer close(s.syncq)
	var open *pending
	inflight := 0
	reqs := s.reqs
	for {
		if open != nil && (inflight < s.cfg.MaxInflight || s.full(open) || reqs == nil) {
			for inflight >= s.cfg.MaxInflight {
				<-s.synced
				inflight--
			}
			s.commit(open)
			s.syncq <- open
			open = nil
			inflight++
			continue
		}
		if reqs == nil {
			return // closed, and the last batch is handed to the syncer
		}
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if open == nil {
				open = &pending{b: s.db.NewIndexedBatch(), reqs: make([]*request, 0, 16)}
			}
			s.add(open, r)
			// Take whatever else is queued already.
		fill:
			for !s.full(open) {
				select {
				case r, ok := <-reqs:
					if !ok {
						reqs = nil
						break fill
					}
					s.add(open, r)
				default:
					break fill
				}
			}
		case <-s.synced:
			inflight--
		}
	}
}

func (s *Sequencer) add(p *pending, r *request) {
	p.reqs = append(p.reqs, r)
	p.events = s.apply(p.b, r, p.events)
}

func (s *Sequencer) full(p *pending) bool {
	return len(p.reqs) >= s.cfg.MaxBatch || p.b.Len() >= s.cfg.MaxBatchBytes
}

// apply runs one command and moves its staged writes into b when it
// succeeds.
func (s *Sequencer) apply(b *pebble.Batch, r *request, events []Event) []Event {
	if s.failed.Load() {
		r.err = ErrUnavailable
		return events
	}
	// A command's time never goes back, even when the wall clock does: event
	// times follow seqs, and the timer loops may rely on "nothing is
	// scheduled at or before the last time handled".
	now := s.cfg.Now()
	if now.Before(s.lastNow) {
		now = s.lastNow
	}
	s.lastNow = now
	tx := &Tx{batch: b, now: now, first: s.next}
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

// commit applies the batch to the store (fsync still pending). On failure
// the batch's seqs are given back and the sequencer turns read-only.
func (s *Sequencer) commit(p *pending) {
	if len(p.events) == 0 && p.b.Empty() {
		return
	}
	if len(p.events) > 0 {
		if err := storage.SetHeadSeq(p.b, p.events[len(p.events)-1].Seq); err != nil {
			p.err = err
		}
	}
	p.start = time.Now()
	if p.err == nil {
		if s.cfg.NoSync {
			p.err = s.db.Commit(p.b, false)
		} else {
			p.err = s.db.CommitNoSyncWait(p.b)
		}
	}
	if p.err != nil {
		s.failed.Store(true)
		if len(p.events) > 0 {
			s.next = p.events[0].Seq
		}
	}
}

// syncLoop is the syncer: in commit order, it waits for each batch's fsync,
// then publishes the batch's events and answers its commands. A batch is
// answered only after its own fsync; the WAL is sequential, so that covers
// every batch before it too.
func (s *Sequencer) syncLoop() {
	defer close(s.donec)
	for p := range s.syncq {
		s.finish(p)
		s.synced <- struct{}{} // never blocks: at most MaxInflight+1 are out
	}
}

func (s *Sequencer) finish(p *pending) {
	committed := !(len(p.events) == 0 && p.b.Empty()) && p.err == nil
	if committed && !s.cfg.NoSync {
		p.err = p.b.SyncWait()
	}
	defer p.b.Close()
	switch {
	case p.err != nil:
		s.fail(p.reqs, p.err)
		return
	case s.failed.Load() && committed:
		// An earlier batch failed; this one may rest on its writes.
		s.fail(p.reqs, ErrUnavailable)
		return
	}
	if committed {
		s.m.fsync.Observe(time.Since(p.start).Seconds())
		s.m.batchBytes.Observe(float64(p.b.Len()))
		s.m.batchCommands.Observe(float64(len(p.reqs)))
	}
	if len(p.events) > 0 {
		s.head.Store(p.events[len(p.events)-1].Seq)
		if s.cfg.Publish != nil {
			// Encoded here, off the writer, once for every subscriber.
			for i := range p.events {
				e := &p.events[i]
				e.JSON = AppendEventJSON(make([]byte, 0, len(e.data)+96+len(e.Topic)), e.Seq, e.Time, e.Type, e.Topic, e.data)
				e.data = nil
				e.Frames = &FrameCache{}
			}
			s.cfg.Publish(p.events)
		}
	}
	for _, r := range p.reqs {
		close(r.done)
	}
}

func (s *Sequencer) fail(reqs []*request, err error) {
	s.log.Error("wal: commit failed; refusing writes until restart", "err", err, "commands", len(reqs))
	s.m.commitErrors.Inc()
	s.failed.Store(true)
	for _, r := range reqs {
		if r.err == nil {
			r.res, r.err = nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		close(r.done)
	}
}
