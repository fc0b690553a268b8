package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"engram/internal/server"
)

// startEngramServer starts the real server in this process, listening on a
// free loopback port, with its data in dir.
func startEngramServer(dir, syncMode string) (benchTarget, error) {
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Sync: syncMode})
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
		return nil, err
	}
	return s, nil
}

// walStats are the server's sequencer counters from GET /metrics
// (engram_wal_batch_commands and engram_wal_commit_seconds histograms).
type walStats struct {
	batches    float64 // committed batches
	commands   float64 // commands in them
	commitSecs float64 // total commit time, fsync included
	ok         bool
}

// scrapeWAL reads the sequencer's counters; ok is false when the server
// does not export them.
func scrapeWAL(baseURL string) walStats {
	status, body, err := doOnce(baseURL+"/metrics", "GET", nil)
	if err != nil || status != 200 {
		return walStats{}
	}
	return parseWALMetrics(body)
}

// parseWALMetrics picks the sequencer's counters out of Prometheus text.
func parseWALMetrics(body []byte) walStats {
	v := metricValues(body)
	w := walStats{
		batches:    v["engram_wal_batch_commands_count"],
		commands:   v["engram_wal_batch_commands_sum"],
		commitSecs: v["engram_wal_commit_seconds_sum"],
	}
	w.ok = has(v, "engram_wal_batch_commands_count", "engram_wal_batch_commands_sum", "engram_wal_commit_seconds_sum")
	return w
}

// metricValues parses Prometheus text (with expfmt, the format's own
// parser) into the values of its unlabeled samples: a gauge, counter or
// untyped metric under its name, a histogram or summary as name_sum and
// name_count. Unparsable text gives an empty map.
func metricValues(body []byte) map[string]float64 {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	out := map[string]float64{}
	if err != nil {
		return out
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Untyped != nil:
				out[name] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[name+"_sum"] = m.GetHistogram().GetSampleSum()
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			case m.Summary != nil:
				out[name+"_sum"] = m.GetSummary().GetSampleSum()
				out[name+"_count"] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return out
}

// has reports whether every name is in v.
func has(v map[string]float64, names ...string) bool {
	for _, n := range names {
		if _, ok := v[n]; !ok {
			return false
		}
	}
	return true
}

// walNote describes what the sequencer did between two scrapes.
func walNote(a, b walStats) string {
	if !a.ok || !b.ok || b.batches <= a.batches {
		return ""
	}
	n := b.batches - a.batches
	return fmt.Sprintf("server wal: %.0f batches, %.1f commands/batch, commit+fsync %s avg",
		n, (b.commands-a.commands)/n, fmtMs((b.commitSecs-a.commitSecs)/n*1000))
}
