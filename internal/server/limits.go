package server

import (
	"errors"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"engram/api"
)

// limitHits is engram_http_limit_hits_total: requests and connections cut
// short by a configured limit, by limit (api.Limits). The API counts what it
// answers (413, 431, too deep a body); the listener's connections count the
// timeouts, which end a connection without a handler ever running.
type limitHits struct {
	vec                     *prometheus.CounterVec
	readTO, writeTO, idleTO prometheus.Counter
}

func newLimitHits(reg prometheus.Registerer) *limitHits {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "engram_http_limit_hits_total",
		Help: "Requests and connections cut short by a configured limit (body size, JSON depth, header size, read/write/idle timeouts, rate limit).",
	}, []string{"limit"})
	for _, l := range api.Limits {
		vec.WithLabelValues(l) // every series exists from the start, at 0
	}
	reg.MustRegister(vec)
	return &limitHits{
		vec:     vec,
		readTO:  vec.WithLabelValues(api.LimitReadTimeout),
		writeTO: vec.WithLabelValues(api.LimitWriteTimeout),
		idleTO:  vec.WithLabelValues(api.LimitIdleTimeout),
	}
}

func (l *limitHits) hit(limit string) { l.vec.WithLabelValues(limit).Inc() }

// connState is fasthttp's ConnState hook: each connection learns whether it
// is waiting between requests (a deadline then is the idle timeout) or was
// hijacked by a WebSocket (whose deadlines are the notifier's, not ours).
func connState(c net.Conn, st fasthttp.ConnState) {
	if lc, ok := asLingerConn(c); ok {
		lc.state.Store(int32(st))
	}
}

// countTimeout counts a read or write of c that failed at its deadline, once
// per connection (fasthttp closes a connection after a timeout). A deadline
// that Close set to wake a reader, and any deadline on a hijacked
// (WebSocket) connection, are not limit hits.
func (c *lingerConn) countTimeout(err error, write bool) {
	if c.hits == nil || !errors.Is(err, os.ErrDeadlineExceeded) || c.closed.Load() {
		return
	}
	st := fasthttp.ConnState(c.state.Load())
	if st == fasthttp.StateHijacked || !c.counted.CompareAndSwap(false, true) {
		return
	}
	switch {
	case write:
		c.hits.writeTO.Inc()
	case st == fasthttp.StateIdle:
		c.hits.idleTO.Inc()
	default: // a new connection's first request, or a request half read
		c.hits.readTO.Inc()
	}
}
