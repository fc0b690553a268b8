package main

// Results of `engram bench`: measurements, budgets (figure vs same-run
// ceiling) and the printed report. Everything here is pure so that it can
// be unit tested without running load.

import (
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
)

const (
	kindCeiling  = "ceiling"
	kindScenario = "scenario"
)

// measurement is one measured figure set: a ceiling or a scenario.
type measurement struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Kind         string  `json:"kind"` // ceiling or scenario
	Clients      int     `json:"clients"`
	Driver       string  `json:"driver,omitempty"`
	Unit         string  `json:"unit"` // what Ops counts: req, fsync, commit, record, unit
	Ops          int64   `json:"ops"`
	DurationS    float64 `json:"duration_s"`
	Rate         float64 `json:"rate_per_s"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	Non2xx       int64   `json:"non_2xx"`
	SocketErrors int64   `json:"socket_errors"`
	Invalid      string  `json:"invalid,omitempty"` // why the figures cannot be trusted
	// OtherCores is how many cores other processes kept busy, on average,
	// while this was measured; above noisyCores the figure is noisy.
	OtherCores float64 `json:"other_load_cores"`
	// SelfCores is how many cores the bench process (server, trivial app,
	// Pebble ceilings, fasthttp driver) and wrk used meanwhile: near the
	// core count means CPU-bound, well below it means waiting (fsync, locks).
	SelfCores float64 `json:"self_cores"`
	CeilingID string  `json:"ceiling_id,omitempty"`
	RateRatio float64 `json:"rate_ratio,omitempty"` // Rate / ceiling Rate
	P99Ratio  float64 `json:"p99_ratio,omitempty"`  // P99 / ceiling P99
	Note      string  `json:"note,omitempty"`

	// Real-time scenarios (Group "fanout" or "memory"): Clients is the
	// number of subscribers, Ops and Rate count deliveries.
	Group       string  `json:"group,omitempty"`
	Transport   string  `json:"transport,omitempty"`           // raw-ws, ws, sse
	TargetRate  float64 `json:"target_events_per_s,omitempty"` // 0 = saturation
	Events      int64   `json:"events,omitempty"`              // events committed / messages broadcast
	Expected    int64   `json:"expected,omitempty"`            // events × subscribers
	Delivered   int64   `json:"delivered,omitempty"`
	Lost        int64   `json:"lost,omitempty"`        // expected - delivered
	Lagged      int     `json:"lagged,omitempty"`      // subscriptions cut as lagged
	ConnsEnded  int     `json:"conns_ended,omitempty"` // connections that ended otherwise
	CommitP50Ms float64 `json:"commit_p50_ms,omitempty"`
	CommitP99Ms float64 `json:"commit_p99_ms,omitempty"` // event time (commit) → receipt
	ServerCores float64 `json:"server_cores,omitempty"`  // the server process's CPU
	RSSMB       float64 `json:"rss_mb,omitempty"`
	BaseRSSMB   float64 `json:"baseline_rss_mb,omitempty"`
	PeakRSSMB   float64 `json:"peak_rss_mb,omitempty"`
	PerSubKB    float64 `json:"per_subscriber_kb,omitempty"`

	// Queue is the queues group's figures (nil elsewhere).
	Queue *qbFigures `json:"queue,omitempty"`
	// Lock is the locks group's figures (nil elsewhere).
	Lock *lbFigures `json:"lock,omitempty"`
	// Search is the search group's figures (nil elsewhere).
	Search *srchFigures `json:"search,omitempty"`
}

// noisyCores is the CPU use of other processes (in cores, averaged over a
// measurement) above which a figure is flagged as noisy.
const noisyCores = 0.2

// noisy says whether other processes took enough CPU to distort m.
func (m measurement) noisy() bool { return m.OtherCores > noisyCores }

func fromLoad(id, name, kind, unit string, lr loadResult) measurement {
	return measurement{
		ID: id, Name: name, Kind: kind, Clients: lr.Clients, Driver: lr.Driver, Unit: unit,
		Ops: lr.Requests, DurationS: lr.DurationSec, Rate: lr.ReqPerSec,
		P50Ms: lr.P50us / 1000, P99Ms: lr.P99us / 1000, P999Ms: lr.P999us / 1000, MaxMs: lr.MaxUs / 1000,
		Non2xx: lr.Non2xx, SocketErrors: lr.SocketErrors, Invalid: lr.invalidReason(),
	}
}

// compareWith records the ratios of m to its ceiling c.
func (m *measurement) compareWith(c measurement) {
	m.CeilingID = c.ID
	m.RateRatio = ratio(m.Rate, c.Rate)
	m.P99Ratio = ratio(m.P99Ms, c.P99Ms)
}

func ratio(a, b float64) float64 {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// findMeasurement returns the measurement with id.
func findMeasurement(ms []measurement, id string) (measurement, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return measurement{}, false
}

// bestRate returns the valid measurement with the highest Rate among ids.
func bestRate(ms []measurement, ids ...string) (measurement, bool) {
	var best measurement
	found := false
	for _, id := range ids {
		m, ok := findMeasurement(ms, id)
		if !ok || m.Invalid != "" {
			continue
		}
		if !found || m.Rate > best.Rate {
			best, found = m, true
		}
	}
	return best, found
}

// Budget results.
const (
	resultMet         = "MET"
	resultNotMet      = "NOT MET"
	resultInvalid     = "INVALID"
	resultNotMeasured = "NOT MEASURED"
)

// budgetResult is one budget of DESIGN.md checked against its same-run ceiling.
type budgetResult struct {
	Name        string  `json:"name"`
	FigureID    string  `json:"figure_id"`
	Figure      float64 `json:"figure"`
	Unit        string  `json:"unit"` // ms, req/s, units/s
	CeilingDesc string  `json:"ceiling_desc"`
	Ceiling     float64 `json:"ceiling"`
	Ratio       float64 `json:"ratio"` // Figure / Ceiling
	// Cmp and Limit state the budget: Ratio (or Figure when Absolute)
	// must be <= or >= Limit.
	Cmp      string  `json:"cmp"`
	Limit    float64 `json:"limit"`
	Absolute bool    `json:"absolute"`
	Budget   string  `json:"budget"` // human-readable budget
	Result   string  `json:"result"` // MET, NOT MET, INVALID, NOT MEASURED
	Reason   string  `json:"reason,omitempty"`
}

// evaluate sets Ratio and Result. invalid explains why the figure or its
// ceiling cannot be trusted ("" if they can).
func (b *budgetResult) evaluate(invalid string) {
	b.Ratio = ratio(b.Figure, b.Ceiling)
	if invalid != "" {
		b.Result, b.Reason = resultInvalid, invalid
		return
	}
	v := b.Ratio
	if b.Absolute {
		v = b.Figure
	}
	ok := false
	switch b.Cmp {
	case "<=":
		ok = v <= b.Limit
	case ">=":
		ok = v >= b.Limit
	}
	if ok {
		b.Result = resultMet
	} else {
		b.Result = resultNotMet
	}
}

// computeBudgets checks the DESIGN.md budgets against the measurements.
func computeBudgets(ms []measurement, syncMode string) []budgetResult {
	var out []budgetResult
	invalidOf := func(parts ...measurement) string {
		var rs []string
		for _, m := range parts {
			if m.Invalid != "" {
				rs = append(rs, m.ID+": "+m.Invalid)
			}
		}
		return strings.Join(rs, "; ")
	}
	notMeasured := func(b budgetResult, missing ...string) budgetResult {
		b.Result = resultNotMeasured
		b.Reason = "missing " + strings.Join(missing, ", ")
		return b
	}
	missingOf := func(ids ...string) []string {
		var miss []string
		for _, id := range ids {
			if _, ok := findMeasurement(ms, id); !ok {
				miss = append(miss, id)
			}
		}
		return miss
	}

	// 1. Durable write, 1 client: p99 <= trivial p99 (1 client) + fsync p99.
	{
		b := budgetResult{Name: "durable write, 1 client: p99", FigureID: "write.c1", Unit: "ms",
			Cmp: "<=", Limit: 1, Budget: "p99 ≤ trivial p99 + fsync p99 (ratio ≤ 1.00)"}
		if miss := missingOf("write.c1", "ceiling.trivial_post.c1", "ceiling.fsync"); miss != nil {
			out = append(out, notMeasured(b, miss...))
		} else {
			w, _ := findMeasurement(ms, "write.c1")
			t, _ := findMeasurement(ms, "ceiling.trivial_post.c1")
			f, _ := findMeasurement(ms, "ceiling.fsync")
			b.Figure = w.P99Ms
			b.Ceiling = t.P99Ms + f.P99Ms
			b.CeilingDesc = fmt.Sprintf("trivial p99 %s + fsync p99 %s", fmtMs(t.P99Ms), fmtMs(f.P99Ms))
			b.evaluate(invalidOf(w, t, f))
			out = append(out, b)
		}
	}
	// 2. Durable writes, 64 clients: req/s >= 70% of trivial req/s (64 clients).
	{
		b := budgetResult{Name: "durable writes, 64 clients: req/s", FigureID: "write.c64", Unit: "req/s",
			Cmp: ">=", Limit: 0.70, Budget: "≥ 70% of trivial handler req/s (ratio ≥ 0.70)"}
		if miss := missingOf("write.c64", "ceiling.trivial_post.c64"); miss != nil {
			out = append(out, notMeasured(b, miss...))
		} else {
			w, _ := findMeasurement(ms, "write.c64")
			t, _ := findMeasurement(ms, "ceiling.trivial_post.c64")
			b.Figure, b.Ceiling = w.Rate, t.Rate
			b.CeilingDesc = "trivial Fiber handler, 64 clients"
			b.evaluate(invalidOf(w, t))
			out = append(out, b)
		}
	}
	// 3. Batch insert: units/s >= 25% of raw Pebble batched records/s.
	{
		b := budgetResult{Name: "batch insert of 1000 units: units/s", Unit: "units/s",
			Cmp: ">=", Limit: 0.25, Budget: "≥ 25% of Pebble batched records/s (ratio ≥ 0.25)"}
		w, okW := bestRate(ms, "batch.c1", "batch.c2")
		c, okC := bestRate(ms, "ceiling.pebble_batches.w1", "ceiling.pebble_batches.w2")
		switch {
		case !okW && missingOf("batch.c1", "batch.c2") == nil:
			b.FigureID = "batch.c1"
			b.Result, b.Reason = resultInvalid, "no valid batch-insert run: "+invalidOf(mustFind(ms, "batch.c1"), mustFind(ms, "batch.c2"))
			out = append(out, b)
		case !okW || !okC:
			var miss []string
			if !okW {
				miss = append(miss, "batch.c1/batch.c2")
			}
			if !okC {
				miss = append(miss, "ceiling.pebble_batches.w1/w2")
			}
			out = append(out, notMeasured(b, miss...))
		default:
			b.FigureID = w.ID
			b.Figure, b.Ceiling = w.Rate, c.Rate
			b.CeilingDesc = fmt.Sprintf("Pebble 1000-record batches, best: %d writer(s)", c.Clients)
			b.Name = fmt.Sprintf("batch insert of 1000 units: units/s (best: %d client(s))", w.Clients)
			b.evaluate("")
			out = append(out, b)
		}
	}
	// 4. List last 100 of 10k: p99 <= 2 ms at 8 clients (absolute); the
	// ratio to a trivial handler answering the same bytes is informative.
	{
		id := fmt.Sprintf("list.c%d", listClients)
		cid := fmt.Sprintf("ceiling.trivial_get.c%d", listClients)
		b := budgetResult{Name: "list last 100 of 10k units, 8 clients: p99", FigureID: id, Unit: "ms",
			Cmp: "<=", Limit: 2, Absolute: true, Budget: "p99 ≤ 2 ms (absolute)"}
		if miss := missingOf(id, cid); miss != nil {
			out = append(out, notMeasured(b, miss...))
		} else {
			w, _ := findMeasurement(ms, id)
			t, _ := findMeasurement(ms, cid)
			b.Figure, b.Ceiling = w.P99Ms, t.P99Ms
			b.CeilingDesc = "trivial Fiber GET of the same bytes (p99)"
			b.evaluate(invalidOf(w, t))
			out = append(out, b)
		}
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// annotateBudgets adds to each evaluated budget the noise of the
// measurements it uses and a server that did not fsync.
func annotateBudgets(out []budgetResult, ms []measurement, syncMode string) {
	for i := range out {
		b := &out[i]
		if b.Result != resultMet && b.Result != resultNotMet {
			continue
		}
		var noisy []string
		for _, m := range ms {
			if m.noisy() && budgetUses(*b, m.ID) {
				noisy = append(noisy, fmt.Sprintf("%s %.2f", m.ID, m.OtherCores))
			}
		}
		if noisy != nil {
			b.Reason = strings.TrimPrefix(b.Reason+"; noisy: other processes used cores during "+strings.Join(noisy, ", "), "; ")
		}
	}
	if syncMode != "" && syncMode != "always" {
		for i := range out {
			if out[i].Result == resultMet || out[i].Result == resultNotMet {
				out[i].Reason = strings.TrimPrefix(out[i].Reason+"; server ran with --sync="+syncMode+": not a durability figure", "; ")
			}
		}
	}
}

// budgetUses says whether budget b was computed from measurement id.
func budgetUses(b budgetResult, id string) bool {
	if uses, known := realtimeBudgetUses(b, id); known {
		return uses
	}
	if uses, known := streamsBudgetUses(b, id); known {
		return uses
	}
	if uses, known := queuesBudgetUses(b, id); known {
		return uses
	}
	if uses, known := locksBudgetUses(b, id); known {
		return uses
	}
	if uses, known := searchBudgetUses(b, id); known {
		return uses
	}
	switch {
	case strings.HasPrefix(b.Name, "durable write, 1 client"):
		return id == "write.c1" || id == "ceiling.trivial_post.c1" || id == "ceiling.fsync"
	case strings.HasPrefix(b.Name, "durable writes, 64"):
		return id == "write.c64" || id == "ceiling.trivial_post.c64"
	case strings.HasPrefix(b.Name, "batch insert"):
		return strings.HasPrefix(id, "batch.") || strings.HasPrefix(id, "ceiling.pebble_batches.")
	case strings.HasPrefix(b.Name, "list last"):
		return strings.HasPrefix(id, "list.") || strings.HasPrefix(id, "ceiling.trivial_get.")
	}
	return false
}

func mustFind(ms []measurement, id string) measurement {
	m, _ := findMeasurement(ms, id)
	return m
}

// ---------------------------------------------------------------- report

// benchReport is everything one run produced; --json writes it as is.
type benchReport struct {
	Date         string         `json:"date"`
	Command      string         `json:"command"`
	Machine      machineInfo    `json:"machine"`
	Driver       string         `json:"driver"`
	DriverDetail string         `json:"driver_detail"`
	Config       reportConfig   `json:"config"`
	Measurements []measurement  `json:"measurements"`
	Budgets      []budgetResult `json:"budgets"`
	Error        string         `json:"error,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
	// BackgroundCores is the CPU other processes used just before the run.
	BackgroundCores float64 `json:"background_load_cores"`
}

type reportConfig struct {
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Quick       bool    `json:"quick"`
	Sync        string  `json:"sync"`
	Batches     int     `json:"batches"`
	BatchSize   int     `json:"batch_size"`
	ListUnits   int     `json:"list_units"`
	ListClients int     `json:"list_clients"`
	ListLimit   int     `json:"list_limit"`
	WaitQuietS  float64 `json:"wait_quiet_s"`
	Retries     int     `json:"retries"`
	// Real time.
	FanoutSubs    []int   `json:"fanout_subscribers,omitempty"`
	SSESubs       int     `json:"sse_subscribers,omitempty"`
	FanoutRate    float64 `json:"fanout_rate,omitempty"`
	FanoutWindow  int     `json:"fanout_window,omitempty"`
	FanoutPosters int     `json:"fanout_writers,omitempty"`
	IdleSubs      int     `json:"idle_subscribers,omitempty"`
	FanoutServer  string  `json:"fanout_server,omitempty"`
	FDLimit       uint64  `json:"fd_limit,omitempty"`
	// Streams is the streams group's setup (nil when it did not run).
	Streams *sbReportConfig `json:"streams,omitempty"`
	// Queues is the queues group's setup (nil when it did not run).
	Queues *qbReportConfig `json:"queues,omitempty"`
	// Locks is the locks group's setup (nil when it did not run).
	Locks *lbReportConfig `json:"locks,omitempty"`
	// Search is the search group's setup (nil when it did not run).
	Search *srchReportConfig `json:"search,omitempty"`
}

// fmtMs formats milliseconds with a precision that suits the magnitude.
func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0 ms"
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// fmtRate formats a per-second rate: 950, 24.3k, 1.25M.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtRatio formats a ratio with two decimals, or "-" when there is none.
func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// fmtFigure formats a budget figure in its unit.
func fmtFigure(v float64, unit string) string {
	if unit == "ms" {
		return fmtMs(v)
	}
	return fmtRate(v) + " " + unit
}

func fmtMeasurementShort(m measurement) string {
	return fmt.Sprintf("%s %s/s  p50 %s  p99 %s  p99.9 %s", fmtRate(m.Rate), m.Unit, fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.P999Ms))
}

// formatReport renders the report printed at the end of a run.
func formatReport(r benchReport) string {
	var sb strings.Builder
	sb.WriteString("\n== engram bench ==\n")
	fmt.Fprintf(&sb, "command:  %s\n", r.Command)
	fmt.Fprintf(&sb, "date:     %s\n", r.Date)
	mi := r.Machine
	fmt.Fprintf(&sb, "machine:  %d CPUs (GOMAXPROCS %d), %s, %s, kernel %s, %s, %s/%s\n",
		mi.NumCPU, mi.GOMAXPROCS, orDash(mi.CPUModel), orDash(mi.MemTotal), orDash(mi.Kernel), mi.GoVersion, mi.OS, mi.Arch)
	fmt.Fprintf(&sb, "data dir: %s (%s)\n", r.Machine.DataDir, orDash(r.Machine.DataFS))
	fmt.Fprintf(&sb, "driver:   %s: %s\n", r.Driver, r.DriverDetail)
	if hasGroup(r.Measurements, "") || len(r.Measurements) == 0 {
		fmt.Fprintf(&sb, "setup:    %gs per scenario after a %gs warm-up; server (--sync=%s), trivial app, Pebble ceilings and load driver all share this machine's %d cores\n",
			r.Config.DurationS, r.Config.WarmupS, r.Config.Sync, mi.NumCPU)
	}
	if hasGroup(r.Measurements, groupFanout) || hasGroup(r.Measurements, groupMemory) {
		fmt.Fprintf(&sb, "realtime: %gs per fan-out step and idle hold; server --sync=%s; fd limit %d; the servers, the subscribers and the writer all share this machine's %d cores\n",
			r.Config.DurationS, r.Config.Sync, r.Config.FDLimit, mi.NumCPU)
	}
	fmt.Fprintf(&sb, "load:     other processes used %.2f cores just before the run; column \"other\" is their use during each measurement (above %.1f: noisy), \"cpu\" the cores used by this process and wrk\n",
		r.BackgroundCores, noisyCores)
	if r.Error != "" {
		fmt.Fprintf(&sb, "ERROR:    the run stopped early: %s\n", r.Error)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&sb, "NOTE:     %s\n", n)
	}

	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	if hasGroup(r.Measurements, "") || len(r.Measurements) == 0 {
		sb.WriteString("\n-- measurements (each scenario right after its ceiling) --\n")
		fmt.Fprintln(tw, "what\tclients\trate\tp50\tp99\tp99.9\tvs ceiling\tcpu\tother\tstatus")
	}
	for _, m := range r.Measurements {
		if m.Group != "" {
			continue // in the real-time tables
		}
		vs := ""
		if m.CeilingID != "" {
			vs = fmt.Sprintf("rate %s×, p99 %s×", fmtRatio(m.RateRatio), fmtRatio(m.P99Ratio))
		}
		status := "ok"
		if m.Invalid != "" {
			status = "INVALID: " + m.Invalid
		}
		if m.noisy() {
			status = "NOISY, " + status
		}
		if m.Note != "" {
			status += " (" + m.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s %s/s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n", m.Name, m.Clients, fmtRate(m.Rate), m.Unit,
			fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.P999Ms), vs, m.SelfCores, m.OtherCores, status)
	}
	tw.Flush()
	sb.WriteString(formatRealtime(r))
	sb.WriteString(formatStreams(r))
	sb.WriteString(formatQueues(r))
	sb.WriteString(formatLocks(r))
	sb.WriteString(formatSearch(r))

	sb.WriteString("\n-- budgets (DESIGN.md \"Performance budgets\"; ceilings from this run) --\n")
	tw = tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "budget\tfigure\tceiling\tratio\tbudget\tresult")
	for _, b := range r.Budgets {
		fig, ceil := "-", "-"
		if b.Result != resultNotMeasured {
			fig = fmtFigure(b.Figure, b.Unit)
			if b.CeilingDesc != "" {
				ceil = fmtFigure(b.Ceiling, b.Unit) + " (" + b.CeilingDesc + ")"
			}
		}
		res := b.Result
		if b.Reason != "" {
			res += ": " + b.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, fig, ceil, fmtRatio(b.Ratio), b.Budget, res)
	}
	tw.Flush()
	return sb.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
