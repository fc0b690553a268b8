package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrNotFound reports a key that is not stored.
	ErrNotFound = errors.New("storage: not found")
	// ErrLocked reports a data dir held by another process.
	ErrLocked = errors.New("storage: data dir is in use by another process")
	// ErrNewerLayout reports a data dir written by a newer Engram.
	ErrNewerLayout = errors.New("storage: data dir has a newer layout")
	// ErrNoLayout reports a non-empty data dir without a layout version.
	ErrNoLayout = errors.New("storage: data dir has no layout version")
)

// Config configures Open.
type Config struct {
	// Dir is the data directory. Required; created if missing.
	Dir string
	// FS replaces the real filesystem (tests use vfs.NewCrashableMem). Nil
	// means the operating system's filesystem.
	FS vfs.FS
	// CacheBytes is the block cache size. Zero means 64 MiB.
	CacheBytes int64
}

// DB is the opened store.
type DB struct {
	pdb     *pebble.DB
	lock    io.Closer
	dir     string
	head    uint64
	log     *slog.Logger
	created bool
}

// Open opens (creating if needed) the store in cfg.Dir. It fails fast with
// ErrLocked when another process holds the dir, and with ErrNewerLayout when
// the dir was written by a newer layout.
func Open(cfg Config, log *slog.Logger) (*DB, error) {
	if cfg.Dir == "" {
		return nil, errors.New("storage: Config.Dir is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = 64 << 20
	}
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create %q: %w", cfg.Dir, err)
	}
	// Our own lock, taken before Pebble's, so that a second process gets a
	// clear message rather than Pebble's internal one.
	lock, err := fs.Lock(filepath.Join(cfg.Dir, "engram.lock"))
	if err != nil {
		return nil, fmt.Errorf("%w: %q (%v)", ErrLocked, cfg.Dir, err)
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       64 << 20,
		Logger:             pebbleLogger{log},
	}
	pdb, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("storage: open %q: %w", cfg.Dir, err)
	}
	db := &DB{pdb: pdb, lock: lock, dir: cfg.Dir, log: log}
	if err := db.checkLayout(); err != nil {
		db.Close()
		return nil, err
	}
	if db.head, err = db.readHead(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) checkLayout() error {
	v, err := db.Get(metaLayout)
	switch {
	case err == nil:
		if len(v) != 4 {
			return fmt.Errorf("storage: %q: corrupt layout version", db.dir)
		}
		got := binary.BigEndian.Uint32(v)
		if got > LayoutVersion {
			return fmt.Errorf("%w: %q has layout %d, this server reads up to %d; use a newer engram", ErrNewerLayout, db.dir, got, LayoutVersion)
		}
		if got < LayoutVersion {
			return fmt.Errorf("storage: %q has layout %d, which this server cannot read (it reads %d)", db.dir, got, LayoutVersion)
		}
		return nil
	case errors.Is(err, ErrNotFound):
	default:
		return err
	}
	// No version key: only a brand-new, empty store may be stamped.
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if !empty {
		return fmt.Errorf("%w: %q", ErrNoLayout, db.dir)
	}
	db.created = true
	return db.pdb.Set(metaLayout, binary.BigEndian.AppendUint32(nil, LayoutVersion), pebble.Sync)
}

func (db *DB) readHead() (uint64, error) {
	v, err := db.Get(metaHeadSeq)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("storage: %q: corrupt head seq", db.dir)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Created reports whether Open created a new store.
func (db *DB) Created() bool { return db.created }

// Dir is the data directory.
func (db *DB) Dir() string { return db.dir }

// HeadSeq is the last seq committed when the store was opened. The sequencer
// owns the live value from then on.
func (db *DB) HeadSeq() uint64 { return db.head }

// SetHeadSeq stages the head seq in b; the sequencer calls it once per batch.
func SetHeadSeq(b *pebble.Batch, seq uint64) error {
	return b.Set(metaHeadSeq, binary.BigEndian.AppendUint64(nil, seq), nil)
}

// Get returns a copy of the value at key, or ErrNotFound.
func (db *DB) Get(key []byte) ([]byte, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// NewIter iterates over keys in [lower, upper).
func (db *DB) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("storage: iter: %w", err)
	}
	return it, nil
}

// NewIndexedBatch starts a batch whose reads see its own writes over the
// committed store.
func (db *DB) NewIndexedBatch() *pebble.Batch { return db.pdb.NewIndexedBatch() }

// CommitNoSyncWait applies b (it is visible to reads on return) and queues
// its fsync; b.SyncWait() then waits for that fsync. Pebble makes a batch
// visible before its WAL sync in the waiting path too, so this is not weaker;
// it lets the sequencer apply the next batch while this one syncs. The
// caller must call SyncWait before closing b.
func (db *DB) CommitNoSyncWait(b *pebble.Batch) error {
	if err := db.pdb.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// Commit commits b, fsyncing the write-ahead log first when sync is set.
func (db *DB) Commit(b *pebble.Batch, sync bool) error {
	o := pebble.NoSync
	if sync {
		o = pebble.Sync
	}
	if err := b.Commit(o); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// Metrics exposes Pebble's metrics.
func (db *DB) Metrics() *pebble.Metrics { return db.pdb.Metrics() }

// Close closes the store and releases the data-dir lock.
func (db *DB) Close() error {
	err := db.pdb.Close()
	if lerr := db.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// pebbleLogger sends Pebble's own log lines to slog. Pebble calls Fatalf on
// unrecoverable storage errors; it must not return.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	os.Exit(1)
}

// NewSnapshot returns a point-in-time view for reads that must agree with
// each other (replay of the log while retention deletes behind it).
func (db *DB) NewSnapshot() *pebble.Snapshot { return db.pdb.NewSnapshot() }

// NewBatch starts a plain write batch, for maintenance outside the
// sequencer (log retention) that never touches what the sequencer writes.
func (db *DB) NewBatch() *pebble.Batch { return db.pdb.NewBatch() }

// OldestSeq is the oldest seq that retention keeps (1 when it never ran).
func (db *DB) OldestSeq() (uint64, error) {
	v, err := db.Get(metaOldestSeq)
	if errors.Is(err, ErrNotFound) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("storage: %q: corrupt oldest seq", db.dir)
	}
	return binary.BigEndian.Uint64(v), nil
}

// SetOldestSeq stages the oldest kept seq in b.
func SetOldestSeq(b *pebble.Batch, seq uint64) error {
	return b.Set(metaOldestSeq, binary.BigEndian.AppendUint64(nil, seq), nil)
}

// SnapshotHeadSeq reads the head seq as of snap: the last seq whose batch
// the snapshot holds (0 for an empty store).
func SnapshotHeadSeq(snap *pebble.Snapshot) (uint64, error) {
	v, closer, err := snap.Get(metaHeadSeq)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: get head: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, errors.New("storage: corrupt head seq")
	}
	return binary.BigEndian.Uint64(v), nil
}

// SnapshotOldestSeq reads the oldest seq retention keeps as of snap (1 when
// retention never ran).
func SnapshotOldestSeq(snap *pebble.Snapshot) (uint64, error) {
	v, closer, err := snap.Get(metaOldestSeq)
	if errors.Is(err, pebble.ErrNotFound) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: get oldest seq: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, errors.New("storage: corrupt oldest seq")
	}
	return binary.BigEndian.Uint64(v), nil
}
