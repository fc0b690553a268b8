package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSBPaths(t *testing.T) {
	if got := sbSetPaths.path(3, 10007); got != "/v1/streams/bench/set/w3-7" {
		t.Errorf("set path %q", got)
	}
	if got := sbCeilPaths.path(1, 2); got != "/v1/workunits?w=1&i=2" {
		t.Errorf("ceiling path %q", got)
	}
	if got := sbUpdatePaths.path(5, 6); got != "/v1/streams/bench/hot/n" {
		t.Errorf("update path %q", got)
	}
	if got := sbSetPaths.describe(); got != "/v1/streams/bench/set/w{worker}-{counter mod 10000}" {
		t.Errorf("describe %q", got)
	}
	if got := sbCeilPaths.describe(); got != "/v1/workunits?w={worker}&i={counter mod 10000}" {
		t.Errorf("describe %q", got)
	}
	lua := sbSetPaths.lua()
	for _, want := range []string{`thread:set("worker", threads)`, "request = function()",
		`string.format("/v1/streams/bench/set/w%d-%d", worker, counter % 10000)`} {
		if !strings.Contains(lua, want) {
			t.Errorf("lua lacks %q:\n%s", want, lua)
		}
	}
	if lua := sbUpdatePaths.lua(); !strings.Contains(lua, `wrk.format(nil, "/v1/streams/bench/hot/n")`) || strings.Contains(lua, "setup") {
		t.Errorf("fixed-path lua:\n%s", lua)
	}
}

func TestSBBodies(t *testing.T) {
	v := sbValueJSON(recordSize)
	if len(v) != recordSize || !json.Valid(v) {
		t.Errorf("value: %d B, valid %v", len(v), json.Valid(v))
	}
	stamped := sbStampedValue(appendStamp(nil, 1795428000123456789, 42), recordSize)
	if len(stamped) != recordSize || !json.Valid(stamped) {
		t.Errorf("stamped value: %d B, valid %v", len(stamped), json.Valid(stamped))
	}
	if ns, idx, ok := parseStamp(stamped); !ok || ns != 1795428000123456789 || idx != 42 {
		t.Errorf("stamp round trip: %d %d %v", ns, idx, ok)
	}
	hot := sbHotValue()
	var h struct {
		N       *int   `json:"n"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(hot, &h); err != nil || h.N == nil || *h.N != 0 || h.Payload == "" || len(hot) != recordSize {
		t.Errorf("hot value %s: %v", hot, err)
	}
	if !json.Valid(sbUpdateBody) {
		t.Error("update body")
	}
}

func TestSBParseFrame(t *testing.T) {
	stamp := string(appendStamp(nil, 1795428000123456789, 7))
	update := []byte(`{"type":"stream","timestamp":1795428000124,"streamName":"bench","groupId":"g","id":"i7","event":{"type":"update","data":{"payload":"` + stamp + `lorem"}}}`)
	f, ok := sbParseFrame(update)
	if !ok || f.Event != "update" || f.TimestampMs != 1795428000124 || f.StampNs != 1795428000123456789 || f.Idx != 7 {
		t.Errorf("update: %+v %v", f, ok)
	}
	create := bytes.Replace(update, []byte(`"type":"update"`), []byte(`"type":"create"`), 1)
	if f, ok := sbParseFrame(create); !ok || f.Event != "create" || f.Idx != 7 {
		t.Errorf("create: %+v %v", f, ok)
	}
	// A sync holds stamped values: they are not deliveries.
	sync := []byte(`{"type":"stream","timestamp":1,"streamName":"bench","groupId":"g","id":null,"event":{"type":"sync","data":[{"payload":"` + stamp + `"}]}}`)
	if f, ok := sbParseFrame(sync); !ok || f.Event != "sync" || f.StampNs != 0 {
		t.Errorf("sync: %+v %v", f, ok)
	}
	for _, bad := range []string{`{"type":"error","code":"lagged"}`, `{"type":"stream","timestamp":1}`, `{"type":"stream","event":{"type":"upd`, `not json`} {
		if _, ok := sbParseFrame([]byte(bad)); ok {
			t.Errorf("accepted %s", bad)
		}
	}
}

func iiiFrameAt(kind string, tsMs, ns, idx int64) []byte {
	return []byte(`{"type":"stream","timestamp":` + jsonNum(uint64(tsMs)) + `,"streamName":"bench","groupId":"g","id":"i","event":{"type":"` +
		kind + `","data":{"payload":"` + string(appendStamp(nil, ns, idx)) + `x"}}}`)
}

func TestSBGroupRecord(t *testing.T) {
	g := &sbGroup{subGroup: &subGroup{transport: "iii", conns: []*fanConn{{}, {}}}, seen: make([][]uint64, 2)}
	g.ordered.Store(true)
	win := newFanWindow(4, 2)
	g.win.Store(win)
	commit := time.Unix(1000, 0)
	stamp := commit.Add(-time.Millisecond).UnixNano()
	now := commit.Add(4 * time.Millisecond).UnixNano()
	c0, c1 := g.conns[0], g.conns[1]
	g.record(0, c0, iiiFrameAt("create", commit.UnixMilli(), stamp, 0), now)
	g.record(1, c1, iiiFrameAt("create", commit.UnixMilli(), stamp, 0), now)
	g.record(0, c0, iiiFrameAt("update", commit.UnixMilli(), stamp, 1), now)
	g.record(0, c0, iiiFrameAt("update", commit.UnixMilli(), stamp, 1), now) // repeat
	g.record(1, c1, iiiFrameAt("update", commit.UnixMilli(), stamp, 13), now)
	g.record(1, c1, iiiFrameAt("update", commit.UnixMilli(), stamp, 11), now)  // out of order
	g.record(1, c1, iiiFrameAt("delete", commit.UnixMilli(), stamp, 300), now) // not counted
	g.record(1, c1, iiiFrameAt("sync", commit.UnixMilli(), stamp, 400), now)   // not counted
	if got := win.ring[0].Load(); got != 2 {
		t.Errorf("window count of event 0: %d", got)
	}
	tot := g.collect()
	if tot.Delivered != 5 || tot.OutOfOrder != 2 {
		t.Errorf("delivered %d out of order %d, want 5 and 2", tot.Delivered, tot.OutOfOrder)
	}
	if p50 := tot.Hist.ValueAtQuantile(50); p50 < 4900 || p50 > 5100 {
		t.Errorf("stamp latency p50 %d µs, want ~5000", p50)
	}
	if c := tot.CommitHist.ValueAtQuantile(50); c < 3900 || c > 4100 {
		t.Errorf("commit latency p50 %d µs, want ~4000", c)
	}
	// Unordered (many writers): order is not checked, repeats still are.
	g.reset()
	g.ordered.Store(false)
	g.record(0, c0, iiiFrameAt("update", commit.UnixMilli(), stamp, 5), now)
	g.record(0, c0, iiiFrameAt("update", commit.UnixMilli(), stamp, 3), now)
	g.record(0, c0, iiiFrameAt("update", commit.UnixMilli(), stamp, 3), now)
	if tot := g.collect(); tot.Delivered != 2 || tot.OutOfOrder != 1 {
		t.Errorf("unordered: %+v", tot)
	}
}

func TestSBTestAndSet(t *testing.T) {
	var bits []uint64
	for _, i := range []int64{0, 63, 64, 1000} {
		if sbTestAndSet(&bits, i) {
			t.Errorf("%d set before", i)
		}
		if !sbTestAndSet(&bits, i) {
			t.Errorf("%d not set", i)
		}
	}
	if sbTestAndSet(&bits, 1) || sbTestAndSet(&bits, -1) || sbTestAndSet(&bits, -1) {
		t.Error("unset bit or negative index reported as set")
	}
}

func TestSBIncrementCheck(t *testing.T) {
	if note, inv := sbIncrementCheck(1000, 1000, 1); inv != "" || !strings.Contains(note, "1000 increments applied, 1000 acknowledged") {
		t.Errorf("exact: %q %q", note, inv)
	}
	if _, inv := sbIncrementCheck(1064, 1000, 64); inv != "" {
		t.Errorf("in flight at the stop: %q", inv)
	}
	if _, inv := sbIncrementCheck(999, 1000, 64); !strings.Contains(inv, "1 acknowledged increments missing") {
		t.Errorf("lost: %q", inv)
	}
	if _, inv := sbIncrementCheck(1065, 1000, 64); !strings.Contains(inv, "1 more increments applied than sent") {
		t.Errorf("surplus: %q", inv)
	}
}

func TestSBParseHotCount(t *testing.T) {
	if n, err := sbParseHotCount([]byte(`{"value":{"n":12345,"payload":"x"}}`)); err != nil || n != 12345 {
		t.Errorf("%d %v", n, err)
	}
	for _, bad := range []string{`{"value":{"payload":"x"}}`, `{"value":{"n":1.5}}`, `nope`} {
		if _, err := sbParseHotCount([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// pathRecorder is an HTTP server that records the method, path and body
// of each request.
type pathRecorder struct {
	mu     sync.Mutex
	paths  map[string]int
	method string
	body   string
}

func newPathRecorder(t *testing.T) (*pathRecorder, *httptest.Server) {
	r := &pathRecorder{paths: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.paths[req.URL.RequestURI()]++
		r.method, r.body = req.Method, string(b)
		r.mu.Unlock()
		w.WriteHeader(200)
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

func TestSBRunFasthttp(t *testing.T) {
	rec, srv := newPathRecorder(t)
	spec := loadSpec{URL: srv.URL, Method: "PUT", Body: []byte(`{"a":1}`), Clients: 3, Duration: 200 * time.Millisecond}
	lr, err := sbRunFasthttp(context.Background(), spec, sbPaths{Format: "/s/w%d-%d", Mod: 5})
	if err != nil || lr.Requests == 0 || lr.invalidReason() != "" {
		t.Fatalf("%v %+v", err, lr)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.method != "PUT" || rec.body != `{"a":1}` {
		t.Errorf("method %q body %q", rec.method, rec.body)
	}
	var total int64
	for p, n := range rec.paths {
		total += int64(n)
		var w, i int
		if _, err := fmt.Sscanf(p, "/s/w%d-%d", &w, &i); err != nil || w < 0 || w > 2 || i < 0 || i > 4 {
			t.Errorf("path %q", p)
		}
	}
	if total != lr.Requests || len(rec.paths) < 3 {
		t.Errorf("%d requests over %d paths, the driver counted %d", total, len(rec.paths), lr.Requests)
	}
}

// TestSBRunWrk runs the generated script under wrk when it is installed:
// each thread numbers its requests into its own paths.
func TestSBRunWrk(t *testing.T) {
	p, err := exec.LookPath("wrk")
	if err != nil || testing.Short() {
		t.Skip("wrk not installed, or -short")
	}
	rec, srv := newPathRecorder(t)
	spec := loadSpec{URL: srv.URL, Method: "PATCH", Body: sbUpdateBody, Clients: 2, Duration: time.Second}
	lr, err := sbRunWrk(context.Background(), newWrkDriver(p), spec, sbPaths{Format: "/s/w%d-%d", Mod: 10})
	if err != nil || lr.Requests == 0 || lr.invalidReason() != "" {
		t.Fatalf("%v %+v", err, lr)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.method != "PATCH" || rec.body != string(sbUpdateBody) {
		t.Errorf("method %q body %q", rec.method, rec.body)
	}
	for _, want := range []string{"/s/w0-1", "/s/w1-1", "/s/w0-0", "/s/w1-9"} {
		if rec.paths[want] == 0 {
			t.Errorf("no request to %s: %v", want, rec.paths)
		}
	}
	if len(rec.paths) != 20 {
		t.Errorf("%d paths, want 2 threads × 10", len(rec.paths))
	}
}

// streamsMeasurements is a streams run whose figures meet every applied budget.
func streamsMeasurements() []measurement {
	return []measurement{
		{ID: "ceiling.fsync", P99Ms: 0.5},
		{ID: sbCeilHTTPID(1), Rate: 10000, P99Ms: 0.8},
		{ID: sbSetID(1), Rate: 2000, P99Ms: 1.2},
		{ID: sbUpdateID(1), Rate: 2000, P99Ms: 1.3},
		{ID: sbCeilHTTPID(64), Rate: 60000, P99Ms: 7},
		{ID: sbSetID(64), Rate: 45000, P99Ms: 8},
		{ID: sbUpdateID(64), Rate: 43000, P99Ms: 9},
		{ID: sbFanCeilR50, Group: groupStreams, Kind: kindCeiling, Clients: 1000, Rate: 50000, P99Ms: 8, Expected: 500000, Delivered: 500000},
		{ID: sbFanR50, Group: groupStreams, Kind: kindScenario, Name: "stream fan-out /stream, 1000 subscribers, 50 events/s", Clients: 1000, Events: 500, Rate: 50000, P99Ms: 20, Expected: 500000, Delivered: 500000, CeilingID: sbFanCeilR50, RateRatio: 1},
		{ID: sbFanCeilSat, Group: groupStreams, Kind: kindCeiling, Clients: 1000, Rate: 400000, Expected: 4000000, Delivered: 4000000},
		{ID: sbFanSat, Group: groupStreams, Kind: kindScenario, Clients: 1000, Rate: 300000, Expected: 3000000, Delivered: 3000000, Note: "PUTs to 100 items"},
	}
}

func TestComputeStreamsBudgets(t *testing.T) {
	if bs := computeStreamsBudgets(fullMeasurements(), "always"); bs != nil {
		t.Errorf("budgets without a streams run: %+v", bs)
	}
	bs := computeStreamsBudgets(streamsMeasurements(), "always")
	if len(bs) != 7 {
		t.Fatalf("%d budgets", len(bs))
	}
	for _, b := range bs {
		if b.Result != resultMet {
			t.Errorf("%s: %s (%+v)", b.Name, b.Result, b)
		}
		if !strings.Contains(b.Budget, "applied to streams") {
			t.Errorf("%s: budget %q does not say it is borrowed", b.Name, b.Budget)
		}
	}
	if b := budgetByPrefix(t, bs, sbBudgetNameSet1); b.Ceiling != 1.3 || b.Figure != 1.2 {
		t.Errorf("set c1 %+v", b)
	}
	if b := budgetByPrefix(t, bs, sbBudgetNameFanSat); b.Ratio != 0.75 {
		t.Errorf("fan sat %+v", b)
	}

	ms := streamsMeasurements()
	ms[2].P99Ms = 1.4 // set c1 over trivial + fsync
	ms[6].Rate = 41000
	ms[10].Lost, ms[10].Lagged = 3, 1
	ms[5].OtherCores = 0.5
	bs = computeStreamsBudgets(ms, "always")
	for _, name := range []string{sbBudgetNameSet1, sbBudgetNameUpd64, sbBudgetNameFanAll} {
		if b := budgetByPrefix(t, bs, name); b.Result != resultNotMet {
			t.Errorf("%s: %s, want NOT MET", name, b.Result)
		}
	}
	if b := budgetByPrefix(t, bs, sbBudgetNameSet64); b.Result != resultMet || !strings.Contains(b.Reason, "noisy") {
		t.Errorf("noise on set c64: %+v", b)
	}
	if b := budgetByPrefix(t, bs, sbBudgetNameUpd1); strings.Contains(b.Reason, "noisy") {
		t.Errorf("noise of set c64 on update c1: %+v", b)
	}
	ms[3].Invalid = "2 acknowledged increments missing from the item"
	if b := budgetByPrefix(t, computeStreamsBudgets(ms, "always"), sbBudgetNameUpd1); b.Result != resultInvalid || !strings.Contains(b.Reason, "increments missing") {
		t.Errorf("invalid %+v", b)
	}
	// Fan-out with fewer subscribers: its budgets are not measured.
	bs = computeStreamsBudgets(streamsMeasurements()[:7], "none")
	if b := budgetByPrefix(t, bs, sbBudgetNameFanP99); b.Result != resultNotMeasured || !strings.Contains(b.Reason, sbFanR50) {
		t.Errorf("missing %+v", b)
	}
	if b := budgetByPrefix(t, bs, sbBudgetNameSet64); !strings.Contains(b.Reason, "--sync=none") {
		t.Errorf("sync none %+v", b)
	}
}

func TestFormatStreams(t *testing.T) {
	if formatStreams(benchReport{Measurements: fullMeasurements()}) != "" {
		t.Error("streams section without streams fan-out")
	}
	ms := streamsMeasurements()
	r := benchReport{
		Command: "engram bench --only streams", Machine: machineInfo{NumCPU: 2, GOMAXPROCS: 2},
		Config:       reportConfig{FanoutPosters: 256, FanoutWindow: 256, Sync: "always", Streams: &sbReportConfig{FanoutServer: "separate process", FanoutItems: 100}},
		Measurements: ms,
	}
	r.Budgets = computeStreamsBudgets(ms, "always")
	out := formatReport(r)
	for _, want := range []string{"-- streams: fan-out of one stream group", "Engram server separate process", "to 100 items",
		"500000/500000", "1.00×", "p99 ≤ 25 ms, none lost", sbFanSat + ": PUTs to 100 items", sbBudgetNameSet64, "-- measurements"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "-- real-time: fan-out of one topic") {
		t.Errorf("streams rows in the fanout table:\n%s", out)
	}
	if b, res := sbRowVerdict(ms[7], r.Budgets); b != "-" || res != "-" {
		t.Errorf("ceiling row %q %q", b, res)
	}
	ms[10].Lagged = 1
	if _, res := sbRowVerdict(ms[10], r.Budgets); res != resultNotMet {
		t.Errorf("lagged sat row %q", res)
	}
}

func TestParseBenchFlagsStreams(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--only", "streams", "--streams-subs", "50"}, &errb)
	if err != nil || !cfg.want("streams") || cfg.want("write") || !cfg.wantHTTP() || cfg.StreamsSubs != 50 {
		t.Fatalf("%v %+v", err, cfg)
	}
	if cfg, _ := parseBenchFlags(nil, &errb); !cfg.want("streams") || cfg.StreamsSubs != 1000 {
		t.Errorf("defaults %+v", cfg)
	}
	if _, err := parseBenchFlags([]string{"--streams-subs", "0"}, &errb); err != errUsage {
		t.Errorf("--streams-subs 0: %v", err)
	}
	var out bytes.Buffer
	dispatch([]string{"help", "bench"}, &out, &out)
	if !strings.Contains(out.String(), "streams (") || !strings.Contains(out.String(), "-streams-subs") {
		t.Errorf("help:\n%s", out.String())
	}
}
