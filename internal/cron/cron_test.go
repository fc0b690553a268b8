package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"engram/internal/engine"
	"engram/internal/lockmgr"
	"engram/internal/storage"
	"engram/internal/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock shared by the sequencer and the scheduler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a scheduler over a real store on an in-memory filesystem, with a
// fake clock. Its loop is not started: tests drive runDue.
type env struct {
	fs    vfs.FS
	clk   *clock
	db    *storage.DB
	seq   *wal.Sequencer
	eng   *engine.Engine
	lck   *lockmgr.Manager
	s     *Scheduler
	close func()
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, fs vfs.FS, clk *clock) *env {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: "/data", FS: fs, CacheBytes: 8 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := wal.New(db, wal.Config{NoSync: true, Now: clk.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(db, seq, engine.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lck, err := lockmgr.New(db, seq, lockmgr.Config{Now: clk.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, seq, eng, Config{Now: clk.Now, Locks: lck}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.begin()
	v := &env{fs: fs, clk: clk, db: db, seq: seq, eng: eng, lck: lck, s: s}
	var once sync.Once
	v.close = func() {
		once.Do(func() {
			s.Close()
			eng.Close()
			lck.Close()
			seq.Close()
			db.Close()
		})
	}
	t.Cleanup(v.close)
	return v
}

func newEnv(t *testing.T) *env {
	return open(t, vfs.NewMem(), &clock{t: t0})
}

// restart closes v and opens its store again at the clock's time.
func (v *env) restart(t *testing.T) *env {
	v.close()
	return open(t, v.fs, v.clk)
}

func (v *env) put(t *testing.T, name, schedule, catchUp string) *Job {
	t.Helper()
	j, err := v.s.Put(context.Background(), name, PutInput{Schedule: schedule, Queue: name, CatchUp: &catchUp,
		Payload: json.RawMessage(`{"k": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// run runs the scheduler's pass at the clock's time.
func (v *env) run(t *testing.T) time.Time {
	t.Helper()
	next, err := v.s.runDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return next
}

type event struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type firedData struct {
	Name        string `json:"name"`
	ScheduledAt string `json:"scheduled_at"`
	MessageID   string `json:"message_id"`
	Missed      int    `json:"missed"`
}

type skippedData struct {
	Name     string `json:"name"`
	Count    int    `json:"count"`
	From, To string
}

// events reads the log of topic.
func (v *env) events(t *testing.T, topic string) []event {
	t.Helper()
	p := storage.TopicPrefix(topic)
	it, err := v.db.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []event
	for ok := it.First(); ok; ok = it.Next() {
		seq, err := storage.TrailingSeq(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := wal.ReadEvent(v.db, seq)
		if err != nil {
			t.Fatal(err)
		}
		var e event
		if err := json.Unmarshal(ev.JSON, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// fires returns the cron.fired events of job and the cron.skipped ones,
// checking that each fire has its queue message (tests' jobs publish to the
// queue of their name).
func (v *env) fires(t *testing.T, job string) ([]firedData, []skippedData) {
	t.Helper()
	var fired []firedData
	var skipped []skippedData
	for _, e := range v.events(t, Topic(job)) {
		switch e.Type {
		case Fired:
			var f firedData
			if err := json.Unmarshal(e.Data, &f); err != nil {
				t.Fatal(err)
			}
			fired = append(fired, f)
		case Skipped:
			var s skippedData
			if err := json.Unmarshal(e.Data, &s); err != nil {
				t.Fatal(err)
			}
			skipped = append(skipped, s)
		}
	}
	published := 0
	for _, e := range v.events(t, "queues/"+job) {
		if e.Type == engine.QueuePublished {
			published++
		}
	}
	if published != len(fired) {
		t.Fatalf("%d messages published, %d cron.fired events", published, len(fired))
	}
	return fired, skipped
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestFireNoDrift: a per-second job and a per-minute one, looked at late by
// random amounts for hours of fake time, fire at every scheduled time once,
// on the expression's whole seconds.
func TestFireNoDrift(t *testing.T) {
	for _, tc := range []struct {
		job, expr string
		step, run time.Duration
	}{{"sec", "* * * * * *", time.Second, 15 * time.Minute}, {"min", "0 * * * * *", time.Minute, 6 * time.Hour}} {
		v := newEnv(t)
		v.put(t, tc.job, tc.expr, "skip")
		rng := rand.New(rand.NewPCG(1, 2))
		for end := t0.Add(tc.run); v.clk.Now().Before(end); {
			next := v.run(t)
			if next.IsZero() {
				t.Fatal("no next time")
			}
			// Wake late by up to 900 ms, as a loaded timer would.
			v.clk.Set(next.Add(time.Duration(rng.IntN(900)) * time.Millisecond))
		}
		v.run(t)
		fired, skipped := v.fires(t, tc.job)
		if len(skipped) != 0 {
			t.Fatalf("%s: skipped %v", tc.job, skipped)
		}
		want := int(v.clk.Now().Sub(t0) / tc.step)
		if len(fired) != want {
			t.Fatalf("%s: %d fires, want %d", tc.job, len(fired), want)
		}
		for i, f := range fired {
			if w := t0.Add(time.Duration(i+1) * tc.step); !at(f.ScheduledAt).Equal(w) {
				t.Fatalf("%s: fire %d at %s, want %v", tc.job, i, f.ScheduledAt, w)
			}
		}
		j, err := v.s.Get(tc.job)
		if err != nil {
			t.Fatal(err)
		}
		last := v.clk.Now().Truncate(tc.step)
		if j.LastFiredAt == nil || !at(*j.LastFiredAt).Equal(last) || j.NextFireAt == nil || !at(*j.NextFireAt).Equal(last.Add(tc.step)) {
			t.Fatalf("job %+v, want last %v", j, last)
		}
	}
}

// TestCatchUp: times missed while the server was down are skipped in one
// cron.skipped event, or fired once for the latest; then the schedule goes
// on.
func TestCatchUp(t *testing.T) {
	for _, mode := range []string{CatchUpSkip, CatchUpOnce} {
		t.Run(mode, func(t *testing.T) {
			v := newEnv(t)
			v.put(t, "j", "*/10 * * * * *", mode)
			v.clk.Set(t0.Add(20 * time.Second))
			v.run(t) // fires :10 and :20
			v.close()
			// Down for ten minutes; up again at 12:10:05.
			v.clk.Set(t0.Add(10*time.Minute + 5*time.Second))
			v = v.restart(t)
			next := v.run(t)
			if !next.Equal(t0.Add(10*time.Minute + 10*time.Second)) {
				t.Fatalf("next %v", next)
			}
			v.clk.Set(next)
			v.run(t)
			fired, skipped := v.fires(t, "j")
			// Missed: 12:00:30 .. 12:10:00, 58 times.
			switch mode {
			case CatchUpSkip:
				if len(skipped) != 1 || skipped[0].Count != 58 || !at(skipped[0].From).Equal(t0.Add(30*time.Second)) ||
					!at(skipped[0].To).Equal(t0.Add(10*time.Minute)) {
					t.Fatalf("skipped %+v", skipped)
				}
				if len(fired) != 3 || fired[2].ScheduledAt != wal.FormatTime(next) {
					t.Fatalf("fired %+v", fired)
				}
			case CatchUpOnce:
				if len(skipped) != 0 || len(fired) != 4 {
					t.Fatalf("skipped %+v fired %+v", skipped, fired)
				}
				if c := fired[2]; c.Missed != 58 || !at(c.ScheduledAt).Equal(t0.Add(10*time.Minute)) {
					t.Fatalf("catch-up fire %+v", c)
				}
				if fired[3].Missed != 0 || fired[3].ScheduledAt != wal.FormatTime(next) {
					t.Fatalf("fired %+v", fired)
				}
			}
			// A second restart right away misses nothing more.
			v = v.restart(t)
			v.run(t)
			fired2, skipped2 := v.fires(t, "j")
			if len(fired2) != len(fired) || len(skipped2) != len(skipped) {
				t.Fatalf("after a second restart: fired %d skipped %d", len(fired2), len(skipped2))
			}
		})
	}
}

// TestMisfire: a scheduler held up longer than Misfire while running treats
// the late times as missed; shorter hold-ups fire every time.
func TestMisfire(t *testing.T) {
	v := newEnv(t)
	v.put(t, "j", "* * * * * *", CatchUpSkip)
	v.clk.Add(30 * time.Second) // held up 30 s: all fire
	v.run(t)
	fired, skipped := v.fires(t, "j")
	if len(fired) != 30 || len(skipped) != 0 {
		t.Fatalf("fired %d skipped %d", len(fired), len(skipped))
	}
	v.clk.Add(2 * time.Minute) // held up 2 min: what is over a minute late is missed
	v.run(t)
	fired, skipped = v.fires(t, "j")
	// Now 12:02:30: 12:00:31..12:01:29 missed, 12:01:30..12:02:30 fire.
	if len(skipped) != 1 || skipped[0].Count != 59 || len(fired) != 30+61 {
		t.Fatalf("fired %d skipped %+v", len(fired), skipped)
	}
}

// TestFireIdempotent: the same plan applied twice (a retry, a second
// scheduler) fires once.
func TestFireIdempotent(t *testing.T) {
	v := newEnv(t)
	v.put(t, "j", "* * * * * *", CatchUpSkip)
	v.clk.Add(time.Second)
	r, err := getRecord(v.db, "j")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := v.s.schedule(r)
	if err != nil {
		t.Fatal(err)
	}
	p := v.s.plan(r, sched, v.clk.Now())
	if p.fire.IsZero() {
		t.Fatal("nothing to fire")
	}
	ctx := context.Background()
	for range 3 {
		if _, err := v.s.fire(ctx, r, p); err != nil {
			t.Fatal(err)
		}
	}
	v.run(t)
	fired, _ := v.fires(t, "j")
	if len(fired) != 1 {
		t.Fatalf("%d fires", len(fired))
	}
}

// TestFireLock: a fire holds cron/{name}; someone else's lock makes it wait,
// a lock left by a crash of this scheduler is taken over.
func TestFireLock(t *testing.T) {
	v := newEnv(t)
	v.put(t, "j", "* * * * * *", CatchUpSkip)
	ttl := int64(60_000)
	other, err := v.lck.Acquire(context.Background(), lockmgr.AcquireInput{Resources: []string{"cron/j"}, Holder: "someone", TTLMs: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	v.clk.Add(time.Second)
	if _, err := v.s.runDue(context.Background()); !errors.Is(err, errBusy) {
		t.Fatalf("err %v, want busy", err)
	}
	if fired, _ := v.fires(t, "j"); len(fired) != 0 {
		t.Fatal("fired under someone else's lock")
	}
	if err := v.lck.Release(context.Background(), other.LockID); err != nil {
		t.Fatal(err)
	}
	v.run(t)
	if fired, _ := v.fires(t, "j"); len(fired) != 1 {
		t.Fatalf("%d fires", len(fired))
	}
	if _, err := v.lck.Get("cron/j"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("lock after the fire: %v", err)
	}

	// Our own lock from before a crash does not block the next run.
	if _, err := v.lck.Acquire(context.Background(), lockmgr.AcquireInput{Resources: []string{"cron/j"}, Holder: "engram-cron", TTLMs: &ttl}); err != nil {
		t.Fatal(err)
	}
	v.clk.Add(time.Second)
	v = v.restart(t) // started at 12:00:02, which is due
	v.clk.Add(500 * time.Millisecond)
	v.run(t)
	fired, skipped := v.fires(t, "j")
	if len(fired) != 2 || len(skipped) != 0 {
		t.Fatalf("fired %d skipped %d", len(fired), len(skipped))
	}
	v.clk.Add(time.Second)
	v.run(t)
	if fired, _ := v.fires(t, "j"); len(fired) != 3 {
		t.Fatalf("%d fires", len(fired))
	}
}

func TestPutGetListDelete(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	str := func(s string) *string { return &s }
	bad := []struct {
		name string
		in   PutInput
		err  string
	}{
		{"bad/name", PutInput{Schedule: "* * * * *", Queue: "q"}, "name:"},
		{"j", PutInput{Schedule: "* * * *", Queue: "q"}, "schedule:"},
		{"j", PutInput{Schedule: "* * * * *", Queue: ""}, "queue: required"},
		{"j", PutInput{Schedule: "* * * * *", Queue: "a b"}, "queue:"},
		{"j", PutInput{Schedule: "* * * * *", Queue: "q", Timezone: str("Nowhere/Land")}, "timezone:"},
		{"j", PutInput{Schedule: "* * * * *", Queue: "q", CatchUp: str("all")}, "catch_up:"},
		{"j", PutInput{Schedule: "0 0 0 1 1 * 2020", Queue: "q"}, "no time after now"},
	}
	for _, b := range bad {
		if _, err := v.s.Put(ctx, b.name, b.in); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%+v: err %v", b, err)
		}
	}
	j, err := v.s.Put(ctx, "j", PutInput{Schedule: "0  0 * * *", Queue: "q", Timezone: str("Europe/Paris")})
	if err != nil {
		t.Fatal(err)
	}
	if j.Schedule != "0 0 * * *" || j.Timezone != "Europe/Paris" || j.CatchUp != "skip" || string(j.Payload) != "null" ||
		j.LastFiredAt != nil || j.NextFireAt == nil || *j.NextFireAt != "2026-03-01T23:00:00.000000000Z" {
		t.Fatalf("job %+v", j)
	}
	for _, n := range []string{"a", "b", "c"} {
		v.put(t, n, "* * * * *", "once")
	}
	page, next, err := v.s.List(2, "")
	if err != nil || len(page) != 2 || page[0].Name != "a" || next == "" {
		t.Fatalf("page %v %q %v", page, next, err)
	}
	page, next, err = v.s.List(2, next)
	if err != nil || len(page) != 2 || page[1].Name != "j" || next != "" {
		t.Fatalf("page %v %q %v", page, next, err)
	}
	if err := v.s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := v.s.Delete(ctx, "b"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := v.s.Get("b"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	var types []string
	for _, e := range v.events(t, "cron/b") {
		types = append(types, e.Type)
	}
	if len(types) != 2 || types[0] != Updated || types[1] != Deleted {
		t.Fatalf("events %v", types)
	}
	// A deleted job fires no more.
	v.clk.Add(2 * time.Minute)
	v.run(t)
	if fired, _ := v.fires(t, "b"); len(fired) != 0 {
		t.Fatalf("deleted job fired %d times", len(fired))
	}
}

// TestPutKeepsProgress: replacing a job without changing its schedule keeps
// where it was; changing the schedule starts it from now.
func TestPutKeepsProgress(t *testing.T) {
	v := newEnv(t)
	v.put(t, "j", "* * * * * *", CatchUpSkip)
	v.clk.Add(5 * time.Second)
	v.run(t)
	v.put(t, "j", "* * * * * *", CatchUpOnce) // same schedule
	v.clk.Add(5 * time.Second)
	v.run(t)
	fired, _ := v.fires(t, "j")
	if len(fired) != 10 {
		t.Fatalf("%d fires", len(fired))
	}
	v.clk.Add(1500 * time.Millisecond)
	v.put(t, "j", "*/2 * * * * *", CatchUpSkip) // new schedule: 12:00:11 is not missed
	v.clk.Add(time.Second)
	v.run(t)
	fired, skipped := v.fires(t, "j")
	if len(fired) != 11 || len(skipped) != 0 || fired[10].ScheduledAt != wal.FormatTime(t0.Add(12*time.Second)) {
		t.Fatalf("fired %+v skipped %+v", fired, skipped)
	}
}

// TestMaxJobs: past MaxJobs a new job is a conflict; replacing one is not.
func TestMaxJobs(t *testing.T) {
	v := newEnv(t)
	v.s.cfg.MaxJobs = 20
	ctx := context.Background()
	q := "q"
	for i := range v.s.cfg.MaxJobs {
		if _, err := v.s.Put(ctx, fmt.Sprintf("j%05d", i), PutInput{Schedule: "0 0 * * *", Queue: q}); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
	}
	if _, err := v.s.Put(ctx, "one-more", PutInput{Schedule: "0 0 * * *", Queue: q}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("job %d: %v, want a conflict", v.s.cfg.MaxJobs+1, err)
	}
	if _, err := v.s.Put(ctx, "j00000", PutInput{Schedule: "0 1 * * *", Queue: q}); err != nil {
		t.Fatalf("replacing a job at the limit: %v", err)
	}
}
