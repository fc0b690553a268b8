package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const sampleWrkOutput = `Running 10s test @ http://127.0.0.1:40000/v1/workunits
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    1.73ms  21.01ms   80.00%
  Latency Distribution
     50%    2.20ms
     99%    8.90ms
  245512 requests in 10.10s, 40.51MB read
Requests/sec:  24308.12
Transfer/sec:      4.01MB
ENGRAM_WRK_RESULT {"requests":245512,"duration_us":10100000,"bytes":42477440,"errors":{"connect":0,"read":1,"write":0,"status":7,"timeout":2},"latency_us":{"p50":2201,"p99":8903,"p999":15011,"max":21010,"mean":2610.5}}
`

func TestParseWrkOutput(t *testing.T) {
	r, err := parseWrkOutput([]byte(sampleWrkOutput), 64)
	if err != nil {
		t.Fatal(err)
	}
	if r.Driver != "wrk" || r.Clients != 64 || r.Requests != 245512 {
		t.Fatalf("driver/clients/requests: %+v", r)
	}
	if r.DurationSec != 10.1 {
		t.Errorf("duration %v, want 10.1", r.DurationSec)
	}
	if want := 245512 / 10.1; r.ReqPerSec < want-0.01 || r.ReqPerSec > want+0.01 {
		t.Errorf("req/s %v, want %v", r.ReqPerSec, want)
	}
	if r.P50us != 2201 || r.P99us != 8903 || r.P999us != 15011 || r.MaxUs != 21010 || r.MeanUs != 2610.5 {
		t.Errorf("percentiles: %+v", r)
	}
	if r.Non2xx != 7 || r.SocketErrors != 3 {
		t.Errorf("errors: non2xx %d socket %d, want 7 and 3", r.Non2xx, r.SocketErrors)
	}
	inv := r.invalidReason()
	if !strings.Contains(inv, "7 non-2xx") || !strings.Contains(inv, "3 socket") {
		t.Errorf("invalidReason %q", inv)
	}
	m := fromLoad("write.c64", "w", kindScenario, "req", r)
	if m.P99Ms != 8.903 || m.Invalid == "" {
		t.Errorf("fromLoad: %+v", m)
	}
}

func TestParseWrkOutputMissingOrBad(t *testing.T) {
	if _, err := parseWrkOutput([]byte("Running 1s test\nRequests/sec: 1\n"), 1); err == nil {
		t.Error("no result line: want error")
	}
	if _, err := parseWrkOutput([]byte(wrkResultMarker+"{not json}\n"), 1); err == nil {
		t.Error("bad JSON: want error")
	}
	r, err := parseWrkOutput([]byte(wrkResultMarker+`{"requests":0,"duration_us":0}`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReqPerSec != 0 || r.invalidReason() == "" {
		t.Errorf("empty run must be invalid with no rate: %+v", r)
	}
}

func TestWrkScript(t *testing.T) {
	body := unitJSON("bench-c1", "a1", 300)
	s, err := wrkScript(loadSpec{Method: "POST", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`wrk.method = "POST"`, "wrk.body = [=[" + string(body) + "]=]",
		`wrk.headers["Content-Type"] = "application/json"`, "done = function(summary, latency, requests)",
		wrkResultMarker, "summary.errors", "latency:percentile(99.9)"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	// A body containing the closing bracket gets a longer level.
	s, err = wrkScript(loadSpec{Method: "POST", Body: []byte(`{"a":"]=]"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, `wrk.body = [==[{"a":"]=]"}]==]`) {
		t.Errorf("long-bracket level not raised:\n%s", s)
	}
	// GET without body: no body, no content type.
	s, _ = wrkScript(loadSpec{Method: "GET"})
	if strings.Contains(s, "wrk.body") || !strings.Contains(s, `wrk.method = "GET"`) {
		t.Errorf("GET script:\n%s", s)
	}
}

func TestWrkArgs(t *testing.T) {
	cases := []struct {
		clients int
		d       time.Duration
		want    string
	}{
		{1, 10 * time.Second, "-t1 -c1 -d10s"},
		{16, 10 * time.Second, "-t2 -c16 -d10s"},
		{64, 1500 * time.Millisecond, "-t2 -c64 -d2s"},
		{8, 200 * time.Millisecond, "-t2 -c8 -d1s"},
	}
	for _, c := range cases {
		args := wrkArgs(loadSpec{URL: "http://h/x", Clients: c.clients, Duration: c.d}, "/s.lua")
		got := strings.Join(args, " ")
		if !strings.HasPrefix(got, c.want+" ") || !strings.Contains(got, "--latency") || !strings.HasSuffix(got, "-s /s.lua http://h/x") {
			t.Errorf("clients %d %v: %q, want prefix %q", c.clients, c.d, got, c.want)
		}
	}
}

// fullMeasurements is a complete, valid set of measurements.
func fullMeasurements() []measurement {
	return []measurement{
		{ID: "ceiling.fsync", P99Ms: 2},
		{ID: "ceiling.trivial_post.c1", Rate: 10000, P99Ms: 0.5},
		{ID: "write.c1", Rate: 1000, P99Ms: 2.4},
		{ID: "ceiling.trivial_post.c64", Rate: 30000, P99Ms: 5},
		{ID: "write.c64", Rate: 22000, P99Ms: 6},
		{ID: "ceiling.pebble_batches.w1", Rate: 400000, Clients: 1},
		{ID: "ceiling.pebble_batches.w2", Rate: 470000, Clients: 2},
		{ID: "batch.c1", Rate: 100000, Clients: 1},
		{ID: "batch.c2", Rate: 130000, Clients: 2},
		{ID: "ceiling.trivial_get.c8", P99Ms: 0.8},
		{ID: "list.c8", P99Ms: 1.5},
	}
}

func budgetByPrefix(t *testing.T, bs []budgetResult, prefix string) budgetResult {
	t.Helper()
	for _, b := range bs {
		if strings.HasPrefix(b.Name, prefix) {
			return b
		}
	}
	t.Fatalf("no budget %q in %+v", prefix, bs)
	return budgetResult{}
}

func TestComputeBudgetsMet(t *testing.T) {
	bs := computeBudgets(fullMeasurements(), "always")
	if len(bs) != 4 {
		t.Fatalf("%d budgets, want 4", len(bs))
	}
	w1 := budgetByPrefix(t, bs, "durable write, 1 client")
	if w1.Ceiling != 2.5 || w1.Figure != 2.4 || w1.Result != resultMet {
		t.Errorf("write c1: %+v", w1)
	}
	if w1.Ratio < 0.959 || w1.Ratio > 0.961 {
		t.Errorf("write c1 ratio %v, want 0.96", w1.Ratio)
	}
	w64 := budgetByPrefix(t, bs, "durable writes, 64")
	if w64.Result != resultMet || w64.Ratio < 0.733 || w64.Ratio > 0.734 {
		t.Errorf("write c64: %+v", w64)
	}
	batch := budgetByPrefix(t, bs, "batch insert")
	// Best figure (2 clients) against the best ceiling (2 writers).
	if batch.Figure != 130000 || batch.Ceiling != 470000 || batch.FigureID != "batch.c2" || batch.Result != resultMet {
		t.Errorf("batch: %+v", batch)
	}
	list := budgetByPrefix(t, bs, "list last 100")
	// Absolute budget: 1.5 ms <= 2 ms although the ratio to the ceiling is 1.875.
	if list.Result != resultMet || list.Ratio != 1.875 {
		t.Errorf("list: %+v", list)
	}
}

func TestComputeBudgetsNotMetInvalidMissing(t *testing.T) {
	ms := fullMeasurements()
	for i := range ms {
		switch ms[i].ID {
		case "write.c1":
			ms[i].P99Ms = 2.6 // > 0.5 + 2
		case "write.c64":
			ms[i].Rate = 20999 // < 0.7 * 30000
		case "batch.c1", "batch.c2":
			ms[i].Rate = 117000 // < 0.25 * 470000
		case "list.c8":
			ms[i].P99Ms = 2.01
		}
	}
	for _, b := range computeBudgets(ms, "always") {
		if b.Result != resultNotMet {
			t.Errorf("%s: %s, want NOT MET (%+v)", b.Name, b.Result, b)
		}
	}
	// Boundary: exactly at the budget is met.
	ms[4].Rate = 21000
	if b := budgetByPrefix(t, computeBudgets(ms, "always"), "durable writes, 64"); b.Result != resultMet {
		t.Errorf("exactly 70%%: %+v", b)
	}

	// Invalid figures (non-2xx) make the budget INVALID, whatever the numbers.
	ms = fullMeasurements()
	ms[2].Invalid = "3 non-2xx responses"
	b := budgetByPrefix(t, computeBudgets(ms, "always"), "durable write, 1 client")
	if b.Result != resultInvalid || !strings.Contains(b.Reason, "write.c1: 3 non-2xx") {
		t.Errorf("invalid: %+v", b)
	}
	// An invalid batch run falls back to the other one.
	ms = fullMeasurements()
	ms[8].Invalid = "x"
	if b := budgetByPrefix(t, computeBudgets(ms, "always"), "batch insert"); b.FigureID != "batch.c1" || b.Figure != 100000 {
		t.Errorf("batch fallback: %+v", b)
	}

	// Missing measurements: NOT MEASURED, naming what is missing.
	bs := computeBudgets(ms[:3], "always")
	if bs[0].Result != resultMet {
		t.Errorf("c1 with its inputs present: %+v", bs[0])
	}
	for _, b := range bs[1:] {
		if b.Result != resultNotMeasured || !strings.HasPrefix(b.Reason, "missing ") {
			t.Errorf("%s: %+v", b.Name, b)
		}
	}

	// --sync=none is flagged on every evaluated budget.
	for _, b := range computeBudgets(fullMeasurements(), "none") {
		if !strings.Contains(b.Reason, "--sync=none") {
			t.Errorf("%s: reason %q", b.Name, b.Reason)
		}
	}
}

func TestCompareWith(t *testing.T) {
	m := measurement{Rate: 50, P99Ms: 3}
	m.compareWith(measurement{ID: "c", Rate: 100, P99Ms: 1.5})
	if m.CeilingID != "c" || m.RateRatio != 0.5 || m.P99Ratio != 2 {
		t.Errorf("%+v", m)
	}
	m.compareWith(measurement{ID: "z"})
	if m.RateRatio != 0 || m.P99Ratio != 0 {
		t.Errorf("zero ceiling must give no ratio: %+v", m)
	}
}

func TestFormatters(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{fmtMs(0), "0 ms"}, {fmtMs(0.1234), "0.123 ms"}, {fmtMs(2.345), "2.35 ms"},
		{fmtMs(25.55), "25.6 ms"}, {fmtMs(250.4), "250 ms"},
		{fmtRate(950), "950"}, {fmtRate(6870), "6.87k"}, {fmtRate(24310), "24.3k"}, {fmtRate(1503000), "1.50M"},
		{fmtRatio(0), "-"}, {fmtRatio(0.7049), "0.70"}, {fmtRatio(3.0666), "3.07"},
		{fmtFigure(1.29, "ms"), "1.29 ms"}, {fmtFigure(66100, "req/s"), "66.1k req/s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestFormatReport(t *testing.T) {
	ms := fullMeasurements()
	ms[4].Rate = 1000 // write.c64 not met
	ms[2].compareWith(ms[1])
	r := benchReport{
		Date: "2026-11-23T10:00:00Z", Command: "engram bench --quick", Driver: "wrk", DriverDetail: "wrk 4.1.0",
		Machine:      machineInfo{NumCPU: 2, GOMAXPROCS: 2, CPUModel: "AMD EPYC", GoVersion: "go1.26.8", OS: "linux", Arch: "amd64"},
		Config:       reportConfig{DurationS: 1, Sync: "always"},
		Measurements: ms,
		Budgets:      computeBudgets(ms, "always"),
	}
	out := formatReport(r)
	for _, want := range []string{"command:  engram bench --quick", "AMD EPYC", "driver:   wrk", "share this machine's 2 cores",
		"rate 0.10×, p99 4.80×", "NOT MET", "MET", "0.03", "≥ 70% of trivial handler req/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Error("report must end with a newline")
	}
}

func TestBodies(t *testing.T) {
	u := unitJSON("bench-c1", "a1", 300)
	if len(u) != 300 {
		t.Errorf("unit body is %d bytes, want 300", len(u))
	}
	var tu trivialUnit
	if err := json.Unmarshal(u, &tu); err != nil || tu.ContextID != "bench-c1" || tu.Type != "MESSAGE" || len(tu.Payload) < 200 {
		t.Errorf("unit body %s: %v %+v", u, err, tu)
	}
	var batch struct {
		Units []trivialUnit `json:"units"`
	}
	if err := json.Unmarshal(batchJSON("bench-batch", 1000), &batch); err != nil || len(batch.Units) != 1000 {
		t.Fatalf("batch body: %v, %d units", err, len(batch.Units))
	}
	if batch.Units[999].ContextID != "bench-batch" {
		t.Errorf("batch unit: %+v", batch.Units[999])
	}
}

func TestMachineParsing(t *testing.T) {
	cpu := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel([]byte(cpu)); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel %q", got)
	}
	if got := memTotal([]byte("MemTotal:       24684544 kB\nMemFree: 1 kB\n")); got != "23.5 GiB RAM" {
		t.Errorf("memTotal %q", got)
	}
	if fsTypeName(0xEF53) != "ext4" || !strings.HasPrefix(fsTypeName(0x01021994), "tmpfs") {
		t.Error("fsTypeName")
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"bench", "--quick", "--data", "/tmp/my dir", "--json", "it's.json"})
	want := `engram bench --quick --data '/tmp/my dir' --json 'it'\''s.json'`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestParseBenchFlags(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--quick"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duration != time.Second || cfg.Batches != 0 || cfg.Warmup != 200*time.Millisecond {
		t.Errorf("quick defaults: %+v", cfg)
	}
	cfg, err = parseBenchFlags([]string{"--quick", "--duration", "3s"}, &errb)
	if err != nil || cfg.Duration != 3*time.Second {
		t.Errorf("explicit duration wins over --quick: %v %+v", err, cfg)
	}
	cfg, err = parseBenchFlags(nil, &errb)
	if err != nil || cfg.Duration != 10*time.Second || cfg.Batches != 0 || cfg.Driver != "auto" || cfg.Sync != "always" {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
	cfg, err = parseBenchFlags([]string{"--only", "write, list", "--clients", "2,32"}, &errb)
	if err != nil || !cfg.want("write") || !cfg.want("list") || cfg.want("disk") || cfg.want("batch") || len(cfg.Clients) != 2 || cfg.Clients[1] != 32 {
		t.Errorf("--only/--clients: %v %+v", err, cfg)
	}
	if cfg, _ := parseBenchFlags(nil, &errb); !cfg.want("disk") || len(cfg.Clients) != 3 {
		t.Errorf("default groups/clients: %+v", cfg)
	}
	for _, bad := range [][]string{{"--sync", "sometimes"}, {"--duration", "0s"}, {"extra"}, {"--nope"}, {"--batches", "1"}, {"--only", "disk,nope"}, {"--clients", "1,x"}} {
		if _, err := parseBenchFlags(bad, &errb); err != errUsage {
			t.Errorf("%q: err %v, want errUsage", bad, err)
		}
	}
	if _, err := pickDriver("nope"); err == nil {
		t.Error("unknown driver accepted")
	}
	if d, err := pickDriver("fasthttp"); err != nil || d.Name() != "fasthttp" {
		t.Errorf("fasthttp driver: %v", err)
	}
}

func TestDispatch(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch(nil, &out, &errb); code != 2 {
		t.Errorf("no args: %d", code)
	}
	if code := dispatch([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown: %d %s", code, errb.String())
	}
	out.Reset()
	if code := dispatch([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "bench") {
		t.Errorf("help: %d %s", code, out.String())
	}
	out.Reset()
	if code := dispatch([]string{"help", "bench"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "-duration") {
		t.Errorf("help bench: %d %s", code, out.String())
	}
	if code := dispatch([]string{"bench", "--sync", "bad"}, &out, &errb); code != 2 {
		t.Errorf("bad flag: %d", code)
	}
}

func TestCPUAccounting(t *testing.T) {
	busy, ok := parseProcStatBusy([]byte("cpu  40524 10 14557 147378 956 0 1855 41 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if !ok || busy != 40524+10+14557+41 {
		t.Errorf("busy %d %v", busy, ok)
	}
	if _, ok := parseProcStatBusy([]byte("intr 1 2 3\n")); ok {
		t.Error("bad /proc/stat accepted")
	}
	self := "21146 (my (odd) cmd) R 21077 21077 2096 0 -1 4194304 101 0 0 0 11 22 33 44 20 0 1 0 103251 3133440 388\n"
	ticks, ok := parseSelfStatTicks([]byte(self))
	if !ok || ticks != 11+22+33+44 {
		t.Errorf("self ticks %d %v", ticks, ok)
	}
	t0 := time.Unix(100, 0)
	a := cpuSample{at: t0, busy: 1000, self: 100, ok: true}
	b := cpuSample{at: t0.Add(2 * time.Second), busy: 1300, self: 300, ok: true}
	if got := otherCores(a, b); got != 0.5 { // (300-200)/100 ticks over 2 s
		t.Errorf("otherCores %v, want 0.5", got)
	}
	if got := selfCores(a, b); got != 1 { // 200 ticks over 2 s
		t.Errorf("selfCores %v, want 1", got)
	}
	b.self = 500 // our own softirq etc. can make it negative: clamp
	if got := otherCores(a, b); got != 0 {
		t.Errorf("otherCores %v, want 0", got)
	}
	if otherCores(cpuSample{}, b) != 0 {
		t.Error("missing sample must give 0")
	}
}

func TestNoisyBudget(t *testing.T) {
	ms := fullMeasurements()
	ms[3].OtherCores = 0.9 // ceiling.trivial_post.c64
	bs := computeBudgets(ms, "always")
	if b := budgetByPrefix(t, bs, "durable writes, 64"); b.Result != resultMet || !strings.Contains(b.Reason, "noisy") || !strings.Contains(b.Reason, "ceiling.trivial_post.c64 0.90") {
		t.Errorf("noisy c64: %+v", b)
	}
	if b := budgetByPrefix(t, bs, "durable write, 1 client"); strings.Contains(b.Reason, "noisy") {
		t.Errorf("c1 must not be noisy: %+v", b)
	}
}

func TestWALMetrics(t *testing.T) {
	text := `# HELP engram_wal_batch_commands Commands per committed batch.
# TYPE engram_wal_batch_commands histogram
engram_wal_batch_commands_bucket{le="1"} 3
engram_wal_batch_commands_sum 120
engram_wal_batch_commands_count 10
engram_wal_commit_seconds_bucket{le="+Inf"} 10
engram_wal_commit_seconds_sum 0.005
engram_wal_commit_seconds_count 10
`
	a := parseWALMetrics([]byte(text))
	if !a.ok || a.batches != 10 || a.commands != 120 || a.commitSecs != 0.005 {
		t.Fatalf("%+v", a)
	}
	b := walStats{batches: 20, commands: 320, commitSecs: 0.010, ok: true}
	if got, want := walNote(a, b), "server wal: 10 batches, 20.0 commands/batch, commit+fsync 0.500 ms avg"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if walNote(a, a) != "" || walNote(walStats{}, b) != "" || parseWALMetrics([]byte("x 1\n")).ok {
		t.Error("no note without data")
	}
}
