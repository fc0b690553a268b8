package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"
	"go.uber.org/goleak"

	"engram/internal/engine"
	"engram/internal/storage"
	"engram/internal/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is an engine over a real (in-memory) store, its queue timer started.
type env struct {
	e   *engine.Engine
	seq *wal.Sequencer
	db  *storage.DB

	opts      envOpts
	closeOnce sync.Once
}

// envOpts configure openEnv.
type envOpts struct {
	cfg engine.Config
	// fs holds the store; nil means a new in-memory filesystem. Reopening
	// on the same fs is a restart.
	fs vfs.FS
	// noTimer leaves the engine's queue timer stopped.
	noTimer bool
	// now is the sequencer's clock (nil: time.Now).
	now func() time.Time
}

// newEnv opens a store on an in-memory filesystem; it is closed (engine,
// then sequencer, then store) when the test ends.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	return newEnvCfg(tb, engine.Config{})
}

// newEnvCfg is newEnv with the engine's limits set.
func newEnvCfg(tb testing.TB, cfg engine.Config) *env {
	tb.Helper()
	return newEnvOpts(tb, envOpts{cfg: cfg})
}

// newEnvOpts is newEnv with options.
func newEnvOpts(tb testing.TB, o envOpts) *env {
	tb.Helper()
	if o.fs == nil {
		o.fs = vfs.NewMem()
	}
	v := openEnv(tb, o)
	tb.Cleanup(func() { v.close(tb) })
	return v
}

func openEnv(tb testing.TB, o envOpts) *env {
	tb.Helper()
	db, err := storage.Open(storage.Config{Dir: "/data", FS: o.fs, CacheBytes: 8 << 20}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	seq, err := wal.New(db, wal.Config{NoSync: true, Now: o.now}, nil)
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	e, err := engine.New(db, seq, o.cfg, nil)
	if err != nil {
		seq.Close()
		db.Close()
		tb.Fatal(err)
	}
	if !o.noTimer {
		e.Start()
	}
	return &env{e: e, seq: seq, db: db, opts: o}
}

// close stops the engine, then the sequencer, then the store (once).
func (v *env) close(tb testing.TB) {
	v.closeOnce.Do(func() {
		v.e.Close()
		if err := v.seq.Close(); err != nil {
			tb.Error(err)
		}
		if err := v.db.Close(); err != nil {
			tb.Error(err)
		}
	})
}

// restart closes v and opens its store again: what a server restart does.
func (v *env) restart(tb testing.TB) *env {
	tb.Helper()
	v.close(tb)
	nv := openEnv(tb, v.opts)
	tb.Cleanup(func() { nv.close(tb) })
	return nv
}

func (v *env) head() uint64 { return v.seq.Head() }

// unit is the public JSON of a work unit, for assertions.
type unit struct {
	ID            string            `json:"id"`
	Seq           uint64            `json:"seq"`
	ContextID     string            `json:"context_id"`
	AgentID       string            `json:"agent_id"`
	Type          string            `json:"type"`
	Timestamp     string            `json:"timestamp"`
	Metadata      map[string]string `json:"metadata"`
	Payload       json.RawMessage   `json:"payload"`
	PayloadBase64 *string           `json:"payload_base64"`
	Relationships []struct {
		TargetID string            `json:"target_id"`
		Type     string            `json:"type"`
		Metadata map[string]string `json:"metadata"`
	} `json:"relationships"`
}

func parseUnit(tb testing.TB, raw []byte) unit {
	tb.Helper()
	var u unit
	if err := json.Unmarshal(raw, &u); err != nil {
		tb.Fatalf("unit JSON %s: %v", raw, err)
	}
	return u
}

type ctxJSON struct {
	ID          string            `json:"id"`
	DisplayName string            `json:"display_name"`
	AgentIDs    []string          `json:"agent_ids"`
	PinnedUnits []string          `json:"pinned_units"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   string            `json:"created_at"`
	UpdatedAt   string            `json:"updated_at"`
}

func parseContext(tb testing.TB, raw []byte) ctxJSON {
	tb.Helper()
	var c ctxJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		tb.Fatalf("context JSON %s: %v", raw, err)
	}
	return c
}

// mustCreate creates one unit and returns its JSON.
func (v *env) mustCreate(tb testing.TB, in engine.UnitInput) unit {
	tb.Helper()
	res, err := v.e.CreateUnit(context.Background(), &in)
	if err != nil {
		tb.Fatalf("CreateUnit(%+v): %v", in, err)
	}
	if len(res.Units) != 1 {
		tb.Fatalf("CreateUnit: %d units", len(res.Units))
	}
	return parseUnit(tb, res.Units[0])
}

func msg(ctx, agent string) engine.UnitInput {
	return engine.UnitInput{ContextID: ctx, AgentID: agent, Type: "MESSAGE"}
}

func newID() string { return ulid.Make().String() }

// wantErr checks that err is of kind and that its message contains each of
// the given substrings.
func wantErr(tb testing.TB, err, kind error, subs ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		tb.Fatalf("error %q (%T) is not %v", err, err, kind)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			tb.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// ids returns the ids of a page's units.
func ids(tb testing.TB, raws []json.RawMessage) []string {
	tb.Helper()
	out := make([]string, len(raws))
	for i, r := range raws {
		out[i] = parseUnit(tb, r).ID
	}
	return out
}

// event reads back the logged event with seq.
func (v *env) event(tb testing.TB, seq uint64) wal.Event {
	tb.Helper()
	ev, err := wal.ReadEvent(v.db, seq)
	if err != nil {
		tb.Fatalf("ReadEvent(%d): %v", seq, err)
	}
	return ev
}

func utf8Valid(b []byte) bool { return utf8.Valid(b) }

func (v *env) getUnit(tb testing.TB, id string) json.RawMessage {
	tb.Helper()
	raw, err := v.e.GetUnit(id)
	if err != nil {
		tb.Fatalf("GetUnit(%s): %v", id, err)
	}
	return raw
}

func (v *env) getContext(tb testing.TB, id string) json.RawMessage {
	tb.Helper()
	raw, err := v.e.GetContext(id)
	if err != nil {
		tb.Fatalf("GetContext(%s): %v", id, err)
	}
	return raw
}
