package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"engram/internal/storage"
)

// GetItem returns an item's value; not found when it is absent.
func (e *Engine) GetItem(r ItemRef) (json.RawMessage, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	v, ok, err := e.get(storage.StreamItemKey(r.Stream, r.Group, r.Item))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFoundf("stream item %s/%s/%s not found", r.Stream, r.Group, r.Item)
	}
	return v, nil
}

// StreamItem is an item with its id.
type StreamItem struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"value"`
}

// ListItems lists a group's items by id, a page at a time.
func (e *Engine) ListItems(stream, group string, limit int, cursor string) ([]StreamItem, string, error) {
	if err := checkGroup(stream, group); err != nil {
		return nil, "", err
	}
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	prefix := storage.StreamGroupItemsPrefix(stream, group)
	lower := prefix
	if cursor != "" {
		after, err := decodeCursor("item", cursor)
		if err != nil {
			return nil, "", err
		}
		// The smallest key after the cursor's: its key with a 0 byte added.
		lower = append(storage.StreamItemKey(stream, group, after), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := make([]StreamItem, 0, min(limit, 64))
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, encodeCursor("item", out[len(out)-1].ID), nil
		}
		id, err := storage.StreamItemID(prefix, it.Key())
		if err != nil {
			return nil, "", err
		}
		out = append(out, StreamItem{ID: id, Value: slices.Clone(it.Value())})
	}
	return out, "", it.Error()
}

// A GroupScan reads a whole group from one consistent snapshot, item by
// item, without loading it: stream::list and /stream sync use it.
type GroupScan struct {
	snap   *pebble.Snapshot
	it     *pebble.Iterator
	prefix []byte
	// Seq is the last seq the snapshot holds: every change of the group up
	// to it is in the scan, none after it.
	Seq uint64
	// Count is the group's item count.
	Count uint64
	ok    bool // the iterator is on an item
	moved bool // Next has returned the item it is on
	err   error
}

// ScanGroup opens a scan of a group's items in id order. The caller must
// Close it.
func (e *Engine) ScanGroup(stream, group string) (*GroupScan, error) {
	if err := checkGroup(stream, group); err != nil {
		return nil, err
	}
	snap := e.store.NewSnapshot()
	seq, err := storage.SnapshotHeadSeq(snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	var count uint64
	if v, closer, err := snap.Get(storage.StreamGroupKey(stream, group)); err == nil {
		if len(v) == 8 {
			count = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		snap.Close()
		return nil, err
	}
	prefix := storage.StreamGroupItemsPrefix(stream, group)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: storage.PrefixEnd(prefix)})
	if err != nil {
		snap.Close()
		return nil, err
	}
	s := &GroupScan{snap: snap, it: it, prefix: prefix, Seq: seq, Count: count}
	s.ok = it.First()
	return s, nil
}

// Next returns the next item; ok is false at the end (or on an error: see
// Err). The slices are valid until the next call: the iterator moves on
// only then, since moving it may reuse their memory.
func (s *GroupScan) Next() (id string, value []byte, ok bool) {
	if s.moved {
		s.ok = s.it.Next()
	}
	s.moved = true
	if !s.ok || s.err != nil {
		return "", nil, false
	}
	id, err := storage.StreamItemID(s.prefix, s.it.Key())
	if err != nil {
		s.err = err
		return "", nil, false
	}
	return id, s.it.Value(), true
}

// Err is the scan's error, if it ended on one.
func (s *GroupScan) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.it.Error()
}

// Close releases the scan.
func (s *GroupScan) Close() {
	s.it.Close()
	s.snap.Close()
}

// ListGroups lists all of a stream's groups (those holding items), by id,
// following the pages of ListGroupsPage (iii's stream::list_groups answers
// them whole).
func (e *Engine) ListGroups(stream string) ([]string, error) {
	var out []string
	cursor := ""
	for {
		page, next, err := e.ListGroupsPage(stream, MaxListLimit, cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			if out == nil {
				out = []string{}
			}
			return out, nil
		}
		cursor = next
	}
}

// StreamGroups is a stream with its groups.
type StreamGroups struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
}

// ListStreams lists every stream holding items, with all its groups, by id,
// following the pages of ListStreamsPage (iii's stream::list_all answers
// them whole).
func (e *Engine) ListStreams() ([]StreamGroups, error) {
	var out []StreamGroups
	cursor := ""
	for {
		page, next, err := e.ListStreamsPage(MaxListLimit, cursor)
		if err != nil {
			return nil, err
		}
		for _, sg := range page {
			// A stream's groups may continue from the previous page.
			if n := len(out); n > 0 && out[n-1].ID == sg.ID {
				out[n-1].Groups = append(out[n-1].Groups, sg.Groups...)
				continue
			}
			out = append(out, sg)
		}
		if next == "" {
			if out == nil {
				out = []StreamGroups{}
			}
			return out, nil
		}
		cursor = next
	}
}

// ItemAt reads an item from a fresh snapshot: its value (nil when absent)
// and the last seq the snapshot holds, so that a subscriber can skip the
// live events the value already reflects.
func (e *Engine) ItemAt(r ItemRef) ([]byte, uint64, error) {
	if err := r.check(); err != nil {
		return nil, 0, err
	}
	snap := e.store.NewSnapshot()
	defer snap.Close()
	seq, err := storage.SnapshotHeadSeq(snap)
	if err != nil {
		return nil, 0, err
	}
	v, closer, err := snap.Get(storage.StreamItemKey(r.Stream, r.Group, r.Item))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, seq, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer closer.Close()
	return slices.Clone(v), seq, nil
}

// ListGroupsPage lists a stream's groups by id, a page at a time.
func (e *Engine) ListGroupsPage(stream string, limit int, cursor string) ([]string, string, error) {
	if err := checkName("stream_name", stream); err != nil {
		return nil, "", err
	}
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	prefix := storage.StreamGroupPrefix(stream)
	lower := prefix
	if cursor != "" {
		after, err := decodeCursor("group", cursor)
		if err != nil {
			return nil, "", err
		}
		lower = append(storage.StreamGroupKey(stream, after), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := []string{}
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, encodeCursor("group", out[len(out)-1]), nil
		}
		_, g, err := storage.StreamGroupOf(it.Key())
		if err != nil {
			return nil, "", err
		}
		out = append(out, g)
	}
	return out, "", it.Error()
}

// ListStreamsPage lists streams with their groups, a page of at most limit
// groups at a time: a stream with more groups than that continues on the
// next page (under the same id).
func (e *Engine) ListStreamsPage(limit int, cursor string) ([]StreamGroups, string, error) {
	limit, err := CheckLimit(limit)
	if err != nil {
		return nil, "", err
	}
	prefix := storage.StreamGroupsPrefix()
	lower := prefix
	if cursor != "" {
		after, err := decodeCursor("streams", cursor)
		if err != nil {
			return nil, "", err
		}
		s, g, ok := strings.Cut(after, "/")
		if !ok {
			return nil, "", invalidf("cursor: malformed")
		}
		lower = append(storage.StreamGroupKey(s, g), 0)
	}
	it, err := e.store.NewIter(lower, storage.PrefixEnd(prefix))
	if err != nil {
		return nil, "", err
	}
	defer it.Close()
	out := []StreamGroups{}
	n := 0
	var lastS, lastG string
	for ok := it.First(); ok; ok = it.Next() {
		if n == limit {
			return out, encodeCursor("streams", lastS+"/"+lastG), nil
		}
		s, g, err := storage.StreamGroupOf(it.Key())
		if err != nil {
			return nil, "", err
		}
		if k := len(out); k == 0 || out[k-1].ID != s {
			out = append(out, StreamGroups{ID: s})
		}
		out[len(out)-1].Groups = append(out[len(out)-1].Groups, g)
		lastS, lastG = s, g
		n++
	}
	return out, "", it.Error()
}
