package search

import (
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"engram/internal/storage"
)

// scanChunk is how many documents one transaction of a rebuild's state
// scan writes.
const scanChunk = 10000

// rebuildFrom replaces the index with an empty one and fills it from
// storage: when the log is whole, by replaying it (the indexer's ordinary
// work, from seq 1); when retention has removed its start, by scanning the
// state records first and then replaying the log that is left, so that
// every document whose last change is still in the log gets that change's
// seq. Queries meanwhile see what has been rebuilt so far.
func (x *Index) rebuildFrom(reason string) error {
	now := time.Now()
	x.status.Store(&Status{Rebuilding: true, Reason: reason, Phase: "log", StartedAt: &now})
	x.m.rebuilds.Inc()
	x.log.Warn("search: rebuilding the index from storage", "reason", reason)
	if err := x.replaceFile(strings.HasPrefix(reason, "corrupt")); err != nil {
		return err
	}
	snap := x.cfg.Store.NewSnapshot()
	defer snap.Close()
	oldest, err := storage.SnapshotOldestSeq(snap)
	if err != nil {
		return err
	}
	if oldest <= 1 {
		return nil // the indexer replays the whole log from here
	}
	x.status.Store(&Status{Rebuilding: true, Reason: reason, Phase: "scan", StartedAt: &now})
	if err := x.scan(snap, oldest); err != nil {
		return err
	}
	x.advance(oldest - 1)
	st := *x.status.Load()
	st.Phase = "log"
	x.status.Store(&st)
	return nil
}

// replaceFile swaps the index file for an empty one; corrupt keeps the old
// one aside as index.db.bad.
func (x *Index) replaceFile(corrupt bool) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.f != nil {
		if err := x.f.close(); err != nil {
			x.log.Warn("search: closing the old index", "err", err)
		}
		x.f = nil
	}
	var err error
	if corrupt {
		err = x.setAside()
	} else if err = removeFiles(x.path); err != nil {
		err = fmt.Errorf("search: remove the old index: %w", err)
	}
	if err != nil {
		return err
	}
	f, st, err := openFiles(x.path, x.cfg.Readers)
	if err != nil {
		return fmt.Errorf("search: create %s: %w", x.path, err)
	}
	x.f, x.nextNeg = f, st.nextNeg
	x.indexed.Store(0)
	return nil
}

// scan indexes the work units and stream items of snap, marking the index
// as building until it ends with the checkpoint oldest-1 (the log replay
// starts at oldest). A stream item's last seq is not kept in state: an item
// gets a negative rowid (older than any seq) until the replay meets a later
// change of it.
func (x *Index) scan(snap *pebble.Snapshot, oldest uint64) error {
	if err := x.write(map[string]int64{"building": 1}, nil); err != nil {
		return err
	}
	var scanned int64
	last := time.Now()
	progress := func() {
		st := *x.status.Load()
		st.Scanned = scanned
		x.status.Store(&st)
		if time.Since(last) > progressEvery {
			last = time.Now()
			x.log.Info("search: rebuilding: scanning state", "records", scanned)
		}
	}
	var batch []doc
	flush := func(final bool) error {
		if len(batch) == 0 && !final {
			return nil
		}
		meta := map[string]int64{"next_neg": x.nextNeg}
		if final {
			meta["building"], meta["checkpoint"] = 0, int64(oldest-1)
		}
		if err := x.writeDocs(batch, meta); err != nil {
			return err
		}
		batch = batch[:0]
		progress()
		return nil
	}
	// Work units: context + seq → unit value.
	if err := x.scanPrefix(snap, storage.ContextUnitsPrefix(), func(k, v []byte) error {
		seq, err := storage.TrailingSeq(k)
		if err != nil {
			return err
		}
		_, _, unitJSON, err := storage.SplitUnitValue(v)
		if err != nil {
			return err
		}
		d, ok, err := unitDoc(seq, unitJSON, x.cfg.MaxTextBytes)
		if err != nil {
			return fmt.Errorf("search: unit at seq %d: %w", seq, err)
		}
		scanned++
		if ok {
			batch = append(batch, d)
		}
		if len(batch) >= scanChunk {
			return flush(false)
		}
		return nil
	}); err != nil {
		return err
	}
	// Stream items: stream + group + item → value.
	if err := x.scanPrefix(snap, storage.StreamItemsPrefix(), func(k, v []byte) error {
		stream, group, item, err := storage.DecodeStreamItemKey(k)
		if err != nil {
			return err
		}
		d, ok, err := itemDoc(x.nextNeg, stream, group, item, v, x.cfg.MaxTextBytes)
		if err != nil {
			return fmt.Errorf("search: item %s/%s/%s: %w", stream, group, item, err)
		}
		scanned++
		if ok {
			x.nextNeg--
			batch = append(batch, d)
		}
		if len(batch) >= scanChunk {
			return flush(false)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := flush(true); err != nil {
		return err
	}
	x.log.Info("search: rebuilding: state scanned; replaying the log that is left", "records", scanned, "from_seq", oldest)
	return nil
}

// scanPrefix calls fn for each key under prefix in snap, stopping early
// when the index closes.
func (x *Index) scanPrefix(snap *pebble.Snapshot, prefix []byte, fn func(k, v []byte) error) error {
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: storage.PrefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if x.stopped() {
			return errStopped
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// writeDocs writes docs (stream items among them are also mapped in the
// items table) and meta in one transaction.
func (x *Index) writeDocs(docs []doc, meta map[string]int64) error {
	return x.write(meta, func(w *writer) error {
		for i := range docs {
			d := &docs[i]
			var err error
			if d.kind == KindItem {
				err = w.putItem(itemKey(d.stream, d.group, d.id), *d, true)
			} else {
				err = w.putDoc(d)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
