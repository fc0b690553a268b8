package search_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"

	"engram/internal/engine"
	"engram/internal/search"
)

// BenchmarkIndexUnits measures how fast the indexer follows work units
// written ahead of it (b.N units, 30 words each, in batches of 1000).
func BenchmarkIndexUnits(b *testing.B) {
	v := openEnv(b, b.TempDir(), search.Config{})
	defer v.close(b)
	v.x.Stop() // write first, then time the indexer alone
	batch := make([]engine.UnitInput, 0, 1000)
	for i := range b.N {
		text := fmt.Sprintf("w%d w%d w%d alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega %d", i%1000, i%77, i%13, i)
		batch = append(batch, engine.UnitInput{ContextID: fmt.Sprintf("c%d", i%100), AgentID: "a", Type: "MESSAGE", Payload: []byte(fmt.Sprintf("%q", text))})
		if len(batch) == cap(batch) || i == b.N-1 {
			if _, err := v.e.CreateUnits(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	v.x.Close()
	if p := os.Getenv("SEARCH_INDEX_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	x, err := search.Open(v.cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	x.Start()
	if !x.WaitFor(context.Background(), v.seq.Head(), 0) {
		for !x.WaitFor(context.Background(), v.seq.Head(), 1e9) {
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "units/s")
}

// BenchmarkSearch measures one query (a term in 0.1% of 20,000 units,
// newest first) through Search.
func BenchmarkSearch(b *testing.B) {
	v := openEnv(b, b.TempDir(), search.Config{})
	defer v.close(b)
	batch := make([]engine.UnitInput, 0, 1000)
	for i := range 20000 {
		text := fmt.Sprintf("w%d alpha beta gamma delta %d", i%1000, i)
		batch = append(batch, engine.UnitInput{ContextID: "c", AgentID: "a", Type: "MESSAGE", Payload: []byte(fmt.Sprintf("%q", text))})
		if len(batch) == cap(batch) {
			if _, err := v.e.CreateUnits(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	q := search.Query{Q: "w7", Sort: search.SortRecent, MinSeq: v.seq.Head()}
	if res, err := v.x.Search(context.Background(), q); err != nil || len(res.Hits) != 20 {
		b.Fatal(res, err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := v.x.Search(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
}
