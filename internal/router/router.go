package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
	"engram/internal/wal"
)

var (
	// ErrLagged ends a subscription whose consumer fell too far behind.
	ErrLagged = errors.New("router: subscriber lagged")
	// ErrClosed ends subscriptions when the router closes.
	ErrClosed = errors.New("router: closed")
)

// HistoryTruncatedError reports an after-seq older than retention keeps.
type HistoryTruncatedError struct{ OldestSeq uint64 }

func (e *HistoryTruncatedError) Error() string {
	return fmt.Sprintf("router: history truncated: the oldest event kept is %d", e.OldestSeq)
}

// AheadError reports an after-seq beyond the head of the log: the client
// has seen events this log does not have (a server restored from an older
// backup, or another server's seqs).
type AheadError struct{ AfterSeq, Head uint64 }

func (e *AheadError) Error() string {
	return fmt.Sprintf("after_seq: %d is ahead of the log, whose last seq is %d", e.AfterSeq, e.Head)
}

// Store is what the router reads and what retention writes.
type Store interface {
	NewSnapshot() *pebble.Snapshot
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
	NewBatch() *pebble.Batch
	Commit(b *pebble.Batch, sync bool) error
	OldestSeq() (uint64, error)
}

var _ Store = (*storage.DB)(nil)

// A Sink takes a subscription's events: the notifier's connection.
type Sink interface {
	// TrySend queues ev for s without blocking; false means the queue is
	// full, and the router then cuts s off as lagged.
	TrySend(s *Sub, ev *wal.Event) bool
	// SendWait queues ev for s, waiting for room until ctx ends (replay).
	SendWait(ctx context.Context, s *Sub, ev *wal.Event) error
	// Cut tells the sink that s ended for reason after lastSeq, the last
	// seq given to it. It must not block. It is not called for
	// Unsubscribe.
	Cut(s *Sub, reason error, lastSeq uint64)
}

// Config configures a Router.
type Config struct {
	// LiveBuffer bounds the live events held for a subscriber while it
	// replays history; past it the subscriber is cut off as lagged. Zero
	// means 8192.
	LiveBuffer int
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
	// Retention configures log compaction. The zero value keeps all.
	Retention Retention
}

// Router routes committed events to subscriptions.
type Router struct {
	store Store
	cfg   Config
	log   *slog.Logger

	mu         sync.RWMutex // guards exact, prefix; excludes dispatch while held for writing
	exact      map[string]map[*Sub]struct{}
	prefix     map[string]map[*Sub]struct{}
	dispatched atomic.Uint64 // last seq handed to subscribers
	oldest     atomic.Uint64 // oldest seq kept by retention

	qmu       sync.Mutex // guards queue and published; a leaf lock
	queue     [][]wal.Event
	published uint64 // last seq given to Publish: every acknowledged write is at or below it
	wake      chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // dispatch, retention and replay goroutines

	m routerMetrics
}

type routerMetrics struct {
	delivered prometheus.Counter
	lagged    prometheus.Counter
	replayed  prometheus.Counter
	subs      prometheus.Gauge
	pruned    prometheus.Counter
}

// New starts a router whose live delivery begins after head (the
// sequencer's last committed seq).
func New(store Store, head uint64, cfg Config, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LiveBuffer == 0 {
		cfg.LiveBuffer = 8192
	}
	if cfg.LiveBuffer < 0 {
		return nil, fmt.Errorf("router: Config.LiveBuffer %d < 0", cfg.LiveBuffer)
	}
	if err := cfg.Retention.validate(); err != nil {
		return nil, err
	}
	oldest, err := store.OldestSeq()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		store: store, cfg: cfg, log: log,
		exact:  map[string]map[*Sub]struct{}{},
		prefix: map[string]map[*Sub]struct{}{},
		wake:   make(chan struct{}, 1),
		ctx:    ctx, cancel: cancel,
	}
	r.dispatched.Store(head)
	r.published = head
	r.oldest.Store(oldest)
	r.m = routerMetrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_router_events_delivered_total", Help: "Events handed to subscribers, live and replayed."}),
		lagged:    prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_router_lagged_total", Help: "Subscriptions cut off because they fell behind."}),
		replayed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_router_replay_reads_total", Help: "Events read back from storage for resuming subscribers."}),
		subs:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "engram_router_subscriptions", Help: "Active subscriptions."}),
		pruned:    prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_retention_events_pruned_total", Help: "Log events removed by retention."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(r.m.delivered, r.m.lagged, r.m.replayed, r.m.subs, r.m.pruned,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "engram_router_dispatched_seq", Help: "The last seq handed to subscribers."},
				func() float64 { return float64(r.dispatched.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "engram_log_oldest_seq", Help: "The oldest seq retention keeps."},
				func() float64 { return float64(r.oldest.Load()) }))
	}
	r.wg.Add(1)
	go r.dispatchLoop()
	if cfg.Retention.enabled() {
		r.wg.Add(1)
		go r.retentionLoop()
	}
	return r, nil
}

// Publish is the sequencer's hook: it queues a committed batch's events and
// returns at once.
func (r *Router) Publish(events []wal.Event) {
	if len(events) == 0 {
		return
	}
	r.qmu.Lock()
	r.queue = append(r.queue, events)
	r.published = events[len(events)-1].Seq
	r.qmu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Head is the last seq handed to subscribers.
func (r *Router) Head() uint64 { return r.dispatched.Load() }

// Published is the last seq the sequencer published.
func (r *Router) Published() uint64 {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	return r.published
}

// OldestSeq is the oldest seq still in the log.
func (r *Router) OldestSeq() uint64 { return r.oldest.Load() }

func (r *Router) dispatchLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.wake:
		case <-r.ctx.Done():
			return
		}
		r.qmu.Lock()
		batches := r.queue
		r.queue = nil
		r.qmu.Unlock()
		for _, evs := range batches {
			r.dispatch(evs)
		}
	}
}

// dispatch hands one batch's events to their subscribers, in seq order.
func (r *Router) dispatch(evs []wal.Event) {
	var cut []*Sub
	r.mu.RLock()
	for i := range evs {
		ev := &evs[i]
		cut = r.offerTopic(r.exact[ev.Topic], ev, cut)
		for j := len(ev.Topic) - 1; j > 0; j-- {
			if ev.Topic[j] == '/' {
				cut = r.offerTopic(r.prefix[ev.Topic[:j+1]], ev, cut)
			}
		}
	}
	if n := len(evs); n > 0 {
		r.dispatched.Store(evs[n-1].Seq)
	}
	r.mu.RUnlock()
	for _, s := range cut {
		r.remove(s)
	}
}

func (r *Router) offerTopic(subs map[*Sub]struct{}, ev *wal.Event, cut []*Sub) []*Sub {
	for s := range subs {
		if s.offer(ev) {
			cut = append(cut, s)
		}
	}
	return cut
}

// Request describes a subscription.
type Request struct {
	// ID is the client's name for it (the notifier's), carried along.
	ID string
	// Topics are exact topics or "prefix/*"; at least one.
	Topics []string
	// AfterSeq resumes after that seq when set; nil means live only.
	AfterSeq *uint64
}

// Subscribe registers a subscription and returns it with the head seq: the
// last seq committed before it, after which it will receive every event of
// its topics. Nothing reaches the sink until Start, so the caller can first
// tell its client that the subscription exists.
func (r *Router) Subscribe(req Request, sink Sink) (*Sub, uint64, error) {
	if len(req.Topics) == 0 {
		return nil, 0, fmt.Errorf("topic: required")
	}
	for _, t := range req.Topics {
		if err := CheckTopic(t); err != nil {
			return nil, 0, err
		}
	}
	if r.ctx.Err() != nil {
		return nil, 0, ErrClosed
	}
	s := &Sub{ID: req.ID, Topics: req.Topics, r: r, sink: sink, buffering: true}
	s.ctx, s.cancel = context.WithCancel(r.ctx)
	// The head is the last seq published (the sequencer publishes before it
	// acknowledges, so every acknowledged write is at or below it), not the
	// last dispatched. Events up to it that dispatch has not handed out yet
	// arrive below liveFrom and are dropped; the replay reads them from
	// storage, where they are already synced. Holding mu keeps dispatch out
	// while the subscription is registered.
	r.mu.Lock()
	r.qmu.Lock()
	head := r.published
	r.qmu.Unlock()
	s.liveFrom = head + 1
	s.after = head
	if req.AfterSeq != nil {
		if *req.AfterSeq > head {
			r.mu.Unlock()
			s.cancel()
			return nil, 0, &AheadError{AfterSeq: *req.AfterSeq, Head: head}
		}
		s.after = *req.AfterSeq
		if oldest := r.oldest.Load(); s.after+1 < oldest {
			r.mu.Unlock()
			s.cancel()
			return nil, 0, &HistoryTruncatedError{OldestSeq: oldest}
		}
	}
	s.last = s.after
	for _, t := range req.Topics {
		m := r.exact
		key := t
		if p, ok := isPrefix(t); ok {
			m, key = r.prefix, p
		}
		if m[key] == nil {
			m[key] = map[*Sub]struct{}{}
		}
		m[key][s] = struct{}{}
	}
	r.mu.Unlock()
	r.m.subs.Inc()
	return s, head, nil
}

// Unsubscribe ends s; the sink's Cut is not called.
func (r *Router) Unsubscribe(s *Sub) {
	s.gone.Store(true)
	s.mu.Lock()
	s.done, s.unsubbed = true, true
	s.mu.Unlock()
	r.remove(s)
}

func (r *Router) remove(s *Sub) {
	s.cancel()
	r.mu.Lock()
	removed := false
	for _, t := range s.Topics {
		m := r.exact
		key := t
		if p, ok := isPrefix(t); ok {
			m, key = r.prefix, p
		}
		if set := m[key]; set != nil {
			if _, ok := set[s]; ok {
				removed = true
				delete(set, s)
			}
			if len(set) == 0 {
				delete(m, key)
			}
		}
	}
	r.mu.Unlock()
	if removed {
		r.m.subs.Dec()
	}
}

// Close ends every subscription (their sinks are told ErrClosed) and stops
// the router's goroutines.
func (r *Router) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	var all []*Sub
	for _, m := range []map[string]map[*Sub]struct{}{r.exact, r.prefix} {
		for _, set := range m {
			for s := range set {
				all = append(all, s)
			}
		}
	}
	r.mu.Unlock()
	for _, s := range all {
		if s.end() {
			s.sink.Cut(s, ErrClosed, s.lastSeq())
		}
		r.remove(s)
	}
	return nil
}
