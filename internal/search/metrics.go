package search

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/storage"
)

type metrics struct {
	batch    prometheus.Histogram
	delay    prometheus.Histogram
	query    *prometheus.HistogramVec
	rebuilds prometheus.Counter
	errors   prometheus.Counter
}

func newMetrics(x *Index, reg prometheus.Registerer) *metrics {
	m := &metrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "engram_search_batch_events", Help: "Log events covered by one index transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "engram_search_index_delay_seconds", Help: "Time from the commit of the first event of an index transaction to the transaction's end.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		query: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "engram_search_query_seconds", Help: "Search query latency by sort.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"sort"}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "engram_search_rebuilds_total", Help: "Rebuilds of the search index from storage.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "engram_search_errors_total", Help: "Index failures: failed transactions and events that could not be indexed.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.batch, m.delay, m.query, m.rebuilds, m.errors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "engram_search_indexed_seq", Help: "The last seq the search index holds.",
		}, func() float64 { return float64(x.indexed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "engram_search_lag_events", Help: "Committed events the search index does not hold yet.",
		}, func() float64 { return float64(x.lagEvents()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "engram_search_lag_seconds", Help: "Age of the oldest committed event the search index does not hold yet (0 when caught up).",
		}, x.lagSeconds),
	)
	return m
}

func (x *Index) lagEvents() uint64 {
	head, cp := x.cfg.Head(), x.indexed.Load()
	if head <= cp {
		return 0
	}
	return head - cp
}

// lagSeconds reads the commit time of the first event not indexed yet.
func (x *Index) lagSeconds() float64 {
	if x.lagEvents() == 0 {
		return 0
	}
	raw, err := x.cfg.Store.Get(storage.LogKey(x.indexed.Load() + 1))
	if err != nil {
		return 0
	}
	rec, err := storage.DecodeRecord(raw)
	if err != nil {
		return 0
	}
	return max(time.Since(time.Unix(0, rec.TimeUnixNano)).Seconds(), 0)
}
