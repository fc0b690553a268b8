package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adhocore/gronx"
	"github.com/oklog/ulid/v2"

	"engram/internal/engine"
	"engram/internal/lockmgr"
	"engram/internal/storage"
	"engram/internal/wal"
)

// The scheduler loop: one goroutine, one timer. Its schedule is the job
// records in storage (jobs are few: each pass scans them all) and each
// job's next time comes from its expression after the last time dealt
// with, never from the previous fire plus a period, so it cannot drift.

// Start starts the loop; Close stops it.
func (s *Scheduler) Start() {
	s.startOnce.Do(func() {
		s.begin()
		s.mu.Lock()
		s.started = true
		s.mu.Unlock()
		go s.loop()
	})
}

// begin marks the start: every scheduled time before it was missed.
func (s *Scheduler) begin() { s.startedAt = s.cfg.Now() }

// Close stops the loop, ending a fire in progress, and waits for it. Call
// it before closing the sequencer and the lock manager.
func (s *Scheduler) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
	})
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.done
	}
}

// poke wakes the loop to look at the jobs again.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	retry := 10 * time.Millisecond
	for {
		next, err := s.runDue(s.ctx)
		wait := time.Hour
		switch {
		case err != nil:
			select {
			case <-s.stop:
				return
			default:
			}
			if errors.Is(err, errBusy) {
				wait = 100 * time.Millisecond
				break
			}
			s.log.Error("cron: fire due jobs", "err", err)
			wait = retry
			retry = min(2*retry, 5*time.Second)
		case !next.IsZero():
			retry = 10 * time.Millisecond
			wait = next.Sub(s.cfg.Now())
		}
		if wait <= 0 {
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-s.wake:
			t.Stop()
		case <-s.stop:
			return
		}
	}
}

// errBusy reports a job whose lock someone else holds: the loop retries.
var errBusy = errors.New("cron: job lock held")

// runDue fires (or skips) every job's times that are due, and returns the
// earliest time to look again (zero: no job has a next time).
func (s *Scheduler) runDue(ctx context.Context) (time.Time, error) {
	p := storage.CronJobPrefix()
	it, err := s.store.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		return time.Time{}, err
	}
	var recs []*record
	for ok := it.First(); ok; ok = it.Next() {
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return time.Time{}, fmt.Errorf("cron: job %q: %w", it.Key(), err)
		}
		recs = append(recs, &r)
	}
	if err := it.Close(); err != nil {
		return time.Time{}, err
	}
	seen := make(map[string]bool, len(recs))
	var earliest time.Time
	var firstErr error
	for _, r := range recs {
		seen[r.Name] = true
		var sched *Schedule
		for r != nil {
			// Parsed again after each fire: a stale plan may bring back a
			// record whose schedule was replaced meanwhile.
			if sched, err = s.schedule(r); err != nil {
				s.log.Error("cron: stored schedule does not parse", "job", r.Name, "err", err)
				break
			}
			pl := s.plan(r, sched, s.cfg.Now())
			if pl.empty() {
				break
			}
			nr, err := s.fire(ctx, r, pl)
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				break
			}
			r = nr // nil: deleted meanwhile
		}
		if r == nil || sched == nil {
			continue
		}
		if n, ok := sched.Next(time.Unix(0, r.Done)); ok && (earliest.IsZero() || n.Before(earliest)) {
			earliest = n
		}
	}
	for k := range s.scheds {
		if name, _, _ := cutKey(k); !seen[name] {
			delete(s.scheds, k)
		}
	}
	return earliest, firstErr
}

func cmpErr(first, err error) error {
	if first == nil || errors.Is(first, errBusy) {
		return err
	}
	return first
}

// schedule returns r's parsed schedule from the cache.
func (s *Scheduler) schedule(r *record) (*Schedule, error) {
	k := r.Name + "\x00" + r.Schedule + "\x00" + r.Timezone
	if sc, ok := s.scheds[k]; ok {
		return sc, nil
	}
	sc, err := ParseSchedule(r.Schedule, r.Timezone)
	if err != nil {
		return nil, err
	}
	s.scheds[k] = sc
	return sc, nil
}

func cutKey(k string) (name, rest string, ok bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

// A plan is what one fire command does for a job, worked out outside the
// writer (counting missed times can take a while) from the record as it
// was; the command applies it only if the record has not moved since.
type plan struct {
	base int64 // the record's Done the plan starts from
	// missed times: count of them, the first and the latest; lower is set
	// when there were more than maxMissedCount (count is then a lower
	// bound).
	missed   int
	from, to time.Time
	lower    bool
	fire     time.Time // an on-time scheduled time to fire (zero: none)
	done     int64     // the record's Done afterwards
	catchUp  string
}

func (p plan) empty() bool { return p.missed == 0 && p.fire.IsZero() }

// plan works out what is due for r at now: the times it missed (before the
// scheduler started, or more than Misfire late), then at most one on-time
// time.
func (s *Scheduler) plan(r *record, sched *Schedule, now time.Time) plan {
	p := plan{base: r.Done, done: r.Done, catchUp: r.CatchUp}
	// Earlier than boundary: missed.
	boundary := now.Add(-s.cfg.Misfire)
	if s.startedAt.After(boundary) {
		boundary = s.startedAt
	}
	if boundary.After(now) {
		boundary = now.Add(time.Nanosecond)
	}
	t, ok := sched.Next(time.Unix(0, r.Done))
	for ok && t.Before(boundary) {
		if p.missed == 0 {
			p.from = t
		}
		p.to, p.missed = t, p.missed+1
		if p.missed == maxMissedCount {
			// Jump to the latest missed time directly.
			if last, err := gronx.PrevTickBefore(sched.expr, boundary.In(sched.loc), false); err == nil && last.After(p.to) && last.Before(boundary) {
				p.to, p.lower = last, true
			}
			t, ok = sched.Next(p.to)
			break
		}
		t, ok = sched.Next(t)
	}
	if p.missed > 0 {
		p.done = p.to.UnixNano()
	}
	if ok && !t.After(now) {
		p.fire, p.done = t, t.UnixNano()
	}
	return p
}

// errStale marks a plan whose record moved on (an update, another fire): it
// writes nothing and the loop plans again.
var errStale = errors.New("cron: plan is stale")

// fire applies p to the job in one command, holding the job's lock around
// it, and returns the record as it now is (nil if the job was deleted).
func (s *Scheduler) fire(ctx context.Context, r *record, p plan) (*record, error) {
	var lockID ulid.ULID
	if s.cfg.Locks != nil {
		l, err := s.lock(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		lockID, _ = ulid.ParseStrict(l.LockID)
		defer func() {
			// Released even when the loop is stopping: a fire's lock must not
			// outlive it longer than needed.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.cfg.Locks.Release(rctx, l.LockID); err != nil && !errors.Is(err, engine.ErrGone) {
				s.log.Warn("cron: release the fire lock", "job", r.Name, "err", err)
			}
		}()
	}
	var afters []func()
	var lag []time.Duration
	res, err := s.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		afters, lag = afters[:0], lag[:0]
		cur, err := getRecord(tx, r.Name)
		if err != nil || cur == nil {
			return nil, err
		}
		if cur.Done != p.base || cur.Schedule != r.Schedule || cur.Timezone != r.Timezone {
			return cur, errStale
		}
		if s.cfg.Locks != nil {
			// Fencing: the lock must still be ours as the fire commits.
			v, err := tx.Get(storage.LockResourceKey(Topic(r.Name)))
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return nil, err
			}
			if len(v) != 16 || ulid.ULID(v) != lockID {
				return nil, fmt.Errorf("cron: job %q: fire lock lost", r.Name)
			}
		}
		if p.missed > 0 {
			switch cur.CatchUp {
			case CatchUpOnce:
				after, err := s.publish(tx, cur, p.to, p.missed)
				if err != nil {
					return nil, err
				}
				afters = append(afters, after)
				cur.LastFiredAt = p.to.UnixNano()
			default:
				ev := map[string]any{"name": cur.Name, "count": p.missed,
					"from": wal.FormatTime(p.from), "to": wal.FormatTime(p.to)}
				if p.lower {
					ev["count_is_lower_bound"] = true
				}
				b, err := json.Marshal(ev)
				if err != nil {
					return nil, err
				}
				tx.Emit(Topic(cur.Name), Skipped, b, nil)
			}
		}
		if !p.fire.IsZero() {
			after, err := s.publish(tx, cur, p.fire, 0)
			if err != nil {
				return nil, err
			}
			afters = append(afters, after)
			cur.LastFiredAt = p.fire.UnixNano()
			lag = append(lag, tx.Now().Sub(p.fire))
		}
		cur.Done = p.done
		return cur, putRecord(tx, cur)
	})
	if errors.Is(err, errStale) {
		return getRecord(s.store, r.Name)
	}
	if err != nil {
		return nil, err
	}
	for _, a := range afters {
		a()
	}
	if p.missed > 0 {
		s.m.missed.WithLabelValues(p.catchUp).Add(float64(p.missed))
		if p.catchUp == CatchUpOnce {
			s.m.fired.WithLabelValues("catch_up").Inc()
		} else {
			s.m.skipped.Add(float64(p.missed))
			s.log.Warn("cron: skipped missed times", "job", r.Name, "count", p.missed, "from", p.from, "to", p.to)
		}
	}
	for _, l := range lag {
		s.m.fired.WithLabelValues("on_time").Inc()
		s.m.lag.Observe(l.Seconds())
	}
	if res == nil {
		return nil, nil
	}
	return res.(*record), nil
}

// publish writes the fire of job at scheduled time t: its queue message and
// its cron.fired event. missed > 0 marks a catch-up fire standing for that
// many missed times.
func (s *Scheduler) publish(tx *wal.Tx, job *record, t time.Time, missed int) (func(), error) {
	payload := job.Payload
	if payload == nil {
		payload = json.RawMessage("null")
	}
	msg, err := json.Marshal(struct {
		Job         string          `json:"job"`
		ScheduledAt string          `json:"scheduled_at"`
		Payload     json.RawMessage `json:"payload"`
	}{job.Name, wal.FormatTime(t), payload})
	if err != nil {
		return nil, err
	}
	pub, after, err := s.pub.PublishTx(tx, job.Queue, msg)
	if err != nil {
		return nil, err
	}
	ev := map[string]any{"name": job.Name, "scheduled_at": wal.FormatTime(t), "message_id": pub.ID}
	if missed > 0 {
		ev["missed"] = missed
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	tx.Emit(Topic(job.Name), Fired, b, nil)
	return after, nil
}

// lock takes cron/{name} for one fire. A lock of our holder taken before
// this scheduler started is a leftover of a crash and is released first;
// one held by anyone else makes the fire wait (errBusy).
func (s *Scheduler) lock(ctx context.Context, name string) (*lockmgr.Lock, error) {
	ttl := s.cfg.LockTTL.Milliseconds()
	in := lockmgr.AcquireInput{Resources: []string{Topic(name)}, Holder: s.cfg.Holder, TTLMs: &ttl}
	for range 2 {
		l, err := s.cfg.Locks.Acquire(ctx, in)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, engine.ErrConflict) {
			return nil, err
		}
		held, gerr := s.cfg.Locks.Get(Topic(name))
		if gerr != nil {
			continue // released meanwhile
		}
		at, perr := time.Parse(time.RFC3339Nano, held.AcquiredAt)
		if held.Holder != s.cfg.Holder || perr != nil || !at.Before(s.startedAt) {
			return nil, errBusy
		}
		s.log.Info("cron: releasing a fire lock left by a crash", "job", name, "lock_id", held.LockID)
		if err := s.cfg.Locks.Release(ctx, held.LockID); err != nil && !errors.Is(err, engine.ErrGone) {
			return nil, err
		}
	}
	return nil, errBusy
}
