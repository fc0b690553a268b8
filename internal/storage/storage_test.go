package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestStringEncodingOrderAndPrefixFree(t *testing.T) {
	strs := []string{"", "a", "a\x00", "a\x00b", "a\x01", "ab", "abc", "b", "\x00", "\x00\x00", "\xff", "contexts/c1", "contexts/c1/x"}
	sorted := slices.Clone(strs)
	slices.Sort(sorted)
	enc := make([][]byte, len(sorted))
	for i, s := range sorted {
		enc[i] = AppendString(nil, s)
		got, rest, err := DecodeString(append(slices.Clone(enc[i]), 'z'))
		if err != nil || got != s || string(rest) != "z" {
			t.Fatalf("round trip %q: got %q rest %q err %v", s, got, rest, err)
		}
	}
	for i := 1; i < len(enc); i++ {
		if bytes.Compare(enc[i-1], enc[i]) >= 0 {
			t.Fatalf("order: enc(%q) >= enc(%q)", sorted[i-1], sorted[i])
		}
	}
	for i := range enc {
		for j := range enc {
			if i != j && bytes.HasPrefix(enc[j], enc[i]) {
				t.Fatalf("enc(%q) is a prefix of enc(%q)", sorted[i], sorted[j])
			}
		}
	}
	// Index keys of one topic sort by seq and never mix with a topic whose
	// name extends it.
	a, b := TopicKey("contexts/c1", 256), TopicKey("contexts/c1", 255)
	if bytes.Compare(b, a) >= 0 {
		t.Fatal("topic keys not in seq order")
	}
	if bytes.HasPrefix(TopicKey("contexts/c10", 1), TopicPrefix("contexts/c1")) {
		t.Fatal("topic c10 shares c1's prefix")
	}
}

func TestDecodeStringRejectsMalformed(t *testing.T) {
	for _, b := range [][]byte{nil, {'a'}, {'a', 0}, {0, 2}, {0}} {
		if _, _, err := DecodeString(b); !errors.Is(err, ErrBadKey) {
			t.Errorf("DecodeString(%q) err %v, want ErrBadKey", b, err)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	if seq, err := LogSeq(LogKey(42)); err != nil || seq != 42 {
		t.Fatalf("LogSeq: %d %v", seq, err)
	}
	if _, err := LogSeq([]byte{nsLog, 1}); err == nil {
		t.Fatal("short log key accepted")
	}
	if id, err := ContextID(ContextKey("c\x001")); err != nil || id != "c\x001" {
		t.Fatalf("ContextID: %q %v", id, err)
	}
	if seq, err := TrailingSeq(ContextUnitKey("c1", 7)); err != nil || seq != 7 {
		t.Fatalf("TrailingSeq: %d %v", seq, err)
	}
	var tg, src [16]byte
	tg[0], src[15] = 1, 2
	gt, gs, ty, err := DecodeUnitIn(UnitInKey(tg, src, 3))
	if err != nil || gt != tg || gs != src || ty != 3 {
		t.Fatalf("DecodeUnitIn: %v %v %d %v", gt, gs, ty, err)
	}
	for _, tc := range []struct{ in, want []byte }{
		{[]byte{1}, []byte{2}},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xff, 0xff}, nil},
	} {
		if got := PrefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{TimeUnixNano: 1, Type: "context.created", Topic: "contexts/c1", Inline: []byte(`{"id":"c1"}`)},
		{TimeUnixNano: -5, Type: "workunit.created", Topic: "contexts/c1", Ref: UnitKey([16]byte{9})},
		{Type: "", Topic: "", Inline: []byte{}},
	} {
		got, err := DecodeRecord(AppendRecord(nil, &r))
		if err != nil {
			t.Fatal(err)
		}
		if got.TimeUnixNano != r.TimeUnixNano || got.Type != r.Type || got.Topic != r.Topic ||
			!bytes.Equal(got.Inline, r.Inline) || !bytes.Equal(got.Ref, r.Ref) || (got.Ref == nil) != (r.Ref == nil) {
			t.Fatalf("round trip: %+v → %+v", r, got)
		}
	}
	for _, b := range [][]byte{nil, {2}, {1, 0, 0}, append(AppendRecord(nil, &Record{Type: "x"})[:10], 0xff)} {
		if _, err := DecodeRecord(b); err == nil {
			t.Errorf("DecodeRecord(%x) accepted", b)
		}
	}
}

func TestOpenStampsAndChecksLayout(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Config{Dir: "/d", FS: fs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !db.Created() || db.HeadSeq() != 0 {
		t.Fatalf("new store: created %v head %d", db.Created(), db.HeadSeq())
	}
	// A second open while the first holds the dir fails with ErrLocked.
	if _, err := Open(Config{Dir: "/d", FS: fs}, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	b := db.NewIndexedBatch()
	if err := SetHeadSeq(b, 77); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(Config{Dir: "/d", FS: fs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if db.Created() || db.HeadSeq() != 77 {
		t.Fatalf("reopened: created %v head %d", db.Created(), db.HeadSeq())
	}
	// Pretend a newer Engram wrote the dir.
	if err := db.pdb.Set(metaLayout, binary.BigEndian.AppendUint32(nil, LayoutVersion+1), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(Config{Dir: "/d", FS: fs}, nil)
	if !errors.Is(err, ErrNewerLayout) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer layout: %v, want ErrNewerLayout", err)
	}
}

func TestOpenRefusesUnstampedData(t *testing.T) {
	fs := vfs.NewMem()
	pdb, err := pebble.Open("/d", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	pdb.Set([]byte("stray"), []byte("x"), pebble.Sync)
	pdb.Close()
	if _, err := Open(Config{Dir: "/d", FS: fs}, nil); !errors.Is(err, ErrNoLayout) {
		t.Fatalf("unstamped store: %v, want ErrNoLayout", err)
	}
}

func TestIndexTopics(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"locks", []string{"locks"}},
		{"contexts/c1", []string{"contexts/c1", "contexts/*"}},
		{"streams/s/g", []string{"streams/s/g", "streams/s/*", "streams/*"}},
	} {
		if got := IndexTopics(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("IndexTopics(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
