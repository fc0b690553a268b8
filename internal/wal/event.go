package wal

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"engram/internal/jsonx"
	"engram/internal/storage"
)

// TimeLayout is how every time in the API is written: RFC 3339 in UTC with
// all nine fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// An Event is one committed change, as subscribers receive it.
type Event struct {
	Seq   uint64
	Time  time.Time
	Type  string
	Topic string
	// JSON is the whole event, encoded once:
	// {"seq":..,"time":..,"type":..,"topic":..,"data":..}.
	JSON []byte

	data []byte // the data JSON, until JSON is built

	// Frames caches transports' framings of a published event (keyed by
	// the transport), so that each is built once for every subscriber. Nil
	// for events read back from storage.
	Frames *FrameCache
}

// FrameCache holds framings of one event. Safe for concurrent use.
type FrameCache struct{ m sync.Map }

// Get returns the framing under key, building it on first use. Two callers
// may race to build; one result wins and both get it.
func (c *FrameCache) Get(key string, build func() any) any {
	if v, ok := c.m.Load(key); ok {
		return v
	}
	v, _ := c.m.LoadOrStore(key, build())
	return v
}

// AppendEventJSON appends the event JSON with the given data JSON to dst.
func AppendEventJSON(dst []byte, seq uint64, t time.Time, typ, topic string, data []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, TimeLayout)
	dst = append(dst, `","type":`...)
	dst = jsonx.AppendString(dst, typ)
	dst = append(dst, `,"topic":`...)
	dst = jsonx.AppendString(dst, topic)
	dst = append(dst, `,"data":`...)
	if len(data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

// Reader reads committed events back from storage.
type Reader interface {
	Get(key []byte) ([]byte, error)
}

// ReadEvent rebuilds the event with seq from its log record.
func ReadEvent(db Reader, seq uint64) (Event, error) {
	raw, err := db.Get(storage.LogKey(seq))
	if err != nil {
		return Event{}, fmt.Errorf("wal: read event %d: %w", seq, err)
	}
	return DecodeEvent(db, seq, raw)
}

// DecodeEvent rebuilds the event with seq from its raw log record, reading
// the state record it refers to.
func DecodeEvent(db Reader, seq uint64, raw []byte) (Event, error) {
	rec, err := storage.DecodeRecord(raw)
	if err != nil {
		return Event{}, fmt.Errorf("wal: event %d: %w", seq, err)
	}
	data, err := rec.Data(db.Get)
	if err != nil {
		return Event{}, fmt.Errorf("wal: event %d: data: %w", seq, err)
	}
	t := time.Unix(0, rec.TimeUnixNano).UTC()
	return Event{
		Seq: seq, Time: t, Type: rec.Type, Topic: rec.Topic,
		JSON: AppendEventJSON(nil, seq, t, rec.Type, rec.Topic, data),
	}, nil
}
