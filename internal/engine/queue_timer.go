package engine

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
	"engram/internal/wal"
)

// The queue timer: one goroutine and one timer for every delay, lease and
// dedupe window. Its schedule is the storage indexes themselves (delayed
// and leased messages, dedupe expiries, each in time order), so it needs no
// memory per message and restarts from storage: after a restart it finds
// the leases that expired while the server was down at its first look.

// qwaiters wakes long-polling leases of a topic.
type qwaiters struct {
	mu sync.Mutex
	ch map[string]chan struct{}
	n  map[string]int // waiters holding ch[topic]
}

// channel returns the channel the next signal of topic closes. The caller
// gives it back with done once it no longer waits.
func (w *qwaiters) channel(topic string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ch[topic]
	if !ok {
		c = make(chan struct{})
		w.ch[topic] = c
	}
	if w.n == nil {
		w.n = map[string]int{}
	}
	w.n[topic]++
	return c
}

// done gives back a channel from channel: the last waiter of a channel no
// signal closed removes it, so that topics nobody waits on any more (any
// name a client long-polled once) leave nothing behind.
func (w *qwaiters) done(topic string, c <-chan struct{}) {
	if c == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur, ok := w.ch[topic]; !ok || (<-chan struct{})(cur) != c {
		return // signalled: its count went with it
	}
	if w.n[topic]--; w.n[topic] <= 0 {
		delete(w.ch, topic)
		delete(w.n, topic)
	}
}

func (w *qwaiters) signal(topics map[string]bool) {
	if len(topics) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for t := range topics {
		if c, ok := w.ch[t]; ok {
			close(c)
			delete(w.ch, t)
			delete(w.n, t)
		}
	}
}

type queueMetrics struct {
	published, leased, acked, nacked, redelivered, dead, expired prometheus.Counter
	leaseLatency                                                 prometheus.Histogram
	timerLag                                                     prometheus.Histogram
}

func newQueueMetrics() queueMetrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return queueMetrics{
		published:   c("engram_queue_published_total", "Queue messages published (duplicates by dedupe_id excluded)."),
		leased:      c("engram_queue_leased_total", "Queue messages leased (deliveries)."),
		acked:       c("engram_queue_acked_total", "Queue messages acknowledged."),
		nacked:      c("engram_queue_nacked_total", "Queue messages given back with nack."),
		redelivered: c("engram_queue_redelivered_total", "Leases of a message delivered before (attempt > 1)."),
		dead:        c("engram_queue_dead_total", "Queue messages moved to the dead letters."),
		expired:     c("engram_queue_lease_expired_total", "Queue leases that expired without an ack."),
		leaseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "engram_queue_lease_seconds", Help: "Time a lease request that got messages took, long-poll wait included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}),
		timerLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "engram_queue_timer_lag_seconds", Help: "From a delay's or lease's due time to the command that acted on it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}),
	}
}

func (m queueMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.leased, m.acked, m.nacked, m.redelivered, m.dead, m.expired, m.leaseLatency, m.timerLag}
}

// queueTimer is the timer loop's state.
type queueTimer struct {
	wake chan struct{}
	next atomic.Int64 // the deadline the loop sleeps until (Unix ns; 0: none)
	done chan struct{}
}

// afterQueueCommand runs after a queue command committed: it wakes the
// lease waiters of topics whose ready set grew and tells the timer of an
// earlier deadline.
func (e *Engine) afterQueueCommand(q *qtx) {
	if q == nil {
		return
	}
	e.qwait.signal(q.topics)
	if q.deadline != 0 {
		if next := e.qtimer.next.Load(); next == 0 || q.deadline < next {
			select {
			case e.qtimer.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Start starts the engine's background work: the queue timer loop. Close
// stops it.
func (e *Engine) Start() {
	e.startOnce.Do(func() {
		e.started.Store(true)
		go e.queueTimerLoop()
	})
}

// Close stops the background work and waits for it; long-polling leases
// return empty. Call it before closing the sequencer.
func (e *Engine) Close() {
	e.closeOnce.Do(func() { close(e.qstop) })
	if e.started.Load() {
		<-e.qtimer.done
	}
}

func (e *Engine) queueTimerLoop() {
	defer close(e.qtimer.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	backoff := 10 * time.Millisecond
	for {
		// While the loop reads the indexes, next is 0 ("unknown"), so a
		// command committing a deadline the read may have missed wakes
		// it (the wake channel keeps the signal): with the previous
		// deadline still in next, such a command would see an earlier
		// deadline than its own, not wake the loop, and the loop would
		// sleep past it.
		e.qtimer.next.Store(0)
		next, err := e.nextQueueDeadline()
		if err != nil {
			e.log.Error("queue timer: read deadlines", "err", err)
			next = time.Now().Add(backoff).UnixNano()
		}
		e.qtimer.next.Store(next)
		wait := time.Hour
		if next != 0 {
			wait = time.Until(time.Unix(0, next))
		}
		if wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-e.qtimer.wake:
				if !t.Stop() {
					<-t.C
				}
				continue
			case <-e.qstop:
				return
			}
		}
		n, err := e.processDue(context.Background())
		if err != nil {
			select {
			case <-e.qstop:
				return
			default:
			}
			e.log.Error("queue timer: process due entries", "err", err)
			select {
			case <-time.After(backoff):
			case <-e.qstop:
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		_ = n // a full chunk finds the next deadline due at once
	}
}

// nextQueueDeadline is the earliest time in the timer indexes (0: none).
func (e *Engine) nextQueueDeadline() (int64, error) {
	var next int64
	for _, p := range [][]byte{storage.QueueDelayedPrefix(), storage.QueueLeasedPrefix(), storage.QueueDedupeExpPrefix()} {
		it, err := e.store.NewIter(e.timerFloor(p).Lower(p), storage.PrefixEnd(p))
		if err != nil {
			return 0, err
		}
		if it.First() && len(it.Key()) >= 9 {
			t := int64(binary.BigEndian.Uint64(it.Key()[1:9]))
			if next == 0 || t < next {
				next = t
			}
		}
		if err := it.Close(); err != nil {
			return 0, err
		}
	}
	return next, nil
}

// timerFloor is the scan floor of a timer index (delayed, leased, dedupe
// expiry), by its namespace's low nibble.
func (e *Engine) timerFloor(prefix []byte) *storage.ScanFloor { return &e.timerLow[prefix[0]&0x0f] }

// dueKeys reads up to max keys of a timer index due at now.
func (e *Engine) dueKeys(tx *wal.Tx, prefix []byte, now int64, max int) ([][]byte, error) {
	upper := storage.AppendUint64(append([]byte(nil), prefix...), uint64(now)+1)
	it, err := tx.NewIter(e.timerFloor(prefix).Lower(prefix), upper)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for ok := it.First(); ok && len(keys) < max; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()...))
	}
	return keys, it.Close()
}

// processDue acts on what is due, in one command of at most maxQueueChunk
// entries per index: expired leases go back to ready (or to the dead
// letters), delayed messages become ready, dedupe ids leave their window.
func (e *Engine) processDue(ctx context.Context) (int, error) {
	var q *qtx
	var expired, dead int
	var lags []time.Duration
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		q = e.newQtx(tx)
		expired, dead, lags = 0, 0, lags[:0]
		n := 0
		leased, err := e.dueKeys(tx, storage.QueueLeasedPrefix(), q.now, maxQueueChunk)
		if err != nil {
			return nil, err
		}
		for _, k := range leased {
			at, id, err := storage.QueueTimeKey(k)
			if err != nil {
				return nil, err
			}
			m, err := q.get(id)
			if err != nil {
				return nil, err
			}
			if m == nil || m.State != queueStateLeased || m.LeaseExpiresAt != at {
				tx.Delete(k) // stale entry
				continue
			}
			lags = append(lags, time.Duration(q.now-at))
			if err := q.release(m, -1, queueReasonExpired, queueErrLeaseExpired); err != nil {
				return nil, err
			}
			expired++
			if m.State == queueStateDead {
				dead++
			}
			n++
		}
		delayed, err := e.dueKeys(tx, storage.QueueDelayedPrefix(), q.now, maxQueueChunk)
		if err != nil {
			return nil, err
		}
		for _, k := range delayed {
			at, id, err := storage.QueueTimeKey(k)
			if err != nil {
				return nil, err
			}
			m, err := q.get(id)
			if err != nil {
				return nil, err
			}
			if m == nil || m.State != queueStateDelayed || m.AvailableAt != at {
				tx.Delete(k)
				continue
			}
			lags = append(lags, time.Duration(q.now-at))
			q.unindex(m)
			if err := q.move(m, ""); err != nil {
				return nil, err
			}
			if err := q.enqueue(m, true); err != nil {
				return nil, err
			}
			n++
		}
		dedupe, err := e.dueKeys(tx, storage.QueueDedupeExpPrefix(), q.now, maxQueueChunk)
		if err != nil {
			return nil, err
		}
		for _, k := range dedupe {
			at, topic, id, err := storage.QueueDedupeExpOf(k)
			if err != nil {
				return nil, err
			}
			tx.Delete(k)
			dk := storage.QueueDedupeKey(topic, id)
			v, err := tx.Get(dk)
			if err == nil && len(v) == 40 && int64(binary.BigEndian.Uint64(v[32:])) == at {
				tx.Delete(dk) // not renewed by a later publish
			} else if err != nil && !isNotFound(err) {
				return nil, err
			}
			n++
		}
		q.finish()
		// The command succeeds from here on (a failed commit makes the store
		// read-only): the bounds may move.
		for _, ks := range [][][]byte{leased, delayed, dedupe} {
			if len(ks) > 0 {
				last := ks[len(ks)-1]
				e.timerFloor(last).Raise(last)
			}
		}
		return n, nil
	})
	if err != nil {
		return 0, err
	}
	e.afterQueueCommand(q)
	e.qm.expired.Add(float64(expired))
	e.qm.dead.Add(float64(dead))
	for _, l := range lags {
		e.qm.timerLag.Observe(l.Seconds())
	}
	return res.(int), nil
}

// depthCollector reports queue depth by state and topic, for at most
// maxTopics topics (by name); the others are summed under topic="other", so
// the label's cardinality stays bounded.
type depthCollector struct {
	e         *Engine
	maxTopics int
	desc      *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	p := storage.QueueStatsPrefix()
	it, err := c.e.store.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		return
	}
	defer it.Close()
	var other qcounts
	n, others := 0, false
	emit := func(topic string, q qcounts) {
		for _, s := range []struct {
			state string
			v     int64
		}{{"ready", q.Ready}, {"delayed", q.Delayed}, {"leased", q.Leased}, {"dead", q.Dead}} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.v), topic, s.state)
		}
	}
	for ok := it.First(); ok; ok = it.Next() {
		topic, err := storage.QueueStatsTopic(it.Key())
		if err != nil {
			continue
		}
		q, err := decodeCounts(it.Value())
		if err != nil {
			continue
		}
		if n < c.maxTopics && topic != "other" {
			emit(topic, q)
			n++
			continue
		}
		others = true
		other.Ready += q.Ready
		other.Delayed += q.Delayed
		other.Leased += q.Leased
		other.Dead += q.Dead
	}
	if others {
		emit("other", other)
	}
}

var _ = ulid.ULID{}
