package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"engram/internal/engine"
	"engram/internal/search"
	"engram/internal/storage"
	"engram/internal/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener lives as long as its DB; every
		// DB here is closed, but its goroutine may still be on its way out.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// env is an engine over a real store in a temp dir with a search index that
// follows it: what the server wires.
type env struct {
	dir string
	db  *storage.DB
	seq *wal.Sequencer
	e   *engine.Engine
	x   *search.Index
	cfg search.Config
}

func newEnv(t testing.TB) *env {
	t.Helper()
	v := openEnv(t, t.TempDir(), search.Config{})
	t.Cleanup(func() { v.close(t) })
	return v
}

// openEnv opens the store in dir and the index in dir/search with cfg's
// other fields; the indexer is started.
func openEnv(t testing.TB, dir string, cfg search.Config) *env {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: dir + "/store", CacheBytes: 8 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &env{dir: dir, db: db}
	cfg.Dir, cfg.Store = dir+"/search", db
	cfg.Head = func() uint64 { return v.seq.Head() }
	x, err := search.Open(cfg, nil)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	seq, err := wal.New(db, wal.Config{NoSync: true, Publish: func([]wal.Event) { x.Notify() }}, nil)
	if err != nil {
		x.Close()
		db.Close()
		t.Fatal(err)
	}
	e, err := engine.New(db, seq, engine.Config{}, nil)
	if err != nil {
		seq.Close()
		x.Close()
		db.Close()
		t.Fatal(err)
	}
	v.seq, v.e, v.x, v.cfg = seq, e, x, cfg
	x.Start()
	return v
}

func (v *env) close(t testing.TB) {
	t.Helper()
	if v.db == nil {
		return
	}
	v.e.Close()
	if err := v.x.Close(); err != nil {
		t.Error(err)
	}
	if err := v.seq.Close(); err != nil {
		t.Error(err)
	}
	if err := v.db.Close(); err != nil {
		t.Error(err)
	}
	v.db = nil
}

// reopen closes v and opens its dir again: a restart.
func (v *env) reopen(t testing.TB) *env {
	t.Helper()
	v.close(t)
	nv := openEnv(t, v.dir, v.cfg)
	t.Cleanup(func() { nv.close(t) })
	return nv
}

// unit writes a work unit and returns its id and seq.
func (v *env) unit(t testing.TB, ctxID, agent, typ string, payload any, meta map[string]string) (string, uint64) {
	t.Helper()
	var raw json.RawMessage
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		raw = b
	}
	res, err := v.e.CreateUnit(context.Background(), &engine.UnitInput{
		ContextID: ctxID, AgentID: agent, Type: typ, Payload: raw, Metadata: meta,
	})
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(res.Units[0], &u); err != nil {
		t.Fatal(err)
	}
	return u.ID, u.Seq
}

// set writes a stream item and returns the change's seq.
func (v *env) set(t testing.TB, stream, group, item string, value any) uint64 {
	t.Helper()
	b, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := v.e.SetItem(context.Background(), engine.ItemRef{Stream: stream, Group: group, Item: item}, b)
	if err != nil {
		t.Fatal(err)
	}
	return ch.Seq
}

func (v *env) del(t testing.TB, stream, group, item string) uint64 {
	t.Helper()
	ch, err := v.e.DeleteItem(context.Background(), engine.ItemRef{Stream: stream, Group: group, Item: item})
	if err != nil {
		t.Fatal(err)
	}
	return ch.Seq
}

// search runs q after the index holds the head.
func (v *env) search(t testing.TB, q search.Query) *search.Result {
	t.Helper()
	q.MinSeq = v.seq.Head()
	res, err := v.x.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("search %+v: %v", q, err)
	}
	return res
}

// ids are the hit ids in answer order.
func ids(res *search.Result) []string {
	out := make([]string, len(res.Hits))
	for i, h := range res.Hits {
		out[i] = h.ID
	}
	return out
}

func sortedIDs(res *search.Result) []string {
	out := ids(res)
	slices.Sort(out)
	return out
}

// waitCaughtUp waits until the index is not rebuilding and holds the head.
func (v *env) waitCaughtUp(t testing.TB) search.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := v.x.Status()
		if !st.Rebuilding && st.IndexedSeq >= v.seq.Head() {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("index did not catch up: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isInvalid(err error) bool { return errors.Is(err, engine.ErrInvalid) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
