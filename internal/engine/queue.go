package engine

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// Queues: durable at-least-once topics. A message is one record (payload and
// state) plus an entry in the index of its state: ready (per topic, in lease
// order), delayed and leased (global, in time order: the timer loop reads
// their first keys), dead (per topic). Every change is a command on the
// single writer, so two consumers can never hold the same message, and a
// crash between two steps of a change cannot happen: a command commits
// whole or not at all.
//
// FIFO groups keep their messages in publish order under nsQueueGroup; only
// the group's head is ever ready, delayed or leased, the others wait
// ("blocked") without any index entry, so a blocked group costs nothing at
// lease time. When the head is acked or dies, the next becomes the head.

// Queue event types.
const (
	QueuePublished = "queue.published"
	QueueLeased    = "queue.leased"
	QueueAcked     = "queue.acked"
	QueueNacked    = "queue.nacked"
	QueueDead      = "queue.dead"
	QueueRedriven  = "queue.redriven"
)

// Queue limits and defaults.
const (
	MaxPublishBatch      = 1000
	MaxLease             = 1000
	MaxLeaseWait         = 30 * time.Second
	MaxVisibility        = 12 * time.Hour
	MaxQueueDelay        = 30 * 24 * time.Hour
	MaxBackoff           = 24 * time.Hour
	MaxAttemptsLimit     = 1000
	MaxDedupeIDLen       = 256
	MaxQueueErrorLen     = 4096
	DefaultMaxAttempts   = 5
	DefaultBackoff       = time.Second
	DefaultVisibility    = 30 * time.Second
	DedupeWindow         = 24 * time.Hour
	maxQueueChunk        = 1000    // entries one timer or redrive command handles
	maxReadyLow          = 100_000 // topics whose ready bound is kept
	queueStateReady      = "ready"
	queueStateDelayed    = "delayed"
	queueStateLeased     = "leased"
	queueStateDead       = "dead"
	queueStateBlocked    = "blocked" // behind its FIFO group's head
	queueReasonNack      = "nack"
	queueReasonExpired   = "lease_expired"
	queueErrLeaseExpired = "lease expired"
)

// QueueTopic is the event topic of a queue.
func QueueTopic(topic string) string { return "queues/" + topic }

// qmsg is a message's record.
type qmsg struct {
	ID             ulid.ULID       `json:"id"`
	Topic          string          `json:"topic"`
	Seq            uint64          `json:"seq"` // of queue.published
	Payload        json.RawMessage `json:"-"`   // stored apart: QueuePayloadKey
	Group          string          `json:"group,omitempty"`
	Pos            uint64          `json:"pos,omitempty"` // place in its group
	MaxAttempts    int             `json:"max_attempts"`
	BackoffMs      int64           `json:"backoff_ms"`
	Attempt        int             `json:"attempt"`
	State          string          `json:"state"`
	AvailableAt    int64           `json:"available_at"` // Unix ns
	PublishedAt    int64           `json:"published_at"`
	LeaseSeq       uint64          `json:"lease_seq,omitempty"` // of its queue.leased
	LeaseNonce     uint64          `json:"lease_nonce,omitempty"`
	LeaseExpiresAt int64           `json:"lease_expires_at,omitempty"`
	Error          string          `json:"error,omitempty"`
	DeadAt         int64           `json:"dead_at,omitempty"`
}

func fmtNano(ns int64) string { return wal.FormatTime(time.Unix(0, ns)) }

// qcounts are a topic's messages by state.
type qcounts struct{ Ready, Delayed, Leased, Dead int64 }

func (c *qcounts) add(state string, d int64) {
	switch state {
	case queueStateReady, queueStateBlocked:
		c.Ready += d
	case queueStateDelayed:
		c.Delayed += d
	case queueStateLeased:
		c.Leased += d
	case queueStateDead:
		c.Dead += d
	}
}

func decodeCounts(v []byte) (qcounts, error) {
	if len(v) != 32 {
		return qcounts{}, fmt.Errorf("engine: corrupt queue counts")
	}
	u := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[i*8:])) }
	return qcounts{u(0), u(1), u(2), u(3)}, nil
}

func (c qcounts) encode() []byte {
	b := make([]byte, 0, 32)
	for _, v := range []int64{c.Ready, c.Delayed, c.Leased, c.Dead} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// qtx is one queue command's view: the tx, its time, and what it touched.
type qtx struct {
	e      *Engine
	tx     *wal.Tx
	now    int64
	counts map[string]*qcounts
	// removed are messages this command took out of their group: the
	// group iterator (which does not see the command's own writes) skips
	// them.
	removed map[ulid.ULID]bool
	// appended are groups this command appended to (so they are not empty).
	appended map[string]bool
	// topics are the topics whose ready set grew (waiters to wake).
	topics map[string]bool
	// deadline is the earliest time this command put in a timer index (0:
	// none).
	deadline int64
	// low are the new ready-index lower bounds this command makes (see
	// Engine.readyLow), applied by finish.
	low map[string][]byte
}

func (e *Engine) newQtx(tx *wal.Tx) *qtx {
	return &qtx{e: e, tx: tx, now: tx.Now().UnixNano(), counts: map[string]*qcounts{},
		removed: map[ulid.ULID]bool{}, appended: map[string]bool{}, topics: map[string]bool{}, low: map[string][]byte{}}
}

// readyLowOf is where a lease's scan of topic's ready index may start: no
// ready entry of topic is below it. Acked and leased messages leave deleted
// keys at the front of the index until Pebble compacts them; starting past
// them keeps a lease a short read after heavy churn. The bounds are derived
// state owned by the writer (read and changed only inside commands), lost
// on restart (the first lease then starts at the front).
func (q *qtx) readyLowOf(topic string) []byte {
	if b, ok := q.low[topic]; ok {
		return b
	}
	return q.e.readyLow[topic]
}

// lowerReady notes a new ready entry key of topic.
func (q *qtx) lowerReady(topic string, key []byte) {
	if b := q.readyLowOf(topic); b != nil && bytes.Compare(key, b) < 0 {
		q.low[topic] = key
	}
}

// raiseReady notes that no ready entry of topic is below key.
func (q *qtx) raiseReady(topic string, key []byte) { q.low[topic] = key }

func (q *qtx) countsOf(topic string) (*qcounts, error) {
	if c, ok := q.counts[topic]; ok {
		return c, nil
	}
	c := &qcounts{}
	v, err := q.tx.Get(storage.QueueStatsKey(topic))
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, err
	default:
		if *c, err = decodeCounts(v); err != nil {
			return nil, err
		}
	}
	q.counts[topic] = c
	return c, nil
}

func (q *qtx) move(m *qmsg, to string) error {
	c, err := q.countsOf(m.Topic)
	if err != nil {
		return err
	}
	if m.State != "" {
		c.add(m.State, -1)
	}
	if to != "" {
		c.add(to, 1)
	}
	m.State = to
	return nil
}

// finish writes the touched counts and keeps the ready bounds. It is the
// last step of a command that succeeds.
func (q *qtx) finish() {
	if len(q.e.readyLow) > maxReadyLow {
		clear(q.e.readyLow)
	}
	for topic, b := range q.low {
		q.e.readyLow[topic] = b
	}
	for topic, c := range q.counts {
		k := storage.QueueStatsKey(topic)
		if *c == (qcounts{}) {
			q.tx.Delete(k)
			continue
		}
		q.tx.Set(k, c.encode())
	}
}

func (q *qtx) noteDeadline(t int64) {
	if q.deadline == 0 || t < q.deadline {
		q.deadline = t
	}
}

func (q *qtx) get(id ulid.ULID) (*qmsg, error) {
	v, err := q.tx.Get(storage.QueueMsgKey(id))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m qmsg
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("engine: queue message %s: %w", id, err)
	}
	return &m, nil
}

// putPayload writes a new message's payload, once.
func (q *qtx) putPayload(m *qmsg) { q.tx.Set(storage.QueuePayloadKey(m.ID), m.Payload) }

// payload reads a message's payload.
func (q *qtx) payload(id ulid.ULID) (json.RawMessage, error) {
	v, err := q.tx.Get(storage.QueuePayloadKey(id))
	if err != nil {
		return nil, fmt.Errorf("engine: queue message %s: payload: %w", id, err)
	}
	return v, nil
}

func (q *qtx) put(m *qmsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("engine: encode queue message: %w", err)
	}
	q.tx.Set(storage.QueueMsgKey(m.ID), b)
	return nil
}

// enqueue makes m ready or delayed at m.AvailableAt (or blocked when it is
// not its group's head). It writes the record.
func (q *qtx) enqueue(m *qmsg, head bool) error {
	var to string
	switch {
	case !head:
		to = queueStateBlocked
	case m.AvailableAt <= q.now:
		to = queueStateReady
		k := storage.QueueReadyKey(m.Topic, m.AvailableAt, m.Seq)
		q.tx.Set(k, m.ID[:])
		q.lowerReady(m.Topic, k)
		q.topics[m.Topic] = true
	default:
		to = queueStateDelayed
		q.tx.Set(storage.QueueDelayedKey(m.AvailableAt, m.ID), nil)
		q.noteDeadline(m.AvailableAt)
	}
	if err := q.move(m, to); err != nil {
		return err
	}
	return q.put(m)
}

// unindex removes m's entry of its current state's index.
func (q *qtx) unindex(m *qmsg) {
	switch m.State {
	case queueStateReady:
		q.tx.Delete(storage.QueueReadyKey(m.Topic, m.AvailableAt, m.Seq))
	case queueStateDelayed:
		q.tx.Delete(storage.QueueDelayedKey(m.AvailableAt, m.ID))
	case queueStateLeased:
		q.tx.Delete(storage.QueueLeasedKey(m.LeaseExpiresAt, m.ID))
	case queueStateDead:
		q.tx.Delete(storage.QueueDeadKey(m.Topic, m.DeadAt, m.ID))
	}
}

func groupKey(topic, group string) string { return topic + "\x00" + group }

// groupEmpty reports whether a group holds no message (as this command
// sees it).
func (q *qtx) groupEmpty(topic, group string) (bool, error) {
	if q.appended[groupKey(topic, group)] {
		return false, nil
	}
	head, err := q.groupHead(topic, group)
	return head == nil, err
}

// groupHead returns the first message of a group that this command did not
// remove, or nil.
func (q *qtx) groupHead(topic, group string) (*qmsg, error) {
	p := storage.QueueGroupPrefix(topic, group)
	it, err := q.tx.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		var id ulid.ULID
		if len(it.Value()) != 16 {
			return nil, fmt.Errorf("engine: corrupt queue group entry")
		}
		copy(id[:], it.Value())
		if q.removed[id] {
			continue
		}
		return q.get(id)
	}
	return nil, it.Error()
}

// appendToGroup gives m the next place in its group and reports whether it
// is the head.
func (q *qtx) appendToGroup(m *qmsg, pos uint64) (bool, error) {
	empty, err := q.groupEmpty(m.Topic, m.Group)
	if err != nil {
		return false, err
	}
	m.Pos = pos
	q.tx.Set(storage.QueueGroupKey(m.Topic, m.Group, pos), m.ID[:])
	q.appended[groupKey(m.Topic, m.Group)] = true
	return empty, nil
}

// leaveGroup takes m out of its group; the next message, if any, becomes
// the head and is enqueued.
func (q *qtx) leaveGroup(m *qmsg) error {
	if m.Group == "" {
		return nil
	}
	q.tx.Delete(storage.QueueGroupKey(m.Topic, m.Group, m.Pos))
	q.removed[m.ID] = true
	next, err := q.groupHead(m.Topic, m.Group)
	if err != nil || next == nil || next.State != queueStateBlocked {
		return err
	}
	return q.enqueue(next, true)
}

// msgEvent is the data of queue events: the message without its payload.
type msgEvent struct {
	ID             string `json:"id"`
	Attempt        int    `json:"attempt"`
	MaxAttempts    int    `json:"max_attempts,omitempty"`
	Group          string `json:"group,omitempty"`
	PublishedAt    string `json:"published_at,omitempty"`
	AvailableAt    string `json:"available_at,omitempty"`
	LeaseExpiresAt string `json:"lease_expires_at,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Error          string `json:"error,omitempty"`
	DeadAt         string `json:"dead_at,omitempty"`
}

func (q *qtx) emit(typ string, m *qmsg, d msgEvent) uint64 {
	d.ID, d.Attempt = m.ID.String(), m.Attempt
	b, _ := json.Marshal(d)
	return q.tx.Emit(QueueTopic(m.Topic), typ, b, nil)
}

// release ends m's lease or delivery without an ack: back to ready after
// delay (backoff when delay < 0), or to the dead letters once it has been
// delivered max_attempts times.
func (q *qtx) release(m *qmsg, delay time.Duration, reason, errText string) error {
	q.unindex(m)
	m.LeaseExpiresAt, m.LeaseSeq, m.LeaseNonce = 0, 0, 0
	if errText != "" {
		m.Error = errText
	}
	if m.Attempt >= m.MaxAttempts {
		m.DeadAt = q.now
		if err := q.move(m, queueStateDead); err != nil {
			return err
		}
		q.tx.Set(storage.QueueDeadKey(m.Topic, m.DeadAt, m.ID), nil)
		if err := q.put(m); err != nil {
			return err
		}
		q.emit(QueueDead, m, msgEvent{Error: m.Error, DeadAt: fmtNano(m.DeadAt), Reason: reason})
		return q.leaveGroup(m)
	}
	if delay < 0 {
		delay = backoff(m.BackoffMs, m.Attempt)
	}
	m.AvailableAt = q.now + int64(delay)
	if err := q.move(m, ""); err != nil { // enqueue counts it anew
		return err
	}
	if err := q.enqueue(m, true); err != nil {
		return err
	}
	q.emit(QueueNacked, m, msgEvent{AvailableAt: fmtNano(m.AvailableAt), Reason: reason, Error: errText})
	return nil
}

// backoff is backoff_ms × 2^(attempt−1), at most MaxBackoff.
func backoff(ms int64, attempt int) time.Duration {
	d := time.Duration(ms) * time.Millisecond
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Receipts name one lease of one message: its id, the seq of its
// queue.leased event (so a receipt of an earlier lease never matches) and a
// random nonce (so a receipt cannot be made from the events, which carry
// the id and the seq).
func receipt(id ulid.ULID, leaseSeq, nonce uint64) string {
	b := make([]byte, 0, 32)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, leaseSeq)
	b = binary.BigEndian.AppendUint64(b, nonce)
	return encodeReceipt(b)
}

func parseReceipt(s string) (id ulid.ULID, leaseSeq, nonce uint64, ok bool) {
	b, ok := decodeReceipt(s)
	if !ok || len(b) != 32 {
		return id, 0, 0, false
	}
	copy(id[:], b)
	return id, binary.BigEndian.Uint64(b[16:]), binary.BigEndian.Uint64(b[24:]), true
}

func newNonce() uint64 {
	var b [8]byte
	crand.Read(b[:]) // never fails (crypto/rand)
	return binary.BigEndian.Uint64(b[:])
}

func encodeReceipt(b []byte) string {
	return "r1." + encodeCursor("rcpt", string(b))
}

func decodeReceipt(s string) ([]byte, bool) {
	rest, ok := bytes.CutPrefix([]byte(s), []byte("r1."))
	if !ok {
		return nil, false
	}
	v, err := decodeCursor("rcpt", string(rest))
	if err != nil {
		return nil, false
	}
	return []byte(v), true
}
