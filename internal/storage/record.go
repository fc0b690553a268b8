package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A Record is the stored form of one event in the log. Its data is either
// inline (small events such as context changes) or a reference to the state
// record that holds it (work units), so that a payload is written once.
type Record struct {
	TimeUnixNano int64
	Type         string
	Topic        string
	// Exactly one of Inline and Ref is set.
	Inline []byte // the event's data JSON
	Ref    []byte // the key of the state record holding the data JSON
	// RefUnit says the state record at Ref is a unit value (AppendUnitValue)
	// whose JSON is the data; otherwise the whole value is.
	RefUnit bool
}

const (
	recordVersion = 1
	dataInline    = 0
	dataRef       = 1
	dataRefUnit   = 2
)

// ErrBadRecord reports a log record that does not decode.
var ErrBadRecord = errors.New("storage: malformed log record")

// AppendRecord appends the encoding of r to dst.
func AppendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TimeUnixNano))
	dst = binary.AppendUvarint(dst, uint64(len(r.Type)))
	dst = append(dst, r.Type...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Topic)))
	dst = append(dst, r.Topic...)
	if r.Ref != nil {
		if r.RefUnit {
			dst = append(dst, dataRefUnit)
		} else {
			dst = append(dst, dataRef)
		}
		return append(dst, r.Ref...)
	}
	dst = append(dst, dataInline)
	return append(dst, r.Inline...)
}

// Data returns the event's data JSON, reading the state record it refers
// to through get.
func (r *Record) Data(get func(key []byte) ([]byte, error)) ([]byte, error) {
	if r.Ref == nil {
		return r.Inline, nil
	}
	v, err := get(r.Ref)
	if err != nil {
		return nil, err
	}
	if !r.RefUnit {
		return v, nil
	}
	_, _, data, err := SplitUnitValue(v)
	return data, err
}

// DecodeRecord decodes a log record. The returned slices alias b.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < 9 || b[0] != recordVersion {
		return r, ErrBadRecord
	}
	r.TimeUnixNano = int64(binary.BigEndian.Uint64(b[1:9]))
	b = b[9:]
	var err error
	if r.Type, b, err = decodeLenString(b); err != nil {
		return r, err
	}
	if r.Topic, b, err = decodeLenString(b); err != nil {
		return r, err
	}
	if len(b) < 1 {
		return r, ErrBadRecord
	}
	switch b[0] {
	case dataInline:
		r.Inline = b[1:]
	case dataRef:
		r.Ref = b[1:]
	case dataRefUnit:
		r.Ref, r.RefUnit = b[1:], true
	default:
		return r, fmt.Errorf("%w: data kind %d", ErrBadRecord, b[0])
	}
	return r, nil
}

func decodeLenString(b []byte) (string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, ErrBadRecord
	}
	return string(b[w : w+int(n)]), b[w+int(n):], nil
}
