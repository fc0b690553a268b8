package search_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"engram/internal/engine"
	"engram/internal/router"
	"engram/internal/search"
	"engram/internal/storage"
	"engram/internal/wal"
)

// snapshotAll is every hit of a few queries, for comparing an index with
// its rebuild.
func snapshotAll(t *testing.T, v *env) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{"alpha", "beta", "item*", "shared"} {
		res := v.search(t, search.Query{Q: q, Sort: search.SortRecent, Limit: 1000})
		for _, h := range res.Hits {
			fmt.Fprintf(&b, "%s %s %s %s/%s %d %s\n", q, h.Kind, h.ID, h.Stream, h.Group, h.Seq, h.Snippet)
		}
	}
	return b.String()
}

func fill(t *testing.T, v *env, n int) {
	t.Helper()
	for i := range n {
		v.unit(t, fmt.Sprintf("c%d", i%3), "a", "MESSAGE", fmt.Sprintf("alpha %d shared", i), nil)
		if i%4 == 0 {
			v.set(t, "s", "g", fmt.Sprintf("i%d", i%8), fmt.Sprintf("beta item %d", i))
		}
	}
	v.del(t, "s", "g", "i4")
}

func TestRestartKeepsTheIndex(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 40)
	before := snapshotAll(t, v)
	v = v.reopen(t)
	st := v.waitCaughtUp(t)
	if st.StartedAt != nil || st.Reason != "" {
		t.Fatalf("a clean restart rebuilt the index: %+v", st)
	}
	if after := snapshotAll(t, v); after != before {
		t.Fatalf("after restart:\n%s\nbefore:\n%s", after, before)
	}
	_, seq := v.unit(t, "c", "a", "MESSAGE", "alpha after restart", nil)
	if res := v.search(t, search.Query{Q: "restart"}); len(res.Hits) != 1 || res.Hits[0].Seq != seq {
		t.Fatalf("write after restart: %+v", res.Hits)
	}
}

func TestRebuildWhenMissing(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 40)
	before := snapshotAll(t, v)
	v.close(t)
	if err := os.RemoveAll(filepath.Join(v.dir, "search")); err != nil {
		t.Fatal(err)
	}
	v = v.reopen(t)
	st := v.waitCaughtUp(t)
	if st.StartedAt == nil || !strings.Contains(st.Reason, "no index") {
		t.Fatalf("status %+v", st)
	}
	if after := snapshotAll(t, v); after != before {
		t.Fatalf("rebuilt:\n%s\nbefore:\n%s", after, before)
	}
}

func TestRebuildWhenCorrupt(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 40)
	before := snapshotAll(t, v)
	v.close(t)
	path := filepath.Join(v.dir, "search", "index.db")
	for _, p := range []string{path + "-wal", path + "-shm"} {
		os.Remove(p)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	v = v.reopen(t)
	v.waitCaughtUp(t)
	if _, err := os.Stat(path + ".bad"); err != nil {
		t.Fatalf("the corrupt file was not set aside: %v", err)
	}
	if after := snapshotAll(t, v); after != before {
		t.Fatalf("rebuilt:\n%s\nbefore:\n%s", after, before)
	}
}

func TestRebuildOnOtherSchemaVersion(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 10)
	before := snapshotAll(t, v)
	v.close(t)
	db, err := sql.Open("sqlite", filepath.Join(v.dir, "search", "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE meta SET v = 99 WHERE k = 'version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	v = v.reopen(t)
	if st := v.waitCaughtUp(t); !strings.Contains(st.Reason, "version 99") {
		t.Fatalf("status %+v", st)
	}
	if after := snapshotAll(t, v); after != before {
		t.Fatalf("rebuilt:\n%s\nbefore:\n%s", after, before)
	}
}

func TestReindexOnline(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 40)
	before := snapshotAll(t, v)
	st := v.x.Reindex("test")
	if !st.Rebuilding {
		t.Fatalf("status right after Reindex: %+v", st)
	}
	// Writes go on while it rebuilds.
	_, seq := v.unit(t, "c", "a", "MESSAGE", "written during the rebuild", nil)
	st = v.waitCaughtUp(t)
	if st.Reason != "test" || st.IndexedSeq < seq {
		t.Fatalf("status %+v", st)
	}
	if got := v.search(t, search.Query{Q: "rebuild"}); len(got.Hits) != 1 {
		t.Fatalf("write during rebuild: %+v", got.Hits)
	}
	if after := snapshotAll(t, v); after != before {
		t.Fatalf("rebuilt:\n%s\nbefore:\n%s", after, before)
	}
}

// prune removes all but the last keep events from the log, as retention
// does; floor, when set, holds back what the index has not indexed.
func prune(t *testing.T, db *storage.DB, head func() uint64, keep uint64, floor func() uint64) {
	t.Helper()
	rt, err := router.New(db, head(), router.Config{Retention: router.Retention{MaxEvents: keep, Head: head, Floor: floor}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.Prune(); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildAfterRetention: the index is lost after retention removed the
// start of the log, so the rebuild reads the state records, then replays the
// log that is left.
func TestRebuildAfterRetention(t *testing.T) {
	v := newEnv(t)
	var units []uint64
	for i := range 20 {
		_, seq := v.unit(t, "c", "a", "MESSAGE", fmt.Sprintf("alpha u%d", i), nil)
		units = append(units, seq)
	}
	v.set(t, "s", "g", "old", "item untouched since the cut")
	v.set(t, "s", "g", "moved", "item first text")
	v.set(t, "s", "g", "gone", "item soon deleted")
	v.waitCaughtUp(t)
	prune(t, v.db, v.seq.Head, 2, v.x.IndexedSeq) // the last two: moved and gone
	moved := v.set(t, "s", "g", "moved", "item second text")
	v.del(t, "s", "g", "gone")
	_, last := v.unit(t, "c", "a", "MESSAGE", "alpha last", nil)
	units = append(units, last)
	v.close(t)
	if err := os.RemoveAll(filepath.Join(v.dir, "search")); err != nil {
		t.Fatal(err)
	}
	v = v.reopen(t)
	v.waitCaughtUp(t)

	res := v.search(t, search.Query{Q: "alpha", Sort: search.SortRecent, Limit: 100})
	var got []uint64
	for _, h := range res.Hits {
		got = append(got, h.Seq)
	}
	slices.Reverse(got)
	if !slices.Equal(got, units) {
		t.Fatalf("unit seqs %v, want %v", got, units)
	}
	items := v.search(t, search.Query{Q: "item", Kind: search.KindItem, Sort: search.SortRecent})
	if len(items.Hits) != 2 || items.Hits[0].ID != "moved" || items.Hits[0].Seq != moved ||
		items.Hits[1].ID != "old" || items.Hits[1].Seq != 0 {
		t.Fatalf("items %+v", items.Hits)
	}
	if n := len(v.search(t, search.Query{Q: "first OR soon"}).Hits); n != 0 {
		t.Fatalf("%d stale item hits", n)
	}
}

// TestLogGap: the index fell behind and retention (with no floor) removed
// events it had not indexed; it notices and rebuilds from state.
func TestLogGap(t *testing.T) {
	v := newEnv(t)
	fill(t, v, 12)
	v.waitCaughtUp(t)
	v.close(t)

	// The store moves on without the index.
	db, err := storage.Open(storage.Config{Dir: v.dir + "/store"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := wal.New(db, wal.Config{NoSync: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(db, seq, engine.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := &env{dir: v.dir, db: db, seq: seq, e: e}
	for i := range 10 {
		other.unit(t, "c", "a", "MESSAGE", fmt.Sprintf("alpha offline %d", i), nil)
	}
	other.set(t, "s", "g", "i0", "beta item replaced offline")
	prune(t, db, seq.Head, 2, nil)
	e.Close()
	seq.Close()
	db.Close()

	v = v.reopen(t)
	st := v.waitCaughtUp(t)
	if !strings.Contains(st.Reason, "no longer holds") {
		t.Fatalf("status %+v", st)
	}
	if n := len(v.search(t, search.Query{Q: "alpha", Limit: 100}).Hits); n != 22 {
		t.Fatalf("%d units found, want 22", n)
	}
	if got := ids(v.search(t, search.Query{Q: "offline", Kind: search.KindItem})); !slices.Equal(got, []string{"i0"}) {
		t.Fatalf("item: %v", got)
	}
}
