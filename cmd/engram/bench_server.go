package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	var w walStats
	found := 0
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "engram_wal_batch_commands_count":
			w.batches = v
			found++
		case "engram_wal_batch_commands_sum":
			w.commands = v
			found++
		case "engram_wal_commit_seconds_sum":
			w.commitSecs = v
			found++
		}
	}
	w.ok = found == 3
	return w
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
