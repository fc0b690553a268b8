package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Queues against the binary: publish, lease, ack, nack, visibility expiry
// with backoff, dead letters and redrive, dedupe, delays, long polls, stale
// receipts, FIFO groups, stats, the events each step logs, and bad input.

// qPublished is one entry of a publish answer.
type qPublished struct {
	ID          string `json:"id"`
	Seq         uint64 `json:"seq"`
	AvailableAt string `json:"available_at"`
}

// qLeased is one leased message.
type qLeased struct {
	ID             string          `json:"id"`
	Payload        json.RawMessage `json:"payload"`
	Attempt        int             `json:"attempt"`
	Receipt        string          `json:"receipt"`
	LeaseExpiresAt string          `json:"lease_expires_at"`
	PublishedAt    string          `json:"published_at"`
}

// qAckResult is an ack answer.
type qAckResult struct {
	Acked int      `json:"acked"`
	Stale []string `json:"stale"`
}

// qStats are a topic's counts.
type qStats struct {
	Topic   string `json:"topic"`
	Ready   int64  `json:"ready"`
	Leased  int64  `json:"leased"`
	Delayed int64  `json:"delayed"`
	Dead    int64  `json:"dead"`
}

// qDead is a dead letter.
type qDead struct {
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
	Attempt int             `json:"attempt"`
	Error   string          `json:"error"`
	DeadAt  string          `json:"dead_at"`
}

func qPath(topic, rest string) string {
	p := "/v1/queues/" + url.PathEscape(topic)
	if rest != "" {
		p += "/" + rest
	}
	return p
}

// qPublish publishes body (one message or a batch) and checks the answer's
// status and shape.
func qPublish(t testing.TB, p *proc, topic string, status int, body any) []qPublished {
	t.Helper()
	raw := p.must(t, status, "POST", qPath(topic, "messages"), body)
	checkKeys(t, "publish answer", raw, []string{"messages"}, nil)
	var out struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Messages) == 0 {
		t.Fatalf("publish answer: %v: %s", err, raw)
	}
	ms := make([]qPublished, len(out.Messages))
	for i, m := range out.Messages {
		checkKeys(t, "published message", m, []string{"id", "seq", "available_at"}, []string{"duplicate"})
		if err := json.Unmarshal(m, &ms[i]); err != nil || len(ms[i].ID) != 26 || ms[i].Seq == 0 || !timeRE.MatchString(ms[i].AvailableAt) {
			t.Fatalf("published message: %v: %s", err, m)
		}
	}
	return ms
}

// qPublishOne publishes one message with payload and extra fields.
func qPublishOne(t testing.TB, p *proc, topic string, payload any, kv ...any) qPublished {
	t.Helper()
	body := map[string]any{"payload": payload}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	return qPublish(t, p, topic, 201, body)[0]
}

// qLease leases and checks the answer's shape.
func qLease(t testing.TB, p *proc, topic string, max int, visMs, waitMs int64) []qLeased {
	t.Helper()
	raw := p.must(t, 200, "POST", qPath(topic, "lease"), map[string]any{"max": max, "visibility_ms": visMs, "wait_ms": waitMs})
	return decodeLeased(t, raw)
}

func decodeLeased(t testing.TB, raw []byte) []qLeased {
	t.Helper()
	checkKeys(t, "lease answer", raw, []string{"messages"}, nil)
	var out struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Messages == nil {
		t.Fatalf("lease answer: %v: %s", err, raw)
	}
	ms := make([]qLeased, len(out.Messages))
	for i, m := range out.Messages {
		checkKeys(t, "leased message", m, []string{"id", "payload", "attempt", "receipt", "lease_expires_at", "published_at"}, nil)
		if err := json.Unmarshal(m, &ms[i]); err != nil || ms[i].Attempt < 1 || ms[i].Receipt == "" ||
			!timeRE.MatchString(ms[i].LeaseExpiresAt) || !timeRE.MatchString(ms[i].PublishedAt) {
			t.Fatalf("leased message: %v: %s", err, m)
		}
	}
	return ms
}

// qLeaseWithin long-polls (wait_ms up to what is left of timeout) until a
// lease returns messages.
func qLeaseWithin(t testing.TB, p *proc, topic string, max int, visMs int64, timeout time.Duration) []qLeased {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("lease %s: nothing leasable within %v (stats %+v)", topic, timeout, qStatsOf(t, p, topic))
		}
		if ms := qLease(t, p, topic, max, visMs, min(left, 5*time.Second).Milliseconds()); len(ms) > 0 {
			return ms
		}
	}
}

func qAck(t testing.TB, p *proc, topic string, receipts ...string) qAckResult {
	t.Helper()
	raw := p.must(t, 200, "POST", qPath(topic, "ack"), map[string]any{"receipts": receipts})
	checkKeys(t, "ack answer", raw, []string{"acked", "stale"}, nil)
	var r qAckResult
	if err := json.Unmarshal(raw, &r); err != nil || r.Stale == nil {
		t.Fatalf("ack answer: %v: %s", err, raw)
	}
	return r
}

func qStatsOf(t testing.TB, p *proc, topic string) qStats {
	t.Helper()
	raw := p.must(t, 200, "GET", qPath(topic, ""), nil)
	checkKeys(t, "queue stats", raw, []string{"topic", "ready", "leased", "delayed", "dead"}, nil)
	var s qStats
	if err := json.Unmarshal(raw, &s); err != nil || s.Topic != topic {
		t.Fatalf("queue stats of %q: %v: %s", topic, err, raw)
	}
	return s
}

// wantStats checks a topic's counts now.
func wantStats(t testing.TB, p *proc, topic string, ready, leased, delayed, dead int64) {
	t.Helper()
	want := qStats{topic, ready, leased, delayed, dead}
	if got := qStatsOf(t, p, topic); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// waitStats polls a topic's counts until they are the wanted ones.
func waitStats(t testing.TB, p *proc, topic string, timeout time.Duration, ready, leased, delayed, dead int64) {
	t.Helper()
	want := qStats{topic, ready, leased, delayed, dead}
	var got qStats
	if !pollUntil(timeout, 5*time.Millisecond, func() bool {
		got = qStatsOf(t, p, topic)
		return got == want
	}) {
		t.Fatalf("stats %+v after %v, want %+v", got, timeout, want)
	}
}

func qDeadList(t testing.TB, p *proc, topic string) []qDead {
	t.Helper()
	raw := p.must(t, 200, "GET", qPath(topic, "dead"), nil)
	checkKeys(t, "dead answer", raw, []string{"messages", "next_cursor"}, nil)
	var out struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Messages == nil {
		t.Fatalf("dead answer: %v: %s", err, raw)
	}
	ds := make([]qDead, len(out.Messages))
	for i, m := range out.Messages {
		checkKeys(t, "dead message", m, []string{"id", "payload", "attempt", "error", "dead_at"}, nil)
		if err := json.Unmarshal(m, &ds[i]); err != nil || !timeRE.MatchString(ds[i].DeadAt) {
			t.Fatalf("dead message: %v: %s", err, m)
		}
	}
	return ds
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return tm
}

// qEvent is the data of a queue event.
type qEvent struct {
	ID             string `json:"id"`
	Attempt        int    `json:"attempt"`
	MaxAttempts    int    `json:"max_attempts"`
	Group          string `json:"group"`
	PublishedAt    string `json:"published_at"`
	AvailableAt    string `json:"available_at"`
	LeaseExpiresAt string `json:"lease_expires_at"`
	Reason         string `json:"reason"`
	Error          string `json:"error"`
	DeadAt         string `json:"dead_at"`
}

// queueEvents reads the log's events of a queue (SSE replay from 0) and
// checks that each is a queue event of the topic whose data names a message
// and holds no payload.
func queueEvents(t testing.TB, p *proc, topic string) ([]eventJSON, []qEvent) {
	t.Helper()
	evs := streamLog(t, p, "queues/"+topic)
	data := make([]qEvent, len(evs))
	for i, ev := range evs {
		data[i] = checkQueueEvent(t, ev, topic)
	}
	return evs, data
}

var queueEventTypes = []string{"queue.published", "queue.leased", "queue.acked", "queue.nacked", "queue.dead", "queue.redriven"}

func checkQueueEvent(t testing.TB, ev eventJSON, topic string) qEvent {
	t.Helper()
	if ev.Topic != "queues/"+topic || !slices.Contains(queueEventTypes, ev.Type) {
		t.Errorf("event %d: %s on %s, want a queue event on queues/%s", ev.Seq, ev.Type, ev.Topic, topic)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("event %d data: %v: %s", ev.Seq, err, clip(ev.Data))
	}
	if _, ok := m["payload"]; ok {
		t.Errorf("event %d (%s) data holds the payload: %s", ev.Seq, ev.Type, clip(ev.Data))
	}
	for k := range m {
		if !slices.Contains([]string{"id", "attempt", "max_attempts", "group", "published_at", "available_at", "lease_expires_at", "reason", "error", "dead_at"}, k) {
			t.Errorf("event %d (%s) data has key %q: %s", ev.Seq, ev.Type, k, clip(ev.Data))
		}
	}
	var d qEvent
	if err := json.Unmarshal(ev.Data, &d); err != nil || len(d.ID) != 26 {
		t.Fatalf("event %d data: %v: %s", ev.Seq, err, clip(ev.Data))
	}
	return d
}

func TestQueuePublishLeaseAck(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "jobs.main"
	wantStats(t, p, topic, 0, 0, 0, 0)

	before := p.headSeq(t)
	m1 := qPublishOne(t, p, topic, map[string]any{"n": 1, "text": "héllo ☃"})
	if m1.Seq != before+1 || p.headSeq(t) != m1.Seq {
		t.Errorf("publish seq %d, head before %d after %d: want one event, the publish's", m1.Seq, before, p.headSeq(t))
	}
	batch := qPublish(t, p, topic, 201, map[string]any{"messages": []map[string]any{
		{"payload": "two"}, {"payload": []int{3}}, {"payload": nil},
	}})
	if len(batch) != 3 || batch[0].Seq != m1.Seq+1 || batch[1].Seq != m1.Seq+2 || batch[2].Seq != m1.Seq+3 {
		t.Errorf("batch answer %+v: want 3 messages with seqs after %d", batch, m1.Seq)
	}
	wantStats(t, p, topic, 4, 0, 0, 0)

	// Ready order is publish order here (same available_at order).
	got := qLease(t, p, topic, 2, 30000, 0)
	if len(got) != 2 || got[0].ID != m1.ID || got[1].ID != batch[0].ID {
		t.Fatalf("lease of 2: %+v, want %s and %s", got, m1.ID, batch[0].ID)
	}
	if !jsonEqual(got[0].Payload, []byte(`{"n":1,"text":"héllo ☃"}`)) || string(got[1].Payload) != `"two"` {
		t.Errorf("payloads %s, %s", got[0].Payload, got[1].Payload)
	}
	for _, m := range got {
		exp := mustTime(t, m.LeaseExpiresAt).Sub(time.Now())
		if m.Attempt != 1 || exp < 25*time.Second || exp > 31*time.Second {
			t.Errorf("leased %s: attempt %d, lease expires in %v; want 1 and ~30 s", m.ID, m.Attempt, exp)
		}
	}
	if got[0].PublishedAt != m1.AvailableAt {
		t.Errorf("published_at %s, available_at at publish %s (no delay: want equal)", got[0].PublishedAt, m1.AvailableAt)
	}
	wantStats(t, p, topic, 2, 2, 0, 0)

	// The default lease is one message.
	raw := p.must(t, 200, "POST", qPath(topic, "lease"), `{}`)
	one := decodeLeased(t, raw)
	if len(one) != 1 || one[0].ID != batch[1].ID {
		t.Fatalf("lease with defaults: %s, want %s alone", raw, batch[1].ID)
	}
	wantStats(t, p, topic, 1, 3, 0, 0)

	before = p.headSeq(t)
	r := qAck(t, p, topic, got[0].Receipt, got[1].Receipt, one[0].Receipt)
	if r.Acked != 3 || len(r.Stale) != 0 {
		t.Errorf("ack: %+v, want 3 acked, none stale", r)
	}
	if h := p.headSeq(t); h != before+3 {
		t.Errorf("ack of 3 committed %d events, want 3", h-before)
	}
	wantStats(t, p, topic, 1, 0, 0, 0)
	last := qLease(t, p, topic, 10, 1000, 0)
	if len(last) != 1 || last[0].ID != batch[2].ID || string(last[0].Payload) != "null" {
		t.Fatalf("last lease: %+v", last)
	}
	if r := qAck(t, p, topic, last[0].Receipt); r.Acked != 1 {
		t.Fatalf("ack: %+v", r)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)
	if got := qLease(t, p, topic, 10, 1000, 0); len(got) != 0 {
		t.Errorf("lease of an empty queue: %+v", got)
	}

	evs, data := queueEvents(t, p, topic)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	want := []string{"queue.published", "queue.published", "queue.published", "queue.published",
		"queue.leased", "queue.leased", "queue.leased", "queue.acked", "queue.acked", "queue.acked", "queue.leased", "queue.acked"}
	if !slices.Equal(types, want) {
		t.Errorf("event types %v, want %v", types, want)
	}
	if len(evs) == len(want) {
		if evs[0].Seq != m1.Seq || data[0].ID != m1.ID || data[0].Attempt != 0 || data[0].MaxAttempts != 5 || data[0].PublishedAt == "" {
			t.Errorf("published event: seq %d %s", evs[0].Seq, evs[0].Data)
		}
		if data[4].ID != m1.ID || data[4].Attempt != 1 || data[4].LeaseExpiresAt != got[0].LeaseExpiresAt {
			t.Errorf("leased event %s, leased %+v", evs[4].Data, got[0])
		}
		if data[7].ID != m1.ID || evs[7].Type != "queue.acked" {
			t.Errorf("acked event %s", evs[7].Data)
		}
	}
}

// TestQueueExpiryDeadRedrive: an unacked lease comes back with attempt+1
// after backoff_ms×2^(attempt−1); after max_attempts deliveries the message
// is a dead letter with its last error; redrive makes it attempt 0 again.
// Stale receipts are listed by ack and 410 on nack.
func TestQueueExpiryDeadRedrive(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "expiry"
	const backoff = 200 // ms
	m := qPublishOne(t, p, topic, map[string]string{"job": "secret-payload-marker"}, "max_attempts", 3, "backoff_ms", backoff)

	l1 := qLease(t, p, topic, 1, 300, 0)
	if len(l1) != 1 || l1[0].Attempt != 1 {
		t.Fatalf("first lease: %+v", l1)
	}
	// Not leasable while leased.
	if got := qLease(t, p, topic, 1, 300, 0); len(got) != 0 {
		t.Fatalf("leased twice: %+v", got)
	}
	l2 := qLeaseWithin(t, p, topic, 1, 300, 5*time.Second)
	if l2[0].ID != m.ID || l2[0].Attempt != 2 {
		t.Fatalf("after expiry: %+v, want %s attempt 2", l2, m.ID)
	}
	// The first receipt is stale now: ack lists it, nack is 410.
	before := p.headSeq(t)
	if r := qAck(t, p, topic, l1[0].Receipt); r.Acked != 0 || !slices.Equal(r.Stale, []string{l1[0].Receipt}) {
		t.Errorf("ack of an expired lease: %+v, want it stale", r)
	}
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": l1[0].Receipt}), 410, "gone", "receipt")
	if h := p.headSeq(t); h != before {
		t.Errorf("stale ack and nack committed %d events", h-before)
	}
	wantStats(t, p, topic, 0, 1, 0, 0)

	l3 := qLeaseWithin(t, p, topic, 1, 60000, 5*time.Second)
	if l3[0].Attempt != 3 {
		t.Fatalf("third lease: %+v", l3)
	}
	// The third delivery is the last one: a nack makes it dead.
	raw := p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": l3[0].Receipt, "error": "boom: it broke"})
	if !jsonEqual(raw, []byte(fmt.Sprintf(`{"id":%q,"attempt":3,"state":"dead","available_at":null}`, m.ID))) {
		t.Errorf("nack answer %s", raw)
	}
	wantStats(t, p, topic, 0, 0, 0, 1)
	if got := qLease(t, p, topic, 1, 1000, 0); len(got) != 0 {
		t.Errorf("a dead letter was leased: %+v", got)
	}
	// Its receipt is spent.
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": l3[0].Receipt}), 410, "gone", "receipt")
	dead := qDeadList(t, p, topic)
	if len(dead) != 1 || dead[0].ID != m.ID || dead[0].Attempt != 3 || dead[0].Error != "boom: it broke" ||
		!jsonEqual(dead[0].Payload, []byte(`{"job":"secret-payload-marker"}`)) {
		t.Errorf("dead letters %+v", dead)
	}

	// A second message dies by lease expiry, with max_attempts 1: its error
	// says so.
	m2 := qPublishOne(t, p, topic, "second", "max_attempts", 1)
	if l := qLease(t, p, topic, 1, 200, 0); len(l) != 1 || l[0].ID != m2.ID {
		t.Fatalf("lease of the second: %+v", l)
	}
	waitStats(t, p, topic, 5*time.Second, 0, 0, 0, 2)
	dead = qDeadList(t, p, topic)
	if len(dead) != 2 || dead[1].ID != m2.ID || dead[1].Attempt != 1 || dead[1].Error != "lease expired" {
		t.Errorf("dead letters %+v, want the second dead by lease expiry", dead)
	}
	if raw := p.must(t, 200, "GET", qPath(topic, "dead")+"?limit=1", nil); !strings.Contains(string(raw), m.ID) ||
		strings.Contains(string(raw), `"next_cursor":null`) {
		t.Errorf("dead letters page of 1: %s", raw)
	}

	// Redrive: both are ready again, attempt 0, and lease as attempt 1.
	before = p.headSeq(t)
	if raw := p.must(t, 200, "POST", qPath(topic, "redrive"), nil); !jsonEqual(raw, []byte(`{"redriven":2}`)) {
		t.Errorf("redrive: %s", raw)
	}
	if h := p.headSeq(t); h != before+2 {
		t.Errorf("redrive of 2 committed %d events", h-before)
	}
	wantStats(t, p, topic, 2, 0, 0, 0)
	if d := qDeadList(t, p, topic); len(d) != 0 {
		t.Errorf("dead letters after redrive: %+v", d)
	}
	if raw := p.must(t, 200, "POST", qPath(topic, "redrive"), nil); !jsonEqual(raw, []byte(`{"redriven":0}`)) {
		t.Errorf("second redrive: %s", raw)
	}
	again := qLease(t, p, topic, 10, 30000, 0)
	if len(again) != 2 || again[0].ID != m.ID || again[1].ID != m2.ID || again[0].Attempt != 1 || again[1].Attempt != 1 {
		t.Fatalf("lease after redrive: %+v", again)
	}
	// nack with delay_ms: delayed, then ready again with attempt+1.
	raw = p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": again[0].Receipt, "delay_ms": 100})
	var nr struct {
		ID          string  `json:"id"`
		Attempt     int     `json:"attempt"`
		State       string  `json:"state"`
		AvailableAt *string `json:"available_at"`
	}
	if err := json.Unmarshal(raw, &nr); err != nil || nr.ID != m.ID || nr.Attempt != 1 || nr.State != "delayed" || nr.AvailableAt == nil {
		t.Errorf("nack with delay: %s", raw)
	}
	if r := qAck(t, p, topic, again[1].Receipt); r.Acked != 1 {
		t.Errorf("ack: %+v", r)
	}
	back := qLeaseWithin(t, p, topic, 1, 30000, 5*time.Second)
	if back[0].ID != m.ID || back[0].Attempt != 2 {
		t.Errorf("after nack: %+v", back)
	}
	if r := qAck(t, p, topic, back[0].Receipt); r.Acked != 1 {
		t.Errorf("ack: %+v", r)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)

	// The log: every step, with the timing of the backoff in its data.
	evs, data := queueEvents(t, p, topic)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
		if strings.Contains(string(ev.Data), "secret-payload-marker") {
			t.Errorf("event %d holds the payload: %s", ev.Seq, ev.Data)
		}
	}
	want := []string{
		"queue.published", "queue.leased", "queue.nacked", "queue.leased", "queue.nacked", "queue.leased", "queue.dead",
		"queue.published", "queue.leased", "queue.dead",
		"queue.redriven", "queue.redriven", "queue.leased", "queue.leased", "queue.nacked", "queue.acked", "queue.leased", "queue.acked",
	}
	if !slices.Equal(types, want) {
		t.Fatalf("event types\n%v\nwant\n%v", types, want)
	}
	// Lease expiry: queue.nacked with reason lease_expired, available at
	// expiry + backoff_ms × 2^(attempt−1) (the timer acts at or after the
	// expiry), and the next lease not before that.
	for i, attempt := range map[int]int{2: 1, 4: 2} {
		leased, nacked, next := data[i-1], data[i], data[i+1]
		if leased.Attempt != attempt || nacked.Attempt != attempt || nacked.Reason != "lease_expired" || nacked.Error != "lease expired" {
			t.Errorf("expiry of attempt %d: %s then %s", attempt, evs[i-1].Data, evs[i].Data)
		}
		exp, avail := mustTime(t, leased.LeaseExpiresAt), mustTime(t, nacked.AvailableAt)
		wantBackoff := time.Duration(backoff<<(attempt-1)) * time.Millisecond
		if d := avail.Sub(exp); d < wantBackoff || d > wantBackoff+2*time.Second {
			t.Errorf("attempt %d: available %v after the lease expired, want backoff %v (+ timer lag)", attempt, d, wantBackoff)
		}
		if at := mustTime(t, evs[i+1].Time); at.Before(avail) || next.Attempt != attempt+1 {
			t.Errorf("attempt %d: leased again at %v (attempt %d), available at %v", attempt, at, next.Attempt, avail)
		}
	}
	if d := data[6]; d.Attempt != 3 || d.Error != "boom: it broke" || d.Reason != "nack" || d.DeadAt == "" {
		t.Errorf("dead event %s", evs[6].Data)
	}
	if d := data[9]; d.ID != m2.ID || d.Attempt != 1 || d.Error != "lease expired" || d.Reason != "lease_expired" {
		t.Errorf("dead event %s", evs[9].Data)
	}
	if d := data[10]; d.ID != m.ID || d.Attempt != 0 || d.AvailableAt == "" {
		t.Errorf("redriven event %s", evs[10].Data)
	}
	if d := data[14]; d.ID != m.ID || d.Reason != "nack" || d.Attempt != 1 || d.AvailableAt != *nr.AvailableAt {
		t.Errorf("nacked event %s", evs[14].Data)
	}
}

// TestQueueNackBackoff: a nack without delay_ms makes the message ready
// after backoff_ms × 2^(attempt−1).
func TestQueueNackBackoff(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "nackq"
	qPublishOne(t, p, topic, 1, "backoff_ms", 300, "max_attempts", 10)
	for attempt := 1; attempt <= 3; attempt++ {
		l := qLeaseWithin(t, p, topic, 1, 30000, 10*time.Second)
		if l[0].Attempt != attempt {
			t.Fatalf("attempt %d, want %d", l[0].Attempt, attempt)
		}
		r := p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": l[0].Receipt, "error": "e"})
		if r.Status != 200 {
			t.Fatalf("nack: %s", r)
		}
		checkKeys(t, "nack answer", r.Body, []string{"id", "attempt", "state", "available_at"}, nil)
		var nr struct {
			State       string `json:"state"`
			AvailableAt string `json:"available_at"`
		}
		json.Unmarshal(r.Body, &nr)
		// available_at − the nack's event time is the backoff exactly.
		evs, _ := queueEvents(t, p, topic)
		last := evs[len(evs)-1]
		want := time.Duration(300<<(attempt-1)) * time.Millisecond
		if d := mustTime(t, nr.AvailableAt).Sub(mustTime(t, last.Time)); last.Type != "queue.nacked" || nr.State != "delayed" || d < want-time.Millisecond || d > want+50*time.Millisecond {
			t.Errorf("attempt %d: nack %s, event %s at %s: available %v after, want %v", attempt, r.Body, last.Type, last.Time, d, want)
		}
		if l := qLease(t, p, topic, 1, 1000, 0); len(l) != 0 {
			t.Errorf("leasable at once after a nack with backoff: %+v", l)
		}
	}
}

func TestQueueDedupe(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "dedupe"
	first := qPublishOne(t, p, topic, "first", "dedupe_id", "order-17")
	head := p.headSeq(t)
	dup := qPublish(t, p, topic, 200, map[string]any{"payload": "second", "dedupe_id": "order-17", "delay_ms": 5000})
	if len(dup) != 1 || dup[0] != first {
		t.Errorf("duplicate answered %+v, want the first %+v", dup, first)
	}
	if h := p.headSeq(t); h != head {
		t.Errorf("a duplicate committed %d events", h-head)
	}
	wantStats(t, p, topic, 1, 0, 0, 0)
	l := qLease(t, p, topic, 10, 30000, 0)
	if len(l) != 1 || string(l[0].Payload) != `"first"` {
		t.Fatalf("lease: %+v", l)
	}
	qAck(t, p, topic, l[0].Receipt)
	// Acked, the dedupe id still answers the first message.
	if dup := qPublish(t, p, topic, 200, map[string]any{"payload": "third", "dedupe_id": "order-17"}); dup[0] != first {
		t.Errorf("duplicate after the ack answered %+v, want %+v", dup, first)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)
	// A batch of one duplicate and one new message: 201; the duplicate's
	// entry is the first message.
	b := qPublish(t, p, topic, 201, map[string]any{"messages": []map[string]any{
		{"payload": "x", "dedupe_id": "order-17"}, {"payload": "y", "dedupe_id": "order-18"},
	}})
	if len(b) != 2 || b[0] != first || b[1].ID == first.ID {
		t.Errorf("mixed batch: %+v", b)
	}
	// Dedupe ids are per topic.
	other := qPublish(t, p, "dedupe-other", 201, map[string]any{"payload": "z", "dedupe_id": "order-17"})
	if other[0].ID == first.ID {
		t.Errorf("dedupe id shared across topics")
	}
	wantStats(t, p, topic, 1, 0, 0, 0)
	if h := p.headSeq(t); h != head+4 {
		t.Errorf("head %d, want %d (lease, ack, one new message, other topic)", h, head+4)
	}
}

func TestQueueDelay(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "delayed"
	sent := time.Now()
	m := qPublishOne(t, p, topic, "later", "delay_ms", 800)
	avail := mustTime(t, m.AvailableAt)
	if d := avail.Sub(sent); d < 800*time.Millisecond || d > 2*time.Second {
		t.Errorf("available_at %v after the publish was sent, want ~800 ms", d)
	}
	now := qPublishOne(t, p, topic, "now")
	wantStats(t, p, topic, 1, 0, 1, 0)
	l := qLease(t, p, topic, 10, 30000, 0)
	if len(l) != 1 || l[0].ID != now.ID {
		t.Fatalf("lease before the delay: %+v, want only %s", l, now.ID)
	}
	qAck(t, p, topic, l[0].Receipt)
	// A long poll wakes when the delay passes (the timer makes it ready).
	start := time.Now()
	l = qLease(t, p, topic, 10, 30000, 5000)
	took := time.Since(start)
	if len(l) != 1 || l[0].ID != m.ID || l[0].Attempt != 1 {
		t.Fatalf("lease after the delay: %+v", l)
	}
	if time.Now().Before(avail) {
		t.Errorf("leased at %v, before available_at %v", time.Now(), avail)
	}
	if late := time.Since(avail); late > 500*time.Millisecond {
		t.Errorf("the delayed message was leased %v after its available_at (long poll took %v)", late, took)
	}
	evs, data := queueEvents(t, p, topic)
	if len(evs) != 5 || evs[0].Type != "queue.published" || data[0].AvailableAt != m.AvailableAt ||
		evs[4].Type != "queue.leased" || data[4].ID != m.ID || mustTime(t, evs[4].Time).Before(avail) {
		t.Errorf("events of a delayed message: %+v", evs)
	}
}

// TestQueueLongPoll: a long-polling lease returns shortly after a publish,
// and empty at its deadline.
func TestQueueLongPoll(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "poll"
	type result struct {
		r   response
		end time.Time
	}
	for round := range 3 {
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			// p.do, not p.call: no t.Fatal off the test goroutine.
			status, body, err := p.do("POST", qPath(topic, "lease"), []byte(`{"max":5,"visibility_ms":30000,"wait_ms":5000}`))
			if err != nil {
				body = []byte(err.Error())
			}
			done <- result{response{Status: status, Body: body}, time.Now()}
		}()
		// Let the lease park on the server: a deliberate pause, not a
		// wait for a condition (none can be observed from outside).
		time.Sleep(300 * time.Millisecond)
		sent := time.Now()
		m := qPublishOne(t, p, topic, round)
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("lease still waiting 10 s after the publish")
		}
		if res.r.Status != 200 {
			t.Fatalf("lease: %s", res.r)
		}
		l := decodeLeased(t, res.r.Body)
		if len(l) != 1 || l[0].ID != m.ID {
			t.Fatalf("long poll got %+v, want %s", l, m.ID)
		}
		wake := res.end.Sub(sent)
		t.Logf("round %d: long poll returned %v after the publish was sent (%v after the lease)", round, wake, res.end.Sub(start))
		if res.end.Sub(start) < 250*time.Millisecond {
			t.Errorf("the lease returned before the publish: it did not wait")
		}
		if wake > 200*time.Millisecond {
			t.Errorf("long poll returned %v after the publish, want ≤ 200 ms", wake)
		}
		qAck(t, p, topic, l[0].Receipt)
	}
	// Empty at the deadline.
	start := time.Now()
	l := qLease(t, p, topic, 5, 1000, 700)
	took := time.Since(start)
	if len(l) != 0 {
		t.Errorf("lease of an empty queue: %+v", l)
	}
	if took < 700*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("empty long poll of 700 ms took %v", took)
	}
	// A publish to another topic does not end it early with nothing.
	done := make(chan time.Time, 1)
	start = time.Now()
	go func() {
		p.do("POST", qPath(topic, "lease"), []byte(`{"wait_ms":600}`))
		done <- time.Now()
	}()
	time.Sleep(100 * time.Millisecond) // as above: let it park
	qPublishOne(t, p, "poll-other", 1)
	if end := <-done; end.Sub(start) < 600*time.Millisecond {
		t.Errorf("a publish to another topic ended the long poll after %v", end.Sub(start))
	}
}

func TestQueueStaleReceipts(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "stale"
	qPublish(t, p, topic, 201, map[string]any{"messages": []map[string]any{{"payload": 1}, {"payload": 2}}})
	l := qLease(t, p, topic, 2, 30000, 0)
	if len(l) != 2 {
		t.Fatalf("lease: %+v", l)
	}
	if r := qAck(t, p, topic, l[0].Receipt); r.Acked != 1 || len(r.Stale) != 0 {
		t.Errorf("ack: %+v", r)
	}
	// A string that is not a receipt at all is bad input: 400, nothing
	// acked.
	before := p.headSeq(t)
	checkError(t, p.call(t, "POST", qPath(topic, "ack"), map[string]any{"receipts": []string{l[1].Receipt, "r1.AAAA"}}), 400, "invalid_argument", "receipts[1]")
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": "r1.AAAA"}), 400, "invalid_argument", "receipt")
	if h := p.headSeq(t); h != before {
		t.Errorf("a receipt that is not one committed %d events", h-before)
	}
	// Acked twice, a forged receipt (the id and lease seq of a live lease,
	// which events show, with another nonce), and a good one: only the good
	// one is acked; the others are listed in order.
	forged := forgeReceipt(t, l[1].Receipt)
	r := qAck(t, p, topic, l[0].Receipt, forged, l[1].Receipt, l[1].Receipt)
	if r.Acked != 1 || !slices.Equal(r.Stale, []string{l[0].Receipt, forged, l[1].Receipt}) {
		t.Errorf("mixed ack: %+v", r)
	}
	if h := p.headSeq(t); h != before+1 {
		t.Errorf("mixed ack committed %d events, want 1", h-before)
	}
	// Nack of an acked message, of a forged receipt: 410 (stale).
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": l[0].Receipt}), 410, "gone", "receipt")
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": forged}), 410, "gone", "receipt")
	// A receipt is bound to its topic.
	qPublishOne(t, p, topic, 3)
	l3 := qLease(t, p, topic, 1, 30000, 0)
	if r := qAck(t, p, "stale-elsewhere", l3[0].Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Errorf("ack on another topic: %+v", r)
	}
	checkError(t, p.call(t, "POST", qPath("stale-elsewhere", "nack"), map[string]any{"receipt": l3[0].Receipt}), 410, "gone", "receipt")
	// A nacked lease's receipt is spent too.
	p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": l3[0].Receipt, "delay_ms": 0})
	if r := qAck(t, p, topic, l3[0].Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Errorf("ack after nack: %+v", r)
	}
	// And the re-lease's receipt works while the old one does not.
	l4 := qLease(t, p, topic, 1, 30000, 0)
	if len(l4) != 1 || l4[0].ID != l3[0].ID || l4[0].Attempt != 2 || l4[0].Receipt == l3[0].Receipt {
		t.Fatalf("re-lease: %+v", l4)
	}
	if r := qAck(t, p, topic, l3[0].Receipt, l4[0].Receipt); r.Acked != 1 || !slices.Equal(r.Stale, []string{l3[0].Receipt}) {
		t.Errorf("old and new receipt: %+v", r)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)
}

// TestQueueFIFOGroups: only a group's head is leasable; the next one after
// the head is acked (or dies), in publish order.
func TestQueueFIFOGroups(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "fifo"
	pub := func(payload, group string) string {
		kv := []any{"backoff_ms", 100}
		if group != "" {
			kv = append(kv, "group", group)
		}
		return qPublishOne(t, p, topic, payload, kv...).ID
	}
	a1, a2, a3 := pub("a1", "A"), pub("a2", "A"), pub("a3", "A")
	b1, b2 := pub("b1", "B"), pub("b2", "B")
	u := pub("u", "")
	// Ready counts the blocked ones too.
	wantStats(t, p, topic, 6, 0, 0, 0)
	ids := func(ls []qLeased) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out
	}
	l := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(l); !slices.Equal(got, []string{a1, b1, u}) {
		t.Fatalf("first lease %v, want the heads %v", got, []string{a1, b1, u})
	}
	if l2 := qLease(t, p, topic, 10, 30000, 0); len(l2) != 0 {
		t.Fatalf("leased behind the heads: %v", ids(l2))
	}
	wantStats(t, p, topic, 3, 3, 0, 0)
	// Ack A's head: a2 is next, not a3.
	qAck(t, p, topic, l[0].Receipt, l[2].Receipt)
	la := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(la); !slices.Equal(got, []string{a2}) {
		t.Fatalf("after acking a1: %v, want [%s]", got, a2)
	}
	// Nack a2: it comes back (after its backoff), and a3 stays behind it.
	p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": la[0].Receipt})
	again := qLeaseWithin(t, p, topic, 10, 30000, 5*time.Second)
	if got := ids(again); !slices.Equal(got, []string{a2}) || again[0].Attempt != 2 {
		t.Fatalf("after nacking a2: %+v, want a2 attempt 2", again)
	}
	qAck(t, p, topic, again[0].Receipt)
	la3 := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(la3); !slices.Equal(got, []string{a3}) {
		t.Fatalf("after acking a2: %v, want [%s]", got, a3)
	}
	// A head that dies lets the next one of its group through.
	d1 := qPublishOne(t, p, topic, "d1", "group", "D", "max_attempts", 1).ID
	d2 := qPublishOne(t, p, topic, "d2", "group", "D").ID
	ld := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(ld); !slices.Equal(got, []string{d1}) {
		t.Fatalf("group D: %v, want [%s]", got, d1)
	}
	p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": ld[0].Receipt, "error": "poison"})
	ld2 := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(ld2); !slices.Equal(got, []string{d2}) {
		t.Fatalf("after D's head died: %v, want [%s]", got, d2)
	}
	qAck(t, p, topic, l[1].Receipt, la3[0].Receipt, ld2[0].Receipt)
	lb := qLease(t, p, topic, 10, 30000, 0)
	if got := ids(lb); !slices.Equal(got, []string{b2}) {
		t.Fatalf("after acking b1: %v, want [%s]", got, b2)
	}
	qAck(t, p, topic, lb[0].Receipt)
	wantStats(t, p, topic, 0, 0, 0, 1)

	// The log: each group's messages were leased in publish order.
	evs, data := queueEvents(t, p, topic)
	order := map[string][]string{}
	group := map[string]string{a1: "A", a2: "A", a3: "A", b1: "B", b2: "B", d1: "D", d2: "D"}
	for i, ev := range evs {
		if ev.Type == "queue.published" && data[i].Group != group[data[i].ID] {
			t.Errorf("published event %s: group %q, want %q", ev.Data, data[i].Group, group[data[i].ID])
		}
		if ev.Type == "queue.leased" && group[data[i].ID] != "" {
			g := group[data[i].ID]
			if o := order[g]; len(o) == 0 || o[len(o)-1] != data[i].ID {
				order[g] = append(order[g], data[i].ID)
			}
		}
	}
	for g, want := range map[string][]string{"A": {a1, a2, a3}, "B": {b1, b2}, "D": {d1, d2}} {
		if !slices.Equal(order[g], want) {
			t.Errorf("group %s leased in order %v, want %v", g, order[g], want)
		}
	}
}

// TestQueueStatsAndList: GET /v1/queues lists topics with their counts, by
// name, with paging.
func TestQueueStatsAndList(t *testing.T) {
	p := startServer(t, t.TempDir())
	qPublishOne(t, p, "q-b", 1)
	qPublishOne(t, p, "q-b", 2, "delay_ms", 60000)
	qPublishOne(t, p, "q-a", 1)
	qPublishOne(t, p, "q-c", 1, "max_attempts", 1)
	qPublishOne(t, p, "q-c", 2)
	lc := qLease(t, p, "q-c", 2, 30000, 0)
	p.must(t, 200, "POST", qPath("q-c", "nack"), map[string]any{"receipt": lc[0].Receipt})
	want := []qStats{
		{Topic: "q-a", Ready: 1},
		{Topic: "q-b", Ready: 1, Delayed: 1},
		{Topic: "q-c", Leased: 1, Dead: 1},
	}
	for _, s := range want {
		wantStats(t, p, s.Topic, s.Ready, s.Leased, s.Delayed, s.Dead)
	}
	list := func(q string) ([]qStats, *string) {
		raw := p.must(t, 200, "GET", "/v1/queues"+q, nil)
		checkKeys(t, "queues list", raw, []string{"queues", "next_cursor"}, nil)
		var out struct {
			Queues     []qStats `json:"queues"`
			NextCursor *string  `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Queues == nil {
			t.Fatalf("queues list: %v: %s", err, raw)
		}
		return out.Queues, out.NextCursor
	}
	if got, next := list(""); !slices.Equal(got, want) || next != nil {
		t.Errorf("GET /v1/queues: %+v (next %v), want %+v", got, next, want)
	}
	var paged []qStats
	cursor := ""
	for range 5 {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		got, next := list(q)
		paged = append(paged, got...)
		if next == nil {
			break
		}
		cursor = *next
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paged: %+v, want %+v", paged, want)
	}
	// A topic never used: zeros.
	wantStats(t, p, "never-used", 0, 0, 0, 0)
}

// TestQueueEventsLive: a live SSE subscriber of queues/{topic} gets each
// step as it happens, with data that holds no payload.
func TestQueueEventsLive(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "live"
	s := mustSSE(t, nil, sseURL(p.URL, []string{"queues/" + topic}, -1), "")
	secret := "payload-must-not-leak"
	m := qPublishOne(t, p, topic, map[string]string{"s": secret}, "max_attempts", 2, "backoff_ms", 0)
	l := qLease(t, p, topic, 1, 30000, 0)
	p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": l[0].Receipt, "error": "first"})
	l = qLeaseWithin(t, p, topic, 1, 30000, 5*time.Second)
	p.must(t, 200, "POST", qPath(topic, "nack"), map[string]any{"receipt": l[0].Receipt, "error": "second"})
	p.must(t, 200, "POST", qPath(topic, "redrive"), nil)
	l = qLease(t, p, topic, 1, 30000, 0)
	qAck(t, p, topic, l[0].Receipt)
	want := []struct {
		typ     string
		attempt int
	}{{"queue.published", 0}, {"queue.leased", 1}, {"queue.nacked", 1}, {"queue.leased", 2}, {"queue.dead", 2},
		{"queue.redriven", 0}, {"queue.leased", 1}, {"queue.acked", 1}}
	var last uint64
	for i, w := range want {
		ev := s.mustEvent(t)
		d := checkQueueEvent(t, ev, topic)
		if ev.Type != w.typ || d.ID != m.ID || d.Attempt != w.attempt || ev.Seq <= last {
			t.Errorf("live event %d: seq %d %s %s, want %s attempt %d", i, ev.Seq, ev.Type, ev.Data, w.typ, w.attempt)
		}
		if strings.Contains(string(ev.Data), secret) {
			t.Errorf("event %d holds the payload: %s", ev.Seq, ev.Data)
		}
		last = ev.Seq
		if i == 0 && ev.Seq != m.Seq {
			t.Errorf("published event seq %d, publish answered %d", ev.Seq, m.Seq)
		}
		if ev.Type == "queue.dead" && (d.Error != "second" || d.DeadAt == "") {
			t.Errorf("dead event %s", ev.Data)
		}
		if ev.Type == "queue.nacked" && (d.Error != "first" || d.Reason != "nack") {
			t.Errorf("nacked event %s", ev.Data)
		}
	}
}

// TestQueueBadInput: bad input is a 4xx naming the field, and commits
// nothing (the API unit tests cover more cases).
func TestQueueBadInput(t *testing.T) {
	p := startServer(t, t.TempDir())
	const q = "/v1/queues/bad/"
	qPublishOne(t, p, "bad", "seed")
	l := qLease(t, p, "bad", 1, 30000, 0)
	const inv = "invalid_argument"
	big := make([]map[string]any, 1001)
	for i := range big {
		big[i] = map[string]any{"payload": i}
	}
	runScenarios(t, p, []scenario{
		{name: "bad topic", method: "POST", path: "/v1/queues/a%20b/messages", body: `{"payload":1}`, status: 400, code: inv, field: "topic"},
		{name: "topic too long", method: "POST", path: "/v1/queues/" + strings.Repeat("t", 129) + "/lease", body: `{}`, status: 400, code: inv, field: "topic"},
		{name: "no payload", method: "POST", path: q + "messages", body: `{"delay_ms":1}`, status: 400, code: inv, field: "payload"},
		{name: "negative delay", method: "POST", path: q + "messages", body: `{"payload":1,"delay_ms":-1}`, status: 400, code: inv, field: "delay_ms"},
		{name: "delay too long", method: "POST", path: q + "messages", body: `{"payload":1,"delay_ms":2592000001}`, status: 400, code: inv, field: "delay_ms"},
		{name: "max_attempts 0", method: "POST", path: q + "messages", body: `{"payload":1,"max_attempts":0}`, status: 400, code: inv, field: "max_attempts"},
		{name: "backoff a string", method: "POST", path: q + "messages", body: `{"payload":1,"backoff_ms":"1s"}`, status: 400, code: inv, field: "backoff_ms"},
		{name: "empty dedupe_id", method: "POST", path: q + "messages", body: `{"payload":1,"dedupe_id":""}`, status: 400, code: inv, field: "dedupe_id"},
		{name: "bad group", method: "POST", path: q + "messages", body: `{"payload":1,"group":"a/b"}`, status: 400, code: inv, field: "group"},
		{name: "unknown field", method: "POST", path: q + "messages", body: `{"payload":1,"priority":3}`, status: 400, code: inv, field: "priority"},
		{name: "malformed JSON", method: "POST", path: q + "messages", body: `{"payload":`, status: 400, code: inv},
		{name: "empty batch", method: "POST", path: q + "messages", body: `{"messages":[]}`, status: 400, code: inv, field: "messages"},
		{name: "batch too large", method: "POST", path: q + "messages", body: map[string]any{"messages": big}, status: 400, code: inv, field: "messages"},
		{name: "batch with a bad message", method: "POST", path: q + "messages", body: `{"messages":[{"payload":1},{"payload":2,"max_attempts":-1}]}`, status: 400, code: inv, field: "messages[1].max_attempts"},
		{name: "batch beside fields", method: "POST", path: q + "messages", body: `{"messages":[{"payload":1}],"payload":2}`, status: 400, code: inv, field: "messages"},
		{name: "lease max 0", method: "POST", path: q + "lease", body: `{"max":0}`, status: 400, code: inv, field: "max"},
		{name: "lease max too large", method: "POST", path: q + "lease", body: `{"max":1001}`, status: 400, code: inv, field: "max"},
		{name: "visibility 0", method: "POST", path: q + "lease", body: `{"visibility_ms":0}`, status: 400, code: inv, field: "visibility_ms"},
		{name: "wait too long", method: "POST", path: q + "lease", body: `{"wait_ms":30001}`, status: 400, code: inv, field: "wait_ms"},
		{name: "ack without receipts", method: "POST", path: q + "ack", body: `{}`, status: 400, code: inv, field: "receipts"},
		{name: "ack with no receipt", method: "POST", path: q + "ack", body: `{"receipts":[]}`, status: 400, code: inv, field: "receipts"},
		{name: "ack with an empty receipt", method: "POST", path: q + "ack", body: map[string]any{"receipts": []string{l[0].Receipt, ""}}, status: 400, code: inv, field: "receipts[1]"},
		{name: "nack without receipt", method: "POST", path: q + "nack", body: `{"error":"x"}`, status: 400, code: inv, field: "receipt"},
		{name: "nack negative delay", method: "POST", path: q + "nack", body: map[string]any{"receipt": l[0].Receipt, "delay_ms": -5}, status: 400, code: inv, field: "delay_ms"},
		{name: "nack error too long", method: "POST", path: q + "nack", body: map[string]any{"receipt": l[0].Receipt, "error": strings.Repeat("e", 4097)}, status: 400, code: inv, field: "error"},
		{name: "dead limit 0", method: "GET", path: q + "dead?limit=0", status: 400, code: inv, field: "limit"},
		{name: "dead bad cursor", method: "GET", path: q + "dead?cursor=nonsense", status: 400, code: inv, field: "cursor"},
		{name: "queues limit too large", method: "GET", path: "/v1/queues?limit=1001", status: 400, code: inv, field: "limit"},
		{name: "stats of a bad topic", method: "GET", path: "/v1/queues/a%20b", status: 400, code: inv, field: "topic"},
		{name: "the lease still holds", method: "GET", path: "/v1/queues/bad", status: 200,
			check: bodyIs(`{"topic":"bad","ready":0,"leased":1,"delayed":0,"dead":0}`)},
	})
	// The bad requests left the lease alone: its receipt acks.
	if r := qAck(t, p, "bad", l[0].Receipt); r.Acked != 1 {
		t.Errorf("ack after the bad requests: %+v", r)
	}
}

// TestQueueDedupeInBatch: two messages of one batch with the same dedupe_id
// make one message; both entries answer it.
func TestQueueDedupeInBatch(t *testing.T) {
	p := startServer(t, t.TempDir())
	const topic = "dedupe-batch"
	head := p.headSeq(t)
	b := qPublish(t, p, topic, 201, map[string]any{"messages": []map[string]any{
		{"payload": 1, "dedupe_id": "same"}, {"payload": 2, "dedupe_id": "same"}, {"payload": 3},
	}})
	if len(b) != 3 || b[0] != b[1] || b[2].ID == b[0].ID {
		t.Errorf("batch with a repeated dedupe id: %+v", b)
	}
	if h := p.headSeq(t); h != head+2 {
		t.Errorf("batch committed %d events, want 2 (two messages)", h-head)
	}
	wantStats(t, p, topic, 2, 0, 0, 0)
}

// forgeReceipt returns r with its last byte changed: the same message and
// lease, another nonce.
func forgeReceipt(t *testing.T, r string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(r, "r1."))
	if err != nil || len(b) == 0 {
		t.Fatalf("receipt %q does not decode: %v", r, err)
	}
	b[len(b)-1] ^= 0xFF
	return "r1." + base64.RawURLEncoding.EncodeToString(b)
}
