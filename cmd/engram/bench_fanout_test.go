package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	ns := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC).UnixNano()
	b := appendStamp(nil, ns, 42)
	if got := string(b); got != "ts:1795428000123456789:42:" {
		t.Fatalf("stamp %q", got)
	}
	frame := []byte(`{"op":"event","id":"s","event":{"seq":7,"data":{"payload":"` + string(b) + `lorem"}}}`)
	gotNs, idx, ok := parseStamp(frame)
	if !ok || gotNs != ns || idx != 42 {
		t.Errorf("parseStamp: %d %d %v", gotNs, idx, ok)
	}
	for _, bad := range []string{
		`{"payload":"lorem"}`, `{"payload":"ts:"}`, `{"payload":"ts:12"}`, `{"payload":"ts:12:"}`,
		`{"payload":"ts:12:3"}`, `{"payload":"ts:x:3:"}`, `{"payload":"ts:12345678901234567890123:3:"}`,
	} {
		if _, _, ok := parseStamp([]byte(bad)); ok {
			t.Errorf("parseStamp(%s) accepted", bad)
		}
	}
}

func TestParseSeqField(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{`{"op":"event","id":"s","event":{"seq":1234,"time":"x","data":{"seq":1234}}}`, 1234, true},
		{`{"seq":9,"payload":"ts:1:9:xx"}`, 9, true},
		{`{"seq":0}`, 0, false},
		{`{"seq":"7"}`, 0, false},
		{`{"op":"pong"}`, 0, false},
	} {
		got, ok := parseSeqField([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("parseSeqField(%s) = %d %v, want %d %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParseEventTime(t *testing.T) {
	want := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC).UnixNano()
	frame := []byte(`{"seq":42,"time":"2026-11-22T10:00:00.123456789Z","type":"workunit.created"}`)
	if got, ok := parseEventTime(frame); !ok || got != want {
		t.Errorf("fixed layout: %d %v, want %d", got, ok, want)
	}
	// Anything else RFC 3339 goes through time.Parse.
	frame = []byte(`{"time":"2026-11-22T12:00:00.123456789+02:00"}`)
	if got, ok := parseEventTime(frame); !ok || got != want {
		t.Errorf("offset: %d %v, want %d", got, ok, want)
	}
	frame = []byte(`{"time":"2026-11-22T10:00:00.5Z"}`)
	if got, ok := parseEventTime(frame); !ok || got != want-123456789+500000000 {
		t.Errorf("short fraction: %d %v", got, ok)
	}
	for _, bad := range []string{`{"seq":1}`, `{"time":"yesterday"}`, `{"time":"2026-13-22T10:00:00.123456789Z"}`, `{"time":"2026-11-22T10:00:00.123456789Z`} {
		if _, ok := parseEventTime([]byte(bad)); ok {
			t.Errorf("parseEventTime(%s) accepted", bad)
		}
	}
	// The fast path agrees with time.Parse.
	ts := time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC)
	s := ts.Format("2006-01-02T15:04:05.000000000Z07:00")
	if got, ok := parseFixedUTC([]byte(s)); !ok || got != ts.UnixNano() {
		t.Errorf("parseFixedUTC(%s) = %d %v", s, got, ok)
	}
}

func TestRawFrameAndUnitBody(t *testing.T) {
	f := rawFrame(17, 1700000000000000000, rawFrameSize)
	if len(f) != rawFrameSize || !json.Valid(f) {
		t.Fatalf("raw frame (%d B) %s", len(f), f)
	}
	if seq, ok := parseSeqField(f); !ok || seq != 17 {
		t.Errorf("raw seq %d %v", seq, ok)
	}
	if ns, idx, ok := parseStamp(f); !ok || ns != 1700000000000000000 || idx != 17 {
		t.Errorf("raw stamp %d %d %v", ns, idx, ok)
	}

	u := stampedUnitJSON("bench-fanout-ws-1000", 1700000000000000000, 123456, recordSize)
	if len(u) != recordSize || !json.Valid(u) {
		t.Fatalf("unit body (%d B) %s", len(u), u)
	}
	var tu trivialUnit
	if err := json.Unmarshal(u, &tu); err != nil || tu.ContextID != "bench-fanout-ws-1000" || tu.Type != "MESSAGE" {
		t.Errorf("unit body: %v %+v", err, tu)
	}
	// As an event's data the payload keeps its stamp.
	ev := []byte(`{"op":"event","id":"s","event":{"seq":5,"data":` + string(u) + `}}`)
	if ns, idx, ok := parseStamp(ev); !ok || ns != 1700000000000000000 || idx != 123456 {
		t.Errorf("event stamp %d %d %v", ns, idx, ok)
	}
	if topicOf("c1") != "contexts/c1" || sanitizeID("a b/c") != "a-b-c" {
		t.Error("topicOf/sanitizeID")
	}
}

func TestFanWindow(t *testing.T) {
	w := newFanWindow(2, 3) // 2 in flight, 3 subscribers
	if len(w.ring) != 4 {
		t.Fatalf("ring %d, want 4", len(w.ring))
	}
	for k := int64(0); k < 2; k++ {
		if !w.acquire(k) {
			t.Fatalf("acquire %d", k)
		}
	}
	got := make(chan bool, 1)
	go func() { got <- w.acquire(2) }() // waits for event 0 at all 3
	w.delivered(0)
	w.delivered(0)
	select {
	case <-got:
		t.Fatal("event 2 acquired with event 0 at 2 of 3 subscribers")
	case <-time.After(20 * time.Millisecond):
	}
	w.delivered(0)
	if ok := <-got; !ok {
		t.Fatal("acquire 2 after event 0 completed")
	}
	// A cut subscriber lowers the target: event 1 is complete at 2 of 3.
	w.delivered(1)
	w.delivered(1)
	go func() { got <- w.acquire(3) }()
	select {
	case <-got:
		t.Fatal("event 3 acquired early")
	case <-time.After(20 * time.Millisecond):
	}
	w.cutOne()
	if ok := <-got; !ok {
		t.Fatal("acquire 3 after a cut")
	}
	// A failed post completes at once.
	w.failed(2)
	if !w.acquire(4) {
		t.Fatal("acquire 4 after 2 failed")
	}
	// Close wakes waiters with false.
	go func() { got <- w.acquire(5) }() // waits for event 3
	time.Sleep(10 * time.Millisecond)
	w.close()
	if ok := <-got; ok {
		t.Fatal("acquire after close must be false")
	}
	if w.acquire(100) {
		t.Fatal("acquire on a closed window must be false")
	}
}

func eventFrame(seq uint64, ns, idx int64, commit string) []byte {
	b := []byte(`{"op":"event","id":"s","event":{"seq":`)
	b = append(b, []byte(strings.TrimSpace(jsonNum(seq)))...)
	b = append(b, `,"time":"`+commit+`","type":"workunit.created","topic":"contexts/c","data":{"payload":"`...)
	b = appendStamp(b, ns, idx)
	return append(b, `x"}}}`...)
}

func jsonNum(v uint64) string { b, _ := json.Marshal(v); return string(b) }

func TestSubGroupAccounting(t *testing.T) {
	g := &subGroup{transport: "ws", commit: true, conns: []*fanConn{{}, {}}}
	commit := time.Unix(1000, 0).UTC()
	cs := commit.Format("2006-01-02T15:04:05.000000000Z07:00")
	stamp := commit.Add(-time.Millisecond).UnixNano()
	win := newFanWindow(4, 2)
	g.win.Store(win)
	now := commit.Add(4 * time.Millisecond).UnixNano()
	g.record(g.conns[0], eventFrame(10, stamp, 0, cs), now)
	g.record(g.conns[1], eventFrame(10, stamp, 0, cs), now+int64(time.Millisecond))
	g.record(g.conns[0], eventFrame(11, stamp+int64(time.Millisecond), 1, cs), now+int64(2*time.Millisecond))
	g.record(g.conns[0], eventFrame(11, stamp, 1, cs), now) // repeated seq
	g.record(g.conns[0], []byte(`{"op":"event","id":"s","event":{"seq":12,"data":{"payload":"no stamp"}}}`), now)
	if got := win.ring[0].Load(); got != 2 {
		t.Errorf("window count of event 0: %d", got)
	}
	if g.deliveredTotal() != 4 {
		t.Errorf("delivered %d, want 4", g.deliveredTotal())
	}
	g.markLagged(g.conns[1])
	g.markLagged(g.conns[1]) // counted once
	if win.cut.Load() != 1 || g.live() != 1 {
		t.Errorf("cut %d live %d", win.cut.Load(), g.live())
	}
	tot := g.collect()
	if tot.Delivered != 4 || tot.OutOfOrder != 1 || tot.Lagged != 1 || tot.Ended != 0 {
		t.Errorf("totals %+v", tot)
	}
	if tot.MinStamp != stamp || tot.MaxRecv != now+int64(2*time.Millisecond) {
		t.Errorf("span %d..%d", tot.MinStamp, tot.MaxRecv)
	}
	if p50 := tot.Hist.ValueAtQuantile(50); p50 < 4900 || p50 > 5100 { // 5 ms in µs
		t.Errorf("latency p50 %d µs, want ~5000", p50)
	}
	if c := tot.CommitHist.ValueAtQuantile(50); c < 3900 || c > 4100 {
		t.Errorf("commit latency p50 %d µs, want ~4000", c)
	}
	if l, e := g.cutCounts(); l != 1 || e != 0 {
		t.Errorf("cutCounts %d %d", l, e)
	}
	// An ended connection (not by the bench) is counted, a lagged one
	// that then closes (SSE) only as lagged.
	g.markEnded(g.conns[0], nil)
	g.markEnded(g.conns[1], nil)
	if l, e := g.cutCounts(); l != 1 || e != 1 {
		t.Errorf("cutCounts after ends %d %d", l, e)
	}
	g.reset()
	if tot := g.collect(); tot.Delivered != 0 || tot.Hist.TotalCount() != 0 || tot.Lagged != 1 || tot.Ended != 1 {
		t.Errorf("after reset %+v", tot)
	}
	// Closing by the bench is not an ending.
	g2 := &subGroup{conns: []*fanConn{{}}}
	g2.closing.Store(true)
	g2.markEnded(g2.conns[0], nil)
	if g2.live() != 1 {
		t.Error("a connection closed by the bench counted as ended")
	}
}

func TestWaitDrain(t *testing.T) {
	g := &subGroup{conns: []*fanConn{{delivered: 3}}}
	start := time.Now()
	if n := g.waitDrain(t.Context(), 3, time.Second, time.Second); n != 3 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("reached: %d after %v", n, time.Since(start))
	}
	start = time.Now()
	if n := g.waitDrain(t.Context(), 10, 60*time.Millisecond, 5*time.Second); n != 3 || time.Since(start) > 2*time.Second {
		t.Errorf("quiet: %d after %v", n, time.Since(start))
	}
}

func TestDialAllStopsOnError(t *testing.T) {
	var mu sync.Mutex
	closed := 0
	_, err := dialAll(t.Context(), 50, 4, func(i int) (*fanConn, error) {
		if i == 20 {
			return nil, errTest
		}
		return &fanConn{close: func() { mu.Lock(); closed++; mu.Unlock() }}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "connection 21 of 50") {
		t.Fatalf("err %v", err)
	}
	if closed == 0 {
		t.Error("the connections opened before the error were not closed")
	}
	conns, err := dialAll(t.Context(), 5, 8, func(i int) (*fanConn, error) { return &fanConn{}, nil })
	if err != nil || len(conns) != 5 || conns[4] == nil {
		t.Errorf("dialAll: %v %d", err, len(conns))
	}
}

var errTest = &testError{}

type testError struct{}

func (*testError) Error() string { return "test error" }

func fanTotalsOf(delivered int64, lat time.Duration, span time.Duration) fanTotals {
	t := fanTotals{Hist: newFanHist(), CommitHist: newFanHist(), Delivered: delivered, MinStamp: 1e18, MaxRecv: 1e18 + int64(span)}
	for i := int64(0); i < delivered; i++ {
		t.Hist.RecordValue(lat.Microseconds())
	}
	return t
}

func TestFanMeasurement(t *testing.T) {
	tot := fanTotalsOf(1000, 3*time.Millisecond, 2*time.Second)
	tot.Lagged, tot.Ended, tot.FirstErr = 3, 1, "EOF"
	m := fanMeasurement(fanStep{ID: "fanout.ws.n100.sat", Name: "x", Kind: kindScenario, Transport: "ws", Subs: 100, Events: 11,
		LaggedBefore: 1}, tot)
	if m.Group != groupFanout || m.Clients != 100 || m.Expected != 1100 || m.Delivered != 1000 || m.Lost != 100 {
		t.Errorf("counts %+v", m)
	}
	if m.Rate != 500 || m.DurationS != 2 {
		t.Errorf("rate %v over %v s, want 500 over 2", m.Rate, m.DurationS)
	}
	if m.P50Ms < 2.99 || m.P50Ms > 3.01 || m.P99Ms < 2.99 || m.P99Ms > 3.01 {
		t.Errorf("latency %v %v", m.P50Ms, m.P99Ms)
	}
	if m.Lagged != 2 || m.ConnsEnded != 1 || m.Invalid != "" {
		t.Errorf("lagged %d ended %d invalid %q", m.Lagged, m.ConnsEnded, m.Invalid)
	}
	for _, want := range []string{"11 events to 100 subscribers", "delivered 1000 of 1100 (100 lost)", "2 subscriptions cut as lagged", "1 connections ended (EOF)"} {
		if !strings.Contains(m.Note, want) {
			t.Errorf("note %q lacks %q", m.Note, want)
		}
	}
	// Failed writes, repeats, surplus and nothing at all make it invalid.
	tot = fanTotalsOf(12, time.Millisecond, time.Second)
	tot.OutOfOrder = 2
	m = fanMeasurement(fanStep{Transport: "raw-ws", Subs: 1, Events: 10, Failed: 1, FirstErr: "status 500"}, tot)
	for _, want := range []string{"1 writes failed (first: status 500)", "2 events out of order", "2 deliveries more than expected"} {
		if !strings.Contains(m.Invalid, want) {
			t.Errorf("invalid %q lacks %q", m.Invalid, want)
		}
	}
	if !strings.Contains(m.Note, "10 messages") {
		t.Errorf("raw note %q", m.Note)
	}
	m = fanMeasurement(fanStep{Subs: 1, Events: 1}, fanTotals{})
	if !strings.Contains(m.Invalid, "nothing delivered") || m.Rate != 0 {
		t.Errorf("empty: %+v", m)
	}
}

func TestMemoryMeasurement(t *testing.T) {
	m := memoryMeasurement(10000, 10000, 10000, 20e6, 270e6, 280e6, 290e6, 2*time.Second)
	if m.ID != memoryID || m.Group != groupMemory || m.RSSMB != 270 || m.BaseRSSMB != 20 || m.PeakRSSMB != 290 || m.PerSubKB != 25 || m.Invalid != "" {
		t.Errorf("%+v", m)
	}
	m = memoryMeasurement(5000, 4990, 10000, 20e6, 150e6, 150e6, 0, time.Second)
	if !strings.Contains(m.Invalid, "only 5000 of 10000") || !strings.Contains(m.Invalid, "10 subscribers dropped") {
		t.Errorf("invalid %q", m.Invalid)
	}
}

// realtimeMeasurements is a complete, valid set of real-time measurements.
func realtimeMeasurements() []measurement {
	return []measurement{
		{ID: fanCeilR50, Group: groupFanout, Kind: kindCeiling, Clients: 1000, Rate: 50000, P99Ms: 8},
		{ID: fanBudgetR50, Group: groupFanout, Kind: kindScenario, Clients: 1000, Rate: 50000, P99Ms: 20, Expected: 500000, Delivered: 500000},
		{ID: fanCeilSat, Group: groupFanout, Kind: kindCeiling, Clients: 1000, Rate: 400000},
		{ID: fanBudgetSat, Group: groupFanout, Kind: kindScenario, Clients: 1000, Rate: 300000, Expected: 3e6, Delivered: 3e6},
		{ID: memoryID, Group: groupMemory, Clients: 10000, RSSMB: 250},
	}
}

func TestComputeRealtimeBudgets(t *testing.T) {
	bs := computeRealtimeBudgets(realtimeMeasurements(), "always")
	if len(bs) != 4 {
		t.Fatalf("%d budgets", len(bs))
	}
	for _, b := range bs {
		if b.Result != resultMet {
			t.Errorf("%s: %s (%+v)", b.Name, b.Result, b)
		}
	}
	if b := budgetByPrefix(t, bs, "fan-out to 1,000 WS subscribers, saturation"); b.Ratio != 0.75 || b.Ceiling != 400000 {
		t.Errorf("sat %+v", b)
	}
	if b := budgetByPrefix(t, bs, "fan-out to 1,000 WS subscribers, 50"); b.Figure != 20 || b.Ceiling != 8 {
		t.Errorf("p99 %+v", b)
	}

	ms := realtimeMeasurements()
	ms[1].P99Ms = 25.1
	ms[3].Rate = 279999
	ms[3].Lost, ms[3].Lagged = 10, 1
	ms[4].RSSMB = 300.5
	for _, b := range computeRealtimeBudgets(ms, "always") {
		if b.Result != resultNotMet {
			t.Errorf("%s: %s, want NOT MET (%+v)", b.Name, b.Result, b)
		}
	}
	if b := budgetByPrefix(t, computeRealtimeBudgets(ms, "always"), "fan-out to 1,000 WS subscribers: none"); b.Figure != 10 || !strings.Contains(b.Reason, "1 subscriptions cut as lagged") {
		t.Errorf("lost %+v", b)
	}
	// A lagged cut-off with nothing lost (the cut came after the last event) still fails.
	ms = realtimeMeasurements()
	ms[1].Lagged = 1
	if b := budgetByPrefix(t, computeRealtimeBudgets(ms, "always"), "fan-out to 1,000 WS subscribers: none"); b.Result != resultNotMet {
		t.Errorf("lagged only %+v", b)
	}
	// Invalid, missing, noisy, --sync=none.
	ms = realtimeMeasurements()
	ms[3].Invalid = "3 writes failed"
	ms[2].OtherCores = 0.5
	bs = computeRealtimeBudgets(ms[:4], "none")
	if b := budgetByPrefix(t, bs, "fan-out to 1,000 WS subscribers, saturation"); b.Result != resultInvalid || !strings.Contains(b.Reason, "3 writes failed") {
		t.Errorf("invalid %+v", b)
	}
	if b := budgetByPrefix(t, bs, "memory"); b.Result != resultNotMeasured || !strings.Contains(b.Reason, memoryID) {
		t.Errorf("missing %+v", b)
	}
	if b := budgetByPrefix(t, bs, "fan-out to 1,000 WS subscribers, 50"); !strings.Contains(b.Reason, "--sync=none") || strings.Contains(b.Reason, "noisy") {
		t.Errorf("sync/noise %+v", b)
	}
	ms[3].Invalid = ""
	if b := budgetByPrefix(t, computeRealtimeBudgets(ms, "always"), "fan-out to 1,000 WS subscribers, saturation"); !strings.Contains(b.Reason, "noisy") || !strings.Contains(b.Reason, fanCeilSat+" 0.50") {
		t.Errorf("noisy %+v", b)
	}
	if bs := computeRealtimeBudgets(nil, "always"); bs[0].Result != resultNotMeasured || bs[2].Result != resultNotMeasured {
		t.Errorf("nothing measured %+v", bs)
	}
}

func TestFanRowVerdictAndReport(t *testing.T) {
	ms := realtimeMeasurements()
	ms[3].Lost = 5
	bs := computeRealtimeBudgets(ms, "always")
	if b, r := fanRowVerdict(ms[1], bs); b != "p99 ≤ 25 ms, none lost" || r != resultMet {
		t.Errorf("r50 row: %q %q", b, r)
	}
	if b, r := fanRowVerdict(ms[3], bs); !strings.HasPrefix(b, "≥ 0.70× raw") || r != resultNotMet {
		t.Errorf("sat row with losses: %q %q", b, r)
	}
	if b, r := fanRowVerdict(ms[0], bs); b != "-" || r != "-" {
		t.Errorf("ceiling row: %q %q", b, r)
	}
	if _, r := fanRowVerdict(ms[4], bs); r != resultMet {
		t.Errorf("memory row: %q", r)
	}
	if _, r := fanRowVerdict(ms[4], nil); r != resultNotMeasured {
		t.Errorf("memory row without budgets: %q", r)
	}

	ms[1].compareWith(ms[0])
	r := benchReport{
		Date: "2026-11-23T10:00:00Z", Command: "engram bench --only fanout,memory",
		Machine:      machineInfo{NumCPU: 2, GOMAXPROCS: 2},
		Config:       reportConfig{FanoutServer: "separate process", FanoutPosters: 64, FanoutWindow: 1024},
		Measurements: ms,
		Budgets:      append(computeBudgets(ms, "always"), bs...),
		Notes:        []string{"memory: only 5000 fit"},
	}
	out := formatReport(r)
	for _, want := range []string{"NOTE:     memory: only 5000 fit", "-- real-time: fan-out of one topic", "Engram server separate process",
		"64 writers, at most 1024 events in flight", "delivered/expected", "500000/500000", "1.00×", "p99 ≤ 25 ms, none lost",
		"-- real-time: memory", "250 MB", "≤ 300 MB", budgetNameSat, "NOT MET"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, budgetNameAll) && strings.Contains(line, " 5 lost ") && strings.Contains(line, "NOT MET") {
			found = true
		}
	}
	if !found {
		t.Errorf("no none-lost budget line with 5 lost, NOT MET:\n%s", out)
	}
	if strings.Contains(out, "-- measurements (each scenario") {
		t.Errorf("the HTTP table must not appear without HTTP measurements:\n%s", out)
	}
	// The real-time tables stay out of a report without them.
	if strings.Contains(formatReport(benchReport{Measurements: fullMeasurements()}), "real-time") {
		t.Error("real-time section in an HTTP-only report")
	}
}

func TestProcHelpers(t *testing.T) {
	status := "Name:\tengram-server\nVmPeak:\t 2000000 kB\nVmHWM:\t  300000 kB\nVmRSS:\t  250000 kB\nThreads:\t9\n"
	rss, hwm, ok := parseProcStatusRSS([]byte(status))
	if !ok || rss != 250000*1024 || hwm != 300000*1024 {
		t.Errorf("rss %d hwm %d %v", rss, hwm, ok)
	}
	if _, _, ok := parseProcStatusRSS([]byte("Name:\tx\n")); ok {
		t.Error("no VmRSS accepted")
	}
	line := []byte(`{"time":"2026-11-23T11:49:12.14866591Z","level":"INFO","msg":"engram listening","version":"dev","addr":"127.0.0.1:39389","data":"/tmp/fo/data"}`)
	if a, ok := listeningAddrFromJSONLog(line); !ok || a != "127.0.0.1:39389" {
		t.Errorf("listening %q %v", a, ok)
	}
	if a, ok := listeningAddrFromJSONLog([]byte(`{"msg":"engram listening","addr":"[::]:8080"}`)); !ok || a != "127.0.0.1:8080" {
		t.Errorf("unspecified host %q %v", a, ok)
	}
	for _, bad := range []string{`{"msg":"engram stopped","addr":"127.0.0.1:1"}`, `engram listening addr=127.0.0.1:1`, `{"msg":"engram listening"}`} {
		if _, ok := listeningAddrFromJSONLog([]byte(bad)); ok {
			t.Errorf("%s accepted", bad)
		}
	}
	if a, ok := listeningAddrFromLine([]byte("listening 127.0.0.1:4000")); !ok || a != "127.0.0.1:4000" {
		t.Errorf("broadcast listening %q %v", a, ok)
	}
	if _, ok := listeningAddrFromLine([]byte("listening soon")); ok {
		t.Error("bad broadcast line accepted")
	}
	g := parseGoRuntimeMetrics([]byte("# HELP go_goroutines x\ngo_goroutines 20016\ngo_memstats_heap_inuse_bytes 1.2e+08\ngo_memstats_stack_inuse_bytes 1.6384e+08\n"))
	if !g.ok || g.Goroutines != 20016 || g.HeapInuse != 1.2e8 || g.StackInuse != 1.6384e8 {
		t.Errorf("go runtime metrics %+v", g)
	}
	if parseGoRuntimeMetrics([]byte("go_goroutines 3\n")).ok {
		t.Error("partial go runtime metrics accepted")
	}
	if fitConns(10000, 20000) != 10000 || fitConns(10000, 8192) != 8192-fdReserve || fitConns(10, 100) != 0 {
		t.Error("fitConns")
	}
	if ticks, ok := procTicks(1 << 30); ok || ticks != 0 {
		t.Error("procTicks of no process")
	}
	a := cpuWithChildren{base: cpuSample{at: time.Unix(0, 0), busy: 0, self: 0, ok: true}, child: []int64{100}}
	b := cpuWithChildren{base: cpuSample{at: time.Unix(2, 0), busy: 400, self: 100, ok: true}, child: []int64{250}}
	if got := childCores(a, b, 0); got != 0.75 {
		t.Errorf("childCores %v", got)
	}
	if got := otherCoresWith(a, b); got != 0.75 { // (400-100)/100/2 = 1.5, less 0.75
		t.Errorf("otherCoresWith %v", got)
	}
}

func TestParseBenchFlagsRealtime(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--only", "fanout,memory"}, &errb)
	if err != nil || !cfg.want("fanout") || !cfg.want("memory") || cfg.wantHTTP() {
		t.Fatalf("%v %+v", err, cfg)
	}
	if len(cfg.FanoutSubs) != 3 || cfg.FanoutSubs[2] != 1000 || cfg.SSESubs != 1000 || cfg.FanoutRate != 50 || cfg.IdleSubs != 10000 || cfg.FanoutInproc {
		t.Errorf("defaults %+v", cfg)
	}
	cfg, err = parseBenchFlags([]string{"--only", "fanout", "--cpuprofile", "/tmp/x", "--fanout-subs", "10, 20"}, &errb)
	if err != nil || !cfg.FanoutInproc || len(cfg.FanoutSubs) != 2 || cfg.FanoutSubs[1] != 20 {
		t.Errorf("--cpuprofile implies in-process: %v %+v", err, cfg)
	}
	cfg, err = parseBenchFlags([]string{"--cpuprofile", "/tmp/x", "--fanout-inproc=false"}, &errb)
	if err != nil || cfg.FanoutInproc {
		t.Errorf("explicit --fanout-inproc=false: %v %+v", err, cfg)
	}
	if cfg, _ := parseBenchFlags(nil, &errb); !cfg.want("fanout") || !cfg.want("memory") || !cfg.wantHTTP() {
		t.Error("all groups by default")
	}
	for _, bad := range [][]string{{"--fanout-subs", "0"}, {"--fanout-subs", "x"}, {"--fanout-rate", "0"}, {"--fanout-window", "0"}, {"--idle-subs", "0"}, {"--sse-subs", "-1"}, {"--only", "fan"}} {
		if _, err := parseBenchFlags(bad, &errb); err != errUsage {
			t.Errorf("%q: err %v, want errUsage", bad, err)
		}
	}
	// The broadcast server is a hidden argument: not in any help.
	var out bytes.Buffer
	dispatch([]string{"help", "bench"}, &out, &out)
	dispatch([]string{"help"}, &out, &out)
	if strings.Contains(out.String(), broadcastServerArg) || !strings.Contains(out.String(), "fanout") {
		t.Errorf("help:\n%s", out.String())
	}
}
