package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Queues across kill -9: exactly-once-ack accounting under 16 producers and
// 16 consumers with two crashes, and timers (lease expiry, delays) whose
// time passes while the server is down.

// qTarget is the server the clients talk to; it changes at each restart
// (a new port). gen counts the restarts.
type qTarget struct {
	url string
	gen int
}

// doAt sends one request to base; it never fails a test.
func doAt(base, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// accDelivery is one lease answer's message as a consumer saw it, and what
// became of its ack.
type accDelivery struct {
	id, pid  string
	attempt  int
	receipt  string
	consumer int
	gen      int // the server generation that answered the lease
	// outcome of the ack: "acked" (listed as acked in the first answer),
	// "stale" (listed as stale in the first answer), "lost-acked" (the
	// first ack request got no answer, a retry acked it: the first one did
	// not commit), "lost-stale" (no answer, then a retry found it stale:
	// either the first one committed and its answer was lost in the crash,
	// or the lease expired while the server was down).
	outcome string
	ackGen  int // the server generation that answered the ack
}

// accPublish is a producer's publish of one message, answered 2xx.
type accPublish struct {
	pid, id string
	status  int // 201, or 200 when a retry found the first try committed
	retries int // tries that got no answer before it
}

// TestQueueCrashExactlyOnceAck is the acceptance test of the queues:
// 16 producers publish, 16 consumers lease and ack, the server is killed
// with SIGKILL twice at random moments and restarted on the same data dir,
// and the clients retry through the outages. Then:
//
//   - every message a producer published (each got a 2xx in the end: a
//     publish whose answer was lost is retried with the same dedupe_id,
//     which answers 200 with the first message if the lost one committed)
//     was delivered and acked, and nothing else exists: the log holds one
//     queue.published per payload id, and exactly one queue.acked per
//     message;
//   - a confirmed ack is final: a message is never delivered again after
//     an ack answer listed it as acked;
//   - every redelivery (attempt > 1) is explained: the delivery before it
//     either had its ack answered stale (the lease had expired: a slow
//     consumer, or a crash between lease and ack), or its ack got no
//     answer because of a crash, or the consumer never saw it because the
//     lease answer was lost in a crash (a gap in the attempts it saw; the
//     log's queue.leased events count those, and each needs a lease
//     request that failed);
//   - no message is dead (max_attempts is high) and the stats end at zero.
func TestQueueCrashExactlyOnceAck(t *testing.T) {
	const (
		producers   = 16
		consumers   = 16
		perProducer = 50
		total       = producers * perProducer
		topic       = "acceptance"
		visibility  = 1500 // ms
		backoff     = 100  // ms
	)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("seed %d", seed)
	begin := time.Now()

	dir := t.TempDir()
	p := startServer(t, dir)
	var cur atomic.Pointer[qTarget]
	cur.Store(&qTarget{url: p.URL})
	var down, stop, abort atomic.Bool

	var (
		mu         sync.Mutex
		problems   []string
		pubs       []accPublish
		deliveries []accDelivery
		leaseErrs  atomic.Int64 // lease requests without an answer
		published  atomic.Int64 // 2xx publishes
		acked      atomic.Int64 // messages acked in an answer
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// transportErr judges a request that got no answer: fine while the
	// server is down or was replaced during the request, a problem when
	// the server it went to is the current one and up.
	transportErr := func(who string, tg *qTarget, err error) {
		if !down.Load() && cur.Load() == tg && !abort.Load() {
			problem("%s: %v while the server was up", who, err)
		}
	}
	retryPause := func() { time.Sleep(10 * time.Millisecond) } // between tries through an outage

	var prodWG, consWG sync.WaitGroup
	t.Cleanup(func() {
		// On a failed test the goroutines may still run: end them before
		// goleak looks.
		abort.Store(true)
		stop.Store(true)
		prodWG.Wait()
		consWG.Wait()
	})
	for w := range producers {
		prodWG.Go(func() {
			var mine []accPublish
			defer func() {
				mu.Lock()
				pubs = append(pubs, mine...)
				mu.Unlock()
			}()
			for i := range perProducer {
				pid := fmt.Sprintf("p%02d-%03d", w, i)
				body, _ := json.Marshal(map[string]any{
					"payload":   map[string]any{"pid": pid, "producer": w, "n": i},
					"dedupe_id": pid, "max_attempts": 1000, "backoff_ms": backoff,
				})
				rec := accPublish{pid: pid}
				for {
					if abort.Load() {
						return
					}
					tg := cur.Load()
					status, raw, err := doAt(tg.url, "POST", qPath(topic, "messages"), body)
					if err != nil {
						transportErr("producer "+pid, tg, err)
						rec.retries++
						retryPause()
						continue
					}
					if status != 201 && status != 200 {
						problem("publish %s: %d %s", pid, status, clip(raw))
						return
					}
					var ans struct {
						Messages []qPublished `json:"messages"`
					}
					if err := json.Unmarshal(raw, &ans); err != nil || len(ans.Messages) != 1 || len(ans.Messages[0].ID) != 26 {
						problem("publish %s: %d %s", pid, status, clip(raw))
						return
					}
					if status == 200 && rec.retries == 0 {
						problem("publish %s: 200 (a duplicate) on its first try", pid)
					}
					rec.id, rec.status = ans.Messages[0].ID, status
					mine = append(mine, rec)
					published.Add(1)
					break
				}
			}
		})
	}
	for c := range consumers {
		consWG.Go(func() {
			var mine []accDelivery
			defer func() {
				mu.Lock()
				deliveries = append(deliveries, mine...)
				mu.Unlock()
			}()
			leaseBody := []byte(fmt.Sprintf(`{"max":4,"visibility_ms":%d,"wait_ms":300}`, visibility))
			for !stop.Load() {
				tg := cur.Load()
				status, raw, err := doAt(tg.url, "POST", qPath(topic, "lease"), leaseBody)
				if err != nil {
					// The lease may have committed: its messages come back
					// once their visibility passes.
					leaseErrs.Add(1)
					transportErr(fmt.Sprintf("consumer %d: lease", c), tg, err)
					retryPause()
					continue
				}
				if status != 200 {
					problem("consumer %d: lease: %d %s", c, status, clip(raw))
					return
				}
				var ans struct {
					Messages []qLeased `json:"messages"`
				}
				if err := json.Unmarshal(raw, &ans); err != nil {
					problem("consumer %d: lease answer %v: %s", c, err, clip(raw))
					return
				}
				if len(ans.Messages) == 0 {
					continue
				}
				batch := make([]accDelivery, len(ans.Messages))
				receipts := make([]string, len(ans.Messages))
				for i, m := range ans.Messages {
					var pl struct {
						PID string `json:"pid"`
					}
					json.Unmarshal(m.Payload, &pl)
					batch[i] = accDelivery{id: m.ID, pid: pl.PID, attempt: m.Attempt, receipt: m.Receipt, consumer: c, gen: tg.gen}
					receipts[i] = m.Receipt
				}
				ackBody, _ := json.Marshal(map[string]any{"receipts": receipts})
				lost := false
				for {
					if abort.Load() {
						return
					}
					tg := cur.Load()
					status, raw, err := doAt(tg.url, "POST", qPath(topic, "ack"), ackBody)
					if err != nil {
						transportErr(fmt.Sprintf("consumer %d: ack", c), tg, err)
						lost = true
						retryPause()
						continue
					}
					var r qAckResult
					if status != 200 || json.Unmarshal(raw, &r) != nil || r.Acked+len(r.Stale) != len(receipts) {
						problem("consumer %d: ack of %d: %d %s", c, len(receipts), status, clip(raw))
						return
					}
					for i := range batch {
						stale := slices.Contains(r.Stale, batch[i].receipt)
						switch {
						case stale && lost:
							batch[i].outcome = "lost-stale"
						case stale:
							batch[i].outcome = "stale"
						case lost:
							batch[i].outcome = "lost-acked"
						default:
							batch[i].outcome = "acked"
						}
						batch[i].ackGen = tg.gen
					}
					acked.Add(int64(r.Acked))
					break
				}
				mine = append(mine, batch...)
			}
		})
	}

	// Two kills at random moments: at a random share of the publishes
	// (with consumers busy all along), one in the first half, one in the
	// second.
	var killAt []int64
	killAt = append(killAt, int64(total*(10+rng.IntN(30))/100), int64(total*(55+rng.IntN(30))/100))
	for k, at := range killAt {
		if !pollUntil(60*time.Second, time.Millisecond, func() bool { return published.Load() >= at || abort.Load() }) {
			t.Fatalf("kill %d: only %d of %d published after 60 s", k+1, published.Load(), at)
		}
		pubNow, ackNow := published.Load(), acked.Load()
		down.Store(true)
		p.Kill9()
		killed := time.Now()
		// A random outage, from none to longer than the visibility: the
		// leases of the moment may expire while the server is down.
		outage := time.Duration(rng.Int64N(int64(2 * visibility * time.Millisecond)))
		time.Sleep(outage)
		p = startServer(t, dir)
		cur.Store(&qTarget{url: p.URL, gen: k + 1})
		down.Store(false)
		t.Logf("kill %d: SIGKILL at %d published, %d acked; outage %v, back after %v", k+1, pubNow, ackNow,
			outage.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	}
	prodDone := make(chan struct{})
	go func() { prodWG.Wait(); close(prodDone) }()
	select {
	case <-prodDone:
	case <-time.After(60 * time.Second):
		t.Fatalf("producers still running 60 s after the second restart (%d published)", published.Load())
	}
	// Drain: the consumers run until nothing is ready, delayed or leased.
	var st qStats
	if !pollUntil(60*time.Second, 20*time.Millisecond, func() bool {
		st = qStatsOf(t, p, topic)
		return st.Ready == 0 && st.Delayed == 0 && st.Leased == 0
	}) {
		t.Fatalf("not drained after 60 s: %+v", st)
	}
	stop.Store(true)
	consWG.Wait()
	drained := time.Since(begin)
	for _, pr := range problems {
		t.Error(pr)
	}
	if t.Failed() {
		t.FailNow()
	}

	// ---- Accounting ----
	byPID := map[string]accPublish{}
	byID := map[string]accPublish{}
	var retried, dupAnswers int
	for _, pb := range pubs {
		if _, dup := byPID[pb.pid]; dup {
			t.Errorf("payload id %s published twice by its producer", pb.pid)
		}
		if other, dup := byID[pb.id]; dup {
			t.Errorf("message %s answered for %s and %s", pb.id, other.pid, pb.pid)
		}
		byPID[pb.pid], byID[pb.id] = pb, pb
		if pb.retries > 0 {
			retried++
		}
		if pb.status == 200 {
			dupAnswers++
		}
	}
	if len(byPID) != total {
		t.Fatalf("%d payload ids published, want %d", len(byPID), total)
	}
	perMsg := map[string][]accDelivery{}
	for _, d := range deliveries {
		pb, ok := byID[d.id]
		switch {
		case !ok:
			t.Errorf("delivered message %s (payload id %q) was never answered to a producer: a message the retries should have deduplicated", d.id, d.pid)
		case pb.pid != d.pid:
			t.Errorf("message %s delivered with payload id %q, published as %q", d.id, d.pid, pb.pid)
		}
		perMsg[d.id] = append(perMsg[d.id], d)
	}
	var (
		lostMsgs, redeliveredMsgs, duplicates           int // redeliveredMsgs: leased more than once
		causeStale, causeStaleNoCrash, causeAckLost     int
		unseenLeases, ackUnanswered, confirmedAckedMsgs int
		outcomes                                        = map[string]int{}
	)
	for id := range byID {
		ds := perMsg[id]
		if len(ds) == 0 {
			lostMsgs++
			if lostMsgs <= 5 {
				t.Errorf("message %s (%s) was never delivered", id, byID[id].pid)
			}
			continue
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i].attempt < ds[j].attempt })
		duplicates += len(ds) - 1
		if ds[len(ds)-1].attempt > 1 {
			redeliveredMsgs++
		}
		confirmed := 0
		prev := 0
		for k, d := range ds {
			outcomes[d.outcome]++
			if d.attempt == prev {
				t.Errorf("message %s: attempt %d delivered twice (to consumers %d and %d): two holders of one message", id, d.attempt, ds[k-1].consumer, d.consumer)
			}
			// Leases between prev and this one that no consumer saw: their
			// answers were lost in a crash.
			unseenLeases += d.attempt - prev - 1
			if k > 0 {
				// Why was it delivered again? Because the delivery before
				// was not acked.
				switch b := ds[k-1]; b.outcome {
				case "stale":
					causeStale++
					if b.ackGen == b.gen {
						causeStaleNoCrash++ // the lease expired without a crash: a slow consumer
					}
				case "lost-stale":
					causeAckLost++
				default:
					t.Errorf("message %s: delivered again (attempt %d, consumer %d) after its attempt %d was %s", id, d.attempt, d.consumer, b.attempt, b.outcome)
				}
			}
			if d.outcome == "acked" || d.outcome == "lost-acked" {
				confirmed++
			}
			prev = d.attempt
		}
		if confirmed > 1 {
			t.Errorf("message %s acked %d times: %+v", id, confirmed, ds)
		}
		switch last := ds[len(ds)-1]; last.outcome {
		case "acked", "lost-acked":
			confirmedAckedMsgs++
		case "lost-stale":
			// The ack committed before a crash and its answer was lost (had
			// the lease expired instead, the message would have come back).
			ackUnanswered++
		default:
			t.Errorf("message %s: its last delivery (attempt %d) was %s and it never came back: lost", id, last.attempt, last.outcome)
		}
	}
	if lostMsgs > 0 {
		t.Errorf("%d of %d messages never delivered", lostMsgs, total)
	}
	if int64(unseenLeases) > leaseErrs.Load() {
		t.Errorf("%d leases no consumer saw, but only %d lease requests went unanswered", unseenLeases, leaseErrs.Load())
	}

	// ---- The log ----
	evs := streamLog(t, p, "queues/"+topic)
	type hist struct{ published, leased, acked, nacked, other, lastAttempt int }
	inLog := map[string]*hist{}
	var leasedEvents int
	for _, ev := range evs {
		d := checkQueueEvent(t, ev, topic)
		h := inLog[d.ID]
		if h == nil {
			h = &hist{}
			inLog[d.ID] = h
		}
		if h.acked > 0 {
			t.Errorf("message %s: %s (seq %d) after its queue.acked", d.ID, ev.Type, ev.Seq)
		}
		switch ev.Type {
		case "queue.published":
			h.published++
		case "queue.leased":
			h.leased++
			leasedEvents++
			if d.Attempt != h.leased {
				t.Errorf("message %s: lease %d has attempt %d", d.ID, h.leased, d.Attempt)
			}
			h.lastAttempt = d.Attempt
		case "queue.acked":
			h.acked++
		case "queue.nacked":
			h.nacked++
			if d.Reason != "lease_expired" {
				t.Errorf("message %s: nacked with reason %q; the consumers never nack", d.ID, d.Reason)
			}
		default:
			h.other++
			t.Errorf("message %s: %s %s", d.ID, ev.Type, ev.Data)
		}
	}
	if len(inLog) != total {
		t.Errorf("the log names %d messages, %d payload ids were published", len(inLog), total)
	}
	for id, h := range inLog {
		if _, ok := byID[id]; !ok {
			t.Errorf("the log has message %s, which no producer was answered", id)
			continue
		}
		if h.published != 1 || h.acked != 1 || h.leased < 1 || h.nacked != h.leased-1 {
			t.Errorf("message %s in the log: %+v; want published once, acked exactly once, nacked once per lease but the last", id, *h)
		}
		if ds := perMsg[id]; len(ds) > 0 && ds[len(ds)-1].attempt != h.lastAttempt {
			t.Errorf("message %s: last lease in the log is attempt %d, the consumers saw up to %d", id, h.lastAttempt, ds[len(ds)-1].attempt)
		}
	}
	if want := len(deliveries) + unseenLeases; leasedEvents != want {
		t.Errorf("%d queue.leased events, want %d (%d seen by consumers + %d lost)", leasedEvents, want, len(deliveries), unseenLeases)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)
	if d := qDeadList(t, p, topic); len(d) != 0 {
		t.Errorf("%d dead letters: %+v", len(d), d[0])
	}

	// Dedupe survived both crashes: each payload id answers its message,
	// and nothing is committed.
	head := p.headSeq(t)
	ids := make(chan accPublish)
	var wg sync.WaitGroup
	var bad atomic.Int64
	var badMu sync.Mutex
	var badEx []string
	for range 16 {
		wg.Go(func() {
			for pb := range ids {
				status, raw, err := p.do("POST", qPath(topic, "messages"), []byte(fmt.Sprintf(`{"payload":"again","dedupe_id":%q}`, pb.pid)))
				var ans struct {
					Messages []qPublished `json:"messages"`
				}
				if err != nil || status != 200 || json.Unmarshal(raw, &ans) != nil || len(ans.Messages) != 1 || ans.Messages[0].ID != pb.id {
					if bad.Add(1) <= 5 {
						badMu.Lock()
						badEx = append(badEx, fmt.Sprintf("%s (%s): %d %v %s", pb.pid, pb.id, status, err, clip(raw)))
						badMu.Unlock()
					}
				}
			}
		})
	}
	for _, pb := range pubs {
		ids <- pb
	}
	close(ids)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d republished dedupe ids did not answer 200 with their message:\n%s", bad.Load(), strings.Join(badEx, "\n"))
	}
	if h := p.headSeq(t); h != head {
		t.Errorf("republishing duplicates committed %d events", h-head)
	}
	p.Stop()

	t.Logf("published %d messages (%d publishes retried after a crash, %d of them answered 200: the lost try had committed)",
		total, retried, dupAnswers)
	t.Logf("consumers saw %d deliveries: %d duplicates (a message seen again); %d messages were leased more than once (attempt > 1); %d leases whose answers were lost in a crash (%d lease requests unanswered)",
		len(deliveries), duplicates, redeliveredMsgs, unseenLeases, leaseErrs.Load())
	t.Logf("causes of the %d seen redeliveries: %d after a stale ack (lease expired; %d of them without a crash between lease and ack), %d after an ack that got no answer in a crash and was stale on retry (the lease expired while the server was down)",
		duplicates, causeStale, causeStaleNoCrash, causeAckLost)
	t.Logf("acks: %d messages confirmed acked, %d acked by a request whose answer was lost; outcomes per delivery %v; log: %d events, %d queue.leased",
		confirmedAckedMsgs, ackUnanswered, outcomes, len(evs), leasedEvents)
	t.Logf("drained in %v", drained.Round(time.Millisecond))
}

// TestQueueTimersAcrossKill: leases and delays whose time passes while the
// server is down act soon after the restart; those that pass after it act
// then (the timer restores from storage); a lease that still holds keeps its
// receipt.
func TestQueueTimersAcrossKill(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	const topic = "timers"
	const backoff = 100
	pub := func(name string, kv ...any) qPublished {
		return qPublishOne(t, p, topic, name, append([]any{"backoff_ms", backoff}, kv...)...)
	}
	lease1 := func(visMs int64) qLeased {
		l := qLease(t, p, topic, 1, visMs, 0)
		if len(l) != 1 {
			t.Fatalf("lease: %+v", l)
		}
		return l[0]
	}
	a := pub("a")
	la := lease1(800) // expires while down
	b := pub("b")
	lb := lease1(3500) // expires after the restart
	e := pub("e")
	le := lease1(60000)             // still holds after the restart
	c := pub("c", "delay_ms", 800)  // ready while down
	d := pub("d", "delay_ms", 3500) // ready after the restart
	if la.ID != a.ID || lb.ID != b.ID || le.ID != e.ID {
		t.Fatalf("leased %s %s %s, published %s %s %s", la.ID, lb.ID, le.ID, a.ID, b.ID, e.ID)
	}
	wantStats(t, p, topic, 0, 3, 2, 0)
	p.Kill9()
	// Stay down until a's lease and c's delay have passed.
	until := mustTime(t, la.LeaseExpiresAt)
	if ca := mustTime(t, c.AvailableAt); ca.After(until) {
		until = ca
	}
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	p = startServer(t, dir)
	restarted := time.Now()
	if time.Now().After(mustTime(t, lb.LeaseExpiresAt)) || time.Now().After(mustTime(t, d.AvailableAt)) {
		t.Fatalf("the restart took too long for this test: b's lease or d's delay passed while down")
	}

	// The lease that still holds: its receipt acks after the restart.
	if r := qAck(t, p, topic, le.Receipt); r.Acked != 1 {
		t.Errorf("ack of a lease that survived the restart: %+v", r)
	}
	// a (attempt 2, after its backoff) and c (attempt 1) soon.
	got := map[string]qLeased{}
	for len(got) < 2 {
		if time.Since(restarted) > 3*time.Second {
			t.Fatalf("after the restart only %v leasable in 3 s (stats %+v)", got, qStatsOf(t, p, topic))
		}
		for _, l := range qLease(t, p, topic, 10, 60000, 500) {
			got[l.ID] = l
		}
	}
	t.Logf("a and c leasable %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if l, ok := got[a.ID]; !ok || l.Attempt != 2 {
		t.Errorf("a after the restart: %+v, want attempt 2", l)
	}
	if l, ok := got[c.ID]; !ok || l.Attempt != 1 {
		t.Errorf("c after the restart: %+v, want attempt 1", l)
	}
	if r := qAck(t, p, topic, la.Receipt); r.Acked != 0 || len(r.Stale) != 1 {
		t.Errorf("a's first receipt after its lease expired: %+v, want stale", r)
	}
	checkError(t, p.call(t, "POST", qPath(topic, "nack"), map[string]any{"receipt": la.Receipt}), 410, "gone", "receipt")
	if r := qAck(t, p, topic, got[a.ID].Receipt, got[c.ID].Receipt); r.Acked != 2 {
		t.Errorf("ack: %+v", r)
	}
	wantStats(t, p, topic, 0, 1, 1, 0)

	// b and d: not before their times, soon after.
	got = map[string]qLeased{}
	deadline := mustTime(t, lb.LeaseExpiresAt).Add(3 * time.Second)
	for len(got) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("b and d: only %v leased by %v (stats %+v)", got, deadline, qStatsOf(t, p, topic))
		}
		for _, l := range qLease(t, p, topic, 10, 60000, 1000) {
			got[l.ID] = l
			at := time.Now()
			switch l.ID {
			case b.ID:
				if l.Attempt != 2 || at.Before(mustTime(t, lb.LeaseExpiresAt)) {
					t.Errorf("b leased at %v (attempt %d); its lease expired at %s", at, l.Attempt, lb.LeaseExpiresAt)
				}
			case d.ID:
				if l.Attempt != 1 || at.Before(mustTime(t, d.AvailableAt)) {
					t.Errorf("d leased at %v (attempt %d); available at %s", at, l.Attempt, d.AvailableAt)
				}
			default:
				t.Errorf("leased %+v", l)
			}
		}
	}
	if r := qAck(t, p, topic, got[b.ID].Receipt, got[d.ID].Receipt); r.Acked != 2 {
		t.Errorf("ack: %+v", r)
	}
	wantStats(t, p, topic, 0, 0, 0, 0)

	// The log: a's and b's leases expired (queue.nacked lease_expired),
	// each message acked once.
	evs, data := queueEvents(t, p, topic)
	expired := map[string]int{}
	ackedN := map[string]int{}
	for i, ev := range evs {
		switch ev.Type {
		case "queue.nacked":
			if data[i].Reason != "lease_expired" {
				t.Errorf("nacked %s", ev.Data)
			}
			expired[data[i].ID]++
			exp := mustTime(t, map[string]string{a.ID: la.LeaseExpiresAt, b.ID: lb.LeaseExpiresAt}[data[i].ID])
			if d := mustTime(t, data[i].AvailableAt).Sub(exp); d < backoff*time.Millisecond {
				t.Errorf("%s available %v after its lease expired, want ≥ the backoff", ev.Data, d)
			}
		case "queue.acked":
			ackedN[data[i].ID]++
		}
	}
	if !(expired[a.ID] == 1 && expired[b.ID] == 1 && len(expired) == 2) {
		t.Errorf("lease expiries in the log: %v, want a and b once", expired)
	}
	for _, id := range []string{a.ID, b.ID, c.ID, d.ID, e.ID} {
		if ackedN[id] != 1 {
			t.Errorf("message %s acked %d times in the log", id, ackedN[id])
		}
	}
	p.Stop()
}

// TestQueueStopWithLongPoll: a graceful stop does not wait for a parked
// long poll: the lease answers (empty), the server exits 0 at once, and a
// message published before the stop is still there after it.
func TestQueueStopWithLongPoll(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	const topic = "stopping"
	type result struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, body, err := p.do("POST", qPath(topic, "lease"), []byte(`{"wait_ms":30000}`))
		done <- result{status, body, err}
	}()
	time.Sleep(200 * time.Millisecond) // let the lease park: a deliberate pause
	m := qPublishOne(t, p, "stopping-other", "kept")
	start := time.Now()
	p.Stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("graceful stop took %v with a long poll parked", took)
	}
	select {
	case r := <-done:
		if r.err == nil && r.status != 200 && r.status != 503 {
			t.Errorf("parked lease answered %d %s at the stop", r.status, r.body)
		}
		if r.err == nil && r.status == 200 && !jsonEqual(r.body, []byte(`{"messages":[]}`)) {
			t.Errorf("parked lease answered %s at the stop", r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the parked lease got no answer 10 s after the stop")
	}
	p = startServer(t, dir)
	l := qLease(t, p, "stopping-other", 1, 1000, 0)
	if len(l) != 1 || l[0].ID != m.ID {
		t.Errorf("after the stop: %+v, want %s", l, m.ID)
	}
	p.Stop()
}
