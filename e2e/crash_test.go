package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"engram/internal/storage"
	"engram/internal/wal"
)

const crashWriters = 16

// sentUnit is a work unit a writer sent.
type sentUnit struct {
	id, ctx string
	req     []byte // the request body
	answer  []byte // the 201 answer (acknowledged units only)
}

// writeResult is what the writers of one round saw.
type writeResult struct {
	acked    []sentUnit // 201: must survive anything
	unknown  []sentUnit // no answer (the server died under the request): stored whole or not at all
	rejected []sentUnit // 503 during a graceful stop: must not be stored
	problems []string   // answers the contract does not allow
}

// writeUntilDown runs crashWriters goroutines, each posting single work
// units to contexts as fast as it can, until the server stops answering.
// down must be set before the server is made to stop: a transport error
// while it is false is a problem. allow503 accepts 503 unavailable answers
// (a graceful stop). started is closed after the first acknowledgement.
func writeUntilDown(p *proc, round int, contexts []string, down *atomic.Bool, allow503 bool, acks *atomic.Int64, started chan<- struct{}) writeResult {
	var (
		mu        sync.Mutex
		res       writeResult
		wg        sync.WaitGroup
		startOnce sync.Once
	)
	for w := range crashWriters {
		wg.Go(func() {
			var mine writeResult
			prev := ""
			defer func() {
				mu.Lock()
				res.acked = append(res.acked, mine.acked...)
				res.unknown = append(res.unknown, mine.unknown...)
				res.rejected = append(res.rejected, mine.rejected...)
				res.problems = append(res.problems, mine.problems...)
				mu.Unlock()
			}()
			for i := 0; ; i++ {
				u := sentUnit{id: newID(), ctx: contexts[(w+i)%len(contexts)]}
				in := map[string]any{
					"id": u.id, "context_id": u.ctx, "agent_id": fmt.Sprintf("writer-%02d", w), "type": unitTypes[i%len(unitTypes)],
					"metadata": map[string]string{"round": fmt.Sprint(round), "writer": fmt.Sprint(w), "n": fmt.Sprint(i)},
					"payload": map[string]any{"writer": w, "n": i, "round": round,
						"text": fmt.Sprintf("writer %d unit %d of round %d: «ünïcode» \"quoted\" \\ <tag>", w, i, round)},
				}
				if prev != "" {
					in["relationships"] = []map[string]string{{"target_id": prev, "type": "SEQUENTIAL"}}
				}
				u.req, _ = json.Marshal(in)
				status, body, err := p.do("POST", "/v1/workunits", u.req)
				switch {
				case err != nil:
					mine.unknown = append(mine.unknown, u)
					if !down.Load() {
						mine.problems = append(mine.problems, fmt.Sprintf("writer %d: %v while the server was up", w, err))
					}
					return
				case status == 201:
					var got struct {
						ID string `json:"id"`
					}
					if json.Unmarshal(body, &got) != nil || got.ID != u.id {
						mine.problems = append(mine.problems, fmt.Sprintf("writer %d: 201 for %s answered %s", w, u.id, body))
					}
					u.answer = body
					mine.acked = append(mine.acked, u)
					prev = u.id
					acks.Add(1)
					startOnce.Do(func() { close(started) })
				case status == 503 && allow503 && down.Load():
					mine.rejected = append(mine.rejected, u)
				default:
					mine.problems = append(mine.problems, fmt.Sprintf("writer %d: POST %s: %d %s", w, u.id, status, body))
					return
				}
			}
		})
	}
	wg.Wait()
	return res
}

// waitWriters waits for writeUntilDown in a goroutine, with a deadline.
func waitWriters(t *testing.T, done <-chan writeResult) writeResult {
	t.Helper()
	select {
	case res := <-done:
		for _, pr := range res.problems {
			t.Error(pr)
		}
		return res
	case <-time.After(60 * time.Second):
		t.Fatalf("writers still running 60 s after the server went down")
		return writeResult{}
	}
}

// expectation is what must be stored, across rounds.
type expectation struct {
	contexts []string
	stored   map[string][]byte   // id → the unit as stored: acknowledged, or seen after a restart
	unknown  map[string]sentUnit // sent without an answer and not seen yet: stored or not
	absent   map[string]bool     // answered with an error: must never be stored
}

func newExpectation(contexts []string) *expectation {
	return &expectation{contexts: contexts, stored: map[string][]byte{}, unknown: map[string]sentUnit{}, absent: map[string]bool{}}
}

func (e *expectation) add(res writeResult) {
	for _, u := range res.acked {
		e.stored[u.id] = u.answer
	}
	for _, u := range res.unknown {
		e.unknown[u.id] = u
	}
	for _, u := range res.rejected {
		e.absent[u.id] = true
	}
}

// verifyStore checks a freshly (re)started server against e: every stored
// unit is there byte for byte, every listed unit was sent, units of an
// unknown outcome are whole or absent, and the units' seqs together with the
// context events are exactly 1..head. It returns the listed units and how
// many unanswered units turned out to be stored.
func verifyStore(t *testing.T, p *proc, e *expectation) (map[string][]byte, int) {
	t.Helper()
	head := p.headSeq(t)
	if got, _ := p.Listening["head_seq"].(float64); uint64(got) != head {
		t.Errorf("log line head_seq %v, /metrics head %d", p.Listening["head_seq"], head)
	}
	if p.Listening["new_store"] != false {
		t.Errorf("restarted server reports new_store=%v", p.Listening["new_store"])
	}

	raws, _ := listAll(t, p, "/v1/contexts?limit=1000", "contexts")
	var ctxIDs []string
	for _, r := range raws {
		ctxIDs = append(ctxIDs, decodeContext(t, r).ID)
	}
	if !slices.Equal(ctxIDs, e.contexts) {
		t.Errorf("contexts %v, want %v", ctxIDs, e.contexts)
	}

	listed := map[string][]byte{}
	seqSeen := map[uint64]string{}
	for _, ctx := range ctxIDs {
		raws, _ := listAll(t, p, "/v1/contexts/"+url.PathEscape(ctx)+"/workunits?order=asc&limit=1000", "units")
		var last uint64
		for _, raw := range raws {
			var u unitJSON
			if err := json.Unmarshal(raw, &u); err != nil {
				t.Fatalf("listed unit: %v: %s", err, raw)
			}
			if u.ContextID != ctx {
				t.Errorf("unit %s of %q listed in %q", u.ID, u.ContextID, ctx)
			}
			if u.Seq <= last {
				t.Errorf("context %s: seq %d after %d in an ascending listing", ctx, u.Seq, last)
			}
			last = u.Seq
			if other, dup := seqSeen[u.Seq]; dup {
				t.Errorf("seq %d held by units %s and %s", u.Seq, other, u.ID)
			}
			seqSeen[u.Seq] = u.ID
			if u.Seq == 0 || u.Seq > head {
				t.Errorf("unit %s has seq %d outside 1..%d", u.ID, u.Seq, head)
			}
			if _, dup := listed[u.ID]; dup {
				t.Errorf("unit %s listed twice", u.ID)
			}
			listed[u.ID] = raw
		}
	}
	// Every event is a unit's or a context.created (no other writes here):
	// the units' seqs leave exactly one hole per context.
	if want := head - uint64(len(ctxIDs)); uint64(len(seqSeen)) != want {
		t.Errorf("%d units for head seq %d and %d contexts: want %d units, the log has holes or extra events",
			len(seqSeen), head, len(ctxIDs), want)
	}

	// Acknowledged (or earlier seen) units: listed, and readable, byte for byte.
	var lost []string
	for id, want := range e.stored {
		got, ok := listed[id]
		switch {
		case !ok:
			lost = append(lost, id)
		case !bytes.Equal(got, want):
			t.Errorf("unit %s changed:\n got %s\nwant %s", id, got, want)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged units lost, e.g. %v", len(lost), len(e.stored), lost[:min(5, len(lost))])
	}
	checkReadable(t, p, e.stored)

	// Units without an answer: whole or absent. Once seen they must stay.
	storedUnanswered := 0
	for id, u := range e.unknown {
		raw, ok := listed[id]
		if !ok {
			checkError(t, p.call(t, "GET", "/v1/workunits/"+id, nil), 404, "not_found", id)
			continue
		}
		var sent, got unitJSON
		if err := json.Unmarshal(u.req, &sent); err != nil {
			t.Fatal(err)
		}
		got = decodeUnit(t, raw)
		if got.ContextID != sent.ContextID || got.AgentID != sent.AgentID || got.Type != sent.Type ||
			!jsonEqual(got.Payload, sent.Payload) || len(got.Relationships) != len(sent.Relationships) {
			t.Errorf("unanswered unit %s stored as\n%s\nsent\n%s", id, raw, u.req)
		}
		e.stored[id] = raw
		delete(e.unknown, id)
		storedUnanswered++
	}
	for id := range e.absent {
		if _, ok := listed[id]; ok {
			t.Errorf("unit %s was answered with an error but is stored", id)
		}
	}
	// Nothing appears that no writer sent.
	for id, raw := range listed {
		if _, ok := e.stored[id]; !ok {
			t.Errorf("unit %s is stored but was never sent: %s", id, raw)
		}
	}
	// A unit's relationship targets are stored: they were acknowledged
	// before it was sent.
	for id, raw := range listed {
		var u unitJSON
		_ = json.Unmarshal(raw, &u)
		for _, r := range u.Relationships {
			if _, ok := listed[r.TargetID]; !ok {
				t.Errorf("unit %s relates to %s, which is not stored", id, r.TargetID)
			}
		}
	}
	return listed, storedUnanswered
}

// checkReadable GETs every unit of want, eight at a time, and compares bytes.
func checkReadable(t *testing.T, p *proc, want map[string][]byte) {
	t.Helper()
	ids := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for range 8 {
		wg.Go(func() {
			for id := range ids {
				status, body, err := p.do("GET", "/v1/workunits/"+id, nil)
				if err != nil || status != 200 || !bytes.Equal(body, want[id]) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("GET %s: %d %v %s", id, status, err, body))
					mu.Unlock()
				}
			}
		})
	}
	for id := range want {
		ids <- id
	}
	close(ids)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d of %d units not readable as acknowledged, e.g.:\n%s", len(bad), len(want), strings.Join(bad[:min(5, len(bad))], "\n"))
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// verifyLog opens the stopped server's data dir with the storage package and
// checks the log itself: seqs exactly 1..HeadSeq, every record decodes to an
// event of topic contexts/<id>, and the events are exactly the contexts and
// the units listed over HTTP.
func verifyLog(t *testing.T, dir string, units map[string][]byte, contexts []string) {
	t.Helper()
	db, err := storage.Open(storage.Config{Dir: dir}, nil)
	if err != nil {
		t.Fatalf("open the data dir offline: %v", err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	it, err := db.NewIter(storage.LogPrefix(), storage.PrefixEnd(storage.LogPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	next := uint64(1)
	seenUnits := map[string]bool{}
	var seenCtx []string
	for ok := it.First(); ok; ok = it.Next() {
		seq, err := storage.LogSeq(it.Key())
		if err != nil {
			t.Fatalf("log key %x: %v", it.Key(), err)
		}
		if seq != next {
			t.Fatalf("log seq %d follows %d: gap or disorder", seq, next-1)
		}
		next++
		ev, err := wal.ReadEvent(db, seq)
		if err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
		var e struct {
			Seq   uint64          `json:"seq"`
			Time  string          `json:"time"`
			Type  string          `json:"type"`
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		dec := json.NewDecoder(bytes.NewReader(ev.JSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("event %d: %v: %s", seq, err, ev.JSON)
		}
		ctx, ok := strings.CutPrefix(e.Topic, "contexts/")
		if e.Seq != seq || ev.Seq != seq || !ok || ctx == "" || e.Type != ev.Type || e.Topic != ev.Topic || !timeRE.MatchString(e.Time) {
			t.Fatalf("event %d: %s", seq, ev.JSON)
		}
		switch e.Type {
		case "context.created":
			var c contextJSON
			if err := json.Unmarshal(e.Data, &c); err != nil || c.ID != ctx {
				t.Errorf("event %d: context.created data %s", seq, e.Data)
			}
			seenCtx = append(seenCtx, c.ID)
		case "workunit.created":
			var u unitJSON
			if err := json.Unmarshal(e.Data, &u); err != nil || u.Seq != seq || u.ContextID != ctx || u.Timestamp != e.Time {
				t.Errorf("event %d (time %s): workunit.created data %s", seq, e.Time, e.Data)
			}
			if want, ok := units[u.ID]; !ok || !bytes.Equal(e.Data, want) {
				t.Errorf("event %d: unit %s in the log is\n%s\nover HTTP\n%s", seq, u.ID, e.Data, want)
			}
			if seenUnits[u.ID] {
				t.Errorf("event %d: unit %s created twice", seq, u.ID)
			}
			seenUnits[u.ID] = true
		default:
			t.Errorf("event %d: unexpected type %q", seq, e.Type)
		}
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if next-1 != db.HeadSeq() {
		t.Errorf("log ends at seq %d, head seq is %d", next-1, db.HeadSeq())
	}
	if len(seenUnits) != len(units) {
		t.Errorf("log has %d units, HTTP listed %d", len(seenUnits), len(units))
	}
	slices.Sort(seenCtx)
	if !slices.Equal(seenCtx, contexts) {
		t.Errorf("log created contexts %v, want %v", seenCtx, contexts)
	}
	t.Logf("log verified offline: %d events, %d units, %d contexts", next-1, len(seenUnits), len(seenCtx))
}

// TestCrashRecovery kills the server with SIGKILL while 16 writers post
// units, three times over one data dir, and checks after each restart that
// nothing acknowledged was lost and the log has no hole.
func TestCrashRecovery(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)

	dir := t.TempDir()
	p := startServer(t, dir)
	contexts := []string{"crash-0", "crash-1", "crash-2", "crash-3"}
	for _, c := range contexts {
		p.must(t, 201, "POST", "/v1/contexts", map[string]any{"id": c})
	}
	exp := newExpectation(contexts)
	var listed map[string][]byte
	for round := 1; round <= 3; round++ {
		var down atomic.Bool
		var acks atomic.Int64
		started := make(chan struct{})
		done := make(chan writeResult, 1)
		go func() { done <- writeUntilDown(p, round, contexts, &down, false, &acks, started) }()
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			down.Store(true)
			p.Kill9()
			waitWriters(t, done)
			t.Fatalf("round %d: no write acknowledged in 20 s", round)
		}
		// A random moment while the writers run.
		delay := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))
		time.Sleep(delay)
		// Kill while acknowledgements are flowing.
		a := acks.Load()
		if !pollUntil(5*time.Second, 100*time.Microsecond, func() bool { return acks.Load() > a }) {
			t.Errorf("round %d: writers idle at the kill moment", round)
		}
		before := acks.Load()
		down.Store(true)
		p.Kill9()
		res := waitWriters(t, done)
		t.Logf("round %d: SIGKILL after %v and %d acknowledgements (%d in all); %d requests unanswered",
			round, delay, before, len(res.acked), len(res.unknown))
		exp.add(res)

		p = startServer(t, dir)
		var n int
		listed, n = verifyStore(t, p, exp)
		t.Logf("round %d: %d of the unanswered units were stored", round, n)
		if t.Failed() {
			t.FailNow()
		}
	}
	p.Stop()
	verifyLog(t, dir, listed, contexts)
}

// TestGracefulStopDuringWrites stops the server with SIGTERM while writers
// run: it must exit 0, and every acknowledged unit must be there after a
// restart.
func TestGracefulStopDuringWrites(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "--shutdown-timeout", "20s")
	contexts := []string{"term-0", "term-1", "term-2"}
	for _, c := range contexts {
		p.must(t, 201, "POST", "/v1/contexts", map[string]any{"id": c})
	}
	exp := newExpectation(contexts)
	var down atomic.Bool
	var acks atomic.Int64
	started := make(chan struct{})
	done := make(chan writeResult, 1)
	go func() { done <- writeUntilDown(p, 1, contexts, &down, true, &acks, started) }()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("no write acknowledged in 20 s")
	}
	delay := 200*time.Millisecond + rand.N(600*time.Millisecond)
	time.Sleep(delay)
	a := acks.Load()
	if !pollUntil(5*time.Second, 100*time.Microsecond, func() bool { return acks.Load() > a }) {
		t.Errorf("writers idle at the SIGTERM moment")
	}
	down.Store(true)
	stopAt := time.Now()
	p.Stop() // SIGTERM, exit code 0
	stopped := time.Since(stopAt)
	res := waitWriters(t, done)
	t.Logf("SIGTERM after %v: %d acknowledgements, %d unanswered, %d answered 503; exited %v after the signal",
		delay, len(res.acked), len(res.unknown), len(res.rejected), stopped.Round(time.Millisecond))
	exp.add(res)

	p = startServer(t, dir)
	listed, n := verifyStore(t, p, exp)
	// A graceful stop answers every request it has read; one it has not
	// read is not applied. So no unanswered request may have been stored.
	if n > 0 {
		t.Errorf("%d units were stored but their requests got no answer during the graceful stop", n)
	}
	p.Stop()
	verifyLog(t, dir, listed, contexts)
}
