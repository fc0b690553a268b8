package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// DeadMessage is a dead letter.
type DeadMessage struct {
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
	Attempt int             `json:"attempt"`
	Error   string          `json:"error"`
	DeadAt  string          `json:"dead_at"`
}

// ListDead lists a topic's dead letters in the order they died.
func (e *Engine) ListDead(topic string, limit int, cursor string) ([]DeadMessage, string, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, "", err
	}
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	prefix := storage.QueueDeadPrefix(topic)
	lower := prefix
	if cursor != "" {
		c, err := decodeCursor("dead", cursor)
		if err != nil {
			return nil, "", err
		}
		// The cursor is the last entry's key suffix (dead_at + id).
		lower = append(append(append([]byte(nil), prefix...), c...), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := make([]DeadMessage, 0, min(limit, 64))
	var last []byte
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, encodeCursor("dead", string(last)), nil
		}
		id, err := storage.TrailingID(it.Key())
		if err != nil {
			return nil, "", err
		}
		v, found, err := e.get(storage.QueueMsgKey(id))
		if err != nil {
			return nil, "", err
		}
		if !found {
			continue
		}
		var m qmsg
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, "", err
		}
		payload, found, err := e.get(storage.QueuePayloadKey(id))
		if err != nil {
			return nil, "", err
		}
		if !found {
			return nil, "", fmt.Errorf("engine: dead message %s has no payload", m.ID)
		}
		out = append(out, DeadMessage{ID: m.ID.String(), Payload: payload, Attempt: m.Attempt, Error: m.Error, DeadAt: fmtNano(m.DeadAt)})
		last = append(last[:0], it.Key()[len(prefix):]...)
	}
	return out, "", it.Error()
}

// Redrive moves every dead letter of a topic back to ready with attempt 0,
// in chunks, and returns how many it moved.
func (e *Engine) Redrive(ctx context.Context, topic string) (int, error) {
	if err := checkName("topic", topic); err != nil {
		return 0, err
	}
	total := 0
	for {
		var q *qtx
		res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
			q = e.newQtx(tx)
			prefix := storage.QueueDeadPrefix(topic)
			it, err := tx.NewIter(prefix, storage.PrefixEnd(prefix))
			if err != nil {
				return nil, err
			}
			var ids []ulid.ULID
			var keys [][]byte
			for ok := it.First(); ok && len(ids) < maxQueueChunk; ok = it.Next() {
				id, err := storage.TrailingID(it.Key())
				if err != nil {
					it.Close()
					return nil, err
				}
				ids = append(ids, id)
				keys = append(keys, append([]byte(nil), it.Key()...))
			}
			if err := it.Close(); err != nil {
				return nil, err
			}
			for i, id := range ids {
				m, err := q.get(id)
				if err != nil {
					return nil, err
				}
				if m == nil || m.State != queueStateDead {
					tx.Delete(keys[i]) // an entry without its dead message: drop it
					continue
				}
				q.unindex(m)
				m.Attempt, m.Error, m.DeadAt, m.AvailableAt = 0, "", 0, q.now
				head := true
				if m.Group != "" {
					if head, err = q.appendToGroup(m, tx.NextSeq()); err != nil {
						return nil, err
					}
				}
				if err := q.move(m, ""); err != nil {
					return nil, err
				}
				if err := q.enqueue(m, head); err != nil {
					return nil, err
				}
				q.emit(QueueRedriven, m, msgEvent{AvailableAt: fmtNano(m.AvailableAt)})
			}
			q.finish()
			return len(ids), nil
		})
		if err != nil {
			return total, err
		}
		e.afterQueueCommand(q)
		n := res.(int)
		total += n
		if n < maxQueueChunk {
			return total, nil
		}
	}
}

// QueueStats are a topic's messages by state. Ready counts messages that
// wait behind their FIFO group's head too.
type QueueStats struct {
	Topic   string `json:"topic"`
	Ready   int64  `json:"ready"`
	Leased  int64  `json:"leased"`
	Delayed int64  `json:"delayed"`
	Dead    int64  `json:"dead"`
}

// QueueStatsOf returns a topic's counts (all zero for a topic never used).
func (e *Engine) QueueStatsOf(topic string) (QueueStats, error) {
	if err := checkName("topic", topic); err != nil {
		return QueueStats{}, err
	}
	v, ok, err := e.get(storage.QueueStatsKey(topic))
	if err != nil || !ok {
		return QueueStats{Topic: topic}, err
	}
	c, err := decodeCounts(v)
	return QueueStats{Topic: topic, Ready: c.Ready, Leased: c.Leased, Delayed: c.Delayed, Dead: c.Dead}, err
}

// ListQueues lists the topics that hold messages, by name.
func (e *Engine) ListQueues(limit int, cursor string) ([]QueueStats, string, error) {
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	prefix := storage.QueueStatsPrefix()
	lower := prefix
	if cursor != "" {
		after, err := decodeCursor("queue", cursor)
		if err != nil {
			return nil, "", err
		}
		lower = append(storage.QueueStatsKey(after), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := make([]QueueStats, 0, min(limit, 64))
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, encodeCursor("queue", out[len(out)-1].Topic), nil
		}
		topic, err := storage.QueueStatsTopic(it.Key())
		if err != nil {
			return nil, "", err
		}
		c, err := decodeCounts(it.Value())
		if err != nil {
			return nil, "", err
		}
		out = append(out, QueueStats{Topic: topic, Ready: c.Ready, Leased: c.Leased, Delayed: c.Delayed, Dead: c.Dead})
	}
	return out, "", it.Error()
}
