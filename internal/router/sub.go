package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// Sub is one subscription. Its life: Subscribe registers it (live events are
// held back from then on), Start replays the history it asked for from
// storage, then hands over the held-back live events and switches to live
// delivery, dropping duplicates by seq. It ends by Unsubscribe, a lagged
// cut-off, or the router closing.
type Sub struct {
	ID     string
	Topics []string

	r      *Router
	sink   Sink
	ctx    context.Context
	cancel context.CancelFunc

	// after and liveFrom bound the replay: (after, liveFrom).
	after, liveFrom uint64

	// mu guards the fields below. Lock order: Router.mu before Sub.mu.
	mu        sync.Mutex
	last      uint64       // the last seq given to the sink
	buffering bool         // replaying: live events wait in live
	live      []*wal.Event // held-back live events
	done      bool
	cutReason error // set when offer cut the subscription during replay
	unsubbed  bool

	// gone is set by Unsubscribe: events of s still queued in its sink are
	// no longer wanted (unlike a lagged cut, whose last_seq counts them).
	gone atomic.Bool
}

// Unsubscribed reports whether the client ended s; a sink drops its queued
// events then.
func (s *Sub) Unsubscribed() bool { return s.gone.Load() }

// offer hands a live event to s. It reports whether s must be removed from
// the router (it was cut off).
func (s *Sub) offer(ev *wal.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || ev.Seq < s.liveFrom {
		return false
	}
	if s.buffering {
		if len(s.live) >= s.r.cfg.LiveBuffer {
			// The replay goroutine tells the sink, after its last send.
			s.done, s.cutReason = true, ErrLagged
			s.r.m.lagged.Inc()
			return true
		}
		s.live = append(s.live, ev)
		return false
	}
	if ev.Seq <= s.last {
		return false
	}
	if !s.sink.TrySend(s, ev) {
		s.done = true
		s.r.m.lagged.Inc()
		s.sink.Cut(s, ErrLagged, s.last)
		return true
	}
	s.last = ev.Seq
	s.r.m.delivered.Inc()
	return false
}

// Start begins delivery: the replay of the history asked for, then live
// events.
func (s *Sub) Start() {
	s.r.mu.RLock()
	defer s.r.mu.RUnlock()
	if s.r.ctx.Err() != nil {
		return // Close cuts it
	}
	s.r.wg.Add(1)
	go func() {
		defer s.r.wg.Done()
		err := s.replay()
		if err == nil {
			err = s.goLive()
		}
		if err != nil {
			s.stop(err)
		}
	}()
}

// LastSeq is the last seq given to the sink.
func (s *Sub) lastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// isLive reports whether s has switched to live delivery.
func (s *Sub) isLive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.buffering
}

// end marks s done; false if it already was.
func (s *Sub) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.done = true
	return true
}

// stop ends s after its replay goroutine failed or was stopped, telling the
// sink why unless the client itself unsubscribed.
func (s *Sub) stop(err error) {
	s.mu.Lock()
	reason, last := s.cutReason, s.last
	quiet := s.unsubbed || (s.done && reason == nil)
	s.done = true
	s.mu.Unlock()
	switch {
	case quiet:
	case reason != nil:
		s.sink.Cut(s, reason, last)
	case s.r.ctx.Err() != nil:
		s.sink.Cut(s, ErrClosed, last)
	default:
		if !errors.Is(err, context.Canceled) {
			s.r.log.Warn("router: subscription ended", "id", s.ID, "topics", s.Topics, "err", err)
		}
		s.sink.Cut(s, err, last)
	}
	s.r.remove(s)
}

var errDone = errors.New("router: subscription done")

// send gives one event to the sink, waiting for room, and records it.
func (s *Sub) send(ev *wal.Event) error {
	if err := s.sink.SendWait(s.ctx, s, ev); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = ev.Seq
	s.r.m.delivered.Inc()
	if s.done {
		return errDone
	}
	return nil
}

// replay sends the events of (after, liveFrom) from storage, in seq order,
// through the per-topic index: it reads only its topics' entries.
func (s *Sub) replay() error {
	if s.after+1 >= s.liveFrom {
		return nil
	}
	snap := s.r.store.NewSnapshot()
	defer snap.Close()
	// Retention raises the oldest seq before it deletes: if the oldest is
	// still at or below our start after the snapshot was taken, the snapshot
	// holds everything we need.
	if oldest := s.r.oldest.Load(); s.after+1 < oldest {
		return &HistoryTruncatedError{OldestSeq: oldest}
	}
	its := make([]*pebble.Iterator, 0, len(s.Topics))
	defer func() {
		for _, it := range its {
			it.Close()
		}
	}()
	for _, t := range s.Topics {
		it, err := snap.NewIter(&pebble.IterOptions{
			LowerBound: storage.TopicKey(t, s.after+1),
			UpperBound: storage.TopicKey(t, s.liveFrom),
		})
		if err != nil {
			return fmt.Errorf("router: replay: %w", err)
		}
		it.First()
		its = append(its, it)
	}
	reader := snapReader{snap}
	var prev uint64
	for {
		// The smallest seq at the heads of the topic iterators (k is small:
		// one per topic of the subscription).
		var next uint64
		for _, it := range its {
			for it.Valid() {
				seq, err := storage.TrailingSeq(it.Key())
				if err != nil {
					return err
				}
				if seq > prev {
					if next == 0 || seq < next {
						next = seq
					}
					break
				}
				it.Next() // seen under another topic of this subscription
			}
			if err := it.Error(); err != nil {
				return fmt.Errorf("router: replay: %w", err)
			}
		}
		if next == 0 {
			return nil
		}
		ev, err := wal.ReadEvent(reader, next)
		if err != nil {
			return err
		}
		s.r.m.replayed.Inc()
		if err := s.send(&ev); err != nil {
			return err
		}
		prev = next
	}
}

// goLive hands over the live events held back during replay, then switches
// s to live delivery.
func (s *Sub) goLive() error {
	for {
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			return errDone
		}
		held := s.live
		s.live = nil
		if len(held) == 0 {
			s.buffering = false
			s.mu.Unlock()
			return nil
		}
		last := s.last
		s.mu.Unlock()
		for _, ev := range held {
			if ev.Seq <= last {
				continue
			}
			if err := s.send(ev); err != nil {
				return err
			}
			last = ev.Seq
		}
	}
}

// snapReader adapts a snapshot to wal.Reader.
type snapReader struct{ snap *pebble.Snapshot }

func (r snapReader) Get(key []byte) ([]byte, error) {
	v, closer, err := r.snap.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, nil
}
