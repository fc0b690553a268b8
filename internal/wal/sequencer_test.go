package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"engram/internal/storage"
)

func openDB(t *testing.T, fs vfs.FS) *storage.DB {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: "/db", FS: fs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// put is a command that writes key=value and emits one event per topic.
func put(key, value string, topics ...string) Command {
	return func(tx *Tx) (any, error) {
		tx.Set([]byte(key), []byte(value))
		var seqs []uint64
		for _, tp := range topics {
			seqs = append(seqs, tx.Emit(tp, "test.put", []byte(`{"k":"`+key+`"}`), nil))
		}
		return seqs, nil
	}
}

// TestBatchStaging applies several commands into one batch by hand and
// checks that a failed command leaves no trace while later commands see the
// writes of earlier ones.
func TestBatchStaging(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	s := &Sequencer{db: db, cfg: Config{Now: time.Now}, next: 1, log: slog.New(slog.DiscardHandler)}
	s.initMetrics()

	reqs := []*request{
		{cmd: put("a", "1", "t/1")},
		{cmd: func(tx *Tx) (any, error) {
			tx.Set([]byte("b"), []byte("ghost"))
			tx.Emit("t/1", "test.ghost", []byte(`{}`), nil)
			return nil, errors.New("refused")
		}},
		{cmd: func(tx *Tx) (any, error) {
			v, err := tx.Get([]byte("a")) // an earlier command's write
			if err != nil {
				return nil, err
			}
			if ok, _ := tx.Has([]byte("b")); ok {
				return nil, errors.New("saw the failed command's write")
			}
			tx.Set([]byte("c"), append(v, '!'))
			if got, _ := tx.Get([]byte("c")); string(got) != "1!" {
				return nil, fmt.Errorf("own staged write reads %q", got)
			}
			tx.Delete([]byte("c"))
			if ok, _ := tx.Has([]byte("c")); ok {
				return nil, errors.New("own staged delete not visible")
			}
			tx.Set([]byte("c"), append(v, '?'))
			return []uint64{tx.Emit("t/2", "test.put", []byte(`{}`), nil)}, nil
		}},
		{cmd: func(tx *Tx) (any, error) { panic("boom") }},
	}
	p := &pending{b: db.NewIndexedBatch(), reqs: reqs}
	for _, r := range reqs {
		r.done = make(chan struct{})
		p.events = s.apply(p.b, r, p.events)
	}
	s.commit(p)
	s.finish(p)
	events := p.events

	if reqs[1].err == nil || reqs[0].err != nil || reqs[2].err != nil {
		t.Fatalf("errors: %v, %v, %v", reqs[0].err, reqs[1].err, reqs[2].err)
	}
	if !errors.Is(reqs[3].err, ErrCommandPanic) {
		t.Fatalf("panicking command: err %v, want ErrCommandPanic", reqs[3].err)
	}
	if got := reqs[2].res.([]uint64); got[0] != 2 {
		t.Fatalf("third command's seq %d, want 2: the failed command must not use up a seq", got[0])
	}
	if _, err := db.Get([]byte("b")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed command's write is stored: %v", err)
	}
	if v, _ := db.Get([]byte("c")); string(v) != "1?" {
		t.Fatalf("c = %q", v)
	}
	if s.Head() != 2 || len(events) != 2 {
		t.Fatalf("head %d, %d events; want 2, 2", s.Head(), len(events))
	}
	if _, err := ReadEvent(db, 3); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("event 3 exists: %v", err)
	}
}

// TestGaplessConcurrent submits from many goroutines, some commands failing,
// and checks the published and stored logs are 1..N with no gap, in order.
func TestGaplessConcurrent(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	var mu sync.Mutex
	var published []uint64
	s, err := New(db, Config{NoSync: true, MaxBatch: 16, Publish: func(evs []Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			published = append(published, e.Seq)
		}
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 200
	var wg sync.WaitGroup
	var okEvents sync.Map
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				key := fmt.Sprintf("w%d/%d", w, i)
				n := 1 + rng.IntN(3)
				fail := rng.IntN(5) == 0
				res, err := s.Submit(context.Background(), func(tx *Tx) (any, error) {
					var seqs []uint64
					for range n {
						seqs = append(seqs, tx.Emit("t/"+key, "test", []byte(`1`), nil))
					}
					tx.Set([]byte(key), []byte("v"))
					if fail {
						return nil, errors.New("fail")
					}
					return seqs, nil
				})
				if fail != (err != nil) {
					t.Errorf("%s: fail=%v err=%v", key, fail, err)
					return
				}
				if err == nil {
					for j, seq := range res.([]uint64) {
						if j > 0 && seq != res.([]uint64)[j-1]+1 {
							t.Errorf("%s: seqs of one command not contiguous: %v", key, res)
						}
						okEvents.Store(seq, key)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	head := s.Head()
	if uint64(len(published)) != head {
		t.Fatalf("published %d events, head %d", len(published), head)
	}
	for i, seq := range published {
		if seq != uint64(i+1) {
			t.Fatalf("published[%d] = %d: not gapless and ordered", i, seq)
		}
		if _, ok := okEvents.Load(seq); !ok {
			t.Fatalf("seq %d published but no command was answered with it", seq)
		}
	}
	checkLog(t, db, head)
	if _, err := s.Submit(context.Background(), put("x", "y")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// checkLog asserts the stored log holds exactly the seqs 1..head, each a
// decodable event, and that the stored head agrees.
func checkLog(t *testing.T, db *storage.DB, head uint64) {
	t.Helper()
	it, err := db.NewIter(storage.LogPrefix(), storage.PrefixEnd(storage.LogPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	want := uint64(1)
	for ok := it.First(); ok; ok = it.Next() {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		if seq != want {
			t.Fatalf("log has seq %d where %d was expected", seq, want)
		}
		ev, err := DecodeEvent(db, seq, it.Value())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(ev.JSON, &m); err != nil {
			t.Fatalf("event %d JSON: %v: %s", seq, err, ev.JSON)
		}
		if m["seq"].(float64) != float64(seq) {
			t.Fatalf("event %d JSON has seq %v", seq, m["seq"])
		}
		want++
	}
	if want-1 != head {
		t.Fatalf("log ends at %d, head is %d", want-1, head)
	}
}

// TestCrashKeepsAcknowledged crashes a crashable in-memory filesystem at
// random moments under concurrent writes and checks every acknowledged
// command survives, with a gapless log.
func TestCrashKeepsAcknowledged(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			db := openDB(t, fs)
			s, err := New(db, Config{MaxBatch: 8}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var acked sync.Map
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						key := fmt.Sprintf("w%d/%06d", w, i)
						res, err := s.Submit(context.Background(), put(key, key, "t/"+key))
						if err != nil {
							return
						}
						acked.Store(key, res.([]uint64)[0])
					}
				})
			}
			time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
			// Everything answered before the crash must survive it: take the
			// set first, then crash. What is synced survives, plus a random
			// part of what is not.
			before := map[string]uint64{}
			acked.Range(func(k, v any) bool { before[k.(string)] = v.(uint64); return true })
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(round), 7))})
			close(stop)
			wg.Wait()
			s.Close()
			db.Close()

			db2 := openDB(t, crashed)
			defer db2.Close()
			for key, seq := range before {
				if v, err := db2.Get([]byte(key)); err != nil || string(v) != key {
					t.Errorf("acknowledged %s (seq %d) lost in the crash: %v", key, seq, err)
					continue
				}
				if _, err := ReadEvent(db2, seq); err != nil {
					t.Errorf("%s: event %d: %v", key, seq, err)
				}
			}
			if len(before) == 0 {
				t.Fatal("nothing was acknowledged before the crash")
			}
			checkLog(t, db2, db2.HeadSeq())
			t.Logf("acknowledged %d before the crash, head after restart %d", len(before), db2.HeadSeq())
		})
	}
}

// TestCommandTimeNeverGoesBack: a wall clock stepping back does not move
// commands' (and events') time back.
func TestCommandTimeNeverGoesBack(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	base := time.Unix(1_800_000_000, 0)
	clock := []time.Time{base, base.Add(-time.Hour), base.Add(time.Second), base.Add(-time.Minute)}
	i := 0
	s, err := New(db, Config{NoSync: true, Now: func() time.Time {
		t := clock[min(i, len(clock)-1)]
		i++
		return t
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []time.Time{base, base, base.Add(time.Second), base.Add(time.Second)}
	for n, w := range want {
		got, err := s.Submit(context.Background(), func(tx *Tx) (any, error) { return tx.Now(), nil })
		if err != nil {
			t.Fatal(err)
		}
		if !got.(time.Time).Equal(w) {
			t.Errorf("command %d: time %v, want %v", n, got, w)
		}
	}
}
