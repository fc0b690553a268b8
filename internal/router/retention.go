package router

import (
	"fmt"
	"time"

	"engram/internal/storage"
)

// Retention bounds the log. Both zero (the default) keep every event. It
// removes log records and their topic-index entries, never state.
type Retention struct {
	// MaxAge drops events older than this. Zero: no age limit.
	MaxAge time.Duration
	// MaxEvents keeps at most this many of the newest events. Zero: no
	// count limit.
	MaxEvents uint64
	// Interval is how often retention runs. Zero means 10 s.
	Interval time.Duration
	// Chunk is how many events one retention batch removes. Zero means
	// 10,000.
	Chunk int
	// Head reports the last committed seq. Required when enabled.
	Head func() uint64
	// Floor, when set, reports the last seq a reader of the log (the search
	// indexer) is done with: events after it are kept whatever the limits
	// say, so that the reader never finds them gone.
	Floor func() uint64
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

func (r Retention) enabled() bool { return r.MaxAge > 0 || r.MaxEvents > 0 }

func (r *Retention) validate() error {
	switch {
	case r.MaxAge < 0:
		return fmt.Errorf("router: Retention.MaxAge %v < 0", r.MaxAge)
	case r.Interval < 0:
		return fmt.Errorf("router: Retention.Interval %v < 0", r.Interval)
	case r.Chunk < 0:
		return fmt.Errorf("router: Retention.Chunk %d < 0", r.Chunk)
	case r.enabled() && r.Head == nil:
		return fmt.Errorf("router: Retention.Head is required")
	}
	if r.Interval == 0 {
		r.Interval = 10 * time.Second
	}
	if r.Chunk == 0 {
		r.Chunk = 10000
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return nil
}

func (r *Router) retentionLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Retention.Interval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Prune(); err != nil {
			r.log.Error("retention failed", "err", err)
		} else if n > 0 {
			r.log.Debug("retention pruned the log", "events", n, "oldest_seq", r.oldest.Load())
		}
	}
}

// Prune removes the events that retention no longer keeps, in chunks, and
// returns how many it removed. Each chunk commits its deletions together
// with the new oldest seq, so a crash leaves no orphaned index entry. The
// newest event is always kept.
func (r *Router) Prune() (int, error) {
	ret := r.cfg.Retention
	if !ret.enabled() {
		return 0, nil
	}
	head := ret.Head()
	total := 0
	for r.ctx.Err() == nil {
		oldest := r.oldest.Load()
		cutoff := oldest // events below cutoff go
		if ret.MaxEvents > 0 && head > ret.MaxEvents {
			cutoff = max(cutoff, head-ret.MaxEvents+1)
		}
		cutoff = min(cutoff, head) // keep the newest
		if ret.Floor != nil {
			cutoff = min(cutoff, ret.Floor()+1)
		}
		n, end, err := r.pruneChunk(oldest, cutoff, ret)
		total += n
		if err != nil || end == oldest {
			return total, err
		}
	}
	return total, nil
}

// pruneChunk removes up to one chunk of events from oldest on, below
// countCutoff or older than MaxAge, and returns the new oldest seq.
func (r *Router) pruneChunk(oldest, countCutoff uint64, ret Retention) (int, uint64, error) {
	it, err := r.store.NewIter(storage.LogKey(oldest), storage.PrefixEnd(storage.LogPrefix()))
	if err != nil {
		return 0, oldest, err
	}
	defer it.Close()
	var ageCutoff int64
	if ret.MaxAge > 0 {
		ageCutoff = ret.Now().Add(-ret.MaxAge).UnixNano()
	}
	b := r.store.NewBatch()
	defer b.Close()
	end, n := oldest, 0
	head := ret.Head()
	for ok := it.First(); ok && n < ret.Chunk; ok = it.Next() {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			return 0, oldest, err
		}
		if seq >= head {
			break
		}
		rec, err := storage.DecodeRecord(it.Value())
		if err != nil {
			return 0, oldest, fmt.Errorf("router: retention: seq %d: %w", seq, err)
		}
		if seq >= countCutoff && (ageCutoff == 0 || rec.TimeUnixNano >= ageCutoff) {
			break
		}
		for _, t := range storage.IndexTopics(rec.Topic) {
			if err := b.Delete(storage.TopicKey(t, seq), nil); err != nil {
				return 0, oldest, err
			}
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			return 0, oldest, err
		}
		end, n = seq+1, n+1
	}
	if err := it.Error(); err != nil {
		return 0, oldest, err
	}
	if n == 0 {
		return 0, oldest, nil
	}
	if err := storage.SetOldestSeq(b, end); err != nil {
		return 0, oldest, err
	}
	// Raise the oldest seq before the deletions land: a replay that checks
	// it after taking its snapshot then knows whether its range is whole.
	r.oldest.Store(end)
	if err := r.store.Commit(b, false); err != nil {
		return 0, oldest, err
	}
	r.m.pruned.Add(float64(n))
	return n, end, nil
}
