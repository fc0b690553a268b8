package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"engram/internal/backup"
	"engram/internal/engine"
	"engram/internal/server"
	"engram/internal/storage"
)

// newStore starts an in-process server on a new data dir and writes units
// in two contexts and stream items in two groups (one item deleted).
func newStore(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, srv) })
	ctx := context.Background()
	eng := srv.Engine()
	for i := range 40 {
		in := engine.UnitInput{ContextID: fmt.Sprintf("c%d", i%2), AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage(fmt.Sprintf(`"unit %d"`, i))}
		if _, err := eng.CreateUnit(ctx, &in); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		r := engine.ItemRef{Stream: "s", Group: fmt.Sprintf("g%d", i%2), Item: fmt.Sprintf("it%d", i)}
		if _, err := eng.SetItem(ctx, r, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.DeleteItem(ctx, engine.ItemRef{Stream: "s", Group: "g0", Item: "it0"}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func stop(t *testing.T, srv *server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// takeBackup writes a backup of srv's store into a buffer.
func takeBackup(t *testing.T, srv *server.Server) ([]byte, backup.Manifest) {
	t.Helper()
	src := backup.New(srv.Store(), backup.Config{Version: "test"}, nil)
	snap, err := src.Take()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d bytes (buffer %d), %v", n, buf.Len(), err)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snap.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the checkpoint %s is still there after Close: %v", snap.Dir(), err)
	}
	return buf.Bytes(), snap.Manifest()
}

// dump returns every key and value of the store in dir.
func dump(t *testing.T, db *storage.DB) map[string]string {
	t.Helper()
	it, err := db.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	srv := newStore(t)
	raw, m := takeBackup(t, srv)
	if m.HeadSeq != srv.HeadSeq() || m.Layout != storage.LayoutVersion || m.OldestSeq != 1 || m.Version != "test" || len(m.Files) == 0 {
		t.Fatalf("manifest %+v; head seq %d", m, srv.HeadSeq())
	}
	// No SQLite file, no lock file, only the store's.
	for _, f := range m.Files {
		if strings.Contains(f.Name, "index.db") || f.Name == "engram.lock" || f.Name == "LOCK" {
			t.Errorf("the backup holds %s", f.Name)
		}
	}
	if got, err := backup.Check(bytes.NewReader(raw), backup.Limits{}); err != nil || got.HeadSeq != m.HeadSeq {
		t.Fatalf("Check: %+v, %v", got, err)
	}
	if got, err := backup.ReadManifest(bytes.NewReader(raw)); err != nil || got.HeadSeq != m.HeadSeq {
		t.Fatalf("ReadManifest: %+v, %v", got, err)
	}
	want := dump(t, srv.Store())
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := backup.Restore(bytes.NewReader(raw), dir, backup.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 {
		t.Errorf("restore left %d entries beside the dir", len(ents))
	}
	r, err := backup.VerifyDir(context.Background(), dir, nil)
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %+v", err, r)
	}
	if r.LogRecords != int64(m.HeadSeq) || r.Units != 40 || r.UnitIndex != 40 || r.StreamGroups != 2 || r.StreamItems != 9 || r.Refs != 40 {
		t.Errorf("verify counted %+v", r)
	}
	db, err := storage.OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := dump(t, db)
	db.Close()
	if len(got) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %x: restored %q, want %q", k, got[k], v)
		}
	}

	// Not into a non-empty dir, unless forced; never under a running server.
	if _, err := backup.Restore(bytes.NewReader(raw), dir, backup.RestoreOptions{}); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore into a non-empty dir: %v", err)
	}
	if _, err := backup.Restore(bytes.NewReader(raw), srv.Store().Dir(), backup.RestoreOptions{Force: true}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("forced restore into a running server's dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "stray"), []byte("x"), 0o644)
	if _, err := backup.Restore(bytes.NewReader(raw), dir, backup.RestoreOptions{Force: true}); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stray")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a forced restore kept the old files")
	}
}

// The checkpoint goes when the reader fails half way, and a new Source
// removes the ones a crash left.
func TestCheckpointRemoved(t *testing.T) {
	srv := newStore(t)
	src := backup.New(srv.Store(), backup.Config{}, nil)
	snap, err := src.Take()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.WriteTo(&failWriter{after: 2000}); err == nil {
		t.Fatal("WriteTo into a failing writer succeeded")
	}
	snap.Close()
	if _, err := os.Stat(snap.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoint still there: %v", err)
	}
	left, err := src.Take() // never closed: a crash
	if err != nil {
		t.Fatal(err)
	}
	backup.New(srv.Store(), backup.Config{}, nil)
	if _, err := os.Stat(left.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a stale checkpoint survived New: %v", err)
	}
}

// TestInFlightCap: snapshots beyond MaxInFlight are refused until one is
// closed, also one whose stream failed.
func TestInFlightCap(t *testing.T) {
	srv := newStore(t)
	src := backup.New(srv.Store(), backup.Config{MaxInFlight: 2}, nil)
	a, err := src.Take()
	if err != nil {
		t.Fatal(err)
	}
	b, err := src.Take()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Take(); !errors.Is(err, backup.ErrBusy) {
		t.Fatalf("third snapshot: %v, want ErrBusy", err)
	}
	if _, err := a.WriteTo(&failWriter{after: 100}); err == nil {
		t.Fatal("WriteTo into a failing writer succeeded")
	}
	a.Close()
	a.Close() // twice frees one slot only
	c, err := src.Take()
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	if _, err := src.Take(); !errors.Is(err, backup.ErrBusy) {
		t.Fatalf("a double Close freed two slots: %v", err)
	}
	b.Close()
	c.Close()
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("client went away")
	}
	return len(p), nil
}

// entry is one tar entry of a hand-made backup.
type entry struct {
	name string
	typ  byte
	body string
	link string
	size int64 // -1: len(body)
}

// forge builds a backup tar from a manifest listing files and entries;
// the sums entry is computed unless sums is set.
func forge(t *testing.T, files []backup.File, layout uint32, ents []entry, sums *string) []byte {
	t.Helper()
	m := backup.Manifest{Format: backup.FormatVersion, Layout: layout, HeadSeq: 1, OldestSeq: 1, Files: files}
	mj, _ := json.Marshal(m)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var s strings.Builder
	all := append([]entry{{name: backup.ManifestName, body: string(mj), size: -1}, {name: backup.NoteName, body: "note", size: -1}}, ents...)
	for _, e := range all {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := e.size
		if size == -1 || typ != tar.TypeReg {
			size = int64(len(e.body))
		}
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: typ, Name: e.name, Linkname: e.link, Size: size, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
			h := sha256.Sum256([]byte(e.body))
			fmt.Fprintf(&s, "%s  %s\n", hex.EncodeToString(h[:]), e.name)
		}
	}
	sum := s.String()
	if sums != nil {
		sum = *sums
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: backup.SumsName, Size: int64(len(sum)), Mode: 0o644})
	tw.Write([]byte(sum))
	tw.Close()
	return buf.Bytes()
}

func TestRestoreRejects(t *testing.T) {
	srv := newStore(t)
	valid, _ := takeBackup(t, srv)
	one := []backup.File{{Name: "000001.sst", Size: 3}}
	reg := []entry{{name: "000001.sst", body: "abc", size: -1}}
	bad := "0000  000001.sst\n"
	for _, tc := range []struct {
		name string
		tar  []byte
		lim  backup.Limits
		want string
	}{
		{"empty", nil, backup.Limits{}, "not an Engram backup"},
		{"no manifest first", func() []byte {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "x", Size: 0})
			tw.Close()
			return b.Bytes()
		}(), backup.Limits{}, "not an Engram backup"},
		{"absolute path", forge(t, one, storage.LayoutVersion, []entry{{name: "/etc/passwd", body: "abc", size: -1}}, nil), backup.Limits{}, "unsafe name"},
		{"dot dot", forge(t, one, storage.LayoutVersion, []entry{{name: "../evil", body: "abc", size: -1}}, nil), backup.Limits{}, "unsafe name"},
		{"dot dot in manifest", forge(t, []backup.File{{Name: "../evil", Size: 3}}, storage.LayoutVersion, []entry{{name: "../evil", body: "abc", size: -1}}, nil), backup.Limits{}, "unsafe name"},
		{"subdir", forge(t, one, storage.LayoutVersion, []entry{{name: "a/b", body: "abc", size: -1}}, nil), backup.Limits{}, "unsafe name"},
		{"symlink", forge(t, one, storage.LayoutVersion, []entry{{name: "000001.sst", typ: tar.TypeSymlink, link: "/etc/passwd"}}, nil), backup.Limits{}, "links are not allowed"},
		{"hard link", forge(t, one, storage.LayoutVersion, []entry{{name: "000001.sst", typ: tar.TypeLink, link: "/etc/passwd"}}, nil), backup.Limits{}, "links are not allowed"},
		{"device", forge(t, one, storage.LayoutVersion, []entry{{name: "000001.sst", typ: tar.TypeChar}}, nil), backup.Limits{}, "devices"},
		{"directory", forge(t, one, storage.LayoutVersion, []entry{{name: "d", typ: tar.TypeDir}}, nil), backup.Limits{}, "directories"},
		{"not in the manifest", forge(t, one, storage.LayoutVersion, append(reg, entry{name: "extra", body: "x", size: -1}), nil), backup.Limits{}, "not in the manifest"},
		{"twice", forge(t, one, storage.LayoutVersion, append(reg, reg...), nil), backup.Limits{}, "twice"},
		{"size differs", forge(t, []backup.File{{Name: "000001.sst", Size: 2}}, storage.LayoutVersion, reg, nil), backup.Limits{}, "the manifest says 2"},
		{"missing file", forge(t, append(one, backup.File{Name: "000002.sst", Size: 1}), storage.LayoutVersion, reg, nil), backup.Limits{}, "000002.sst is missing"},
		{"bad checksum", forge(t, one, storage.LayoutVersion, reg, &bad), backup.Limits{}, "checksum mismatch"},
		{"too big", forge(t, one, storage.LayoutVersion, reg, nil), backup.Limits{MaxBytes: 2}, "larger than the limit"},
		{"too many files", forge(t, append(one, backup.File{Name: "000002.sst", Size: 1}), storage.LayoutVersion, reg, nil), backup.Limits{MaxFiles: 1}, "more than the limit"},
		{"newer layout", forge(t, one, storage.LayoutVersion+1, reg, nil), backup.Limits{}, "newer"},
		{"truncated", valid[:len(valid)/2], backup.Limits{}, "bad backup"},
		{"truncated at an entry", valid[:1536], backup.Limits{}, "bad backup"},
		{"corrupt", func() []byte {
			b := bytes.Clone(valid)
			b[len(b)/2] ^= 0xFF
			return b
		}(), backup.Limits{}, "bad backup"},
		{"entries after the sums", append(bytes.Clone(valid[:len(valid)-1024]), forge(t, one, storage.LayoutVersion, reg, nil)...), backup.Limits{}, "after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := backup.Check(bytes.NewReader(tc.tar), tc.lim); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want an error with %q", err, tc.want)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "restored")
			_, err := backup.Restore(bytes.NewReader(tc.tar), dir, backup.RestoreOptions{Limits: tc.lim})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Restore: %v, want an error with %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed restore left %d entries", len(ents))
			}
			if _, err := os.Stat("/tmp/evil"); err == nil && tc.name == "dot dot" {
				t.Errorf("wrote outside")
			}
		})
	}
	// A file not listed in the sums.
	sums := "x  y\n"
	if _, err := backup.Check(bytes.NewReader(forge(t, one, storage.LayoutVersion, reg, &sums)), backup.Limits{}); err == nil {
		t.Error("a sums list of other files passed")
	}
}

// damage applies fn to a stopped store and returns what VerifyDir finds.
func damage(t *testing.T, fn func(db *storage.DB, b *pebble.Batch)) *backup.Report {
	t.Helper()
	srv := newStore(t)
	dir := srv.Store().Dir()
	stop(t, srv)
	db, err := storage.Open(storage.Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	fn(db, b)
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	db.Close()
	r, err := backup.VerifyDir(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// firstKey is the first key with prefix.
func firstKey(t *testing.T, db *storage.DB, prefix []byte) []byte {
	t.Helper()
	it, err := db.NewIter(prefix, storage.PrefixEnd(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.First() {
		t.Fatalf("no key with prefix %x", prefix)
	}
	return bytes.Clone(it.Key())
}

func TestVerifyFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *storage.DB, b *pebble.Batch)
		want []string
	}{
		{"none", func(*testing.T, *storage.DB, *pebble.Batch) {}, nil},
		{"deleted log record", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Delete(storage.LogKey(5), nil)
		}, []string{"log: seqs 5 to 5 are missing", "seq 5 points to a missing log record"}},
		{"dangling topic entry", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Set(storage.TopicKey("contexts/c0", 100000), nil, nil)
			b.Set(storage.TopicKey("streams/s/g0", 3), nil, nil) // seq 3 is a unit's
		}, []string{`topic index: "contexts/c0" seq 100000 points to a missing log record`,
			`topic index: "streams/s/g0" seq 3 points to an event of topic "contexts/c`}},
		{"unindexed event", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Delete(storage.TopicKey("contexts/*", 3), nil)
		}, []string{`topic index: seq 3 (topic "contexts/c`, `is not indexed under "contexts/*"`}},
		{"wrong head", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			storage.SetHeadSeq(b, db.HeadSeq()+1)
		}, []string{"head: head seq"}},
		{"missing unit index entry", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Delete(firstKey(t, db, storage.UnitsPrefix()), nil)
		}, []string{"has no unit index entry", "units: 39 unit index entries for 40 units"}},
		{"missing unit", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Delete(firstKey(t, db, storage.ContextUnitsPrefix()), nil)
		}, []string{"which is missing", "units: 40 unit index entries for 39 units"}},
		{"wrong group count", func(t *testing.T, db *storage.DB, b *pebble.Batch) {
			b.Set(storage.StreamGroupKey("s", "g1"), storage.AppendUint64(nil, 7), nil)
			b.Set(storage.StreamGroupKey("s", "g9"), storage.AppendUint64(nil, 1), nil)
		}, []string{"streams: s/g1 holds 5 items, its count says 7", "streams: s/g9 has count 1 but no items"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := damage(t, func(db *storage.DB, b *pebble.Batch) { tc.fn(t, db, b) })
			all := strings.Join(r.Problems, "\n")
			if len(tc.want) == 0 && !r.OK() {
				t.Fatalf("undamaged store: %s", all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems do not say %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestVerifyDirLocked(t *testing.T) {
	srv := newStore(t)
	if _, err := backup.VerifyDir(context.Background(), srv.Store().Dir(), nil); err == nil || !strings.Contains(err.Error(), "is a server running on") {
		t.Fatalf("verify of a dir in use: %v", err)
	}
	if _, err := backup.VerifyDir(context.Background(), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "holds no Engram data") {
		t.Fatalf("verify of an empty dir: %v", err)
	}
}
