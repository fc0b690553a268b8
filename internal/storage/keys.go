package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// The key layout. Every key starts with a one-byte namespace; fields follow in
// an order-preserving encoding: integers big-endian, strings escaped with
// AppendString (so one string is never a prefix of another's encoding), ULIDs
// as their 16 raw bytes.
//
// LayoutVersion changes whenever the meaning of an existing key or value
// changes; the server refuses to open a data dir written by a newer layout.
const LayoutVersion uint32 = 1

const (
	// nsMeta: small singletons. metaLayout → uint32 layout version;
	// metaHeadSeq → uint64 last committed seq (written in every batch, so the
	// head survives even if retention ever removes every log record).
	nsMeta byte = 0x00

	// nsLog: the event log. seq (uint64) → log record (see record.go). The
	// record refers to state records instead of copying large payloads.
	nsLog byte = 0x01

	// nsTopic: the per-topic index of the log. topic (string) + seq (uint64)
	// → empty. Replay of one topic reads only its own entries. Every event
	// is indexed under its topic and under each ancestor prefix ("a/b/c" also
	// under "a/b/*" and "a/*"), so that a prefix subscription replays from
	// its own entries too.
	nsTopic byte = 0x02

	// nsContext: contexts. context id (string) → context JSON.
	nsContext byte = 0x10

	// nsUnit: where each work unit is. ULID (16 bytes) → the unit's
	// nsContextUnit key.
	nsUnit byte = 0x11

	// nsContextUnit: work units, clustered by context in seq order, so that
	// listing a context is one sequential scan. context id (string) + seq
	// (uint64) → unit value (see AppendUnitValue): the unit's type and agent
	// (for filters), then its JSON (the public shape).
	nsContextUnit byte = 0x12

	// nsUnitIn: the reverse relationship index. target ULID (16) + source
	// ULID (16) + relationship type (1 byte) → empty.
	nsUnitIn byte = 0x13

	// nsStreamItem: stream items, clustered by stream and group so that a
	// group lists in item-id order with one scan. stream + group + item id
	// (strings) → the item's value JSON.
	nsStreamItem byte = 0x20

	// nsStreamGroup: the groups of each stream with their item counts, so
	// that listing groups never scans items and the per-group item limit is
	// one read. stream + group (strings) → uint64 item count; absent when
	// the group holds no items.
	nsStreamGroup byte = 0x21

	// nsStreamJoin: live joins of /stream subscribers (presence), recorded
	// so that the leaves a crash swallowed are emitted at the next start.
	// join id (ULID, 16 bytes) → join record (engine's JSON).
	nsStreamJoin byte = 0x22

	// Queues. A message's record holds its payload and state; the indexes
	// below make every queue operation a short range read. Times are Unix
	// nanoseconds, big-endian.
	//
	// nsQueueMsg: message id (ULID, 16) → message record (engine's JSON).
	nsQueueMsg byte = 0x30
	// nsQueueReady: messages a lease may take now, per topic, in lease
	// order. topic + available_at (uint64) + seq (uint64) → message id. With
	// FIFO groups only each group's head is here.
	nsQueueReady byte = 0x31
	// nsQueueDelayed: messages that become ready later, in time order over
	// every topic (the timer loop's first key is its next deadline).
	// available_at (uint64) + message id → empty.
	nsQueueDelayed byte = 0x32
	// nsQueueStats: per-topic counts of messages by state. topic → four
	// uint64: ready, delayed, leased, dead.
	nsQueueStats byte = 0x33
	// nsQueueLeased: leases in expiry order over every topic (the timer
	// loop's). lease_expires_at (uint64) + message id → empty.
	nsQueueLeased byte = 0x34
	// nsQueueGroup: each FIFO group's messages in publish order. topic +
	// group (strings) + position (uint64) → message id. The first is the
	// group's head, the only one that can be ready or leased.
	nsQueueGroup byte = 0x35
	// nsQueueDedupe: dedupe ids seen in the last 24 h. topic + dedupe id
	// (strings) → message id (16) + expiry (uint64).
	nsQueueDedupe byte = 0x36
	// nsQueueDedupeExp: dedupe entries in expiry order (the timer loop
	// prunes them). expiry (uint64) + topic + dedupe id → empty.
	nsQueueDedupeExp byte = 0x37
	// nsQueueDead: dead letters per topic in the order they died. topic +
	// dead_at (uint64) + message id → empty.
	nsQueueDead byte = 0x38
	// nsQueuePayload: message id (16) → the message's payload JSON, written
	// once at publish and deleted at ack, apart from the record so that the
	// state changes of a lease, nack or expiry never rewrite it.
	nsQueuePayload byte = 0x39

	// Locks. nsLock: lock id (ULID, 16) → lock record (lockmgr's JSON).
	nsLock byte = 0x40
	// nsLockResource: which lock holds each resource. resource (string) →
	// lock id (16). Listing by prefix is a scan of these keys.
	nsLockResource byte = 0x41
	// nsLockExpiry: locks in expiry order (the expiry loop's first key is
	// its next deadline). expires_at (uint64 Unix ns) + lock id → empty.
	nsLockExpiry byte = 0x42

	// Cron. nsCronJob: job name (string) → job record (cron's JSON: the
	// job, its schedule and how far its scheduled times have been dealt
	// with). Jobs are few; the scheduler scans them all.
	nsCronJob byte = 0x50
)

var (
	metaLayout  = []byte{nsMeta, 'l'}
	metaHeadSeq = []byte{nsMeta, 's'}
	// metaOldestSeq → uint64: the oldest seq retention keeps (absent: 1).
	metaOldestSeq = []byte{nsMeta, 'o'}
	// metaFencing → uint64: the last fencing token a lock got (absent: 0).
	metaFencing = []byte{nsMeta, 'f'}
)

// ErrBadKey reports a key that does not decode in the layout.
var ErrBadKey = errors.New("storage: malformed key")

// AppendString appends s in an order-preserving, prefix-free encoding: 0x00
// bytes are escaped as 0x00 0xFF and the string ends with 0x00 0x01.
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			dst = append(dst, 0, 0xFF)
			continue
		}
		dst = append(dst, s[i])
	}
	return append(dst, 0, 1)
}

// DecodeString decodes a string written by AppendString at the start of b and
// returns it with the rest of b.
func DecodeString(b []byte) (string, []byte, error) {
	var out []byte
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 || i+1 >= len(b) {
			return "", nil, ErrBadKey
		}
		out = append(out, b[:i]...)
		switch b[i+1] {
		case 1:
			return string(out), b[i+2:], nil
		case 0xFF:
			out = append(out, 0)
			b = b[i+2:]
		default:
			return "", nil, ErrBadKey
		}
	}
}

// AppendUint64 appends v big-endian.
func AppendUint64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

// LogKey is the key of the log record with seq.
func LogKey(seq uint64) []byte { return AppendUint64([]byte{nsLog}, seq) }

// LogSeq decodes the seq of a log key.
func LogSeq(key []byte) (uint64, error) {
	if len(key) != 9 || key[0] != nsLog {
		return 0, ErrBadKey
	}
	return binary.BigEndian.Uint64(key[1:]), nil
}

// LogPrefix bounds every log key.
func LogPrefix() []byte { return []byte{nsLog} }

// TopicPrefix is the prefix of every topic-index entry of topic.
func TopicPrefix(topic string) []byte { return AppendString([]byte{nsTopic}, topic) }

// TopicKey is the topic-index entry of seq in topic.
func TopicKey(topic string, seq uint64) []byte { return AppendUint64(TopicPrefix(topic), seq) }

// IndexTopics returns the topic-index names an event of topic is filed
// under: topic itself, then each ancestor prefix, most specific first.
func IndexTopics(topic string) []string {
	out := []string{topic}
	for i := len(topic) - 1; i > 0; i-- {
		if topic[i] == '/' {
			out = append(out, topic[:i+1]+"*")
		}
	}
	return out
}

// ContextKey is the key of a context.
func ContextKey(id string) []byte { return AppendString([]byte{nsContext}, id) }

// ContextPrefix bounds every context key.
func ContextPrefix() []byte { return []byte{nsContext} }

// ContextID decodes the id of a context key.
func ContextID(key []byte) (string, error) {
	if len(key) == 0 || key[0] != nsContext {
		return "", ErrBadKey
	}
	id, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 0 {
		return "", ErrBadKey
	}
	return id, nil
}

// UnitKey is the key that locates a work unit (its value is the unit's
// ContextUnitKey).
func UnitKey(id [16]byte) []byte { return append([]byte{nsUnit}, id[:]...) }

// ContextUnitPrefix is the prefix of the seq index of a context's units.
func ContextUnitPrefix(contextID string) []byte {
	return AppendString([]byte{nsContextUnit}, contextID)
}

// ContextUnitKey is the key of the unit with seq in a context.
func ContextUnitKey(contextID string, seq uint64) []byte {
	return AppendUint64(ContextUnitPrefix(contextID), seq)
}

// TrailingSeq decodes the seq that ends an index key (topic and context-unit
// entries).
func TrailingSeq(key []byte) (uint64, error) {
	if len(key) < 9 {
		return 0, ErrBadKey
	}
	return binary.BigEndian.Uint64(key[len(key)-8:]), nil
}

// AppendUnitValue appends a unit's stored value: its type code, its agent
// id (length-prefixed) and its JSON.
func AppendUnitValue(dst []byte, typ byte, agent string, unitJSON []byte) []byte {
	dst = append(dst, typ)
	dst = binary.AppendUvarint(dst, uint64(len(agent)))
	dst = append(dst, agent...)
	return append(dst, unitJSON...)
}

// SplitUnitValue splits a unit's stored value. The slices alias v.
func SplitUnitValue(v []byte) (typ byte, agent []byte, unitJSON []byte, err error) {
	if len(v) < 2 {
		return 0, nil, nil, ErrBadRecord
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || uint64(len(v)-1-w) < n {
		return 0, nil, nil, ErrBadRecord
	}
	start := 1 + w
	return v[0], v[start : start+int(n)], v[start+int(n):], nil
}

// UnitInPrefix is the prefix of the reverse relationships that target id.
func UnitInPrefix(target [16]byte) []byte { return append([]byte{nsUnitIn}, target[:]...) }

// UnitInKey is the reverse entry of a relationship source → target of type t.
func UnitInKey(target, source [16]byte, t byte) []byte {
	k := make([]byte, 0, 34)
	k = append(k, nsUnitIn)
	k = append(k, target[:]...)
	k = append(k, source[:]...)
	return append(k, t)
}

// DecodeUnitIn decodes a reverse relationship key.
func DecodeUnitIn(key []byte) (target, source [16]byte, t byte, err error) {
	if len(key) != 34 || key[0] != nsUnitIn {
		return target, source, 0, ErrBadKey
	}
	copy(target[:], key[1:17])
	copy(source[:], key[17:33])
	return target, source, key[33], nil
}

// PrefixEnd returns the smallest key greater than every key with prefix p,
// for use as an exclusive upper bound.
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xFF: no upper bound
}

// StreamGroupItemsPrefix is the prefix of every item key of a group.
func StreamGroupItemsPrefix(stream, group string) []byte {
	return AppendString(AppendString([]byte{nsStreamItem}, stream), group)
}

// StreamItemKey is the key of an item.
func StreamItemKey(stream, group, item string) []byte {
	return AppendString(StreamGroupItemsPrefix(stream, group), item)
}

// StreamItemID decodes the item id of an item key under prefix (its
// StreamGroupItemsPrefix).
func StreamItemID(prefix, key []byte) (string, error) {
	if !bytes.HasPrefix(key, prefix) {
		return "", ErrBadKey
	}
	id, rest, err := DecodeString(key[len(prefix):])
	if err != nil || len(rest) != 0 {
		return "", ErrBadKey
	}
	return id, nil
}

// StreamGroupKey is the key of a group's item count.
func StreamGroupKey(stream, group string) []byte {
	return AppendString(StreamGroupPrefix(stream), group)
}

// StreamGroupPrefix is the prefix of every group key of a stream.
func StreamGroupPrefix(stream string) []byte { return AppendString([]byte{nsStreamGroup}, stream) }

// StreamGroupsPrefix bounds every group key of every stream.
func StreamGroupsPrefix() []byte { return []byte{nsStreamGroup} }

// StreamGroupOf decodes the stream and group of a group key.
func StreamGroupOf(key []byte) (stream, group string, err error) {
	if len(key) == 0 || key[0] != nsStreamGroup {
		return "", "", ErrBadKey
	}
	stream, rest, err := DecodeString(key[1:])
	if err != nil {
		return "", "", ErrBadKey
	}
	group, rest, err = DecodeString(rest)
	if err != nil || len(rest) != 0 {
		return "", "", ErrBadKey
	}
	return stream, group, nil
}

// StreamJoinKey is the key of a recorded join.
func StreamJoinKey(id [16]byte) []byte { return append([]byte{nsStreamJoin}, id[:]...) }

// StreamJoinPrefix bounds every recorded join.
func StreamJoinPrefix() []byte { return []byte{nsStreamJoin} }

// QueueMsgKey is the key of a queue message's record.
func QueueMsgKey(id [16]byte) []byte { return append([]byte{nsQueueMsg}, id[:]...) }

// QueueReadyPrefix is the prefix of a topic's ready index.
func QueueReadyPrefix(topic string) []byte { return AppendString([]byte{nsQueueReady}, topic) }

// QueueReadyKey is a message's entry in its topic's ready index.
func QueueReadyKey(topic string, availableAt int64, seq uint64) []byte {
	return AppendUint64(AppendUint64(QueueReadyPrefix(topic), uint64(availableAt)), seq)
}

// QueueDelayedKey is a message's entry in the delayed index.
func QueueDelayedKey(availableAt int64, id [16]byte) []byte {
	return append(AppendUint64([]byte{nsQueueDelayed}, uint64(availableAt)), id[:]...)
}

// QueueDelayedPrefix bounds the delayed index.
func QueueDelayedPrefix() []byte { return []byte{nsQueueDelayed} }

// QueueLeasedKey is a lease's entry in the expiry index.
func QueueLeasedKey(expiresAt int64, id [16]byte) []byte {
	return append(AppendUint64([]byte{nsQueueLeased}, uint64(expiresAt)), id[:]...)
}

// QueueLeasedPrefix bounds the expiry index.
func QueueLeasedPrefix() []byte { return []byte{nsQueueLeased} }

// QueueTimeKey decodes a delayed or leased index key: its time and message
// id.
func QueueTimeKey(key []byte) (int64, [16]byte, error) {
	var id [16]byte
	if len(key) != 25 || (key[0] != nsQueueDelayed && key[0] != nsQueueLeased) {
		return 0, id, ErrBadKey
	}
	copy(id[:], key[9:])
	return int64(binary.BigEndian.Uint64(key[1:9])), id, nil
}

// QueueStatsKey is the key of a topic's counts.
func QueueStatsKey(topic string) []byte { return AppendString([]byte{nsQueueStats}, topic) }

// QueueStatsPrefix bounds every topic's counts.
func QueueStatsPrefix() []byte { return []byte{nsQueueStats} }

// QueueStatsTopic decodes the topic of a counts key.
func QueueStatsTopic(key []byte) (string, error) {
	if len(key) == 0 || key[0] != nsQueueStats {
		return "", ErrBadKey
	}
	t, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 0 {
		return "", ErrBadKey
	}
	return t, nil
}

// QueueGroupPrefix is the prefix of a FIFO group's messages.
func QueueGroupPrefix(topic, group string) []byte {
	return AppendString(AppendString([]byte{nsQueueGroup}, topic), group)
}

// QueueGroupKey is a message's place in its FIFO group.
func QueueGroupKey(topic, group string, pos uint64) []byte {
	return AppendUint64(QueueGroupPrefix(topic, group), pos)
}

// QueueDedupeKey is the key of a dedupe id of a topic.
func QueueDedupeKey(topic, dedupeID string) []byte {
	return AppendString(AppendString([]byte{nsQueueDedupe}, topic), dedupeID)
}

// QueueDedupeExpKey is a dedupe id's entry in the expiry index.
func QueueDedupeExpKey(expires int64, topic, dedupeID string) []byte {
	return AppendString(AppendString(AppendUint64([]byte{nsQueueDedupeExp}, uint64(expires)), topic), dedupeID)
}

// QueueDedupeExpPrefix bounds the dedupe expiry index.
func QueueDedupeExpPrefix() []byte { return []byte{nsQueueDedupeExp} }

// QueueDedupeExpOf decodes a dedupe expiry key.
func QueueDedupeExpOf(key []byte) (expires int64, topic, dedupeID string, err error) {
	if len(key) < 9 || key[0] != nsQueueDedupeExp {
		return 0, "", "", ErrBadKey
	}
	expires = int64(binary.BigEndian.Uint64(key[1:9]))
	topic, rest, err := DecodeString(key[9:])
	if err != nil {
		return 0, "", "", ErrBadKey
	}
	dedupeID, rest, err = DecodeString(rest)
	if err != nil || len(rest) != 0 {
		return 0, "", "", ErrBadKey
	}
	return expires, topic, dedupeID, nil
}

// QueueDeadPrefix is the prefix of a topic's dead letters.
func QueueDeadPrefix(topic string) []byte { return AppendString([]byte{nsQueueDead}, topic) }

// QueueDeadKey is a dead letter's entry.
func QueueDeadKey(topic string, deadAt int64, id [16]byte) []byte {
	return append(AppendUint64(QueueDeadPrefix(topic), uint64(deadAt)), id[:]...)
}

// TrailingID decodes the 16-byte id that ends a key.
func TrailingID(key []byte) ([16]byte, error) {
	var id [16]byte
	if len(key) < 17 {
		return id, ErrBadKey
	}
	copy(id[:], key[len(key)-16:])
	return id, nil
}

// FencingKey is the key of the last fencing token given out.
func FencingKey() []byte { return metaFencing }

// LockKey is the key of a lock's record.
func LockKey(id [16]byte) []byte { return append([]byte{nsLock}, id[:]...) }

// LockResourceKey is the key naming the lock that holds a resource.
func LockResourceKey(resource string) []byte { return AppendString([]byte{nsLockResource}, resource) }

// LockResourcePrefix is the prefix of every resource key whose resource
// starts with prefix. (AppendString without its terminator.)
func LockResourcePrefix(prefix string) []byte {
	k := AppendString([]byte{nsLockResource}, prefix)
	return k[:len(k)-2]
}

// LockResourceOf decodes the resource of a resource key.
func LockResourceOf(key []byte) (string, error) {
	if len(key) == 0 || key[0] != nsLockResource {
		return "", ErrBadKey
	}
	r, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 0 {
		return "", ErrBadKey
	}
	return r, nil
}

// LockExpiryKey is a lock's entry in the expiry index.
func LockExpiryKey(expiresAt int64, id [16]byte) []byte {
	return append(AppendUint64([]byte{nsLockExpiry}, uint64(expiresAt)), id[:]...)
}

// LockExpiryPrefix bounds the expiry index.
func LockExpiryPrefix() []byte { return []byte{nsLockExpiry} }

// LockExpiryOf decodes an expiry index key.
func LockExpiryOf(key []byte) (int64, [16]byte, error) {
	var id [16]byte
	if len(key) != 25 || key[0] != nsLockExpiry {
		return 0, id, ErrBadKey
	}
	copy(id[:], key[9:])
	return int64(binary.BigEndian.Uint64(key[1:9])), id, nil
}

// CronJobKey is the key of a cron job's record.
func CronJobKey(name string) []byte { return AppendString([]byte{nsCronJob}, name) }

// CronJobPrefix bounds every cron job key.
func CronJobPrefix() []byte { return []byte{nsCronJob} }

// CronJobName decodes the name of a cron job key.
func CronJobName(key []byte) (string, error) {
	if len(key) == 0 || key[0] != nsCronJob {
		return "", ErrBadKey
	}
	name, rest, err := DecodeString(key[1:])
	if err != nil || len(rest) != 0 {
		return "", ErrBadKey
	}
	return name, nil
}

// QueuePayloadKey is the key of a queue message's payload.
func QueuePayloadKey(id [16]byte) []byte { return append([]byte{nsQueuePayload}, id[:]...) }

// ContextUnitsPrefix bounds every work unit's value key (all contexts).
func ContextUnitsPrefix() []byte { return []byte{nsContextUnit} }

// StreamItemsPrefix bounds every stream item key (all streams).
func StreamItemsPrefix() []byte { return []byte{nsStreamItem} }

// DecodeStreamItemKey splits a stream item key into its names.
func DecodeStreamItemKey(key []byte) (stream, group, item string, err error) {
	if len(key) < 1 || key[0] != nsStreamItem {
		return "", "", "", ErrBadKey
	}
	rest := key[1:]
	if stream, rest, err = DecodeString(rest); err != nil {
		return "", "", "", err
	}
	if group, rest, err = DecodeString(rest); err != nil {
		return "", "", "", err
	}
	if item, rest, err = DecodeString(rest); err != nil {
		return "", "", "", err
	}
	if len(rest) != 0 {
		return "", "", "", ErrBadKey
	}
	return stream, group, item, nil
}
