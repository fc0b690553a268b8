package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"engram/internal/jsonx"
	"engram/internal/storage"
	"engram/internal/wal"
)

// Presence: a /stream subscriber's join and leave are events
// (stream.join, stream.leave) on the group's topic. Each join is recorded
// until its leave, so that after a crash the leaves nobody emitted are
// emitted at the next start (RecoverJoins) and presence never sticks.

// Join is a /stream subscription as presence sees it.
type Join struct {
	Stream         string  `json:"stream"`
	Group          string  `json:"group"`
	Item           *string `json:"id"`
	SubscriptionID string  `json:"subscription_id"`
	// Context is the subscriber's auth identity, nil without auth.
	Context *string `json:"context"`
}

// MaxSubscriptionIDLen bounds a /stream subscriptionId.
const MaxSubscriptionIDLen = 256

// Check validates a join as a client sent it.
func (j *Join) Check() error {
	if err := checkName("streamName", j.Stream); err != nil {
		return err
	}
	if err := checkName("groupId", j.Group); err != nil {
		return err
	}
	if j.Item != nil {
		if err := checkName("id", *j.Item); err != nil {
			return err
		}
	}
	if j.SubscriptionID == "" {
		return invalidf("subscriptionId: required")
	}
	if len(j.SubscriptionID) > MaxSubscriptionIDLen {
		return invalidf("subscriptionId: longer than %d bytes", MaxSubscriptionIDLen)
	}
	return nil
}

// presenceData is the data of stream.join and stream.leave.
func (j *Join) presenceData() []byte {
	b := append([]byte(`{"subscription_id":`), jsonx.AppendString(nil, j.SubscriptionID)...)
	b = append(b, `,"id":`...)
	b = append(b, orNullString(j.Item)...)
	b = append(b, `,"context":`...)
	b = append(b, orNullString(j.Context)...)
	return append(b, '}')
}

// JoinStream records a join and emits stream.join. It returns the join's
// id, which LeaveStream takes.
func (e *Engine) JoinStream(ctx context.Context, j Join) (ulid.ULID, error) {
	if err := j.Check(); err != nil {
		return ulid.ULID{}, err
	}
	rec, err := json.Marshal(&j)
	if err != nil {
		return ulid.ULID{}, fmt.Errorf("engine: encode join: %w", err)
	}
	id := ulid.Make()
	_, err = e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		tx.Set(storage.StreamJoinKey(id), rec)
		tx.Emit(StreamTopic(j.Stream, j.Group), StreamJoin, j.presenceData(), nil)
		return nil, nil
	})
	return id, err
}

// LeaveStream emits the stream.leave of a recorded join and forgets it. A
// join already left (or recovered) is not an error and emits nothing.
func (e *Engine) LeaveStream(ctx context.Context, id ulid.ULID) error {
	_, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		return nil, leaveTx(tx, id)
	})
	return err
}

func leaveTx(tx *wal.Tx, id ulid.ULID) error {
	k := storage.StreamJoinKey(id)
	raw, err := tx.Get(k)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var j Join
	if err := json.Unmarshal(raw, &j); err != nil {
		return fmt.Errorf("engine: join %s: %w", id, err)
	}
	tx.Delete(k)
	tx.Emit(StreamTopic(j.Stream, j.Group), StreamLeave, j.presenceData(), nil)
	return nil
}

// recoverChunk bounds the leaves one recovery command emits.
const recoverChunk = 512

// RecoverJoins emits stream.leave for every join still recorded: at startup,
// before any client can join, these are joins of a process that ended
// without their leaves. It returns how many it closed.
func (e *Engine) RecoverJoins(ctx context.Context) (int, error) {
	total := 0
	for {
		ids, err := e.recordedJoins(recoverChunk)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		_, err = e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
			for _, id := range ids {
				if err := leaveTx(tx, id); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		if err != nil {
			return total, err
		}
		total += len(ids)
	}
}

func (e *Engine) recordedJoins(max int) ([]ulid.ULID, error) {
	prefix := storage.StreamJoinPrefix()
	it, err := e.store.NewIter(prefix, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ids []ulid.ULID
	for ok := it.First(); ok && len(ids) < max; ok = it.Next() {
		k := it.Key()
		if len(k) != 17 {
			return nil, fmt.Errorf("engine: malformed join key %x", k)
		}
		var id ulid.ULID
		copy(id[:], k[1:])
		ids = append(ids, id)
	}
	return ids, it.Error()
}
