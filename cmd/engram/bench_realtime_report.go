package main

// Results of the real-time scenarios: their measurements, their budgets and
// their table in the report. Pure, like bench_report.go.

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	groupFanout = "fanout"
	groupMemory = "memory"
)

// fanStep describes one fan-out measurement for fanMeasurement.
type fanStep struct {
	ID, Name, Kind string
	Transport      string  // raw-ws, ws, sse
	Subs           int     // live subscribers at the start
	Target         float64 // events/s; 0 = saturation
	Events         int64   // events committed (Engram) or messages broadcast (raw)
	Failed         int64   // posts that failed
	FirstErr       string
	Dropped        int64 // raw: offers the broadcaster dropped (full queue, closed connection)
	// LaggedBefore and EndedBefore are the group's cut-offs before the
	// step: the group's totals count them too.
	LaggedBefore, EndedBefore int
}

// histMs returns p50/p99/p99.9/max of a µs histogram in ms.
func histMs(h *hdrhistogram.Histogram) (p50, p99, p999, mx float64) {
	if h == nil || h.TotalCount() == 0 {
		return 0, 0, 0, 0
	}
	return float64(h.ValueAtQuantile(50)) / 1000, float64(h.ValueAtQuantile(99)) / 1000,
		float64(h.ValueAtQuantile(99.9)) / 1000, float64(h.Max()) / 1000
}

// fanMeasurement turns a step and its subscribers' totals into a
// measurement: deliveries/s over the span from the first stamp to the last
// receipt, latency from stamp to receipt.
func fanMeasurement(s fanStep, t fanTotals) measurement {
	m := measurement{
		ID: s.ID, Name: s.Name, Kind: s.Kind, Group: groupFanout, Transport: s.Transport,
		Clients: s.Subs, Unit: "delivery", TargetRate: s.Target,
		Events: s.Events, Expected: s.Events * int64(s.Subs), Delivered: t.Delivered, Ops: t.Delivered,
		Lagged: t.Lagged - s.LaggedBefore, ConnsEnded: t.Ended - s.EndedBefore,
	}
	if t.MaxRecv > t.MinStamp && t.MinStamp > 0 {
		m.DurationS = float64(t.MaxRecv-t.MinStamp) / 1e9
		m.Rate = float64(t.Delivered) / m.DurationS
	}
	m.P50Ms, m.P99Ms, m.P999Ms, m.MaxMs = histMs(t.Hist)
	m.CommitP50Ms, m.CommitP99Ms, _, _ = histMs(t.CommitHist)
	m.Lost = max(m.Expected-m.Delivered, 0)

	var inv []string
	if t.Delivered == 0 {
		inv = append(inv, "nothing delivered")
	}
	if s.Failed > 0 {
		inv = append(inv, fmt.Sprintf("%d writes failed (first: %.200s)", s.Failed, s.FirstErr))
	}
	if t.OutOfOrder > 0 {
		inv = append(inv, fmt.Sprintf("%d events out of order or repeated", t.OutOfOrder))
	}
	if m.Delivered > m.Expected {
		inv = append(inv, fmt.Sprintf("%d deliveries more than expected", m.Delivered-m.Expected))
	}
	m.Invalid = strings.Join(inv, "; ")

	unit := "events"
	if s.Transport == "raw-ws" {
		unit = "messages"
	}
	note := fmt.Sprintf("%d %s to %d subscribers: delivered %d of %d", s.Events, unit, s.Subs, m.Delivered, m.Expected)
	if m.Lost > 0 {
		note += fmt.Sprintf(" (%d lost)", m.Lost)
	}
	if m.Lagged > 0 {
		note += fmt.Sprintf("; %d subscriptions cut as lagged", m.Lagged)
	}
	if m.ConnsEnded > 0 {
		note += fmt.Sprintf("; %d connections ended (%s)", m.ConnsEnded, t.FirstErr)
	}
	if s.Dropped > 0 {
		note += fmt.Sprintf("; the broadcaster dropped %d offers", s.Dropped)
	}
	if m.CommitP99Ms > 0 {
		note += fmt.Sprintf("; commit→receipt p50 %s p99 %s", fmtMs(m.CommitP50Ms), fmtMs(m.CommitP99Ms))
	}
	m.Note = note
	return m
}

// memoryMeasurement is the RSS figure of n idle subscribers (want asked
// for, live still subscribed at the end); sizes in bytes.
func memoryMeasurement(n, live, want int, base, rss, peak, hwm int64, connect time.Duration) measurement {
	m := measurement{
		ID: memoryID, Name: fmt.Sprintf("server RSS, %d idle WebSocket subscribers", n), Kind: kindScenario,
		Group: groupMemory, Transport: "ws", Clients: n, Unit: "MB",
		RSSMB: float64(rss) / 1e6, BaseRSSMB: float64(base) / 1e6, PeakRSSMB: float64(max(peak, hwm)) / 1e6,
	}
	if n > 0 {
		m.PerSubKB = float64(rss-base) / float64(n) / 1e3
	}
	var inv []string
	if n < want {
		inv = append(inv, fmt.Sprintf("only %d of %d subscribers (fd limit)", n, want))
	}
	if live < n {
		inv = append(inv, fmt.Sprintf("%d subscribers dropped while held", n-live))
	}
	m.Invalid = strings.Join(inv, "; ")
	m.Note = fmt.Sprintf("VmRSS of the server process after holding them; baseline %s, %.1f KB per subscriber, peak %s; connected in %s",
		fmtMB(m.BaseRSSMB), m.PerSubKB, fmtMB(m.PeakRSSMB), connect.Round(10*time.Millisecond))
	return m
}

// fmtMB formats megabytes (10^6 bytes).
func fmtMB(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f MB", v)
	}
	return fmt.Sprintf("%.0f MB", v)
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// The budgets of DESIGN.md for real time are stated for 1,000 WebSocket
// subscribers at 50 events/s and at saturation, and 10k idle subscribers.
const (
	budgetSubs     = 1000
	budgetRate     = 50
	budgetP99Ms    = 25
	budgetSatRatio = 0.70
	budgetRSSMB    = 300
	budgetIdleSubs = 10000
)

var (
	fanBudgetR50  = fanScenarioID("ws", budgetSubs, budgetRate)
	fanBudgetSat  = fanScenarioID("ws", budgetSubs, 0)
	fanCeilR50    = fanCeilingID(budgetSubs, budgetRate)
	fanCeilSat    = fanCeilingID(budgetSubs, 0)
	budgetNameP99 = "fan-out to 1,000 WS subscribers, 50 events/s: p99"
	budgetNameSat = "fan-out to 1,000 WS subscribers, saturation: deliveries/s"
	budgetNameAll = "fan-out to 1,000 WS subscribers: none lost"
	budgetNameRSS = "memory: 10k idle WS subscribers: server RSS"
)

// computeRealtimeBudgets checks the real-time budgets of DESIGN.md.
func computeRealtimeBudgets(ms []measurement, syncMode string) []budgetResult {
	var out []budgetResult
	missing := func(b budgetResult, ids ...string) (budgetResult, bool) {
		var miss []string
		for _, id := range ids {
			if _, ok := findMeasurement(ms, id); !ok {
				miss = append(miss, id)
			}
		}
		if miss == nil {
			return b, false
		}
		b.Result, b.Reason = resultNotMeasured, "missing "+strings.Join(miss, ", ")
		return b, true
	}
	invalidOf := func(parts ...measurement) string {
		var rs []string
		for _, m := range parts {
			if m.Invalid != "" {
				rs = append(rs, m.ID+": "+m.Invalid)
			}
		}
		return strings.Join(rs, "; ")
	}

	// 1. At 50 events/s, p99 from the writer's stamp to receipt ≤ 25 ms.
	{
		b := budgetResult{Name: budgetNameP99, FigureID: fanBudgetR50, Unit: "ms", Cmp: "<=", Limit: budgetP99Ms, Absolute: true,
			Budget: fmt.Sprintf("p99 ≤ %d ms (absolute; writer's stamp → receipt)", budgetP99Ms)}
		if nb, miss := missing(b, fanBudgetR50); miss {
			out = append(out, nb)
		} else {
			m := mustFind(ms, fanBudgetR50)
			b.Figure = m.P99Ms
			if c, ok := findMeasurement(ms, fanCeilR50); ok {
				b.Ceiling, b.CeilingDesc = c.P99Ms, "raw broadcast p99 at the same rate (informative)"
			}
			b.evaluate(invalidOf(m))
			out = append(out, b)
		}
	}
	// 2. At saturation, deliveries/s ≥ 70 % of the raw broadcast ceiling.
	{
		b := budgetResult{Name: budgetNameSat, FigureID: fanBudgetSat, Unit: "deliveries/s", Cmp: ">=", Limit: budgetSatRatio,
			Budget: fmt.Sprintf("≥ %.0f%% of the raw broadcast (ratio ≥ %.2f)", budgetSatRatio*100, budgetSatRatio)}
		if nb, miss := missing(b, fanBudgetSat, fanCeilSat); miss {
			out = append(out, nb)
		} else {
			m, c := mustFind(ms, fanBudgetSat), mustFind(ms, fanCeilSat)
			b.Figure, b.Ceiling = m.Rate, c.Rate
			b.CeilingDesc = fmt.Sprintf("raw WS broadcast of a prepared %d B frame to %d conns", rawFrameSize, c.Clients)
			b.evaluate(invalidOf(m, c))
			out = append(out, b)
		}
	}
	// 3. None lost, at 50 events/s and at saturation.
	{
		b := budgetResult{Name: budgetNameAll, FigureID: fanBudgetR50 + "+" + fanBudgetSat, Unit: "lost", Cmp: "<=", Limit: 0, Absolute: true,
			Budget: "every event reaches every subscriber (a lagged cut-off is a loss)"}
		if nb, miss := missing(b, fanBudgetR50, fanBudgetSat); miss {
			out = append(out, nb)
		} else {
			r, s := mustFind(ms, fanBudgetR50), mustFind(ms, fanBudgetSat)
			b.Figure = float64(r.Lost + s.Lost)
			b.evaluate(invalidOf(r, s))
			lagged := r.Lagged + s.Lagged
			b.Reason = joinNote(b.Reason, fmt.Sprintf("delivered %d of %d; %d subscriptions cut as lagged", r.Delivered+s.Delivered, r.Expected+s.Expected, lagged))
			if b.Result == resultMet && lagged > 0 {
				b.Result = resultNotMet
			}
			out = append(out, b)
		}
	}
	// 4. 10k idle WebSocket subscribers ≤ 300 MB RSS.
	{
		b := budgetResult{Name: budgetNameRSS, FigureID: memoryID, Unit: "MB", Cmp: "<=", Limit: budgetRSSMB, Absolute: true,
			Budget: fmt.Sprintf("≤ %d MB VmRSS of the server process (MB = 10^6 B)", budgetRSSMB)}
		if nb, miss := missing(b, memoryID); miss {
			out = append(out, nb)
		} else {
			m := mustFind(ms, memoryID)
			b.Figure = m.RSSMB
			b.evaluate(invalidOf(m))
			out = append(out, b)
		}
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// realtimeBudgetUses says whether real-time budget b uses measurement id.
func realtimeBudgetUses(b budgetResult, id string) (uses, known bool) {
	switch b.Name {
	case budgetNameP99:
		return id == fanBudgetR50 || id == fanCeilR50, true
	case budgetNameSat:
		return id == fanBudgetSat || id == fanCeilSat, true
	case budgetNameAll:
		return id == fanBudgetR50 || id == fanBudgetSat, true
	case budgetNameRSS:
		return id == memoryID, true
	}
	return false, false
}

// fanRowVerdict is the budget and result shown on a real-time row: the
// rows the budgets are computed from show them, the others "-".
func fanRowVerdict(m measurement, budgets []budgetResult) (budget, result string) {
	find := func(name string) (budgetResult, bool) {
		for _, b := range budgets {
			if b.Name == name {
				return b, true
			}
		}
		return budgetResult{}, false
	}
	var main budgetResult
	var ok bool
	switch m.ID {
	case fanBudgetR50:
		main, ok = find(budgetNameP99)
		budget = fmt.Sprintf("p99 ≤ %d ms, none lost", budgetP99Ms)
	case fanBudgetSat:
		main, ok = find(budgetNameSat)
		budget = fmt.Sprintf("≥ %.2f× raw, none lost", budgetSatRatio)
	case memoryID:
		main, ok = find(budgetNameRSS)
		budget = fmt.Sprintf("≤ %d MB", budgetRSSMB)
	default:
		return "-", "-"
	}
	if !ok {
		return budget, resultNotMeasured
	}
	result = main.Result
	if m.Group == groupFanout && result == resultMet && (m.Lost > 0 || m.Lagged > 0) {
		result = resultNotMet
	}
	return budget, result
}

// hasGroup says whether any measurement belongs to group g.
func hasGroup(ms []measurement, g string) bool {
	for _, m := range ms {
		if m.Group == g {
			return true
		}
	}
	return false
}

// formatRealtime renders the real-time tables of the report ("" when the
// run had no real-time scenario).
func formatRealtime(r benchReport) string {
	var sb strings.Builder
	c := r.Config
	if hasGroup(r.Measurements, groupFanout) {
		fmt.Fprintf(&sb, "\n-- real-time: fan-out of one topic (each scenario right after its raw ceiling) --\n")
		fmt.Fprintf(&sb, "setup: Engram server %s, raw broadcast server in its own process, subscribers and writer in the bench process; paced: 1 writer posting %d B units; saturation: %d writers, at most %d events in flight (not yet at every subscriber); latency from the writer's stamp (raw: the broadcaster's) to receipt; \"server\" is the server process's cores, \"bench\" the clients'\n",
			orDash(c.FanoutServer), recordSize, c.FanoutPosters, c.FanoutWindow)
		tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "what\tsubs\tevents\tdeliveries/s\tp50\tp99\tp99.9\tdelivered/expected\tlost\tlagged\tvs raw\tserver\tbench\tother\tbudget\tresult")
		for _, m := range r.Measurements {
			if m.Group != groupFanout {
				continue
			}
			vs := "-"
			if m.CeilingID != "" {
				vs = fmtRatio(m.RateRatio) + "×"
			}
			budget, res := fanRowVerdict(m, r.Budgets)
			if m.Invalid != "" {
				res = "INVALID: " + m.Invalid
			}
			if m.noisy() {
				res += " (noisy)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\n",
				m.Name, m.Clients, m.Events, fmtRate(m.Rate), fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.P999Ms),
				m.Delivered, m.Expected, m.Lost, m.Lagged, vs, m.ServerCores, m.SelfCores, m.OtherCores, budget, res)
		}
		tw.Flush()
		for _, m := range r.Measurements {
			if m.Group == groupFanout && m.Note != "" {
				fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
			}
		}
	}
	if hasGroup(r.Measurements, groupMemory) {
		sb.WriteString("\n-- real-time: memory (a fresh server process; subscribers in the bench process) --\n")
		tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "what\tsubs\tserver RSS\tbaseline\tper subscriber\tpeak\tother\tbudget\tresult")
		for _, m := range r.Measurements {
			if m.Group != groupMemory {
				continue
			}
			budget, res := fanRowVerdict(m, r.Budgets)
			if m.Invalid != "" {
				res = "INVALID: " + m.Invalid
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f KB\t%s\t%.2f\t%s\t%s\n", m.Name, m.Clients, fmtMB(m.RSSMB), fmtMB(m.BaseRSSMB),
				m.PerSubKB, fmtMB(m.PeakRSSMB), m.OtherCores, budget, res)
		}
		tw.Flush()
		for _, m := range r.Measurements {
			if m.Group == groupMemory && m.Note != "" {
				fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
			}
		}
	}
	return sb.String()
}
