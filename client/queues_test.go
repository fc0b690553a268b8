package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// stats fetches a topic's counts and compares them with want (ready,
// leased, delayed, dead).
func wantStats(t *testing.T, c *Client, topic string, want [4]int64) {
	t.Helper()
	st, err := c.QueueStats(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := [4]int64{st.Ready, st.Leased, st.Delayed, st.Dead}; got != want || st.Topic != topic {
		t.Fatalf("stats of %s: %+v, want ready/leased/delayed/dead %v", topic, st, want)
	}
}

func dur(d time.Duration) *time.Duration { return &d }

func TestQueuePublishLeaseAck(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	before := time.Now()
	p1, err := c.Publish(ctx, "jobs", PublishMessage{Payload: map[string]any{"n": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if p1.ID == "" || p1.Seq == 0 || p1.Duplicate || p1.AvailableAt.Before(before.Add(-time.Second)) || p1.AvailableAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("publish: %+v", p1)
	}
	// A RawMessage goes as it is; nil is null.
	p2, err := c.Publish(ctx, "jobs", PublishMessage{Payload: json.RawMessage(` "two" `)})
	if err != nil {
		t.Fatal(err)
	}
	p3, err := c.Publish(ctx, "jobs", PublishMessage{})
	if err != nil {
		t.Fatal(err)
	}
	if !(p1.Seq < p2.Seq && p2.Seq < p3.Seq) {
		t.Fatalf("seqs %d %d %d", p1.Seq, p2.Seq, p3.Seq)
	}
	wantStats(t, c, "jobs", [4]int64{3, 0, 0, 0})

	// Lease in publish order.
	msgs, err := c.Lease(ctx, "jobs", LeaseOptions{Max: 10, Visibility: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("leased %d: %+v", len(msgs), msgs)
	}
	for i, want := range []struct {
		id, payload string
	}{{p1.ID, `{"n":1}`}, {p2.ID, `"two"`}, {p3.ID, `null`}} {
		m := msgs[i]
		if m.ID != want.id || string(m.Payload) != want.payload || m.Attempt != 1 || m.Receipt == "" ||
			m.PublishedAt.IsZero() || m.LeaseExpiresAt.Sub(m.PublishedAt) < 50*time.Second {
			t.Fatalf("leased[%d]: %+v, want id %s payload %s", i, m, want.id, want.payload)
		}
	}
	wantStats(t, c, "jobs", [4]int64{0, 3, 0, 0})
	// Nothing left: an empty slice, no error.
	if more, err := c.Lease(ctx, "jobs", LeaseOptions{}); err != nil || more == nil || len(more) != 0 {
		t.Fatalf("lease of an empty queue: %#v, %v", more, err)
	}

	// Ack two; acking again, or an unknown receipt, is stale.
	res, err := c.Ack(ctx, "jobs", msgs[0].Receipt, msgs[1].Receipt)
	if err != nil || res.Acked != 2 || len(res.Stale) != 0 {
		t.Fatalf("ack: %+v, %v", res, err)
	}
	res, err = c.Ack(ctx, "jobs", msgs[0].Receipt, msgs[2].Receipt)
	if err != nil || res.Acked != 1 || !slices.Equal(res.Stale, []string{msgs[0].Receipt}) {
		t.Fatalf("ack again: %+v, %v", res, err)
	}
	// A receipt is bound to its topic.
	if _, err := c.Publish(ctx, "other", PublishMessage{Payload: 1}); err != nil {
		t.Fatal(err)
	}
	om, err := c.Lease(ctx, "other", LeaseOptions{})
	if err != nil || len(om) != 1 {
		t.Fatalf("lease other: %+v, %v", om, err)
	}
	if res, err := c.Ack(ctx, "jobs", om[0].Receipt); err != nil || res.Acked != 0 || len(res.Stale) != 1 {
		t.Fatalf("ack on another topic: %+v, %v", res, err)
	}
	wantStats(t, c, "jobs", [4]int64{0, 0, 0, 0})
	wantStats(t, c, "other", [4]int64{0, 1, 0, 0})
	// A topic never used: zeros.
	wantStats(t, c, "never", [4]int64{0, 0, 0, 0})
}

func TestQueueDedupe(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	first, err := c.Publish(ctx, "mail", PublishMessage{Payload: "hello", DedupeID: "order-1"})
	if err != nil || first.Duplicate {
		t.Fatalf("first: %+v, %v", first, err)
	}
	// The same dedupe id: 200, the first message, nothing published.
	again, err := c.Publish(ctx, "mail", PublishMessage{Payload: "other payload", DedupeID: "order-1"})
	if err != nil || !again.Duplicate || again.ID != first.ID || again.Seq != first.Seq || !again.AvailableAt.Equal(first.AvailableAt) {
		t.Fatalf("again: %+v (first %+v), %v", again, first, err)
	}
	// Dedupe ids are per topic.
	if p, err := c.Publish(ctx, "mail-2", PublishMessage{Payload: "hello", DedupeID: "order-1"}); err != nil || p.Duplicate {
		t.Fatalf("other topic: %+v, %v", p, err)
	}
	wantStats(t, c, "mail", [4]int64{1, 0, 0, 0})

	// A batch of new messages, in order.
	batch, err := c.PublishBatch(ctx, "mail", []PublishMessage{{Payload: 1, DedupeID: "b1"}, {Payload: 2, DedupeID: "b2"}, {Payload: 3}})
	if err != nil || len(batch) != 3 {
		t.Fatalf("batch: %+v, %v", batch, err)
	}
	for i, p := range batch {
		if p.Duplicate || (i > 0 && p.Seq <= batch[i-1].Seq) {
			t.Fatalf("batch[%d]: %+v", i, p)
		}
	}
	// Every message a duplicate: 200, all marked.
	dups, err := c.PublishBatch(ctx, "mail", []PublishMessage{{Payload: 2, DedupeID: "b2"}, {Payload: 1, DedupeID: "order-1"}})
	if err != nil || len(dups) != 2 || !dups[0].Duplicate || !dups[1].Duplicate || dups[0].ID != batch[1].ID || dups[1].ID != first.ID {
		t.Fatalf("all duplicates: %+v, %v", dups, err)
	}
	// Some duplicates: 201, each duplicate marked.
	mixed, err := c.PublishBatch(ctx, "mail", []PublishMessage{{Payload: 1, DedupeID: "b1"}, {Payload: 4, DedupeID: "b4"}})
	if err != nil || len(mixed) != 2 || mixed[0].ID != batch[0].ID || mixed[1].ID == batch[0].ID || !mixed[0].Duplicate || mixed[1].Duplicate {
		t.Fatalf("mixed: %+v, %v", mixed, err)
	}
	wantStats(t, c, "mail", [4]int64{5, 0, 0, 0})
}

func TestQueueStaleReceipts(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	if _, err := c.Publish(ctx, "t", PublishMessage{Payload: "x", Backoff: dur(0)}); err != nil {
		t.Fatal(err)
	}
	// A short lease expires; the message is ready again (backoff 0) and its
	// next lease has another receipt.
	first, err := c.Lease(ctx, "t", LeaseOptions{Visibility: 50 * time.Millisecond})
	if err != nil || len(first) != 1 {
		t.Fatalf("lease: %+v, %v", first, err)
	}
	second, err := c.Lease(ctx, "t", LeaseOptions{Wait: 5 * time.Second})
	if err != nil || len(second) != 1 || second[0].Attempt != 2 || second[0].Receipt == first[0].Receipt {
		t.Fatalf("lease after expiry: %+v, %v", second, err)
	}
	// The first receipt is stale for ack and nack.
	if res, err := c.Ack(ctx, "t", first[0].Receipt); err != nil || res.Acked != 0 || !slices.Equal(res.Stale, []string{first[0].Receipt}) {
		t.Fatalf("stale ack: %+v, %v", res, err)
	}
	_, err = c.Nack(ctx, "t", first[0].Receipt, NackOptions{})
	var e *Error
	if !errors.Is(err, ErrGone) || !errors.As(err, &e) || e.Status != http.StatusGone || e.Code != "gone" || !strings.Contains(e.Message, "stale") {
		t.Fatalf("stale nack: %v", err)
	}
	// The current one works, once.
	if res, err := c.Ack(ctx, "t", second[0].Receipt); err != nil || res.Acked != 1 {
		t.Fatalf("ack: %+v, %v", res, err)
	}
	if _, err := c.Nack(ctx, "t", second[0].Receipt, NackOptions{}); !errors.Is(err, ErrGone) {
		t.Fatalf("nack after ack: %v", err)
	}
}

func TestQueueNackToDeadAndRedrive(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	p, err := c.Publish(ctx, "work", PublishMessage{Payload: map[string]int{"job": 1}, MaxAttempts: 2, Backoff: dur(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A nack with a delay: delayed, then ready.
	m, err := c.Lease(ctx, "work", LeaseOptions{})
	if err != nil || len(m) != 1 {
		t.Fatalf("lease: %+v, %v", m, err)
	}
	res, err := c.Nack(ctx, "work", m[0].Receipt, NackOptions{Delay: dur(150 * time.Millisecond), Error: "first failure"})
	if err != nil || res.ID != p.ID || res.Attempt != 1 || res.State != "delayed" || res.AvailableAt == nil || time.Until(*res.AvailableAt) > time.Second {
		t.Fatalf("nack: %+v, %v", res, err)
	}
	wantStats(t, c, "work", [4]int64{0, 0, 1, 0})
	// The last attempt: a nack (without a delay: the hour of backoff would
	// apply) sends it to the dead letters.
	m, err = c.Lease(ctx, "work", LeaseOptions{Wait: 5 * time.Second})
	if err != nil || len(m) != 1 || m[0].Attempt != 2 {
		t.Fatalf("second lease: %+v, %v", m, err)
	}
	res, err = c.Nack(ctx, "work", m[0].Receipt, NackOptions{Error: "second failure"})
	if err != nil || res.State != "dead" || res.Attempt != 2 || res.AvailableAt != nil {
		t.Fatalf("last nack: %+v, %v", res, err)
	}
	wantStats(t, c, "work", [4]int64{0, 0, 0, 1})
	dead, err := c.ListDead(ctx, "work", ListOptions{})
	if err != nil || len(dead.Messages) != 1 || dead.NextCursor != nil {
		t.Fatalf("dead: %+v, %v", dead, err)
	}
	if d := dead.Messages[0]; d.ID != p.ID || string(d.Payload) != `{"job":1}` || d.Attempt != 2 || d.Error != "second failure" || time.Since(d.DeadAt) > time.Minute {
		t.Fatalf("dead message: %+v", d)
	}

	// More dead letters, for paging: max_attempts 1, a nack kills them.
	for i := range 4 {
		if _, err := c.Publish(ctx, "work", PublishMessage{Payload: i, MaxAttempts: 1}); err != nil {
			t.Fatal(err)
		}
		m, err := c.Lease(ctx, "work", LeaseOptions{})
		if err != nil || len(m) != 1 {
			t.Fatalf("lease %d: %+v, %v", i, m, err)
		}
		if res, err := c.Nack(ctx, "work", m[0].Receipt, NackOptions{Error: fmt.Sprint("e", i)}); err != nil || res.State != "dead" {
			t.Fatalf("nack %d: %+v, %v", i, res, err)
		}
	}
	page, err := c.ListDead(ctx, "work", ListOptions{Limit: 2})
	if err != nil || len(page.Messages) != 2 || page.NextCursor == nil || page.Messages[0].ID != p.ID || page.Messages[1].Error != "e0" {
		t.Fatalf("page 1: %+v, %v", page, err)
	}
	page, err = c.ListDead(ctx, "work", ListOptions{Limit: 2, Cursor: *page.NextCursor})
	if err != nil || len(page.Messages) != 2 || page.NextCursor == nil || page.Messages[0].Error != "e1" || page.Messages[1].Error != "e2" {
		t.Fatalf("page 2: %+v, %v", page, err)
	}
	var errs []string
	for d, err := range c.AllDead(ctx, "work", ListOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		errs = append(errs, d.Error)
	}
	if want := []string{"second failure", "e0", "e1", "e2", "e3"}; !slices.Equal(errs, want) {
		t.Fatalf("all dead: %q, want %q", errs, want)
	}
	// A never used topic has no dead letters.
	if page, err := c.ListDead(ctx, "nothing", ListOptions{}); err != nil || len(page.Messages) != 0 || page.NextCursor != nil {
		t.Fatalf("dead of an unused topic: %+v, %v", page, err)
	}

	// Redrive: all back to ready, attempt 0, in the order they died.
	n, err := c.Redrive(ctx, "work")
	if err != nil || n != 5 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	wantStats(t, c, "work", [4]int64{5, 0, 0, 0})
	if n, err := c.Redrive(ctx, "work"); err != nil || n != 0 {
		t.Fatalf("redrive again: %d, %v", n, err)
	}
	m, err = c.Lease(ctx, "work", LeaseOptions{Max: 10})
	if err != nil || len(m) != 5 || m[0].ID != p.ID || m[0].Attempt != 1 || string(m[1].Payload) != "0" {
		t.Fatalf("lease after redrive: %+v, %v", m, err)
	}
}

func TestQueueDelayAndGroups(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	// A delayed message: not leasable before its time; a long poll gets it
	// when it is ready.
	p, err := c.Publish(ctx, "later", PublishMessage{Payload: "x", Delay: 300 * time.Millisecond})
	if err != nil || time.Until(p.AvailableAt) < 200*time.Millisecond {
		t.Fatalf("publish: %+v, %v", p, err)
	}
	wantStats(t, c, "later", [4]int64{0, 0, 1, 0})
	if m, err := c.Lease(ctx, "later", LeaseOptions{}); err != nil || len(m) != 0 {
		t.Fatalf("early lease: %+v, %v", m, err)
	}
	m, err := c.Lease(ctx, "later", LeaseOptions{Wait: 5 * time.Second})
	if err != nil || len(m) != 1 || time.Now().Before(p.AvailableAt) {
		t.Fatalf("lease: %+v, %v", m, err)
	}

	// FIFO groups: one message of a group at a time, in publish order.
	for _, pm := range []PublishMessage{{Payload: "a1", Group: "a"}, {Payload: "a2", Group: "a"}, {Payload: "b1", Group: "b"}, {Payload: "free"}} {
		if _, err := c.Publish(ctx, "fifo", pm); err != nil {
			t.Fatal(err)
		}
	}
	payloads := func(ms []LeasedMessage) string {
		var s []string
		for _, m := range ms {
			s = append(s, string(m.Payload))
		}
		return strings.Join(s, ",")
	}
	first, err := c.Lease(ctx, "fifo", LeaseOptions{Max: 10})
	if err != nil || payloads(first) != `"a1","b1","free"` {
		t.Fatalf("first lease: %s, %v", payloads(first), err)
	}
	if m, err := c.Lease(ctx, "fifo", LeaseOptions{Max: 10}); err != nil || len(m) != 0 {
		t.Fatalf("a2 leasable while a1 is leased: %s, %v", payloads(m), err)
	}
	if _, err := c.Ack(ctx, "fifo", first[0].Receipt); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Lease(ctx, "fifo", LeaseOptions{Max: 10}); err != nil || payloads(m) != `"a2"` {
		t.Fatalf("after ack of a1: %s, %v", payloads(m), err)
	}
}

func TestQueueLongPoll(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	// A publish wakes a waiting lease.
	type result struct {
		msgs []LeasedMessage
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		msgs, err := c.Lease(ctx, "poll", LeaseOptions{Wait: 20 * time.Second})
		done <- result{msgs, err, time.Since(t0)}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("lease answered before the publish: %+v", r)
	default:
	}
	if _, err := c.Publish(ctx, "poll", PublishMessage{Payload: "wake"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.msgs) != 1 || string(r.msgs[0].Payload) != `"wake"` || r.took > 5*time.Second {
		t.Fatalf("woken lease: %+v", r)
	}

	// No message: an empty answer when the wait ends.
	t0 := time.Now()
	if m, err := c.Lease(ctx, "poll", LeaseOptions{Wait: 300 * time.Millisecond}); err != nil || len(m) != 0 || time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("empty long poll: %+v, %v after %v", m, err, time.Since(t0))
	}

	// The HTTP client's Timeout does not cut the wait short.
	short, err := New(c.BaseURL(), WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if m, err := short.Lease(ctx, "poll", LeaseOptions{Wait: time.Second}); err != nil || len(m) != 0 || time.Since(t0) < 900*time.Millisecond {
		t.Fatalf("long poll with a Timeout of 200ms: %+v, %v after %v", m, err, time.Since(t0))
	}
	// The lease extends a copy: the client's own Timeout is unchanged.
	if short.hc.Timeout != 200*time.Millisecond {
		t.Fatalf("the client's own Timeout changed: %v", short.hc.Timeout)
	}

	// A context deadline shorter than the wait ends the wait before it,
	// with an empty answer rather than an error.
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	if m, err := c.Lease(dctx, "poll", LeaseOptions{Wait: 20 * time.Second}); err != nil || len(m) != 0 || time.Since(t0) > 1400*time.Millisecond {
		t.Fatalf("long poll with a deadline: %+v, %v after %v", m, err, time.Since(t0))
	}
	// A cancelled context ends the wait with its error.
	cctx, cancel2 := context.WithCancel(ctx)
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if _, err := c.Lease(cctx, "poll", LeaseOptions{Wait: 20 * time.Second}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled long poll: %v", err)
	}
}

func TestQueueErrors(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	for _, tc := range []struct {
		name string
		err  error
		want error
		in   string // in the message
	}{
		{"empty topic", func() error { _, err := c.Publish(ctx, "", PublishMessage{Payload: 1}); return err }(), ErrInvalidArgument, "Publish: topic: required"},
		{"bad topic", func() error { _, err := c.Publish(ctx, "bad topic", PublishMessage{Payload: 1}); return err }(), ErrInvalidArgument, "topic"},
		{"bad max attempts", func() error { _, err := c.Publish(ctx, "q", PublishMessage{Payload: 1, MaxAttempts: 1001}); return err }(), ErrInvalidArgument, "max_attempts: 1001 out of range"},
		{"negative delay", func() error {
			_, err := c.Publish(ctx, "q", PublishMessage{Payload: 1, Delay: -time.Second})
			return err
		}(), ErrInvalidArgument, "delay_ms: -1000"},
		{"bad group", func() error { _, err := c.Publish(ctx, "q", PublishMessage{Payload: 1, Group: "a b"}); return err }(), ErrInvalidArgument, "group"},
		{"empty batch", func() error { _, err := c.PublishBatch(ctx, "q", nil); return err }(), ErrInvalidArgument, "messages"},
		{"bad batch message", func() error {
			_, err := c.PublishBatch(ctx, "q", []PublishMessage{{Payload: 1}, {Payload: 2, MaxAttempts: -1}})
			return err
		}(), ErrInvalidArgument, "messages[1].max_attempts"},
		{"lease max", func() error { _, err := c.Lease(ctx, "q", LeaseOptions{Max: 1001}); return err }(), ErrInvalidArgument, "max: 1001 out of range"},
		{"lease wait", func() error { _, err := c.Lease(ctx, "q", LeaseOptions{Wait: 31 * time.Second}); return err }(), ErrInvalidArgument, "wait_ms: 31000 out of range"},
		{"lease visibility", func() error { _, err := c.Lease(ctx, "q", LeaseOptions{Visibility: -time.Millisecond}); return err }(), ErrInvalidArgument, "visibility_ms"},
		{"empty ack", func() error { _, err := c.Ack(ctx, "q"); return err }(), ErrInvalidArgument, "receipts"},
		{"empty nack", func() error { _, err := c.Nack(ctx, "q", "", NackOptions{}); return err }(), ErrInvalidArgument, "receipt: required"},
		{"long nack error", func() error {
			_, err := c.Nack(ctx, "q", "r", NackOptions{Error: strings.Repeat("x", 5000)})
			return err
		}(), ErrInvalidArgument, "error: longer than 4096"},
		{"not a receipt", func() error { _, err := c.Nack(ctx, "q", "nonsense", NackOptions{}); return err }(), ErrInvalidArgument, "not a receipt"},
		{"bad cursor", func() error { _, err := c.ListDead(ctx, "q", ListOptions{Cursor: "nonsense"}); return err }(), ErrInvalidArgument, "cursor"},
		{"bad limit", func() error { _, err := c.ListQueues(ctx, ListOptions{Limit: 1001}); return err }(), ErrInvalidArgument, "limit"},
		// A slash is escaped, but the server routes on the decoded path.
		{"topic with a slash", func() error { _, err := c.Redrive(ctx, "a/b"); return err }(), ErrNotFound, "no route for POST /v1/queues/a/b/redrive"},
		{"stats bad topic", func() error { _, err := c.QueueStats(ctx, "a b"); return err }(), ErrInvalidArgument, "topic"},
	} {
		var e *Error
		if !errors.Is(tc.err, tc.want) || !errors.As(tc.err, &e) || !strings.Contains(e.Message, tc.in) {
			t.Errorf("%s: %v, want %v with %q", tc.name, tc.err, tc.want, tc.in)
		}
	}
	// The iterators yield the error once, last.
	n := 0
	for _, err := range c.AllQueues(ctx, ListOptions{Cursor: "nonsense"}) {
		n++
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("AllQueues: %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("AllQueues yielded %d errors", n)
	}
}

func TestQueueListQueues(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	if page, err := c.ListQueues(ctx, ListOptions{}); err != nil || len(page.Queues) != 0 || page.NextCursor != nil {
		t.Fatalf("no queues: %+v, %v", page, err)
	}
	// Dot names are valid topics and must not turn into dot-segments.
	topics := []string{".", "..", "a", "b:c@d~e", "z"}
	for i, topic := range topics {
		for range i + 1 {
			if _, err := c.Publish(ctx, topic, PublishMessage{Payload: topic}); err != nil {
				t.Fatalf("publish on %q: %v", topic, err)
			}
		}
	}
	if m, err := c.Lease(ctx, "..", LeaseOptions{}); err != nil || len(m) != 1 || string(m[0].Payload) != `".."` {
		t.Fatalf("lease on ..: %+v, %v", m, err)
	}
	wantStats(t, c, ".", [4]int64{1, 0, 0, 0})
	wantStats(t, c, "..", [4]int64{1, 1, 0, 0})

	page, err := c.ListQueues(ctx, ListOptions{Limit: 2})
	if err != nil || len(page.Queues) != 2 || page.NextCursor == nil || page.Queues[0].Topic != "." || page.Queues[1].Leased != 1 {
		t.Fatalf("page 1: %+v, %v", page, err)
	}
	var got []string
	for q, err := range c.AllQueues(ctx, ListOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if q.Ready+q.Leased == 0 {
			t.Fatalf("%+v", q)
		}
		got = append(got, q.Topic)
	}
	if !slices.Equal(got, topics) {
		t.Fatalf("all queues: %q, want %q", got, topics)
	}
}

func TestWork(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c

	// "flaky" fails its first attempt, "bad" every one (it dies after its
	// two attempts), the others succeed.
	for _, p := range []PublishMessage{
		{Payload: "ok-1"}, {Payload: "flaky", Backoff: dur(0)}, {Payload: "bad", MaxAttempts: 2, Backoff: dur(0)}, {Payload: "ok-2"},
	} {
		if _, err := c.Publish(ctx, "w", p); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []string
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- c.Work(wctx, "w", WorkOptions{Wait: time.Second, Max: 2}, func(hctx context.Context, m LeasedMessage) error {
			var s string
			if err := json.Unmarshal(m.Payload, &s); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s#%d", s, m.Attempt))
			mu.Unlock()
			switch {
			case s == "bad":
				return fmt.Errorf("cannot do %s (attempt %d)", s, m.Attempt)
			case s == "flaky" && m.Attempt == 1:
				return errors.New("try again")
			}
			return nil
		})
	}()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := c.QueueStats(ctx, "w")
		if err != nil {
			return err
		}
		if st.Ready+st.Leased+st.Delayed != 0 || st.Dead != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Work: %v", err)
	}
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	slices.Sort(got)
	if want := []string{"bad#1", "bad#2", "flaky#1", "flaky#2", "ok-1#1", "ok-2#1"}; !slices.Equal(got, want) {
		t.Fatalf("handled %q, want %q", got, want)
	}
	dead, err := c.ListDead(ctx, "w", ListOptions{})
	if err != nil || len(dead.Messages) != 1 || dead.Messages[0].Error != "cannot do bad (attempt 2)" {
		t.Fatalf("dead: %+v, %v", dead, err)
	}

	// A message being handled when the context ends is still acked, and the
	// rest of its lease is given back at once.
	for _, s := range []string{"slow", "next"} {
		if _, err := c.Publish(ctx, "stop", PublishMessage{Payload: s}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, stop = context.WithCancel(ctx)
	defer stop()
	var errs []error
	err = c.Work(wctx, "stop", WorkOptions{Max: 2, OnError: func(err error) { errs = append(errs, err) }},
		func(hctx context.Context, m LeasedMessage) error {
			stop()
			<-hctx.Done()
			return nil
		})
	if err != nil || len(errs) != 0 {
		t.Fatalf("stopped Work: %v, errors %v", err, errs)
	}
	m, err := c.Lease(ctx, "stop", LeaseOptions{Max: 10})
	if err != nil || len(m) != 1 || string(m[0].Payload) != `"next"` || m[0].Attempt != 2 {
		t.Fatalf("after a stopped Work: %+v, %v", m, err)
	}

	// An error retrying cannot fix ends Work at once.
	err = c.Work(ctx, "bad topic", WorkOptions{}, func(context.Context, LeasedMessage) error { return nil })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Work on a bad topic: %v", err)
	}
	if err := c.Work(ctx, "", WorkOptions{}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Work without a topic: %v", err)
	}
}

// A handled message whose lease expired meanwhile is reported, not acked.
func TestWorkStaleAck(t *testing.T) {
	ts := start(t)
	ctx := ctxT(t)
	c := ts.c
	if _, err := c.Publish(ctx, "slow", PublishMessage{Payload: 1, Backoff: dur(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var errs []error
	err := c.Work(wctx, "slow", WorkOptions{Visibility: 50 * time.Millisecond, OnError: func(err error) { errs = append(errs, err) }},
		func(context.Context, LeasedMessage) error {
			time.Sleep(150 * time.Millisecond)
			stop()
			return nil
		})
	if err != nil || len(errs) != 1 || !errors.Is(errs[0], ErrStaleAck) {
		t.Fatalf("Work: %v, errors %v", err, errs)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st, err := c.QueueStats(ctx, "slow")
		if err != nil || st.Delayed != 1 {
			return fmt.Errorf("%+v, %v", st, err)
		}
		return nil
	})
}

func TestMillisAndErrorText(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{0, 0}, {time.Nanosecond, 1}, {time.Millisecond, 1}, {1500 * time.Microsecond, 2}, {-time.Nanosecond, -1}, {-2 * time.Millisecond, -2}, {30 * time.Second, 30000}} {
		if got := millis(tc.d); got != tc.want {
			t.Errorf("millis(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	if s := errorText(errors.New("")); s != "error" {
		t.Errorf("empty: %q", s)
	}
	long := strings.Repeat("a", 4095) + "é" + "tail" // é straddles byte 4096
	if s := errorText(errors.New(long)); s != strings.Repeat("a", 4095) {
		t.Errorf("cut: len %d, %q", len(s), s[len(s)-4:])
	}
	if s := errorText(errors.New(strings.Repeat("b", 4096))); len(s) != 4096 {
		t.Errorf("exactly 4096: len %d", len(s))
	}
}
