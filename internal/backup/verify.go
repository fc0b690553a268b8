package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
)

// maxProblems caps the problems a Report lists; the rest are counted.
const maxProblems = 1000

// A Report is what Verify checked and what it found wrong.
type Report struct {
	Layout    uint32
	HeadSeq   uint64
	OldestSeq uint64
	// What was checked.
	LogRecords   int64 // log records decoded
	Refs         int64 // state records the log refers to, found
	TopicEntries int64 // topic-index entries checked
	Units        int64 // work units (context-unit records) checked
	UnitIndex    int64 // unit location keys
	StreamGroups int64 // stream group counts checked
	StreamItems  int64 // stream items counted
	// Problems lists what is wrong, at most maxProblems; Omitted counts
	// the rest.
	Problems []string
	Omitted  int
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, a ...any) {
	if len(r.Problems) >= maxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// VerifyDir opens the stopped store in dir (taking its lock: a running
// server makes this fail) and verifies it.
func VerifyDir(ctx context.Context, dir string, log *slog.Logger) (*Report, error) {
	ents, err := os.ReadDir(dir)
	switch {
	case err != nil:
		return nil, fmt.Errorf("backup: %w", err)
	case len(ents) == 0: // storage.Open would make a new store of it
		return nil, fmt.Errorf("backup: %s holds no Engram data", dir)
	}
	db, err := storage.Open(storage.Config{Dir: dir}, log)
	if errors.Is(err, storage.ErrLocked) {
		return nil, fmt.Errorf("%w: is a server running on %s?", err, dir)
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return Verify(ctx, db)
}

// Verify checks a store that nothing writes to: its layout version; that
// the head seq is the last log record's; that the log's seqs are gapless
// from the oldest kept to the head; that every log record decodes and
// every state record it refers to exists; that every topic-index entry
// points to a log record of its topic and every record is indexed under
// each of its topics; that the unit index and the units agree; and that
// each stream group's count is its number of items. The error is for
// failures to read; damage is in the Report.
func Verify(ctx context.Context, db *storage.DB) (*Report, error) {
	r := &Report{HeadSeq: db.HeadSeq()}
	var err error
	if r.Layout, err = db.Layout(); err != nil {
		r.problem("layout: %v", err)
	} else if r.Layout != storage.LayoutVersion {
		r.problem("layout: version %d, this engram reads %d", r.Layout, storage.LayoutVersion)
	}
	if r.OldestSeq, err = db.OldestSeq(); err != nil {
		return r, err
	}
	wantTopics, err := verifyLog(ctx, db, r)
	if err != nil {
		return r, err
	}
	valid, err := verifyTopics(ctx, db, r)
	if err != nil {
		return r, err
	}
	if valid != wantTopics {
		// Some record lacks an entry: find which.
		if err := findUnindexed(ctx, db, r); err != nil {
			return r, err
		}
	}
	if err := verifyUnits(ctx, db, r); err != nil {
		return r, err
	}
	if err := verifyGroups(ctx, db, r); err != nil {
		return r, err
	}
	return r, nil
}

// indexTopics is storage.IndexTopics without repeats.
func indexTopics(topic string) []string {
	ts := storage.IndexTopics(topic)
	out := ts[:0]
	for _, t := range ts {
		dup := false
		for _, o := range out {
			dup = dup || o == t
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out
}

// every runs fn on every key in [lower, upper), checking ctx now and then.
func every(ctx context.Context, db *storage.DB, lower, upper []byte, fn func(it *pebble.Iterator) error) error {
	it, err := db.NewIter(lower, upper)
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	return it.Error()
}

// verifyLog checks the log's records and seqs, and returns how many
// topic-index entries they should have.
func verifyLog(ctx context.Context, db *storage.DB, r *Report) (int64, error) {
	var want int64
	next := r.OldestSeq // the seq the next record should have
	var last uint64
	err := every(ctx, db, storage.LogPrefix(), storage.PrefixEnd(storage.LogPrefix()), func(it *pebble.Iterator) error {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			r.problem("log: malformed key %x", it.Key())
			return nil
		}
		last = seq
		switch {
		case seq < r.OldestSeq:
			r.problem("log: seq %d is below the oldest kept seq %d", seq, r.OldestSeq)
		case seq > next:
			r.problem("log: seqs %d to %d are missing", next, seq-1)
		}
		next = max(next, seq+1)
		rec, err := storage.DecodeRecord(it.Value())
		if err != nil {
			r.problem("log: seq %d: %v", seq, err)
			return nil
		}
		r.LogRecords++
		want += int64(len(indexTopics(rec.Topic)))
		if rec.Ref != nil {
			v, err := db.Get(rec.Ref)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				r.problem("log: seq %d refers to state record %x, which is missing", seq, rec.Ref)
				return nil
			case err != nil:
				return err
			}
			if rec.RefUnit {
				if _, _, _, err := storage.SplitUnitValue(v); err != nil {
					r.problem("log: seq %d refers to unit %x, which does not decode", seq, rec.Ref)
					return nil
				}
			}
			r.Refs++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	switch {
	case r.HeadSeq == 0 && last != 0:
		r.problem("head: head seq 0 but the log ends at seq %d", last)
	case r.HeadSeq != 0 && last == 0:
		r.problem("head: head seq %d but the log is empty", r.HeadSeq)
	case last != r.HeadSeq:
		r.problem("head: head seq %d but the last log record is seq %d", r.HeadSeq, last)
	}
	if r.HeadSeq != 0 && r.OldestSeq > r.HeadSeq {
		r.problem("log: the oldest kept seq %d is after the head seq %d", r.OldestSeq, r.HeadSeq)
	}
	return want, nil
}

// verifyTopics checks each topic-index entry and returns how many are
// valid.
func verifyTopics(ctx context.Context, db *storage.DB, r *Report) (int64, error) {
	var valid int64
	err := every(ctx, db, storage.TopicIndexPrefix(), storage.PrefixEnd(storage.TopicIndexPrefix()), func(it *pebble.Iterator) error {
		r.TopicEntries++
		topic, seq, err := storage.DecodeTopicKey(it.Key())
		if err != nil {
			r.problem("topic index: malformed key %x", it.Key())
			return nil
		}
		raw, err := db.Get(storage.LogKey(seq))
		switch {
		case errors.Is(err, storage.ErrNotFound):
			r.problem("topic index: %q seq %d points to a missing log record", topic, seq)
			return nil
		case err != nil:
			return err
		}
		rec, err := storage.DecodeRecord(raw)
		if err != nil {
			return nil // reported by verifyLog
		}
		for _, t := range indexTopics(rec.Topic) {
			if t == topic {
				valid++
				return nil
			}
		}
		r.problem("topic index: %q seq %d points to an event of topic %q", topic, seq, rec.Topic)
		return nil
	})
	return valid, err
}

// findUnindexed reports each log record missing an entry of its topics.
func findUnindexed(ctx context.Context, db *storage.DB, r *Report) error {
	return every(ctx, db, storage.LogPrefix(), storage.PrefixEnd(storage.LogPrefix()), func(it *pebble.Iterator) error {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			return nil
		}
		rec, err := storage.DecodeRecord(it.Value())
		if err != nil {
			return nil
		}
		for _, t := range indexTopics(rec.Topic) {
			_, err := db.Get(storage.TopicKey(t, seq))
			switch {
			case errors.Is(err, storage.ErrNotFound):
				r.problem("topic index: seq %d (topic %q) is not indexed under %q", seq, rec.Topic, t)
			case err != nil:
				return err
			}
		}
		return nil
	})
}

// verifyUnits checks that each unit's location key points back to it, that
// its context exists and its JSON holds its key's seq, and that there are
// as many location keys as units.
func verifyUnits(ctx context.Context, db *storage.DB, r *Report) error {
	lastCtx, ctxOK := "", false
	err := every(ctx, db, storage.ContextUnitsPrefix(), storage.PrefixEnd(storage.ContextUnitsPrefix()), func(it *pebble.Iterator) error {
		r.Units++
		key := it.Key()
		cid, seq, err := storage.DecodeContextUnitKey(key)
		if err != nil {
			r.problem("units: malformed key %x", key)
			return nil
		}
		if cid != lastCtx || r.Units == 1 {
			lastCtx = cid
			_, err := db.Get(storage.ContextKey(cid))
			ctxOK = err == nil
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			if !ctxOK {
				r.problem("units: context %q has units but no context record", cid)
			}
		}
		_, _, js, err := storage.SplitUnitValue(it.Value())
		if err != nil {
			r.problem("units: %q seq %d: the value does not decode", cid, seq)
			return nil
		}
		var u struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(js, &u); err != nil {
			r.problem("units: %q seq %d: the JSON does not decode: %v", cid, seq, err)
			return nil
		}
		id, err := ulid.ParseStrict(u.ID)
		if err != nil {
			r.problem("units: %q seq %d: id %q is not a ULID", cid, seq, u.ID)
			return nil
		}
		if u.Seq != seq {
			r.problem("units: %s is stored at seq %d but says seq %d", u.ID, seq, u.Seq)
		}
		loc, err := db.Get(storage.UnitKey(id))
		switch {
		case errors.Is(err, storage.ErrNotFound):
			r.problem("units: %s (context %q seq %d) has no unit index entry", u.ID, cid, seq)
		case err != nil:
			return err
		case !bytes.Equal(loc, key):
			r.problem("units: the unit index entry of %s points elsewhere than its record", u.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = every(ctx, db, storage.UnitsPrefix(), storage.PrefixEnd(storage.UnitsPrefix()), func(it *pebble.Iterator) error {
		r.UnitIndex++
		return nil
	})
	if err != nil {
		return err
	}
	if r.UnitIndex != r.Units {
		r.problem("units: %d unit index entries for %d units", r.UnitIndex, r.Units)
	}
	return nil
}

// verifyGroups checks each stream group's item count against its items.
func verifyGroups(ctx context.Context, db *storage.DB, r *Report) error {
	type sg struct{ stream, group string }
	counts := map[sg]uint64{}
	err := every(ctx, db, storage.StreamGroupsPrefix(), storage.PrefixEnd(storage.StreamGroupsPrefix()), func(it *pebble.Iterator) error {
		r.StreamGroups++
		s, g, err := storage.StreamGroupOf(it.Key())
		if err != nil {
			r.problem("streams: malformed group key %x", it.Key())
			return nil
		}
		if len(it.Value()) != 8 {
			r.problem("streams: %s/%s: malformed count", s, g)
			return nil
		}
		counts[sg{s, g}] = binary.BigEndian.Uint64(it.Value())
		return nil
	})
	if err != nil {
		return err
	}
	var cur sg
	var n uint64
	flush := func() {
		if n == 0 {
			return
		}
		want, ok := counts[cur]
		switch {
		case !ok:
			r.problem("streams: %s/%s holds %d items but has no group count", cur.stream, cur.group, n)
		case want != n:
			r.problem("streams: %s/%s holds %d items, its count says %d", cur.stream, cur.group, n, want)
		}
		delete(counts, cur)
	}
	err = every(ctx, db, storage.StreamItemsPrefix(), storage.PrefixEnd(storage.StreamItemsPrefix()), func(it *pebble.Iterator) error {
		r.StreamItems++
		s, g, _, err := storage.DecodeStreamItemKey(it.Key())
		if err != nil {
			r.problem("streams: malformed item key %x", it.Key())
			return nil
		}
		if (sg{s, g}) != cur {
			flush()
			cur, n = sg{s, g}, 0
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	flush()
	for k, c := range counts {
		r.problem("streams: %s/%s has count %d but no items", k.stream, k.group, c)
	}
	return nil
}
