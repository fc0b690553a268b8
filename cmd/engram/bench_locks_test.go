package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"engram/internal/lockmgr"
	"engram/internal/wal"
)

func TestBenchLocksAcquireBody(t *testing.T) {
	var in lockmgr.AcquireInput
	body := lbAcquireBody([]byte("junk")[:0], "bench/lock/x1/7", "bench-x", 1234, 5000)
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if len(in.Resources) != 1 || in.Resources[0] != "bench/lock/x1/7" || in.Holder != "bench-x" || *in.TTLMs != 1234 || *in.WaitMs != 5000 {
		t.Fatalf("decoded %+v from %s", in, body)
	}
	in = lockmgr.AcquireInput{}
	body = lbAcquireBody(nil, "r", "h", 100, -1)
	if err := json.Unmarshal(body, &in); err != nil || in.WaitMs != nil || *in.TTLMs != 100 {
		t.Fatalf("without wait_ms: %s (%v)", body, err)
	}
}

func benchLockJSON(t *testing.T, id, resource string, token uint64, exp time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(&lockmgr.Lock{LockID: id, Resources: []string{resource, "other"}, Holder: "h", FencingToken: token,
		AcquiredAt: wal.FormatTime(exp.Add(-time.Second)), ExpiresAt: wal.FormatTime(exp)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBenchLocksParse(t *testing.T) {
	exp := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	lk := benchLockJSON(t, "01JDQ8AAAAAAAAAAAAAAAAAAAA", "a/b", 42, exp)
	l, ok := lbParseLock(lk)
	if !ok || l.ID != "01JDQ8AAAAAAAAAAAAAAAAAAAA" || l.Resource != "a/b" || l.Token != 42 || l.ExpiresNs != exp.UnixNano() {
		t.Fatalf("parsed %+v, %v from %s", l, ok, lk)
	}
	if _, ok := lbParseLock([]byte(`{"error":{"code":"conflict"}}`)); ok {
		t.Fatal("parsed an error answer as a lock")
	}
	at := exp.Add(3 * time.Millisecond)
	ev := wal.AppendEventJSON(nil, 77, at, lockmgr.Expired, lockmgr.Topic, lk)
	e, ok := lbParseEvent(ev)
	if !ok || e.Seq != 77 || e.Type != lbExpired || e.TimeNs != at.UnixNano() || e.Lock.ID != l.ID || e.Lock.ExpiresNs != exp.UnixNano() {
		t.Fatalf("event %+v, %v from %s", e, ok, ev)
	}
	if _, ok := lbParseEvent(wal.AppendEventJSON(nil, 78, at, "workunit.created", "contexts/c", []byte(`{"id":"x"}`))); ok {
		t.Fatal("parsed a non-lock event")
	}
}

func TestBenchLocksCheckHandovers(t *testing.T) {
	const res = "hot"
	mk := func(n int) ([]lbGrant, []lbEvent) {
		var gs []lbGrant
		var evs []lbEvent
		now := int64(1000)
		seq := uint64(10)
		for i := 0; i < n; i++ {
			l := lbLock{ID: "L" + string(rune('a'+i)), Resource: res, Token: uint64(100 + i)}
			gs = append(gs, lbGrant{Lock: l, AckNs: now + 5, RelSendNs: now + 6, RelAckNs: now + 9})
			seq++
			evs = append(evs, lbEvent{Seq: seq, Type: lbAcquired, TimeNs: now, Lock: l})
			seq++
			evs = append(evs, lbEvent{Seq: seq, Type: lbReleased, TimeNs: now + 7, Lock: l})
			// Another resource's events interleave.
			seq++
			evs = append(evs, lbEvent{Seq: seq, Type: lbAcquired, TimeNs: now + 7, Lock: lbLock{ID: "Z", Resource: "other", Token: 1}})
			now += 10
		}
		// The clients finish in any order.
		gs[0], gs[n-1] = gs[n-1], gs[0]
		return gs, evs
	}
	gs, evs := mk(5)
	if v, note := lbCheckHandovers(gs, evs, res); v != 0 || !strings.Contains(note, "no overlap") {
		t.Fatalf("clean run: %d violations: %s", v, note)
	}

	// Overlap: the third grant answered before the second's release was sent,
	// and its acquired event before the second's released.
	gs, evs = mk(5)
	for i := range gs {
		if gs[i].Lock.Token == 102 {
			gs[i].AckNs = 1000 + 10 + 5 // = the second's AckNs, before its RelSendNs
		}
	}
	evs[4], evs[6] = evs[6], evs[4] // released(L b) after acquired(L c)
	evs[4].Seq, evs[6].Seq = evs[6].Seq, evs[4].Seq
	v, note := lbCheckHandovers(gs, evs, res)
	if v < 3 || !strings.Contains(note, "VIOLATIONS") || !strings.Contains(note, "while the resource was held") {
		t.Fatalf("overlap: %d violations: %s", v, note)
	}

	// A token granted twice, and a grant the stream never showed.
	gs, evs = mk(4)
	gs[1].Lock.Token = gs[2].Lock.Token
	if v, note := lbCheckHandovers(gs, evs, res); v == 0 || !strings.Contains(note, "granted twice") {
		t.Fatalf("duplicate token: %d: %s", v, note)
	}
	gs, evs = mk(4)
	if v, note := lbCheckHandovers(gs, evs[:len(evs)-3], res); v == 0 || !strings.Contains(note, "SSE has 3 acquired events, the clients 4") {
		t.Fatalf("missing event: %d: %s", v, note)
	}
}

func TestBenchLocksSummarizeExpiry(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixNano()
	created := map[string]int64{"a": base, "b": base + 2e6, "c": base + 1e6}
	lock := func(id string) lbLock { return lbLock{ID: id, ExpiresNs: created[id]} }
	evs := []lbEvent{
		{Seq: 1, Type: lbExpired, TimeNs: base + 10e6, RecvNs: base + 12e6, Lock: lock("a")},
		{Seq: 2, Type: lbExpired, TimeNs: base + 12e6, RecvNs: base + 15e6, Lock: lock("b")},
		{Seq: 3, Type: lbReleased, TimeNs: base + 13e6, Lock: lock("c")},
		{Seq: 4, Type: lbExpired, TimeNs: base + 14e6, Lock: lbLock{ID: "x", ExpiresNs: base}}, // not ours
		{Seq: 5, Type: lbExpired, TimeNs: base + 15e6, RecvNs: base + 16e6, Lock: lock("a")},   // again
	}
	s := lbSummarizeExpiry(created, evs)
	if s.Expired != 2 || s.Missing != 1 || s.Duplicates != 1 {
		t.Fatalf("counts %+v", s)
	}
	if s.MinExpiresNs != base || s.MaxExpiresNs != base+2e6 || s.LastEventNs != base+12e6 || s.FirstEventNs != base+10e6 {
		t.Fatalf("times %+v", s)
	}
	if got := s.Lat.Max(); got < 9990 || got > 10010 { // 10 ms, in µs
		t.Fatalf("max lag %d µs", got)
	}
	if got := s.Recv.Max(); got < 12990 || got > 13010 {
		t.Fatalf("max receipt %d µs", got)
	}
}

func TestBenchLocksPromHist(t *testing.T) {
	text := func(c1, c2, c3, cinf uint64, sum float64) []byte {
		var b bytes.Buffer
		b.WriteString("# HELP engram_lock_expiry_lag_seconds lag\n# TYPE engram_lock_expiry_lag_seconds histogram\n")
		for _, x := range []struct {
			le string
			n  uint64
		}{{"0.001", c1}, {"0.01", c2}, {"0.1", c3}, {"+Inf", cinf}} {
			b.WriteString(`engram_lock_expiry_lag_seconds_bucket{le="` + x.le + `"} ` + lbTestItoa(x.n) + "\n")
		}
		b.WriteString("engram_lock_expiry_lag_seconds_sum " + lbTestFtoa(sum) + "\n")
		b.WriteString("engram_lock_expiry_lag_seconds_count " + lbTestItoa(cinf) + "\n")
		return b.Bytes()
	}
	h0, ok := lbParsePromHist(text(5, 5, 5, 5, 0.001), lbLagMetric)
	if !ok || h0.Count != 5 {
		t.Fatalf("h0 %+v %v", h0, ok)
	}
	h1, ok := lbParsePromHist(text(5, 55, 105, 105, 2.001), lbLagMetric)
	if !ok {
		t.Fatal("h1")
	}
	d := h1.sub(h0)
	if d.Count != 100 || math.Abs(d.Sum-2) > 1e-9 {
		t.Fatalf("diff %+v", d)
	}
	// 50 in (0.001, 0.01], 50 in (0.01, 0.1].
	if q := d.quantile(0.5); math.Abs(q-0.01) > 1e-9 {
		t.Fatalf("p50 %v", q)
	}
	if q := d.quantile(0.99); math.Abs(q-(0.01+0.09*49/50)) > 1e-9 {
		t.Fatalf("p99 %v", q)
	}
	over := lbPromHist{Count: 10, Bounds: []float64{0.1, math.Inf(1)}, Cum: []uint64{1, 10}}
	if q := over.quantile(0.99); q != 0.1 {
		t.Fatalf("beyond the last bound: %v", q)
	}
	if q := (lbPromHist{}).quantile(0.5); !math.IsNaN(q) {
		t.Fatalf("empty: %v", q)
	}
	if _, ok := lbParsePromHist([]byte("other_metric 1\n"), lbLagMetric); ok {
		t.Fatal("found a missing histogram")
	}
}

func lbTestItoa(n uint64) string     { b, _ := json.Marshal(n); return string(b) }
func lbTestFtoa(f float64) string    { b, _ := json.Marshal(f); return string(b) }
func lbTestMs(d time.Duration) int64 { return int64(d / time.Millisecond) }

func TestBenchLocksExpiryTiming(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 10, 0, time.UTC)
	if ttl, ok := lbTTLUntil(at, at.Add(-2500*time.Millisecond+300*time.Microsecond)); !ok || ttl != 2500 {
		t.Fatalf("ttl %d %v, want 2500 (rounded up)", ttl, ok)
	}
	if _, ok := lbTTLUntil(at, at.Add(-100*time.Millisecond)); ok {
		t.Fatal("a ttl under the minimum plus margin")
	}
	if got := lbCommonExpiry(100000, 10000); lbTestMs(got) != 21000 {
		t.Fatalf("100k at 10k/s: %s", got)
	}
	if got := lbCommonExpiry(100, 10000); got != 2*time.Second {
		t.Fatalf("small: %s", got)
	}
	if got := lbCommonExpiry(100, 0); got != time.Minute {
		t.Fatalf("no rate: %s", got)
	}
}

func TestBenchLocksFlags(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--only", "locks"}, &errb)
	if err != nil || cfg.LockCount != 100000 || !cfg.want("locks") || cfg.want("queues") || !cfg.wantHTTP() {
		t.Fatalf("default: %+v %v", cfg, err)
	}
	if cfg, _ := parseBenchFlags([]string{"--only", "locks", "--quick"}, &errb); cfg.LockCount != 10000 {
		t.Fatalf("quick: %d", cfg.LockCount)
	}
	if cfg, _ := parseBenchFlags([]string{"--quick", "--lock-count", "500"}, &errb); cfg.LockCount != 500 {
		t.Fatalf("quick with --lock-count: %d", cfg.LockCount)
	}
	if _, err := parseBenchFlags([]string{"--lock-count", "-1"}, &errb); err != errUsage {
		t.Fatalf("negative: %v", err)
	}
}

func TestBenchLocksBudgets(t *testing.T) {
	if computeLocksBudgets([]measurement{{ID: "write.c1"}}, "always") != nil {
		t.Fatal("budgets without the group")
	}
	ms := []measurement{
		{ID: lbFsyncID, Kind: kindCeiling, P99Ms: 1},
		{ID: lbTrivialID, Group: groupLocks, Kind: kindCeiling, P99Ms: 0.5, Rate: 20000},
		{ID: lbRoundTripID, Group: groupLocks, P99Ms: 2.5, Rate: 800, Lock: &lbFigures{AcquireP99Ms: 1.2, ReleaseP99Ms: 1.6, CallCeilMs: 1.5}},
		{ID: lbContendedID, Group: groupLocks, Rate: 600, Lock: &lbFigures{Grants: 600}},
		{ID: lbExpiryID(1000), Group: groupLocks, P99Ms: 150, Lock: &lbFigures{Locks: 1000, Expired: 999, Missing: 1}},
	}
	bs := computeLocksBudgets(ms, "always")
	got := map[string]budgetResult{}
	for _, b := range bs {
		got[b.Name] = b
	}
	want := map[string]string{
		lbBudgetAcquire: resultMet, lbBudgetRelease: resultNotMet, lbBudgetPair: resultMet, lbBudgetOverlap: resultMet,
		"locks: expiry of 1000 locks at once: p99 (lock.expired time − expires_at)": resultNotMet,
		lbBudgetExpAll: resultNotMet,
	}
	for name, res := range want {
		if b, ok := got[name]; !ok || b.Result != res {
			t.Errorf("%s: %+v, want %s", name, b, res)
		}
	}
	if b := got[lbBudgetPair]; b.Ceiling != 3 || math.Abs(b.Ratio-2.5/3) > 1e-9 {
		t.Errorf("pair ceiling %+v", b)
	}
	for _, b := range bs {
		if b.Name == lbBudgetExpiry {
			continue
		}
		if uses, known := locksBudgetUses(b, b.FigureID); !known || !uses {
			t.Errorf("%s does not use its figure %s", b.Name, b.FigureID)
		}
	}
	out := formatLocks(benchReport{Measurements: ms, Config: reportConfig{Locks: &lbReportConfig{LockCount: 1000}}})
	for _, s := range []string{"-- locks:", "acquire 0.80×", "999/1000 expired"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	if formatLocks(benchReport{Measurements: ms[:1]}) != "" {
		t.Error("a locks table without the group")
	}
}
