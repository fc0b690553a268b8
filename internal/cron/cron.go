package cron

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/engine"
	"engram/internal/lockmgr"
	"engram/internal/storage"
	"engram/internal/wal"
)

// Event types, on the topic "cron/{name}".
const (
	TopicPrefix = "cron/"
	Updated     = "cron.updated"
	Deleted     = "cron.deleted"
	Fired       = "cron.fired"
	Skipped     = "cron.skipped"
)

// Catch-up policies: what happens to scheduled times missed while the
// server was stopped (or the scheduler was held up longer than Misfire).
const (
	// CatchUpSkip (the default) fires none of them: one cron.skipped event
	// says how many and which.
	CatchUpSkip = "skip"
	// CatchUpOnce fires once, for the latest of them.
	CatchUpOnce = "once"
)

// maxMissedCount bounds the missed times counted one by one; past it the
// latest is found directly and the count is a lower bound (a per-second
// job down for over eleven days).
const maxMissedCount = 1_000_000

// Store is what the scheduler reads: the committed state.
type Store interface {
	Get(key []byte) ([]byte, error)
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
}

// Sequencer is where the scheduler's commands go.
type Sequencer interface {
	Submit(ctx context.Context, cmd wal.Command) (any, error)
}

// Publisher publishes a queue message inside a command.
type Publisher interface {
	PublishTx(tx *wal.Tx, topic string, payload json.RawMessage) (engine.Published, func(), error)
}

// Locker takes the lock cron/{name} around a fire.
type Locker interface {
	Acquire(ctx context.Context, in lockmgr.AcquireInput) (*lockmgr.Lock, error)
	Release(ctx context.Context, lockID string) error
	Get(resource string) (*lockmgr.Lock, error)
}

var (
	_ Store     = (*storage.DB)(nil)
	_ Sequencer = (*wal.Sequencer)(nil)
	_ Publisher = (*engine.Engine)(nil)
	_ Locker    = (*lockmgr.Manager)(nil)
)

// Config configures a Scheduler.
type Config struct {
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
	// Now is the scheduler's clock: which scheduled times are due (commands
	// stamp their events with the sequencer's). Nil means time.Now.
	Now func() time.Time
	// Locks takes cron/{name} around each fire. Nil means fires take no
	// lock (a single scheduler needs none: the fire command is atomic).
	Locks Locker
	// Holder is the lock holder's name. Empty means "engram-cron". A lock
	// it holds that was taken before this scheduler started is a leftover
	// of a crash of this node, and is released.
	Holder string
	// LockTTL is the ttl of the fire lock. Zero means 10 s.
	LockTTL time.Duration
	// Misfire is how late a scheduled time may be and still fire; later, it
	// counts as missed and the job's catch_up applies (as it does to every
	// time before the scheduler started). Zero means one minute.
	Misfire time.Duration
	// MaxJobs bounds the jobs kept (the scheduler reads every job on each
	// pass); a new job past it is a conflict. Zero means DefaultMaxJobs.
	MaxJobs int
}

// Job is a cron job as the API shows it.
type Job struct {
	Name        string          `json:"name"`
	Schedule    string          `json:"schedule"`
	Timezone    string          `json:"timezone"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload"`
	CatchUp     string          `json:"catch_up"`
	CreatedAt   string          `json:"created_at"`
	UpdatedAt   string          `json:"updated_at"`
	LastFiredAt *string         `json:"last_fired_at"`
	NextFireAt  *string         `json:"next_fire_at"`
}

// record is a job as stored.
type record struct {
	Name      string          `json:"name"`
	Schedule  string          `json:"schedule"`
	Timezone  string          `json:"timezone"`
	Queue     string          `json:"queue"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	CatchUp   string          `json:"catch_up"`
	CreatedAt int64           `json:"created_at"`
	UpdatedAt int64           `json:"updated_at"`
	// LastFiredAt is the scheduled time of the last fire (Unix ns; 0:
	// never).
	LastFiredAt int64 `json:"last_fired_at,omitempty"`
	// Done is how far the schedule has been dealt with: every scheduled
	// time up to it (Unix ns) has fired or been skipped, and none after.
	// The fire command moves it in the same batch as the message, which is
	// what makes a fire happen at most once.
	Done int64 `json:"done"`
}

func (r *record) public() *Job {
	j := &Job{
		Name: r.Name, Schedule: r.Schedule, Timezone: r.Timezone, Queue: r.Queue, Payload: r.Payload,
		CatchUp: r.CatchUp, CreatedAt: fmtNano(r.CreatedAt), UpdatedAt: fmtNano(r.UpdatedAt),
	}
	if j.Payload == nil {
		j.Payload = json.RawMessage("null")
	}
	if r.LastFiredAt != 0 {
		s := fmtNano(r.LastFiredAt)
		j.LastFiredAt = &s
	}
	if sched, err := ParseSchedule(r.Schedule, r.Timezone); err == nil {
		if n, ok := sched.Next(time.Unix(0, r.Done)); ok {
			s := wal.FormatTime(n)
			j.NextFireAt = &s
		}
	}
	return j
}

func fmtNano(ns int64) string { return wal.FormatTime(time.Unix(0, ns)) }

// Scheduler owns the cron jobs and fires them.
type Scheduler struct {
	store Store
	seq   Sequencer
	pub   Publisher
	cfg   Config
	log   *slog.Logger
	m     metrics

	// startedAt is when the scheduler started: a time before it was missed.
	startedAt time.Time
	// scheds caches parsed schedules; only the loop uses it.
	scheds map[string]*Schedule

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	cancel    context.CancelFunc
	ctx       context.Context
	startOnce sync.Once
	closeOnce sync.Once
	mu        sync.Mutex // guards started
	started   bool
}

type metrics struct {
	fired   *prometheus.CounterVec
	skipped prometheus.Counter
	missed  *prometheus.CounterVec
	lag     prometheus.Histogram
}

// New returns a scheduler over store and seq that publishes with pub; Start
// starts its loop.
func New(store Store, seq Sequencer, pub Publisher, cfg Config, log *slog.Logger) (*Scheduler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Holder == "" {
		cfg.Holder = "engram-cron"
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 10 * time.Second
	}
	if cfg.Misfire == 0 {
		cfg.Misfire = time.Minute
	}
	if cfg.MaxJobs == 0 {
		cfg.MaxJobs = DefaultMaxJobs
	}
	switch {
	case cfg.MaxJobs < 0:
		return nil, fmt.Errorf("cron: max jobs: %d < 0", cfg.MaxJobs)
	case cfg.LockTTL < lockmgr.MinTTL || cfg.LockTTL > lockmgr.MaxTTL:
		return nil, fmt.Errorf("cron: lock ttl: %v outside %v..%v", cfg.LockTTL, lockmgr.MinTTL, lockmgr.MaxTTL)
	case cfg.Misfire < 0:
		return nil, fmt.Errorf("cron: misfire: %v < 0", cfg.Misfire)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		store: store, seq: seq, pub: pub, cfg: cfg, log: log,
		scheds: map[string]*Schedule{},
		wake:   make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
		m: metrics{
			fired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engram_cron_fired_total",
				Help: "Cron fires (queue messages published), by kind: on_time or catch_up."}, []string{"kind"}),
			skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_cron_skipped_total",
				Help: "Scheduled cron times skipped (missed while stopped, catch_up skip)."}),
			missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engram_cron_missed_total",
				Help: "Scheduled cron times missed while stopped or held up, by the job's catch_up."}, []string{"catch_up"}),
			lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "engram_cron_fire_lag_seconds",
				Help:    "From a scheduled time to the commit of its fire (on-time fires).",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		},
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.m.fired, s.m.skipped, s.m.missed, s.m.lag} {
			if err := cfg.Registerer.Register(c); err != nil {
				cancel()
				return nil, fmt.Errorf("cron: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Topic is the event topic of the job name.
func Topic(name string) string { return TopicPrefix + name }

// PutInput is the body of PUT /v1/cron/{name}.
type PutInput struct {
	Schedule string          `json:"schedule"`
	Timezone *string         `json:"timezone"`
	Queue    string          `json:"queue"`
	Payload  json.RawMessage `json:"payload"`
	CatchUp  *string         `json:"catch_up"`
}

func checkName(name string) error {
	if !engine.ValidName(name) {
		return invalidf("name: %q must match ^[A-Za-z0-9._~:@-]{1,128}$", engine.Truncate(name))
	}
	return nil
}

// DefaultMaxJobs is Config.MaxJobs's default.
const DefaultMaxJobs = 10000

// countJobs counts the stored jobs, up to max.
func countJobs(tx *wal.Tx, max int) (int, error) {
	p := storage.CronJobPrefix()
	it, err := tx.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok && n < max; ok = it.Next() {
		n++
	}
	return n, it.Close()
}

// Put creates or replaces the job name. A replaced job keeps its history
// (created_at, last_fired_at); if its schedule or time zone changed, its
// new schedule starts from now (nothing before counts as missed).
func (s *Scheduler) Put(ctx context.Context, name string, in PutInput) (*Job, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	tz := "UTC"
	if in.Timezone != nil && *in.Timezone != "" {
		tz = *in.Timezone
	}
	sched, err := ParseSchedule(in.Schedule, tz)
	if err != nil {
		return nil, err
	}
	if _, ok := sched.Next(s.cfg.Now()); !ok {
		return nil, invalidf("schedule: %q has no time after now", engine.Truncate(in.Schedule))
	}
	if in.Queue == "" {
		return nil, invalidf("queue: required")
	}
	if !engine.ValidName(in.Queue) {
		return nil, invalidf("queue: %q must match ^[A-Za-z0-9._~:@-]{1,128}$", engine.Truncate(in.Queue))
	}
	catchUp := CatchUpSkip
	if in.CatchUp != nil {
		catchUp = *in.CatchUp
	}
	if catchUp != CatchUpSkip && catchUp != CatchUpOnce {
		return nil, invalidf("catch_up: %q is not skip or once", engine.Truncate(catchUp))
	}
	var payload json.RawMessage
	if len(in.Payload) > 0 && !bytes.Equal(bytes.TrimSpace(in.Payload), []byte("null")) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Payload); err != nil {
			return nil, invalidf("payload: not valid JSON")
		}
		payload = buf.Bytes()
	}
	schedule := strings.Join(strings.Fields(in.Schedule), " ")
	res, err := s.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		now := tx.Now().UnixNano()
		old, err := getRecord(tx, name)
		if err != nil {
			return nil, err
		}
		if old == nil {
			n, err := countJobs(tx, s.cfg.MaxJobs)
			if err != nil {
				return nil, err
			}
			if n >= s.cfg.MaxJobs {
				return nil, &engine.Error{Kind: engine.ErrConflict, Msg: fmt.Sprintf("name: there are %d jobs, the most the server keeps; delete one first", s.cfg.MaxJobs)}
			}
		}
		r := &record{Name: name, Schedule: schedule, Timezone: tz, Queue: in.Queue, Payload: payload,
			CatchUp: catchUp, CreatedAt: now, UpdatedAt: now, Done: now}
		if old != nil {
			r.CreatedAt, r.LastFiredAt = old.CreatedAt, old.LastFiredAt
			if old.Schedule == schedule && old.Timezone == tz {
				r.Done = old.Done
			}
		}
		if err := putRecord(tx, r); err != nil {
			return nil, err
		}
		j := r.public()
		b, err := json.Marshal(j)
		if err != nil {
			return nil, err
		}
		tx.Emit(Topic(name), Updated, b, nil)
		return j, nil
	})
	if err != nil {
		return nil, err
	}
	s.poke()
	return res.(*Job), nil
}

// Get returns the job name.
func (s *Scheduler) Get(name string) (*Job, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	r, err := getRecord(s.store, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, notFoundf("cron job %q not found", name)
	}
	return r.public(), nil
}

// List lists the jobs by name.
func (s *Scheduler) List(limit int, cursor string) ([]*Job, string, error) {
	limit, err := engine.CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	p := storage.CronJobPrefix()
	lower := p
	if cursor != "" {
		after, err := engine.DecodeCursor("cron", cursor)
		if err != nil {
			return nil, "", err
		}
		lower = append(storage.CronJobKey(after), 0)
	}
	it, err := s.store.NewIter(lower, storage.PrefixEnd(p))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := []*Job{}
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, engine.EncodeCursor("cron", out[len(out)-1].Name), nil
		}
		var r record
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			return nil, "", fmt.Errorf("cron: job %q: %w", it.Key(), err)
		}
		out = append(out, r.public())
	}
	return out, "", it.Error()
}

// Delete deletes the job name.
func (s *Scheduler) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := s.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		r, err := getRecord(tx, name)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, notFoundf("cron job %q not found", name)
		}
		b, err := json.Marshal(r.public())
		if err != nil {
			return nil, err
		}
		tx.Delete(storage.CronJobKey(name))
		tx.Emit(Topic(name), Deleted, b, nil)
		return nil, nil
	})
	if err != nil {
		return err
	}
	s.poke()
	return nil
}

type getter interface {
	Get(key []byte) ([]byte, error)
}

func getRecord(g getter, name string) (*record, error) {
	v, err := g.Get(storage.CronJobKey(name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("cron: job %q: %w", name, err)
	}
	return &r, nil
}

func putRecord(tx *wal.Tx, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cron: encode job: %w", err)
	}
	tx.Set(storage.CronJobKey(r.Name), b)
	return nil
}

func notFoundf(format string, args ...any) error {
	return engine.Errorf(engine.ErrNotFound, format, args...)
}
