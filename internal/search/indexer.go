package search

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	sqlite3 "modernc.org/sqlite/lib"

	"engram/internal/storage"
)

// Event types the index follows. Others (contexts, queues, locks, cron,
// presence, custom stream events) hold no searchable state.
const (
	evUnitCreated = "workunit.created"
	evItemCreated = "stream.created"
	evItemUpdated = "stream.updated"
	evItemDeleted = "stream.deleted"
)

// progressEvery is how often a rebuild logs its progress.
const progressEvery = 5 * time.Second

// maxBatchText ends an index transaction early once its documents hold this
// much text, so that a run of large documents cannot grow one without bound
// (it is checked between chunks of unitChunk units: at most 32 MiB plus one
// chunk of documents of MaxTextBytes each).
const maxBatchText = 32 << 20

// errLogGap reports log records missing where the checkpoint needs them:
// retention removed them (or the store was replaced), so only a rebuild
// from state can bring the index up to date.
type errLogGap struct{ want, got uint64 }

func (e errLogGap) Error() string {
	return fmt.Sprintf("search: the log has no event %d (next found: %d)", e.want, e.got)
}

// run is the indexer goroutine: it rebuilds when asked, then follows the
// log until stopped.
func (x *Index) run() {
	defer close(x.donec)
	switch cp, head := x.indexed.Load(), x.cfg.Head(); {
	case cp > head:
		x.retryRebuild(fmt.Sprintf("the index holds seq %d, past the log's last seq %d (a store restored from an older backup?)", cp, head))
	case x.fresh && head > 0 && len(x.rebuild) == 0:
		// The new file needs no replacing: the indexer replays the log
		// into it (or rebuilds from state if retention removed its start).
		now := time.Now()
		x.status.Store(&Status{Rebuilding: true, Reason: reasonNoFile, Phase: "log", StartedAt: &now})
		x.m.rebuilds.Inc()
		x.log.Info("search: building the index from storage", "reason", reasonNoFile, "head_seq", head)
	}
	backoff := time.Duration(0)
	for {
		select {
		case <-x.stopc:
			return
		case reason := <-x.rebuild:
			if err := x.rebuildFrom(reason); err != nil {
				if x.stopped() {
					return
				}
				x.log.Error("search: rebuild failed; retrying", "err", err)
				x.m.errors.Inc()
				x.retryRebuild(reason)
				if !x.sleep(time.Second) {
					return
				}
			}
			continue
		default:
		}
		n, err := x.step()
		switch {
		case err != nil:
			var gap errLogGap
			switch {
			case x.stopped():
				return
			case errors.As(err, &gap):
				x.log.Warn("search: events the index needs were removed from the log; rebuilding from state", "err", err)
				x.retryRebuild("the log no longer holds the events after the index's checkpoint")
				continue
			case isCorrupt(err):
				x.log.Error("search: the index is corrupt; rebuilding", "err", err)
				x.retryRebuild("corrupt index: " + err.Error())
				continue
			}
			x.m.errors.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			x.log.Error("search: indexing failed; retrying", "err", err, "in", backoff)
			if !x.sleep(backoff) {
				return
			}
		case n > 0:
			backoff = 0
			if n < x.cfg.BatchEvents && !x.settle() {
				return
			}
		default:
			x.caughtUp()
			select {
			case <-x.stopc:
				return
			case <-x.wake:
				if !x.settle() {
					return
				}
			case reason := <-x.rebuild:
				x.retryRebuild(reason)
			case <-time.After(time.Second):
				// Head moves without a Notify when commits come from a
				// writer that does not call it (tests, tools).
			}
		}
	}
}

func (x *Index) stopped() bool {
	select {
	case <-x.stopc:
		return true
	default:
		return false
	}
}

// sleep waits d unless stopped first; false means stopped.
func (x *Index) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.stopc:
		return false
	}
}

// settle lets commits gather for Config.Settle before the next index
// transaction, unless a query waits on min_seq, a full batch is already
// waiting, or a rebuild runs; false means stopped.
func (x *Index) settle() bool {
	if x.cfg.Settle <= 0 || x.waiters.Load() > 0 || x.status.Load().Rebuilding ||
		x.cfg.Head()-min(x.cfg.Head(), x.indexed.Load()) >= uint64(x.cfg.BatchEvents) {
		return true
	}
	t := time.NewTimer(x.cfg.Settle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-x.hurry:
	case <-x.stopc:
		return false
	}
	return true
}

// retryRebuild queues a rebuild unless one is queued. The status says
// rebuilding from here on, so that a caller polling Status never sees the
// old index's checkpoint as the end of the rebuild it asked for.
func (x *Index) retryRebuild(reason string) {
	select {
	case x.rebuild <- reason:
		now := time.Now()
		x.status.Store(&Status{Rebuilding: true, Reason: reason, Phase: "queued", StartedAt: &now})
	default:
	}
}

// caughtUp ends a rebuild's status once the index reaches the head.
func (x *Index) caughtUp() {
	st := x.status.Load()
	if !st.Rebuilding || len(x.rebuild) > 0 {
		return
	}
	done := *st
	done.Rebuilding, done.Phase = false, ""
	x.status.Store(&done)
	x.log.Info("search: rebuild done", "indexed_seq", x.indexed.Load(),
		"took", time.Since(*st.StartedAt).Round(time.Millisecond).String(), "reason", st.Reason)
}

// A change is one log event's effect on the index.
type change struct {
	seq  uint64
	unit bool
	d    doc    // the new document (ok false: none)
	ok   bool   // d is set
	key  string // stream items: the item's key in the items table
	skip bool   // superseded by a later change of the same item in the batch
}

// step indexes the events after the checkpoint, up to one batch, in one
// transaction, and returns how many events it covered.
func (x *Index) step() (int, error) {
	cp := x.indexed.Load()
	head := x.cfg.Head()
	if cp >= head {
		return 0, nil
	}
	end := min(head, cp+uint64(x.cfg.BatchEvents))
	changes, last, firstTime, err := x.read(cp+1, end)
	if err != nil {
		return 0, err
	}
	if err := x.apply(changes, last); err != nil {
		return 0, err
	}
	x.advance(last)
	n := int(last - cp)
	x.m.batch.Observe(float64(n))
	x.m.delay.Observe(time.Since(firstTime).Seconds())
	if st := x.status.Load(); st.Rebuilding && time.Since(x.progressAt) > progressEvery {
		x.progressAt = time.Now()
		x.log.Info("search: rebuilding: replaying the log", "indexed_seq", last, "head_seq", head,
			"percent", fmt.Sprintf("%.1f", 100*float64(last)/float64(max(head, 1))))
	}
	return n, nil
}

// unitChunk is how many work unit records read resolves at once, in key
// order.
const unitChunk = 512

// read decodes the log events from..to into changes. It stops early when
// the batch's text passes maxBatchText; last is the last seq it covered.
// firstTime is the commit time of the first event (for the index delay).
func (x *Index) read(from, to uint64) (out []change, last uint64, firstTime time.Time, err error) {
	it, err := x.cfg.Store.NewIter(storage.LogKey(from), storage.LogKey(to+1))
	if err != nil {
		return nil, 0, firstTime, err
	}
	defer it.Close()
	units := unitReader{x: x}
	defer units.close()
	next, text := from, 0
	for ok := it.First(); ok && text < maxBatchText; ok = it.Next() {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			return nil, 0, firstTime, err
		}
		if seq != next {
			return nil, 0, firstTime, errLogGap{next, seq}
		}
		rec, err := storage.DecodeRecord(it.Value())
		if err != nil {
			return nil, 0, firstTime, fmt.Errorf("search: seq %d: %w", seq, err)
		}
		if seq == from {
			firstTime = time.Unix(0, rec.TimeUnixNano)
		}
		next = seq + 1
		switch rec.Type {
		case evUnitCreated:
			out = append(out, change{seq: seq, unit: true})
			if rec.Ref == nil || !rec.RefUnit { // not how the engine writes units, but valid
				x.unitChange(&out[len(out)-1], rec.Inline)
				text += len(out[len(out)-1].d.body)
				continue
			}
			units.want(len(out)-1, rec.Ref)
			if units.full() {
				n, err := units.resolve(out)
				if err != nil {
					return nil, 0, firstTime, err
				}
				text += n
			}
		case evItemCreated, evItemUpdated, evItemDeleted:
			c, err := x.decodeItem(seq, &rec)
			if err != nil {
				// The log holds what the engine validated, so this is a
				// bug or damage; skipping keeps the index following the log.
				x.log.Error("search: event not indexed", "seq", seq, "type", rec.Type, "err", err)
				x.m.errors.Inc()
				continue
			}
			out = append(out, c)
			text += len(c.d.body)
		}
	}
	if err := it.Error(); err != nil {
		return nil, 0, firstTime, err
	}
	if next == from {
		return nil, 0, firstTime, errLogGap{from, 0}
	}
	if _, err := units.resolve(out); err != nil {
		return nil, 0, firstTime, err
	}
	// Only the last change of each item in a batch reaches the index.
	latest := make(map[string]int)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i].unit {
			continue
		}
		if _, seen := latest[out[i].key]; seen {
			out[i].skip = true
		} else {
			latest[out[i].key] = i
		}
	}
	return out, next - 1, firstTime, nil
}

// unitChange fills a work unit's change from its JSON.
func (x *Index) unitChange(c *change, unitJSON []byte) {
	d, ok, err := unitDoc(c.seq, unitJSON, x.cfg.MaxTextBytes)
	if err != nil {
		x.log.Error("search: work unit not indexed", "seq", c.seq, "err", err)
		x.m.errors.Inc()
		return
	}
	c.d, c.ok = d, ok
}

// unitReader reads the state records that work unit events refer to. The
// log is in seq order, but units are stored by context, so reading them in
// log order would jump between contexts and read each data block again and
// again (measured: 40% of the indexer's time went to block reads). It
// collects up to unitChunk references, then reads them in key order with
// one iterator, so that the units of one context share their blocks.
type unitReader struct {
	x    *Index
	it   *pebble.Iterator
	refs []unitRef
}

type unitRef struct {
	i   int // index in the changes
	key []byte
}

func (r *unitReader) want(i int, key []byte) {
	r.refs = append(r.refs, unitRef{i, bytes.Clone(key)})
}

func (r *unitReader) full() bool { return len(r.refs) >= unitChunk }

// resolve reads the wanted records into out and returns the text it added.
func (r *unitReader) resolve(out []change) (int, error) {
	if len(r.refs) == 0 {
		return 0, nil
	}
	if r.it == nil {
		p := storage.ContextUnitsPrefix()
		it, err := r.x.cfg.Store.NewIter(p, storage.PrefixEnd(p))
		if err != nil {
			return 0, err
		}
		r.it = it
	}
	slices.SortFunc(r.refs, func(a, b unitRef) int { return bytes.Compare(a.key, b.key) })
	text := 0
	for _, ref := range r.refs {
		c := &out[ref.i]
		if !r.it.SeekGE(ref.key) || !bytes.Equal(r.it.Key(), ref.key) {
			if err := r.it.Error(); err != nil {
				return 0, err
			}
			r.x.log.Error("search: work unit not indexed: its record is missing", "seq", c.seq)
			r.x.m.errors.Inc()
			continue
		}
		_, _, unitJSON, err := storage.SplitUnitValue(r.it.Value())
		if err != nil {
			r.x.log.Error("search: work unit not indexed", "seq", c.seq, "err", err)
			r.x.m.errors.Inc()
			continue
		}
		r.x.unitChange(c, unitJSON)
		text += len(c.d.body)
	}
	r.refs = r.refs[:0]
	return text, nil
}

func (r *unitReader) close() {
	if r.it != nil {
		r.it.Close()
	}
}

// decodeItem turns a stream item event into a change.
func (x *Index) decodeItem(seq uint64, rec *storage.Record) (change, error) {
	stream, group, found := strings.Cut(strings.TrimPrefix(rec.Topic, "streams/"), "/")
	if !found || !strings.HasPrefix(rec.Topic, "streams/") {
		return change{}, fmt.Errorf("stream event topic %q", rec.Topic)
	}
	var data struct {
		ID       string          `json:"id"`
		NewValue json.RawMessage `json:"new_value"`
	}
	if err := json.Unmarshal(rec.Inline, &data); err != nil {
		return change{}, err
	}
	c := change{seq: seq, key: itemKey(stream, group, data.ID)}
	if rec.Type == evItemDeleted {
		return c, nil // ok false: the row goes
	}
	d, ok, err := itemDoc(int64(seq), stream, group, data.ID, data.NewValue, x.cfg.MaxTextBytes)
	if err != nil {
		return change{}, err
	}
	c.d, c.ok = d, ok
	return c, nil
}

// apply writes changes and the new checkpoint in one transaction.
func (x *Index) apply(changes []change, checkpoint uint64) error {
	return x.write(map[string]int64{"checkpoint": int64(checkpoint)}, func(w *writer) error {
		for i := range changes {
			c := &changes[i]
			var err error
			switch {
			case c.skip, c.unit && !c.ok:
			case c.unit:
				err = w.putDoc(&c.d)
			default:
				err = w.putItem(c.key, c.d, c.ok)
			}
			if err != nil {
				return fmt.Errorf("search: index seq %d: %w", c.seq, err)
			}
		}
		return nil
	})
}

// write runs fn (nil: nothing) and sets meta in one transaction of the
// index's writer.
func (x *Index) write(meta map[string]int64, fn func(w *writer) error) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	tx, err := x.f.w.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if fn != nil {
		w, err := prepareWriter(tx)
		if err != nil {
			return err
		}
		defer w.close()
		if err := fn(w); err != nil {
			return err
		}
	}
	for k, v := range meta {
		if _, err := tx.Exec(`UPDATE meta SET v = ? WHERE k = ?`, v, k); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// writer holds the statements of one index transaction.
type writer struct {
	tx                                      *sql.Tx
	insDoc, delDoc, getItem, putRow, delRow *sql.Stmt
}

func prepareWriter(tx *sql.Tx) (*writer, error) {
	w := &writer{tx: tx}
	for _, p := range []struct {
		s   **sql.Stmt
		sql string
	}{
		{&w.insDoc, `INSERT INTO docs(rowid, body, tags, kind, id, ctx, stream, grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.delDoc, `DELETE FROM docs WHERE rowid = ?`},
		{&w.getItem, `SELECT rid FROM items WHERE key = ?`},
		{&w.putRow, `INSERT OR REPLACE INTO items(key, rid) VALUES (?, ?)`},
		{&w.delRow, `DELETE FROM items WHERE key = ?`},
	} {
		s, err := tx.Prepare(p.sql)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.s = s
	}
	return w, nil
}

func (w *writer) close() {
	for _, s := range []*sql.Stmt{w.insDoc, w.delDoc, w.getItem, w.putRow, w.delRow} {
		if s != nil {
			s.Close()
		}
	}
}

// putDoc inserts d. A row with its rowid can exist only where a rebuild's
// state scan and its log replay overlap (or after a crash in that
// replay); then the row is replaced. A plain insert first: FTS5's REPLACE
// looks for the old row on every insert (13% of the indexer's time).
func (w *writer) putDoc(d *doc) error {
	_, err := w.insDoc.Exec(d.rowid, d.body, d.tags, d.kind, d.id, d.ctx, d.stream, d.group)
	if sqliteCode(err) != sqlite3.SQLITE_CONSTRAINT {
		return err
	}
	if _, err := w.delDoc.Exec(d.rowid); err != nil {
		return err
	}
	_, err = w.insDoc.Exec(d.rowid, d.body, d.tags, d.kind, d.id, d.ctx, d.stream, d.group)
	return err
}

// putItem replaces a stream item's document with d (ok false: the item has
// no document any more).
func (w *writer) putItem(key string, d doc, ok bool) error {
	var rid int64
	switch err := w.getItem.QueryRow(key).Scan(&rid); {
	case err == nil:
		if _, err := w.delDoc.Exec(rid); err != nil {
			return err
		}
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if !ok {
		_, err := w.delRow.Exec(key)
		return err
	}
	if err := w.putDoc(&d); err != nil {
		return err
	}
	_, err := w.putRow.Exec(key, d.rowid)
	return err
}

var errStopped = errors.New("search: index closed")
