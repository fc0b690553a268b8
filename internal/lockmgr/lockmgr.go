package lockmgr

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"engram/internal/engine"
	"engram/internal/storage"
	"engram/internal/wal"
)

// Limits of the contract (API.md, Locks) and ours.
const (
	MaxResources   = 64
	MaxResourceLen = 512
	MaxHolderLen   = 256
	MinTTL         = 100 * time.Millisecond
	MaxTTL         = 24 * time.Hour
	MaxWait        = 60 * time.Second
	expiryChunk    = 1000
)

// Event types, all on the topic "locks".
const (
	Topic    = "locks"
	Acquired = "lock.acquired"
	Renewed  = "lock.renewed"
	Released = "lock.released"
	Expired  = "lock.expired"
)

// Store is what the manager reads: the committed state.
type Store interface {
	Get(key []byte) ([]byte, error)
	NewIter(lower, upper []byte) (*pebble.Iterator, error)
}

// Sequencer is where the manager's commands go.
type Sequencer interface {
	Submit(ctx context.Context, cmd wal.Command) (any, error)
}

var (
	_ Store     = (*storage.DB)(nil)
	_ Sequencer = (*wal.Sequencer)(nil)
)

// Config configures a Manager.
type Config struct {
	// Registerer receives the metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
	// Now is the clock of waits and the expiry loop (commands use the
	// sequencer's). Nil means time.Now.
	Now func() time.Time
}

// Lock is a held lock, as the API shows it.
type Lock struct {
	LockID       string   `json:"lock_id"`
	Resources    []string `json:"resources"`
	Holder       string   `json:"holder"`
	FencingToken uint64   `json:"fencing_token"`
	AcquiredAt   string   `json:"acquired_at"`
	ExpiresAt    string   `json:"expires_at"`
}

// record is a lock as stored.
type record struct {
	ID           ulid.ULID `json:"id"`
	Resources    []string  `json:"resources"`
	Holder       string    `json:"holder"`
	FencingToken uint64    `json:"fencing_token"`
	AcquiredAt   int64     `json:"acquired_at"`
	ExpiresAt    int64     `json:"expires_at"`
}

func (r *record) public() *Lock {
	return &Lock{
		LockID: r.ID.String(), Resources: r.Resources, Holder: r.Holder, FencingToken: r.FencingToken,
		AcquiredAt: wal.FormatTime(time.Unix(0, r.AcquiredAt)), ExpiresAt: wal.FormatTime(time.Unix(0, r.ExpiresAt)),
	}
}

// Manager runs the lock commands and the expiry loop.
type Manager struct {
	store Store
	seq   Sequencer
	cfg   Config
	log   *slog.Logger
	q     queues
	m     metrics

	expLow    storage.ScanFloor // where expiry scans start
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	started   bool
	mu        sync.Mutex // guards started
}

type metrics struct {
	acquired, conflicts, expired prometheus.Counter
	expiryLag                    prometheus.Histogram
	waiting                      prometheus.Gauge
}

// New returns a manager over store and seq; Start starts its expiry loop.
func New(store Store, seq Sequencer, cfg Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		store: store, seq: seq, cfg: cfg, log: log,
		q:    queues{q: map[string][]*waiter{}},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		m: metrics{
			acquired:  prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_locks_acquired_total", Help: "Locks acquired."}),
			conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_locks_conflicts_total", Help: "Acquire requests answered 409 (held)."}),
			expired:   prometheus.NewCounter(prometheus.CounterOpts{Name: "engram_locks_expired_total", Help: "Locks that expired without a release."}),
			expiryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "engram_lock_expiry_lag_seconds", Help: "From a lock's expires_at to the lock.expired event the expiry loop wrote.",
				Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
			}),
			waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "engram_locks_waiting", Help: "Acquire requests waiting for a lock."}),
		},
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.m.acquired, m.m.conflicts, m.m.expired, m.m.expiryLag, m.m.waiting} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("lockmgr: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func invalidf(format string, args ...any) error {
	return engine.Errorf(engine.ErrInvalid, format, args...)
}

func gonef(format string, args ...any) error {
	return engine.Errorf(engine.ErrGone, format, args...)
}

func notFoundf(format string, args ...any) error {
	return engine.Errorf(engine.ErrNotFound, format, args...)
}

// CheckResource validates a lock resource: 1 to 512 bytes of UTF-8 without
// control characters.
func CheckResource(field, r string) error {
	if r == "" {
		return invalidf("%s: required", field)
	}
	if len(r) > MaxResourceLen {
		return invalidf("%s: longer than %d bytes", field, MaxResourceLen)
	}
	if !utf8.ValidString(r) {
		return invalidf("%s: not valid UTF-8", field)
	}
	for _, c := range r {
		if unicode.IsControl(c) {
			return invalidf("%s: %q holds a control character", field, engine.Truncate(r))
		}
	}
	return nil
}

// AcquireInput is the body of POST /v1/locks.
type AcquireInput struct {
	Resources []string `json:"resources"`
	Holder    string   `json:"holder"`
	TTLMs     *int64   `json:"ttl_ms"`
	WaitMs    *int64   `json:"wait_ms"`
}

func checkTTL(ttl *int64) (time.Duration, error) {
	if ttl == nil {
		return 0, invalidf("ttl_ms: required")
	}
	if *ttl < MinTTL.Milliseconds() || *ttl > MaxTTL.Milliseconds() {
		return 0, invalidf("ttl_ms: %d out of range %d..%d", *ttl, MinTTL.Milliseconds(), MaxTTL.Milliseconds())
	}
	return time.Duration(*ttl) * time.Millisecond, nil
}

// Acquire takes every resource or none. While one is held it waits up to
// wait_ms (in line behind earlier waiters), then answers a conflict naming
// the holder.
func (m *Manager) Acquire(ctx context.Context, in AcquireInput) (*Lock, error) {
	if len(in.Resources) == 0 || len(in.Resources) > MaxResources {
		return nil, invalidf("resources: %d resources, want 1..%d", len(in.Resources), MaxResources)
	}
	seen := make(map[string]bool, len(in.Resources))
	for i, r := range in.Resources {
		field := fmt.Sprintf("resources[%d]", i)
		if err := CheckResource(field, r); err != nil {
			return nil, err
		}
		if seen[r] {
			return nil, invalidf("%s: %q is listed twice", field, engine.Truncate(r))
		}
		seen[r] = true
	}
	if in.Holder == "" {
		return nil, invalidf("holder: required")
	}
	if len(in.Holder) > MaxHolderLen || !utf8.ValidString(in.Holder) || slices.ContainsFunc([]rune(in.Holder), unicode.IsControl) {
		return nil, invalidf("holder: must be 1 to %d bytes of UTF-8 without control characters", MaxHolderLen)
	}
	ttl, err := checkTTL(in.TTLMs)
	if err != nil {
		return nil, err
	}
	var wait time.Duration
	if in.WaitMs != nil {
		if *in.WaitMs < 0 || *in.WaitMs > MaxWait.Milliseconds() {
			return nil, invalidf("wait_ms: %d out of range 0..%d", *in.WaitMs, MaxWait.Milliseconds())
		}
		wait = time.Duration(*in.WaitMs) * time.Millisecond
	}
	resources := slices.Clone(in.Resources)

	w := m.q.enqueue(resources)
	waiting := false
	defer func() {
		if waiting {
			m.m.waiting.Dec()
		}
		m.q.remove(w)
	}()
	deadline := m.cfg.Now().Add(wait)
	var last error
	for {
		if m.q.isHead(w) {
			lock, err := m.tryAcquire(ctx, resources, in.Holder, ttl)
			if err == nil || !errors.Is(err, engine.ErrConflict) {
				if err == nil {
					m.m.acquired.Inc()
				}
				return lock, err
			}
			last = err
		}
		left := deadline.Sub(m.cfg.Now())
		if left <= 0 {
			break
		}
		if !waiting {
			waiting = true
			m.m.waiting.Inc()
		}
		t := time.NewTimer(left)
		select {
		case <-w.ready:
		case <-t.C:
		case <-ctx.Done():
		case <-m.stop:
		}
		t.Stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		select {
		case <-m.stop:
			return nil, &engine.Error{Kind: wal.ErrClosed, Msg: "the server is shutting down"}
		default:
		}
	}
	m.m.conflicts.Inc()
	if last == nil {
		// Never first in line: say who holds what, or who waits.
		last = m.conflictFor(resources)
	}
	return nil, last
}

// conflictFor describes why resources are not available to a newcomer.
func (m *Manager) conflictFor(resources []string) error {
	for _, r := range resources {
		if l, err := m.Get(r); err == nil {
			return heldError(r, l)
		}
	}
	return &engine.Error{Kind: engine.ErrConflict, Msg: fmt.Sprintf("resources: other acquirers are waiting for %q; wait with wait_ms to queue behind them", engine.Truncate(resources[0])),
		Details: map[string]any{"resource": resources[0]}}
}

func heldError(resource string, l *Lock) error {
	return &engine.Error{Kind: engine.ErrConflict,
		Msg:     fmt.Sprintf("resource %q is held by %q until %s", engine.Truncate(resource), engine.Truncate(l.Holder), l.ExpiresAt),
		Details: map[string]any{"held_by": l.Holder, "lock_id": l.LockID, "resource": resource, "expires_at": l.ExpiresAt}}
}

// ltx is one lock command's view.
type ltx struct {
	tx  *wal.Tx
	now int64
	// freed are resources this command released (waiters to wake).
	freed []string
	// deadline is the earliest expiry this command wrote (0: none).
	deadline int64
	// expired counts the locks this command dropped as expired.
	expired int
}

func (l *ltx) get(id ulid.ULID) (*record, error) {
	v, err := l.tx.Get(storage.LockKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("lockmgr: lock %s: %w", id, err)
	}
	return &r, nil
}

func (l *ltx) holderOf(resource string) (*record, error) {
	v, err := l.tx.Get(storage.LockResourceKey(resource))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(v) != 16 {
		return nil, fmt.Errorf("lockmgr: corrupt resource entry for %q", resource)
	}
	var id ulid.ULID
	copy(id[:], v)
	return l.get(id)
}

// put writes a lock's record, and its entry in the expiry index with a
// copy of the record (so that the expiry loop reads no record per lock).
func (l *ltx) put(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("lockmgr: encode lock: %w", err)
	}
	l.tx.Set(storage.LockKey(r.ID), b)
	l.tx.Set(storage.LockExpiryKey(r.ExpiresAt, r.ID), b)
	return nil
}

// drop deletes a lock and emits typ (released or expired) for it.
func (l *ltx) drop(r *record, typ string) error {
	for _, res := range r.Resources {
		l.tx.Delete(storage.LockResourceKey(res))
	}
	l.tx.Delete(storage.LockExpiryKey(r.ExpiresAt, r.ID))
	l.tx.Delete(storage.LockKey(r.ID))
	l.freed = append(l.freed, r.Resources...)
	if typ == Expired {
		l.expired++
	}
	return l.emit(typ, r)
}

func (l *ltx) emit(typ string, r *record) error {
	b, err := json.Marshal(r.public())
	if err != nil {
		return err
	}
	l.tx.Emit(Topic, typ, b, nil)
	return nil
}

func (m *Manager) submit(ctx context.Context, fn func(l *ltx) (any, error)) (any, *ltx, error) {
	var l *ltx
	res, err := m.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		l = &ltx{tx: tx, now: tx.Now().UnixNano()}
		return fn(l)
	})
	if err != nil {
		return nil, nil, err
	}
	if l.expired > 0 {
		m.m.expired.Add(float64(l.expired))
	}
	if len(l.freed) > 0 {
		m.q.wakeResources(l.freed)
	}
	if l.deadline != 0 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	return res, l, nil
}

func (m *Manager) tryAcquire(ctx context.Context, resources []string, holder string, ttl time.Duration) (*Lock, error) {
	res, _, err := m.submit(ctx, func(l *ltx) (any, error) {
		for _, res := range resources {
			cur, err := l.holderOf(res)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				continue
			}
			if cur.ExpiresAt > l.now {
				return nil, heldError(res, cur.public())
			}
			// Free from expires_at on: its lock.expired comes first.
			if err := l.drop(cur, Expired); err != nil {
				return nil, err
			}
		}
		var token uint64
		if v, err := l.tx.Get(storage.FencingKey()); err == nil && len(v) == 8 {
			token = binary.BigEndian.Uint64(v)
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		token++
		l.tx.Set(storage.FencingKey(), binary.BigEndian.AppendUint64(nil, token))
		r := &record{ID: ulid.Make(), Resources: resources, Holder: holder, FencingToken: token,
			AcquiredAt: l.now, ExpiresAt: l.now + int64(ttl)}
		for _, res := range resources {
			l.tx.Set(storage.LockResourceKey(res), r.ID[:])
		}
		l.deadline = r.ExpiresAt
		if err := l.put(r); err != nil {
			return nil, err
		}
		if err := l.emit(Acquired, r); err != nil {
			return nil, err
		}
		return r.public(), nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*Lock), nil
}

// ParseLockID parses a lock id.
func ParseLockID(s string) (ulid.ULID, error) {
	id, err := ulid.ParseStrict(s)
	if err != nil {
		return id, invalidf("lock_id: %q is not a ULID", engine.Truncate(s))
	}
	return id, nil
}

// liveLock returns the lock with id if it is held and not expired; an
// expired one is dropped (lock.expired) and reported gone.
func (l *ltx) liveLock(id ulid.ULID) (*record, error) {
	r, err := l.get(id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, gonef("lock %s: released or expired", id)
	}
	if r.ExpiresAt <= l.now {
		if err := l.drop(r, Expired); err != nil {
			return nil, err
		}
		return nil, errExpiredNow
	}
	return r, nil
}

// errExpiredNow marks a command that dropped an expired lock and must still
// commit that (the answer is gone).
var errExpiredNow = errors.New("lockmgr: expired now")

// Renew extends a held lock to now + ttl; gone if it was released or has
// expired.
func (m *Manager) Renew(ctx context.Context, lockID string, ttlMs *int64) (*Lock, error) {
	id, err := ParseLockID(lockID)
	if err != nil {
		return nil, err
	}
	ttl, err := checkTTL(ttlMs)
	if err != nil {
		return nil, err
	}
	res, _, err := m.submit(ctx, func(l *ltx) (any, error) {
		r, err := l.liveLock(id)
		if errors.Is(err, errExpiredNow) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		l.tx.Delete(storage.LockExpiryKey(r.ExpiresAt, r.ID))
		r.ExpiresAt = l.now + int64(ttl)
		l.deadline = r.ExpiresAt
		if err := l.put(r); err != nil {
			return nil, err
		}
		if err := l.emit(Renewed, r); err != nil {
			return nil, err
		}
		return r.public(), nil
	})
	if err != nil {
		return nil, err
	}
	if res == nil || res.(*Lock) == nil {
		return nil, gonef("lock %s: expired", id)
	}
	return res.(*Lock), nil
}

// Release frees a held lock; gone if it was released or has expired.
func (m *Manager) Release(ctx context.Context, lockID string) error {
	id, err := ParseLockID(lockID)
	if err != nil {
		return err
	}
	res, _, err := m.submit(ctx, func(l *ltx) (any, error) {
		r, err := l.liveLock(id)
		if errors.Is(err, errExpiredNow) {
			return false, nil
		}
		if err != nil {
			return nil, err
		}
		return true, l.drop(r, Released)
	})
	if err != nil {
		return err
	}
	if !res.(bool) {
		return gonef("lock %s: expired", id)
	}
	return nil
}

// Get returns the live lock holding resource; not found when it is free.
func (m *Manager) Get(resource string) (*Lock, error) {
	if err := CheckResource("resource", resource); err != nil {
		return nil, err
	}
	v, err := m.store.Get(storage.LockResourceKey(resource))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFoundf("resource %q is not locked", engine.Truncate(resource))
	}
	if err != nil {
		return nil, err
	}
	r, err := m.read(v)
	if err != nil {
		return nil, err
	}
	if r == nil || r.ExpiresAt <= m.cfg.Now().UnixNano() {
		return nil, notFoundf("resource %q is not locked", engine.Truncate(resource))
	}
	return r.public(), nil
}

func (m *Manager) read(idBytes []byte) (*record, error) {
	if len(idBytes) != 16 {
		return nil, fmt.Errorf("lockmgr: corrupt resource entry")
	}
	var id ulid.ULID
	copy(id[:], idBytes)
	v, err := m.store.Get(storage.LockKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("lockmgr: lock %s: %w", id, err)
	}
	return &r, nil
}

// List lists the live locks holding resources that start with prefix, by
// resource; a lock holding several matching resources is listed once per
// page.
func (m *Manager) List(prefix string, limit int, cursor string) ([]*Lock, string, error) {
	if len(prefix) > MaxResourceLen || !utf8.ValidString(prefix) {
		return nil, "", invalidf("prefix: must be at most %d bytes of UTF-8", MaxResourceLen)
	}
	limit, err := engine.CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	p := storage.LockResourcePrefix(prefix)
	lower := p
	if cursor != "" {
		after, err := engine.DecodeCursor("lock", cursor)
		if err != nil {
			return nil, "", err
		}
		lower = append(storage.LockResourceKey(after), 0)
		// A cursor of another listing must not reach outside the prefix.
		if bytes.Compare(lower, p) < 0 {
			lower = p
		}
	}
	it, err := m.store.NewIter(lower, storage.PrefixEnd(p))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	now := m.cfg.Now().UnixNano()
	out := []*Lock{}
	seen := map[ulid.ULID]bool{}
	var last string
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, engine.EncodeCursor("lock", last), nil
		}
		res, err := storage.LockResourceOf(it.Key())
		if err != nil {
			return nil, "", err
		}
		last = res
		r, err := m.read(it.Value())
		if err != nil {
			return nil, "", err
		}
		if r == nil || r.ExpiresAt <= now || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		out = append(out, r.public())
	}
	return out, "", it.Error()
}
