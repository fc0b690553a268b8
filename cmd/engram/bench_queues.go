package main

// The queues group of `engram bench`: publish (single 300 B messages with
// wrk at 1 and 16 clients, and batches of 100 at 16 clients), lease+ack
// (consumer loops of lease max=1 and max=10, then ack of the receipts, at
// 1 and 16 consumers, on a small backlog refilled between timed rounds),
// and the same lease+ack at 16 consumers on a large backlog (default 1M
// messages, --queue-backlog), each right after the same-run ceiling it is
// compared with: the trivial Fiber handler at the same client count, raw
// fsync, raw Pebble synced commits at 64 writers, raw Pebble 100-record
// batches. After every step the server's counts (GET /v1/queues/{topic})
// must match what the clients were acknowledged: none lost, none extra.
// DESIGN.md states no queue budget: the report applies the durable-write
// budgets to publish, and says so.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

const (
	groupQueues = "queues"

	qbVisibilityMs  = 300000 // leases outlive any step: no expiry, no redelivery
	qbRound         = 20000  // small backlog: ready messages at the start of each timed round, at most
	qbPrefillBatch  = 1000   // messages per publish request when filling a backlog
	qbPrefillConns  = 4      // concurrent publishers when filling a backlog
	qbPubBatch      = 100    // messages per request of the batch-publish scenario
	qbBatchClients  = 16     // clients of the batch-publish scenario
	qbBacklogConsum = 16     // consumers of the large-backlog scenario
	qbNearOne       = 0.90   // large/small backlog ratio the report calls "near 1"
)

// qbClients are the publisher and consumer counts; qbMaxes the lease sizes.
var (
	qbClients = []int{1, 16}
	qbMaxes   = []int{1, 10}
)

// Measurement ids of the queues group.
func qbCeilHTTPID(c int) string { return fmt.Sprintf("ceiling.trivial_post.queues.c%d", c) }
func qbPublishID(c int) string  { return fmt.Sprintf("queues.publish.c%d", c) }
func qbLeaseAckID(m, c int) string {
	return fmt.Sprintf("queues.lease_ack.m%d.c%d", m, c)
}
func qbBacklogID(m, c int) string {
	return fmt.Sprintf("queues.backlog.lease_ack.m%d.c%d", m, c)
}

const (
	qbPebbleSetsID  = "ceiling.pebble_sets.w64"
	qbFsyncID       = "ceiling.fsync"
	qbBatchCeilID   = "ceiling.pebble_batches.queues.b100.w16"
	qbBatchPubID    = "queues.publish_batch100.c16"
	qbPrefillIDBase = "queues.prefill.b1000.c4"
)

// qbFigures are the queue-specific figures of a queues measurement.
type qbFigures struct {
	Topic         string  `json:"topic"`
	PerRequest    int     `json:"messages_per_request,omitempty"` // publish
	LeaseMax      int     `json:"lease_max,omitempty"`            // lease+ack
	BacklogStart  int64   `json:"backlog_start,omitempty"`        // ready messages when the timed part began
	Rounds        int     `json:"rounds,omitempty"`
	Cycles        int64   `json:"cycles,omitempty"` // lease+ack pairs
	ReqPerS       float64 `json:"req_per_s"`
	LeaseP50Ms    float64 `json:"lease_p50_ms,omitempty"`
	LeaseP99Ms    float64 `json:"lease_p99_ms,omitempty"`
	AckP50Ms      float64 `json:"ack_p50_ms,omitempty"`
	AckP99Ms      float64 `json:"ack_p99_ms,omitempty"`
	EmptyLeases   int64   `json:"empty_leases,omitempty"`
	Stale         int64   `json:"stale,omitempty"`
	Redelivered   int64   `json:"redelivered,omitempty"`
	VsTrivialReq  float64 `json:"vs_trivial_req,omitempty"` // req/s ÷ trivial req/s at the same clients
	VsPebbleSets  float64 `json:"vs_pebble_sets,omitempty"` // msgs/s ÷ Pebble synced commits/s (64 writers)
	Acked         int64   `json:"acked_by_clients"`         // publish: messages acknowledged (201); lease+ack: acked
	ServerCounted int64   `json:"server_counted"`           // the same, from the server's counts
	Verified      bool    `json:"verified"`
	PrefillS      float64 `json:"prefill_s,omitempty"` // untimed refills of the rounds
}

// qbReportConfig is the queues group's setup in the report.
type qbReportConfig struct {
	PayloadBytes   int    `json:"payload_bytes"`
	PublishPath    string `json:"publish_path"`
	LeaseBody      string `json:"lease_body"`
	ConsumerClient string `json:"consumer_client"`
	RoundMessages  int    `json:"small_backlog_round_messages"`
	Backlog        int    `json:"backlog"`
	PrefillBatch   int    `json:"prefill_batch"`
	PrefillClients int    `json:"prefill_clients"`
}

const qbConsumerClient = "fasthttp closed loop in the bench process: per consumer one fasthttp.HostClient (1 connection) doing POST lease, then POST ack of its receipts; lease and ack latencies in HdrHistograms"

func (b *bench) qbConfig() *qbReportConfig {
	if b.rep.Config.Queues == nil {
		b.rep.Config.Queues = &qbReportConfig{
			PayloadBytes: recordSize, PublishPath: "/v1/queues/{topic}/messages",
			LeaseBody: string(qbLeaseBody(10)), ConsumerClient: qbConsumerClient, RoundMessages: qbRound,
			Backlog: b.cfg.QueueBacklog, PrefillBatch: qbPrefillBatch, PrefillClients: qbPrefillConns,
		}
	}
	return b.rep.Config.Queues
}

// ---------------------------------------------------------------- bodies

// qbMessageJSON is one message of about size bytes: {"payload":"…"}.
func qbMessageJSON(size int) []byte { return sbValueJSON(size) }

// qbBatchJSON is a publish body of n messages of about size bytes each.
func qbBatchJSON(n, size int) []byte {
	msg := qbMessageJSON(size)
	b := make([]byte, 0, n*(len(msg)+1)+16)
	b = append(b, `{"messages":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, msg...)
	}
	return append(b, "]}"...)
}

// qbLeaseBody is the consumers' lease request: no long-poll wait.
func qbLeaseBody(leaseMax int) []byte {
	return fmt.Appendf(nil, `{"max":%d,"visibility_ms":%d}`, leaseMax, qbVisibilityMs)
}

// qbAckBody appends {"receipts":[...]} to dst.
func qbAckBody(dst []byte, receipts [][]byte) []byte {
	dst = append(dst, `{"receipts":[`...)
	for i, r := range receipts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, r...)
		dst = append(dst, '"')
	}
	return append(dst, "]}"...)
}

var (
	qbReceiptKey = []byte(`"receipt":"`)
	qbAttemptKey = []byte(`"attempt":`)
)

// qbParseLease picks the receipts (appended to dst, aliasing body) and
// the number of redeliveries (attempt > 1) out of a lease answer. It scans
// rather than decodes, to keep the client's CPU off the server's cores;
// it relies on the bench's payloads being plain strings (lorem text) that
// hold neither key, and on receipts needing no JSON escapes.
func qbParseLease(dst [][]byte, body []byte) ([][]byte, int, error) {
	if !bytes.HasPrefix(body, []byte(`{"messages":[`)) {
		return dst, 0, fmt.Errorf("lease answer: %.200s", body)
	}
	redelivered := 0
	for rest := body; ; {
		i := bytes.Index(rest, qbAttemptKey)
		if i < 0 {
			break
		}
		rest = rest[i+len(qbAttemptKey):]
		if len(rest) < 2 || rest[0] < '0' || rest[0] > '9' {
			return dst, 0, fmt.Errorf("lease answer: bad attempt in %.200s", body)
		}
		if rest[0] != '1' || rest[1] != ',' {
			redelivered++
		}
	}
	for rest := body; ; {
		i := bytes.Index(rest, qbReceiptKey)
		if i < 0 {
			break
		}
		rest = rest[i+len(qbReceiptKey):]
		j := bytes.IndexByte(rest, '"')
		if j <= 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
			return dst, 0, fmt.Errorf("lease answer: bad receipt in %.200s", body)
		}
		dst = append(dst, rest[:j])
		rest = rest[j+1:]
	}
	return dst, redelivered, nil
}

// qbAckAnswer is the answer to an ack.
type qbAckAnswer struct {
	Acked int               `json:"acked"`
	Stale []json.RawMessage `json:"stale"`
}

// qbStats is GET /v1/queues/{topic}.
type qbStats struct {
	Ready   int64 `json:"ready"`
	Leased  int64 `json:"leased"`
	Delayed int64 `json:"delayed"`
	Dead    int64 `json:"dead"`
}

func qbGetStats(base, topic string) (qbStats, error) {
	url := base + "/v1/queues/" + topic
	status, body, err := doOnce(url, "GET", nil)
	if err != nil {
		return qbStats{}, err
	}
	if status != 200 {
		return qbStats{}, fmt.Errorf("GET %s: status %d: %.200s", url, status, body)
	}
	var s qbStats
	if err := json.Unmarshal(body, &s); err != nil {
		return qbStats{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return s, nil
}

// ---------------------------------------------------------------- checks

// qbPublishCheck compares the growth of a topic's ready count with the
// messages acknowledged (201) to the publishers: wrk stops with up to
// inflight messages sent but not counted, which the server may still
// have committed.
func qbPublishCheck(grown, acked, inflight int64) (note, invalid string) {
	note = fmt.Sprintf("server: %d messages added, %d acknowledged", grown, acked)
	switch {
	case grown < acked:
		invalid = fmt.Sprintf("%d acknowledged messages missing from the topic", acked-grown)
	case grown > acked+inflight:
		invalid = fmt.Sprintf("%d more messages in the topic than sent", grown-acked-inflight)
	}
	return note, invalid
}

// qbConsumeCheck compares a lease+ack step's client counts with the
// server's: the ready count must have dropped by exactly the messages
// acked (refills added back), nothing may stay leased or go dead, no
// receipt may be stale, no message may come twice.
func qbConsumeCheck(before, after qbStats, refilled int64, r qbConsumeResult) (note, invalid string) {
	dropped := before.Ready + refilled - after.Ready
	note = fmt.Sprintf("server: ready %d→%d (+%d refilled), %d removed; clients: %d leased, %d acked", before.Ready, after.Ready, refilled, dropped, r.Leased, r.Acked)
	var bad []string
	if dropped != r.Acked {
		bad = append(bad, fmt.Sprintf("server removed %d messages, clients acked %d", dropped, r.Acked))
	}
	if r.Leased != r.Acked {
		bad = append(bad, fmt.Sprintf("%d leased but %d acked", r.Leased, r.Acked))
	}
	if after.Leased != before.Leased {
		bad = append(bad, fmt.Sprintf("leased count %d→%d", before.Leased, after.Leased))
	}
	if after.Dead != before.Dead || after.Delayed != before.Delayed {
		bad = append(bad, fmt.Sprintf("dead %d→%d, delayed %d→%d", before.Dead, after.Dead, before.Delayed, after.Delayed))
	}
	if r.Stale > 0 {
		bad = append(bad, fmt.Sprintf("%d stale receipts", r.Stale))
	}
	if r.Redelivered > 0 {
		bad = append(bad, fmt.Sprintf("%d redeliveries", r.Redelivered))
	}
	return note, strings.Join(bad, "; ")
}

// ---------------------------------------------------------------- publish helpers

// qbFill publishes n messages to topic in batches of qbPrefillBatch from
// qbPrefillConns connections; it returns the per-request latencies.
func qbFill(ctx context.Context, base, topic string, n int64) (loadResult, error) {
	full := qbBatchJSON(qbPrefillBatch, recordSize)
	var next atomic.Int64
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    = newLatencyHist()
		firstErr error
		sent     atomic.Int64
	)
	url := base + "/v1/queues/" + topic + "/messages"
	start := time.Now()
	for w := 0; w < qbPrefillConns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(base, "http://"), MaxConns: 1, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
			defer hc.CloseIdleConnections()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			h := newLatencyHist()
			defer func() { mu.Lock(); total.Merge(h); mu.Unlock() }()
			for ctx.Err() == nil {
				lo := next.Add(qbPrefillBatch) - qbPrefillBatch
				if lo >= n {
					return
				}
				k := min(n-lo, qbPrefillBatch)
				body := full
				if k < qbPrefillBatch {
					body = qbBatchJSON(int(k), recordSize)
				}
				req.Reset()
				req.SetRequestURI(url)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.SetBodyRaw(body)
				t0 := time.Now()
				err := hc.Do(req, resp)
				if err == nil && resp.StatusCode() != 201 {
					err = fmt.Errorf("POST %s: status %d: %.200s", url, resp.StatusCode(), resp.Body())
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				h.RecordValue(max(time.Since(t0).Microseconds(), 1))
				sent.Add(k)
			}
		}()
	}
	wg.Wait()
	r := loadResult{Driver: "fasthttp", Clients: qbPrefillConns, Requests: sent.Load(), DurationSec: time.Since(start).Seconds()}
	fillPercentiles(&r, total)
	if r.DurationSec > 0 {
		r.ReqPerSec = float64(r.Requests) / r.DurationSec
	}
	if firstErr != nil {
		return r, firstErr
	}
	return r, ctx.Err()
}

// qbTopUp publishes until topic holds target ready messages; it returns
// how many it published.
func qbTopUp(ctx context.Context, base, topic string, target int64) (int64, error) {
	st, err := qbGetStats(base, topic)
	if err != nil {
		return 0, err
	}
	if st.Ready >= target {
		return 0, nil
	}
	r, err := qbFill(ctx, base, topic, target-st.Ready)
	return r.Requests, err
}

// ---------------------------------------------------------------- consumers

// qbConsumeResult is what consumer loops did.
type qbConsumeResult struct {
	Cycles, Leased, Acked, Empty, Stale, Redelivered, Errors int64
	FirstErr                                                 string
	Elapsed                                                  time.Duration
	Lease, Ack                                               *hdrhistogram.Histogram
	Drained                                                  bool // a consumer found no ready message
}

func newQBConsumeResult() qbConsumeResult {
	return qbConsumeResult{Lease: newLatencyHist(), Ack: newLatencyHist()}
}

// add merges o into r.
func (r *qbConsumeResult) add(o qbConsumeResult) {
	r.Cycles += o.Cycles
	r.Leased += o.Leased
	r.Acked += o.Acked
	r.Empty += o.Empty
	r.Stale += o.Stale
	r.Redelivered += o.Redelivered
	r.Errors += o.Errors
	if r.FirstErr == "" {
		r.FirstErr = o.FirstErr
	}
	r.Elapsed += o.Elapsed
	r.Lease.Merge(o.Lease)
	r.Ack.Merge(o.Ack)
	r.Drained = r.Drained || o.Drained
}

// qbConsume runs `consumers` loops of lease (up to max) then ack of the
// receipts, for at most d: a loop starts no cycle after d, and every loop
// stops after its cycle once any loop got an empty lease (the topic is
// drained). Every leased message is acked before its loop returns.
func qbConsume(ctx context.Context, base, topic string, consumers, leaseMax int, d time.Duration) qbConsumeResult {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		drained atomic.Bool
		out     = newQBConsumeResult()
	)
	addr := strings.TrimPrefix(base, "http://")
	leaseURL := base + "/v1/queues/" + topic + "/lease"
	ackURL := base + "/v1/queues/" + topic + "/ack"
	leaseBody := qbLeaseBody(leaseMax)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; i < consumers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newQBConsumeResult()
			defer func() {
				mu.Lock()
				out.add(r)
				mu.Unlock()
			}()
			fail := func(err error) {
				r.Errors++
				if r.FirstErr == "" {
					r.FirstErr = err.Error()
				}
				time.Sleep(time.Millisecond)
			}
			hc := &fasthttp.HostClient{Addr: addr, MaxConns: 1, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxResponseBodySize: 64 << 20}
			defer hc.CloseIdleConnections()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var receipts [][]byte
			var ackBody []byte
			for ctx.Err() == nil && !drained.Load() && time.Now().Before(deadline) && r.Errors < 100 {
				req.Reset()
				req.SetRequestURI(leaseURL)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.SetBodyRaw(leaseBody)
				t0 := time.Now()
				err := hc.Do(req, resp)
				lat := time.Since(t0)
				if err == nil && resp.StatusCode() != 200 {
					err = fmt.Errorf("lease: status %d: %.200s", resp.StatusCode(), resp.Body())
				}
				if err != nil {
					fail(err)
					continue
				}
				r.Lease.RecordValue(max(lat.Microseconds(), 1))
				var redelivered int
				receipts, redelivered, err = qbParseLease(receipts[:0], resp.Body())
				if err != nil {
					fail(err)
					continue
				}
				if len(receipts) == 0 {
					r.Empty++
					drained.Store(true)
					break
				}
				r.Leased += int64(len(receipts))
				r.Redelivered += int64(redelivered)
				ackBody = qbAckBody(ackBody[:0], receipts) // receipts alias resp's body: build before reuse
				// Ack until it answers: a loop never leaves leased messages behind.
				for try := 0; ; try++ {
					req.Reset()
					req.SetRequestURI(ackURL)
					req.Header.SetMethod("POST")
					req.Header.SetContentType("application/json")
					req.SetBodyRaw(ackBody)
					t1 := time.Now()
					err = hc.Do(req, resp)
					lat = time.Since(t1)
					if err == nil && resp.StatusCode() != 200 {
						err = fmt.Errorf("ack: status %d: %.200s", resp.StatusCode(), resp.Body())
					}
					var a qbAckAnswer
					if err == nil {
						if err = json.Unmarshal(resp.Body(), &a); err != nil {
							err = fmt.Errorf("ack answer: %w: %.200s", err, resp.Body())
						}
					}
					if err != nil {
						fail(err)
						if try < 10 && ctx.Err() == nil {
							continue
						}
						break
					}
					r.Ack.RecordValue(max(lat.Microseconds(), 1))
					r.Acked += int64(a.Acked)
					r.Stale += int64(len(a.Stale))
					r.Cycles++
					break
				}
			}
		}()
	}
	wg.Wait()
	out.Elapsed = time.Since(start)
	out.Drained = drained.Load()
	return out
}

// ---------------------------------------------------------------- steps

// queuesHTTP runs the queues group on the in-process server.
func (b *bench) queuesHTTP(ctx context.Context, srvURL, trivURL string) error {
	b.qbConfig()
	d := b.cfg.Duration
	msg := qbMessageJSON(recordSize)
	// Preflight: publish, lease, ack, stats.
	const pre = "bench-q-preflight"
	if err := expectStatus(srvURL+"/v1/queues/"+pre+"/messages", "POST", msg, 201); err != nil {
		return fmt.Errorf("queues preflight: %w", err)
	}
	if r := qbConsume(ctx, srvURL, pre, 1, 10, 5*time.Second); r.Acked != 1 || r.Errors > 0 {
		return fmt.Errorf("queues preflight: lease+ack of one message: acked %d, errors %d: %s", r.Acked, r.Errors, r.FirstErr)
	}
	if st, err := qbGetStats(srvURL, pre); err != nil || st != (qbStats{}) {
		return fmt.Errorf("queues preflight: stats after ack %+v (%v), want all zero", st, err)
	}

	// The durable-write ceilings, unless the disk group measured them.
	if _, ok := findMeasurement(b.rep.Measurements, qbFsyncID); !ok {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: fsync (%s)", d), func() (measurement, error) {
				return ceilingFsync(ctx, b.dataDir, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("fsync ceiling: %w", err)
		}
	}
	if _, ok := findMeasurement(b.rep.Measurements, qbPebbleSetsID); !ok {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: Pebble Set+Sync, %d goroutines (%s)", pebbleW, d), func() (measurement, error) {
				return ceilingPebbleSets(ctx, b.dataDir, pebbleW, d)
			})
			return []measurement{m}, err
		}); err != nil {
			return fmt.Errorf("pebble ceiling: %w", err)
		}
	}

	// Per client count: the trivial ceiling, publish, then lease+ack.
	for _, c := range qbClients {
		if err := b.measure(ctx, func() ([]measurement, error) { return b.qbPublishStep(ctx, srvURL, trivURL, c, msg) }); err != nil {
			return err
		}
		for _, m := range qbMaxes {
			if err := b.measure(ctx, func() ([]measurement, error) {
				r, err := b.qbLeaseAckStep(ctx, srvURL, fmt.Sprintf("bench-q-m%d-c%d", m, c), c, m, 0, qbLeaseAckID(m, c))
				if err != nil {
					return nil, err
				}
				b.show(r)
				return []measurement{r}, nil
			}); err != nil {
				return err
			}
		}
	}

	// Batch publish of 100, right after Pebble 100-record batches.
	if err := b.measure(ctx, func() ([]measurement, error) { return b.qbBatchStep(ctx, srvURL) }); err != nil {
		return err
	}

	// Lease+ack at 16 consumers on a large backlog.
	if b.cfg.QueueBacklog > 0 {
		if err := b.qbBacklogSteps(ctx, srvURL); err != nil {
			return err
		}
	}
	return nil
}

// qbPublishStep measures the trivial handler and single-message publish
// at c clients (the run's driver: wrk when installed).
func (b *bench) qbPublishStep(ctx context.Context, srvURL, trivURL string, c int, msg []byte) ([]measurement, error) {
	d := b.cfg.Duration
	cm, _, err := b.sbHTTPRun(ctx, loadSpec{URL: trivURL, Method: "POST", Body: unitJSON("bench-c1", "a1", recordSize), Clients: c, Duration: d},
		sbPaths{Format: "/v1/workunits"}, qbCeilHTTPID(c), fmt.Sprintf("ceiling: trivial Fiber POST (decode, 201), %d client(s), queues", c), kindCeiling)
	if err != nil {
		return nil, err
	}
	cm.Group = groupQueues
	b.show(cm)
	topic := fmt.Sprintf("bench-q-pub-c%d", c)
	pm, err := b.qbPublishRun(ctx, srvURL, topic, msg, 1, c, qbPublishID(c),
		fmt.Sprintf("publish POST %d B message, %d client(s)", len(msg), c))
	if err != nil {
		return nil, err
	}
	pm.compareWith(cm)
	b.qbVsPebble(&pm)
	b.show(pm)
	return []measurement{cm, pm}, nil
}

// qbPublishRun publishes body (perReq messages) to topic with the run's
// driver and checks the topic's growth.
func (b *bench) qbPublishRun(ctx context.Context, srvURL, topic string, body []byte, perReq, c int, id, name string) (measurement, error) {
	st0, err := qbGetStats(srvURL, topic)
	if err != nil {
		return measurement{}, err
	}
	m, warm, err := b.sbHTTPRun(ctx, loadSpec{URL: srvURL, Method: "POST", Body: body, Clients: c, Duration: b.cfg.Duration},
		sbPaths{Format: "/v1/queues/" + topic + "/messages"}, id, name, kindScenario)
	if err != nil {
		return measurement{}, err
	}
	st1, err := qbGetStats(srvURL, topic)
	if err != nil {
		return measurement{}, err
	}
	m.Group, m.Unit = groupQueues, "msg"
	reqRate := m.Rate
	m.Ops *= int64(perReq)
	m.Rate *= float64(perReq)
	acked := (warm + m.Ops/int64(perReq) - m.Non2xx) * int64(perReq)
	note, inv := qbPublishCheck(st1.Ready-st0.Ready, acked, int64(c*perReq))
	m.Note = joinNote(note+" (warm-up included)", m.Note)
	if perReq > 1 {
		m.Note = joinNote(m.Note, "latencies are per request")
	}
	m.Invalid = joinNoteIf(m.Invalid, inv)
	m.Queue = &qbFigures{Topic: topic, PerRequest: perReq, ReqPerS: reqRate, Acked: acked, ServerCounted: st1.Ready - st0.Ready, Verified: inv == ""}
	return m, nil
}

// qbBatchStep measures Pebble 100-record batches at 16 goroutines, then
// batch publish of 100 messages at 16 clients.
func (b *bench) qbBatchStep(ctx context.Context, srvURL string) ([]measurement, error) {
	d := b.cfg.Duration
	cm, err := b.ceilingStep(ctx, fmt.Sprintf("ceiling: Pebble %d-record batches + Sync, %d goroutines (%s)", qbPubBatch, qbBatchClients, d), func() (measurement, error) {
		m, err := ceilingPebbleBatches(ctx, b.dataDir, qbBatchClients, qbPubBatch, d)
		m.ID, m.Group = qbBatchCeilID, groupQueues
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("pebble batch ceiling: %w", err)
	}
	pm, err := b.qbPublishRun(ctx, srvURL, "bench-q-batch", qbBatchJSON(qbPubBatch, recordSize), qbPubBatch, qbBatchClients, qbBatchPubID,
		fmt.Sprintf("publish batch of %d messages (%d B each), %d clients", qbPubBatch, recordSize, qbBatchClients))
	if err != nil {
		return nil, err
	}
	pm.compareWith(cm)
	b.qbVsPebble(&pm)
	b.show(pm)
	return []measurement{cm, pm}, nil
}

// qbVsPebble records m's msgs/s against the Pebble synced-commit ceiling.
func (b *bench) qbVsPebble(m *measurement) {
	if p, ok := findMeasurement(b.rep.Measurements, qbPebbleSetsID); ok && m.Queue != nil {
		m.Queue.VsPebbleSets = ratio(m.Rate, p.Rate)
	}
}

// qbLeaseAckStep measures c consumers leasing up to max and acking. With
// backlog 0 the topic holds at most qbRound ready messages: timed rounds
// drain it, untimed refills put qbRound back, until --duration of drain
// time. With a backlog the topic is filled to it first (untimed) and one
// round runs for --duration (or until drained).
func (b *bench) qbLeaseAckStep(ctx context.Context, srvURL, topic string, c, leaseMax int, backlog int64, id string) (measurement, error) {
	d := b.cfg.Duration
	round := int64(qbRound)
	if backlog > 0 {
		round = backlog
	}
	what := fmt.Sprintf("at most %d ready, refilled between timed rounds", round)
	if backlog > 0 {
		what = fmt.Sprintf("backlog of %d", backlog)
	}
	name := fmt.Sprintf("lease max=%d + ack, %d consumer(s), %s", leaseMax, c, what)
	b.waitQuiet(ctx)
	if b.cfg.Warmup > 0 {
		if _, err := qbTopUp(ctx, srvURL, topic, min(round, qbRound)); err != nil {
			return measurement{}, fmt.Errorf("%s: warm-up fill: %w", name, err)
		}
		if w := qbConsume(ctx, srvURL, topic, c, leaseMax, b.cfg.Warmup); w.Errors > 0 {
			return measurement{}, fmt.Errorf("%s: warm-up: %d errors, first: %s", name, w.Errors, w.FirstErr)
		}
	}
	if _, err := qbTopUp(ctx, srvURL, topic, round); err != nil {
		return measurement{}, fmt.Errorf("%s: fill: %w", name, err)
	}
	st0, err := qbGetStats(srvURL, topic)
	if err != nil {
		return measurement{}, err
	}
	b.progress("%s (fasthttp lease→ack loops, %s)", name, d)
	stop, err := b.startProfile(id)
	if err != nil {
		return measurement{}, err
	}
	w0 := scrapeWAL(srvURL)
	s0 := sampleCPU()
	total := newQBConsumeResult()
	var refilled int64
	var refillTime time.Duration
	rounds := 0
	for total.Elapsed < d && ctx.Err() == nil {
		if rounds > 0 {
			if backlog > 0 {
				break // one round on the backlog
			}
			t := time.Now()
			n, err := qbTopUp(ctx, srvURL, topic, round)
			refillTime += time.Since(t)
			refilled += n
			if err != nil {
				stop()
				return measurement{}, fmt.Errorf("%s: refill: %w", name, err)
			}
		}
		r := qbConsume(ctx, srvURL, topic, c, leaseMax, d-total.Elapsed)
		total.add(r)
		rounds++
		if r.Errors > 0 || r.Acked == 0 {
			break
		}
	}
	s1 := sampleCPU()
	stop()
	wn := walNote(w0, scrapeWAL(srvURL))
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}
	st1, err := qbGetStats(srvURL, topic)
	if err != nil {
		return measurement{}, err
	}
	m := qbConsumeMeasurement(id, name, c, total)
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	note, inv := qbConsumeCheck(st0, st1, refilled, total)
	m.Invalid = joinNoteIf(m.Invalid, inv)
	q := m.Queue
	q.Topic, q.LeaseMax, q.BacklogStart, q.Rounds, q.PrefillS = topic, leaseMax, st0.Ready, rounds, refillTime.Seconds()
	q.ServerCounted, q.Verified = st0.Ready+refilled-st1.Ready, inv == ""
	if t, ok := findMeasurement(b.rep.Measurements, qbCeilHTTPID(c)); ok {
		q.VsTrivialReq = ratio(q.ReqPerS, t.Rate)
	}
	b.qbVsPebble(&m)
	if backlog == 0 {
		if p, ok := findMeasurement(b.rep.Measurements, qbPebbleSetsID); ok {
			m.compareWith(p)
		}
	}
	m.Note = joinNote(note, fmt.Sprintf("%d round(s), %.1fs of untimed refills", rounds, q.PrefillS))
	if backlog > 0 && total.Drained {
		m.Note = joinNote(m.Note, "the backlog ran out before the end")
	}
	m.Note = joinNote(m.Note, wn)
	return m, nil
}

// qbConsumeMeasurement turns consumer loops' results into a measurement:
// Rate counts messages acked; the latencies are the lease call's.
func qbConsumeMeasurement(id, name string, c int, r qbConsumeResult) measurement {
	var lr loadResult
	fillPercentiles(&lr, r.Lease)
	lr.Driver, lr.Clients, lr.Requests, lr.DurationSec = "fasthttp", c, r.Acked, r.Elapsed.Seconds()
	lr.SocketErrors = r.Errors
	if r.FirstErr != "" && r.Errors > 0 {
		lr.FirstError = r.FirstErr
	}
	if lr.DurationSec > 0 {
		lr.ReqPerSec = float64(r.Acked) / lr.DurationSec
	}
	m := fromLoad(id, name, kindScenario, "msg", lr)
	m.Group = groupQueues
	q := &qbFigures{Cycles: r.Cycles, EmptyLeases: r.Empty, Stale: r.Stale, Redelivered: r.Redelivered, Acked: r.Acked,
		LeaseP50Ms: m.P50Ms, LeaseP99Ms: m.P99Ms}
	if r.Ack.TotalCount() > 0 {
		q.AckP50Ms = float64(r.Ack.ValueAtQuantile(50)) / 1000
		q.AckP99Ms = float64(r.Ack.ValueAtQuantile(99)) / 1000
	}
	if lr.DurationSec > 0 {
		q.ReqPerS = float64(r.Lease.TotalCount()+r.Ack.TotalCount()) / lr.DurationSec
	}
	m.Queue = q
	return m
}

// qbBacklogSteps fills one topic with --queue-backlog messages (timed:
// the prefill row) and measures lease+ack at 16 consumers on it, for
// max 10 and 1, each compared with the same step on the small backlog.
func (b *bench) qbBacklogSteps(ctx context.Context, srvURL string) error {
	n := int64(b.cfg.QueueBacklog)
	topic := "bench-q-backlog"
	pid := fmt.Sprintf("%s.n%d", qbPrefillIDBase, n)
	if err := b.measure(ctx, func() ([]measurement, error) {
		st0, err := qbGetStats(srvURL, topic)
		if err != nil {
			return nil, err
		}
		need := n - st0.Ready
		if need <= 0 {
			return nil, nil // a retry: already full
		}
		b.progress("prefill: %d messages into %s, batches of %d from %d connections", need, topic, qbPrefillBatch, qbPrefillConns)
		b.waitQuiet(ctx)
		w0 := scrapeWAL(srvURL)
		s0 := sampleCPU()
		lr, err := qbFill(ctx, srvURL, topic, need)
		s1 := sampleCPU()
		if err != nil {
			return nil, fmt.Errorf("prefill: %w", err)
		}
		st1, err := qbGetStats(srvURL, topic)
		if err != nil {
			return nil, err
		}
		// lr counts messages; its latencies are per batch request.
		m := fromLoad(pid, fmt.Sprintf("prefill %d messages, batches of %d, %d connections", need, qbPrefillBatch, qbPrefillConns), kindScenario, "msg", lr)
		m.Group = groupQueues
		m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
		note, inv := qbPublishCheck(st1.Ready-st0.Ready, lr.Requests, 0)
		m.Invalid = joinNoteIf(m.Invalid, inv)
		m.Note = joinNote(fmt.Sprintf("%.1fs; latencies are per request", lr.DurationSec), joinNote(note, walNote(w0, scrapeWAL(srvURL))))
		m.Queue = &qbFigures{Topic: topic, PerRequest: qbPrefillBatch, ReqPerS: lr.ReqPerSec / qbPrefillBatch, Acked: lr.Requests,
			ServerCounted: st1.Ready - st0.Ready, Verified: inv == ""}
		b.qbVsPebble(&m)
		b.show(m)
		return []measurement{m}, nil
	}); err != nil {
		return err
	}
	for _, lm := range []int{10, 1} {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.qbLeaseAckStep(ctx, srvURL, topic, qbBacklogConsum, lm, n, qbBacklogID(lm, qbBacklogConsum))
			if err != nil {
				return nil, err
			}
			if s, ok := findMeasurement(b.rep.Measurements, qbLeaseAckID(lm, qbBacklogConsum)); ok {
				m.compareWith(s)
			}
			b.show(m)
			return []measurement{m}, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// joinNoteIf joins b to a when b is not empty.
func joinNoteIf(a, b string) string {
	if b == "" {
		return a
	}
	return joinNote(a, b)
}

// ---------------------------------------------------------------- budgets

// DESIGN.md states no queue budget. The report applies the durable-write
// budgets to single-message publish, reads "a lease is a short range
// read" as a large-backlog ratio near 1, and requires none lost.
const qbBudgetNote = " [write budget applied to queues]"

var (
	qbBudgetNamePub1  = "queues: publish, 1 client: p99"
	qbBudgetNamePub16 = "queues: publish, 16 clients: msgs/s"
	qbBudgetNameLost  = "queues: every step: acked = server's count, none lost"
)

func qbBudgetNameBacklog(m measurement) string {
	n := "large"
	if m.Queue != nil {
		n = fmt.Sprint(m.Queue.BacklogStart)
	}
	return fmt.Sprintf("queues: lease max=10 + ack, 16 consumers, backlog %s vs ≤%d: msgs/s", n, qbRound)
}

// queuesBudgetUses says whether queues budget b uses measurement id.
func queuesBudgetUses(b budgetResult, id string) (uses, known bool) {
	switch {
	case b.Name == qbBudgetNamePub1:
		return id == qbPublishID(1) || id == qbCeilHTTPID(1) || id == qbFsyncID, true
	case b.Name == qbBudgetNamePub16:
		return id == qbPublishID(16) || id == qbCeilHTTPID(16), true
	case b.Name == qbBudgetNameLost:
		return strings.HasPrefix(id, "queues."), true
	case strings.HasPrefix(b.Name, "queues: lease max=10 + ack, 16 consumers, backlog"):
		return id == qbBacklogID(10, 16) || id == qbLeaseAckID(10, 16), true
	}
	return false, false
}

// computeQueuesBudgets checks the queues figures (none when the group did
// not run).
func computeQueuesBudgets(ms []measurement, syncMode string) []budgetResult {
	var ran []measurement
	for _, m := range ms {
		if strings.HasPrefix(m.ID, "queues.") {
			ran = append(ran, m)
		}
	}
	if ran == nil {
		return nil
	}
	var out []budgetResult
	missing := func(b budgetResult, ids ...string) bool {
		var miss []string
		for _, id := range ids {
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
	invalidOf := func(parts ...measurement) string {
		var rs []string
		for _, m := range parts {
			if m.Invalid != "" {
				rs = append(rs, m.ID+": "+m.Invalid)
			}
		}
		return strings.Join(rs, "; ")
	}
	{
		b := budgetResult{Name: qbBudgetNamePub1, FigureID: qbPublishID(1), Unit: "ms", Cmp: "<=", Limit: 1,
			Budget: "p99 ≤ trivial p99 + fsync p99 (ratio ≤ 1.00)" + qbBudgetNote}
		if !missing(b, qbPublishID(1), qbCeilHTTPID(1), qbFsyncID) {
			s, t, f := mustFind(ms, qbPublishID(1)), mustFind(ms, qbCeilHTTPID(1)), mustFind(ms, qbFsyncID)
			b.Figure, b.Ceiling = s.P99Ms, t.P99Ms+f.P99Ms
			b.CeilingDesc = fmt.Sprintf("trivial p99 %s + fsync p99 %s", fmtMs(t.P99Ms), fmtMs(f.P99Ms))
			b.evaluate(invalidOf(s, t, f))
			out = append(out, b)
		}
	}
	{
		b := budgetResult{Name: qbBudgetNamePub16, FigureID: qbPublishID(16), Unit: "msgs/s", Cmp: ">=", Limit: 0.70,
			Budget: "≥ 70% of trivial handler req/s (ratio ≥ 0.70) [the 64-client write budget, applied at 16 clients]"}
		if !missing(b, qbPublishID(16), qbCeilHTTPID(16)) {
			s, t := mustFind(ms, qbPublishID(16)), mustFind(ms, qbCeilHTTPID(16))
			b.Figure, b.Ceiling = s.Rate, t.Rate
			b.CeilingDesc = "trivial Fiber handler, 16 clients"
			b.evaluate(invalidOf(s, t))
			out = append(out, b)
		}
	}
	if lg, ok := findMeasurement(ms, qbBacklogID(10, 16)); ok {
		b := budgetResult{Name: qbBudgetNameBacklog(lg), FigureID: lg.ID, Unit: "msgs/s", Cmp: ">=", Limit: qbNearOne,
			Budget: fmt.Sprintf("ratio ≥ %.2f [\"a lease is a short range read\": the bench's reading of near 1; no number in DESIGN.md]", qbNearOne)}
		if !missing(b, qbLeaseAckID(10, 16)) {
			s := mustFind(ms, qbLeaseAckID(10, 16))
			b.Figure, b.Ceiling = lg.Rate, s.Rate
			b.CeilingDesc = fmt.Sprintf("same step, ≤%d ready", qbRound)
			b.evaluate(invalidOf(lg, s))
			out = append(out, b)
		}
	}
	{
		b := budgetResult{Name: qbBudgetNameLost, FigureID: "queues.*", Unit: "lost", Cmp: "<=", Limit: 0, Absolute: true,
			Budget: "server's counts match the messages acknowledged to the clients (publish: added ≥ acked; lease+ack: removed = acked, none stale, leased, dead or redelivered)"}
		var bad []string
		var lost int64
		for _, m := range ran {
			if m.Queue == nil {
				continue
			}
			if !m.Queue.Verified {
				bad = append(bad, m.ID)
				if d := m.Queue.Acked - m.Queue.ServerCounted; d != 0 {
					lost += max(d, -d)
				} else {
					lost++
				}
			}
		}
		b.Figure = float64(lost)
		b.evaluate("")
		if bad != nil {
			b.Reason = "mismatch in " + strings.Join(bad, ", ")
		}
		out = append(out, b)
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// ---------------------------------------------------------------- report

// formatQueues renders the queues table ("" when the group did not run).
func formatQueues(r benchReport) string {
	if !hasGroup(r.Measurements, groupQueues) {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\n-- queues: publish and lease+ack (each scenario right after its ceiling) --\n")
	if c := r.Config.Queues; c != nil {
		fmt.Fprintf(&sb, "setup: %d B payloads; publish with %s (the trivial ceiling the same way); lease+ack: %s; lease body %s; small backlog: ≤%d ready, refilled (untimed) between timed rounds; large backlog %d, filled with batches of %d from %d connections; %gs per step, server --sync=%s\n",
			c.PayloadBytes, r.Driver, c.ConsumerClient, c.LeaseBody, c.RoundMessages, c.Backlog, c.PrefillBatch, c.PrefillClients, r.Config.DurationS, r.Config.Sync)
	}
	sb.WriteString("rate: msgs/s (ceilings: their own unit); p50/p99: per request (lease+ack: the lease call); vs ceiling: rate ratio to the ceiling named in the notes; vs Pebble: msgs/s ÷ Pebble synced commits/s (64 writers)\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tclients\tbacklog\trate\treq/s\tp50\tp99\tack p50\tack p99\tvs ceiling\tvs trivial req/s\tvs Pebble\tacked/server\tcpu\tother\tstatus")
	for _, m := range r.Measurements {
		if m.Group != groupQueues {
			continue
		}
		backlog, req, ackP50, ackP99, vsT, vsP, counts := "-", "-", "-", "-", "-", "-", "-"
		if q := m.Queue; q != nil {
			if q.BacklogStart > 0 {
				backlog = fmt.Sprint(q.BacklogStart)
			}
			req = fmtRate(q.ReqPerS)
			if q.AckP50Ms > 0 {
				ackP50, ackP99 = fmtMs(q.AckP50Ms), fmtMs(q.AckP99Ms)
			}
			vsT, vsP = fmtRatio(q.VsTrivialReq), fmtRatio(q.VsPebbleSets)
			counts = fmt.Sprintf("%d/%d", q.Acked, q.ServerCounted)
		}
		vs := "-"
		if m.CeilingID != "" {
			vs = fmtRatio(m.RateRatio) + "× " + m.CeilingID
		}
		status := "ok"
		if m.Invalid != "" {
			status = "INVALID: " + m.Invalid
		}
		if m.noisy() {
			status = "NOISY, " + status
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s %s/s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n",
			m.Name, m.Clients, backlog, fmtRate(m.Rate), m.Unit, req, fmtMs(m.P50Ms), fmtMs(m.P99Ms), ackP50, ackP99,
			vs, vsT, vsP, counts, m.SelfCores, m.OtherCores, status)
	}
	tw.Flush()
	for _, m := range r.Measurements {
		if m.Group == groupQueues && m.Note != "" {
			fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
		}
	}
	return sb.String()
}
