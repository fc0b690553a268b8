package wal

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"engram/internal/storage"
)

// A Tx is one command's view of the store while it runs on the writer. Its
// writes are staged and reach the batch only if the command succeeds.
type Tx struct {
	batch *pebble.Batch
	now   time.Time
	first uint64 // seq of this command's first event
	// staged indexes ops by key for Get. It is built only when the command
	// reads after it has written (most commands read first, then write), and
	// then kept up to date.
	staged map[string]int
	ops    []op
	events []Event
}

type op struct {
	key, value []byte
	del        bool
}

// Now is the command's time: the same for all of its events.
func (tx *Tx) Now() time.Time { return tx.now }

// Get reads key as the command sees it: its own staged writes first, then
// the writes of earlier commands in the batch, then the committed store. The
// returned slice is the caller's.
func (tx *Tx) Get(key []byte) ([]byte, error) {
	if tx.staged == nil && len(tx.ops) > 0 {
		tx.staged = make(map[string]int, len(tx.ops))
		for i, o := range tx.ops {
			tx.staged[string(o.key)] = i // a later op of a key wins
		}
	}
	if i, ok := tx.staged[string(key)]; ok {
		if tx.ops[i].del {
			return nil, storage.ErrNotFound
		}
		return append([]byte(nil), tx.ops[i].value...), nil
	}
	v, closer, err := tx.batch.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wal: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// Has reports whether key exists as the command sees it.
func (tx *Tx) Has(key []byte) (bool, error) {
	_, err := tx.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// NewIter iterates over [lower, upper) as the earlier commands of the batch
// left it. It does not see this command's own staged writes.
func (tx *Tx) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	it, err := tx.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("wal: iter: %w", err)
	}
	return it, nil
}

// Set stages key = value. Both slices are kept: the caller must not change
// them afterwards.
func (tx *Tx) Set(key, value []byte) { tx.stage(op{key: key, value: value}) }

// Delete stages the deletion of key.
func (tx *Tx) Delete(key []byte) { tx.stage(op{key: key, del: true}) }

// stage records a write. Without the index, writes of one key simply follow
// each other in ops and reach the batch in order, so the last one wins.
func (tx *Tx) stage(o op) {
	if tx.staged != nil {
		if i, ok := tx.staged[string(o.key)]; ok {
			tx.ops[i] = o
			return
		}
		tx.staged[string(o.key)] = len(tx.ops)
	}
	tx.ops = append(tx.ops, o)
}

// Emit logs one event and returns its seq. data is the event's data JSON as
// subscribers receive it; it is kept until the event is published, so the
// caller must not change it. When ref is not nil, data is the value of the state
// record at ref (written by this command) and the log record refers to it
// instead of copying it; otherwise data is stored inline in the log record.
func (tx *Tx) Emit(topic, typ string, data, ref []byte) uint64 {
	return tx.emit(topic, typ, data, storage.Record{Ref: ref})
}

// EmitUnit is Emit for a work unit: ref is the unit's stored value
// (storage.AppendUnitValue), whose JSON is data.
func (tx *Tx) EmitUnit(topic, typ string, data, ref []byte) uint64 {
	return tx.emit(topic, typ, data, storage.Record{Ref: ref, RefUnit: true})
}

func (tx *Tx) emit(topic, typ string, data []byte, rec storage.Record) uint64 {
	seq := tx.first + uint64(len(tx.events))
	rec.TimeUnixNano, rec.Type, rec.Topic = tx.now.UnixNano(), typ, topic
	if rec.Ref == nil {
		rec.Inline = data
	}
	tx.Set(storage.LogKey(seq), storage.AppendRecord(nil, &rec))
	for _, t := range storage.IndexTopics(topic) {
		tx.Set(storage.TopicKey(t, seq), nil)
	}
	tx.events = append(tx.events, Event{Seq: seq, Time: tx.now, Type: typ, Topic: topic, data: data})
	return seq
}

// NextSeq is the seq the next Emit will return.
func (tx *Tx) NextSeq() uint64 { return tx.first + uint64(len(tx.events)) }
