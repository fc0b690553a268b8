package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// PublishInput is one message to publish.
type PublishInput struct {
	Payload     json.RawMessage `json:"payload"`
	DelayMs     *int64          `json:"delay_ms"`
	DedupeID    *string         `json:"dedupe_id"`
	MaxAttempts *int            `json:"max_attempts"`
	BackoffMs   *int64          `json:"backoff_ms"`
	Group       *string         `json:"group"`
}

// Published is a published message as publish answers it.
type Published struct {
	ID          string `json:"id"`
	Seq         uint64 `json:"seq"`
	AvailableAt string `json:"available_at"`
	// Duplicate is true when the dedupe id was seen in the window: the
	// message is the first one, not a new one.
	Duplicate bool `json:"duplicate,omitempty"`
}

type publishPlan struct {
	in          PublishInput
	payload     []byte
	delay       time.Duration
	maxAttempts int
	backoffMs   int64
}

func (e *Engine) checkPublish(prefix string, in PublishInput) (publishPlan, error) {
	p := publishPlan{in: in, maxAttempts: DefaultMaxAttempts, backoffMs: DefaultBackoff.Milliseconds()}
	// Errors name fields as the body has them: "payload" for one message,
	// "messages[3].payload" in a batch.
	field := "%s"
	if prefix != "" {
		field = strings.ReplaceAll(prefix, "%", "%%") + ".%s"
	}
	f := func(name string) string { return fmt.Sprintf(field, name) }
	if in.Payload == nil {
		return p, invalidf("%s: required (any JSON value)", f("payload"))
	}
	var err error
	if p.payload, err = e.checkValue(f("payload"), in.Payload); err != nil {
		return p, err
	}
	if in.DelayMs != nil {
		if *in.DelayMs < 0 || *in.DelayMs > MaxQueueDelay.Milliseconds() {
			return p, invalidf("%s: %d out of range 0..%d", f("delay_ms"), *in.DelayMs, MaxQueueDelay.Milliseconds())
		}
		p.delay = time.Duration(*in.DelayMs) * time.Millisecond
	}
	if in.DedupeID != nil {
		d := *in.DedupeID
		if d == "" || len(d) > MaxDedupeIDLen || !utf8.ValidString(d) {
			return p, invalidf("%s: must be 1 to %d bytes of UTF-8", f("dedupe_id"), MaxDedupeIDLen)
		}
	}
	if in.MaxAttempts != nil {
		if *in.MaxAttempts < 1 || *in.MaxAttempts > MaxAttemptsLimit {
			return p, invalidf("%s: %d out of range 1..%d", f("max_attempts"), *in.MaxAttempts, MaxAttemptsLimit)
		}
		p.maxAttempts = *in.MaxAttempts
	}
	if in.BackoffMs != nil {
		if *in.BackoffMs < 0 || *in.BackoffMs > MaxBackoff.Milliseconds() {
			return p, invalidf("%s: %d out of range 0..%d", f("backoff_ms"), *in.BackoffMs, MaxBackoff.Milliseconds())
		}
		p.backoffMs = *in.BackoffMs
	}
	if in.Group != nil {
		if err := checkName(f("group"), *in.Group); err != nil {
			return p, err
		}
	}
	return p, nil
}

// PublishOne publishes one message (errors name its fields as top-level
// fields of the body).
func (e *Engine) PublishOne(ctx context.Context, topic string, in PublishInput) (Published, error) {
	out, err := e.publish(ctx, topic, []PublishInput{in}, false)
	if err != nil {
		return Published{}, err
	}
	return out[0], nil
}

// Publish publishes a batch of messages to a topic, atomically: all or
// none. A message whose dedupe_id the topic saw in the last 24 h is not
// published again; its Published is the first one's, marked Duplicate.
func (e *Engine) Publish(ctx context.Context, topic string, ins []PublishInput) ([]Published, error) {
	return e.publish(ctx, topic, ins, true)
}

func (e *Engine) publish(ctx context.Context, topic string, ins []PublishInput, batch bool) ([]Published, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, err
	}
	if len(ins) == 0 || len(ins) > MaxPublishBatch {
		return nil, invalidf("messages: %d messages, want 1..%d", len(ins), MaxPublishBatch)
	}
	plans := make([]publishPlan, len(ins))
	for i, in := range ins {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("messages[%d]", i)
		}
		var err error
		if plans[i], err = e.checkPublish(prefix, in); err != nil {
			return nil, err
		}
	}
	var q *qtx
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		q = e.newQtx(tx)
		out := make([]Published, len(plans))
		for i, p := range plans {
			if p.in.DedupeID != nil {
				dup, ok, err := q.dedupeHit(topic, *p.in.DedupeID)
				if err != nil {
					return nil, err
				}
				if ok {
					out[i] = dup
					continue
				}
			}
			m := &qmsg{
				ID: ulid.Make(), Topic: topic, Payload: p.payload, MaxAttempts: p.maxAttempts,
				BackoffMs: p.backoffMs, PublishedAt: q.now, AvailableAt: q.now + int64(p.delay),
			}
			m.Seq = tx.NextSeq()
			head := true
			if p.in.Group != nil {
				m.Group = *p.in.Group
				var err error
				if head, err = q.appendToGroup(m, m.Seq); err != nil {
					return nil, err
				}
			}
			q.putPayload(m)
			if err := q.enqueue(m, head); err != nil {
				return nil, err
			}
			ev := msgEvent{MaxAttempts: m.MaxAttempts, Group: m.Group, PublishedAt: fmtNano(m.PublishedAt), AvailableAt: fmtNano(m.AvailableAt)}
			if seq := q.emit(QueuePublished, m, ev); seq != m.Seq {
				return nil, fmt.Errorf("engine: publish seq %d, planned %d", seq, m.Seq)
			}
			out[i] = Published{ID: m.ID.String(), Seq: m.Seq, AvailableAt: fmtNano(m.AvailableAt)}
			if p.in.DedupeID != nil {
				q.dedupeRecord(topic, *p.in.DedupeID, out[i], m)
			}
		}
		q.finish()
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	e.afterQueueCommand(q)
	out := res.([]Published)
	for _, p := range out {
		if !p.Duplicate {
			e.qm.published.Inc()
		}
	}
	return out, nil
}

// dedupeHit looks a dedupe id up; a hit within the window answers the
// first message.
func (q *qtx) dedupeHit(topic, dedupeID string) (Published, bool, error) {
	v, err := q.tx.Get(storage.QueueDedupeKey(topic, dedupeID))
	if isNotFound(err) {
		return Published{}, false, nil
	}
	if err != nil {
		return Published{}, false, err
	}
	if len(v) != 40 {
		return Published{}, false, fmt.Errorf("engine: corrupt dedupe entry")
	}
	if expires := int64(binary.BigEndian.Uint64(v[32:])); expires <= q.now {
		return Published{}, false, nil
	}
	var id ulid.ULID
	copy(id[:], v[:16])
	return Published{
		ID: id.String(), Seq: binary.BigEndian.Uint64(v[16:]),
		AvailableAt: fmtNano(int64(binary.BigEndian.Uint64(v[24:]))), Duplicate: true,
	}, true, nil
}

// dedupeRecord remembers a dedupe id for the window: the message's id, seq
// and available_at (the answer to a duplicate, even once the message is
// acked) and the entry's expiry.
func (q *qtx) dedupeRecord(topic, dedupeID string, p Published, m *qmsg) {
	expires := q.now + int64(DedupeWindow)
	v := make([]byte, 0, 40)
	v = append(v, m.ID[:]...)
	v = binary.BigEndian.AppendUint64(v, m.Seq)
	v = binary.BigEndian.AppendUint64(v, uint64(m.AvailableAt))
	v = binary.BigEndian.AppendUint64(v, uint64(expires))
	q.tx.Set(storage.QueueDedupeKey(topic, dedupeID), v)
	q.tx.Set(storage.QueueDedupeExpKey(expires, topic, dedupeID), nil)
	q.noteDeadline(expires)
}
