package main

// `engram bench`: runs the real server in this process, measures the
// scenarios of DESIGN.md "Performance budgets" and, in the same run, the
// machine ceilings they are budgeted against; prints each figure with its
// ratio to its ceiling and whether its budget is met.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchConfig holds the parsed flags of `engram bench`.
type benchConfig struct {
	Duration   time.Duration // per scenario and per ceiling
	Warmup     time.Duration // before each HTTP measurement
	Quick      bool
	DataDir    string // parent of the run's data dir; "" = system temp
	Keep       bool
	JSONPath   string
	Driver     string          // auto, wrk, fasthttp
	Sync       string          // server sync mode
	CPUProfile string          // directory for CPU profiles of the server scenarios
	Batches    int             // batch requests per batch-insert run; 0 = run for Duration
	ListUnits  int             // units preloaded into the list context
	Clients    []int           // write-scenario concurrencies
	Only       map[string]bool // scenario groups to run; empty = all
	WaitQuiet  time.Duration   // before each measurement, wait up to this long for other processes to go idle
	Retries    int             // re-runs of a step measured while other processes were busy

	// Real time (groups fanout and memory).
	FanoutSubs    []int   // WebSocket subscriber counts of the fan-out scenarios
	SSESubs       int     // SSE subscribers (0: none)
	FanoutRate    float64 // the paced rate, events/s
	FanoutWindow  int     // saturation: events in flight at most (and the raw broadcaster's queue)
	FanoutPosters int     // saturation: concurrent writers
	IdleSubs      int     // idle WebSocket subscribers of the memory scenario
	ServerBin     string  // the Engram server binary; "" = go build engram/cmd/server
	FanoutInproc  bool    // run the fan-out server in the bench process

	StreamsSubs int // /stream subscribers of the streams fan-out

	QueueBacklog int // queues: messages of the large-backlog lease+ack step (0: skip it)

	LockCount int // locks: live locks of the mass-expiry step (0: skip it)

	// Search (its own server): corpus size, timed queries per case, the
	// lag step's paced writes/s and its length (0: skip it).
	SearchUnits, SearchQueries, SearchLagSeconds int
	SearchRate                                   float64
}

// benchGroups are the groups --only selects from, each with the ceilings
// its budgets need.
var benchGroups = []string{"disk", "write", "batch", "list", "fanout", "memory", "streams", "queues", "locks", "search"}

// wantHTTP says whether any group that uses the in-process server and
// the trivial app runs.
func (c benchConfig) wantHTTP() bool {
	return c.want("disk") || c.want("write") || c.want("batch") || c.want("list") || c.want("streams") || c.want("queues") || c.want("locks")
}

// want says whether group g runs.
func (c benchConfig) want(g string) bool { return len(c.Only) == 0 || c.Only[g] }

const (
	batchSize   = 1000 // units per batch request
	listClients = 8
	listLimit   = 100
	pebbleW     = 64 // writers of the Pebble synced-commit ceiling
)

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	cfg := benchConfig{ListUnits: 10000, Clients: []int{1, 16, 64}, FanoutSubs: []int{1, 100, 1000}}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long each scenario and each ceiling runs (wrk rounds up to whole seconds)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up load before each HTTP measurement (not counted)")
	fs.BoolVar(&cfg.Quick, "quick", false, "short smoke run: 1s per scenario and 0.2s warm-ups")
	fs.StringVar(&cfg.DataDir, "data", "", "directory in which to create the run's data dir (server data, fsync file, Pebble ceilings); default: the system temp dir")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the run's data dir instead of removing it")
	fs.StringVar(&cfg.JSONPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.Driver, "driver", "auto", "HTTP load driver: auto (wrk if on PATH, else fasthttp), wrk or fasthttp")
	fs.StringVar(&cfg.Sync, "sync", "always", "server sync mode: always (budgets apply) or none")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "directory: write a CPU profile of this process during each server scenario into it, named after the scenario (write.c64.pprof, ...); it includes the fasthttp driver when that drives the load, and the subscriber clients in the fan-out scenarios (whose server it moves into this process), and costs a few % of throughput")
	var only, clients string
	fs.StringVar(&only, "only", "", "comma-separated groups to run (default all): disk (fsync and Pebble 64-writer ceilings), write (trivial handler and durable writes), batch (Pebble batches and batch insert), list (trivial GET and list), fanout (raw WebSocket broadcast ceiling, WebSocket and SSE fan-out), memory (server RSS with idle WebSocket subscribers), streams (trivial handler, stream set and update at 1 and 64 clients; raw broadcast ceiling and /stream fan-out), queues (fsync, Pebble 64-writer and trivial-handler ceilings; publish at 1 and 16 clients and in batches of 100; lease+ack at 1 and 16 consumers, max 1 and 10; lease+ack at 16 consumers on a --queue-backlog backlog), locks (fsync, Pebble 64- and 1-writer and trivial-handler ceilings; acquire+release at 1 client; 64 clients handing one resource over; --lock-count locks expiring at once), search (its own server: raw FTS5 insert and query ceilings; a --search-units corpus written in batches and indexed; selective, two-term and common queries, relevance and recent, against raw FTS5; index lag at --search-rate writes/s)")
	fs.StringVar(&clients, "clients", "1,16,64", "comma-separated client counts of the durable-write scenario (budgets use 1 and 64)")
	fs.DurationVar(&cfg.WaitQuiet, "wait-quiet", 0, "before each measurement wait up to this long until other processes use under 0.2 cores (for shared machines; 0 = don't wait)")
	fs.IntVar(&cfg.Retries, "retries", 0, "re-run a ceiling/scenario step up to this many times when other processes used over 0.2 cores during it, keeping the quietest attempt")
	var fanSubs string
	fs.StringVar(&fanSubs, "fanout-subs", "1,100,1000", "fanout: comma-separated WebSocket subscriber counts (the budgets use 1000)")
	fs.IntVar(&cfg.SSESubs, "sse-subs", 1000, "fanout: SSE subscribers (0: no SSE scenario)")
	fs.Float64Var(&cfg.FanoutRate, "fanout-rate", 50, "fanout: the paced rate, events/s (the budget is at 50)")
	fs.IntVar(&cfg.FanoutWindow, "fanout-window", 256, "fanout: at saturation, events in flight (posted, not yet received by every subscriber) at most; also the raw broadcaster's per-connection queue")
	fs.IntVar(&cfg.FanoutPosters, "fanout-writers", 256, "fanout: concurrent writers at saturation (as many as --fanout-window, so that the window and not the writers' latency under load sets the pace)")
	fs.IntVar(&cfg.StreamsSubs, "streams-subs", 1000, "streams: /stream subscribers joined to the fanned-out group (the applied budgets use 1000); the rate, window and writers are --fanout-rate, --fanout-window and --fanout-writers")
	fs.IntVar(&cfg.QueueBacklog, "queue-backlog", 1000000, "queues: messages in the topic of the large-backlog lease+ack step, prefilled in batches of 1000 (the issue's figure is 1000000; --quick makes it 100000 unless set; 0 skips the step)")
	fs.IntVar(&cfg.LockCount, "lock-count", 100000, "locks: live locks created with one common expires_at for the expiry-latency step (--quick makes it 10000 unless set; 0 skips the step)")
	addSearchFlags(fs, &cfg)
	fs.IntVar(&cfg.IdleSubs, "idle-subs", 10000, "memory: idle WebSocket subscribers (scaled down, and said so, when the fd limit is lower)")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "fanout, memory: the Engram server binary to run as a separate process (default: go build engram/cmd/server into the data dir)")
	fs.BoolVar(&cfg.FanoutInproc, "fanout-inproc", false, "fanout: run the Engram server in the bench process (implied by --cpuprofile, which profiles only this process); the memory scenario always runs it apart")
	fs.IntVar(&cfg.Batches, "batches", 0, "batch requests ("+fmt.Sprint(batchSize)+" units each) per batch-insert run, split among its clients; 0 = as many as fit in --duration")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: engram bench [flags]

Runs the Engram server and measures, against ceilings measured in the
same run on the same machine:
  durable single-unit writes at 1, 16 and 64 clients (req/s, p50/p99/p99.9)
  batch insert of %d units (1 and 2 clients)
  list the last %d units of a context holding %d units (%d clients)
  fan-out of one topic to 1, 100 and 1,000 WebSocket and 1,000 SSE
    subscribers at 50 events/s and at saturation (deliveries/s, latency
    from the writer's stamp to receipt, delivered versus expected)
  the server's RSS with 10,000 idle WebSocket subscribers
  stream item set (PUT) and update (PATCH increment) at 1 and 64 clients,
    and fan-out of one stream group to 1,000 /stream subscribers
  queue publish (1 and 16 clients, batches of 100) and lease+ack (1 and
    16 consumers, max 1 and 10; and 16 consumers on a 1M backlog)
  lock acquire+release at 1 client, 64 clients handing one resource
    over, and the expiry latency of 100,000 locks expiring at once
  search on 1M work units: index throughput, selective, two-term and
    common queries (relevance and recent) and index lag at 5k writes/s,
    against raw FTS5 on the same texts
Ceilings: append+fdatasync in the data dir, Pebble synced commits (%d
goroutines, and %d-record batches), a trivial handler on the same Fiber
stack under the same load, a prepared 300 B WebSocket frame broadcast to
as many plain connections. HTTP load comes from wrk when installed
(apt-get install wrk), else from a fasthttp client. The fan-out and memory
scenarios run the server as a separate process (built with go build).

Flags:
`, batchSize, listLimit, cfg.ListUnits, listClients, pebbleW, batchSize)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "engram bench: unexpected arguments %q\n", fs.Args())
		return cfg, errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.Quick {
		if !set["duration"] {
			cfg.Duration = time.Second
		}
		if !set["warmup"] {
			cfg.Warmup = 200 * time.Millisecond
		}
		if !set["queue-backlog"] {
			cfg.QueueBacklog = 100000
		}
		if !set["lock-count"] {
			cfg.LockCount = 10000
		}
	}
	if err := searchFlagDefaults(&cfg, set, stderr); err != nil {
		return cfg, err
	}
	if cfg.LockCount < 0 {
		fmt.Fprintln(stderr, "engram bench: --lock-count must not be negative")
		return cfg, errUsage
	}
	if cfg.QueueBacklog < 0 {
		fmt.Fprintln(stderr, "engram bench: --queue-backlog must not be negative")
		return cfg, errUsage
	}
	if cfg.Duration <= 0 {
		fmt.Fprintln(stderr, "engram bench: --duration must be positive")
		return cfg, errUsage
	}
	if cfg.Retries < 0 {
		fmt.Fprintln(stderr, "engram bench: --retries must not be negative")
		return cfg, errUsage
	}
	if cfg.Batches < 0 || cfg.Batches == 1 {
		fmt.Fprintln(stderr, "engram bench: --batches must be 0 (time-based) or at least 2")
		return cfg, errUsage
	}
	if only != "" {
		cfg.Only = map[string]bool{}
		for _, g := range strings.Split(only, ",") {
			g = strings.TrimSpace(g)
			if !slices.Contains(benchGroups, g) {
				fmt.Fprintf(stderr, "engram bench: --only: unknown group %q (want %s)\n", g, strings.Join(benchGroups, ", "))
				return cfg, errUsage
			}
			cfg.Only[g] = true
		}
	}
	cfg.FanoutSubs = nil
	for _, f := range strings.Split(fanSubs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100000 {
			fmt.Fprintf(stderr, "engram bench: --fanout-subs: %q is not a subscriber count\n", f)
			return cfg, errUsage
		}
		cfg.FanoutSubs = append(cfg.FanoutSubs, n)
	}
	if cfg.SSESubs < 0 || cfg.IdleSubs < 1 || cfg.StreamsSubs < 1 || cfg.FanoutRate <= 0 || cfg.FanoutWindow < 1 || cfg.FanoutPosters < 1 {
		fmt.Fprintln(stderr, "engram bench: --sse-subs must be >= 0; --idle-subs, --streams-subs, --fanout-rate, --fanout-window and --fanout-writers positive")
		return cfg, errUsage
	}
	if cfg.CPUProfile != "" && cfg.want("fanout") && !set["fanout-inproc"] {
		cfg.FanoutInproc = true // a profile of this process must hold the server
	}
	cfg.Clients = nil
	for _, f := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 10000 {
			fmt.Fprintf(stderr, "engram bench: --clients: %q is not a client count\n", f)
			return cfg, errUsage
		}
		cfg.Clients = append(cfg.Clients, n)
	}
	if cfg.Sync != "always" && cfg.Sync != "none" {
		fmt.Fprintf(stderr, "engram bench: --sync must be always or none, not %q\n", cfg.Sync)
		return cfg, errUsage
	}
	return cfg, nil
}

// runBench is the `engram bench` subcommand.
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == broadcastServerArg {
		return runBroadcastServer(args[1:], stdout, stderr)
	}
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	drv, err := pickDriver(cfg.Driver)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	parent := cfg.DataDir
	if parent != "" {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	dataDir, err := os.MkdirTemp(parent, "engram-bench-*")
	if err != nil {
		return err
	}
	if cfg.Keep {
		fmt.Fprintf(stderr, "data dir (kept): %s\n", dataDir)
	} else {
		defer os.RemoveAll(dataDir)
	}

	b := &bench{
		cfg:     cfg,
		drv:     drv,
		dataDir: dataDir,
		log:     stderr,
		rep: benchReport{
			Date:    time.Now().UTC().Format(time.RFC3339),
			Command: commandLine(append([]string{"bench"}, args...)),
			Machine: collectMachineInfo(dataDir),
			Driver:  drv.Name(),
			Config: reportConfig{
				DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Quick: cfg.Quick,
				Sync: cfg.Sync, Batches: cfg.Batches, BatchSize: batchSize, ListUnits: cfg.ListUnits,
				ListClients: listClients, ListLimit: listLimit, WaitQuietS: cfg.WaitQuiet.Seconds(), Retries: cfg.Retries,
			},
			DriverDetail: drv.Describe(),
		},
	}
	if cfg.want("fanout") {
		c := &b.rep.Config
		c.FanoutSubs, c.SSESubs, c.FanoutRate = cfg.FanoutSubs, cfg.SSESubs, cfg.FanoutRate
		c.FanoutWindow, c.FanoutPosters = cfg.FanoutWindow, cfg.FanoutPosters
	}
	if cfg.want("memory") {
		b.rep.Config.IdleSubs = cfg.IdleSubs
	}
	if cfg.want("streams") && !cfg.want("fanout") {
		c := &b.rep.Config
		c.FanoutRate, c.FanoutWindow, c.FanoutPosters = cfg.FanoutRate, cfg.FanoutWindow, cfg.FanoutPosters
	}
	runErr := b.run(ctx)
	b.rep.Budgets = append(computeBudgets(b.rep.Measurements, cfg.Sync), computeRealtimeBudgets(b.rep.Measurements, cfg.Sync)...)
	b.rep.Budgets = append(b.rep.Budgets, computeStreamsBudgets(b.rep.Measurements, cfg.Sync)...)
	b.rep.Budgets = append(b.rep.Budgets, computeQueuesBudgets(b.rep.Measurements, cfg.Sync)...)
	b.rep.Budgets = append(b.rep.Budgets, computeLocksBudgets(b.rep.Measurements, cfg.Sync)...)
	b.rep.Budgets = append(b.rep.Budgets, computeSearchBudgets(b.rep.Measurements, cfg.Sync)...)
	if runErr != nil {
		b.rep.Error = runErr.Error()
	}
	io.WriteString(stdout, formatReport(b.rep))
	if cfg.JSONPath != "" {
		js, err := json.MarshalIndent(b.rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.JSONPath, append(js, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "results written to %s\n", cfg.JSONPath)
	}
	return runErr
}

// commandLine renders args as the shell command that reproduces the run.
func commandLine(args []string) string {
	parts := []string{"engram"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// bench is one run of `engram bench`.
type bench struct {
	cfg     benchConfig
	drv     driver
	dataDir string
	log     io.Writer
	rep     benchReport

	trivial *trivialApp
	srv     benchTarget

	serverBin    string // built Engram server binary (real-time scenarios)
	serverBinErr error
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// waitQuiet waits, up to --wait-quiet, until other processes use less than
// noisyCores over a one-second sample.
func (b *bench) waitQuiet(ctx context.Context) {
	if b.cfg.WaitQuiet <= 0 {
		return
	}
	deadline := time.Now().Add(b.cfg.WaitQuiet)
	for said := false; ; {
		s0 := sampleCPU()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		other := otherCores(s0, sampleCPU())
		if other < noisyCores {
			return
		}
		if time.Now().After(deadline) {
			b.progress("  machine still busy (other processes use %.2f cores): measuring anyway", other)
			return
		}
		if !said {
			b.progress("  waiting for a quiet machine (other processes use %.2f cores)", other)
			said = true
		}
	}
}

// step measures one or more figures that belong together (a ceiling and
// its scenario); it prints each as it comes.
type step func() ([]measurement, error)

// measure runs st, and again up to --retries times while other processes
// were busy during it, and keeps the quietest attempt.
func (b *bench) measure(ctx context.Context, st step) error {
	var best []measurement
	bestOther := math.Inf(1)
	for attempt := 0; ; attempt++ {
		ms, err := st()
		if err != nil {
			return err
		}
		other := 0.0
		for _, m := range ms {
			other = math.Max(other, m.OtherCores)
		}
		if other < bestOther {
			best, bestOther = ms, other
		}
		if other <= noisyCores || attempt >= b.cfg.Retries || ctx.Err() != nil {
			break
		}
		b.progress("  noisy (other processes used up to %.2f cores): measuring again, attempt %d of %d", other, attempt+2, b.cfg.Retries+1)
	}
	b.rep.Measurements = append(b.rep.Measurements, best...)
	return nil
}

// show prints a measurement as it completes.
func (b *bench) show(m measurement) {
	line := fmt.Sprintf("%-58s %s  other %.2f", m.Name, fmtMeasurementShort(m), m.OtherCores)
	if m.Invalid != "" {
		line += "  INVALID: " + m.Invalid
	}
	b.progress("  %s", line)
}

// run measures everything, in this order so that each scenario runs right
// after its ceiling: fsync, Pebble 64 writers, then per concurrency the
// trivial handler and the durable writes, then Pebble batches and the batch
// insert, then the list ceiling and the list; then the real-time
// scenarios: per subscriber count the raw broadcast and the fan-out, then
// SSE, then the memory of idle subscribers. The streams group runs its
// set and update after the list (per client count: the trivial handler,
// set, update) and its fan-out last (raw broadcast, then /stream).
func (b *bench) run(ctx context.Context) error {
	b.progress("engram bench: driver %s, %s per scenario, data dir %s", b.drv.Name(), b.cfg.Duration, b.dataDir)
	s0 := sampleCPU()
	time.Sleep(time.Second)
	b.rep.BackgroundCores = otherCores(s0, sampleCPU())
	if b.rep.BackgroundCores > noisyCores {
		b.progress("WARNING: other processes are using %.2f cores: figures will be noisy", b.rep.BackgroundCores)
	}
	if b.cfg.wantHTTP() {
		if err := b.runHTTP(ctx); err != nil {
			return err
		}
	}
	if b.cfg.want("fanout") {
		if err := b.fanoutScenarios(ctx); err != nil {
			return err
		}
	}
	if b.cfg.want("memory") {
		if err := b.memoryScenario(ctx); err != nil {
			return err
		}
	}
	if b.cfg.want("streams") {
		if err := b.streamsFanout(ctx); err != nil {
			return err
		}
	}
	if b.cfg.want("search") {
		if err := b.searchScenarios(ctx); err != nil {
			return err
		}
	}
	return nil
}

// runHTTP runs the groups served by the in-process server: disk, write,
// batch and list.
func (b *bench) runHTTP(ctx context.Context) (err error) {
	d := b.cfg.Duration

	b.trivial, err = startTrivialApp()
	if err != nil {
		return fmt.Errorf("trivial app: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.trivial.Shutdown(sctx)
	}()
	b.srv, err = startEngramServer(filepath.Join(b.dataDir, "server"), b.cfg.Sync)
	if err != nil {
		return fmt.Errorf("engram server: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := b.srv.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("server shutdown: %w", serr)
		}
	}()
	srvURL := "http://" + b.srv.Addr()
	trivURL := "http://" + b.trivial.Addr()

	// Preflight: one request to each endpoint, so that a broken server
	// fails with its own message rather than as a wall of non-2xx.
	unitBody := unitJSON("bench-c1", "a1", 300)
	if err := expectStatus(srvURL+"/v1/workunits", "POST", unitBody, 201); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if err := expectStatus(trivURL+"/v1/workunits", "POST", unitBody, 201); err != nil {
		return fmt.Errorf("preflight (trivial app): %w", err)
	}

	// Ceilings that touch the disk.
	if b.cfg.want("disk") {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: fsync (%s)", d), func() (measurement, error) {
				return ceilingFsync(ctx, b.dataDir, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("fsync ceiling: %w", err)
		}
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: Pebble Set+Sync, %d goroutines (%s)", pebbleW, d), func() (measurement, error) {
				return ceilingPebbleSets(ctx, b.dataDir, pebbleW, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("pebble ceiling: %w", err)
		}
	}

	// Durable single-unit writes, each right after its trivial-handler ceiling.
	for _, c := range b.cfg.Clients {
		if !b.cfg.want("write") {
			break
		}
		if err := b.httpPair(ctx,
			loadSpec{URL: trivURL + "/v1/workunits", Method: "POST", Body: unitBody, Clients: c, Duration: d},
			fmt.Sprintf("ceiling.trivial_post.c%d", c), fmt.Sprintf("ceiling: trivial Fiber POST (decode, 201), %d client(s)", c),
			loadSpec{URL: srvURL + "/v1/workunits", Method: "POST", Body: unitBody, Clients: c, Duration: d},
			fmt.Sprintf("write.c%d", c), fmt.Sprintf("durable write POST /v1/workunits, %d client(s)", c),
		); err != nil {
			return err
		}
	}

	// Batch insert, right after the Pebble batched ceiling.
	if b.cfg.want("batch") {
		if err := b.batchScenario(ctx, srvURL); err != nil {
			return err
		}
	}

	// List the last 100 of a context with 10k units.
	if b.cfg.want("list") {
		if err := b.listScenario(ctx, srvURL, trivURL); err != nil {
			return err
		}
	}

	// Stream item set and update (the streams group's HTTP half).
	if b.cfg.want("streams") {
		if err := b.streamsHTTP(ctx, srvURL, trivURL); err != nil {
			return err
		}
	}

	// Queue publish and lease+ack.
	if b.cfg.want("queues") {
		if err := b.queuesHTTP(ctx, srvURL, trivURL); err != nil {
			return err
		}
	}

	// Lock round trip, contended handovers, mass expiry.
	if b.cfg.want("locks") {
		if err := b.locksHTTP(ctx, srvURL, trivURL); err != nil {
			return err
		}
	}
	return nil
}

// ceilingStep runs one in-process ceiling (fsync, Pebble) and records
// the CPU use around it.
func (b *bench) ceilingStep(ctx context.Context, title string, run func() (measurement, error)) (measurement, error) {
	b.progress("%s", title)
	b.waitQuiet(ctx)
	s0 := sampleCPU()
	m, err := run()
	s1 := sampleCPU()
	if err != nil {
		return m, err
	}
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	b.show(m)
	return m, nil
}

// httpPair measures a ceiling and its scenario with the chosen driver, each
// after a warm-up.
func (b *bench) httpPair(ctx context.Context, ceil loadSpec, ceilID, ceilName string, scen loadSpec, scenID, scenName string) error {
	return b.measure(ctx, func() ([]measurement, error) {
		cm, err := b.httpRun(ctx, ceil, ceilID, ceilName, kindCeiling)
		if err != nil {
			return nil, err
		}
		b.show(cm)
		sm, err := b.httpRun(ctx, scen, scenID, scenName, kindScenario)
		if err != nil {
			return nil, err
		}
		sm.compareWith(cm)
		b.show(sm)
		return []measurement{cm, sm}, nil
	})
}

func (b *bench) httpRun(ctx context.Context, spec loadSpec, id, name, kind string) (measurement, error) {
	b.waitQuiet(ctx)
	if b.cfg.Warmup > 0 {
		w := spec
		w.Duration = b.cfg.Warmup
		if _, err := (fasthttpDriver{}).Run(ctx, w); err != nil {
			return measurement{}, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	b.progress("%s (%s, %s)", name, b.drv.Name(), spec.Duration)
	var w0 walStats
	if kind == kindScenario {
		stop, err := b.startProfile(id)
		if err != nil {
			return measurement{}, err
		}
		defer stop()
		w0 = scrapeWAL("http://" + b.srv.Addr())
	}
	s0 := sampleCPU()
	lr, err := b.drv.Run(ctx, spec)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", name, err)
	}
	m := fromLoad(id, name, kind, "req", lr)
	s1 := sampleCPU()
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	if kind == kindScenario {
		m.Note = walNote(w0, scrapeWAL("http://"+b.srv.Addr()))
	}
	return m, nil
}

// startProfile starts a CPU profile for scenario id when --cpuprofile is
// set; the returned func stops it.
func (b *bench) startProfile(id string) (func(), error) {
	if b.cfg.CPUProfile == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(b.cfg.CPUProfile, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(b.cfg.CPUProfile, id+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		b.progress("  CPU profile written to %s", path)
	}, nil
}

// batchScenario measures Pebble batched records/s (1 and 2 writers) and
// then batch inserts of 1000 units from 1 and 2 clients.
func (b *bench) batchScenario(ctx context.Context, srvURL string) error {
	body := batchJSON("bench-batch", batchSize)
	url := srvURL + "/v1/workunits/batch"
	// Preflight: one batch.
	if err := expectStatus(url, "POST", body, 201); err != nil {
		return fmt.Errorf("batch preflight: %w", err)
	}
	return b.measure(ctx, func() ([]measurement, error) { return b.batchStep(ctx, url, body) })
}

func (b *bench) batchStep(ctx context.Context, url string, body []byte) ([]measurement, error) {
	d := b.cfg.Duration
	var out []measurement
	for _, w := range []int{1, 2} {
		m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: Pebble %d-record batches + Sync, %d goroutine(s) (%s)", batchSize, w, d), func() (measurement, error) {
			return ceilingPebbleBatches(ctx, b.dataDir, w, batchSize, d)
		})
		if err != nil {
			return nil, fmt.Errorf("pebble batch ceiling: %w", err)
		}
		out = append(out, m)
	}
	for _, c := range []int{1, 2} {
		spec := loadSpec{URL: url, Method: "POST", Body: body, Clients: c, Duration: b.cfg.Duration}
		what := b.cfg.Duration.String()
		if b.cfg.Batches > 0 {
			spec.Requests = b.cfg.Batches / c
			what = fmt.Sprintf("%d batches", spec.Requests*c)
		}
		b.progress("batch insert POST /v1/workunits/batch (%d units), %d client(s) (%s)", batchSize, c, what)
		b.waitQuiet(ctx)
		stop, err := b.startProfile(fmt.Sprintf("batch.c%d", c))
		if err != nil {
			return nil, err
		}
		w0 := scrapeWAL("http://" + b.srv.Addr())
		s0 := sampleCPU()
		lr, err := (fasthttpDriver{}).Run(ctx, spec)
		s1 := sampleCPU()
		stop()
		wn := walNote(w0, scrapeWAL("http://"+b.srv.Addr()))
		if err != nil {
			return nil, fmt.Errorf("batch insert: %w", err)
		}
		m := fromLoad(fmt.Sprintf("batch.c%d", c),
			fmt.Sprintf("batch insert of %d units, %d client(s)", batchSize, c), kindScenario, "unit", lr)
		m.Ops = lr.Requests * batchSize
		m.Rate = lr.ReqPerSec * batchSize
		m.Note = fmt.Sprintf("%d batches; latencies are per batch", lr.Requests)
		if wn != "" {
			m.Note += "; " + wn
		}
		m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
		if best, ok := bestRate(out, "ceiling.pebble_batches.w1", "ceiling.pebble_batches.w2"); ok {
			m.compareWith(best)
		}
		b.show(m)
		out = append(out, m)
	}
	return out, nil
}

// listScenario loads ListUnits units into one context with the batch
// endpoint, then measures GET of the newest 100 from 8 clients, right after
// a trivial handler answering the same bytes.
func (b *bench) listScenario(ctx context.Context, srvURL, trivURL string) error {
	const ctxID = "bench-list"
	b.progress("loading %d units into context %s", b.cfg.ListUnits, ctxID)
	for left := b.cfg.ListUnits; left > 0; left -= batchSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(left, batchSize)
		if err := expectStatus(srvURL+"/v1/workunits/batch", "POST", batchJSON(ctxID, n), 201); err != nil {
			return fmt.Errorf("list preload: %w", err)
		}
	}
	url := fmt.Sprintf("%s/v1/contexts/%s/workunits?limit=%d", srvURL, ctxID, listLimit)
	status, body, err := doOnce(url, "GET", nil)
	if err != nil {
		return fmt.Errorf("list preflight: %w", err)
	}
	if status != 200 {
		return fmt.Errorf("list preflight: GET %s: status %d: %.300s", url, status, body)
	}
	var page struct {
		Units []json.RawMessage `json:"units"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("list preflight: decode: %w", err)
	}
	if len(page.Units) != listLimit {
		return fmt.Errorf("list preflight: got %d units, want %d", len(page.Units), listLimit)
	}
	b.trivial.SetListBody(body)
	path := fmt.Sprintf("/v1/contexts/%s/workunits?limit=%d", ctxID, listLimit)
	d := b.cfg.Duration
	if err := b.httpPair(ctx,
		loadSpec{URL: trivURL + path, Method: "GET", Clients: listClients, Duration: d},
		fmt.Sprintf("ceiling.trivial_get.c%d", listClients),
		fmt.Sprintf("ceiling: trivial Fiber GET (same %d B body), %d clients", len(body), listClients),
		loadSpec{URL: srvURL + path, Method: "GET", Clients: listClients, Duration: d},
		fmt.Sprintf("list.c%d", listClients),
		fmt.Sprintf("list last %d of %d units, %d clients", listLimit, b.cfg.ListUnits, listClients),
	); err != nil {
		return err
	}
	return nil
}

// expectStatus sends one request and checks its status.
func expectStatus(url, method string, body []byte, want int) error {
	status, resp, err := doOnce(url, method, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d, want %d: %.300s", method, url, status, want, resp)
	}
	return nil
}

// loremText is the source of payload text.
const loremText = "Engram keeps every work unit an agent writes: messages, reasoning, tool calls and their results, " +
	"observations and plans, each acknowledged only once it is on disk. This payload stands in for a typical " +
	"message of a few sentences, long enough to look like real traffic and short enough to be cheap to decode. "

// unitJSON returns a work-unit create body of about size bytes.
func unitJSON(contextID, agentID string, size int) []byte {
	head := fmt.Sprintf(`{"context_id":%q,"agent_id":%q,"type":"MESSAGE","payload":"`, contextID, agentID)
	const tail = `"}`
	n := size - len(head) - len(tail)
	var text strings.Builder
	for text.Len() < n {
		text.WriteString(loremText)
	}
	return []byte(head + text.String()[:max(n, 0)] + tail)
}

// batchJSON returns a batch body of n units of about 300 bytes each.
func batchJSON(contextID string, n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"units":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.Write(unitJSON(contextID, fmt.Sprintf("a%d", i%8), 300))
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// benchTarget is the server under test.
type benchTarget interface {
	Addr() string
	Shutdown(ctx context.Context) error
}
