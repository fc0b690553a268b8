package main

// The real-time scenarios of DESIGN.md "Performance budgets": fan-out of one
// topic to 1, 100 and 1,000 WebSocket subscribers and to 1,000 SSE
// subscribers, at a paced 50 events/s and at saturation, each right after
// the raw ceiling (a prepared 300 B frame broadcast to as many plain
// WebSocket connections); and the RSS of a server holding 10,000 idle
// WebSocket subscribers. The servers run in their own processes; the
// subscribers and the writer run in the bench process.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Measurement ids of the real-time scenarios.
func fanCeilingID(n int, rate float64) string {
	return fmt.Sprintf("ceiling.broadcast.n%d.%s", n, rateTag(rate))
}

func fanScenarioID(transport string, n int, rate float64) string {
	return fmt.Sprintf("fanout.%s.n%d.%s", transport, n, rateTag(rate))
}

const memoryID = "memory.ws_idle"

// rateTag is "r50" for a paced rate, "sat" for saturation (0).
func rateTag(rate float64) string {
	if rate <= 0 {
		return "sat"
	}
	return fmt.Sprintf("r%g", rate)
}

func rateWords(rate float64) string {
	if rate <= 0 {
		return "saturation"
	}
	return fmt.Sprintf("%g events/s", rate)
}

// fanServer is the Engram server of the fan-out scenarios.
type fanServer struct {
	addr string
	pid  int // 0 when in-process
	stop func() error
}

// serverBinary returns the Engram server binary: --server-bin, or one
// built from this module (once per run).
func (b *bench) serverBinary(ctx context.Context) (string, error) {
	if b.cfg.ServerBin != "" {
		return b.cfg.ServerBin, nil
	}
	if b.serverBin != "" || b.serverBinErr != nil {
		return b.serverBin, b.serverBinErr
	}
	dir := filepath.Join(b.dataDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b.progress("building the server binary (go build engram/cmd/server)")
	b.serverBin, b.serverBinErr = buildServerBinary(ctx, dir)
	return b.serverBin, b.serverBinErr
}

// startFanoutServer starts the Engram server for the fan-out scenarios: a
// separate process, unless --fanout-inproc (or --cpuprofile, which can only
// profile this process) asks for it in-process.
func (b *bench) startFanoutServer(ctx context.Context) (fanServer, error) {
	dir := filepath.Join(b.dataDir, "fanout-server")
	inproc := b.cfg.FanoutInproc
	if !inproc {
		bin, err := b.serverBinary(ctx)
		if err == nil {
			p, err := startServerProc(bin, dir, b.cfg.Sync, 20000)
			if err != nil {
				return fanServer{}, err
			}
			b.rep.Config.FanoutServer = "separate process (" + bin + ")"
			return fanServer{addr: p.Addr(), pid: p.Pid(), stop: func() error { return p.stop(60 * time.Second) }}, nil
		}
		b.note("fan-out: no server binary (%v): the server runs in the bench process, so its CPU and the clients' mix", err)
	}
	s, err := startEngramServer(dir, b.cfg.Sync)
	if err != nil {
		return fanServer{}, err
	}
	b.rep.Config.FanoutServer = "in the bench process"
	return fanServer{addr: s.Addr(), stop: func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return s.Shutdown(sctx)
	}}, nil
}

// note adds a remark to the report and prints it.
func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	b.rep.Notes = append(b.rep.Notes, s)
	b.progress("NOTE: %s", s)
}

// fanoutScenarios runs the fan-out group.
func (b *bench) fanoutScenarios(ctx context.Context) (err error) {
	limit, lerr := raiseFDLimit()
	if lerr != nil {
		return fmt.Errorf("fd limit: %w", lerr)
	}
	b.rep.Config.FDLimit = limit
	srv, err := b.startFanoutServer(ctx)
	if err != nil {
		return fmt.Errorf("fan-out server: %w", err)
	}
	defer func() {
		if serr := srv.stop(); serr != nil && err == nil {
			err = fmt.Errorf("fan-out server: %w", serr)
		}
	}()
	bc, err := startBroadcastServer(b.cfg.FanoutWindow)
	if err != nil {
		return fmt.Errorf("broadcast server: %w", err)
	}
	defer bc.stop(10 * time.Second)
	pids := []int{srv.pid, bc.Pid()}
	srvURL := "http://" + srv.addr
	b.progress("fan-out: Engram at %s (pid %d), raw broadcast server at %s (pid %d), fd limit %d",
		srv.addr, srv.pid, bc.Addr(), bc.Pid(), limit)

	for _, want := range b.cfg.FanoutSubs {
		n := fitConns(2*want, limit) / 2 // the raw and the Engram clients are open together
		if n < want {
			b.note("fan-out to %d WebSocket subscribers: only %d fit under the fd limit of %d: measured with %d", want, n, limit, n)
		}
		if n < 1 {
			continue
		}
		ctxID := fmt.Sprintf("bench-fanout-ws-%d", want)
		if err := expectStatus(srvURL+"/v1/workunits", "POST", unitJSON(ctxID, "a1", recordSize), 201); err != nil {
			return fmt.Errorf("fan-out preflight: %w", err)
		}
		b.progress("fan-out: connecting %d raw WebSocket clients and %d Engram /v1/ws subscribers of %s", n, n, topicOf(ctxID))
		raw, err := dialRawGroup(ctx, bc.Addr(), n)
		if err != nil {
			return fmt.Errorf("raw clients: %w", err)
		}
		ws, err := dialEngramWSGroup(ctx, srv.addr, n, func(int) string { return topicOf(ctxID) }, false)
		if err != nil {
			raw.close()
			return fmt.Errorf("ws subscribers: %w", err)
		}
		w := newFanWriter(srv.addr, ctxID, b.cfg.FanoutPosters)
		for _, rate := range []float64{b.cfg.FanoutRate, 0} {
			err = b.measure(ctx, func() ([]measurement, error) {
				cm, err := b.rawStep(ctx, bc, raw, want, rate, pids)
				if err != nil {
					return nil, err
				}
				sm, err := b.engramStep(ctx, ws, w, "ws", want, rate, pids)
				if err != nil {
					return nil, err
				}
				sm.compareWith(cm)
				b.showFan(sm)
				return []measurement{cm, sm}, nil
			})
			if err != nil {
				break
			}
		}
		raw.close()
		ws.close()
		if err != nil {
			return err
		}
	}

	if want := b.cfg.SSESubs; want > 0 {
		n := fitConns(want, limit)
		if n < want {
			b.note("fan-out to %d SSE subscribers: only %d fit under the fd limit of %d", want, n, limit)
		}
		if n < 1 {
			return nil
		}
		ctxID := fmt.Sprintf("bench-fanout-sse-%d", want)
		if err := expectStatus(srvURL+"/v1/workunits", "POST", unitJSON(ctxID, "a1", recordSize), 201); err != nil {
			return fmt.Errorf("sse preflight: %w", err)
		}
		b.progress("fan-out: connecting %d SSE subscribers of %s", n, topicOf(ctxID))
		sse, err := dialSSEGroup(ctx, srv.addr, n, topicOf(ctxID))
		if err != nil {
			return fmt.Errorf("sse subscribers: %w", err)
		}
		defer sse.close()
		w := newFanWriter(srv.addr, ctxID, b.cfg.FanoutPosters)
		for _, rate := range []float64{b.cfg.FanoutRate, 0} {
			if err := b.measure(ctx, func() ([]measurement, error) {
				sm, err := b.engramStep(ctx, sse, w, "sse", want, rate, pids)
				if err != nil {
					return nil, err
				}
				if cm, ok := findMeasurement(b.rep.Measurements, fanCeilingID(want, rate)); ok {
					sm.compareWith(cm)
				}
				b.showFan(sm)
				return []measurement{sm}, nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// rawStep measures the raw broadcast ceiling with the connected group g.
func (b *bench) rawStep(ctx context.Context, bc *benchProc, g *subGroup, want int, rate float64, pids []int) (measurement, error) {
	d := b.cfg.Duration
	id := fanCeilingID(want, rate)
	name := fmt.Sprintf("ceiling: raw WS broadcast, prepared %d B frame, %d conns, %s", rawFrameSize, len(g.conns), rateWords(rate))
	b.progress("%s (%s)", name, d)
	b.waitQuiet(ctx)
	g.reset()
	lag0, end0 := g.cutCounts()
	live := len(g.conns) - lag0 - end0
	s0 := sampleCPUWith(pids...)
	res, err := requestBroadcast(ctx, bc.Addr(), rate, d)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", name, err)
	}
	g.waitDrain(ctx, res.Sent*int64(live), 3*time.Second, 30*time.Second)
	s1 := sampleCPUWith(pids...)
	t := g.collect()
	m := fanMeasurement(fanStep{
		ID: id, Name: name, Kind: kindCeiling, Transport: "raw-ws", Subs: live, Target: rate,
		Events: res.Sent, Dropped: res.Dropped + res.Gone, LaggedBefore: lag0, EndedBefore: end0,
	}, t)
	if res.Conns != live {
		m.Note = joinNote(m.Note, fmt.Sprintf("the server had %d connections, the bench %d live", res.Conns, live))
	}
	m.OtherCores, m.SelfCores, m.ServerCores = otherCoresWith(s0, s1), selfCores(s0.base, s1.base), childCores(s0, s1, 1)
	b.showFan(m)
	return m, nil
}

// engramStep measures Engram's fan-out to the subscribed group g while w
// posts to their topic.
func (b *bench) engramStep(ctx context.Context, g *subGroup, w *fanWriter, transport string, want int, rate float64, pids []int) (measurement, error) {
	d := b.cfg.Duration
	id := fanScenarioID(transport, want, rate)
	name := fmt.Sprintf("fan-out %s, %d subscribers, %s", map[string]string{"ws": "WebSocket", "sse": "SSE"}[transport], len(g.conns), rateWords(rate))
	how := "1 writer, paced"
	if rate <= 0 {
		how = fmt.Sprintf("%d writers, at most %d events in flight", b.cfg.FanoutPosters, b.cfg.FanoutWindow)
	}
	b.progress("%s (%s, %s)", name, d, how)
	b.waitQuiet(ctx)
	g.reset()
	lag0, end0 := g.cutCounts()
	live := len(g.conns) - lag0 - end0
	stop, err := b.startProfile(id)
	if err != nil {
		return measurement{}, err
	}
	s0 := sampleCPUWith(pids...)
	var wr writeResult
	var win *fanWindow
	if rate > 0 {
		wr = w.runPaced(ctx, rate, d)
	} else {
		win = newFanWindow(b.cfg.FanoutWindow, live)
		g.win.Store(win)
		wr = w.runSaturated(ctx, b.cfg.FanoutPosters, d, win)
	}
	g.waitDrain(ctx, wr.Committed*int64(live), 3*time.Second, 30*time.Second)
	s1 := sampleCPUWith(pids...)
	stop()
	g.win.Store(nil)
	if win != nil {
		win.close()
	}
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}
	t := g.collect()
	m := fanMeasurement(fanStep{
		ID: id, Name: name, Kind: kindScenario, Transport: transport, Subs: live, Target: rate,
		Events: wr.Committed, Failed: wr.Failed, FirstErr: wr.FirstErr, LaggedBefore: lag0, EndedBefore: end0,
	}, t)
	if win != nil && wr.Committed > 0 {
		m.Note = joinNote(m.Note, fmt.Sprintf("%.0f%% of posts waited for the window", 100*float64(win.waited.Load())/float64(wr.Committed)))
	}
	m.OtherCores, m.SelfCores, m.ServerCores = otherCoresWith(s0, s1), selfCores(s0.base, s1.base), childCores(s0, s1, 0)
	return m, nil
}

// showFan prints a real-time measurement as it completes.
func (b *bench) showFan(m measurement) {
	line := fmt.Sprintf("%-62s %s deliveries/s  p50 %s  p99 %s  p99.9 %s  delivered %d/%d  lagged %d  server %.2f  other %.2f",
		m.Name, fmtRate(m.Rate), fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.P999Ms), m.Delivered, m.Expected, m.Lagged, m.ServerCores, m.OtherCores)
	if m.RateRatio > 0 {
		line += fmt.Sprintf("  %s× raw", fmtRatio(m.RateRatio))
	}
	if m.Invalid != "" {
		line += "  INVALID: " + m.Invalid
	}
	b.progress("  %s", line)
}

// memoryScenario measures the RSS of a fresh server process holding
// --idle-subs idle WebSocket subscribers.
func (b *bench) memoryScenario(ctx context.Context) error {
	limit, err := raiseFDLimit()
	if err != nil {
		return fmt.Errorf("fd limit: %w", err)
	}
	b.rep.Config.FDLimit = limit
	want := b.cfg.IdleSubs
	n := fitConns(want, limit)
	if n < want {
		b.note("memory: %d idle subscribers need %d file descriptors in the bench and as many in the server, the limit is %d: measured with %d", want, want+fdReserve, limit, n)
	}
	name := fmt.Sprintf("server RSS, %d idle WebSocket subscribers", n)
	bin, err := b.serverBinary(ctx)
	if err != nil {
		b.note("memory: not measured: %v", err)
		return nil
	}
	b.progress("%s", name)
	b.waitQuiet(ctx)
	p, err := startServerProc(bin, filepath.Join(b.dataDir, "memory-server"), b.cfg.Sync, max(20000, n+fdReserve))
	if err != nil {
		return fmt.Errorf("memory server: %w", err)
	}
	defer p.stop(60 * time.Second)
	srvURL := "http://" + p.Addr()
	if err := expectStatus(srvURL+"/readyz", "GET", nil, 200); err != nil {
		return fmt.Errorf("memory server: %w", err)
	}
	time.Sleep(time.Second)
	base, _, err := procRSS(p.Pid())
	if err != nil {
		return err
	}
	s0 := sampleCPUWith(p.Pid())
	t0 := time.Now()
	g, err := dialEngramWSGroup(ctx, p.Addr(), n, func(i int) string { return fmt.Sprintf("contexts/bench-idle-%d", i%100) }, true)
	if err != nil {
		return fmt.Errorf("idle subscribers: %w", err)
	}
	defer g.close()
	connect := time.Since(t0)
	b.progress("  %d subscribed in %s; holding them for %s", n, connect.Round(10*time.Millisecond), b.cfg.Duration)
	var rss, peak, hwm int64
	for end := time.Now().Add(b.cfg.Duration); ; {
		r, h, err := procRSS(p.Pid())
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		rss, peak, hwm = r, max(peak, r), h
		if !time.Now().Before(end) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	s1 := sampleCPUWith(p.Pid())
	live := g.live()
	rt := scrapeGoRuntime(srvURL)
	m := memoryMeasurement(n, live, want, base, rss, peak, hwm, connect)
	if rt.ok {
		m.Note = joinNote(m.Note, fmt.Sprintf("server Go runtime: %.0f goroutines (%.1f per subscriber), heap in use %s, stacks %s",
			rt.Goroutines, rt.Goroutines/float64(max(n, 1)), fmtMB(rt.HeapInuse/1e6), fmtMB(rt.StackInuse/1e6)))
	}
	m.OtherCores, m.SelfCores, m.ServerCores = otherCoresWith(s0, s1), selfCores(s0.base, s1.base), childCores(s0, s1, 0)
	b.progress("  %s: RSS %s (baseline %s, %.1f KB per subscriber), peak %s  other %.2f",
		m.Name, fmtMB(m.RSSMB), fmtMB(float64(base)/1e6), m.PerSubKB, fmtMB(float64(max(peak, hwm))/1e6), m.OtherCores)
	b.rep.Measurements = append(b.rep.Measurements, m)
	return ctx.Err()
}
