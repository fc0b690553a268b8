// Package notifier serves Engram's real-time transports: WebSocket
// (/v1/ws, several subscriptions per connection) and Server-Sent Events
// (/v1/events). It owns framing, heartbeats, limits and the connection's
// outbound queue; the router decides what each subscription receives.
//
// An event's JSON is encoded once by the sequencer; the notifier writes those
// same bytes to every subscriber, wrapped per subscription on /v1/ws (whose
// frames carry the subscription id). It never blocks the router: a full
// queue cuts the subscription off as lagged.
package notifier

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/router"
)

var errConnClosed = errors.New("notifier: connection closed")

// Config configures a Notifier.
type Config struct {
	// MaxConnections caps WebSocket and SSE connections together; more are
	// answered 503. Zero means 10,000.
	MaxConnections int
	// MaxSubscriptions caps subscriptions per WebSocket connection (and
	// topics per SSE stream). Zero means 256.
	MaxSubscriptions int
	// QueueSize is a connection's outbound queue, in events. A subscription
	// whose event finds it full is cut off as lagged. Zero means 4096.
	QueueSize int
	// MaxFrameBytes caps a client's WebSocket frame. Zero means 64 KiB.
	MaxFrameBytes int
	// PingInterval is how often the server pings a WebSocket client. Zero
	// means 20 s.
	PingInterval time.Duration
	// IdleTimeout closes a WebSocket connection that sent nothing (pongs
	// included) for this long. Zero means 60 s.
	IdleTimeout time.Duration
	// SSEHeartbeat is how often an SSE stream gets a ": ping" comment. Zero
	// means 15 s.
	SSEHeartbeat time.Duration
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
	// Streams serves /stream (iii's stream protocol). Nil means /stream
	// answers 404.
	Streams Streams
	// StreamSyncMax caps the items of a /stream join's sync; a larger group
	// answers the join with sync_too_large. Zero means 10,000.
	StreamSyncMax int
	// StreamSyncMaxBytes caps the size of a sync frame the same way. Zero
	// means 64 MiB.
	StreamSyncMaxBytes int
}

// Notifier serves subscriptions over WebSocket and SSE.
type Notifier struct {
	r   *router.Router
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	open   map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup

	m metrics
}

type metrics struct {
	subs      *prometheus.GaugeVec
	conns     *prometheus.GaugeVec
	delivered *prometheus.CounterVec
	lagged    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	refused   *prometheus.CounterVec
}

// New returns a notifier over r.
func New(r *router.Router, cfg Config, log *slog.Logger) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxConnections, 10000)
	def(&cfg.MaxSubscriptions, 256)
	def(&cfg.QueueSize, 4096)
	def(&cfg.MaxFrameBytes, 64<<10)
	def(&cfg.StreamSyncMax, 10000)
	def(&cfg.StreamSyncMaxBytes, 64<<20)
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 20 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.SSEHeartbeat == 0 {
		cfg.SSEHeartbeat = 15 * time.Second
	}
	for name, v := range map[string]int{"MaxConnections": cfg.MaxConnections, "MaxSubscriptions": cfg.MaxSubscriptions, "QueueSize": cfg.QueueSize, "MaxFrameBytes": cfg.MaxFrameBytes, "StreamSyncMax": cfg.StreamSyncMax, "StreamSyncMaxBytes": cfg.StreamSyncMaxBytes} {
		if v < 1 {
			return nil, fmt.Errorf("notifier: Config.%s %d < 1", name, v)
		}
	}
	if cfg.PingInterval < 0 || cfg.IdleTimeout < 0 || cfg.SSEHeartbeat < 0 {
		return nil, errors.New("notifier: negative interval in Config")
	}
	n := &Notifier{r: r, cfg: cfg, log: log, open: map[*conn]struct{}{}}
	n.m = metrics{
		subs:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "engram_subscribers", Help: "Active subscriptions by transport."}, []string{"transport"}),
		conns:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "engram_connections", Help: "Open real-time connections by transport."}, []string{"transport"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engram_events_delivered_total", Help: "Events written to subscribers by transport."}, []string{"transport"}),
		lagged:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engram_lagged_total", Help: "Subscriptions cut off as lagged by transport."}, []string{"transport"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "engram_delivery_latency_seconds", Help: "From an event's commit to its write on the connection.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engram_connections_refused_total", Help: "Connections and subscriptions refused by a limit (reason max_connections or max_subscriptions)."}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(n.m.subs, n.m.conns, n.m.delivered, n.m.lagged, n.m.latency, n.m.refused)
	}
	return n, nil
}

// admit registers a new connection, or refuses it at the limit.
func (n *Notifier) admit(c *conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || len(n.open) >= n.cfg.MaxConnections {
		n.m.refused.WithLabelValues("max_connections").Inc()
		return false
	}
	n.open[c] = struct{}{}
	n.wg.Add(1)
	n.m.conns.WithLabelValues(c.transport).Inc()
	return true
}

func (n *Notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.open)
}

func (n *Notifier) release(c *conn) {
	n.mu.Lock()
	delete(n.open, c)
	n.mu.Unlock()
	n.m.conns.WithLabelValues(c.transport).Dec()
	n.wg.Done()
}

// Close ends every connection and waits for their goroutines. Call it
// before shutting the HTTP server down, so that no stream holds it open.
func (n *Notifier) Close() {
	n.mu.Lock()
	n.closed = true
	for c := range n.open {
		c.close()
	}
	n.mu.Unlock()
	n.wg.Wait()
}
