package search

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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
// much text, so that a run of large documents cannot grow one without bound.
const maxBatchText = 64 << 20

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
		default:
			x.caughtUp()
			select {
			case <-x.stopc:
				return
			case <-x.wake:
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

// read decodes the log events from..to into changes. It stops early when
// the batch's text passes maxBatchText; last is the last seq it covered.
// firstTime is the commit time of the first event (for the index delay).
func (x *Index) read(from, to uint64) (out []change, last uint64, firstTime time.Time, err error) {
	it, err := x.cfg.Store.NewIter(storage.LogKey(from), storage.LogKey(to+1))
	if err != nil {
		return nil, 0, firstTime, err
	}
	defer it.Close()
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
		c, ok, err := x.decode(seq, &rec)
		if err != nil {
			// The log holds what the engine validated, so this is a bug or
			// damage; skipping keeps the index following the log.
			x.log.Error("search: event not indexed", "seq", seq, "type", rec.Type, "err", err)
			x.m.errors.Inc()
		} else if ok {
			out = append(out, c)
			text += len(c.d.body)
		}
		next = seq + 1
	}
	if err := it.Error(); err != nil {
		return nil, 0, firstTime, err
	}
	if next == from {
		return nil, 0, firstTime, errLogGap{from, 0}
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

// decode turns one log event into a change; ok is false for events the
// index does not follow.
func (x *Index) decode(seq uint64, rec *storage.Record) (change, bool, error) {
	switch rec.Type {
	case evUnitCreated:
		data, err := rec.Data(x.cfg.Store.Get)
		if err != nil {
			return change{}, false, err
		}
		d, ok, err := unitDoc(seq, data, x.cfg.MaxTextBytes)
		return change{seq: seq, unit: true, d: d, ok: ok}, ok, err
	case evItemCreated, evItemUpdated, evItemDeleted:
		stream, group, found := strings.Cut(strings.TrimPrefix(rec.Topic, "streams/"), "/")
		if !found || !strings.HasPrefix(rec.Topic, "streams/") {
			return change{}, false, fmt.Errorf("stream event topic %q", rec.Topic)
		}
		var data struct {
			ID       string          `json:"id"`
			NewValue json.RawMessage `json:"new_value"`
		}
		if err := json.Unmarshal(rec.Inline, &data); err != nil {
			return change{}, false, err
		}
		c := change{seq: seq, key: itemKey(stream, group, data.ID)}
		if rec.Type == evItemDeleted {
			return c, true, nil // ok false: the row goes
		}
		d, ok, err := itemDoc(int64(seq), stream, group, data.ID, data.NewValue, x.cfg.MaxTextBytes)
		if err != nil {
			return change{}, false, err
		}
		c.d, c.ok = d, ok
		return c, true, nil
	}
	return change{}, false, nil
}

// apply writes changes and the new checkpoint in one transaction.
func (x *Index) apply(changes []change, checkpoint uint64) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	tx, err := x.f.w.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	w, err := prepareWriter(tx)
	if err != nil {
		return err
	}
	defer w.close()
	for i := range changes {
		c := &changes[i]
		switch {
		case c.skip:
		case c.unit:
			err = w.putDoc(&c.d)
		default:
			err = w.putItem(c.key, c.d, c.ok)
		}
		if err != nil {
			return fmt.Errorf("search: index seq %d: %w", c.seq, err)
		}
	}
	if _, err := tx.Exec(`UPDATE meta SET v = ? WHERE k = 'checkpoint'`, int64(checkpoint)); err != nil {
		return err
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
		// OR REPLACE: a rebuild may write a unit again over its row.
		{&w.insDoc, `INSERT OR REPLACE INTO docs(rowid, body, tags, kind, id, ctx, stream, grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
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

func (w *writer) putDoc(d *doc) error {
	_, err := w.insDoc.Exec(d.rowid, d.body, d.tags, d.kind, d.id, d.ctx, d.stream, d.group)
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
