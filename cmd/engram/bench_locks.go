package main

// The locks group of `engram bench`, in three steps, each right after the
// same-run ceilings it is compared with:
//
//  1. uncontended round trip: 1 client, acquire of a fresh resource then
//     DELETE of the lock, in a loop; p50/p99 of each call and of the pair,
//     against the trivial Fiber POST (measured with the same fasthttp
//     client) + raw fsync: each call is one durable write, so the pair is
//     two and is compared with twice that ceiling;
//  2. contended throughput: 64 clients on ONE resource, each acquiring with
//     wait_ms and releasing at once; handovers/s and acquire latency
//     (mostly time in line), against the 1-client round trip and raw Pebble
//     synced commits (a handover is two synced commits in series: the
//     release, then the next acquire); no overlap is checked from the
//     fencing tokens, the clients' timestamps and the lock.* SSE stream;
//  3. --lock-count live locks (default 100,000) created by 64 clients with
//     one common expires_at (each ttl_ms computed from it, the expiry set
//     from a pilot's creation rate), then expiry latency: each lock.expired
//     event's "time" minus its expires_at (p50/p99/max, and until the last),
//     read from SSE; also the server's engram_lock_expiry_lag_seconds.
//
// DESIGN.md states no lock budget. The report applies the durable-write
// budget to the 1-client calls (and twice it to the pair) and says so;
// API.md's expiry target (p99 100 ms) is the expiry budget.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

const (
	groupLocks = "locks"

	lbTTLMs          = 60000 // steps 1 and 2: no lock outlives its step
	lbWaitMs         = 5000  // step 2: each acquire waits in line up to this
	lbContendClients = 64
	lbCreateClients  = 64
	lbPilotMax       = 1000 // step 3: locks of the pilot that sets the common expiry
	lbExpiryTargetMs = 100  // API.md: "target p99 100 ms"
	lbLagMetric      = "engram_lock_expiry_lag_seconds"
)

// Measurement ids of the locks group.
const (
	lbFsyncID     = "ceiling.fsync"
	lbPebble64ID  = "ceiling.pebble_sets.w64"
	lbPebble1ID   = "ceiling.pebble_sets.w1"
	lbTrivialID   = "ceiling.trivial_post.locks.c1"
	lbRoundTripID = "locks.roundtrip.c1"
	lbContendedID = "locks.contended.c64"
)

func lbCreateID(n int) string { return fmt.Sprintf("locks.create.n%d.c%d", n, lbCreateClients) }
func lbExpiryID(n int) string { return fmt.Sprintf("locks.expiry.n%d", n) }

// lbFigures are the lock-specific figures of a locks measurement.
type lbFigures struct {
	// Round trip (P50Ms/P99Ms of the measurement are the pair's).
	AcquireP50Ms float64 `json:"acquire_p50_ms,omitempty"`
	AcquireP99Ms float64 `json:"acquire_p99_ms,omitempty"`
	ReleaseP50Ms float64 `json:"release_p50_ms,omitempty"`
	ReleaseP99Ms float64 `json:"release_p99_ms,omitempty"`
	CallCeilMs   float64 `json:"call_ceiling_ms,omitempty"` // trivial p99 + fsync p99 (one durable write)

	// Contended (P50Ms/P99Ms are the acquire's, time in line included).
	Grants      int64   `json:"grants,omitempty"`
	Timeouts    int64   `json:"timeouts,omitempty"` // 409 after wait_ms
	Violations  int64   `json:"violations"`
	VsRoundTrip float64 `json:"vs_roundtrip,omitempty"` // handovers/s ÷ 1-client pairs/s
	VsPebble1   float64 `json:"vs_pebble_w1_half,omitempty"`
	VsPebble64  float64 `json:"vs_pebble_w64_half,omitempty"`

	// Expiry (P50Ms/P99Ms/MaxMs are event time − expires_at).
	Locks          int64   `json:"locks,omitempty"`
	Expired        int64   `json:"expired,omitempty"` // lock.expired events of the step's locks
	Missing        int64   `json:"missing,omitempty"`
	Duplicates     int64   `json:"duplicates,omitempty"`
	SpreadMs       float64 `json:"expires_at_spread_ms,omitempty"` // max − min expires_at
	MarginMs       float64 `json:"margin_ms,omitempty"`            // earliest expires_at − end of creation
	AllExpiredMs   float64 `json:"all_expired_ms,omitempty"`       // earliest expires_at → last lock.expired time
	ReceiptP50Ms   float64 `json:"receipt_p50_ms,omitempty"`       // SSE receipt − expires_at
	ReceiptP99Ms   float64 `json:"receipt_p99_ms,omitempty"`
	MetricCount    int64   `json:"metric_count,omitempty"`
	MetricP50Ms    float64 `json:"metric_p50_ms,omitempty"` // estimated from the histogram's buckets
	MetricP99Ms    float64 `json:"metric_p99_ms,omitempty"`
	MetricMeanMs   float64 `json:"metric_mean_ms,omitempty"`
	SSEReconnects  int     `json:"sse_reconnects,omitempty"`
	Verified       bool    `json:"verified"`
	CreateRate     float64 `json:"create_per_s,omitempty"`
	PilotRate      float64 `json:"pilot_per_s,omitempty"`
	CommonExpiryMs float64 `json:"common_expiry_after_ms,omitempty"` // from the start of creation
}

// lbReportConfig is the locks group's setup in the report.
type lbReportConfig struct {
	Client           string `json:"client"`
	TTLMs            int    `json:"ttl_ms"`
	WaitMs           int    `json:"wait_ms"`
	ContendClients   int    `json:"contended_clients"`
	LockCount        int    `json:"lock_count"`
	CreateClients    int    `json:"create_clients"`
	ResourcesPerLock int    `json:"resources_per_lock"`
}

const lbClientDesc = "fasthttp closed loop in the bench process: per client one fasthttp.HostClient (1 connection); acquire POST /v1/locks, release DELETE /v1/locks/{lock_id}; latencies in HdrHistograms; lock.* events from one SSE stream GET /v1/events?topic=locks"

func (b *bench) lbConfig() *lbReportConfig {
	if b.rep.Config.Locks == nil {
		b.rep.Config.Locks = &lbReportConfig{Client: lbClientDesc, TTLMs: lbTTLMs, WaitMs: lbWaitMs,
			ContendClients: lbContendClients, LockCount: b.cfg.LockCount, CreateClients: lbCreateClients, ResourcesPerLock: 1}
	}
	return b.rep.Config.Locks
}

// ---------------------------------------------------------------- bodies and answers

// lbAcquireBody appends an acquire body for one resource to dst; waitMs
// < 0 leaves wait_ms out. Resources and holders are the bench's own
// (plain ASCII, nothing to escape).
func lbAcquireBody(dst []byte, resource, holder string, ttlMs, waitMs int64) []byte {
	dst = append(dst, `{"resources":["`...)
	dst = append(dst, resource...)
	dst = append(dst, `"],"holder":"`...)
	dst = append(dst, holder...)
	dst = append(dst, `","ttl_ms":`...)
	dst = strconv.AppendInt(dst, ttlMs, 10)
	if waitMs >= 0 {
		dst = append(dst, `,"wait_ms":`...)
		dst = strconv.AppendInt(dst, waitMs, 10)
	}
	return append(dst, '}')
}

// lbLock is what the bench reads of a lock (an acquire answer or the data
// of a lock.* event).
type lbLock struct {
	ID        string
	Resource  string // the first
	Token     uint64
	ExpiresNs int64
}

var (
	lbLockIDKey    = []byte(`"lock_id":"`)
	lbTokenKey     = []byte(`"fencing_token":`)
	lbExpiresKey   = []byte(`"expires_at":"`)
	lbResourcesKey = []byte(`"resources":["`)
	lbTypeKey      = []byte(`"type":"`)
)

// lbStringAt returns the string value after key in b (no escapes: lock
// ids, times and the bench's resources hold none).
func lbStringAt(b, key []byte) ([]byte, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, false
	}
	return rest[:j], true
}

// lbParseLock scans a lock's JSON (or an event holding one) for its id,
// first resource, fencing token and expiry.
func lbParseLock(b []byte) (lbLock, bool) {
	var l lbLock
	id, ok := lbStringAt(b, lbLockIDKey)
	if !ok || len(id) == 0 {
		return l, false
	}
	l.ID = string(id)
	if r, ok := lbStringAt(b, lbResourcesKey); ok {
		l.Resource = string(r)
	}
	i := bytes.Index(b, lbTokenKey)
	if i < 0 {
		return l, false
	}
	tok, _, ok := parseDigits(b[i+len(lbTokenKey):])
	if !ok {
		return l, false
	}
	l.Token = uint64(tok)
	exp, ok := lbStringAt(b, lbExpiresKey)
	if !ok {
		return l, false
	}
	if l.ExpiresNs, ok = parseFixedUTC(exp); !ok {
		t, err := time.Parse(time.RFC3339Nano, string(exp))
		if err != nil {
			return l, false
		}
		l.ExpiresNs = t.UnixNano()
	}
	return l, true
}

// Event types, interned.
const (
	lbAcquired = "lock.acquired"
	lbRenewed  = "lock.renewed"
	lbReleased = "lock.released"
	lbExpired  = "lock.expired"
)

// lbEvent is one lock.* event as the SSE reader keeps it.
type lbEvent struct {
	Seq    uint64
	Type   string
	TimeNs int64 // the event's "time": its command's time
	RecvNs int64 // when the bench read it
	Lock   lbLock
}

// lbParseEvent scans an event's JSON ({"seq","time","type","topic","data":lock}).
func lbParseEvent(data []byte) (lbEvent, bool) {
	var e lbEvent
	seq, ok := parseSeqField(data)
	if !ok {
		return e, false
	}
	e.Seq = seq
	if e.TimeNs, ok = parseEventTime(data); !ok {
		return e, false
	}
	typ, ok := lbStringAt(data, lbTypeKey)
	if !ok {
		return e, false
	}
	switch string(typ) {
	case lbAcquired:
		e.Type = lbAcquired
	case lbRenewed:
		e.Type = lbRenewed
	case lbReleased:
		e.Type = lbReleased
	case lbExpired:
		e.Type = lbExpired
	default:
		e.Type = string(typ)
	}
	if e.Lock, ok = lbParseLock(data); !ok {
		return e, false
	}
	return e, true
}

// ---------------------------------------------------------------- HTTP client

// lbClient is one connection doing acquire and release.
type lbClient struct {
	hc   *fasthttp.HostClient
	req  *fasthttp.Request
	resp *fasthttp.Response
	base string
	body []byte
}

func newLBClient(base string) *lbClient {
	return &lbClient{
		hc:  &fasthttp.HostClient{Addr: strings.TrimPrefix(base, "http://"), MaxConns: 1, ReadTimeout: time.Minute, WriteTimeout: time.Minute},
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(), base: base,
	}
}

func (c *lbClient) close() {
	c.hc.CloseIdleConnections()
	fasthttp.ReleaseRequest(c.req)
	fasthttp.ReleaseResponse(c.resp)
}

// acquire sends one acquire; a 201 comes back parsed, a 409 as status
// 409 and no error, anything else as an error.
func (c *lbClient) acquire(resource, holder string, ttlMs, waitMs int64) (lbLock, int, time.Duration, error) {
	c.body = lbAcquireBody(c.body[:0], resource, holder, ttlMs, waitMs)
	c.req.Reset()
	c.req.SetRequestURI(c.base + "/v1/locks")
	c.req.Header.SetMethod("POST")
	c.req.Header.SetContentType("application/json")
	c.req.SetBodyRaw(c.body)
	t0 := time.Now()
	err := c.hc.Do(c.req, c.resp)
	lat := time.Since(t0)
	if err != nil {
		return lbLock{}, 0, lat, err
	}
	switch st := c.resp.StatusCode(); st {
	case 201:
		l, ok := lbParseLock(c.resp.Body())
		if !ok {
			return l, st, lat, fmt.Errorf("acquire answer: %.200s", c.resp.Body())
		}
		return l, st, lat, nil
	case 409:
		return lbLock{}, st, lat, nil
	default:
		return lbLock{}, st, lat, fmt.Errorf("acquire: status %d: %.200s", st, c.resp.Body())
	}
}

// release deletes a lock; anything but 204 is an error.
func (c *lbClient) release(id string) (time.Duration, error) {
	c.req.Reset()
	c.req.SetRequestURI(c.base + "/v1/locks/" + id)
	c.req.Header.SetMethod("DELETE")
	t0 := time.Now()
	err := c.hc.Do(c.req, c.resp)
	lat := time.Since(t0)
	if err == nil && c.resp.StatusCode() != 204 {
		err = fmt.Errorf("release: status %d: %.200s", c.resp.StatusCode(), c.resp.Body())
	}
	return lat, err
}

// ---------------------------------------------------------------- SSE reader

// lbSSE reads GET /v1/events?topic=locks into memory; a lagged or broken
// stream is resumed from its last seq (the events are in the log), so
// none is missed. Parsing is a byte scan, to keep the reader's CPU low.
type lbSSE struct {
	addr string

	mu         sync.Mutex
	events     []lbEvent
	lastSeq    uint64
	reconnects int
	err        error
	conn       net.Conn

	counts  [4]atomic.Int64 // acquired, renewed, released, expired
	closing atomic.Bool
	done    chan struct{}
}

func lbTypeIndex(t string) int {
	switch t {
	case lbAcquired:
		return 0
	case lbRenewed:
		return 1
	case lbReleased:
		return 2
	case lbExpired:
		return 3
	}
	return -1
}

// lbDialSSE opens the stream (after afterSeq when > 0) and returns once
// its ": ok" comment came: the subscription is live then.
func lbDialSSE(ctx context.Context, addr string, afterSeq uint64) (net.Conn, *bufio.Reader, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	path := "/v1/events?topic=" + groupLocks
	if afterSeq > 0 {
		path += "&after_seq=" + strconv.FormatUint(afterSeq, 10)
	}
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		nc.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 64<<10), nil)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		nc.Close()
		return nil, nil, fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	body := bufio.NewReaderSize(resp.Body, 64<<10)
	line, err := body.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte(": ok")) {
		nc.Close()
		return nil, nil, fmt.Errorf("first line of the stream %q: %v", line, err)
	}
	nc.SetDeadline(time.Time{})
	return nc, body, nil
}

func lbOpenSSE(ctx context.Context, addr string) (*lbSSE, error) {
	nc, body, err := lbDialSSE(ctx, addr, 0)
	if err != nil {
		return nil, err
	}
	s := &lbSSE{addr: addr, conn: nc, done: make(chan struct{})}
	go s.loop(body)
	return s, nil
}

func (s *lbSSE) loop(body *bufio.Reader) {
	defer close(s.done)
	for {
		lagged, err := s.read(body)
		if s.closing.Load() {
			return
		}
		s.mu.Lock()
		s.conn.Close()
		after, tries := s.lastSeq, s.reconnects
		s.mu.Unlock()
		if tries >= 20 {
			s.fail(fmt.Errorf("SSE: gave up after %d reconnects: %v", tries, err))
			return
		}
		if !lagged {
			time.Sleep(50 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		nc, nb, derr := lbDialSSE(ctx, s.addr, after)
		cancel()
		if derr != nil {
			s.fail(fmt.Errorf("SSE: reconnect after %v: %w", err, derr))
			return
		}
		s.mu.Lock()
		s.conn, s.reconnects = nc, s.reconnects+1
		s.mu.Unlock()
		if s.closing.Load() {
			nc.Close()
			return
		}
		body = nb
	}
}

func (s *lbSSE) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// read consumes one connection's stream until it ends; lagged says the
// server cut it as lagged.
func (s *lbSSE) read(body *bufio.Reader) (lagged bool, err error) {
	var long []byte
	errorNext := false
	for {
		line, err := body.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			continue
		}
		if err != nil {
			return false, err
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
					return true, fmt.Errorf("lagged")
				}
				return false, fmt.Errorf("SSE error: %s", bytes.TrimSpace(line))
			}
			now := time.Now().UnixNano()
			e, ok := lbParseEvent(line[len(sseData):])
			if !ok {
				continue // not a lock event
			}
			e.RecvNs = now
			s.mu.Lock()
			if e.Seq > s.lastSeq {
				s.events = append(s.events, e)
				s.lastSeq = e.Seq
			}
			s.mu.Unlock()
			if i := lbTypeIndex(e.Type); i >= 0 {
				s.counts[i].Add(1)
			}
		}
	}
}

// count is the number of events of type t read so far.
func (s *lbSSE) count(t string) int64 {
	if i := lbTypeIndex(t); i >= 0 {
		return s.counts[i].Load()
	}
	return 0
}

// waitCount waits until count(t) >= want, the stream fails, ctx ends, or
// no event of type t came for quiet (after at least minWait).
func (s *lbSSE) waitCount(ctx context.Context, t string, want int64, minWait, quiet time.Duration) int64 {
	start := time.Now()
	last, lastAt := s.count(t), time.Now()
	for {
		n := s.count(t)
		if n >= want || ctx.Err() != nil || s.failed() != nil {
			return n
		}
		if n != last {
			last, lastAt = n, time.Now()
		}
		if time.Since(start) > minWait && time.Since(lastAt) > quiet {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *lbSSE) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close ends the stream and returns what it read.
func (s *lbSSE) close() ([]lbEvent, int, error) {
	s.closing.Store(true)
	s.mu.Lock()
	s.conn.Close()
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, s.reconnects, s.err
}

// ---------------------------------------------------------------- checks

// lbGrant is one successful acquire of the contended step, as its client
// saw it (unix ns of this process's clock).
type lbGrant struct {
	Lock      lbLock
	AckNs     int64 // 201 received
	RelSendNs int64 // DELETE sent
	RelAckNs  int64 // 204 received
}

// lbCheckHandovers checks that the locks of one resource never overlapped:
// fencing tokens strictly increase in the order of grant; every grant's
// release was sent before the next grant was answered (client clocks);
// and the lock.* events of the resource, in seq order, alternate acquired
// (a greater token each time) and released of that same lock, listing the
// clients' grants in token order. It returns the violations and a note.
func lbCheckHandovers(grants []lbGrant, events []lbEvent, resource string) (int64, string) {
	var bad []string
	var n int64
	add := func(k int64, format string, args ...any) {
		if k <= 0 {
			return
		}
		n += k
		if len(bad) < 5 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	gs := slices.Clone(grants)
	sort.Slice(gs, func(i, j int) bool { return gs[i].Lock.Token < gs[j].Lock.Token })
	var dupTok, early int64
	for i := 1; i < len(gs); i++ {
		if gs[i].Lock.Token == gs[i-1].Lock.Token {
			dupTok++
		}
		if gs[i].AckNs <= gs[i-1].RelSendNs {
			early++
		}
	}
	add(dupTok, "%d fencing tokens granted twice", dupTok)
	add(early, "%d grants answered before the previous holder sent its release", early)

	var acq []string
	var held string
	var lastTok, lastSeq uint64
	var lastTime int64
	var overlap, badRel, tokDown, seqDown, timeDown, expired int64
	for _, e := range events {
		if e.Lock.Resource != resource {
			continue
		}
		if e.Seq <= lastSeq {
			seqDown++
		}
		if e.TimeNs < lastTime {
			timeDown++
		}
		lastSeq, lastTime = e.Seq, e.TimeNs
		switch e.Type {
		case lbAcquired:
			if held != "" {
				overlap++
			}
			if e.Lock.Token <= lastTok {
				tokDown++
			}
			held, lastTok = e.Lock.ID, e.Lock.Token
			acq = append(acq, e.Lock.ID)
		case lbReleased, lbExpired:
			if e.Lock.ID != held {
				badRel++
			}
			if e.Type == lbExpired {
				expired++
			}
			held = ""
		}
	}
	add(overlap, "%d acquired events while the resource was held", overlap)
	add(tokDown, "%d acquired events without a greater token", tokDown)
	add(badRel, "%d released/expired events not of the holder", badRel)
	add(seqDown, "%d events out of seq order", seqDown)
	add(timeDown, "%d events with an earlier time than the one before", timeDown)
	var mismatch int64
	if len(acq) != len(gs) {
		mismatch = int64(max(len(acq)-len(gs), len(gs)-len(acq)))
		add(mismatch, "SSE has %d acquired events, the clients %d grants", len(acq), len(gs))
	} else {
		for i := range acq {
			if acq[i] != gs[i].Lock.ID {
				mismatch++
			}
		}
		add(mismatch, "%d grants in another order on SSE than by token", mismatch)
	}
	note := fmt.Sprintf("%d grants; SSE: %d acquired, alternating with their release", len(gs), len(acq))
	if expired > 0 {
		note += fmt.Sprintf(" (%d by expiry)", expired)
	}
	if n == 0 {
		note += "; tokens strictly increase in grant order, each release sent before the next grant: no overlap"
		return 0, note
	}
	return n, note + "; VIOLATIONS: " + strings.Join(bad, "; ")
}

// lbExpirySummary is the expiry of the step's locks, from their events.
type lbExpirySummary struct {
	Lat, Recv                    *hdrhistogram.Histogram // µs from expires_at
	Expired, Missing, Duplicates int64
	MinExpiresNs, MaxExpiresNs   int64 // of the created locks
	FirstEventNs, LastEventNs    int64 // time of the first and last lock.expired
}

// lbSummarizeExpiry matches lock.expired events with the created locks
// (id → expires_at from the acquire answers).
func lbSummarizeExpiry(created map[string]int64, events []lbEvent) lbExpirySummary {
	s := lbExpirySummary{Lat: newLatencyHist(), Recv: newLatencyHist()}
	for _, exp := range created {
		if s.MinExpiresNs == 0 || exp < s.MinExpiresNs {
			s.MinExpiresNs = exp
		}
		s.MaxExpiresNs = max(s.MaxExpiresNs, exp)
	}
	seen := make(map[string]bool, len(created))
	for _, e := range events {
		if e.Type != lbExpired {
			continue
		}
		exp, ok := created[e.Lock.ID]
		if !ok {
			continue
		}
		if seen[e.Lock.ID] {
			s.Duplicates++
			continue
		}
		seen[e.Lock.ID] = true
		s.Expired++
		if e.Lock.ExpiresNs != 0 {
			exp = e.Lock.ExpiresNs
		}
		s.Lat.RecordValue(max((e.TimeNs-exp)/1000, 1))
		s.Recv.RecordValue(max((e.RecvNs-exp)/1000, 1))
		if s.FirstEventNs == 0 || e.TimeNs < s.FirstEventNs {
			s.FirstEventNs = e.TimeNs
		}
		s.LastEventNs = max(s.LastEventNs, e.TimeNs)
	}
	s.Missing = int64(len(created)) - s.Expired
	return s
}

// ---------------------------------------------------------------- Prometheus histogram

// lbPromHist is one unlabeled Prometheus histogram: cumulative bucket
// counts by upper bound (seconds), as /metrics shows it.
type lbPromHist struct {
	Count  uint64
	Sum    float64
	Bounds []float64
	Cum    []uint64
}

// lbParsePromHist picks histogram name out of Prometheus text.
func lbParsePromHist(body []byte, name string) (lbPromHist, bool) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return lbPromHist{}, false
	}
	f, ok := fams[name]
	if !ok {
		return lbPromHist{}, false
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if len(m.GetLabel()) > 0 || h == nil {
			continue
		}
		out := lbPromHist{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			out.Bounds = append(out.Bounds, b.GetUpperBound())
			out.Cum = append(out.Cum, b.GetCumulativeCount())
		}
		return out, true
	}
	return lbPromHist{}, false
}

// sub returns h − o (the observations between two scrapes).
func (h lbPromHist) sub(o lbPromHist) lbPromHist {
	out := lbPromHist{Count: h.Count - o.Count, Sum: h.Sum - o.Sum, Bounds: h.Bounds, Cum: slices.Clone(h.Cum)}
	if len(o.Cum) == len(h.Cum) {
		for i := range out.Cum {
			out.Cum[i] -= o.Cum[i]
		}
	}
	return out
}

// quantile estimates quantile q (0..1) in seconds as Prometheus'
// histogram_quantile does: linear within the bucket; beyond the last
// finite bound it answers that bound.
func (h lbPromHist) quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	lo, below := 0.0, uint64(0)
	for i, ub := range h.Bounds {
		if float64(h.Cum[i]) >= rank {
			if math.IsInf(ub, 1) {
				return lo
			}
			in := h.Cum[i] - below
			if in == 0 {
				return ub
			}
			return lo + (ub-lo)*(rank-float64(below))/float64(in)
		}
		lo, below = ub, h.Cum[i]
	}
	return lo
}

func lbScrapeLag(base string) (lbPromHist, bool) {
	status, body, err := doOnce(base+"/metrics", "GET", nil)
	if err != nil || status != 200 {
		return lbPromHist{}, false
	}
	return lbParsePromHist(body, lbLagMetric)
}

// ---------------------------------------------------------------- steps

// locksHTTP runs the locks group on the in-process server.
func (b *bench) locksHTTP(ctx context.Context, srvURL, trivURL string) error {
	b.lbConfig()
	d := b.cfg.Duration
	// Preflight: acquire, read, conflict, release.
	{
		c := newLBClient(srvURL)
		l, st, _, err := c.acquire("bench/lock/preflight", "bench-pre", lbTTLMs, -1)
		if err == nil && st != 201 {
			err = fmt.Errorf("acquire of a free resource: status %d", st)
		}
		if err == nil {
			_, st, _, err = c.acquire("bench/lock/preflight", "bench-pre2", lbTTLMs, 0)
			if err == nil && st != 409 {
				err = fmt.Errorf("acquire of a held resource: status %d, want 409", st)
			}
		}
		if err == nil {
			err = expectStatus(srvURL+"/v1/locks?resource=bench/lock/preflight", "GET", nil, 200)
		}
		if err == nil {
			_, err = c.release(l.ID)
		}
		c.close()
		if err != nil {
			return fmt.Errorf("locks preflight: %w", err)
		}
	}

	// The durable-write ceilings, unless the disk group measured them,
	// and Pebble synced commits from one writer (a chain of handovers
	// commits one at a time).
	if _, ok := findMeasurement(b.rep.Measurements, lbFsyncID); !ok {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: fsync (%s)", d), func() (measurement, error) {
				return ceilingFsync(ctx, b.dataDir, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("fsync ceiling: %w", err)
		}
	}
	for _, w := range []int{pebbleW, 1} {
		id := fmt.Sprintf("ceiling.pebble_sets.w%d", w)
		if _, ok := findMeasurement(b.rep.Measurements, id); ok {
			continue
		}
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: Pebble Set+Sync, %d goroutine(s) (%s)", w, d), func() (measurement, error) {
				m, err := ceilingPebbleSets(ctx, b.dataDir, w, d)
				if w == 1 {
					m.Group, m.Name = groupLocks, "ceiling: Pebble Set+Sync, 1 goroutine (a chain of handovers commits one at a time)"
				}
				return m, err
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("pebble ceiling: %w", err)
		}
	}

	attempt := 0
	if err := b.measure(ctx, func() ([]measurement, error) {
		attempt++
		return b.lbRoundTripStep(ctx, srvURL, trivURL, attempt)
	}); err != nil {
		return err
	}
	if err := b.measure(ctx, func() ([]measurement, error) {
		attempt++
		m, err := b.lbContendedStep(ctx, srvURL, attempt)
		if err != nil {
			return nil, err
		}
		return []measurement{m}, nil
	}); err != nil {
		return err
	}
	if b.cfg.LockCount > 0 {
		if err := b.measure(ctx, func() ([]measurement, error) {
			attempt++
			return b.lbExpiryStep(ctx, srvURL, attempt)
		}); err != nil {
			return err
		}
	}
	return nil
}

// lbRoundTripStep measures the trivial POST at 1 client with the same
// fasthttp client, then acquire+release of fresh resources at 1 client.
func (b *bench) lbRoundTripStep(ctx context.Context, srvURL, trivURL string, attempt int) ([]measurement, error) {
	d := b.cfg.Duration
	spec := loadSpec{URL: trivURL + "/v1/workunits", Method: "POST", Body: unitJSON("bench-c1", "a1", recordSize), Clients: 1, Duration: d}
	b.waitQuiet(ctx)
	if b.cfg.Warmup > 0 {
		w := spec
		w.Duration = b.cfg.Warmup
		if _, err := (fasthttpDriver{}).Run(ctx, w); err != nil {
			return nil, fmt.Errorf("trivial warm-up: %w", err)
		}
	}
	name := "ceiling: trivial Fiber POST (decode, 201), 1 client, locks (fasthttp, as the lock client)"
	b.progress("%s (%s)", name, d)
	s0 := sampleCPU()
	lr, err := (fasthttpDriver{}).Run(ctx, spec)
	s1 := sampleCPU()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cm := fromLoad(lbTrivialID, name, kindCeiling, "req", lr)
	cm.Group = groupLocks
	cm.OtherCores, cm.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	b.show(cm)

	c := newLBClient(srvURL)
	defer c.close()
	prefix := fmt.Sprintf("bench/lock/u%d/", attempt)
	i := 0
	loop := func(d time.Duration, acqH, relH, pairH *hdrhistogram.Histogram) (int64, error) {
		var n int64
		for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; {
			i++
			l, st, la, err := c.acquire(prefix+strconv.Itoa(i), "bench-u", lbTTLMs, -1)
			if err == nil && st != 201 {
				err = fmt.Errorf("acquire of a fresh resource: status %d", st)
			}
			if err != nil {
				return n, err
			}
			lr, err := c.release(l.ID)
			if err != nil {
				return n, err
			}
			if acqH != nil {
				acqH.RecordValue(max(la.Microseconds(), 1))
				relH.RecordValue(max(lr.Microseconds(), 1))
				pairH.RecordValue(max((la + lr).Microseconds(), 1))
			}
			n++
		}
		return n, ctx.Err()
	}
	if b.cfg.Warmup > 0 {
		if _, err := loop(b.cfg.Warmup, nil, nil, nil); err != nil {
			return nil, fmt.Errorf("locks round trip warm-up: %w", err)
		}
	}
	name = "lock acquire+release round trip, 1 client, fresh resources"
	b.progress("%s (fasthttp, %s)", name, d)
	stop, err := b.startProfile(lbRoundTripID)
	if err != nil {
		return nil, err
	}
	acqH, relH, pairH := newLatencyHist(), newLatencyHist(), newLatencyHist()
	w0 := scrapeWAL(srvURL)
	s0 = sampleCPU()
	t0 := time.Now()
	n, err := loop(d, acqH, relH, pairH)
	el := time.Since(t0)
	s1 = sampleCPU()
	stop()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	plr := loadResult{Driver: "fasthttp", Clients: 1, Requests: n, DurationSec: el.Seconds()}
	fillPercentiles(&plr, pairH)
	if plr.DurationSec > 0 {
		plr.ReqPerSec = float64(n) / plr.DurationSec
	}
	m := fromLoad(lbRoundTripID, name, kindScenario, "pair", plr)
	m.Group = groupLocks
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	q := &lbFigures{
		AcquireP50Ms: float64(acqH.ValueAtQuantile(50)) / 1000, AcquireP99Ms: float64(acqH.ValueAtQuantile(99)) / 1000,
		ReleaseP50Ms: float64(relH.ValueAtQuantile(50)) / 1000, ReleaseP99Ms: float64(relH.ValueAtQuantile(99)) / 1000,
		Verified: true,
	}
	if f, ok := findMeasurement(b.rep.Measurements, lbFsyncID); ok {
		q.CallCeilMs = cm.P99Ms + f.P99Ms
		m.CeilingID = lbTrivialID + "+" + lbFsyncID
		m.P99Ratio = ratio(m.P99Ms, 2*q.CallCeilMs)
	}
	m.Lock = q
	m.Note = joinNoteIf("latencies: the pair (acquire + release, two durable writes); the calls' are in the acquire/release columns", walNote(w0, scrapeWAL(srvURL)))
	b.show(m)
	return []measurement{cm, m}, nil
}

// lbContendedStep runs 64 clients acquiring (with wait_ms) and at once
// releasing one resource, and checks that the grants never overlapped.
func (b *bench) lbContendedStep(ctx context.Context, srvURL string, attempt int) (measurement, error) {
	d := b.cfg.Duration
	addr := strings.TrimPrefix(srvURL, "http://")
	b.waitQuiet(ctx)
	type workerOut struct {
		grants   []lbGrant
		acq, rel *hdrhistogram.Histogram
		timeouts int64
		err      error
	}
	run := func(resource string, d time.Duration) ([]workerOut, time.Duration) {
		outs := make([]workerOut, lbContendClients)
		var wg sync.WaitGroup
		start := time.Now()
		end := start.Add(d)
		for w := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := &outs[w]
				o.acq, o.rel = newLatencyHist(), newLatencyHist()
				c := newLBClient(srvURL)
				defer c.close()
				holder := fmt.Sprintf("bench-c%d", w)
				for time.Now().Before(end) && ctx.Err() == nil {
					l, st, la, err := c.acquire(resource, holder, lbTTLMs, lbWaitMs)
					ack := time.Now().UnixNano()
					if err != nil {
						o.err = err
						return
					}
					o.acq.RecordValue(max(la.Microseconds(), 1))
					if st == 409 {
						o.timeouts++
						continue
					}
					g := lbGrant{Lock: l, AckNs: ack, RelSendNs: time.Now().UnixNano()}
					lr, err := c.release(l.ID)
					g.RelAckNs = time.Now().UnixNano()
					if err != nil {
						o.err = err
						return
					}
					o.rel.RecordValue(max(lr.Microseconds(), 1))
					o.grants = append(o.grants, g)
				}
			}()
		}
		wg.Wait()
		return outs, time.Since(start)
	}
	if b.cfg.Warmup > 0 {
		outs, _ := run(fmt.Sprintf("bench/lock/warm%d", attempt), b.cfg.Warmup)
		for _, o := range outs {
			if o.err != nil {
				return measurement{}, fmt.Errorf("contended warm-up: %w", o.err)
			}
		}
	}
	sse, err := lbOpenSSE(ctx, addr)
	if err != nil {
		return measurement{}, fmt.Errorf("contended: SSE: %w", err)
	}
	resource := fmt.Sprintf("bench/lock/hot%d", attempt)
	name := fmt.Sprintf("lock handovers, %d clients on one resource (wait_ms %d, release at once)", lbContendClients, lbWaitMs)
	b.progress("%s (fasthttp, %s)", name, d)
	stop, err := b.startProfile(lbContendedID)
	if err != nil {
		sse.close()
		return measurement{}, err
	}
	w0 := scrapeWAL(srvURL)
	rel0 := sse.count(lbReleased)
	s0 := sampleCPU()
	outs, el := run(resource, d)
	s1 := sampleCPU()
	stop()
	wn := walNote(w0, scrapeWAL(srvURL))
	var grants []lbGrant
	acqH, relH := newLatencyHist(), newLatencyHist()
	var timeouts int64
	var firstErr error
	for _, o := range outs {
		grants = append(grants, o.grants...)
		acqH.Merge(o.acq)
		relH.Merge(o.rel)
		timeouts += o.timeouts
		if firstErr == nil {
			firstErr = o.err
		}
	}
	sse.waitCount(ctx, lbReleased, rel0+int64(len(grants)), 0, 10*time.Second)
	events, reconnects, sseErr := sse.close()
	if firstErr != nil {
		return measurement{}, fmt.Errorf("%s: %w", name, firstErr)
	}
	lr := loadResult{Driver: "fasthttp", Clients: lbContendClients, Requests: int64(len(grants)), DurationSec: el.Seconds()}
	fillPercentiles(&lr, acqH)
	if lr.DurationSec > 0 {
		lr.ReqPerSec = float64(lr.Requests) / lr.DurationSec
	}
	m := fromLoad(lbContendedID, name, kindScenario, "handover", lr)
	m.Group = groupLocks
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	viol, note := lbCheckHandovers(grants, events, resource)
	q := &lbFigures{Grants: int64(len(grants)), Timeouts: timeouts, Violations: viol, SSEReconnects: reconnects,
		ReleaseP50Ms: float64(relH.ValueAtQuantile(50)) / 1000, ReleaseP99Ms: float64(relH.ValueAtQuantile(99)) / 1000}
	q.Verified = viol == 0 && sseErr == nil
	if sseErr != nil {
		m.Invalid = joinNoteIf(m.Invalid, "SSE: "+sseErr.Error())
	}
	if viol > 0 {
		m.Invalid = joinNoteIf(m.Invalid, fmt.Sprintf("%d overlap violations", viol))
	}
	if rt, ok := findMeasurement(b.rep.Measurements, lbRoundTripID); ok {
		m.compareWith(rt)
		q.VsRoundTrip = m.RateRatio
	}
	if p, ok := findMeasurement(b.rep.Measurements, lbPebble1ID); ok {
		q.VsPebble1 = ratio(m.Rate, p.Rate/2)
	}
	if p, ok := findMeasurement(b.rep.Measurements, lbPebble64ID); ok {
		q.VsPebble64 = ratio(m.Rate, p.Rate/2)
	}
	m.Lock = q
	if timeouts > 0 {
		note = joinNote(note, fmt.Sprintf("%d acquires answered 409 after wait_ms", timeouts))
	}
	m.Note = joinNoteIf(joinNote(note, "latencies: the acquire, time in line included; a handover is a release and the next acquire, two synced commits in series"), wn)
	b.show(m)
	return m, nil
}

// lbCreateResult is what lbCreate did.
type lbCreateResult struct {
	Locks    []lbLock
	Lat      *hdrhistogram.Histogram
	Elapsed  time.Duration
	TooLate  int64 // not created: the common expiry was too near
	FirstErr error
}

// lbCreate acquires n locks of fresh resources (prefix + index) from
// clients connections; ttl gives each request's ttl_ms from the time it
// is sent, or false to stop (the expiry is too near).
func lbCreate(ctx context.Context, base, prefix string, n, clients int, ttl func(now time.Time) (int64, bool)) lbCreateResult {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next atomic.Int64
		out  = lbCreateResult{Lat: newLatencyHist()}
	)
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newLBClient(base)
			defer c.close()
			h := newLatencyHist()
			var mine []lbLock
			var tooLate int64
			var err error
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				t, ok := ttl(time.Now())
				if !ok {
					tooLate++
					continue
				}
				var l lbLock
				var st int
				var lat time.Duration
				l, st, lat, err = c.acquire(prefix+strconv.FormatInt(i, 10), "bench-x", t, -1)
				if err == nil && st != 201 {
					err = fmt.Errorf("acquire of a fresh resource: status %d", st)
				}
				if err != nil {
					break
				}
				h.RecordValue(max(lat.Microseconds(), 1))
				mine = append(mine, l)
			}
			mu.Lock()
			out.Locks = append(out.Locks, mine...)
			out.Lat.Merge(h)
			out.TooLate += tooLate
			if out.FirstErr == nil && err != nil {
				out.FirstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.Elapsed = time.Since(start)
	if out.FirstErr == nil {
		out.FirstErr = ctx.Err()
	}
	return out
}

// lbReleaseAll releases locks from clients connections.
func lbReleaseAll(ctx context.Context, base string, locks []lbLock, clients int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newLBClient(base)
			defer c.close()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(locks)) {
					return
				}
				if _, err := c.release(locks[i].ID); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// lbCommonExpiry is when the step's locks expire, from the start of their
// creation: twice the time the pilot's rate says creation takes, plus a
// second, and at least 2 s.
func lbCommonExpiry(n int, pilotRate float64) time.Duration {
	if pilotRate <= 0 {
		return time.Minute
	}
	est := time.Duration(float64(n) / pilotRate * float64(time.Second))
	return max(2*est+time.Second, 2*time.Second)
}

// lbTTLUntil is the ttl_ms that makes a lock acquired at now expire at
// (or just after) at; false when that is under the minimum ttl plus a
// margin for the request's own latency.
func lbTTLUntil(at, now time.Time) (int64, bool) {
	left := at.Sub(now)
	const minLeft = 150 * time.Millisecond // API minimum 100 ms, plus margin
	if left < minLeft {
		return 0, false
	}
	return int64((left + time.Millisecond - 1) / time.Millisecond), true
}

// lbExpiryStep creates --lock-count locks with one common expiry (set
// from a pilot's creation rate) and measures how late each lock.expired
// event comes after its expires_at.
func (b *bench) lbExpiryStep(ctx context.Context, srvURL string, attempt int) ([]measurement, error) {
	n := b.cfg.LockCount
	addr := strings.TrimPrefix(srvURL, "http://")
	b.waitQuiet(ctx)
	sse, err := lbOpenSSE(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("expiry: SSE: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			sse.close()
		}
	}()

	// Pilot: the creation rate, with the SSE reader running as it will;
	// two halves, the rate from the second (the first warms up).
	pn := min(lbPilotMax, max(n/10, 2*lbCreateClients))
	b.progress("expiry: pilot of %d locks from %d connections (sets the common expiry)", pn, lbCreateClients)
	var pilotRate float64
	for half := 0; half < 2; half++ {
		pilot := lbCreate(ctx, srvURL, fmt.Sprintf("bench/lock/p%d-%d/", attempt, half), pn/2, lbCreateClients, func(time.Time) (int64, bool) { return lbTTLMs, true })
		if pilot.FirstErr != nil {
			return nil, fmt.Errorf("expiry pilot: %w", pilot.FirstErr)
		}
		pilotRate = float64(len(pilot.Locks)) / pilot.Elapsed.Seconds()
		if err := lbReleaseAll(ctx, srvURL, pilot.Locks, lbCreateClients); err != nil {
			return nil, fmt.Errorf("expiry pilot release: %w", err)
		}
	}

	after := lbCommonExpiry(n, pilotRate)
	name := fmt.Sprintf("create %d locks (1 resource each), common expiry, %d clients", n, lbCreateClients)
	b.progress("%s (pilot %.0f locks/s: expiry %s after the start)", name, pilotRate, after.Round(time.Millisecond))
	lag0, lagOK := lbScrapeLag(srvURL)
	w0 := scrapeWAL(srvURL)
	s0 := sampleCPU()
	start := time.Now()
	at := start.Add(after)
	cr := lbCreate(ctx, srvURL, fmt.Sprintf("bench/lock/x%d/", attempt), n, lbCreateClients, func(now time.Time) (int64, bool) { return lbTTLUntil(at, now) })
	createEnd := time.Now()
	s1 := sampleCPU()
	wn := walNote(w0, scrapeWAL(srvURL))
	if cr.FirstErr != nil {
		return nil, fmt.Errorf("%s: %w", name, cr.FirstErr)
	}
	clr := loadResult{Driver: "fasthttp", Clients: lbCreateClients, Requests: int64(len(cr.Locks)), DurationSec: cr.Elapsed.Seconds()}
	fillPercentiles(&clr, cr.Lat)
	if clr.DurationSec > 0 {
		clr.ReqPerSec = float64(clr.Requests) / clr.DurationSec
	}
	cm := fromLoad(lbCreateID(n), name, kindScenario, "lock", clr)
	cm.Group = groupLocks
	cm.OtherCores, cm.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	created := make(map[string]int64, len(cr.Locks))
	for _, l := range cr.Locks {
		created[l.ID] = l.ExpiresNs
	}
	cf := &lbFigures{Locks: int64(len(cr.Locks)), CreateRate: clr.ReqPerSec, PilotRate: pilotRate,
		CommonExpiryMs: float64(after) / 1e6, Verified: cr.TooLate == 0}
	if p, ok := findMeasurement(b.rep.Measurements, lbPebble64ID); ok {
		cm.compareWith(p)
	}
	cm.Lock = cf
	cm.Note = joinNoteIf(fmt.Sprintf("%.1fs; a pilot (2 × %d locks, released) at %.0f/s set the common expiry %s after the start (2 × the estimate + 1 s)", cr.Elapsed.Seconds(), pn/2, pilotRate, after.Round(time.Millisecond)), wn)
	if cr.TooLate > 0 {
		cm.Invalid = fmt.Sprintf("%d locks not created: creation ran into the common expiry", cr.TooLate)
	}
	b.show(cm)

	// Expiry: wait for every lock.expired (the stream resumes if lagged).
	b.progress("expiry of %d locks at %s (in %s)", len(cr.Locks), at.Format("15:04:05.000"), time.Until(at).Round(time.Millisecond))
	stop, err := b.startProfile(lbExpiryID(n))
	if err != nil {
		return nil, err
	}
	exp0 := sse.count(lbExpired)
	s0 = sampleCPU()
	w0 = scrapeWAL(srvURL)
	sse.waitCount(ctx, lbExpired, exp0+int64(len(cr.Locks)), time.Until(at)+time.Second, 10*time.Second)
	s1 = sampleCPU()
	stop()
	wn = walNote(w0, scrapeWAL(srvURL))
	lag1, lagOK1 := lbScrapeLag(srvURL)
	events, reconnects, sseErr := sse.close()
	closed = true
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := lbSummarizeExpiry(created, events)
	var lr loadResult
	fillPercentiles(&lr, sum.Lat)
	lr.Driver, lr.Clients, lr.Requests = "sse", 1, sum.Expired
	if sum.LastEventNs > sum.MinExpiresNs {
		lr.DurationSec = float64(sum.LastEventNs-sum.MinExpiresNs) / 1e9
		lr.ReqPerSec = float64(sum.Expired) / lr.DurationSec
	}
	ename := fmt.Sprintf("expiry of %d locks at once: lock.expired time − expires_at", len(cr.Locks))
	em := fromLoad(lbExpiryID(n), ename, kindScenario, "lock", lr)
	em.Group = groupLocks
	em.OtherCores, em.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	ef := &lbFigures{Locks: int64(len(cr.Locks)), Expired: sum.Expired, Missing: sum.Missing, Duplicates: sum.Duplicates,
		SpreadMs: float64(sum.MaxExpiresNs-sum.MinExpiresNs) / 1e6, MarginMs: float64(sum.MinExpiresNs-createEnd.UnixNano()) / 1e6,
		AllExpiredMs: lr.DurationSec * 1000, SSEReconnects: reconnects}
	if sum.Recv.TotalCount() > 0 {
		ef.ReceiptP50Ms = float64(sum.Recv.ValueAtQuantile(50)) / 1000
		ef.ReceiptP99Ms = float64(sum.Recv.ValueAtQuantile(99)) / 1000
	}
	if lagOK && lagOK1 {
		dh := lag1.sub(lag0)
		ef.MetricCount = int64(dh.Count)
		if dh.Count > 0 {
			ef.MetricP50Ms, ef.MetricP99Ms, ef.MetricMeanMs = dh.quantile(0.5)*1000, dh.quantile(0.99)*1000, dh.Sum/float64(dh.Count)*1000
		}
	}
	ef.Verified = sum.Missing == 0 && sum.Duplicates == 0 && sseErr == nil
	em.Lock = ef
	var inv []string
	if sseErr != nil {
		inv = append(inv, "SSE: "+sseErr.Error())
	}
	if sum.Missing > 0 {
		inv = append(inv, fmt.Sprintf("%d locks without a lock.expired event", sum.Missing))
	}
	if sum.Duplicates > 0 {
		inv = append(inv, fmt.Sprintf("%d locks expired twice", sum.Duplicates))
	}
	if ef.MarginMs < 0 {
		inv = append(inv, fmt.Sprintf("creation ended %s after the first expiry", fmtMs(-ef.MarginMs)))
	}
	if cr.TooLate > 0 {
		inv = append(inv, fmt.Sprintf("%d locks not created", cr.TooLate))
	}
	em.Invalid = strings.Join(inv, "; ")
	note := fmt.Sprintf("expires_at spread %s; creation ended %s before the first; all %d expired %s after the first expires_at; SSE receipt − expires_at p50 %s p99 %s",
		fmtMs(ef.SpreadMs), fmtMs(ef.MarginMs), sum.Expired, fmtMs(ef.AllExpiredMs), fmtMs(ef.ReceiptP50Ms), fmtMs(ef.ReceiptP99Ms))
	if ef.MetricCount > 0 {
		note = joinNote(note, fmt.Sprintf("%s: %d observations, p50 ≈ %s, p99 ≈ %s (bucket estimates), mean %s", lbLagMetric, ef.MetricCount, fmtMs(ef.MetricP50Ms), fmtMs(ef.MetricP99Ms), fmtMs(ef.MetricMeanMs)))
	} else if !lagOK || !lagOK1 {
		note = joinNote(note, lbLagMetric+" not found on /metrics")
	}
	if reconnects > 0 {
		note = joinNote(note, fmt.Sprintf("the SSE stream resumed %d times (lagged or cut; receipt times include the replay)", reconnects))
	}
	em.Note = joinNoteIf(note, wn)
	b.show(em)
	return []measurement{cm, em}, nil
}

// ---------------------------------------------------------------- budgets

// DESIGN.md states no lock budget: the 1-client calls get the durable-write
// budget (the pair twice it), the expiry API.md's target, and both
// invariants (no overlap, every lock expired once) must hold.
const lbBudgetNote = " [write budget applied to locks]"

var (
	lbBudgetAcquire = "locks: acquire, 1 client: p99"
	lbBudgetRelease = "locks: release, 1 client: p99"
	lbBudgetPair    = "locks: acquire+release round trip, 1 client: p99"
	lbBudgetOverlap = "locks: 64 clients on one resource: no overlap"
	lbBudgetExpiry  = "locks: expiry of many locks at once: p99 (lock.expired time − expires_at)"
	lbBudgetExpAll  = "locks: expiry: every lock expired exactly once"
)

// locksBudgetUses says whether locks budget b uses measurement id.
func locksBudgetUses(b budgetResult, id string) (uses, known bool) {
	switch {
	case b.Name == lbBudgetAcquire || b.Name == lbBudgetRelease || b.Name == lbBudgetPair:
		return id == lbRoundTripID || id == lbTrivialID || id == lbFsyncID, true
	case b.Name == lbBudgetOverlap:
		return id == lbContendedID, true
	case strings.HasPrefix(b.Name, "locks: expiry"): // the p99 budget names its lock count
		return strings.HasPrefix(id, "locks.expiry.") || strings.HasPrefix(id, "locks.create."), true
	}
	return false, false
}

// computeLocksBudgets checks the locks figures (none when the group did
// not run).
func computeLocksBudgets(ms []measurement, syncMode string) []budgetResult {
	if !hasGroup(ms, groupLocks) {
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
	rt, okR := findMeasurement(ms, lbRoundTripID)
	t, okT := findMeasurement(ms, lbTrivialID)
	f, okF := findMeasurement(ms, lbFsyncID)
	for _, k := range []struct {
		name  string
		times float64
		fig   func() float64
		what  string
	}{
		{lbBudgetAcquire, 1, func() float64 { return rt.Lock.AcquireP99Ms }, "one durable write"},
		{lbBudgetRelease, 1, func() float64 { return rt.Lock.ReleaseP99Ms }, "one durable write"},
		{lbBudgetPair, 2, func() float64 { return rt.P99Ms }, "two durable writes in series: twice the ceiling"},
	} {
		ceil := "trivial p99 + fsync p99"
		if k.times == 2 {
			ceil = "2 × (" + ceil + ")"
		}
		b := budgetResult{Name: k.name, FigureID: lbRoundTripID, Unit: "ms", Cmp: "<=", Limit: 1,
			Budget: fmt.Sprintf("p99 ≤ %s (ratio ≤ 1.00; %s)%s", ceil, k.what, lbBudgetNote)}
		if !okR || !okT || !okF || rt.Lock == nil {
			var miss []string
			for id, ok := range map[string]bool{lbRoundTripID: okR, lbTrivialID: okT, lbFsyncID: okF} {
				if !ok {
					miss = append(miss, id)
				}
			}
			sort.Strings(miss)
			b.Result, b.Reason = resultNotMeasured, "missing "+strings.Join(miss, ", ")
			out = append(out, b)
			continue
		}
		b.Figure, b.Ceiling = k.fig(), k.times*(t.P99Ms+f.P99Ms)
		b.CeilingDesc = fmt.Sprintf("trivial p99 %s + fsync p99 %s", fmtMs(t.P99Ms), fmtMs(f.P99Ms))
		if k.times == 2 {
			b.CeilingDesc = "2 × (" + b.CeilingDesc + ")"
		}
		b.evaluate(invalidOf(rt, t, f))
		out = append(out, b)
	}
	{
		b := budgetResult{Name: lbBudgetOverlap, FigureID: lbContendedID, Unit: "violations", Cmp: "<=", Limit: 0, Absolute: true,
			Budget: "0: fencing tokens strictly increase in grant order, each release before the next grant (clients' clocks and the lock.* SSE stream)"}
		if c, ok := findMeasurement(ms, lbContendedID); !ok || c.Lock == nil {
			b.Result, b.Reason = resultNotMeasured, "missing "+lbContendedID
		} else {
			b.Figure = float64(c.Lock.Violations)
			inv := ""
			if c.Lock.Violations == 0 {
				inv = invalidOf(c) // a violation is the figure, not a reason to distrust it
			}
			b.evaluate(inv)
		}
		out = append(out, b)
	}
	var em measurement
	okE := false
	for _, m := range ms {
		if strings.HasPrefix(m.ID, "locks.expiry.") && m.Lock != nil {
			em, okE = m, true
		}
	}
	{
		b := budgetResult{Name: lbBudgetExpiry, Unit: "ms", Cmp: "<=", Limit: lbExpiryTargetMs, Absolute: true,
			Budget: fmt.Sprintf("p99 ≤ %d ms (absolute) [API.md: \"target p99 100 ms\"]", lbExpiryTargetMs)}
		if !okE {
			b.Result, b.Reason = resultNotMeasured, "missing locks.expiry (--lock-count 0?)"
		} else {
			b.FigureID = em.ID
			b.Name = fmt.Sprintf("locks: expiry of %d locks at once: p99 (lock.expired time − expires_at)", em.Lock.Locks)
			b.Figure = em.P99Ms
			b.evaluate(em.Invalid)
		}
		out = append(out, b)
	}
	if okE {
		b := budgetResult{Name: lbBudgetExpAll, FigureID: em.ID, Unit: "lost", Cmp: "<=", Limit: 0, Absolute: true,
			Budget: "every created lock has exactly one lock.expired event"}
		b.Figure = float64(em.Lock.Missing + em.Lock.Duplicates)
		b.evaluate("")
		if b.Figure > 0 {
			b.Reason = fmt.Sprintf("%d missing, %d duplicated", em.Lock.Missing, em.Lock.Duplicates)
		}
		out = append(out, b)
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// ---------------------------------------------------------------- report

// formatLocks renders the locks table ("" when the group did not run).
func formatLocks(r benchReport) string {
	if !hasGroup(r.Measurements, groupLocks) {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\n-- locks: round trip, contended handovers, mass expiry (each step right after its ceilings) --\n")
	if c := r.Config.Locks; c != nil {
		fmt.Fprintf(&sb, "setup: %s; ttl_ms %d (steps 1-2), wait_ms %d, %d contending clients; %d locks of %d resource each created by %d clients for the expiry step; %gs per step, server --sync=%s\n",
			c.Client, c.TTLMs, c.WaitMs, c.ContendClients, c.LockCount, c.ResourcesPerLock, c.CreateClients, r.Config.DurationS, r.Config.Sync)
	}
	sb.WriteString("rate: pairs/s, handovers/s, locks/s (ceilings: their own unit); p50/p99/max: round trip: the pair; contended: the acquire (time in line included); create: the acquire; expiry: lock.expired time − expires_at\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tclients\trate\tp50\tp99\tmax\tdetails\tvs ceiling\tcpu\tother\tstatus")
	for _, m := range r.Measurements {
		if m.Group != groupLocks && m.ID != lbFsyncID && m.ID != lbPebble64ID {
			continue // the two shared ceilings are shown here too
		}
		det, vs := "-", "-"
		if q := m.Lock; q != nil {
			switch {
			case m.ID == lbRoundTripID:
				det = fmt.Sprintf("acquire p50 %s p99 %s; release p50 %s p99 %s", fmtMs(q.AcquireP50Ms), fmtMs(q.AcquireP99Ms), fmtMs(q.ReleaseP50Ms), fmtMs(q.ReleaseP99Ms))
				if q.CallCeilMs > 0 {
					vs = fmt.Sprintf("p99: acquire %s×, release %s× trivial+fsync p99 (%s); pair %s× twice it", fmtRatio(q.AcquireP99Ms/q.CallCeilMs), fmtRatio(q.ReleaseP99Ms/q.CallCeilMs), fmtMs(q.CallCeilMs), fmtRatio(m.P99Ratio))
				}
			case m.ID == lbContendedID:
				det = fmt.Sprintf("%d grants, %d timeouts, %d violations; release p99 %s", q.Grants, q.Timeouts, q.Violations, fmtMs(q.ReleaseP99Ms))
				vs = fmt.Sprintf("%s× 1-client pairs/s; %s× Pebble w1/2; %s× Pebble w64/2", fmtRatio(q.VsRoundTrip), fmtRatio(q.VsPebble1), fmtRatio(q.VsPebble64))
			case strings.HasPrefix(m.ID, "locks.create."):
				det = fmt.Sprintf("pilot %s/s; expiry %s after start", fmtRate(q.PilotRate), fmtMs(q.CommonExpiryMs))
				if m.CeilingID != "" {
					vs = fmtRatio(m.RateRatio) + "× " + m.CeilingID
				}
			case strings.HasPrefix(m.ID, "locks.expiry."):
				det = fmt.Sprintf("%d/%d expired, all in %s; receipt p99 %s; metric p99 ≈ %s", q.Expired, q.Locks, fmtMs(q.AllExpiredMs), fmtMs(q.ReceiptP99Ms), fmtMs(q.MetricP99Ms))
				vs = fmt.Sprintf("p99 %s× the %d ms target", fmtRatio(m.P99Ms/lbExpiryTargetMs), lbExpiryTargetMs)
			}
		}
		status := "ok"
		if m.Invalid != "" {
			status = "INVALID: " + m.Invalid
		}
		if m.noisy() {
			status = "NOISY, " + status
		}
		fmt.Fprintf(tw, "%s\t%d\t%s %s/s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n",
			m.Name, m.Clients, fmtRate(m.Rate), m.Unit, fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.MaxMs), det, vs, m.SelfCores, m.OtherCores, status)
	}
	tw.Flush()
	for _, m := range r.Measurements {
		if m.Group == groupLocks && m.Note != "" {
			fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
		}
	}
	return sb.String()
}
