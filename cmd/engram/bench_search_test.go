package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBenchSearchCorpus(t *testing.T) {
	seen := map[string]bool{}
	for k := 0; k < srchVocab; k++ {
		w := srchWord(k)
		if len(w) != 6 || w == srchCommon || seen[w] {
			t.Fatalf("word %d: %q (seen %v)", k, w, seen[w])
		}
		seen[w] = true
	}

	c := newSrchCorpus(2000)
	g1, g2 := newSrchGen(), newSrchGen()
	commons := 0
	for i := 0; i < c.n; i++ {
		a, _ := c.appendText(nil, g1.words(i))
		g2.words(i + 1) // another unit in between changes nothing
		b, common := c.appendText(nil, g2.words(i))
		if !bytes.Equal(a, b) {
			t.Fatalf("unit %d: %q then %q", i, a, b)
		}
		words := strings.Fields(string(a))
		n := len(words)
		if common {
			commons++
			n--
		}
		if n < srchMinWords || n > srchMaxWords || common != strings.Contains(" "+string(a)+" ", " "+srchCommon+" ") {
			t.Fatalf("unit %d: %d words, common %v: %q", i, len(words), common, a)
		}
	}
	if commons < 900 || commons > 1100 {
		t.Errorf("%d of 2000 units hold %q, want about half", commons, srchCommon)
	}

	var u struct {
		Ctx     string `json:"context_id"`
		Agent   string `json:"agent_id"`
		Typ     string `json:"type"`
		Payload string `json:"payload"`
	}
	body, _ := c.appendUnitJSON(nil, g1, 107)
	if err := json.Unmarshal(body, &u); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	want, _ := c.appendText(nil, g2.words(107))
	if u.Ctx != "bench-search-c7" || u.Agent != "bench-agent-3" || u.Typ != "TOOL_CALL" || u.Payload != string(want) {
		t.Errorf("unit 107: %+v", u)
	}
	var batch struct {
		Units []json.RawMessage `json:"units"`
	}
	if err := json.Unmarshal(c.batchJSON(g1, 10, 25), &batch); err != nil || len(batch.Units) != 15 {
		t.Fatalf("batch: %d units, %v", len(batch.Units), err)
	}
	if first, _ := c.appendUnitJSON(nil, g2, 10); !bytes.Equal(batch.Units[0], first) {
		t.Errorf("batch unit 0 %s, want %s", batch.Units[0], first)
	}
}

func TestBenchSearchPickTerms(t *testing.T) {
	const n = 10000
	df := make([]int32, 400)
	for k := range df {
		df[k] = int32(n / (k + 1)) // Zipf-like: 10000, 5000, ... 25
	}
	terms, err := pickSrchTerms(df, n)
	if err != nil || terms.note != "" {
		t.Fatal(err, terms.note)
	}
	// Selective: 10..100 units, nearest 50 first.
	rank := map[string]int{}
	for k := range df {
		rank[srchWord(k)] = k
	}
	last := int32(-1)
	for _, w := range terms.selective {
		d := df[rank[w]]
		if d < 10 || d > 100 || max(d-50, 50-d) < last {
			t.Errorf("selective %v", terms.selective)
			break
		}
		last = max(d-50, 50-d)
	}
	if len(terms.selective) != srchMaxTerms || df[rank[terms.selective[0]]] != 50 {
		t.Errorf("selective %v", terms.selective)
	}
	// Pairs: words in 1-10% (100..1000 units: ranks 9..99), rarest with most frequent.
	if terms.pairs[0] != srchWord(99)+" AND "+srchWord(9) || len(terms.pairs) != 32 {
		t.Errorf("pairs %v", terms.pairs)
	}
	// No word in 10..100: the nearest to 50.
	small := []int32{20000, 5000, 2000, 300, 0}
	terms, err = pickSrchTerms(small, 100000)
	if err != nil || terms.note == "" || terms.selective[0] != srchWord(3) || len(terms.selective) != 4 ||
		len(terms.pairs) != 1 || terms.pairs[0] != srchWord(2)+" AND "+srchWord(1) {
		t.Errorf("small: %v %+v", err, terms)
	}
	if _, err := pickSrchTerms(make([]int32, 10), 1000); err == nil {
		t.Error("an empty corpus gave terms")
	}
}

func TestBenchSearchFlags(t *testing.T) {
	var errb bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--only", "search"}, &errb)
	if err != nil || !cfg.want("search") || cfg.want("write") || cfg.wantHTTP() ||
		cfg.SearchUnits != 1000000 || cfg.SearchQueries != 200 || cfg.SearchRate != 5000 || cfg.SearchLagSeconds != 20 {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	if cfg, _ := parseBenchFlags([]string{"--quick"}, &errb); cfg.SearchUnits != 100000 || cfg.SearchLagSeconds != 5 {
		t.Errorf("quick: %d units, %d s", cfg.SearchUnits, cfg.SearchLagSeconds)
	}
	cfg, err = parseBenchFlags([]string{"--quick", "--search-units", "20000", "--search-lag-seconds", "0", "--search-rate", "100", "--search-queries", "5"}, &errb)
	if err != nil || cfg.SearchUnits != 20000 || cfg.SearchLagSeconds != 0 || cfg.SearchRate != 100 || cfg.SearchQueries != 5 {
		t.Errorf("set: %+v %v", cfg, err)
	}
	for _, bad := range [][]string{{"--search-units", "10"}, {"--search-queries", "0"}, {"--search-rate", "0"}, {"--search-lag-seconds", "-1"}} {
		if _, err := parseBenchFlags(bad, &errb); err != errUsage {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// searchMeasurements is a search run at 1M units that meets every budget
// but the ratio of the selective relevance case.
func searchMeasurements() []measurement {
	ms := []measurement{
		{ID: srchRawInsertID, Group: groupSearch, Kind: kindCeiling, Rate: 80000, Search: &srchFigures{Units: srchBudgetUnits}},
		{ID: srchWriteID, Group: groupSearch, Kind: kindScenario, Rate: 60000, Search: &srchFigures{Units: srchBudgetUnits, Events: 1000100}},
		{ID: srchIndexID, Group: groupSearch, Kind: kindScenario, Rate: 40000, RateRatio: 0.5, CeilingID: srchRawInsertID, Search: &srchFigures{Units: srchBudgetUnits}},
	}
	for _, id := range srchCaseIDs {
		raw := measurement{ID: srchRawQueryID(id), Group: groupSearch, Kind: kindCeiling, Ops: 200, P50Ms: 1, P99Ms: 2,
			Search: &srchFigures{Units: srchBudgetUnits, Case: id, Distinct: 64, MatchMin: 40, MatchMax: 60, MatchMean: 50}}
		srv := measurement{ID: srchQueryID(id), Group: groupSearch, Kind: kindScenario, Ops: 200, P50Ms: 1.2, P99Ms: 2.5,
			Search: &srchFigures{Units: srchBudgetUnits, Case: id, Distinct: 64, MatchMin: 40, MatchMax: 60, MatchMean: 50, P50Ratio: 1.2}}
		if id == "selective.relevance" {
			srv.P99Ms = 4
		}
		srv.compareWith(raw)
		ms = append(ms, raw, srv)
	}
	return append(ms, measurement{ID: srchLagID, Group: groupSearch, Kind: kindScenario, Rate: 4990, P50Ms: 20, P99Ms: 120, MaxMs: 300,
		Search: &srchFigures{Units: srchBudgetUnits, TargetRate: 5000, MetricMaxMs: 250, MetricP99Ms: 200, Probes: 100}})
}

func TestBenchSearchBudgets(t *testing.T) {
	if computeSearchBudgets([]measurement{{ID: "write.c1"}}, "always") != nil {
		t.Fatal("budgets without the group")
	}
	bs := computeSearchBudgets(searchMeasurements(), "always")
	if len(bs) != 6+3+2 {
		t.Fatalf("%d budgets: %+v", len(bs), bs)
	}
	for _, b := range bs {
		want := resultMet
		if b.Name == srchBudgetRatioName("selective.relevance") {
			want = resultNotMet
		}
		if b.Result != want || b.Reason != "" {
			t.Errorf("%s: %s (%s), want %s", b.Name, b.Result, b.Reason, want)
		}
	}

	// A smaller corpus says so; a lag run at another rate too, and an
	// invalid lag run is INVALID.
	ms := searchMeasurements()
	for i := range ms {
		ms[i].Search.Units = 20000
		if ms[i].ID == srchLagID {
			ms[i].Search.TargetRate = 1000
			ms[i].P99Ms = 1500
		}
	}
	bs = computeSearchBudgets(ms, "always")
	if b := budgetByPrefix(t, bs, "search: selective term (10-100 matches), sort=recent: p99 vs"); b.Absolute || b.Reason != "" {
		t.Errorf("a ratio budget holds at any size: %+v", b)
	}
	for _, b := range bs {
		switch {
		case b.Absolute && b.FigureID != srchLagID && !strings.Contains(b.Reason, "corpus of 20000 units"):
			t.Errorf("%s: %s", b.Name, b.Reason)
		case b.FigureID == srchLagID && !strings.Contains(b.Reason, "paced at 1.00k writes/s"):
			t.Errorf("%s: %s", b.Name, b.Reason)
		case strings.HasPrefix(b.Name, srchBudgetLagProbe) && b.Result != resultNotMet:
			t.Errorf("%s: %s", b.Name, b.Result)
		}
	}
	ms[len(ms)-1].Invalid = "held 3k writes/s"
	ms[len(ms)-1].OtherCores = 0.5
	for _, b := range computeSearchBudgets(ms, "always") {
		if b.FigureID == srchLagID && (b.Result != resultInvalid || !strings.Contains(b.Reason, "held 3k")) {
			t.Errorf("%s: %s %s", b.Name, b.Result, b.Reason)
		}
	}
	// No lag step: NOT MEASURED; noise on a query case is named.
	ms = searchMeasurements()
	ms[5].OtherCores = 0.6 // ceiling.search.fts5.selective.recent
	bs = computeSearchBudgets(ms[:len(ms)-1], "always")
	for _, b := range bs {
		if b.FigureID == srchLagID && b.Result != resultNotMeasured {
			t.Errorf("%s: %s", b.Name, b.Result)
		}
		if b.FigureID == srchQueryID("selective.recent") && !strings.Contains(b.Reason, "noisy") {
			t.Errorf("%s: %q", b.Name, b.Reason)
		}
	}
	if uses, known := searchBudgetUses(bs[0], srchRawQueryID("selective.relevance")); !uses || !known || budgetUses(bs[0], srchRawQueryID("and2.recent")) {
		t.Error("budgetUses of a query budget")
	}
}

func TestBenchSearchFormat(t *testing.T) {
	if formatSearch(benchReport{Measurements: []measurement{{ID: "write.c1"}}}) != "" {
		t.Error("search table without the group")
	}
	ms := searchMeasurements()
	r := benchReport{Measurements: ms, Budgets: computeSearchBudgets(ms, "always"),
		Config: reportConfig{Sync: "always", Search: &srchReportConfig{Units: srchBudgetUnits, Queries: 200, Limit: 20, LagRate: 5000, LagSeconds: 20, LagWriters: 100}}}
	r.Measurements[len(ms)-1].Note = "probe note"
	s := formatSearch(r)
	for _, want := range []string{"-- search:", "corpus 1000000 units", "0.50× raw insert", "p50 1.20×, p99 2.00× raw (p99 +2.00 ms)",
		"p99 ≤ 1.5× raw NOT MET; p99 ≤ 10.0 ms MET", "p99 ≤ 1000 ms MET; metric max ≤ 1000 ms MET", "search.lag: probe note", "each matching 40-60 units (mean 50)"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if full := formatReport(r); !strings.Contains(full, "-- search:") || !strings.Contains(full, srchBudgetRatioName("common.recent")) {
		t.Error("report lacks the search table or budgets")
	}
}

// TestBenchSearchSmoke runs the whole group at a tiny size against the
// real server.
func TestBenchSearchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	var log bytes.Buffer
	b := &bench{cfg: benchConfig{SearchUnits: 3000, SearchQueries: 5, SearchRate: 200, SearchLagSeconds: 1, Sync: "always"},
		dataDir: dir, log: &log}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.searchScenarios(ctx); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	ids := []string{srchRawInsertID, srchWriteID, srchIndexID, srchLagID}
	for _, c := range srchCaseIDs {
		ids = append(ids, srchQueryID(c), srchRawQueryID(c))
	}
	for _, id := range ids {
		m, ok := findMeasurement(b.rep.Measurements, id)
		if !ok {
			t.Errorf("no %s\n%s", id, log.String())
			continue
		}
		if m.Search == nil || m.Ops == 0 || m.Group != groupSearch {
			t.Errorf("%s: %+v", id, m)
		}
		// A lag run at 200/s on a busy machine may fall short of its rate;
		// nothing else may be invalid.
		if m.Invalid != "" && !(id == srchLagID && strings.HasPrefix(m.Invalid, "held")) {
			t.Errorf("%s invalid: %s", id, m.Invalid)
		}
	}
	if m, _ := findMeasurement(b.rep.Measurements, srchLagID); m.Search == nil || !m.Search.Verified || m.Search.Probes == 0 {
		t.Errorf("lag: %+v", m.Search)
	}
	if m, _ := findMeasurement(b.rep.Measurements, srchQueryID("common.recent")); m.Search == nil || m.Search.MatchMin < 1300 || m.Search.Mismatches != 0 {
		t.Errorf("common.recent: %+v", m.Search)
	}
	b.rep.Budgets = computeSearchBudgets(b.rep.Measurements, "always")
	if len(b.rep.Budgets) != 11 || !strings.Contains(formatSearch(b.rep), srchLagMetric) {
		t.Errorf("budgets %d", len(b.rep.Budgets))
	}
	// The raw table is gone; the server's store stays for runBench to remove.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "search-server" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
