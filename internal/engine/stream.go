package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"engram/internal/jsonx"
	"engram/internal/storage"
	"engram/internal/wal"
)

// Streams are key/value state in three levels, stream > group > item, whose
// every change is an event on streams/{stream}/{group}. Items are mutable,
// so their events carry old and new value inline: a log record cannot refer
// to a state record that a later change overwrites.

// Stream event types.
const (
	StreamCreated = "stream.created"
	StreamUpdated = "stream.updated"
	StreamDeleted = "stream.deleted"
	StreamEvent   = "stream.event"
	StreamJoin    = "stream.join"
	StreamLeave   = "stream.leave"
)

// MaxStreamEventType bounds the type of a custom stream event.
const MaxStreamEventType = 256

// StreamTopic is the event topic of a stream group.
func StreamTopic(stream, group string) string { return "streams/" + stream + "/" + group }

// ItemRef names a stream item.
type ItemRef struct{ Stream, Group, Item string }

func (r ItemRef) check() error {
	if err := checkName("stream_name", r.Stream); err != nil {
		return err
	}
	if err := checkName("group_id", r.Group); err != nil {
		return err
	}
	return checkName("item_id", r.Item)
}

func checkGroup(stream, group string) error {
	if err := checkName("stream_name", stream); err != nil {
		return err
	}
	return checkName("group_id", group)
}

// StreamChange is the result of a change to an item: its value before
// (null when it was absent) and after (null when deleted), and the ops an
// update skipped.
type StreamChange struct {
	OldValue json.RawMessage `json:"old_value"`
	NewValue json.RawMessage `json:"new_value"`
	Errors   []OpError       `json:"errors,omitempty"`
	// Seq is the seq of the change's event.
	Seq uint64 `json:"-"`
}

var jsonNull = json.RawMessage("null")

func orNull(v []byte) json.RawMessage {
	if v == nil {
		return jsonNull
	}
	return v
}

// checkValue validates a client's item value and returns it compacted.
func (e *Engine) checkValue(field string, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, invalidf("%s: required (any JSON value)", field)
	}
	if len(v) > e.cfg.MaxValueBytes {
		return nil, invalidf("%s: %d bytes, over the limit of %d", field, len(v), e.cfg.MaxValueBytes)
	}
	if !utf8.Valid(v) {
		return nil, invalidf("%s: not valid UTF-8", field)
	}
	if err := jsonx.CheckDepth(v, jsonx.MaxDepth); err != nil {
		return nil, invalidf("%s: nested deeper than %d levels", field, jsonx.MaxDepth)
	}
	if !json.Valid(v) {
		return nil, invalidf("%s: not valid JSON", field)
	}
	return jsonx.Compact(nil, v), nil
}

// streamEventData is the data of stream.created/updated/deleted.
func streamEventData(id string, old, new []byte) []byte {
	b := make([]byte, 0, len(id)+len(old)+len(new)+40)
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, id)
	b = append(b, `,"old_value":`...)
	b = append(b, orNull(old)...)
	b = append(b, `,"new_value":`...)
	b = append(b, orNull(new)...)
	return append(b, '}')
}

// putItem stages value for r (old is its current value, nil when absent),
// keeps the group's count, and emits the change. It runs on the writer.
func (e *Engine) putItem(tx *wal.Tx, r ItemRef, old, value []byte) (uint64, error) {
	typ := StreamUpdated
	if old == nil {
		n, err := groupCount(tx, r.Stream, r.Group)
		if err != nil {
			return 0, err
		}
		if n >= uint64(e.cfg.MaxGroupItems) {
			return 0, conflictf("group %s/%s holds %d items, the limit (--stream-max-items); delete items or use another group", r.Stream, r.Group, n)
		}
		setGroupCount(tx, r.Stream, r.Group, n+1)
		typ = StreamCreated
	}
	tx.Set(storage.StreamItemKey(r.Stream, r.Group, r.Item), value)
	return tx.Emit(StreamTopic(r.Stream, r.Group), typ, streamEventData(r.Item, old, value), nil), nil
}

func groupCount(tx *wal.Tx, stream, group string) (uint64, error) {
	v, err := tx.Get(storage.StreamGroupKey(stream, group))
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("engine: group %s/%s: corrupt item count", stream, group)
	}
	return binary.BigEndian.Uint64(v), nil
}

func setGroupCount(tx *wal.Tx, stream, group string, n uint64) {
	k := storage.StreamGroupKey(stream, group)
	if n == 0 {
		tx.Delete(k)
		return
	}
	tx.Set(k, binary.BigEndian.AppendUint64(nil, n))
}

// getItemTx reads an item's value on the writer; nil when absent.
func getItemTx(tx *wal.Tx, r ItemRef) ([]byte, error) {
	v, err := tx.Get(storage.StreamItemKey(r.Stream, r.Group, r.Item))
	if isNotFound(err) {
		return nil, nil
	}
	return v, err
}

// SetItem sets an item's value (any JSON).
func (e *Engine) SetItem(ctx context.Context, r ItemRef, value []byte) (*StreamChange, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	value, err := e.checkValue("value", value)
	if err != nil {
		return nil, err
	}
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		old, err := getItemTx(tx, r)
		if err != nil {
			return nil, err
		}
		seq, err := e.putItem(tx, r, old, value)
		if err != nil {
			return nil, err
		}
		return &StreamChange{OldValue: orNull(old), NewValue: value, Seq: seq}, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*StreamChange), nil
}

// UpdateItem applies ops to an item in order, as one change with one event.
// An absent item starts as {}. Ops that fail are skipped and reported in
// the change's Errors; the others apply.
func (e *Engine) UpdateItem(ctx context.Context, r ItemRef, ops []StreamOp) (*StreamChange, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if err := checkOps(ops); err != nil {
		return nil, err
	}
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		old, err := getItemTx(tx, r)
		if err != nil {
			return nil, err
		}
		value, errs, err := applyOps(old, ops)
		if err != nil {
			return nil, err
		}
		if len(value) > e.cfg.MaxValueBytes {
			return nil, invalidf("ops: the updated value would be %d bytes, over the limit of %d", len(value), e.cfg.MaxValueBytes)
		}
		if jsonx.CheckDepth(value, jsonx.MaxDepth) != nil {
			return nil, invalidf("ops: the updated value would nest deeper than %d levels", jsonx.MaxDepth)
		}
		seq, err := e.putItem(tx, r, old, value)
		if err != nil {
			return nil, err
		}
		return &StreamChange{OldValue: orNull(old), NewValue: value, Errors: errs, Seq: seq}, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*StreamChange), nil
}

// DeleteItem deletes an item; not found when it is absent.
func (e *Engine) DeleteItem(ctx context.Context, r ItemRef) (*StreamChange, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		old, err := getItemTx(tx, r)
		if err != nil {
			return nil, err
		}
		if old == nil {
			return nil, notFoundf("stream item %s/%s/%s not found", r.Stream, r.Group, r.Item)
		}
		n, err := groupCount(tx, r.Stream, r.Group)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			n--
		}
		setGroupCount(tx, r.Stream, r.Group, n)
		tx.Delete(storage.StreamItemKey(r.Stream, r.Group, r.Item))
		seq := tx.Emit(StreamTopic(r.Stream, r.Group), StreamDeleted, streamEventData(r.Item, old, nil), nil)
		return &StreamChange{OldValue: old, NewValue: jsonNull, Seq: seq}, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*StreamChange), nil
}

// SendInput is a custom event for a group's subscribers.
type SendInput struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	ID   *string         `json:"id"`
}

// SendEvent logs a custom event on a group's topic: subscribers (resuming
// ones too) get it, and no item changes. It returns the event's seq.
func (e *Engine) SendEvent(ctx context.Context, stream, group string, in SendInput) (uint64, error) {
	if err := checkGroup(stream, group); err != nil {
		return 0, err
	}
	if in.Type == "" {
		return 0, invalidf("type: required")
	}
	if len(in.Type) > MaxStreamEventType || !utf8.ValidString(in.Type) {
		return 0, invalidf("type: must be UTF-8 of at most %d bytes", MaxStreamEventType)
	}
	if in.ID != nil {
		if err := checkName("id", *in.ID); err != nil {
			return 0, err
		}
	}
	data := []byte(jsonNull)
	if len(in.Data) > 0 {
		var err error
		if data, err = e.checkValue("data", in.Data); err != nil {
			return 0, err
		}
	}
	b := append([]byte(`{"id":`), orNullString(in.ID)...)
	b = append(b, `,"type":`...)
	b = jsonx.AppendString(b, in.Type)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, '}')
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		return tx.Emit(StreamTopic(stream, group), StreamEvent, b, nil), nil
	})
	if err != nil {
		return 0, err
	}
	return res.(uint64), nil
}

func orNullString(s *string) []byte {
	if s == nil {
		return jsonNull
	}
	return jsonx.AppendString(nil, *s)
}
