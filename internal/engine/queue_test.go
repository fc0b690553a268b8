package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"

	"engram/internal/engine"
	"engram/internal/storage"
	"engram/internal/wal"
)

// ---- helpers ----

func i64(v int64) *int64    { return &v }
func iptr(v int) *int       { return &v }
func sptr(s string) *string { return &s }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func pub(payload string) engine.PublishInput { return engine.PublishInput{Payload: raw(payload)} }

func parseTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatalf("time %q: %v", s, err)
	}
	return at
}

// waitFor polls fn every few milliseconds until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, fn func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sleepUntil lets the clock pass at (a time, not a condition: what is
// tested is what happens once it has passed).
func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

func (v *env) publish(tb testing.TB, topic string, ins ...engine.PublishInput) []engine.Published {
	tb.Helper()
	out, err := v.e.Publish(context.Background(), topic, ins)
	if err != nil {
		tb.Fatalf("Publish(%s): %v", topic, err)
	}
	if len(out) != len(ins) {
		tb.Fatalf("Publish(%s): %d answers for %d messages", topic, len(out), len(ins))
	}
	return out
}

// lease leases without waiting.
func (v *env) lease(tb testing.TB, topic string, max int, visMs int64) []engine.Leased {
	tb.Helper()
	return v.leaseWait(tb, topic, max, visMs, 0)
}

func (v *env) leaseWait(tb testing.TB, topic string, max int, visMs, waitMs int64) []engine.Leased {
	tb.Helper()
	out, err := v.e.Lease(context.Background(), topic, engine.LeaseInput{Max: &max, VisibilityMs: &visMs, WaitMs: &waitMs})
	if err != nil {
		tb.Fatalf("Lease(%s): %v", topic, err)
	}
	return out
}

// leaseOne long-polls (up to 5 s) for exactly one message.
func (v *env) leaseOne(tb testing.TB, topic string, visMs int64) engine.Leased {
	tb.Helper()
	out := v.leaseWait(tb, topic, 1, visMs, 5000)
	if len(out) != 1 {
		tb.Fatalf("Lease(%s): %d messages within 5 s, want 1", topic, len(out))
	}
	return out[0]
}

func (v *env) ack(tb testing.TB, topic string, receipts ...string) *engine.AckResult {
	tb.Helper()
	out, err := v.e.Ack(context.Background(), topic, receipts)
	if err != nil {
		tb.Fatalf("Ack(%s): %v", topic, err)
	}
	return out
}

func (v *env) nack(tb testing.TB, topic string, in engine.NackInput) *engine.NackResult {
	tb.Helper()
	out, err := v.e.Nack(context.Background(), topic, in)
	if err != nil {
		tb.Fatalf("Nack(%s): %v", topic, err)
	}
	return out
}

func (v *env) stats(tb testing.TB, topic string) engine.QueueStats {
	tb.Helper()
	s, err := v.e.QueueStatsOf(topic)
	if err != nil {
		tb.Fatalf("QueueStatsOf(%s): %v", topic, err)
	}
	return s
}

func (v *env) wantStats(tb testing.TB, topic string, ready, leased, delayed, dead int64) {
	tb.Helper()
	want := engine.QueueStats{Topic: topic, Ready: ready, Leased: leased, Delayed: delayed, Dead: dead}
	if got := v.stats(tb, topic); got != want {
		tb.Fatalf("stats %+v, want %+v", got, want)
	}
}

func (v *env) allDead(tb testing.TB, topic string, limit int) []engine.DeadMessage {
	tb.Helper()
	var out []engine.DeadMessage
	cursor := ""
	for {
		page, next, err := v.e.ListDead(topic, limit, cursor)
		if err != nil {
			tb.Fatalf("ListDead(%s): %v", topic, err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
}

func leasedIDs(ls []engine.Leased) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}

func pubIDs(ps []engine.Published) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// qevent is a logged event.
type qevent struct {
	Seq   uint64         `json:"seq"`
	Time  string         `json:"time"`
	Type  string         `json:"type"`
	Topic string         `json:"topic"`
	Data  map[string]any `json:"data"`
}

func (e qevent) str(k string) string { s, _ := e.Data[k].(string); return s }

func (e qevent) attempt() int { f, _ := e.Data["attempt"].(float64); return int(f) }

// eventsAfter reads the events after seq from, up to the head and past it
// while there are more: a timer command's writes are visible before the
// sequencer's head counts them. Queue events must carry id and attempt and
// never the payload.
func (v *env) eventsAfter(tb testing.TB, from uint64) []qevent {
	tb.Helper()
	var out []qevent
	head := v.head()
	for s := from + 1; ; s++ {
		ev, err := wal.ReadEvent(v.db, s)
		if err != nil && s > head {
			break
		}
		if err != nil {
			tb.Fatalf("ReadEvent(%d): %v", s, err)
		}
		var e qevent
		if err := json.Unmarshal(ev.JSON, &e); err != nil {
			tb.Fatalf("event %d: %v", s, err)
		}
		if strings.HasPrefix(e.Type, "queue.") {
			if _, ok := e.Data["payload"]; ok {
				tb.Errorf("event %d (%s) carries the payload: %v", s, e.Type, e.Data)
			}
			if _, ok := e.Data["attempt"]; !ok || e.str("id") == "" {
				tb.Errorf("event %d (%s) without id or attempt: %v", s, e.Type, e.Data)
			}
		}
		out = append(out, e)
	}
	return out
}

func evTypes(evs []qevent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// qrec is a message record as the engine stores it.
type qrec struct {
	ID             string          `json:"id"`
	Topic          string          `json:"topic"`
	Seq            uint64          `json:"seq"`
	Payload        json.RawMessage `json:"payload"`
	Group          string          `json:"group"`
	Pos            uint64          `json:"pos"`
	Attempt        int             `json:"attempt"`
	State          string          `json:"state"`
	AvailableAt    int64           `json:"available_at"`
	LeaseExpiresAt int64           `json:"lease_expires_at"`
	DeadAt         int64           `json:"dead_at"`
}

// queueProblems recounts a topic from its message records and indexes (one
// snapshot), then compares the recount with QueueStatsOf, ListDead and
// ListQueues.
func (v *env) queueProblems(topic string) []string {
	var probs []string
	bad := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }
	snap := v.db.NewSnapshot()
	defer snap.Close()
	scan := func(prefix []byte, fn func(k, v []byte)) {
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: storage.PrefixEnd(prefix)})
		if err != nil {
			bad("iter: %v", err)
			return
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			fn(bytes.Clone(it.Key()), bytes.Clone(it.Value()))
		}
	}
	all := map[ulid.ULID]qrec{}
	scan(storage.QueueMsgKey([16]byte{})[:1], func(k, val []byte) {
		var r qrec
		if err := json.Unmarshal(val, &r); err != nil {
			bad("record %x: %v", k, err)
			return
		}
		all[ulid.ULID(k[1:])] = r
	})
	var want engine.QueueStats
	want.Topic = topic
	var readyIDs, deadIDs []ulid.ULID
	groups := map[string][]ulid.ULID{} // group → its non-dead messages
	for id, r := range all {
		if r.Topic != topic {
			continue
		}
		if r.ID != id.String() {
			bad("record %s has id %s", id, r.ID)
		}
		switch r.State {
		case "ready":
			want.Ready++
			readyIDs = append(readyIDs, id)
		case "blocked":
			want.Ready++
			if r.Group == "" {
				bad("message %s blocked without a group", id)
			}
		case "delayed":
			want.Delayed++
		case "leased":
			want.Leased++
		case "dead":
			want.Dead++
			deadIDs = append(deadIDs, id)
		default:
			bad("message %s in state %q", id, r.State)
		}
		if r.Group != "" && r.State != "dead" {
			groups[r.Group] = append(groups[r.Group], id)
		}
	}
	// The stored counts, in the same snapshot.
	var stored engine.QueueStats
	stored.Topic = topic
	if sv, closer, err := snap.Get(storage.QueueStatsKey(topic)); err == nil {
		if len(sv) != 32 {
			bad("stats value of %d bytes", len(sv))
		} else {
			u := func(i int) int64 { return int64(binary.BigEndian.Uint64(sv[i*8:])) }
			stored.Ready, stored.Delayed, stored.Leased, stored.Dead = u(0), u(1), u(2), u(3)
		}
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		bad("stats: %v", err)
	}
	if stored != want {
		bad("stored counts %+v, recount %+v", stored, want)
	}
	// Ready index: exactly the ready (not blocked) messages, keyed by
	// available_at and seq.
	nReady := 0
	scan(storage.QueueReadyPrefix(topic), func(k, val []byte) {
		nReady++
		id := ulid.ULID(val)
		r, ok := all[id]
		if !ok || r.State != "ready" || !bytes.Equal(k, storage.QueueReadyKey(topic, r.AvailableAt, r.Seq)) {
			bad("ready entry %x for %s (%+v)", k, id, r)
		}
	})
	if nReady != len(readyIDs) {
		bad("%d ready entries, %d ready messages", nReady, len(readyIDs))
	}
	// Timer indexes: every entry names a message in that state at that
	// time; every such message of the topic has one.
	for _, ix := range []struct {
		state  string
		prefix []byte
		key    func(r qrec, id ulid.ULID) []byte
	}{
		{"delayed", storage.QueueDelayedPrefix(), func(r qrec, id ulid.ULID) []byte { return storage.QueueDelayedKey(r.AvailableAt, id) }},
		{"leased", storage.QueueLeasedPrefix(), func(r qrec, id ulid.ULID) []byte { return storage.QueueLeasedKey(r.LeaseExpiresAt, id) }},
	} {
		n := 0
		scan(ix.prefix, func(k, _ []byte) {
			_, id, err := storage.QueueTimeKey(k)
			if err != nil {
				bad("%s key %x: %v", ix.state, k, err)
				return
			}
			r, ok := all[id]
			if !ok || r.State != ix.state || !bytes.Equal(k, ix.key(r, id)) {
				bad("%s entry %x for %s (%+v)", ix.state, k, ulid.ULID(id), r)
				return
			}
			if r.Topic == topic {
				n++
			}
		})
		w := want.Delayed
		if ix.state == "leased" {
			w = want.Leased
		}
		if int64(n) != w {
			bad("%d %s entries, %d %s messages", n, ix.state, w, ix.state)
		}
	}
	// Dead index.
	nDead := 0
	scan(storage.QueueDeadPrefix(topic), func(k, _ []byte) {
		nDead++
		id, _ := storage.TrailingID(k)
		r, ok := all[id]
		if !ok || r.State != "dead" || !bytes.Equal(k, storage.QueueDeadKey(topic, r.DeadAt, id)) {
			bad("dead entry %x for %s (%+v)", k, ulid.ULID(id), r)
		}
	})
	if nDead != len(deadIDs) {
		bad("%d dead entries, %d dead messages", nDead, len(deadIDs))
	}
	// Groups: each lists its non-dead messages once, in order; only the
	// head may be anything but blocked.
	for g, members := range groups {
		var listed []ulid.ULID
		scan(storage.QueueGroupPrefix(topic, g), func(k, val []byte) {
			id := ulid.ULID(val)
			r := all[id]
			if !bytes.Equal(k, storage.QueueGroupKey(topic, g, r.Pos)) {
				bad("group %s entry %x for %s at pos %d", g, k, id, r.Pos)
			}
			if len(listed) == 0 && r.State == "blocked" {
				bad("group %s head %s is blocked", g, id)
			}
			if len(listed) > 0 && r.State != "blocked" {
				bad("group %s member %s behind the head is %s", g, id, r.State)
			}
			listed = append(listed, id)
		})
		slices.SortFunc(listed, func(a, b ulid.ULID) int { return a.Compare(b) })
		slices.SortFunc(members, func(a, b ulid.ULID) int { return a.Compare(b) })
		if !slices.Equal(listed, members) {
			bad("group %s lists %v, its messages are %v", g, listed, members)
		}
	}
	// The API's view.
	if got, err := v.e.QueueStatsOf(topic); err != nil || got != want {
		bad("QueueStatsOf %+v (%v), recount %+v", got, err, want)
	}
	var dead []string
	cursor := ""
	for {
		page, next, err := v.e.ListDead(topic, 7, cursor)
		if err != nil {
			bad("ListDead: %v", err)
			break
		}
		for _, d := range page {
			dead = append(dead, d.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	wantDead := make([]string, len(deadIDs))
	for i, id := range deadIDs {
		wantDead[i] = id.String()
	}
	slices.Sort(dead)
	slices.Sort(wantDead)
	if !slices.Equal(dead, wantDead) {
		bad("ListDead %v, dead messages %v", dead, wantDead)
	}
	var listed *engine.QueueStats
	cursor = ""
	for {
		page, next, err := v.e.ListQueues(3, cursor)
		if err != nil {
			bad("ListQueues: %v", err)
			break
		}
		for _, q := range page {
			if q.Topic == topic {
				listed = &q
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	empty := want == engine.QueueStats{Topic: topic}
	switch {
	case empty && listed != nil:
		bad("ListQueues lists empty topic %+v", *listed)
	case !empty && (listed == nil || *listed != want):
		bad("ListQueues has %v, recount %+v", listed, want)
	}
	return probs
}

// checkQueue asserts that a topic's counts, indexes and listings agree with
// its messages. The timer may be moving messages meanwhile, so it polls
// briefly for a consistent view.
func (v *env) checkQueue(tb testing.TB, topic string) {
	tb.Helper()
	var probs []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		if probs = v.queueProblems(topic); len(probs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("queue %s inconsistent:\n  %s", topic, strings.Join(probs, "\n  "))
}

// ---- publish ----

func TestQueuePublish(t *testing.T) {
	v := newEnv(t)
	h0 := v.head()
	one := v.publish(t, "jobs", engine.PublishInput{Payload: raw(`{"n": 1}`), MaxAttempts: iptr(3), BackoffMs: i64(10), Group: sptr("g")})[0]
	if one.Duplicate || one.Seq != h0+1 || v.head() != h0+1 {
		t.Fatalf("published %+v, head %d; want seq %d", one, v.head(), h0+1)
	}
	if _, err := ulid.ParseStrict(one.ID); err != nil {
		t.Fatalf("id %q: %v", one.ID, err)
	}
	evs := v.eventsAfter(t, h0)
	if len(evs) != 1 {
		t.Fatalf("events %v, want one", evTypes(evs))
	}
	ev := evs[0]
	if ev.Type != engine.QueuePublished || ev.Topic != "queues/jobs" || ev.Seq != one.Seq || ev.str("id") != one.ID ||
		ev.attempt() != 0 || ev.Data["max_attempts"] != float64(3) || ev.str("group") != "g" ||
		ev.str("available_at") != one.AvailableAt || ev.str("published_at") != ev.Time {
		t.Fatalf("event %+v for %+v", ev, one)
	}
	if ev.str("published_at") != one.AvailableAt {
		t.Fatalf("available_at %s, published_at %s: want equal without a delay", one.AvailableAt, ev.str("published_at"))
	}

	h1 := v.head()
	batch := v.publish(t, "jobs", pub(`1`), pub(` "two" `), pub(`[3, {"x": null}]`))
	for i, p := range batch {
		if p.Seq != h1+1+uint64(i) || p.AvailableAt != batch[0].AvailableAt || p.Duplicate {
			t.Fatalf("batch[%d] = %+v", i, p)
		}
	}
	if evs := v.eventsAfter(t, h1); len(evs) != 3 {
		t.Fatalf("batch events %v", evTypes(evs))
	}
	v.wantStats(t, "jobs", 4, 0, 0, 0)
	v.checkQueue(t, "jobs")

	got := v.lease(t, "jobs", 10, 30000)
	want := append([]string{one.ID}, pubIDs(batch)...)
	if !slices.Equal(leasedIDs(got), want) {
		t.Fatalf("leased %v, want %v", leasedIDs(got), want)
	}
	payloads := []string{`{"n":1}`, `1`, `"two"`, `[3,{"x":null}]`}
	for i, l := range got {
		if string(l.Payload) != payloads[i] || l.Attempt != 1 || l.PublishedAt == "" || l.Receipt == "" {
			t.Errorf("leased[%d] = %+v, want payload %s attempt 1", i, l, payloads[i])
		}
	}
	v.wantStats(t, "jobs", 0, 4, 0, 0)
	v.checkQueue(t, "jobs")
}

func TestQueuePublishInvalid(t *testing.T) {
	v := newEnv(t)
	msgs := func(n, bad int, f func(*engine.PublishInput)) []engine.PublishInput {
		out := make([]engine.PublishInput, n)
		for i := range out {
			out[i] = pub(fmt.Sprint(i))
			if i == bad {
				f(&out[i])
			}
		}
		return out
	}
	cases := []struct {
		name  string
		topic string
		ins   []engine.PublishInput
		want  string
	}{
		{"negative delay", "q", msgs(5, 3, func(p *engine.PublishInput) { p.DelayMs = i64(-1) }), "messages[3].delay_ms"},
		{"delay too long", "q", msgs(5, 0, func(p *engine.PublishInput) { p.DelayMs = i64(engine.MaxQueueDelay.Milliseconds() + 1) }), "messages[0].delay_ms"},
		{"missing payload", "q", msgs(3, 1, func(p *engine.PublishInput) { p.Payload = nil }), "messages[1].payload"},
		{"bad JSON payload", "q", msgs(3, 2, func(p *engine.PublishInput) { p.Payload = raw(`{"a":`) }), "messages[2].payload"},
		{"empty dedupe id", "q", msgs(3, 1, func(p *engine.PublishInput) { p.DedupeID = sptr("") }), "messages[1].dedupe_id"},
		{"long dedupe id", "q", msgs(3, 1, func(p *engine.PublishInput) { p.DedupeID = sptr(strings.Repeat("d", engine.MaxDedupeIDLen+1)) }), "messages[1].dedupe_id"},
		{"zero max attempts", "q", msgs(3, 2, func(p *engine.PublishInput) { p.MaxAttempts = iptr(0) }), "messages[2].max_attempts"},
		{"too many max attempts", "q", msgs(3, 2, func(p *engine.PublishInput) { p.MaxAttempts = iptr(engine.MaxAttemptsLimit + 1) }), "messages[2].max_attempts"},
		{"negative backoff", "q", msgs(3, 0, func(p *engine.PublishInput) { p.BackoffMs = i64(-5) }), "messages[0].backoff_ms"},
		{"backoff too long", "q", msgs(3, 0, func(p *engine.PublishInput) { p.BackoffMs = i64(engine.MaxBackoff.Milliseconds() + 1) }), "messages[0].backoff_ms"},
		{"bad group", "q", msgs(5, 4, func(p *engine.PublishInput) { p.Group = sptr("a b") }), "messages[4].group"},
		{"empty group", "q", msgs(5, 4, func(p *engine.PublishInput) { p.Group = sptr("") }), "messages[4].group"},
		{"one-message batch", "q", msgs(1, 0, func(p *engine.PublishInput) { p.DelayMs = i64(-1) }), "messages[0].delay_ms"},
		{"bad topic", "a/b", msgs(1, -1, nil), "topic"},
		{"empty topic", "", msgs(1, -1, nil), "topic"},
		{"no messages", "q", nil, "messages"},
		{"1001 messages", "q", msgs(engine.MaxPublishBatch+1, -1, nil), "messages: 1001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := v.head()
			_, err := v.e.Publish(context.Background(), tc.topic, tc.ins)
			wantErr(t, err, engine.ErrInvalid, tc.want)
			if v.head() != h {
				t.Fatalf("head moved %d → %d: a rejected batch logged events", h, v.head())
			}
			v.wantStats(t, "q", 0, 0, 0, 0)
			if qs, _, err := v.e.ListQueues(0, ""); err != nil || len(qs) != 0 {
				t.Fatalf("ListQueues = %v, %v; want none", qs, err)
			}
		})
	}
	// The largest batch goes through whole, and comes back in order.
	big := v.publish(t, "q", msgs(engine.MaxPublishBatch, -1, nil)...)
	v.wantStats(t, "q", engine.MaxPublishBatch, 0, 0, 0)
	got := v.lease(t, "q", engine.MaxLease, 30000)
	if !slices.Equal(leasedIDs(got), pubIDs(big)) {
		t.Fatal("a full batch is not leased in publish order")
	}
	receipts := make([]string, len(got))
	for i, l := range got {
		receipts[i] = l.Receipt
	}
	if r := v.ack(t, "q", receipts...); r.Acked != len(got) || len(r.Stale) != 0 {
		t.Fatalf("ack = %+v", r)
	}
	v.wantStats(t, "q", 0, 0, 0, 0)
	v.checkQueue(t, "q")
}

// ---- dedupe ----

func TestQueueDedupe(t *testing.T) {
	v := newEnv(t)
	d := func(id, payload string) engine.PublishInput {
		return engine.PublishInput{Payload: raw(payload), DedupeID: sptr(id)}
	}
	first := v.publish(t, "q", d("order-1", `1`))[0]
	h := v.head()
	dup := v.publish(t, "q", d("order-1", `"other payload"`))[0]
	if !dup.Duplicate || dup.ID != first.ID || dup.Seq != first.Seq || dup.AvailableAt != first.AvailableAt {
		t.Fatalf("duplicate %+v, first %+v", dup, first)
	}
	if v.head() != h {
		t.Fatalf("a duplicate logged %d events", v.head()-h)
	}
	v.wantStats(t, "q", 1, 0, 0, 0)

	// In one batch: new, duplicate of an earlier one, duplicate of the new
	// one, another new.
	b := v.publish(t, "q", d("order-2", `2`), d("order-1", `3`), d("order-2", `4`), pub(`5`))
	if b[0].Duplicate || !b[1].Duplicate || b[1].ID != first.ID || !b[2].Duplicate || b[2].ID != b[0].ID || b[2].Seq != b[0].Seq || b[3].Duplicate {
		t.Fatalf("batch %+v", b)
	}
	if evs := v.eventsAfter(t, h); len(evs) != 2 {
		t.Fatalf("batch with two new messages logged %v", evTypes(evs))
	}
	v.wantStats(t, "q", 3, 0, 0, 0)

	// Another topic: no collision.
	o := v.publish(t, "other", d("order-1", `1`))[0]
	if o.Duplicate || o.ID == first.ID {
		t.Fatalf("dedupe id collided across topics: %+v", o)
	}

	// Once the first is acked, a duplicate still answers it.
	ls := v.lease(t, "q", 10, 30000)
	if len(ls) != 3 || ls[0].ID != first.ID {
		t.Fatalf("leased %v", leasedIDs(ls))
	}
	v.ack(t, "q", ls[0].Receipt)
	h = v.head()
	again := v.publish(t, "q", d("order-1", `1`))[0]
	if !again.Duplicate || again.ID != first.ID || again.Seq != first.Seq || v.head() != h {
		t.Fatalf("after ack: %+v, first %+v", again, first)
	}
	v.wantStats(t, "q", 0, 2, 0, 0)
	v.checkQueue(t, "q")
	v.checkQueue(t, "other")
}

// TestQueueDedupeWindow moves the sequencer's clock: a dedupe id 25 h old
// no longer matches, and the timer prunes it.
func TestQueueDedupeWindow(t *testing.T) {
	for _, timer := range []bool{false, true} {
		t.Run(fmt.Sprintf("timer=%v", timer), func(t *testing.T) {
			var off atomic.Int64
			v := newEnvOpts(t, envOpts{noTimer: !timer, now: func() time.Time { return time.Now().Add(time.Duration(off.Load())) }})
			in := engine.PublishInput{Payload: raw(`1`), DedupeID: sptr("d")}
			off.Store(int64(-25 * time.Hour))
			old := v.publish(t, "q", in)[0]
			off.Store(0)
			if timer {
				waitFor(t, 3*time.Second, "dedupe entry pruned", func() bool {
					_, err := v.db.Get(storage.QueueDedupeKey("q", "d"))
					return errors.Is(err, storage.ErrNotFound)
				})
			}
			fresh := v.publish(t, "q", in)[0]
			if fresh.Duplicate || fresh.ID == old.ID {
				t.Fatalf("a dedupe id past the window answered %+v (old %+v)", fresh, old)
			}
			if dup := v.publish(t, "q", in)[0]; !dup.Duplicate || dup.ID != fresh.ID {
				t.Fatalf("dedupe of the new message: %+v", dup)
			}
			v.wantStats(t, "q", 2, 0, 0, 0)
			v.checkQueue(t, "q")
		})
	}
}

// ---- delays and lease order ----

func TestQueueDelay(t *testing.T) {
	v := newEnv(t)
	h := v.head()
	p := v.publish(t, "q", engine.PublishInput{Payload: raw(`"later"`), DelayMs: i64(150)})[0]
	ev := v.eventsAfter(t, h)[0]
	avail := parseTime(t, p.AvailableAt)
	if d := avail.Sub(parseTime(t, ev.Time)); d != 150*time.Millisecond {
		t.Fatalf("available_at is %v after publishing, want 150ms", d)
	}
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 0 && time.Now().Before(avail) {
		t.Fatalf("leased a delayed message early: %+v", ls)
	}
	v.wantStats(t, "q", 0, 0, 1, 0)
	v.checkQueue(t, "q")

	// The timer makes it ready, with no lease asking.
	waitFor(t, 3*time.Second, "delayed message ready", func() bool { return v.stats(t, "q").Ready == 1 })
	if time.Now().Before(avail) {
		t.Fatalf("ready before its available_at %v", avail)
	}
	v.checkQueue(t, "q")
	l := v.lease(t, "q", 10, 30000)
	if len(l) != 1 || l[0].ID != p.ID || l[0].Attempt != 1 {
		t.Fatalf("leased %+v", l)
	}

	// A long-poll lease waits for the delay.
	p2 := v.publish(t, "q", engine.PublishInput{Payload: raw(`2`), DelayMs: i64(80)})[0]
	l2 := v.leaseOne(t, "q", 1000)
	leasedAt := parseTime(t, l2.LeaseExpiresAt).Add(-time.Second)
	if l2.ID != p2.ID || leasedAt.Before(parseTime(t, p2.AvailableAt)) {
		t.Fatalf("leased %+v at %v, available at %s", l2, leasedAt, p2.AvailableAt)
	}
	v.checkQueue(t, "q")
}

func TestQueueLeaseOrder(t *testing.T) {
	v := newEnv(t)
	var all []engine.Published
	all = append(all, v.publish(t, "q", engine.PublishInput{Payload: raw(`"a"`), DelayMs: i64(60)})...)
	all = append(all, v.publish(t, "q", pub(`"b"`))...)
	all = append(all, v.publish(t, "q", pub(`"c"`), pub(`"d"`), pub(`"e"`))...)
	waitFor(t, 3*time.Second, "all ready", func() bool { return v.stats(t, "q").Ready == 5 })
	want := slices.Clone(all)
	slices.SortStableFunc(want, func(x, y engine.Published) int {
		if c := strings.Compare(x.AvailableAt, y.AvailableAt); c != 0 {
			return c
		}
		return int(x.Seq) - int(y.Seq)
	})
	if want[4].ID != all[0].ID {
		t.Fatalf("the delayed message should be last: %+v", want)
	}
	got := v.lease(t, "q", 2, 30000)
	got = append(got, v.lease(t, "q", 10, 30000)...)
	if !slices.Equal(leasedIDs(got), pubIDs(want)) {
		t.Fatalf("lease order %v, want %v", leasedIDs(got), pubIDs(want))
	}
	if more := v.lease(t, "q", 10, 30000); len(more) != 0 {
		t.Fatalf("leased %d more", len(more))
	}
	// Nacked without delay, they are ready now: behind nothing, in nack
	// order.
	v.nack(t, "q", engine.NackInput{Receipt: got[3].Receipt, DelayMs: i64(0)})
	v.nack(t, "q", engine.NackInput{Receipt: got[1].Receipt, DelayMs: i64(0)})
	again := v.lease(t, "q", 10, 30000)
	if !slices.Equal(leasedIDs(again), []string{got[3].ID, got[1].ID}) || again[0].Attempt != 2 {
		t.Fatalf("after nacks leased %+v", again)
	}
	v.wantStats(t, "q", 0, 5, 0, 0)
	v.checkQueue(t, "q")
}

func TestQueueLeaseInvalid(t *testing.T) {
	v := newEnv(t)
	cases := []struct {
		name  string
		topic string
		in    engine.LeaseInput
		want  string
	}{
		{"max 0", "q", engine.LeaseInput{Max: iptr(0)}, "max"},
		{"max too large", "q", engine.LeaseInput{Max: iptr(engine.MaxLease + 1)}, "max"},
		{"visibility 0", "q", engine.LeaseInput{VisibilityMs: i64(0)}, "visibility_ms"},
		{"visibility too long", "q", engine.LeaseInput{VisibilityMs: i64(engine.MaxVisibility.Milliseconds() + 1)}, "visibility_ms"},
		{"negative wait", "q", engine.LeaseInput{WaitMs: i64(-1)}, "wait_ms"},
		{"wait too long", "q", engine.LeaseInput{WaitMs: i64(30001)}, "wait_ms"},
		{"bad topic", "x y", engine.LeaseInput{}, "topic"},
	}
	v.publish(t, "q", pub(`1`))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.e.Lease(context.Background(), tc.topic, tc.in)
			wantErr(t, err, engine.ErrInvalid, tc.want)
			v.wantStats(t, "q", 1, 0, 0, 0)
		})
	}
	// Defaults: one message, 30 s visibility.
	ls, err := v.e.Lease(context.Background(), "q", engine.LeaseInput{})
	if err != nil || len(ls) != 1 {
		t.Fatalf("Lease with defaults = %+v, %v", ls, err)
	}
	if d := time.Until(parseTime(t, ls[0].LeaseExpiresAt)); d < 25*time.Second || d > 30*time.Second {
		t.Fatalf("default visibility: lease expires in %v", d)
	}
	// Empty topics answer an empty list, not nil.
	if ls := v.lease(t, "never", 1, 1000); ls == nil || len(ls) != 0 {
		t.Fatalf("empty topic: %#v", ls)
	}
}

// ---- visibility, ack, nack ----

func TestQueueLeaseExpiry(t *testing.T) {
	v := newEnv(t)
	p := v.publish(t, "q", engine.PublishInput{Payload: raw(`"x"`), BackoffMs: i64(20), MaxAttempts: iptr(5)})[0]
	h := v.head()
	l1 := v.lease(t, "q", 1, 30)[0]
	l2 := v.leaseOne(t, "q", 30)
	l3 := v.leaseOne(t, "q", 30000)
	for i, l := range []engine.Leased{l1, l2, l3} {
		if l.ID != p.ID || l.Attempt != i+1 || string(l.Payload) != `"x"` {
			t.Fatalf("lease %d: %+v", i+1, l)
		}
	}
	// Each came back backoff_ms × 2^(attempt−1) after its lease expired.
	for i, pair := range [][2]engine.Leased{{l1, l2}, {l2, l3}} {
		expired := parseTime(t, pair[0].LeaseExpiresAt)
		vis := 30 * time.Millisecond
		if i == 1 {
			vis = 30 * time.Second
		}
		leasedAt := parseTime(t, pair[1].LeaseExpiresAt).Add(-vis)
		if want := expired.Add(time.Duration(20<<i) * time.Millisecond); leasedAt.Before(want) {
			t.Errorf("attempt %d leased at %v, before expiry + backoff %v", i+2, leasedAt, want)
		}
	}
	evs := v.eventsAfter(t, h)
	if want := []string{"queue.leased", "queue.nacked", "queue.leased", "queue.nacked", "queue.leased"}; !slices.Equal(evTypes(evs), want) {
		t.Fatalf("events %v, want %v", evTypes(evs), want)
	}
	for i, e := range evs {
		switch e.Type {
		case engine.QueueLeased:
			if e.attempt() != i/2+1 || e.str("lease_expires_at") == "" {
				t.Errorf("event %d: %+v", i, e)
			}
		case engine.QueueNacked:
			backoff := time.Duration(20<<(i/2)) * time.Millisecond
			if e.str("reason") != "lease_expired" || e.attempt() != i/2+1 || e.str("error") != "lease expired" ||
				parseTime(t, e.str("available_at")).Sub(parseTime(t, e.Time)) != backoff {
				t.Errorf("event %d: %+v, want available_at %v after it", i, e, backoff)
			}
		}
		if e.str("id") != p.ID || e.Topic != "queues/q" {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if r := v.ack(t, "q", l1.Receipt, l2.Receipt); r.Acked != 0 || len(r.Stale) != 2 {
		t.Fatalf("ack of expired leases: %+v", r)
	}
	v.wantStats(t, "q", 0, 1, 0, 0)
	v.checkQueue(t, "q")
	if r := v.ack(t, "q", l3.Receipt); r.Acked != 1 {
		t.Fatalf("ack = %+v", r)
	}
	v.wantStats(t, "q", 0, 0, 0, 0)
	v.checkQueue(t, "q")
}

func TestQueueAck(t *testing.T) {
	v := newEnv(t)
	v.publish(t, "q", pub(`"a"`), pub(`"b"`), pub(`"c"`))
	ls := v.lease(t, "q", 3, 30000)
	if len(ls) != 3 {
		t.Fatalf("leased %d", len(ls))
	}
	v.publish(t, "other", pub(`"o"`))
	lo := v.lease(t, "other", 1, 30000)[0]

	// Strings that are not receipts at all are bad input: nothing is acked.
	for _, g := range []string{"nope", "r1.AAAA", "r1." + strings.Repeat("A", 32)} {
		_, err := v.e.Ack(context.Background(), "q", []string{ls[0].Receipt, g})
		wantErr(t, err, engine.ErrInvalid, "receipts[1]", "not a receipt")
	}
	h := v.head()
	in := []string{ls[0].Receipt, ls[0].Receipt, lo.Receipt, ls[2].Receipt}
	r := v.ack(t, "q", in...)
	wantStale := []string{ls[0].Receipt, lo.Receipt}
	if r.Acked != 2 || !slices.Equal(r.Stale, wantStale) {
		t.Fatalf("ack = %+v, want 2 acked and stale %v", r, wantStale)
	}
	evs := v.eventsAfter(t, h)
	if !slices.Equal(evTypes(evs), []string{"queue.acked", "queue.acked"}) || evs[0].str("id") != ls[0].ID || evs[1].str("id") != ls[2].ID || evs[0].attempt() != 1 {
		t.Fatalf("ack events %+v", evs)
	}
	v.wantStats(t, "q", 0, 1, 0, 0)
	// Already acked.
	if r := v.ack(t, "q", ls[0].Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Fatalf("second ack = %+v", r)
	}
	// The other topic's message is untouched and acks on its own topic.
	v.wantStats(t, "other", 0, 1, 0, 0)
	if r := v.ack(t, "other", lo.Receipt); r.Acked != 1 || len(r.Stale) != 0 {
		t.Fatalf("ack on its topic = %+v", r)
	}

	// Re-leased: the first receipt is stale, the second acks.
	v.publish(t, "q", engine.PublishInput{Payload: raw(`"x"`), BackoffMs: i64(0)})
	x1 := v.lease(t, "q", 1, 20)[0]
	x2 := v.leaseOne(t, "q", 30000)
	if x2.ID != x1.ID || x2.Attempt != 2 || x2.Receipt == x1.Receipt {
		t.Fatalf("re-lease %+v after %+v", x2, x1)
	}
	if r := v.ack(t, "q", x1.Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Fatalf("ack of the first lease = %+v", r)
	}
	if r := v.ack(t, "q", x2.Receipt, ls[1].Receipt); r.Acked != 2 {
		t.Fatalf("ack = %+v", r)
	}
	v.wantStats(t, "q", 0, 0, 0, 0)
	v.checkQueue(t, "q")
	v.checkQueue(t, "other")

	for _, tc := range []struct {
		name     string
		receipts []string
		want     string
	}{
		{"none", nil, "receipts"},
		{"too many", make([]string, engine.MaxLease+1), "receipts"},
		{"empty receipt", []string{x2.Receipt, ""}, "receipts[1]"},
		{"long receipt", []string{strings.Repeat("r", 129)}, "receipts[0]"},
	} {
		_, err := v.e.Ack(context.Background(), "q", tc.receipts)
		wantErr(t, err, engine.ErrInvalid, tc.want)
	}
	_, err := v.e.Ack(context.Background(), "bad topic", []string{x2.Receipt})
	wantErr(t, err, engine.ErrInvalid, "topic")
}

// TestQueueReceiptExpiry runs without the timer: a receipt whose lease has
// expired is stale even before the timer takes the lease back.
func TestQueueReceiptExpiry(t *testing.T) {
	v := newEnvOpts(t, envOpts{noTimer: true})
	v.publish(t, "q", pub(`1`))
	l := v.lease(t, "q", 1, 30)[0]
	sleepUntil(parseTime(t, l.LeaseExpiresAt).Add(time.Millisecond))
	if r := v.ack(t, "q", l.Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Fatalf("ack after expiry = %+v", r)
	}
	_, err := v.e.Nack(context.Background(), "q", engine.NackInput{Receipt: l.Receipt})
	wantErr(t, err, engine.ErrGone, "receipt")
	v.wantStats(t, "q", 0, 1, 0, 0) // the timer would take it back
	v.checkQueue(t, "q")
}

func TestQueueNack(t *testing.T) {
	v := newEnv(t)
	p := v.publish(t, "q", engine.PublishInput{Payload: raw(`"m"`), BackoffMs: i64(10), MaxAttempts: iptr(5)})[0]
	l1 := v.lease(t, "q", 1, 30000)[0]
	h := v.head()
	r := v.nack(t, "q", engine.NackInput{Receipt: l1.Receipt, DelayMs: i64(0), Error: sptr("try again")})
	if r.ID != p.ID || r.Attempt != 1 || r.State != "ready" || r.AvailableAt == nil {
		t.Fatalf("nack = %+v", r)
	}
	ev := v.eventsAfter(t, h)
	if len(ev) != 1 || ev[0].Type != engine.QueueNacked || ev[0].str("reason") != "nack" || ev[0].str("error") != "try again" ||
		ev[0].str("available_at") != *r.AvailableAt || ev[0].str("available_at") != ev[0].Time {
		t.Fatalf("nack event %+v, result %+v", ev, r)
	}
	v.wantStats(t, "q", 1, 0, 0, 0)
	v.checkQueue(t, "q")

	// Leasable at once.
	l2 := v.lease(t, "q", 1, 30000)
	if len(l2) != 1 || l2[0].Attempt != 2 {
		t.Fatalf("after nack: %+v", l2)
	}
	// Without delay: backoff_ms × 2^(2−1).
	h = v.head()
	r = v.nack(t, "q", engine.NackInput{Receipt: l2[0].Receipt})
	ev = v.eventsAfter(t, h)
	if r.State != "delayed" || parseTime(t, *r.AvailableAt).Sub(parseTime(t, ev[0].Time)) != 20*time.Millisecond {
		t.Fatalf("nack without delay = %+v at %s, want available 20ms later", r, ev[0].Time)
	}
	l3 := v.leaseOne(t, "q", 30000)
	if l3.Attempt != 3 || parseTime(t, l3.LeaseExpiresAt).Add(-30*time.Second).Before(parseTime(t, *r.AvailableAt)) {
		t.Fatalf("leased %+v before %s", l3, *r.AvailableAt)
	}
	// With a delay.
	r = v.nack(t, "q", engine.NackInput{Receipt: l3.Receipt, DelayMs: i64(100_000)})
	if r.State != "delayed" || r.Attempt != 3 {
		t.Fatalf("nack with delay = %+v", r)
	}
	if ls := v.lease(t, "q", 1, 1000); len(ls) != 0 {
		t.Fatalf("leased a message nacked with a delay: %+v", ls)
	}
	v.wantStats(t, "q", 0, 0, 1, 0)
	v.checkQueue(t, "q")

	// Stale receipts are gone: nacked already, acked.
	for _, rc := range []string{l3.Receipt, l1.Receipt} {
		_, err := v.e.Nack(context.Background(), "q", engine.NackInput{Receipt: rc})
		wantErr(t, err, engine.ErrGone, "receipt")
	}
	// Strings that are not receipts are bad input.
	for _, rc := range []string{"garbage", "r1.AAAA"} {
		_, err := v.e.Nack(context.Background(), "q", engine.NackInput{Receipt: rc})
		wantErr(t, err, engine.ErrInvalid, "receipt:", "not a receipt")
	}
	v.publish(t, "q2", pub(`1`))
	la := v.lease(t, "q2", 1, 30000)[0]
	v.ack(t, "q2", la.Receipt)
	_, err := v.e.Nack(context.Background(), "q2", engine.NackInput{Receipt: la.Receipt})
	wantErr(t, err, engine.ErrGone)
	// Another topic's receipt.
	v.publish(t, "q2", pub(`2`))
	lb := v.lease(t, "q2", 1, 30000)[0]
	_, err = v.e.Nack(context.Background(), "q", engine.NackInput{Receipt: lb.Receipt})
	wantErr(t, err, engine.ErrGone)
	v.wantStats(t, "q2", 0, 1, 0, 0)

	for _, tc := range []struct {
		name string
		in   engine.NackInput
		want string
	}{
		{"no receipt", engine.NackInput{}, "receipt"},
		{"negative delay", engine.NackInput{Receipt: lb.Receipt, DelayMs: i64(-1)}, "delay_ms"},
		{"delay too long", engine.NackInput{Receipt: lb.Receipt, DelayMs: i64(engine.MaxQueueDelay.Milliseconds() + 1)}, "delay_ms"},
		{"long error", engine.NackInput{Receipt: lb.Receipt, Error: sptr(strings.Repeat("e", engine.MaxQueueErrorLen+1))}, "error"},
	} {
		_, err := v.e.Nack(context.Background(), "q2", tc.in)
		wantErr(t, err, engine.ErrInvalid, tc.want)
	}
	v.wantStats(t, "q2", 0, 1, 0, 0)
	v.checkQueue(t, "q")
	v.checkQueue(t, "q2")
}

// ---- dead letters and redrive ----

func TestQueueDeadLetters(t *testing.T) {
	v := newEnv(t)
	// By nack: the last error stays with it.
	p := v.publish(t, "q", engine.PublishInput{Payload: raw(`{"job": 7}`), MaxAttempts: iptr(3), BackoffMs: i64(1)})[0]
	l := v.lease(t, "q", 1, 30000)[0]
	v.nack(t, "q", engine.NackInput{Receipt: l.Receipt, DelayMs: i64(0), Error: sptr("boom 1")})
	l = v.lease(t, "q", 1, 30000)[0]
	v.nack(t, "q", engine.NackInput{Receipt: l.Receipt, DelayMs: i64(0), Error: sptr("boom 2")})
	l = v.lease(t, "q", 1, 30000)[0]
	h := v.head()
	r := v.nack(t, "q", engine.NackInput{Receipt: l.Receipt, DelayMs: i64(0)})
	if r.State != "dead" || r.AvailableAt != nil || r.Attempt != 3 {
		t.Fatalf("last nack = %+v", r)
	}
	evs := v.eventsAfter(t, h)
	if len(evs) != 1 || evs[0].Type != engine.QueueDead || evs[0].str("error") != "boom 2" || evs[0].attempt() != 3 ||
		evs[0].str("dead_at") != evs[0].Time || evs[0].str("reason") != "nack" {
		t.Fatalf("dead event %+v", evs)
	}
	dead := v.allDead(t, "q", 0)
	if len(dead) != 1 || dead[0].ID != p.ID || string(dead[0].Payload) != `{"job":7}` || dead[0].Attempt != 3 ||
		dead[0].Error != "boom 2" || dead[0].DeadAt != evs[0].Time {
		t.Fatalf("dead letters %+v", dead)
	}
	if ls := v.lease(t, "q", 1, 1000); len(ls) != 0 {
		t.Fatalf("leased a dead letter: %+v", ls)
	}
	v.wantStats(t, "q", 0, 0, 0, 1)
	v.checkQueue(t, "q")

	// By lease expiry.
	h = v.head()
	p2 := v.publish(t, "q", engine.PublishInput{Payload: raw(`"slow"`), MaxAttempts: iptr(1)})[0]
	v.lease(t, "q", 1, 20)
	waitFor(t, 3*time.Second, "expired lease dead", func() bool { return v.stats(t, "q").Dead == 2 })
	dead = v.allDead(t, "q", 0)
	if len(dead) != 2 || dead[1].ID != p2.ID || dead[1].Error != "lease expired" || dead[1].Attempt != 1 {
		t.Fatalf("dead letters %+v", dead)
	}
	evs = v.eventsAfter(t, h)
	if !slices.Equal(evTypes(evs), []string{"queue.published", "queue.leased", "queue.dead"}) || evs[2].str("reason") != "lease_expired" {
		t.Fatalf("events %+v", evs)
	}
	v.wantStats(t, "q", 0, 0, 0, 2)
	v.checkQueue(t, "q")
}

func TestQueueDeadPagingAndRedrive(t *testing.T) {
	v := newEnv(t)
	ins := make([]engine.PublishInput, 5)
	for i := range ins {
		ins[i] = engine.PublishInput{Payload: raw(fmt.Sprint(i)), MaxAttempts: iptr(1)}
	}
	ps := v.publish(t, "q", ins...)
	ls := v.lease(t, "q", 5, 30000)
	for i, l := range ls {
		v.nack(t, "q", engine.NackInput{Receipt: l.Receipt, Error: sptr(fmt.Sprint("e", i))})
	}
	var got []engine.DeadMessage
	cursor := ""
	for page := 0; ; page++ {
		d, next, err := v.e.ListDead("q", 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		if page < 2 && (len(d) != 2 || next == "") || page == 2 && (len(d) != 1 || next != "") {
			t.Fatalf("page %d: %d letters, next %q", page, len(d), next)
		}
		got = append(got, d...)
		if next == "" {
			break
		}
		cursor = next
	}
	for i, d := range got {
		if d.ID != ps[i].ID || string(d.Payload) != fmt.Sprint(i) || d.Error != fmt.Sprint("e", i) || d.Attempt != 1 {
			t.Errorf("dead[%d] = %+v", i, d)
		}
	}
	_, _, err := v.e.ListDead("q", 2, "garbage!")
	wantErr(t, err, engine.ErrInvalid, "cursor")
	_, qc, err := v.e.ListQueues(1, "")
	if err != nil {
		t.Fatal(err)
	}
	if qc == "" {
		v.publish(t, "z", pub(`1`)) // a second topic for a ListQueues cursor
		_, qc, _ = v.e.ListQueues(1, "")
	}
	_, _, err = v.e.ListDead("q", 2, qc)
	wantErr(t, err, engine.ErrInvalid, "cursor")
	_, _, err = v.e.ListDead("q", engine.MaxListLimit+1, "")
	wantErr(t, err, engine.ErrInvalid, "limit")
	v.wantStats(t, "q", 0, 0, 0, 5)
	v.checkQueue(t, "q")

	h := v.head()
	n, err := v.e.Redrive(context.Background(), "q")
	if err != nil || n != 5 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	evs := v.eventsAfter(t, h)
	if len(evs) != 5 {
		t.Fatalf("redrive events %v", evTypes(evs))
	}
	for i, e := range evs {
		if e.Type != engine.QueueRedriven || e.str("id") != ps[i].ID || e.attempt() != 0 || e.str("available_at") != e.Time {
			t.Errorf("redrive event %d: %+v", i, e)
		}
	}
	v.wantStats(t, "q", 5, 0, 0, 0)
	v.checkQueue(t, "q")
	if d := v.allDead(t, "q", 0); len(d) != 0 {
		t.Fatalf("dead after redrive: %+v", d)
	}
	again := v.lease(t, "q", 10, 30000)
	if !slices.Equal(leasedIDs(again), pubIDs(ps)) {
		t.Fatalf("after redrive leased %v, want %v", leasedIDs(again), pubIDs(ps))
	}
	for i, l := range again {
		if l.Attempt != 1 || string(l.Payload) != fmt.Sprint(i) {
			t.Errorf("redriven %d leased %+v", i, l)
		}
	}
	h = v.head()
	if n, err := v.e.Redrive(context.Background(), "q"); err != nil || n != 0 || v.head() != h {
		t.Fatalf("empty redrive = %d, %v, %d events", n, err, v.head()-h)
	}
	if _, err := v.e.Redrive(context.Background(), "bad topic"); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("Redrive(bad topic) = %v", err)
	}
	v.checkQueue(t, "q")
}

// TestQueueRedriveChunks kills more messages than one timer or redrive
// command handles.
func TestQueueRedriveChunks(t *testing.T) {
	v := newEnv(t)
	const n = 1001
	ins := make([]engine.PublishInput, n)
	for i := range ins {
		ins[i] = engine.PublishInput{Payload: raw(fmt.Sprint(i)), MaxAttempts: iptr(1)}
	}
	v.publish(t, "q", ins[:1000]...)
	v.publish(t, "q", ins[1000:]...)
	if got := len(v.lease(t, "q", 1000, 20)) + len(v.lease(t, "q", 1000, 20)); got != n {
		t.Fatalf("leased %d", got)
	}
	waitFor(t, 5*time.Second, "all dead", func() bool { return v.stats(t, "q").Dead == n })
	v.checkQueue(t, "q")
	if d := v.allDead(t, "q", 1000); len(d) != n {
		t.Fatalf("%d dead letters", len(d))
	}
	got, err := v.e.Redrive(context.Background(), "q")
	if err != nil || got != n {
		t.Fatalf("Redrive = %d, %v", got, err)
	}
	v.wantStats(t, "q", n, 0, 0, 0)
	v.checkQueue(t, "q")
}

// ---- FIFO groups ----

func TestQueueGroups(t *testing.T) {
	v := newEnv(t)
	g := func(group, payload string) engine.PublishInput {
		return engine.PublishInput{Payload: raw(payload), Group: sptr(group)}
	}
	bIn := g("g1", `"b"`)
	bIn.MaxAttempts = iptr(1)
	ps := v.publish(t, "q", g("g1", `"a"`), bIn, g("g1", `"c"`), g("g2", `"x"`), pub(`"p"`), g("g2", `"y"`))
	a, b, c, x, p, y := ps[0], ps[1], ps[2], ps[3], ps[4], ps[5]
	v.wantStats(t, "q", 6, 0, 0, 0) // waiting behind a head counts as ready
	v.checkQueue(t, "q")

	ls := v.lease(t, "q", 10, 30000)
	if !slices.Equal(leasedIDs(ls), []string{a.ID, x.ID, p.ID}) {
		t.Fatalf("leased %v, want the heads a, x and p", leasedIDs(ls))
	}
	la, lx := ls[0], ls[1]
	if more := v.lease(t, "q", 10, 30000); len(more) != 0 {
		t.Fatalf("leased %v behind leased heads", leasedIDs(more))
	}
	v.wantStats(t, "q", 3, 3, 0, 0)
	v.checkQueue(t, "q")

	// Blocked groups do not block other messages.
	q := v.publish(t, "q", pub(`"q"`))[0]
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 1 || ls[0].ID != q.ID {
		t.Fatalf("leased %v, want q", leasedIDs(ls))
	}

	// Ack the head: the next is leasable.
	v.ack(t, "q", la.Receipt)
	lb := v.lease(t, "q", 10, 30000)
	if len(lb) != 1 || lb[0].ID != b.ID {
		t.Fatalf("after ack of a leased %v, want b", leasedIDs(lb))
	}
	// The head nacked stays the head.
	v.nack(t, "q", engine.NackInput{Receipt: lx.Receipt, DelayMs: i64(0)})
	lx2 := v.lease(t, "q", 10, 30000)
	if len(lx2) != 1 || lx2[0].ID != x.ID || lx2[0].Attempt != 2 {
		t.Fatalf("after nack of x leased %+v, want x again", lx2)
	}
	// The head dies: the next becomes the head.
	if r := v.nack(t, "q", engine.NackInput{Receipt: lb[0].Receipt, Error: sptr("bad b")}); r.State != "dead" {
		t.Fatalf("nack of b = %+v", r)
	}
	lc := v.lease(t, "q", 10, 30000)
	if len(lc) != 1 || lc[0].ID != c.ID {
		t.Fatalf("after b died leased %v, want c", leasedIDs(lc))
	}
	v.checkQueue(t, "q")

	// Redrive puts b at the end of its group, behind the leased c.
	if n, err := v.e.Redrive(context.Background(), "q"); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 0 {
		t.Fatalf("leased %v while c holds g1", leasedIDs(ls))
	}
	v.checkQueue(t, "q")
	v.ack(t, "q", lc[0].Receipt)
	lb2 := v.lease(t, "q", 10, 30000)
	if len(lb2) != 1 || lb2[0].ID != b.ID || lb2[0].Attempt != 1 {
		t.Fatalf("after ack of c leased %+v, want b at attempt 1", lb2)
	}
	v.ack(t, "q", lb2[0].Receipt)
	// g1 is empty now: a new message is its head at once.
	d := v.publish(t, "q", g("g1", `"d"`))[0]
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 1 || ls[0].ID != d.ID {
		t.Fatalf("leased %v, want d", leasedIDs(ls))
	}
	// y follows x.
	v.ack(t, "q", lx2[0].Receipt)
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 1 || ls[0].ID != y.ID {
		t.Fatalf("leased %v, want y", leasedIDs(ls))
	}
	v.checkQueue(t, "q")
}

// TestQueueGroupRedriveOrder: a group whose messages all died comes back in
// the order they died.
func TestQueueGroupRedriveOrder(t *testing.T) {
	v := newEnv(t)
	in := engine.PublishInput{Payload: raw(`1`), Group: sptr("g"), MaxAttempts: iptr(1)}
	ps := v.publish(t, "q", in, in, in)
	for _, p := range ps {
		l := v.lease(t, "q", 10, 30000)
		if len(l) != 1 || l[0].ID != p.ID {
			t.Fatalf("leased %v, want %s", leasedIDs(l), p.ID)
		}
		v.nack(t, "q", engine.NackInput{Receipt: l[0].Receipt})
	}
	v.wantStats(t, "q", 0, 0, 0, 3)
	if n, err := v.e.Redrive(context.Background(), "q"); err != nil || n != 3 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	v.wantStats(t, "q", 3, 0, 0, 0)
	v.checkQueue(t, "q")
	for _, p := range ps {
		l := v.lease(t, "q", 10, 30000)
		if len(l) != 1 || l[0].ID != p.ID || l[0].Attempt != 1 {
			t.Fatalf("leased %+v, want %s alone", l, p.ID)
		}
		v.ack(t, "q", l[0].Receipt)
	}
	v.checkQueue(t, "q")
}

func TestQueueGroupTimers(t *testing.T) {
	v := newEnv(t)
	g := func(group, payload string, delayMs, backoffMs int64, maxAttempts int) engine.PublishInput {
		return engine.PublishInput{Payload: raw(payload), Group: sptr(group), DelayMs: &delayMs, BackoffMs: &backoffMs, MaxAttempts: &maxAttempts}
	}
	// A delayed head holds its group back; the others go on.
	ps := v.publish(t, "q", g("d", `"d1"`, 100, 0, 5), g("d", `"d2"`, 0, 0, 5), pub(`"free"`))
	if ls := v.lease(t, "q", 10, 30000); len(ls) != 1 || ls[0].ID != ps[2].ID {
		t.Fatalf("leased %v, want only the free message", leasedIDs(ls))
	}
	v.wantStats(t, "q", 1, 1, 1, 0)
	v.checkQueue(t, "q")
	l := v.leaseOne(t, "q", 30000)
	if l.ID != ps[0].ID || time.Now().Before(parseTime(t, ps[0].AvailableAt)) {
		t.Fatalf("leased %+v, want d1 once available", l)
	}
	// Its lease expires: it comes back, before d2.
	e := v.publish(t, "q", g("e", `"e1"`, 0, 0, 2), g("e", `"e2"`, 0, 0, 5))
	l1 := v.lease(t, "q", 1, 20)[0]
	if l1.ID != e[0].ID {
		t.Fatalf("leased %v, want e1", l1.ID)
	}
	l2 := v.leaseOne(t, "q", 20)
	if l2.ID != e[0].ID || l2.Attempt != 2 {
		t.Fatalf("after expiry leased %+v, want e1 again", l2)
	}
	// Its second lease expires: it dies and e2 becomes the head.
	l3 := v.leaseOne(t, "q", 30000)
	if l3.ID != e[1].ID || l3.Attempt != 1 {
		t.Fatalf("after e1 died leased %+v, want e2", l3)
	}
	if dead := v.allDead(t, "q", 0); len(dead) != 1 || dead[0].ID != e[0].ID || dead[0].Error != "lease expired" {
		t.Fatalf("dead %+v", dead)
	}
	v.checkQueue(t, "q")
}

// TestQueueTimerWakeup leases one message over and over with a 1 ms
// visibility: each expiry must reach the timer, also when the lease commits
// while the timer loop is between processing and going back to sleep (a
// missed wake-up leaves the lease unexpired until some other deadline).
func TestQueueTimerWakeup(t *testing.T) {
	v := newEnv(t)
	v.publish(t, "q", engine.PublishInput{Payload: raw(`1`), BackoffMs: i64(0), MaxAttempts: iptr(engine.MaxAttemptsLimit)})
	for i := range 200 {
		if ls := v.leaseWait(t, "q", 1, 1, 3000); len(ls) != 1 || ls[0].Attempt != i+1 {
			t.Fatalf("lease %d: %+v within 3 s (stats %+v)", i+1, ls, v.stats(t, "q"))
		}
	}
	v.checkQueue(t, "q")
}

// ---- long-poll ----

func TestQueueLongPoll(t *testing.T) {
	v := newEnv(t)
	type result struct {
		ls  []engine.Leased
		err error
		at  time.Duration
	}
	start := func(ctx context.Context, topic string, waitMs int64) <-chan result {
		ch := make(chan result, 1)
		t0 := time.Now()
		go func() {
			ls, err := v.e.Lease(ctx, topic, engine.LeaseInput{Max: iptr(10), VisibilityMs: i64(30000), WaitMs: &waitMs})
			ch <- result{ls, err, time.Since(t0)}
		}()
		return ch
	}
	// Parking the poller first makes the wake-up what is tested; the
	// assertions hold either way.
	park := func() { time.Sleep(30 * time.Millisecond) }

	t.Run("publish wakes", func(t *testing.T) {
		ch := start(context.Background(), "pub", 10000)
		park()
		p := v.publish(t, "pub", pub(`1`))[0]
		r := <-ch
		if r.err != nil || len(r.ls) != 1 || r.ls[0].ID != p.ID || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("lease expiry wakes", func(t *testing.T) {
		v.publish(t, "exp", engine.PublishInput{Payload: raw(`1`), BackoffMs: i64(0)})
		l := v.lease(t, "exp", 1, 50)[0]
		r := <-start(context.Background(), "exp", 10000)
		if r.err != nil || len(r.ls) != 1 || r.ls[0].ID != l.ID || r.ls[0].Attempt != 2 || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("nack wakes", func(t *testing.T) {
		v.publish(t, "nack", pub(`1`))
		l := v.lease(t, "nack", 1, 30000)[0]
		ch := start(context.Background(), "nack", 10000)
		park()
		v.nack(t, "nack", engine.NackInput{Receipt: l.Receipt, DelayMs: i64(0)})
		r := <-ch
		if r.err != nil || len(r.ls) != 1 || r.ls[0].ID != l.ID || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("group ack wakes", func(t *testing.T) {
		ps := v.publish(t, "grp", engine.PublishInput{Payload: raw(`1`), Group: sptr("g")}, engine.PublishInput{Payload: raw(`2`), Group: sptr("g")})
		l := v.lease(t, "grp", 10, 30000)
		ch := start(context.Background(), "grp", 10000)
		park()
		v.ack(t, "grp", l[0].Receipt)
		r := <-ch
		if r.err != nil || len(r.ls) != 1 || r.ls[0].ID != ps[1].ID || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r := <-start(context.Background(), "empty", 100)
		if r.err != nil || r.ls == nil || len(r.ls) != 0 || r.at < 100*time.Millisecond || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("other topic does not wake", func(t *testing.T) {
		ch := start(context.Background(), "quiet", 150)
		park()
		v.publish(t, "loud", pub(`1`))
		r := <-ch
		if r.err != nil || len(r.ls) != 0 || r.at < 150*time.Millisecond {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("context cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := start(ctx, "empty", 10000)
		park()
		cancel()
		r := <-ch
		if r.err != nil || len(r.ls) != 0 || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
	t.Run("engine close", func(t *testing.T) {
		ch := start(context.Background(), "empty", 10000)
		park()
		v.e.Close()
		r := <-ch
		if len(r.ls) != 0 || r.at > 5*time.Second {
			t.Fatalf("long-poll = %+v", r)
		}
	})
}

// ---- restart ----

func TestQueueRestart(t *testing.T) {
	v := newEnvOpts(t, envOpts{fs: vfs.NewMem()})
	p1 := v.publish(t, "q", engine.PublishInput{Payload: raw(`"leased"`), BackoffMs: i64(0)})[0]
	l1 := v.lease(t, "q", 1, 100)[0]
	p2 := v.publish(t, "q", engine.PublishInput{Payload: raw(`"delayed"`), DelayMs: i64(400)})[0]
	p3 := v.publish(t, "q", engine.PublishInput{Payload: raw(`"ready"`), MaxAttempts: iptr(2)})[0]
	v.wantStats(t, "q", 1, 1, 1, 0)
	v.checkQueue(t, "q")

	v.close(t)
	sleepUntil(parseTime(t, l1.LeaseExpiresAt).Add(5 * time.Millisecond)) // the lease expires while down
	v = v.restart(t)

	// The timer finds the expired lease at its first look.
	waitFor(t, 3*time.Second, "expired lease back", func() bool { return v.stats(t, "q").Leased == 0 })
	v.checkQueue(t, "q")
	if r := v.ack(t, "q", l1.Receipt); r.Acked != 0 {
		t.Fatalf("a receipt from before the restart acked: %+v", r)
	}
	got := map[string]engine.Leased{}
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		for _, l := range v.leaseWait(t, "q", 10, 30000, 1000) {
			got[l.ID] = l
		}
	}
	if got[p1.ID].Attempt != 2 || got[p2.ID].Attempt != 1 || got[p3.ID].Attempt != 1 {
		t.Fatalf("after restart leased %+v", got)
	}
	if leasedAt := parseTime(t, got[p2.ID].LeaseExpiresAt).Add(-30 * time.Second); leasedAt.Before(parseTime(t, p2.AvailableAt)) {
		t.Fatalf("delayed message leased at %v, before %s", leasedAt, p2.AvailableAt)
	}
	v.ack(t, "q", got[p1.ID].Receipt, got[p2.ID].Receipt)
	v.nack(t, "q", engine.NackInput{Receipt: got[p3.ID].Receipt, DelayMs: i64(0)})

	// A lease still running at the restart expires after it: p3, on its
	// last attempt, dies.
	if l := v.lease(t, "q", 1, 300); len(l) != 1 || l[0].ID != p3.ID || l[0].Attempt != 2 {
		t.Fatalf("leased %+v, want p3 at attempt 2", l)
	}
	v = v.restart(t)
	waitFor(t, 3*time.Second, "p3 dead", func() bool { return v.stats(t, "q").Dead == 1 })
	v.checkQueue(t, "q")
	if d := v.allDead(t, "q", 0); len(d) != 1 || d[0].ID != p3.ID || d[0].Attempt != 2 {
		t.Fatalf("dead after restart: %+v", d)
	}
	v.wantStats(t, "q", 0, 0, 0, 1)

	// Seqs go on after restarts: the redrive's event follows the death.
	if n, err := v.e.Redrive(context.Background(), "q"); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	evs := v.eventsAfter(t, v.head()-2)
	if !slices.Equal(evTypes(evs), []string{"queue.dead", "queue.redriven"}) || evs[1].str("id") != p3.ID {
		t.Fatalf("last events %+v", evs)
	}
	v.checkQueue(t, "q")
}

// ---- listing ----

func TestQueueListQueues(t *testing.T) {
	v := newEnv(t)
	v.publish(t, "c", pub(`1`))
	v.publish(t, "a", pub(`1`), engine.PublishInput{Payload: raw(`2`), DelayMs: i64(60000)})
	v.publish(t, "b", pub(`1`))
	page, next, err := v.e.ListQueues(2, "")
	if err != nil || len(page) != 2 || page[0].Topic != "a" || page[1].Topic != "b" || next == "" {
		t.Fatalf("ListQueues = %+v, %q, %v", page, next, err)
	}
	if page[0] != (engine.QueueStats{Topic: "a", Ready: 1, Delayed: 1}) {
		t.Fatalf("a = %+v", page[0])
	}
	page, next, err = v.e.ListQueues(2, next)
	if err != nil || len(page) != 1 || page[0].Topic != "c" || next != "" {
		t.Fatalf("ListQueues page 2 = %+v, %q, %v", page, next, err)
	}
	// A topic with nothing left is not listed.
	l := v.lease(t, "b", 1, 30000)[0]
	v.ack(t, "b", l.Receipt)
	page, _, _ = v.e.ListQueues(0, "")
	if len(page) != 2 || page[0].Topic != "a" || page[1].Topic != "c" {
		t.Fatalf("after emptying b: %+v", page)
	}
	if _, _, err := v.e.ListQueues(0, "bogus"); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := v.e.QueueStatsOf("bad topic"); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("QueueStatsOf(bad topic): %v", err)
	}
	v.wantStats(t, "never-used", 0, 0, 0, 0)
	for _, topic := range []string{"a", "b", "c"} {
		v.checkQueue(t, topic)
	}
}

// ---- concurrency ----

// TestQueueConcurrent: 8 publishers and 8 consumers; every message is
// leased and acked exactly once, no message is held twice at once, a FIFO
// group is never held twice at once and is consumed in publish order.
func TestQueueConcurrent(t *testing.T) {
	v := newEnv(t)
	const publishers, perPublisher, consumers = 8, 200, 8
	const total = publishers * perPublisher
	type body struct {
		P, N  int
		Group string
	}
	ctx := context.Background()

	var mu sync.Mutex
	published := map[string]body{}
	groupOrder := map[string][]string{} // publish order
	held := map[string]bool{}
	heldGroup := map[string]int{}
	leases := map[string]int{}
	acks := map[string]int{}
	consumed := map[string][]string{} // lease order per group
	var acked atomic.Int64
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for n := range perPublisher {
				b := body{P: p, N: n}
				in := engine.PublishInput{}
				if p%2 == 0 {
					b.Group = fmt.Sprint("g", p)
					in.Group = &b.Group
				}
				in.Payload, _ = json.Marshal(b)
				out, err := v.e.Publish(ctx, "conc", []engine.PublishInput{in})
				if err != nil {
					report(err)
					return
				}
				mu.Lock()
				published[out[0].ID] = b
				if b.Group != "" {
					groupOrder[b.Group] = append(groupOrder[b.Group], out[0].ID)
				}
				mu.Unlock()
			}
		})
	}
	for range consumers {
		wg.Go(func() {
			for acked.Load() < total {
				if time.Now().After(deadline) {
					report(errors.New("consumers: not done within 15 s"))
					return
				}
				ls, err := v.e.Lease(ctx, "conc", engine.LeaseInput{Max: iptr(10), VisibilityMs: i64(60000), WaitMs: i64(50)})
				if err != nil {
					report(err)
					return
				}
				if len(ls) == 0 {
					continue
				}
				receipts := make([]string, len(ls))
				mu.Lock()
				for i, l := range ls {
					var b body
					if err := json.Unmarshal(l.Payload, &b); err != nil {
						report(err)
					}
					if held[l.ID] {
						report(fmt.Errorf("message %s held twice at once", l.ID))
					}
					held[l.ID] = true
					leases[l.ID]++
					if b.Group != "" {
						if heldGroup[b.Group]++; heldGroup[b.Group] > 1 {
							report(fmt.Errorf("group %s held twice at once", b.Group))
						}
						consumed[b.Group] = append(consumed[b.Group], l.ID)
					}
					receipts[i] = l.Receipt
				}
				// Let go before acking: the next of a group is leasable
				// once the ack commits.
				for _, l := range ls {
					var b body
					_ = json.Unmarshal(l.Payload, &b)
					delete(held, l.ID)
					if b.Group != "" {
						heldGroup[b.Group]--
					}
				}
				mu.Unlock()
				r, err := v.e.Ack(ctx, "conc", receipts)
				if err != nil {
					report(err)
					return
				}
				if r.Acked != len(ls) || len(r.Stale) != 0 {
					report(fmt.Errorf("ack = %+v for %d receipts", r, len(ls)))
				}
				mu.Lock()
				for _, l := range ls {
					acks[l.ID]++
				}
				mu.Unlock()
				acked.Add(int64(r.Acked))
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(published) != total || len(acks) != total {
		t.Fatalf("%d published, %d acked, want %d", len(published), len(acks), total)
	}
	for id := range published {
		if leases[id] != 1 || acks[id] != 1 {
			t.Errorf("message %s leased %d and acked %d times", id, leases[id], acks[id])
		}
	}
	for g, want := range groupOrder {
		if !slices.Equal(consumed[g], want) {
			t.Errorf("group %s consumed out of publish order", g)
		}
	}
	v.wantStats(t, "conc", 0, 0, 0, 0)
	v.checkQueue(t, "conc")
}

// TestQueueConcurrentExpiry: consumers that are sometimes slower than the
// visibility. An expired lease's receipt is stale, so every message is
// acked exactly once, and the leases of one message never overlap.
func TestQueueConcurrentExpiry(t *testing.T) {
	v := newEnv(t)
	const publishers, perPublisher, consumers = 4, 50, 4
	const total = publishers * perPublisher
	const vis = 20 * time.Millisecond
	ctx := context.Background()

	var mu sync.Mutex
	type span struct{ from, to time.Time }
	spans := map[string][]span{}
	acks := map[string]int{}
	var acked, stale atomic.Int64
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range perPublisher {
				in := engine.PublishInput{Payload: raw(`{}`), BackoffMs: i64(0), MaxAttempts: iptr(100)}
				if _, err := v.e.Publish(ctx, "exp", []engine.PublishInput{in}); err != nil {
					report(err)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for c := range consumers {
		wg.Go(func() {
			for n := 0; acked.Load() < total; n++ {
				if time.Now().After(deadline) {
					report(errors.New("consumers: not done within 10 s"))
					return
				}
				ls, err := v.e.Lease(ctx, "exp", engine.LeaseInput{Max: iptr(5), VisibilityMs: i64(vis.Milliseconds()), WaitMs: i64(50)})
				if err != nil {
					report(err)
					return
				}
				if len(ls) == 0 {
					continue
				}
				receipts := make([]string, len(ls))
				mu.Lock()
				for i, l := range ls {
					to, err := time.Parse(time.RFC3339Nano, l.LeaseExpiresAt)
					if err != nil {
						report(err)
					}
					spans[l.ID] = append(spans[l.ID], span{to.Add(-vis), to})
					receipts[i] = l.Receipt
				}
				mu.Unlock()
				slow := (n+c)%4 == 0
				if slow { // slow work: the leases expire first
					sleepUntil(time.Now().Add(vis + 10*time.Millisecond))
				}
				r, err := v.e.Ack(ctx, "exp", receipts)
				if err != nil {
					report(err)
					return
				}
				if slow && r.Acked != 0 {
					report(fmt.Errorf("acked %d expired leases", r.Acked))
				}
				mu.Lock()
				for i, rc := range receipts {
					if !slices.Contains(r.Stale, rc) {
						acks[ls[i].ID]++
					}
				}
				mu.Unlock()
				acked.Add(int64(r.Acked))
				stale.Add(int64(len(r.Stale)))
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(acks) != total || stale.Load() == 0 {
		t.Fatalf("%d messages acked, %d stale receipts; want %d and some", len(acks), stale.Load(), total)
	}
	for id, n := range acks {
		if n != 1 {
			t.Errorf("message %s acked %d times", id, n)
		}
		s := spans[id]
		for i := 1; i < len(s); i++ {
			if s[i].from.Before(s[i-1].to) {
				t.Errorf("message %s: lease %d from %v overlaps the previous one until %v", id, i+1, s[i].from, s[i-1].to)
			}
		}
	}
	v.wantStats(t, "exp", 0, 0, 0, 0)
	v.checkQueue(t, "exp")
}

// TestQueuePublishOneFieldNames: one message's errors name its fields as
// the top-level fields of the body they are.
func TestQueuePublishOneFieldNames(t *testing.T) {
	v := newEnv(t)
	_, err := v.e.PublishOne(context.Background(), "q", engine.PublishInput{Payload: json.RawMessage(`1`), DelayMs: i64(-1)})
	wantErr(t, err, engine.ErrInvalid, "delay_ms: -1 out of range")
	if strings.Contains(err.Error(), "message") {
		t.Errorf("error %q names a messages field", err)
	}
	_, err = v.e.PublishOne(context.Background(), "q", engine.PublishInput{})
	wantErr(t, err, engine.ErrInvalid, "payload: required")
	p, err := v.e.PublishOne(context.Background(), "q", engine.PublishInput{Payload: json.RawMessage(`1`), DedupeID: strp("d")})
	if err != nil || p.Duplicate {
		t.Fatalf("first publish: %+v, %v", p, err)
	}
	p2, err := v.e.PublishOne(context.Background(), "q", engine.PublishInput{Payload: json.RawMessage(`2`), DedupeID: strp("d")})
	if err != nil || !p2.Duplicate || p2.ID != p.ID {
		t.Fatalf("duplicate publish: %+v, %v", p2, err)
	}
}
