package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"engram/internal/engine"
)

func TestBenchQueuesBodies(t *testing.T) {
	var one struct {
		Payload string `json:"payload"`
	}
	msg := qbMessageJSON(recordSize)
	if err := json.Unmarshal(msg, &one); err != nil || len(msg) != recordSize || one.Payload == "" {
		t.Fatalf("message %d B (%v): %s", len(msg), err, msg)
	}
	var batch struct {
		Messages []engine.PublishInput `json:"messages"`
	}
	body := qbBatchJSON(qbPubBatch, recordSize)
	if err := json.Unmarshal(body, &batch); err != nil || len(batch.Messages) != qbPubBatch {
		t.Fatalf("batch: %d messages (%v)", len(batch.Messages), err)
	}
	for _, m := range batch.Messages {
		if !bytes.Equal(m.Payload, []byte(`"`+one.Payload+`"`)) {
			t.Fatalf("batch payload %s", m.Payload)
		}
	}
	var lease engine.LeaseInput
	if err := json.Unmarshal(qbLeaseBody(10), &lease); err != nil || *lease.Max != 10 || *lease.VisibilityMs != qbVisibilityMs || lease.WaitMs != nil {
		t.Fatalf("lease body %s (%v)", qbLeaseBody(10), err)
	}
	var ack struct {
		Receipts []string `json:"receipts"`
	}
	if err := json.Unmarshal(qbAckBody([]byte("junk")[:0], [][]byte{[]byte("r1"), []byte("r-2_x")}), &ack); err != nil ||
		strings.Join(ack.Receipts, ",") != "r1,r-2_x" {
		t.Fatalf("ack body: %v %v", ack.Receipts, err)
	}
}

func TestBenchQueuesParseLease(t *testing.T) {
	payload := json.RawMessage(qbMessageJSON(recordSize))
	msgs := []engine.Leased{
		{ID: "01JDQ8A", Payload: payload, Attempt: 1, Receipt: "AAAAAQ-_x", LeaseExpiresAt: "2026-11-23T00:00:00Z", PublishedAt: "2026-11-23T00:00:00Z"},
		{ID: "01JDQ8B", Payload: json.RawMessage(`"plain"`), Attempt: 2, Receipt: "BBBB", LeaseExpiresAt: "x", PublishedAt: "y"},
		{ID: "01JDQ8C", Payload: json.RawMessage(`{"n":1}`), Attempt: 11, Receipt: "CCCC"},
	}
	body, err := json.Marshal(struct {
		Messages []engine.Leased `json:"messages"`
	}{msgs})
	if err != nil {
		t.Fatal(err)
	}
	rs, redelivered, err := qbParseLease(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, string(r))
	}
	if strings.Join(got, ",") != "AAAAAQ-_x,BBBB,CCCC" || redelivered != 2 {
		t.Fatalf("receipts %v, redelivered %d", got, redelivered)
	}
	if rs, _, err := qbParseLease(rs[:0], []byte(`{"messages":[]}`)); err != nil || len(rs) != 0 {
		t.Fatalf("empty lease: %v %v", rs, err)
	}
	for _, bad := range []string{`{"error":{"code":"x"}}`, `{"messages":[{"attempt":x}]}`, `{"messages":[{"attempt":1,"receipt":""}]}`, `{"messages":[{"attempt":1,"receipt":"a\"b"}]}`} {
		if _, _, err := qbParseLease(nil, []byte(bad)); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
}

func TestBenchQueuesPublishCheck(t *testing.T) {
	if note, inv := qbPublishCheck(100, 100, 16); inv != "" || !strings.Contains(note, "100 messages added, 100 acknowledged") {
		t.Errorf("exact: %q %q", note, inv)
	}
	if _, inv := qbPublishCheck(116, 100, 16); inv != "" {
		t.Errorf("in flight at the cut: %q", inv)
	}
	if _, inv := qbPublishCheck(99, 100, 16); !strings.Contains(inv, "1 acknowledged messages missing") {
		t.Errorf("lost: %q", inv)
	}
	if _, inv := qbPublishCheck(117, 100, 16); !strings.Contains(inv, "1 more messages") {
		t.Errorf("extra: %q", inv)
	}
}

func TestBenchQueuesConsumeCheck(t *testing.T) {
	before := qbStats{Ready: 20000}
	ok := qbConsumeResult{Leased: 25000, Acked: 25000}
	if note, inv := qbConsumeCheck(before, qbStats{Ready: 15000}, 20000, ok); inv != "" || !strings.Contains(note, "25000 removed") {
		t.Errorf("exact: %q %q", note, inv)
	}
	cases := []struct {
		after qbStats
		r     qbConsumeResult
		want  string
	}{
		{qbStats{Ready: 15001}, ok, "server removed 24999 messages, clients acked 25000"},
		{qbStats{Ready: 15000, Leased: 3}, ok, "leased count 0→3"},
		{qbStats{Ready: 15000, Dead: 1}, ok, "dead 0→1"},
		{qbStats{Ready: 15000}, qbConsumeResult{Leased: 25000, Acked: 25000, Stale: 2}, "2 stale"},
		{qbStats{Ready: 15000}, qbConsumeResult{Leased: 25000, Acked: 25000, Redelivered: 1}, "1 redeliveries"},
		{qbStats{Ready: 15001}, qbConsumeResult{Leased: 25000, Acked: 24999}, "25000 leased but 24999 acked"},
	}
	for _, c := range cases {
		if _, inv := qbConsumeCheck(before, c.after, 20000, c.r); !strings.Contains(inv, c.want) {
			t.Errorf("%+v %+v: invalid %q, want %q", c.after, c.r, inv, c.want)
		}
	}
}

func TestBenchQueuesConsumeResultAdd(t *testing.T) {
	a, b := newQBConsumeResult(), newQBConsumeResult()
	a.Acked, a.Leased, a.Cycles = 10, 10, 1
	a.Lease.RecordValue(100)
	b.Acked, b.Leased, b.Cycles, b.Drained, b.FirstErr = 5, 5, 1, true, "x"
	b.Lease.RecordValue(300)
	b.Ack.RecordValue(50)
	a.add(b)
	if a.Acked != 15 || a.Leased != 15 || a.Cycles != 2 || !a.Drained || a.FirstErr != "x" || a.Lease.TotalCount() != 2 || a.Ack.TotalCount() != 1 {
		t.Fatalf("%+v", a)
	}
	m := qbConsumeMeasurement("queues.lease_ack.m10.c1", "n", 1, qbConsumeResult{Acked: 100, Elapsed: 2e9, Lease: a.Lease, Ack: a.Ack})
	if m.Rate != 50 || m.Unit != "msg" || m.Group != groupQueues || m.Queue == nil || m.Queue.ReqPerS != 1.5 || m.Invalid != "" {
		t.Fatalf("measurement %+v %+v", m, m.Queue)
	}
}

func qbTestMeasurements() []measurement {
	q := func(id string, rate, p99 float64, verified bool) measurement {
		return measurement{ID: id, Group: groupQueues, Rate: rate, P99Ms: p99, Queue: &qbFigures{Acked: 10, ServerCounted: 10, Verified: verified, BacklogStart: 1000000}}
	}
	return []measurement{
		{ID: qbFsyncID, P99Ms: 0.4},
		{ID: qbPebbleSetsID, Rate: 90000},
		{ID: qbCeilHTTPID(1), Group: groupQueues, Rate: 10000, P99Ms: 0.3},
		{ID: qbCeilHTTPID(16), Group: groupQueues, Rate: 60000},
		q(qbPublishID(1), 1500, 0.6, true),
		q(qbPublishID(16), 45000, 3, true),
		q(qbLeaseAckID(10, 16), 6000, 20, true),
		q(qbBacklogID(10, 16), 5700, 20, true),
	}
}

func TestBenchQueuesBudgets(t *testing.T) {
	if got := computeQueuesBudgets([]measurement{{ID: "write.c1"}}, "always"); got != nil {
		t.Fatalf("group did not run: %+v", got)
	}
	bs := computeQueuesBudgets(qbTestMeasurements(), "always")
	res := map[string]budgetResult{}
	for _, b := range bs {
		res[b.Name] = b
	}
	if b := res[qbBudgetNamePub1]; b.Result != resultMet || b.Ceiling != 0.7 {
		t.Errorf("publish c1: %+v", b)
	}
	if b := res[qbBudgetNamePub16]; b.Result != resultMet || b.Ratio != 0.75 {
		t.Errorf("publish c16: %+v", b)
	}
	back := "queues: lease max=10 + ack, 16 consumers, backlog 1000000 vs ≤20000: msgs/s"
	if b := res[back]; b.Result != resultMet || b.Ratio != 0.95 {
		t.Errorf("backlog: %+v (have %v)", b, bs)
	}
	if b := res[qbBudgetNameLost]; b.Result != resultMet || b.Figure != 0 {
		t.Errorf("lost: %+v", b)
	}

	ms := qbTestMeasurements()
	ms[7].Rate = 3000                                                      // backlog halves the rate
	ms[6].Queue = &qbFigures{Acked: 10, ServerCounted: 8, Verified: false} // two lost
	ms = ms[1:]                                                            // no fsync ceiling
	res = map[string]budgetResult{}
	for _, b := range computeQueuesBudgets(ms, "always") {
		res[b.Name] = b
	}
	if b := res[qbBudgetNamePub1]; b.Result != resultNotMeasured || !strings.Contains(b.Reason, qbFsyncID) {
		t.Errorf("publish c1 without fsync: %+v", b)
	}
	if b := res[back]; b.Result != resultNotMet {
		t.Errorf("backlog: %+v", b)
	}
	if b := res[qbBudgetNameLost]; b.Result != resultNotMet || b.Figure != 2 || !strings.Contains(b.Reason, qbLeaseAckID(10, 16)) {
		t.Errorf("lost: %+v", b)
	}
	for _, id := range []string{qbPublishID(1), qbCeilHTTPID(1), qbFsyncID} {
		if !budgetUses(budgetResult{Name: qbBudgetNamePub1}, id) {
			t.Errorf("publish c1 budget does not use %s", id)
		}
	}
	if budgetUses(budgetResult{Name: qbBudgetNamePub16}, qbFsyncID) {
		t.Error("publish c16 budget uses fsync")
	}
}

func TestBenchQueuesFormat(t *testing.T) {
	if formatQueues(benchReport{Measurements: []measurement{{ID: "write.c1"}}}) != "" {
		t.Error("queues table without the group")
	}
	r := benchReport{Measurements: qbTestMeasurements(), Config: reportConfig{DurationS: 1, Sync: "always", Queues: &qbReportConfig{Backlog: 1000000, PayloadBytes: 300}}}
	r.Measurements[7].Name, r.Measurements[7].Note = "lease max=10 + ack, 16 consumer(s), backlog of 1000000", "server: ok"
	r.Measurements[7].compareWith(r.Measurements[6])
	s := formatQueues(r)
	for _, want := range []string{"-- queues:", "large backlog 1000000", "backlog of 1000000", "0.95× queues.lease_ack.m10.c16", "10/10", "queues.backlog.lease_ack.m10.c16: server: ok"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, qbFsyncID) {
		t.Errorf("fsync ceiling in the queues table:\n%s", s)
	}
	if full := formatReport(r); !strings.Contains(full, "-- queues:") {
		t.Error("report lacks the queues table")
	}
}

func TestParseBenchFlagsQueues(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--only", "queues"}, &errb)
	if err != nil || !cfg.want("queues") || cfg.want("write") || !cfg.wantHTTP() || cfg.QueueBacklog != 1000000 {
		t.Fatalf("%+v %v", cfg, err)
	}
	if cfg, _ := parseBenchFlags([]string{"--quick"}, &errb); cfg.QueueBacklog != 100000 {
		t.Errorf("--quick backlog %d", cfg.QueueBacklog)
	}
	if cfg, _ := parseBenchFlags([]string{"--quick", "--queue-backlog", "1000000"}, &errb); cfg.QueueBacklog != 1000000 {
		t.Errorf("--quick --queue-backlog 1000000: %d", cfg.QueueBacklog)
	}
	if cfg, _ := parseBenchFlags([]string{"--queue-backlog", "0"}, &errb); cfg.QueueBacklog != 0 {
		t.Errorf("--queue-backlog 0: %d", cfg.QueueBacklog)
	}
	if _, err := parseBenchFlags([]string{"--queue-backlog", "-1"}, &errb); err != errUsage {
		t.Errorf("negative backlog: %v", err)
	}
}
