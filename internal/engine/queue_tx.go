package engine

import (
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"engram/internal/wal"
)

// PublishTx publishes one message inside another command (cron fires one
// in the command that records the fire, so that a crash cannot separate
// the two). It returns the message and a function to call once the command
// has committed (it wakes the topic's waiting leases and the queue timer).
// The caller validates topic and payload (ValidName, valid JSON).
func (e *Engine) PublishTx(tx *wal.Tx, topic string, payload json.RawMessage) (Published, func(), error) {
	if !ValidName(topic) {
		return Published{}, nil, invalidf("queue: %q is not a valid topic", Truncate(topic))
	}
	q := e.newQtx(tx)
	m := &qmsg{
		ID: ulid.Make(), Topic: topic, Payload: payload, MaxAttempts: DefaultMaxAttempts,
		BackoffMs: DefaultBackoff.Milliseconds(), PublishedAt: q.now, AvailableAt: q.now,
	}
	m.Seq = tx.NextSeq()
	q.putPayload(m)
	if err := q.enqueue(m, true); err != nil {
		return Published{}, nil, err
	}
	ev := msgEvent{MaxAttempts: m.MaxAttempts, PublishedAt: fmtNano(m.PublishedAt), AvailableAt: fmtNano(m.AvailableAt)}
	if seq := q.emit(QueuePublished, m, ev); seq != m.Seq {
		return Published{}, nil, fmt.Errorf("engine: publish seq %d, planned %d", seq, m.Seq)
	}
	q.finish()
	after := func() {
		e.qm.published.Inc()
		e.afterQueueCommand(q)
	}
	return Published{ID: m.ID.String(), Seq: m.Seq, AvailableAt: fmtNano(m.AvailableAt)}, after, nil
}
