package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpoint writes a consistent copy of the store into dir, which must not
// exist yet and should be on the same filesystem as the store: its
// immutable table files are hard-linked, the rest (manifest, options, the
// write-ahead log up to now) copied. The log is synced first, so every
// write committed before the call is in the copy, with --sync=none too.
// Writes go on meanwhile. The copy is a store of its own: OpenReadOnly
// reads it, Open serves it.
func (db *DB) Checkpoint(dir string) error {
	if err := db.pdb.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("storage: checkpoint into %q: %w", dir, err)
	}
	return nil
}

// OpenReadOnly opens the store in dir for reading only: a checkpoint or a
// restored backup. It never writes a key (Pebble adds its LOCK file), does
// not take the data-dir lock, and fails with ErrNoLayout on a dir without
// a layout version and with ErrNewerLayout on a newer layout. Writes to
// the returned DB fail.
func OpenReadOnly(dir string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cache := pebble.NewCache(8 << 20)
	defer cache.Unref()
	pdb, err := pebble.Open(dir, &pebble.Options{
		Cache: cache, ReadOnly: true, ErrorIfNotExists: true, Logger: pebbleLogger{log},
	})
	if err != nil {
		return nil, fmt.Errorf("storage: open %q read-only: %w", dir, err)
	}
	db := &DB{pdb: pdb, lock: nopCloser{}, dir: dir, log: log}
	v, err := db.Layout()
	switch {
	case err != nil:
	case v > LayoutVersion:
		err = fmt.Errorf("%w: %q has layout %d, this engram reads up to %d", ErrNewerLayout, dir, v, LayoutVersion)
	case v < LayoutVersion:
		err = fmt.Errorf("storage: %q has layout %d, which this engram cannot read (it reads %d)", dir, v, LayoutVersion)
	}
	if err == nil {
		db.head, err = db.readHead()
	}
	if err != nil {
		pdb.Close()
		return nil, err
	}
	return db, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// Layout reads the store's layout version: ErrNoLayout when it has none.
func (db *DB) Layout() (uint32, error) {
	v, err := db.Get(metaLayout)
	if errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("%w: %q", ErrNoLayout, db.dir)
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 4 {
		return 0, fmt.Errorf("storage: %q: corrupt layout version", db.dir)
	}
	return binary.BigEndian.Uint32(v), nil
}

// Whole-namespace bounds and decoders for tools that check the layout
// (engram verify), next to the per-entity ones in keys.go.

// TopicIndexPrefix bounds every topic-index entry of every topic.
func TopicIndexPrefix() []byte { return []byte{nsTopic} }

// DecodeTopicKey splits a topic-index entry into its topic and seq.
func DecodeTopicKey(key []byte) (topic string, seq uint64, err error) {
	if len(key) == 0 || key[0] != nsTopic {
		return "", 0, ErrBadKey
	}
	topic, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 8 {
		return "", 0, ErrBadKey
	}
	return topic, binary.BigEndian.Uint64(rest), nil
}

// UnitsPrefix bounds every unit location key (UnitKey).
func UnitsPrefix() []byte { return []byte{nsUnit} }

// DecodeContextUnitKey splits a context-unit key into its context id and
// the unit's seq.
func DecodeContextUnitKey(key []byte) (contextID string, seq uint64, err error) {
	if len(key) == 0 || key[0] != nsContextUnit {
		return "", 0, ErrBadKey
	}
	contextID, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 8 {
		return "", 0, ErrBadKey
	}
	return contextID, binary.BigEndian.Uint64(rest), nil
}
