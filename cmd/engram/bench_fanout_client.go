package main

// The subscriber side of the real-time scenarios: groups of WebSocket (raw
// ceiling or Engram /v1/ws) and SSE (/v1/events) connections in the bench
// process, one goroutine per connection reading frames and recording the
// time from the stamp in each frame to its receipt; and the writer that
// posts stamped work units.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// ---------------------------------------------------------------- stamps

// stampPrefix starts the stamp that the writer (and the raw broadcaster)
// puts at the start of a payload string: "ts:<unix ns>:<index>:".
const stampPrefix = "ts:"

// appendStamp appends "ts:<ns>:<idx>:" to b.
func appendStamp(b []byte, ns, idx int64) []byte {
	b = append(b, stampPrefix...)
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, idx, 10)
	return append(b, ':')
}

var payloadStampKey = []byte(`"payload":"` + stampPrefix)

// parseStamp finds the stamp of a frame (an Engram event or a raw frame):
// the send time in unix ns and the writer's index of the message.
func parseStamp(frame []byte) (ns, idx int64, ok bool) {
	i := bytes.Index(frame, payloadStampKey)
	if i < 0 {
		return 0, 0, false
	}
	rest := frame[i+len(payloadStampKey):]
	ns, rest, ok = parseDigits(rest)
	if !ok || len(rest) == 0 || rest[0] != ':' {
		return 0, 0, false
	}
	idx, rest, ok = parseDigits(rest[1:])
	if !ok || len(rest) == 0 || rest[0] != ':' {
		return 0, 0, false
	}
	return ns, idx, true
}

// parseDigits parses the decimal digits at the start of b (1 to 19 of
// them) and returns the rest.
func parseDigits(b []byte) (int64, []byte, bool) {
	var v int64
	n := 0
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	if n == 0 || (n < len(b) && b[n] >= '0' && b[n] <= '9') {
		return 0, b, false
	}
	return v, b[n:], true
}

var seqKey = []byte(`"seq":`)

// parseSeqField returns the value of the first "seq" field of a frame: the
// event's seq (it comes first in an event's JSON) or the raw frame's.
func parseSeqField(frame []byte) (uint64, bool) {
	i := bytes.Index(frame, seqKey)
	if i < 0 {
		return 0, false
	}
	v, _, ok := parseDigits(frame[i+len(seqKey):])
	return uint64(v), ok && v > 0
}

var timeKey = []byte(`"time":"`)

// parseEventTime returns the event's "time" (its commit time) in unix ns.
// Engram writes it as 2006-01-02T15:04:05.000000000Z (UTC, nine fraction
// digits); that form is parsed by hand, anything else with time.Parse.
func parseEventTime(frame []byte) (int64, bool) {
	i := bytes.Index(frame, timeKey)
	if i < 0 {
		return 0, false
	}
	rest := frame[i+len(timeKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	s := rest[:j]
	if ns, ok := parseFixedUTC(s); ok {
		return ns, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// parseFixedUTC parses exactly "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ".
func parseFixedUTC(s []byte) (int64, bool) {
	if len(s) != 30 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return 0, false
	}
	num := func(b []byte) (int, bool) {
		v := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	var f [7]int
	for k, r := range [7][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 29}} {
		v, ok := num(s[r[0]:r[1]])
		if !ok {
			return 0, false
		}
		f[k] = v
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60 {
		return 0, false
	}
	return time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], f[6], time.UTC).UnixNano(), true
}

// ---------------------------------------------------------------- window

// fanWindow bounds the saturation writers: event k is posted only once
// event k-size has reached every live subscriber (or was cut from it), so
// at most size events are in flight and no subscriber's queue (4096 in
// Engram) can overflow because of the bench itself. Without it, posters
// (thousands of writes/s) outrun any fan-out to 1,000 subscribers and every
// subscriber is cut as lagged within a second: that measures the queue
// length, not the throughput.
type fanWindow struct {
	size int64
	subs int64
	mask int64
	ring []atomic.Int64 // per event index mod len: subscribers that got it
	cut  atomic.Int64   // subscribers cut off (lagged, closed) since the window began
	// waited counts the posts that had to wait for the window: near all of
	// them means the window, not the writers, set the pace.
	waited atomic.Int64

	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
}

// failedMark marks an event that was never committed: complete at once.
const failedMark = 1 << 50

func newFanWindow(size, subs int) *fanWindow {
	n := int64(1)
	for n < 2*int64(size) {
		n <<= 1
	}
	w := &fanWindow{size: int64(size), subs: int64(subs), mask: n - 1, ring: make([]atomic.Int64, n)}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *fanWindow) target() int64 { return w.subs - w.cut.Load() }

func (w *fanWindow) wake() {
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// delivered counts one receipt of event idx.
func (w *fanWindow) delivered(idx int64) {
	if w.ring[idx&w.mask].Add(1) == w.target() {
		w.wake()
	}
}

// cutOne counts a subscriber that will receive nothing more.
func (w *fanWindow) cutOne() {
	w.cut.Add(1)
	w.wake()
}

// failed marks event idx as never committed.
func (w *fanWindow) failed(idx int64) {
	w.ring[idx&w.mask].Store(failedMark)
	w.wake()
}

// acquire waits until event k may be posted (event k-size is complete) and
// readies its slot; false when the window closed first.
func (w *fanWindow) acquire(k int64) bool {
	w.mu.Lock()
	for waited := false; !w.closed && k >= w.size && w.ring[(k-w.size)&w.mask].Load() < w.target(); {
		if !waited {
			w.waited.Add(1)
			waited = true
		}
		w.cond.Wait()
	}
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return false
	}
	w.ring[k&w.mask].Store(0)
	return true
}

func (w *fanWindow) close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// ---------------------------------------------------------------- subscribers

// fanConn is the account of one subscriber connection; its reader
// goroutine writes it, the bench reads it between steps.
type fanConn struct {
	mu         sync.Mutex
	hist       *hdrhistogram.Histogram // stamp → receipt, µs
	commitHist *hdrhistogram.Histogram // event time → receipt, µs (Engram)
	delivered  int64
	outOfOrder int64
	lastSeq    uint64
	minStamp   int64 // earliest stamp received (unix ns)
	maxRecv    int64 // latest receipt (unix ns)
	lagged     bool  // cut off as lagged
	ended      error // the connection ended (not by the bench)

	close func()
}

// newFanHist is a latency histogram, µs, 1 µs to 100 s at 2 significant
// digits: ~20 KB, so that a thousand connections can each have one.
func newFanHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 100_000_000, 2) }

// subGroup is a set of subscriber connections of one transport.
type subGroup struct {
	transport string // "raw-ws", "ws" or "sse"
	commit    bool   // frames carry an event time worth recording
	conns     []*fanConn
	win       atomic.Pointer[fanWindow]
	wg        sync.WaitGroup
	closing   atomic.Bool
}

// record accounts one frame received at now (unix ns).
func (g *subGroup) record(c *fanConn, frame []byte, now int64) {
	seq, ok1 := parseSeqField(frame)
	ns, idx, ok2 := parseStamp(frame)
	if !ok1 || !ok2 {
		return // not a stamped event
	}
	var commitNs int64
	if g.commit {
		commitNs, _ = parseEventTime(frame)
	}
	c.mu.Lock()
	if seq <= c.lastSeq {
		c.outOfOrder++
	}
	c.lastSeq = seq
	c.delivered++
	if c.hist == nil {
		c.hist = newFanHist()
	}
	c.hist.RecordValue(max((now-ns)/1000, 1))
	if commitNs > 0 {
		if c.commitHist == nil {
			c.commitHist = newFanHist()
		}
		c.commitHist.RecordValue(max((now-commitNs)/1000, 1))
	}
	if c.minStamp == 0 || ns < c.minStamp {
		c.minStamp = ns
	}
	if now > c.maxRecv {
		c.maxRecv = now
	}
	c.mu.Unlock()
	if w := g.win.Load(); w != nil {
		w.delivered(idx)
	}
}

// markLagged records that c's subscription was cut off as lagged.
func (g *subGroup) markLagged(c *fanConn) {
	c.mu.Lock()
	was := c.lagged || c.ended != nil
	c.lagged = true
	c.mu.Unlock()
	if w := g.win.Load(); w != nil && !was {
		w.cutOne()
	}
}

// markEnded records that c's connection ended by itself.
func (g *subGroup) markEnded(c *fanConn, err error) {
	if g.closing.Load() {
		return
	}
	if err == nil {
		err = io.EOF
	}
	c.mu.Lock()
	was := c.lagged || c.ended != nil
	c.ended = err
	c.mu.Unlock()
	if w := g.win.Load(); w != nil && !was {
		w.cutOne()
	}
}

// live counts the connections whose subscription still receives.
func (g *subGroup) live() int {
	n := 0
	for _, c := range g.conns {
		c.mu.Lock()
		if !c.lagged && c.ended == nil {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// cutCounts counts the subscriptions cut as lagged and the connections
// that ended otherwise, so far.
func (g *subGroup) cutCounts() (lagged, ended int) {
	for _, c := range g.conns {
		c.mu.Lock()
		switch {
		case c.lagged:
			lagged++
		case c.ended != nil:
			ended++
		}
		c.mu.Unlock()
	}
	return lagged, ended
}

// reset clears the per-step accounts (not the lagged/ended state).
func (g *subGroup) reset() {
	for _, c := range g.conns {
		c.mu.Lock()
		if c.hist != nil {
			c.hist.Reset()
		}
		if c.commitHist != nil {
			c.commitHist.Reset()
		}
		c.delivered, c.outOfOrder, c.lastSeq, c.minStamp, c.maxRecv = 0, 0, 0, 0, 0
		c.mu.Unlock()
	}
}

// deliveredTotal sums the deliveries of the current step.
func (g *subGroup) deliveredTotal() int64 {
	var n int64
	for _, c := range g.conns {
		c.mu.Lock()
		n += c.delivered
		c.mu.Unlock()
	}
	return n
}

// fanTotals is a group's account of one step.
type fanTotals struct {
	Delivered  int64
	OutOfOrder int64
	Lagged     int // subscriptions cut as lagged (all time)
	Ended      int // connections that ended (all time)
	FirstErr   string
	MinStamp   int64
	MaxRecv    int64
	Hist       *hdrhistogram.Histogram
	CommitHist *hdrhistogram.Histogram
}

func (g *subGroup) collect() fanTotals {
	t := fanTotals{Hist: newFanHist(), CommitHist: newFanHist()}
	for _, c := range g.conns {
		c.mu.Lock()
		t.Delivered += c.delivered
		t.OutOfOrder += c.outOfOrder
		if c.lagged {
			t.Lagged++
		}
		if c.ended != nil && !c.lagged { // an SSE stream closes after its lagged notice
			t.Ended++
			if t.FirstErr == "" {
				t.FirstErr = c.ended.Error()
			}
		}
		if c.minStamp != 0 && (t.MinStamp == 0 || c.minStamp < t.MinStamp) {
			t.MinStamp = c.minStamp
		}
		t.MaxRecv = max(t.MaxRecv, c.maxRecv)
		if c.hist != nil {
			t.Hist.Merge(c.hist)
		}
		if c.commitHist != nil {
			t.CommitHist.Merge(c.commitHist)
		}
		c.mu.Unlock()
	}
	return t
}

// close ends every connection and waits for the readers.
func (g *subGroup) close() {
	if g == nil {
		return
	}
	g.closing.Store(true)
	for _, c := range g.conns {
		if c.close != nil {
			c.close()
		}
	}
	g.wg.Wait()
}

// waitDrain waits until want deliveries arrived, or none arrived for
// quiet, or limit passed; it returns the deliveries counted.
func (g *subGroup) waitDrain(ctx context.Context, want int64, quiet, limit time.Duration) int64 {
	deadline := time.Now().Add(limit)
	last, lastChange := int64(-1), time.Now()
	for {
		n := g.deliveredTotal()
		if n >= want || ctx.Err() != nil || time.Now().After(deadline) {
			return n
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > quiet {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialAll opens n connections with up to par dials at a time.
func dialAll(ctx context.Context, n, par int, dial func(i int) (*fanConn, error)) ([]*fanConn, error) {
	conns := make([]*fanConn, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := 0; w < min(par, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				c, err := dial(i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		for _, c := range conns {
			if c != nil && c.close != nil {
				c.close()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// dialPar is how many connections are dialed at once.
const dialPar = 32

// wsReadFrame reads the next data frame of ws into buf.
func wsReadFrame(ws *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := ws.NextReader()
	if err != nil {
		return buf, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func wsDialer(readBuf, writeBuf int) *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 15 * time.Second, ReadBufferSize: readBuf, WriteBufferSize: writeBuf}
}

// dialRawGroup connects n plain WebSocket clients to the broadcast server.
func dialRawGroup(ctx context.Context, addr string, n int) (*subGroup, error) {
	g := &subGroup{transport: "raw-ws"}
	d := wsDialer(4096, 512)
	url := "ws://" + addr + "/ws"
	conns, err := dialAll(ctx, n, dialPar, func(int) (*fanConn, error) {
		ws, _, err := d.DialContext(ctx, url, nil)
		if err != nil {
			return nil, err
		}
		c := &fanConn{close: func() { ws.Close() }}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			buf := make([]byte, 0, 1024)
			for {
				var err error
				buf, err = wsReadFrame(ws, buf)
				if err != nil {
					g.markEnded(c, err)
					return
				}
				g.record(c, buf, time.Now().UnixNano())
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

var (
	opEvent       = []byte(`{"op":"event"`)
	opError       = []byte(`{"op":"error"`)
	opSubscribed  = []byte(`{"op":"subscribed"`)
	codeLagged    = []byte(`"code":"lagged"`)
	sseData       = []byte("data: ")
	sseEventError = []byte("event: error")
)

// dialEngramWSGroup connects n clients to Engram's /v1/ws, each subscribed
// (live) to topic(i), and returns once every one got its "subscribed".
// With idle set the clients use small buffers and record nothing.
func dialEngramWSGroup(ctx context.Context, addr string, n int, topic func(i int) string, idle bool) (*subGroup, error) {
	g := &subGroup{transport: "ws", commit: true}
	d := wsDialer(4096, 512)
	if idle {
		d = wsDialer(1024, 512)
	}
	url := "ws://" + addr + "/v1/ws"
	conns, err := dialAll(ctx, n, dialPar, func(i int) (*fanConn, error) {
		ws, _, err := d.DialContext(ctx, url, nil)
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*fanConn, error) {
			ws.Close()
			return nil, err
		}
		sub := `{"op":"subscribe","id":"s","topic":` + strconv.Quote(topic(i)) + `}`
		ws.SetWriteDeadline(time.Now().Add(15 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(sub)); err != nil {
			return fail(err)
		}
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf, err := wsReadFrame(ws, make([]byte, 0, 256))
		if err != nil {
			return fail(fmt.Errorf("waiting for subscribed: %w", err))
		}
		if !bytes.HasPrefix(buf, opSubscribed) {
			return fail(fmt.Errorf("subscribe answered %.200s", buf))
		}
		ws.SetReadDeadline(time.Time{})
		c := &fanConn{close: func() { ws.Close() }}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if idle {
				buf = nil
			}
			for {
				var err error
				buf, err = wsReadFrame(ws, buf)
				if err != nil {
					g.markEnded(c, err)
					return
				}
				switch {
				case bytes.HasPrefix(buf, opEvent):
					g.record(c, buf, time.Now().UnixNano())
				case bytes.HasPrefix(buf, opError) && bytes.Contains(buf, codeLagged):
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

// dialSSEGroup opens n streams of GET /v1/events?topic=topic over plain
// TCP (http.ReadResponse undoes the chunked encoding), and returns once
// each got its ": ok" comment (the subscription is live then).
func dialSSEGroup(ctx context.Context, addr string, n int, topic string) (*subGroup, error) {
	g := &subGroup{transport: "sse", commit: true}
	path := "/v1/events?topic=" + topic
	var nd net.Dialer
	conns, err := dialAll(ctx, n, dialPar, func(int) (*fanConn, error) {
		nc, err := nd.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*fanConn, error) {
			nc.Close()
			return nil, err
		}
		nc.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
			return fail(err)
		}
		br := bufio.NewReaderSize(nc, 4096)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			return fail(fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, b))
		}
		body := bufio.NewReaderSize(resp.Body, 4096)
		line, err := body.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(line, []byte(": ok")) {
			return fail(fmt.Errorf("first line of the stream %q: %v", line, err))
		}
		nc.SetDeadline(time.Time{})
		c := &fanConn{close: func() { nc.Close() }}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			var long []byte // a line longer than the buffer
			errorNext := false
			for {
				line, err := body.ReadSlice('\n')
				if errors.Is(err, bufio.ErrBufferFull) {
					long = append(long, line...)
					continue
				}
				if err != nil {
					g.markEnded(c, err)
					return
				}
				if long != nil {
					line = append(long, line...)
					long = nil
				}
				switch {
				case bytes.HasPrefix(line, sseEventError):
					errorNext = true
				case bytes.HasPrefix(line, sseData):
					if errorNext {
						if bytes.Contains(line, codeLagged) {
							g.markLagged(c)
						}
						errorNext = false
						continue
					}
					g.record(c, line, time.Now().UnixNano())
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

// fanWriter posts stamped work units to one context.
type fanWriter struct {
	hc    *fasthttp.HostClient
	url   string
	ctxID string
}

func newFanWriter(addr, ctxID string, conns int) *fanWriter {
	return &fanWriter{
		hc:    &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second},
		url:   "http://" + addr + "/v1/workunits",
		ctxID: ctxID,
	}
}

// stampedUnitJSON is a work-unit body of about size bytes whose payload
// starts with the stamp of (ns, idx).
func stampedUnitJSON(ctxID string, ns, idx int64, size int) []byte {
	b := make([]byte, 0, size+32)
	b = append(b, `{"context_id":`...)
	b = strconv.AppendQuote(b, ctxID)
	b = append(b, `,"agent_id":"bench-writer","type":"MESSAGE","payload":"`...)
	b = appendStamp(b, ns, idx)
	for n := size - len(b) - 2; n > 0; {
		k := min(n, len(loremText))
		b = append(b, loremText[:k]...)
		n -= k
	}
	return append(b, `"}`...)
}

// post writes the unit of index idx, stamped now.
func (w *fanWriter) post(idx int64) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(w.url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(stampedUnitJSON(w.ctxID, time.Now().UnixNano(), idx, recordSize))
	if err := w.hc.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != 201 {
		return fmt.Errorf("POST /v1/workunits: status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	return nil
}

// writeResult is what the writer did in one step.
type writeResult struct {
	Committed int64
	Failed    int64
	FirstErr  string
	Elapsed   time.Duration
}

// runPaced posts rate units per second for d from one goroutine, on a fixed
// schedule (a late post does not shift the ones after it).
func (w *fanWriter) runPaced(ctx context.Context, rate float64, d time.Duration) writeResult {
	var r writeResult
	start := time.Now()
	for i := int64(0); ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if !at.Before(start.Add(d)) {
			break
		}
		time.Sleep(time.Until(at))
		if err := w.post(i); err != nil {
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

// runSaturated posts from posters goroutines as fast as win lets them, for d.
func (w *fanWriter) runSaturated(ctx context.Context, posters int, d time.Duration, win *fanWindow) writeResult {
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
	stop := time.AfterFunc(d, win.close) // wakes posters waiting at the end
	defer stop.Stop()
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				k := next.Add(1) - 1
				if !win.acquire(k) {
					win.failed(k)
					return
				}
				if !time.Now().Before(deadline) {
					win.failed(k)
					return
				}
				if err := w.post(k); err != nil {
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

// topicOf is the topic of a context's events.
func topicOf(ctxID string) string { return "contexts/" + ctxID }

// sanitizeID turns a label into a context id.
func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, s)
}
