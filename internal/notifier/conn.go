package notifier

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/router"
	"engram/internal/wal"
)

// item is one entry of a connection's outbound queue: an event for a
// subscription, or a frame the connection itself sends (answers to the
// client's frames).
type item struct {
	sub *router.Sub
	ev  *wal.Event
	raw []byte
	// sent, when not nil, is closed once raw is written (or the
	// connection ends): a transport that queues large frames waits on it.
	sent chan struct{}
}

// ctlFrame is a frame that must follow everything queued before it was
// made: a subscription's cut-off notice. It waits outside the queue (which
// may be full: that is why the subscription was cut), keyed by the number of
// items queued when it was made.
type ctlFrame struct {
	after uint64
	sub   *router.Sub
	raw   []byte
	last  bool // the connection ends after this frame (SSE)
}

// conn is one client connection (WebSocket or SSE): a bounded outbound
// queue drained by one writer goroutine. It is the router's Sink for the
// connection's subscriptions.
//
// The queue is a slice that grows on demand up to QueueSize and is dropped
// when it drains, so an idle connection holds no queue memory (10,000 idle
// subscribers must fit in a few hundred MB).
type conn struct {
	n         *Notifier
	transport string

	qmu      sync.Mutex // guards items, head, enqueued, ctl; a leaf lock
	items    []item
	head     int    // items[head:] are queued
	enqueued uint64 // items ever queued: orders ctl frames after them
	ctl      []ctlFrame

	ready chan struct{} // the writer has something to do (cap 1)
	space chan struct{} // the writer took an item (cap 1)

	closed    chan struct{}
	closeOnce sync.Once
	onClose   func()            // unblocks the transport's reader
	cutSub    func(*router.Sub) // the transport's bookkeeping when a subscription is cut
	ctlFrame  func(s *router.Sub, reason error, last uint64) ctlFrame

	// The transport's metrics, resolved once: a label lookup per delivery
	// showed in fan-out profiles.
	delivered prometheus.Counter
	latency   prometheus.Observer
}

func newConn(n *Notifier, transport string) *conn {
	return &conn{
		n:         n,
		transport: transport,
		ready:     make(chan struct{}, 1),
		space:     make(chan struct{}, 1),
		closed:    make(chan struct{}),
		delivered: n.m.delivered.WithLabelValues(transport),
		latency:   n.m.latency.WithLabelValues(transport),
	}
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.onClose != nil {
			c.onClose()
		}
	})
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// tryEnqueue queues it without waiting; false when the queue is full.
func (c *conn) tryEnqueue(it item) bool {
	c.qmu.Lock()
	if len(c.items)-c.head >= c.n.cfg.QueueSize {
		c.qmu.Unlock()
		return false
	}
	c.items = append(c.items, it)
	c.enqueued++
	c.qmu.Unlock()
	signal(c.ready)
	return true
}

// dequeue takes the oldest queued item.
func (c *conn) dequeue() (item, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.head == len(c.items) {
		if cap(c.items) > 64 {
			c.items = nil // drained: give the memory back
		} else {
			c.items = c.items[:0]
		}
		c.head = 0
		return item{}, false
	}
	it := c.items[c.head]
	c.items[c.head] = item{}
	c.head++
	if c.head >= 1024 && c.head*2 >= len(c.items) {
		n := copy(c.items, c.items[c.head:])
		clear(c.items[n:])
		c.items, c.head = c.items[:n], 0
	}
	signal(c.space)
	return it, true
}

// enqueue queues it, waiting for room until ctx ends or the connection
// closes.
func (c *conn) enqueue(ctx context.Context, it item) error {
	for {
		if c.tryEnqueue(it) {
			return nil
		}
		select {
		case <-c.space:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed:
			return errConnClosed
		case <-time.After(50 * time.Millisecond):
			// A missed wake-up (another producer took the signal) costs
			// at most this.
		}
	}
}

// TrySend implements router.Sink.
func (c *conn) TrySend(s *router.Sub, ev *wal.Event) bool {
	select {
	case <-c.closed:
		return true // going away: the reader unsubscribes everything
	default:
	}
	return c.tryEnqueue(item{sub: s, ev: ev})
}

// SendWait implements router.Sink.
func (c *conn) SendWait(ctx context.Context, s *router.Sub, ev *wal.Event) error {
	return c.enqueue(ctx, item{sub: s, ev: ev})
}

// Cut implements router.Sink: the notice goes out after everything already
// queued for the subscription.
func (c *conn) Cut(s *router.Sub, reason error, last uint64) {
	if c.cutSub != nil {
		c.cutSub(s)
	}
	f := c.ctlFrame(s, reason, last)
	if reason == router.ErrLagged {
		c.n.m.lagged.WithLabelValues(c.transport).Inc()
	}
	c.qmu.Lock()
	f.after = c.enqueued
	c.ctl = append(c.ctl, f)
	c.qmu.Unlock()
	signal(c.ready)
}

// readyCtl returns the ctl frames whose turn has come after dequeued items.
func (c *conn) readyCtl(dequeued uint64) []ctlFrame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	i := 0
	for i < len(c.ctl) && c.ctl[i].after <= dequeued {
		i++
	}
	if i == 0 {
		return nil
	}
	out := c.ctl[:i:i]
	c.ctl = c.ctl[i:]
	return out
}

// frameWriter is what the writer loop needs from a transport.
type frameWriter interface {
	writeEvent(s *router.Sub, ev *wal.Event) error
	writeRaw(b []byte) error
	ping() error
	flush() error
}

// writeLoop drains the queue into w until the connection closes or a write
// fails. It flushes when the queue runs dry, so bursts share syscalls.
func (c *conn) writeLoop(w frameWriter, pingEvery time.Duration) error {
	ticker := time.NewTicker(pingEvery)
	defer ticker.Stop()
	var dequeued uint64
	pending := false // written but not flushed
	for {
		it, got := c.dequeue()
		if !got {
			if pending {
				if err := w.flush(); err != nil {
					return err
				}
				pending = false
			}
			// Ctl frames whose turn came while the queue drained.
			if f := c.readyCtl(dequeued); len(f) > 0 {
				if done, err := c.writeCtl(w, f); done || err != nil {
					return err
				}
				pending = true
				continue
			}
			select {
			case <-c.ready:
			case <-ticker.C:
				if err := w.ping(); err != nil {
					return err
				}
				if err := w.flush(); err != nil {
					return err
				}
			case <-c.closed:
				return nil
			}
			continue
		}
		dequeued++
		if it.ev != nil && it.sub.Unsubscribed() {
			continue // the client unsubscribed: nothing more of it goes out
		}
		var err error
		if it.ev != nil {
			err = w.writeEvent(it.sub, it.ev)
			c.delivered.Inc()
			c.latency.Observe(time.Since(it.ev.Time).Seconds())
		} else {
			err = w.writeRaw(it.raw)
			if it.sent != nil {
				close(it.sent)
			}
		}
		if err != nil {
			return err
		}
		pending = true
		if f := c.readyCtl(dequeued); len(f) > 0 {
			if done, err := c.writeCtl(w, f); done || err != nil {
				return err
			}
		}
	}
}

// writeCtl writes ctl frames; done reports that the connection ends after
// them (SSE cut-off), flushed.
func (c *conn) writeCtl(w frameWriter, frames []ctlFrame) (bool, error) {
	for _, f := range frames {
		if err := w.writeRaw(f.raw); err != nil {
			return true, err
		}
		if f.last {
			return true, w.flush()
		}
	}
	return false, nil
}
