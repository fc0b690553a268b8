package main

// The streams group of `engram bench`: stream item writes (PUT of a ~300 B
// value to distinct items, PATCH increments of one hot item) at 1 and 64
// clients, each client count right after the same trivial-handler ceiling
// the durable writes use (plus the fsync ceiling for the 1-client tail);
// and the fan-out of one stream group's changes to /stream subscribers
// (iii's protocol) at a paced rate and at saturation, each right after the
// raw WebSocket broadcast ceiling of the fanout group. DESIGN.md states no
// budget for streams: the report applies the durable-write and fan-out
// budgets to them, and says so.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

const (
	groupStreams = "streams"

	sbStream   = "bench" // the stream every scenario writes to
	sbSetGroup = "set"   // group of the set scenario
	sbHotGroup = "hot"   // group of the hot item of the update scenario
	sbHotItem  = "n"
	sbItemsMod = 10000 // the set scenario's items per worker: its counter modulo this
	sbFanItems = 100   // items of a fan-out group (its sync holds them all)
)

// sbClients are the client counts of the set and update scenarios.
var sbClients = []int{1, 64}

// Measurement ids of the streams group.
func sbCeilHTTPID(c int) string { return fmt.Sprintf("ceiling.trivial_post.streams.c%d", c) }
func sbSetID(c int) string      { return fmt.Sprintf("streams.set.c%d", c) }
func sbUpdateID(c int) string   { return fmt.Sprintf("streams.update.c%d", c) }
func sbFanCeilID(n int, rate float64) string {
	return fmt.Sprintf("ceiling.broadcast.streams.n%d.%s", n, rateTag(rate))
}
func sbFanID(n int, rate float64) string {
	return fmt.Sprintf("streams.fanout.n%d.%s", n, rateTag(rate))
}

// sbReportConfig is the streams group's setup in the report.
type sbReportConfig struct {
	Clients      []int  `json:"clients"`
	SetPath      string `json:"set_path"`
	UpdatePath   string `json:"update_path"`
	UpdateBody   string `json:"update_body"`
	CeilingPath  string `json:"ceiling_path"`
	ValueBytes   int    `json:"value_bytes"`
	Subscribers  int    `json:"subscribers,omitempty"`
	FanoutItems  int    `json:"fanout_items,omitempty"`
	FanoutServer string `json:"fanout_server,omitempty"`
}

func (b *bench) sbConfig() *sbReportConfig {
	if b.rep.Config.Streams == nil {
		b.rep.Config.Streams = &sbReportConfig{
			Clients: sbClients, SetPath: sbSetPaths.describe(), UpdatePath: sbUpdatePaths.describe(),
			UpdateBody: string(sbUpdateBody), CeilingPath: sbCeilPaths.describe(), ValueBytes: recordSize,
		}
	}
	return b.rep.Config.Streams
}

// ---------------------------------------------------------------- bodies

// sbValueJSON is an item value of about size bytes: {"payload":"…"}.
func sbValueJSON(size int) []byte {
	return sbStampedValue(nil, size)
}

// sbStampedValue is an item value of about size bytes whose payload
// starts with stamp (nil: none), as parseStamp reads it back from a frame.
func sbStampedValue(stamp []byte, size int) []byte {
	b := make([]byte, 0, size+32)
	b = append(b, `{"payload":"`...)
	b = append(b, stamp...)
	for n := size - len(b) - 2; n > 0; {
		k := min(n, len(loremText))
		b = append(b, loremText[:k]...)
		n -= k
	}
	return append(b, `"}`...)
}

// sbHotValue is the hot item's initial value: a counter and a payload, ~300 B.
func sbHotValue() []byte {
	v := sbValueJSON(recordSize - len(`"n":0,`))
	return append([]byte(`{"n":0,`), v[1:]...)
}

var sbUpdateBody = []byte(`{"ops":[{"type":"increment","path":"n","by":1}]}`)

// ---------------------------------------------------------------- paths

// sbPaths is how the requests of a run pick their path: Format with two
// %d verbs (the worker: fasthttp client or wrk thread; and the worker's
// request counter modulo Mod), or, when Mod is 0, Format as is.
type sbPaths struct {
	Format string
	Mod    int
}

var (
	// The ceiling varies its query (the trivial handler ignores it) so
	// that wrk builds each request the same way in the ceiling and the
	// scenarios.
	sbCeilPaths   = sbPaths{Format: "/v1/workunits?w=%d&i=%d", Mod: sbItemsMod}
	sbSetPaths    = sbPaths{Format: "/v1/streams/" + sbStream + "/" + sbSetGroup + "/w%d-%d", Mod: sbItemsMod}
	sbUpdatePaths = sbPaths{Format: "/v1/streams/" + sbStream + "/" + sbHotGroup + "/" + sbHotItem}
)

// path returns the path of request n (counting from 1) of worker w.
func (p sbPaths) path(w, n int) string {
	if p.Mod == 0 {
		return p.Format
	}
	return fmt.Sprintf(p.Format, w, n%p.Mod)
}

func (p sbPaths) describe() string {
	if p.Mod == 0 {
		return p.Format
	}
	return strings.NewReplacer("%d-%d", "{worker}-{counter mod "+strconv.Itoa(p.Mod)+"}",
		"w=%d&i=%d", "w={worker}&i={counter mod "+strconv.Itoa(p.Mod)+"}").Replace(p.Format)
}

// lua returns the wrk functions that build each request's path: setup()
// numbers the threads, request() formats the path from the thread's
// number and its request counter.
func (p sbPaths) lua() string {
	if p.Mod == 0 {
		return fmt.Sprintf("\nrequest = function()\n  return wrk.format(nil, %q)\nend\n", p.Format)
	}
	return fmt.Sprintf(`
local threads = 0
setup = function(thread)
  thread:set("worker", threads)
  threads = threads + 1
end
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, string.format(%q, worker, counter %% %d))
end
`, p.Format, p.Mod)
}

// ---------------------------------------------------------------- load

// sbLoad runs spec (URL: scheme and host only) with paths from p, with
// the run's driver.
func (b *bench) sbLoad(ctx context.Context, spec loadSpec, p sbPaths) (loadResult, error) {
	if wd, ok := b.drv.(*wrkDriver); ok {
		return sbRunWrk(ctx, wd, spec, p)
	}
	return sbRunFasthttp(ctx, spec, p)
}

// sbRunWrk is wrkDriver.Run with a request() that builds each path.
func sbRunWrk(ctx context.Context, d *wrkDriver, spec loadSpec, p sbPaths) (loadResult, error) {
	script, err := wrkScript(spec)
	if err != nil {
		return loadResult{}, err
	}
	script += p.lua()
	dir, err := os.MkdirTemp("", "engram-wrk-*")
	if err != nil {
		return loadResult{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bench.lua")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return loadResult{}, err
	}
	spec.URL += "/"
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.path, wrkArgs(spec, path)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v: %s%s", err, stderr.Bytes(), stdout.Bytes())
	}
	return parseWrkOutput(stdout.Bytes(), spec.Clients)
}

// sbRunFasthttp is fasthttpDriver.Run with a path per request.
func sbRunFasthttp(ctx context.Context, spec loadSpec, p sbPaths) (loadResult, error) {
	uri := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(uri)
	if err := uri.Parse(nil, []byte(spec.URL)); err != nil {
		return loadResult{}, fmt.Errorf("fasthttp driver: url %q: %w", spec.URL, err)
	}
	addr := string(uri.Host())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    = newLatencyHist()
		requests atomic.Int64
		non2xx   atomic.Int64
		sockErrs atomic.Int64
		firstErr atomic.Value // string
	)
	deadline := time.Now().Add(spec.Duration)
	start := time.Now()
	for i := 0; i < spec.Clients; i++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			hc := &fasthttp.HostClient{Addr: addr, MaxConns: 1, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			h := newLatencyHist()
			for n := 1; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				req.Reset()
				req.SetRequestURI(spec.URL + p.path(worker, n))
				req.Header.SetMethod(spec.Method)
				if len(spec.Body) > 0 {
					req.Header.SetContentType("application/json")
					req.SetBodyRaw(spec.Body)
				}
				t0 := time.Now()
				err := hc.Do(req, resp)
				lat := time.Since(t0)
				if err != nil {
					sockErrs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				if code := resp.StatusCode(); code < 200 || code > 299 {
					non2xx.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %.200s", code, resp.Body()))
				}
				h.RecordValue(max(lat.Microseconds(), 1))
				requests.Add(1)
			}
			mu.Lock()
			total.Merge(h)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	r := loadResult{Driver: "fasthttp", Clients: spec.Clients, Requests: requests.Load(),
		DurationSec: time.Since(start).Seconds(), Non2xx: non2xx.Load(), SocketErrors: sockErrs.Load()}
	fillPercentiles(&r, total)
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	if r.DurationSec > 0 {
		r.ReqPerSec = float64(r.Requests) / r.DurationSec
	}
	return r, ctx.Err()
}

// sbHTTPRun is httpRun with paths from p; it also returns the 2xx answers
// of its warm-up.
func (b *bench) sbHTTPRun(ctx context.Context, spec loadSpec, p sbPaths, id, name, kind string) (measurement, int64, error) {
	b.waitQuiet(ctx)
	var warm int64
	if b.cfg.Warmup > 0 {
		w := spec
		w.Duration = b.cfg.Warmup
		lr, err := sbRunFasthttp(ctx, w, p)
		if err != nil {
			return measurement{}, 0, fmt.Errorf("%s warm-up: %w", name, err)
		}
		warm = lr.Requests - lr.Non2xx
	}
	b.progress("%s (%s, %s)", name, b.drv.Name(), spec.Duration)
	var w0 walStats
	if kind == kindScenario {
		stop, err := b.startProfile(id)
		if err != nil {
			return measurement{}, 0, err
		}
		defer stop()
		w0 = scrapeWAL("http://" + b.srv.Addr())
	}
	s0 := sampleCPU()
	lr, err := b.sbLoad(ctx, spec, p)
	if err != nil {
		return measurement{}, 0, fmt.Errorf("%s: %w", name, err)
	}
	m := fromLoad(id, name, kind, "req", lr)
	s1 := sampleCPU()
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	if kind == kindScenario {
		m.Note = walNote(w0, scrapeWAL("http://"+b.srv.Addr()))
	}
	return m, warm, nil
}

// ---------------------------------------------------------------- writes

// streamsHTTP runs the set and update scenarios on the in-process server,
// per client count right after the trivial-handler ceiling.
func (b *bench) streamsHTTP(ctx context.Context, srvURL, trivURL string) error {
	b.sbConfig()
	value := sbValueJSON(recordSize)
	// Preflight: a set, the hot item, one increment.
	if err := expectStatus(srvURL+sbSetPaths.path(0, 0), "PUT", value, 200); err != nil {
		return fmt.Errorf("streams preflight: %w", err)
	}
	if err := expectStatus(srvURL+sbUpdatePaths.path(0, 0), "PUT", sbHotValue(), 200); err != nil {
		return fmt.Errorf("streams preflight: %w", err)
	}
	if err := expectStatus(srvURL+sbUpdatePaths.path(0, 0), "PATCH", sbUpdateBody, 200); err != nil {
		return fmt.Errorf("streams preflight: %w", err)
	}
	if n, err := sbHotCount(srvURL); err != nil || n != 1 {
		return fmt.Errorf("streams preflight: the hot item's n is %d after one increment (%v)", n, err)
	}
	if _, ok := findMeasurement(b.rep.Measurements, "ceiling.fsync"); !ok {
		d := b.cfg.Duration
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: fsync (%s)", d), func() (measurement, error) {
				return ceilingFsync(ctx, b.dataDir, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("fsync ceiling: %w", err)
		}
	}
	for _, c := range sbClients {
		if err := b.measure(ctx, func() ([]measurement, error) { return b.sbHTTPStep(ctx, srvURL, trivURL, c, value) }); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) sbHTTPStep(ctx context.Context, srvURL, trivURL string, c int, value []byte) ([]measurement, error) {
	d := b.cfg.Duration
	cm, _, err := b.sbHTTPRun(ctx, loadSpec{URL: trivURL, Method: "POST", Body: unitJSON("bench-c1", "a1", recordSize), Clients: c, Duration: d},
		sbCeilPaths, sbCeilHTTPID(c), fmt.Sprintf("ceiling: trivial Fiber POST (decode, 201), %d client(s), streams' request paths", c), kindCeiling)
	if err != nil {
		return nil, err
	}
	b.show(cm)
	sm, _, err := b.sbHTTPRun(ctx, loadSpec{URL: srvURL, Method: "PUT", Body: value, Clients: c, Duration: d},
		sbSetPaths, sbSetID(c), fmt.Sprintf("stream set PUT %d B value, distinct items, %d client(s)", len(value), c), kindScenario)
	if err != nil {
		return nil, err
	}
	sm.compareWith(cm)
	b.show(sm)

	n0, err := sbHotCount(srvURL)
	if err != nil {
		return nil, err
	}
	um, warm, err := b.sbHTTPRun(ctx, loadSpec{URL: srvURL, Method: "PATCH", Body: sbUpdateBody, Clients: c, Duration: d},
		sbUpdatePaths, sbUpdateID(c), fmt.Sprintf("stream update PATCH increment, one hot item, %d client(s)", c), kindScenario)
	if err != nil {
		return nil, err
	}
	n1, err := sbHotCount(srvURL)
	if err != nil {
		return nil, err
	}
	note, inv := sbIncrementCheck(n1-n0, warm+um.Ops-um.Non2xx, c)
	um.Note = joinNote(note, um.Note)
	if inv != "" {
		um.Invalid = joinNote(um.Invalid, inv)
	}
	um.compareWith(cm)
	b.show(um)
	return []measurement{cm, sm, um}, nil
}

// sbIncrementCheck compares the increments the hot item shows with the
// ones acknowledged (warm-up and run): wrk stops with up to one request
// per client in flight, which the server may still apply, uncounted.
func sbIncrementCheck(applied, acked int64, clients int) (note, invalid string) {
	note = fmt.Sprintf("hot item: %d increments applied, %d acknowledged", applied, acked)
	switch {
	case applied < acked:
		invalid = fmt.Sprintf("%d acknowledged increments missing from the item", acked-applied)
	case applied > acked+int64(clients):
		invalid = fmt.Sprintf("%d more increments applied than sent", applied-acked-int64(clients))
	}
	return note, invalid
}

// sbHotCount reads the hot item's counter.
func sbHotCount(srvURL string) (int64, error) {
	url := srvURL + sbUpdatePaths.path(0, 0)
	status, body, err := doOnce(url, "GET", nil)
	if err != nil {
		return 0, err
	}
	if status != 200 {
		return 0, fmt.Errorf("GET %s: status %d: %.200s", url, status, body)
	}
	return sbParseHotCount(body)
}

// sbParseHotCount reads n of {"value":{"n":N,...}}.
func sbParseHotCount(body []byte) (int64, error) {
	var v struct {
		Value struct {
			N *json.Number `json:"n"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("hot item: %w", err)
	}
	if v.Value.N == nil {
		return 0, fmt.Errorf("hot item: no n in %.200s", body)
	}
	return v.Value.N.Int64()
}

// ---------------------------------------------------------------- /stream subscribers

var (
	iiiStreamPrefix = []byte(`{"type":"stream",`)
	iiiErrorPrefix  = []byte(`{"type":"error"`)
	iiiTimestampKey = []byte(`"timestamp":`)
	iiiEventTypeKey = []byte(`"event":{"type":"`)
)

// sbFrame is what the bench reads from a /stream frame.
type sbFrame struct {
	Event       string // sync, create, update, delete, event
	TimestampMs int64  // the frame's timestamp: the change's commit time (ms)
	StampNs     int64  // the writer's stamp in the value (0: none)
	Idx         int64
}

// sbParseFrame parses a {"type":"stream",...} frame.
func sbParseFrame(frame []byte) (sbFrame, bool) {
	var f sbFrame
	if !bytes.HasPrefix(frame, iiiStreamPrefix) {
		return f, false
	}
	if i := bytes.Index(frame, iiiTimestampKey); i >= 0 {
		f.TimestampMs, _, _ = parseDigits(frame[i+len(iiiTimestampKey):])
	}
	i := bytes.Index(frame, iiiEventTypeKey)
	if i < 0 {
		return f, false
	}
	rest := frame[i+len(iiiEventTypeKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return f, false
	}
	f.Event = string(rest[:j])
	if f.Event != "sync" {
		if ns, idx, ok := parseStamp(rest[j:]); ok {
			f.StampNs, f.Idx = ns, idx
		}
	}
	return f, true
}

// sbGroup is a subGroup of /stream subscribers, all joined to one group,
// with a record of which events each got (to find repeats).
type sbGroup struct {
	*subGroup
	seen    [][]uint64 // per connection, a bit per event index; guarded by the connection's mu
	ordered atomic.Bool
}

// record accounts one frame of connection c (the i-th) received at now
// (unix ns).
func (g *sbGroup) record(i int, c *fanConn, frame []byte, now int64) {
	f, ok := sbParseFrame(frame)
	if !ok || (f.Event != "create" && f.Event != "update") || f.StampNs == 0 {
		return
	}
	c.mu.Lock()
	repeat := sbTestAndSet(&g.seen[i], f.Idx)
	if repeat || (g.ordered.Load() && uint64(f.Idx+1) <= c.lastSeq) {
		c.outOfOrder++
	}
	if repeat {
		c.mu.Unlock()
		return
	}
	c.lastSeq = max(c.lastSeq, uint64(f.Idx+1))
	c.delivered++
	if c.hist == nil {
		c.hist = newFanHist()
	}
	c.hist.RecordValue(max((now-f.StampNs)/1000, 1))
	if f.TimestampMs > 0 {
		if c.commitHist == nil {
			c.commitHist = newFanHist()
		}
		c.commitHist.RecordValue(max((now-f.TimestampMs*1e6)/1000, 1))
	}
	if c.minStamp == 0 || f.StampNs < c.minStamp {
		c.minStamp = f.StampNs
	}
	c.maxRecv = max(c.maxRecv, now)
	c.mu.Unlock()
	if w := g.win.Load(); w != nil {
		w.delivered(f.Idx)
	}
}

// sbTestAndSet sets bit idx of *bits and says whether it was set.
func sbTestAndSet(bits *[]uint64, idx int64) bool {
	if idx < 0 {
		return false
	}
	w, m := int(idx/64), uint64(1)<<(idx%64)
	if w >= len(*bits) {
		*bits = append(*bits, make([]uint64, w+1-len(*bits))...)
	}
	was := (*bits)[w]&m != 0
	(*bits)[w] |= m
	return was
}

func (g *sbGroup) reset() {
	g.subGroup.reset()
	for i, c := range g.conns {
		c.mu.Lock()
		clear(g.seen[i])
		c.mu.Unlock()
	}
}

// dialStreamGroup connects n clients to /stream, each joined to
// stream/group, and returns once every one got its sync frame.
func dialStreamGroup(ctx context.Context, addr string, n int, stream, group string) (*sbGroup, error) {
	g := &sbGroup{subGroup: &subGroup{transport: "iii", commit: true}, seen: make([][]uint64, n)}
	d := wsDialer(4096, 512)
	url := "ws://" + addr + "/stream"
	join := []byte(`{"type":"join","data":{"subscriptionId":"s1","streamName":` + strconv.Quote(stream) + `,"groupId":` + strconv.Quote(group) + `}}`)
	conns, err := dialAll(ctx, n, dialPar, func(i int) (*fanConn, error) {
		ws, _, err := d.DialContext(ctx, url, nil)
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*fanConn, error) {
			ws.Close()
			return nil, err
		}
		ws.SetWriteDeadline(time.Now().Add(15 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, join); err != nil {
			return fail(err)
		}
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf, err := wsReadFrame(ws, make([]byte, 0, 4096))
		if err != nil {
			return fail(fmt.Errorf("waiting for the sync: %w", err))
		}
		if f, ok := sbParseFrame(buf); !ok || f.Event != "sync" {
			return fail(fmt.Errorf("join answered %.200s", buf))
		}
		ws.SetReadDeadline(time.Time{})
		c := &fanConn{close: func() { ws.Close() }}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for {
				var err error
				buf, err = wsReadFrame(ws, buf)
				if err != nil {
					g.markEnded(c, err)
					return
				}
				switch {
				case bytes.HasPrefix(buf, iiiStreamPrefix):
					g.record(i, c, buf, time.Now().UnixNano())
				case bytes.HasPrefix(buf, iiiErrorPrefix) && bytes.Contains(buf, codeLagged):
					g.markLagged(c)
				}
			}
		}()
		return c, nil
	})
	if err != nil {
		g.closing.Store(true)
		g.wg.Wait()
		return nil, err
	}
	g.conns = conns
	return g, nil
}

// ---------------------------------------------------------------- writer

// sbWriter PUTs stamped values to the items of one stream group.
type sbWriter struct {
	hc    *fasthttp.HostClient
	base  string // http://addr/v1/streams/stream/group/
	items int
}

func newSBWriter(addr, stream, group string, conns, items int) *sbWriter {
	return &sbWriter{
		hc:    &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second},
		base:  "http://" + addr + "/v1/streams/" + stream + "/" + group + "/",
		items: items,
	}
}

// put writes event idx: item i{idx mod items}, stamped now.
func (w *sbWriter) put(idx int64) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(w.base + "i" + strconv.FormatInt(idx%int64(w.items), 10))
	req.Header.SetMethod("PUT")
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(sbStampedValue(appendStamp(nil, time.Now().UnixNano(), idx), recordSize))
	if err := w.hc.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != 200 {
		return fmt.Errorf("PUT stream item: status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	return nil
}

// sbRunPaced is fanWriter.runPaced for put.
func sbRunPaced(ctx context.Context, rate float64, d time.Duration, put func(int64) error) writeResult {
	var r writeResult
	start := time.Now()
	for i := int64(0); ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if !at.Before(start.Add(d)) {
			break
		}
		time.Sleep(time.Until(at))
		if err := put(i); err != nil {
			r.Failed++
			if r.FirstErr == "" {
				r.FirstErr = err.Error()
			}
			continue
		}
		r.Committed++
	}
	r.Elapsed = time.Since(start)
	return r
}

// sbRunSaturated is fanWriter.runSaturated for put.
func sbRunSaturated(ctx context.Context, posters int, d time.Duration, win *fanWindow, put func(int64) error) writeResult {
	var (
		r         writeResult
		next      atomic.Int64
		committed atomic.Int64
		failed    atomic.Int64
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	stop := time.AfterFunc(d, win.close)
	defer stop.Stop()
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				k := next.Add(1) - 1
				if !win.acquire(k) || !time.Now().Before(deadline) {
					win.failed(k)
					return
				}
				if err := put(k); err != nil {
					win.failed(k)
					failed.Add(1)
					errOnce.Do(func() { r.FirstErr = err.Error() })
					continue
				}
				committed.Add(1)
			}
		}()
	}
	wg.Wait()
	r.Committed, r.Failed, r.Elapsed = committed.Load(), failed.Load(), time.Since(start)
	return r
}

// ---------------------------------------------------------------- fan-out

// sbStartServer starts the Engram server of the streams fan-out: a
// separate process like the fanout group's (in this process with
// --fanout-inproc or --cpuprofile), in its own data dir.
func (b *bench) sbStartServer(ctx context.Context) (fanServer, string, error) {
	dir := filepath.Join(b.dataDir, "streams-server")
	if !b.cfg.FanoutInproc && b.cfg.CPUProfile == "" {
		bin, err := b.serverBinary(ctx)
		if err == nil {
			p, err := startServerProc(bin, dir, b.cfg.Sync, 20000)
			if err != nil {
				return fanServer{}, "", err
			}
			return fanServer{addr: p.Addr(), pid: p.Pid(), stop: func() error { return p.stop(60 * time.Second) }}, "separate process (" + bin + ")", nil
		}
		b.note("streams: no server binary (%v): the server runs in the bench process, so its CPU and the clients' mix", err)
	}
	s, err := startEngramServer(dir, b.cfg.Sync)
	if err != nil {
		return fanServer{}, "", err
	}
	return fanServer{addr: s.Addr(), stop: func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return s.Shutdown(sctx)
	}}, "in the bench process", nil
}

// streamsFanout runs the fan-out of one stream group to --streams-subs
// /stream subscribers, at --fanout-rate and at saturation, each right
// after the raw broadcast ceiling to as many connections.
func (b *bench) streamsFanout(ctx context.Context) (err error) {
	cfg := b.sbConfig()
	limit, err := raiseFDLimit()
	if err != nil {
		return fmt.Errorf("fd limit: %w", err)
	}
	b.rep.Config.FDLimit = limit
	srv, where, err := b.sbStartServer(ctx)
	if err != nil {
		return fmt.Errorf("streams server: %w", err)
	}
	cfg.FanoutServer = where
	defer func() {
		if serr := srv.stop(); serr != nil && err == nil {
			err = fmt.Errorf("streams server: %w", serr)
		}
	}()
	bc, err := startBroadcastServer(b.cfg.FanoutWindow)
	if err != nil {
		return fmt.Errorf("broadcast server: %w", err)
	}
	defer bc.stop(10 * time.Second)
	pids := []int{srv.pid, bc.Pid()}

	want := b.cfg.StreamsSubs
	n := fitConns(2*want, limit) / 2
	if n < want {
		b.note("streams fan-out to %d subscribers: only %d fit under the fd limit of %d: measured with %d", want, n, limit, n)
	}
	if n < 1 {
		return nil
	}
	cfg.Subscribers, cfg.FanoutItems = n, sbFanItems
	group := fmt.Sprintf("fanout-%d", want)
	w := newSBWriter(srv.addr, sbStream, group, b.cfg.FanoutPosters, sbFanItems)
	if err := w.put(0); err != nil { // the group exists before the joins
		return fmt.Errorf("streams fan-out preflight: %w", err)
	}
	b.progress("streams fan-out: Engram at %s (pid %d), raw broadcast server at %s (pid %d); connecting %d raw WebSocket clients and %d /stream subscribers joined to %s/%s",
		srv.addr, srv.pid, bc.Addr(), bc.Pid(), n, n, sbStream, group)
	raw, err := dialRawGroup(ctx, bc.Addr(), n)
	if err != nil {
		return fmt.Errorf("raw clients: %w", err)
	}
	defer raw.close()
	sg, err := dialStreamGroup(ctx, srv.addr, n, sbStream, group)
	if err != nil {
		return fmt.Errorf("/stream subscribers: %w", err)
	}
	defer sg.close()
	for _, rate := range []float64{b.cfg.FanoutRate, 0} {
		if err := b.measure(ctx, func() ([]measurement, error) {
			cm, err := b.rawStep(ctx, bc, raw, want, rate, pids)
			if err != nil {
				return nil, err
			}
			cm.ID, cm.Group = sbFanCeilID(want, rate), groupStreams
			sm, err := b.sbFanStep(ctx, sg, w, want, rate, pids)
			if err != nil {
				return nil, err
			}
			sm.compareWith(cm)
			b.showFan(sm)
			return []measurement{cm, sm}, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// sbFanStep measures the fan-out to g while w writes to its group.
func (b *bench) sbFanStep(ctx context.Context, g *sbGroup, w *sbWriter, want int, rate float64, pids []int) (measurement, error) {
	d := b.cfg.Duration
	id := sbFanID(want, rate)
	name := fmt.Sprintf("stream fan-out /stream, %d subscribers, %s", len(g.conns), rateWords(rate))
	how := "1 writer, paced"
	if rate <= 0 {
		how = fmt.Sprintf("%d writers, at most %d events in flight", b.cfg.FanoutPosters, b.cfg.FanoutWindow)
	}
	b.progress("%s (%s, %s)", name, d, how)
	b.waitQuiet(ctx)
	g.reset()
	g.ordered.Store(rate > 0) // one writer: the changes come in its order
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
		wr = sbRunPaced(ctx, rate, d, w.put)
	} else {
		win = newFanWindow(b.cfg.FanoutWindow, live)
		g.win.Store(win)
		wr = sbRunSaturated(ctx, b.cfg.FanoutPosters, d, win, w.put)
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
		ID: id, Name: name, Kind: kindScenario, Transport: "iii", Subs: live, Target: rate,
		Events: wr.Committed, Failed: wr.Failed, FirstErr: wr.FirstErr, LaggedBefore: lag0, EndedBefore: end0,
	}, t)
	m.Group = groupStreams
	m.Note = joinNote(m.Note, fmt.Sprintf("PUTs to %d items of one group; commit→receipt from the frame's ms timestamp (up to 1 ms high)", w.items))
	if win != nil && wr.Committed > 0 {
		m.Note = joinNote(m.Note, fmt.Sprintf("%.0f%% of posts waited for the window", 100*float64(win.waited.Load())/float64(wr.Committed)))
	}
	m.OtherCores, m.SelfCores, m.ServerCores = otherCoresWith(s0, s1), selfCores(s0.base, s1.base), childCores(s0, s1, 0)
	return m, nil
}

// ---------------------------------------------------------------- budgets

// DESIGN.md states no budget for streams; the report applies the durable
// write budgets to the stream writes and the fan-out budgets to the
// stream fan-out, at the same client and subscriber counts.
const sbBudgetNote = " [write budget applied to streams]"

var (
	sbFanR50           = sbFanID(budgetSubs, budgetRate)
	sbFanSat           = sbFanID(budgetSubs, 0)
	sbFanCeilR50       = sbFanCeilID(budgetSubs, budgetRate)
	sbFanCeilSat       = sbFanCeilID(budgetSubs, 0)
	sbBudgetNameSet1   = "streams: set, 1 client: p99"
	sbBudgetNameSet64  = "streams: set, 64 clients: req/s"
	sbBudgetNameUpd1   = "streams: update (hot item), 1 client: p99"
	sbBudgetNameUpd64  = "streams: update (hot item), 64 clients: req/s"
	sbBudgetNameFanP99 = "streams: fan-out to 1,000 /stream subscribers, 50 events/s: p99"
	sbBudgetNameFanSat = "streams: fan-out to 1,000 /stream subscribers, saturation: deliveries/s"
	sbBudgetNameFanAll = "streams: fan-out to 1,000 /stream subscribers: none lost"
)

// sbBudgetIDs are the measurements each streams budget uses.
var sbBudgetIDs = map[string][]string{
	sbBudgetNameSet1:   {sbSetID(1), sbCeilHTTPID(1), "ceiling.fsync"},
	sbBudgetNameSet64:  {sbSetID(64), sbCeilHTTPID(64)},
	sbBudgetNameUpd1:   {sbUpdateID(1), sbCeilHTTPID(1), "ceiling.fsync"},
	sbBudgetNameUpd64:  {sbUpdateID(64), sbCeilHTTPID(64)},
	sbBudgetNameFanP99: {sbFanR50, sbFanCeilR50},
	sbBudgetNameFanSat: {sbFanSat, sbFanCeilSat},
	sbBudgetNameFanAll: {sbFanR50, sbFanSat},
}

// streamsBudgetUses says whether streams budget b uses measurement id.
func streamsBudgetUses(b budgetResult, id string) (uses, known bool) {
	ids, ok := sbBudgetIDs[b.Name]
	if !ok {
		return false, false
	}
	for _, x := range ids {
		if x == id {
			return true, true
		}
	}
	return false, true
}

// computeStreamsBudgets checks the streams figures against the write and
// fan-out budgets of DESIGN.md (none when the group did not run).
func computeStreamsBudgets(ms []measurement, syncMode string) []budgetResult {
	ran := false
	for _, m := range ms {
		if strings.HasPrefix(m.ID, "streams.") {
			ran = true
		}
	}
	if !ran {
		return nil
	}
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
	missing := func(b budgetResult) bool {
		var miss []string
		for _, id := range sbBudgetIDs[b.Name] {
			if _, ok := findMeasurement(ms, id); !ok {
				miss = append(miss, id)
			}
		}
		if miss == nil {
			return false
		}
		b.Result, b.Reason = resultNotMeasured, "missing "+strings.Join(miss, ", ")
		out = append(out, b)
		return true
	}
	for _, w := range []struct{ name1, name64, id1, id64 string }{
		{sbBudgetNameSet1, sbBudgetNameSet64, sbSetID(1), sbSetID(64)},
		{sbBudgetNameUpd1, sbBudgetNameUpd64, sbUpdateID(1), sbUpdateID(64)},
	} {
		b := budgetResult{Name: w.name1, FigureID: w.id1, Unit: "ms", Cmp: "<=", Limit: 1,
			Budget: "p99 ≤ trivial p99 + fsync p99 (ratio ≤ 1.00)" + sbBudgetNote}
		if !missing(b) {
			s, t, f := mustFind(ms, w.id1), mustFind(ms, sbCeilHTTPID(1)), mustFind(ms, "ceiling.fsync")
			b.Figure, b.Ceiling = s.P99Ms, t.P99Ms+f.P99Ms
			b.CeilingDesc = fmt.Sprintf("trivial p99 %s + fsync p99 %s", fmtMs(t.P99Ms), fmtMs(f.P99Ms))
			b.evaluate(invalidOf(s, t, f))
			out = append(out, b)
		}
		b = budgetResult{Name: w.name64, FigureID: w.id64, Unit: "req/s", Cmp: ">=", Limit: 0.70,
			Budget: "≥ 70% of trivial handler req/s (ratio ≥ 0.70)" + sbBudgetNote}
		if !missing(b) {
			s, t := mustFind(ms, w.id64), mustFind(ms, sbCeilHTTPID(64))
			b.Figure, b.Ceiling = s.Rate, t.Rate
			b.CeilingDesc = "trivial Fiber handler, 64 clients"
			b.evaluate(invalidOf(s, t))
			out = append(out, b)
		}
	}
	const fanNote = " [fan-out budget applied to streams]"
	{
		b := budgetResult{Name: sbBudgetNameFanP99, FigureID: sbFanR50, Unit: "ms", Cmp: "<=", Limit: budgetP99Ms, Absolute: true,
			Budget: fmt.Sprintf("p99 ≤ %d ms (absolute; writer's stamp → receipt)", budgetP99Ms) + fanNote}
		if !missing(b) {
			m, c := mustFind(ms, sbFanR50), mustFind(ms, sbFanCeilR50)
			b.Figure, b.Ceiling = m.P99Ms, c.P99Ms
			b.CeilingDesc = "raw broadcast p99 at the same rate (informative)"
			b.evaluate(invalidOf(m))
			out = append(out, b)
		}
	}
	{
		b := budgetResult{Name: sbBudgetNameFanSat, FigureID: sbFanSat, Unit: "deliveries/s", Cmp: ">=", Limit: budgetSatRatio,
			Budget: fmt.Sprintf("≥ %.0f%% of the raw broadcast (ratio ≥ %.2f)", budgetSatRatio*100, budgetSatRatio) + fanNote}
		if !missing(b) {
			m, c := mustFind(ms, sbFanSat), mustFind(ms, sbFanCeilSat)
			b.Figure, b.Ceiling = m.Rate, c.Rate
			b.CeilingDesc = fmt.Sprintf("raw WS broadcast of a prepared %d B frame to %d conns", rawFrameSize, c.Clients)
			b.evaluate(invalidOf(m, c))
			out = append(out, b)
		}
	}
	{
		b := budgetResult{Name: sbBudgetNameFanAll, FigureID: sbFanR50 + "+" + sbFanSat, Unit: "lost", Cmp: "<=", Limit: 0, Absolute: true,
			Budget: "every change after its sync reaches every subscriber (a lagged cut-off is a loss)" + fanNote}
		if !missing(b) {
			r, s := mustFind(ms, sbFanR50), mustFind(ms, sbFanSat)
			b.Figure = float64(r.Lost + s.Lost)
			b.evaluate(invalidOf(r, s))
			lagged := r.Lagged + s.Lagged
			b.Reason = joinNote(b.Reason, fmt.Sprintf("delivered %d of %d; %d joins cut as lagged", r.Delivered+s.Delivered, r.Expected+s.Expected, lagged))
			if b.Result == resultMet && lagged > 0 {
				b.Result = resultNotMet
			}
			out = append(out, b)
		}
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// sbRowVerdict is the budget and result shown on a streams fan-out row.
func sbRowVerdict(m measurement, budgets []budgetResult) (budget, result string) {
	var name string
	switch m.ID {
	case sbFanR50:
		name, budget = sbBudgetNameFanP99, fmt.Sprintf("p99 ≤ %d ms, none lost", budgetP99Ms)
	case sbFanSat:
		name, budget = sbBudgetNameFanSat, fmt.Sprintf("≥ %.2f× raw, none lost", budgetSatRatio)
	default:
		return "-", "-"
	}
	result = resultNotMeasured
	for _, b := range budgets {
		if b.Name == name {
			result = b.Result
		}
	}
	if result == resultMet && (m.Lost > 0 || m.Lagged > 0) {
		result = resultNotMet
	}
	return budget, result
}

// ---------------------------------------------------------------- report

// formatStreams renders the streams fan-out table ("" when it did not
// run); the set and update figures are in the main table.
func formatStreams(r benchReport) string {
	if !hasGroup(r.Measurements, groupStreams) {
		return ""
	}
	var sb strings.Builder
	c := r.Config
	server, items := "-", sbFanItems
	if s := c.Streams; s != nil {
		server, items = orDash(s.FanoutServer), s.FanoutItems
	}
	sb.WriteString("\n-- streams: fan-out of one stream group to /stream subscribers (each scenario right after its raw ceiling) --\n")
	fmt.Fprintf(&sb, "setup: Engram server %s, raw broadcast server in its own process, subscribers (iii join of one group, after its sync) and writer in the bench process; the writer PUTs %d B values to %d items of the group; paced: 1 writer; saturation: %d writers, at most %d changes in flight; latency from the writer's stamp in the value (raw: the broadcaster's) to receipt; %gs per step, server --sync=%s\n",
		server, recordSize, items, c.FanoutPosters, c.FanoutWindow, c.DurationS, c.Sync)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tsubs\tevents\tdeliveries/s\tp50\tp99\tp99.9\tdelivered/expected\tlost\tlagged\tvs raw\tserver\tbench\tother\tbudget\tresult")
	for _, m := range r.Measurements {
		if m.Group != groupStreams {
			continue
		}
		vs := "-"
		if m.CeilingID != "" {
			vs = fmtRatio(m.RateRatio) + "×"
		}
		budget, res := sbRowVerdict(m, r.Budgets)
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
		if m.Group == groupStreams && m.Note != "" {
			fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
		}
	}
	return sb.String()
}
