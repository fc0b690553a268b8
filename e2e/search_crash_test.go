package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The search index across kill -9, rebuilds (index deleted, overwritten with
// garbage, requested online) and retention: the index is derived state and
// must always come back equal to what storage holds.

// kUnit is a work unit a crash-test writer sent.
type kUnit struct {
	tok, id string
	acked   bool
}

// kPut is a value a crash-test writer put on a stream item.
type kPut struct {
	item, tok string
	acked     bool
}

// kRound is what the writers of one round sent.
type kRound struct {
	units    []kUnit
	puts     []kPut
	problems []string
}

const (
	kStream      = "ks"
	kItems       = 8 // stream items the item writer updates in turn
	kUnitWriters = 3
)

// kItemValue is the value of a crash-test stream item holding tok.
func kItemValue(item, tok string) []byte {
	b, _ := json.Marshal(map[string]any{"text": "kitem " + item + " " + tok, "n": len(tok)})
	return b
}

// writeUntilKilled runs kUnitWriters goroutines posting work units (each with
// the token every unit carries, kcommon, and one of its own) and one putting
// stream items, until the server stops answering. down must be set before
// the kill. started is closed at the first acknowledgement.
func writeUntilKilled(p *proc, round int, down *atomic.Bool, acks *atomic.Int64, started chan<- struct{}) kRound {
	var (
		mu   sync.Mutex
		res  kRound
		wg   sync.WaitGroup
		once sync.Once
	)
	ack := func() {
		acks.Add(1)
		once.Do(func() { close(started) })
	}
	for w := range kUnitWriters {
		wg.Go(func() {
			var mine kRound
			defer func() {
				mu.Lock()
				res.units = append(res.units, mine.units...)
				res.problems = append(res.problems, mine.problems...)
				mu.Unlock()
			}()
			for i := 0; ; i++ {
				u := kUnit{tok: fmt.Sprintf("kr%dw%dn%d", round, w, i), id: newID()}
				_, status, err := postUnit(p, map[string]any{"id": u.id, "context_id": fmt.Sprintf("ks-%d", w), "agent_id": "a", "type": "MESSAGE",
					"metadata": map[string]string{"tok": u.tok}, "payload": map[string]any{"text": "kcommon unit " + u.tok, "i": i}})
				switch {
				case status == 0 && err != nil:
					mine.units = append(mine.units, u) // unanswered: stored or not
					if !down.Load() {
						mine.problems = append(mine.problems, fmt.Sprintf("writer %d: %v while the server was up", w, err))
					}
					return
				case err != nil:
					mine.problems = append(mine.problems, fmt.Sprintf("writer %d: %v", w, err))
					return
				}
				u.acked = true
				mine.units = append(mine.units, u)
				ack()
			}
		})
	}
	wg.Go(func() {
		var mine kRound
		defer func() {
			mu.Lock()
			res.puts = append(res.puts, mine.puts...)
			res.problems = append(res.problems, mine.problems...)
			mu.Unlock()
		}()
		for i := 0; ; i++ {
			pt := kPut{item: fmt.Sprintf("it%d", i%kItems), tok: fmt.Sprintf("kv%dx%d", round, i)}
			status, body, err := p.do("PUT", itemPath(kStream, "g", pt.item), kItemValue(pt.item, pt.tok))
			switch {
			case err != nil:
				mine.puts = append(mine.puts, pt)
				if !down.Load() {
					mine.problems = append(mine.problems, fmt.Sprintf("item writer: %v while the server was up", err))
				}
				return
			case status != 200:
				mine.problems = append(mine.problems, fmt.Sprintf("PUT %s: %d %s", pt.item, status, clip(body)))
				return
			}
			pt.acked = true
			mine.puts = append(mine.puts, pt)
			ack()
		}
	})
	wg.Wait()
	return res
}

// TestSearchKill9 kills the server with SIGKILL while writers post units and
// update stream items, twice, and checks after each restart that the index
// equals storage: every acknowledged unit is found by its token, the units
// found are exactly the units stored, and each stream item is found by its
// stored value only.
func TestSearchKill9(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	p := startServer(t, dir)

	var units []kUnit           // every unit sent, all rounds
	puts := map[string][]kPut{} // item → its puts in order, all rounds
	for round := 1; round <= 2; round++ {
		var down atomic.Bool
		var acks atomic.Int64
		started := make(chan struct{})
		done := make(chan kRound, 1)
		go func() { done <- writeUntilKilled(p, round, &down, &acks, started) }()
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			down.Store(true)
			p.Kill9()
			<-done
			t.Fatalf("round %d: no write acknowledged in 20 s", round)
		}
		delay := 200*time.Millisecond + time.Duration(rng.Int64N(int64(800*time.Millisecond)))
		time.Sleep(delay)
		a := acks.Load()
		if !pollUntil(5*time.Second, 100*time.Microsecond, func() bool { return acks.Load() > a }) {
			t.Errorf("round %d: writers idle at the kill moment", round)
		}
		down.Store(true)
		p.Kill9()
		var res kRound
		select {
		case res = <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: writers still running 60 s after the kill", round)
		}
		for _, pr := range res.problems {
			t.Error(pr)
		}
		units = append(units, res.units...)
		for _, pt := range res.puts {
			puts[pt.item] = append(puts[pt.item], pt)
		}
		t.Logf("round %d: SIGKILL after %v and %d acknowledgements", round, delay, acks.Load())

		p = startServer(t, dir)
		verifyIndexAfterKill(t, p, units, puts)
		if t.Failed() {
			t.FailNow()
		}
	}
	p.Stop()
}

// verifyIndexAfterKill checks a restarted server's index against its
// storage and what the writers sent.
func verifyIndexAfterKill(t *testing.T, p *proc, units []kUnit, puts map[string][]kPut) {
	t.Helper()
	head := fmt.Sprint(p.headSeq(t))
	// Storage: the units listed over REST.
	stored := map[string]uint64{} // id → seq
	for w := range kUnitWriters {
		for _, u := range listUnitSeqs(t, p, fmt.Sprintf("ks-%d", w)) {
			stored[u.ID] = u.Seq
		}
	}
	want := map[string]string{} // token → document
	ackedN := 0
	for _, u := range units {
		_, ok := stored[u.id]
		if u.acked {
			ackedN++
			if !ok {
				t.Errorf("acknowledged unit %s (%s) is not stored", u.id, u.tok)
			}
		}
		if ok {
			want[u.tok] = unitKey(u.id)
		} else {
			want[u.tok] = ""
		}
	}
	// The index: exactly the stored units, at their seqs.
	count := search(t, p, "q", "kcommon", "count", "true", "limit", "1", "min_seq", head)
	if *count.Total != int64(len(stored)) {
		t.Errorf("kcommon counts %d units, storage lists %d", *count.Total, len(stored))
	}
	found := 0
	for _, h := range searchAll(t, p, "q", "kcommon", "kind", "workunit", "sort", "recent", "min_seq", head) {
		seq, ok := stored[h.ID]
		if !ok || h.Seq != seq {
			t.Errorf("kcommon finds unit %s at seq %d; storage has it: %v at seq %d", h.ID, h.Seq, ok, seq)
		}
		found++
	}
	if found != len(stored) {
		t.Errorf("kcommon finds %d units, storage lists %d", found, len(stored))
	}

	// Stream items: the stored value is the last acknowledged one or one
	// sent after it without an answer; the index holds that value only.
	itemHits := map[string]searchHit{}
	for _, h := range searchAll(t, p, "q", "kitem", "stream", kStream, "min_seq", head) {
		itemHits[h.ID] = h
	}
	nItems := 0
	for item, ps := range puts {
		lastAcked := -1
		for i, pt := range ps {
			if pt.acked {
				lastAcked = i
			}
			want[pt.tok] = ""
		}
		r := p.call(t, "GET", itemPath(kStream, "g", item), nil)
		if r.Status == 404 {
			if lastAcked >= 0 {
				t.Errorf("item %s: 404, but a put was acknowledged", item)
			}
			if h, ok := itemHits[item]; ok {
				t.Errorf("item %s is not stored, but found: %+v", item, h)
			}
			continue
		}
		if r.Status != 200 {
			t.Fatalf("GET item %s: %s", item, r)
		}
		nItems++
		var v struct {
			Value struct {
				Text string `json:"text"`
			} `json:"value"`
		}
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatalf("GET item %s: %v: %s", item, err, r)
		}
		tok := v.Value.Text[strings.LastIndexByte(v.Value.Text, ' ')+1:]
		at := slices.IndexFunc(ps, func(pt kPut) bool { return pt.tok == tok })
		if at < 0 || at < lastAcked {
			t.Errorf("item %s holds %s (put #%d), the last acknowledged put was #%d", item, tok, at, lastAcked)
		}
		want[tok] = itemKey(kStream, "g", item)
		h, ok := itemHits[item]
		switch {
		case !ok:
			t.Errorf("item %s (%s) is not found by kitem", item, tok)
		case !strings.Contains(h.Snippet, tok):
			t.Errorf("item %s holds %s, its hit shows a stale value: %q", item, tok, h.Snippet)
		}
	}
	if len(itemHits) != nItems {
		t.Errorf("kitem finds %d items, %d are stored", len(itemHits), nItems)
	}
	checkTokens(t, p, want, "min_seq", head)
	t.Logf("%d units stored (%d acknowledged, %d sent), %d items, index checked", len(stored), ackedN, len(units), nItems)
}

// scaled is n, or a fifth of it when the server is built with the race
// detector (ENGRAM_E2E_RACE=1), which makes SQLite about 20 times slower.
func scaled(n int) int {
	if os.Getenv("ENGRAM_E2E_RACE") == "1" {
		return n / 5
	}
	return n
}

// searchFiles lists the files of the data dir's search directory.
func searchFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "search"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// recentAnswers runs every corpus query newest first and returns the hits
// without their scores (which move with the corpus's statistics).
func recentAnswers(t testing.TB, p *proc, c *corpus) map[string][]searchHit {
	t.Helper()
	out := map[string][]searchHit{}
	for _, cq := range corpusQueries {
		a := search(t, p, append(slices.Clone(cq.kv), "sort", "recent", "limit", "1000", "min_seq", fmt.Sprint(c.last))...)
		for i := range a.Hits {
			a.Hits[i].Score = 0
		}
		out[strings.Join(cq.kv, " ")] = a.Hits
	}
	return out
}

// TestSearchRebuild: with the index deleted, or overwritten with garbage,
// the server starts and takes writes at once, rebuilds from storage, and
// answers as before; a rebuild requested online while writers write loses
// nothing.
func TestSearchRebuild(t *testing.T) {
	bulk := scaled(20000) // units, to make a rebuild take a while
	dir := t.TempDir()
	p := startServer(t, dir)
	c := writeCorpus(t, p)
	ctxs := make([]string, 1000)
	for i := range ctxs {
		ctxs[i] = fmt.Sprintf("bulk-%d", i%4)
	}
	for range bulk / 1000 {
		mustPostUnits(t, p, ctxs, json.RawMessage(`{"text":"bulkword filler","n":1}`))
	}
	checkCorpus(t, p, c)
	before := recentAnswers(t, p, c)
	p.Stop()

	var written []ackedUnit // units written during rebuilds
	check := func(t *testing.T, p *proc) {
		t.Helper()
		checkCorpus(t, p, c)
		after := recentAnswers(t, p, c)
		for q, hits := range before {
			if !slices.Equal(after[q], hits) {
				t.Errorf("%s: after the rebuild\n%+v\nbefore\n%+v", q, after[q], hits)
			}
		}
		if a := search(t, p, "q", "bulkword", "count", "true", "limit", "1"); *a.Total != int64(bulk) {
			t.Errorf("bulkword counts %d units, want %d", *a.Total, bulk)
		}
		want := map[string]string{}
		for i, u := range written {
			want[fmt.Sprintf("rebuildwrite%d", i)] = unitKey(u.ID)
		}
		checkTokens(t, p, want)
	}

	// junk overwrites n bytes of the index file at off with random bytes
	// and returns the file as it is then.
	junk := func(t *testing.T, off, n int64) []byte {
		path := filepath.Join(dir, "search", "index.db")
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("the index file after a graceful stop: %v (files %v)", err, searchFiles(t, dir))
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if n < 0 {
			n = fi.Size()
		}
		b := make([]byte, n)
		r := rand.New(rand.NewPCG(uint64(off), uint64(n)))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		all, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	for _, tc := range []struct {
		name string
		// damage returns what the index file held afterwards (nil: the
		// file is gone).
		damage func(t *testing.T) []byte
		// byQuery: the server opens the file; a query finds it corrupt.
		byQuery bool
	}{
		{name: "deleted", damage: func(t *testing.T) []byte {
			if err := os.RemoveAll(filepath.Join(dir, "search")); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{name: "garbage", damage: func(t *testing.T) []byte { return junk(t, 0, -1) }},
		{name: "damaged pages", byQuery: true, damage: func(t *testing.T) []byte {
			fi, err := os.Stat(filepath.Join(dir, "search", "index.db"))
			if err != nil {
				t.Fatal(err)
			}
			// The middle half: the header, the schema and the meta table
			// (the first pages) are sound, the FTS5 data is not.
			return junk(t, fi.Size()/4, fi.Size()/2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept := tc.damage(t)
			start := time.Now()
			p := startServer(t, dir)
			st0 := getReindex(t, p)
			n := len(written)
			u := mustPostUnit(t, p, map[string]any{"context_id": "during", "agent_id": "a", "type": "MESSAGE",
				"payload": fmt.Sprintf("rebuildwrite%d written while rebuilding", n)})
			wrote := time.Since(start)
			written = append(written, u)
			st1 := getReindex(t, p)
			t.Logf("ready and written %v after the start; status before the write %+v, after %+v", wrote.Round(time.Millisecond), st0, st1)
			if st1.HeadSeq < u.Seq {
				t.Errorf("status head_seq %d below the write's seq %d", st1.HeadSeq, u.Seq)
			}
			if tc.byQuery {
				// Search until a query (or the indexer) finds the damage:
				// meanwhile 200 or 503 unavailable, never a 500.
				var last string
				if !pollUntil(20*time.Second, 10*time.Millisecond, func() bool {
					r := p.call(t, "GET", searchURL("q", "amber OR bulkword OR deepword OR note", "count", "true"), nil)
					last = r.String()
					switch r.Status {
					case 200:
						if _, err := decodeSearch(r.Body, true); err != nil {
							t.Fatal(err)
						}
					case 503:
						checkError(t, r, 503, "unavailable", "")
					default:
						t.Fatalf("search of a damaged index: %s, want 200 or 503", r)
					}
					return strings.HasPrefix(getReindex(t, p).Reason, "corrupt")
				}) {
					t.Fatalf("the damaged index was not found corrupt in 20 s; last search %s; status %+v", last, getReindex(t, p))
				}
			} else if !st0.Rebuilding || st1.IndexedSeq >= u.Seq {
				// The index of 20,000 units takes far longer to rebuild
				// than the start and one write.
				t.Errorf("the write was not made while the index was rebuilding: status before it %+v, after it %+v", st0, st1)
			}
			final, phases := waitCaughtUp(t, p, u.Seq, 60*time.Second)
			t.Logf("caught up %v after the start: %+v; phases seen %v", time.Since(start).Round(time.Millisecond), final, phases)
			if final.Reason == "" || final.StartedAt == "" {
				t.Errorf("status after a rebuild: %+v, want its reason and start time", final)
			}
			check(t, p)
			if kept != nil {
				bad, err := os.ReadFile(filepath.Join(dir, "search", "index.db.bad"))
				switch {
				case err != nil:
					t.Errorf("the unusable index was not set aside: %v (files %v)", err, searchFiles(t, dir))
				case !tc.byQuery && !bytes.Equal(bad, kept):
					t.Errorf("index.db.bad (%d bytes) is not the file that was there (%d bytes)", len(bad), len(kept))
				}
			}
			p.Stop()
		})
		if t.Failed() {
			t.FailNow()
		}
	}

	// Killed in the middle of a rebuild: the restart goes on from what the
	// rebuild committed (or starts it over) and ends equal.
	t.Run("killed while rebuilding", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, "search")); err != nil {
			t.Fatal(err)
		}
		p := startServer(t, dir)
		// The rebuild commits every 10,000 events: kill it after the
		// first commit.
		var st reindexStatus
		if !pollUntil(20*time.Second, time.Millisecond, func() bool {
			st = getReindex(t, p)
			return st.IndexedSeq > 0 && st.IndexedSeq < st.HeadSeq || !st.Rebuilding && st.IndexedSeq >= st.HeadSeq
		}) {
			t.Fatalf("the rebuild is not half done nor over after 20 s; last status %+v", st)
		}
		if st.IndexedSeq < st.HeadSeq {
			p.Kill9()
			t.Logf("SIGKILL at %+v", st)
		} else {
			t.Logf("note: never saw the rebuild half done (last status %+v); no kill", st)
			p.Stop()
		}
		p = startServer(t, dir)
		first := getReindex(t, p)
		final, phases := waitCaughtUp(t, p, st.HeadSeq, 60*time.Second)
		t.Logf("after the restart: first status %+v, final %+v, phases %v", first, final, phases)
		check(t, p)
		p.Stop()
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("online", func(t *testing.T) {
		p := startServer(t, dir)
		amberN := 0
		for _, d := range c.docs {
			if d.has("amber") {
				amberN++
			}
		}
		type newestUnit struct {
			tok string
			u   ackedUnit
		}
		var (
			stop     atomic.Bool
			wg       sync.WaitGroup
			mu       sync.Mutex
			problems []string
			acked    = map[string]string{}
			newest   atomic.Pointer[newestUnit]
			ryw      [2]atomic.Int64 // read-your-writes searches: found, 503
			searches [2]atomic.Int64 // other searches: 200, 503
		)
		t.Cleanup(func() { // on a failure, before goleak looks
			stop.Store(true)
			wg.Wait()
		})
		problem := func(format string, args ...any) {
			mu.Lock()
			if len(problems) < 10 {
				problems = append(problems, fmt.Sprintf(format, args...))
			}
			mu.Unlock()
		}
		for w := range 2 {
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					tok := fmt.Sprintf("onw%dx%d", w, i)
					u, _, err := postUnit(p, map[string]any{"context_id": "online", "agent_id": "a", "type": "MESSAGE",
						"payload": "onlineword " + tok})
					if err != nil {
						problem("writer %d: %v", w, err)
						stop.Store(true)
						return
					}
					mu.Lock()
					acked[tok] = unitKey(u.ID)
					mu.Unlock()
					newest.Store(&newestUnit{tok, u})
				}
			})
		}
		// Read your writes, rebuild or not: a search with min_seq = an
		// acknowledged unit's seq finds it, or answers 503 if the rebuild
		// has not reached it within 5 s.
		for s := range 3 {
			wg.Go(func() {
				for !stop.Load() {
					n := newest.Load()
					if n == nil {
						time.Sleep(time.Millisecond)
						continue
					}
					status, a, body, err := trySearch(p, "q", n.tok, "min_seq", fmt.Sprint(n.u.Seq))
					switch {
					case err == nil && status == 200 && len(a.Hits) == 1 && a.Hits[0].ID == n.u.ID:
						ryw[0].Add(1)
					case status == 503 && strings.Contains(string(body), `"code":"unavailable"`):
						ryw[1].Add(1)
					default:
						problem("read-your-writes %d: search for %s with min_seq %d (unit %s): %d %v %s", s, n.tok, n.u.Seq, n.u.ID, status, err, clip(body))
					}
				}
			})
		}
		wg.Go(func() {
			for !stop.Load() {
				status, a, body, err := trySearch(p, "q", "amber OR onlineword", "count", "true")
				switch {
				case err == nil && status == 200:
					// While the index is rebuilt it answers from what it
					// holds so far, which indexed_seq says: once past
					// the corpus, every amber document is there.
					searches[0].Add(1)
					if a.IndexedSeq >= c.last && *a.Total < int64(amberN) {
						problem("searcher: indexed_seq %d, past the corpus (%d), but amber OR onlineword counts %d, below the corpus's %d",
							a.IndexedSeq, c.last, *a.Total, amberN)
					}
				case status == 503 && strings.Contains(string(body), `"code":"unavailable"`):
					searches[1].Add(1)
				default:
					problem("searcher: %d %v %s", status, err, clip(body))
				}
			}
		})
		// Three rebuilds, one after the other, while all that runs.
		var st reindexStatus
		for round := range 3 {
			time.Sleep(200 * time.Millisecond)
			r := p.call(t, "POST", "/v1/admin/reindex", nil)
			if r.Status != 202 {
				t.Errorf("POST /v1/admin/reindex: %s, want 202", r)
			}
			st = decodeReindex(t, r.Body)
			if !st.Rebuilding || st.Reason == "" || st.StartedAt == "" {
				t.Errorf("POST /v1/admin/reindex answered %+v: want rebuilding, a reason and a start time", st)
			}
			if round == 0 {
				r = p.call(t, "POST", "/v1/admin/reindex", "{}") // while one is queued or running
				if r.Status != 202 || !decodeReindex(t, r.Body).Rebuilding {
					t.Errorf("a second POST /v1/admin/reindex: %s", r)
				}
			}
			if !pollUntil(60*time.Second, 5*time.Millisecond, func() bool { return !getReindex(t, p).Rebuilding }) {
				t.Fatalf("rebuild %d still running after 60 s", round)
			}
		}
		stop.Store(true)
		wg.Wait()
		for _, pr := range problems {
			t.Error(pr)
		}
		head := p.headSeq(t)
		final, phases := waitCaughtUp(t, p, head, 60*time.Second)
		t.Logf("%d units written during the online rebuilds; read-your-writes found %d, 503 %d; searches 200 %d, 503 %d; final %+v, phases %v",
			len(acked), ryw[0].Load(), ryw[1].Load(), searches[0].Load(), searches[1].Load(), final, phases)
		if len(acked) < 20 || ryw[0].Load() < 20 {
			t.Errorf("too little happened: %d units, %d read-your-writes searches", len(acked), ryw[0].Load())
		}
		if final.Reason == "" || final.StartedAt == "" {
			t.Errorf("final status %+v", final)
		}
		if a := search(t, p, "q", "onlineword", "count", "true", "limit", "1"); *a.Total != int64(len(acked)) {
			t.Errorf("onlineword counts %d units, %d were acknowledged", *a.Total, len(acked))
		}
		checkTokens(t, p, acked)
		check(t, p)
		p.Stop()
	})
}

// TestSearchRetention: with --retention-events, once retention has removed
// the start of the log, an index deleted while the server was stopped is
// rebuilt from state (units and stream items) plus the rest of the log, and
// finds every unit and every stream item by its current value only.
func TestSearchRetention(t *testing.T) {
	const keep = 100
	bulk := scaled(40000)
	dir := t.TempDir()
	p := startServer(t, dir, "--retention-events", fmt.Sprint(keep))
	cur := map[string]string{} // item → its current token
	want := map[string]string{}
	put := func(item, tok string) {
		t.Helper()
		p.must(t, 200, "PUT", itemPath("ret", "g", item), mustJSON(t, map[string]any{"text": "retitem " + tok, "v": 1}))
		if old := cur[item]; old != "" {
			want[old] = ""
		}
		cur[item] = tok
	}
	del := func(item string) {
		t.Helper()
		p.must(t, 200, "DELETE", itemPath("ret", "g", item), nil)
		want[cur[item]] = ""
		delete(cur, item)
	}
	// Early changes, which retention will remove from the log: r0..r4 get
	// their last value here, rdel is deleted here, rlate is created here.
	for k := range 10 {
		put(fmt.Sprintf("r%d", k), fmt.Sprintf("rk%dv0", k))
	}
	for v := 1; v <= 3; v++ {
		for k := range 5 {
			put(fmt.Sprintf("r%d", k), fmt.Sprintf("rk%dv%d", k, v))
		}
	}
	put("rdel", "rdelword")
	del("rdel")
	put("rlate", "rlatev0")
	// Bulk, so that a rebuild's scan of the state takes a while.
	ctxs := make([]string, 1000)
	for i := range ctxs {
		ctxs[i] = "ret-bulk"
	}
	for range bulk / 1000 {
		mustPostUnits(t, p, ctxs, json.RawMessage(`"retbulk filler"`))
	}
	early := p.headSeq(t)
	// 300 units, then late changes: r5..r9 updated, rlate deleted.
	var units []ackedUnit
	for b := range 3 {
		batch := make([]map[string]any, 100)
		for i := range batch {
			n := b*100 + i
			batch[i] = map[string]any{"context_id": fmt.Sprintf("ret-%d", n%3), "agent_id": "a", "type": "OBSERVATION",
				"payload": map[string]any{"text": fmt.Sprintf("retcommon ru%d", n)}}
		}
		us := postUnitBatch(t, p, batch)
		for i, u := range us {
			want[fmt.Sprintf("ru%d", b*100+i)] = unitKey(u.ID)
		}
		units = append(units, us...)
	}
	for k := 5; k < 10; k++ {
		put(fmt.Sprintf("r%d", k), fmt.Sprintf("rk%dv1", k))
	}
	del("rlate")
	head := p.headSeq(t)

	// Retention runs every 10 s; wait until it removed the early events.
	var oldest uint64
	start := time.Now()
	if !pollUntil(25*time.Second, 50*time.Millisecond, func() bool {
		oldest = uint64(mustScrape(t, p)["engram_log_oldest_seq"])
		return oldest > early
	}) {
		t.Fatalf("engram_log_oldest_seq still %d 25 s after writing %d events with --retention-events %d", oldest, head, keep)
	}
	t.Logf("oldest seq %d of head %d after %v (early changes up to %d)", oldest, head, time.Since(start).Round(time.Millisecond), early)
	p.Stop()

	if err := os.RemoveAll(filepath.Join(dir, "search")); err != nil {
		t.Fatal(err)
	}
	p = startServer(t, dir, "--retention-events", fmt.Sprint(keep))
	// Kill it while it scans the state, once a chunk is written.
	var st reindexStatus
	if pollUntil(20*time.Second, time.Millisecond, func() bool {
		st = getReindex(t, p)
		return st.Phase == "scan" && st.Scanned > 0 || !st.Rebuilding && st.IndexedSeq >= head
	}) && st.Phase == "scan" {
		p.Kill9()
		t.Logf("SIGKILL while scanning: %+v", st)
		p = startServer(t, dir, "--retention-events", fmt.Sprint(keep))
	} else {
		t.Logf("note: never saw the scan under way (last status %+v); no kill", st)
	}
	first := getReindex(t, p)
	final, phases := waitCaughtUp(t, p, head, 60*time.Second)
	t.Logf("first status %+v; final %+v; phases seen %v", first, final, phases)
	if want := int64(bulk + len(units) + len(cur)); final.Scanned < want || final.Reason == "" {
		t.Errorf("status after the rebuild %+v: want a reason and scanned >= %d (a rebuild from state)", final, want)
	}
	if a := search(t, p, "q", "retbulk", "count", "true", "limit", "1"); *a.Total != int64(bulk) {
		t.Errorf("retbulk counts %d units, want %d", *a.Total, bulk)
	}

	verify := func() {
		t.Helper()
		for item, tok := range cur {
			want[tok] = itemKey("ret", "g", item)
		}
		checkTokens(t, p, want)
		hits := searchAll(t, p, "q", "retcommon", "kind", "workunit", "sort", "recent")
		if len(hits) != len(units) {
			t.Errorf("retcommon finds %d units, want %d", len(hits), len(units))
		}
		seqs := map[string]uint64{}
		for _, u := range units {
			seqs[u.ID] = u.Seq
		}
		for i, h := range hits {
			if h.Seq != seqs[h.ID] {
				t.Errorf("unit %s found at seq %d, its seq is %d", h.ID, h.Seq, seqs[h.ID])
			}
			if i > 0 && h.Seq >= hits[i-1].Seq {
				t.Errorf("sort=recent: seq %d after %d", h.Seq, hits[i-1].Seq)
			}
		}
		items := searchAll(t, p, "q", "retitem", "stream", "ret")
		got := map[string]bool{}
		for _, h := range items {
			got[h.ID] = true
			if tok := cur[h.ID]; tok == "" || !strings.Contains(h.Snippet, tok) {
				t.Errorf("item %s found with %q; it holds %q", h.ID, h.Snippet, tok)
			}
		}
		if len(items) != len(cur) {
			t.Errorf("retitem finds %d items %v, %d are stored", len(items), got, len(cur))
		}
	}
	verify()

	// The rebuilt index follows new changes: an item the scan found is
	// replaced, a new unit is found.
	put("r0", "rk0v9")
	put("r7", "rk7v9")
	u := mustPostUnit(t, p, map[string]any{"context_id": "ret-0", "agent_id": "a", "type": "OBSERVATION",
		"payload": map[string]any{"text": "retcommon ru300"}})
	units = append(units, u)
	want["ru300"] = unitKey(u.ID)
	if a := search(t, p, "q", "rk0v9", "min_seq", fmt.Sprint(u.Seq)); len(a.Hits) != 1 || a.Hits[0].ID != "r0" {
		t.Errorf("r0's new value: %+v", a.Hits)
	}
	verify()
	p.Stop()
}

// TestSearchIndexAhead: the store is restored from an older copy and the
// newer index is kept; the index holds seqs past the log's head, so it is
// rebuilt: the units of the lost history are not found, the new units that
// reuse their seqs are.
func TestSearchIndexAhead(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	unit := func(i int, word string) map[string]any {
		return map[string]any{"context_id": "ahead", "agent_id": "a", "type": "MESSAGE", "payload": fmt.Sprintf("aheadall %s%d", word, i)}
	}
	var batch []map[string]any
	for i := range 50 {
		batch = append(batch, unit(i, "aheadold"))
	}
	old := postUnitBatch(t, p, batch)
	p.Stop()
	backup := t.TempDir()
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(backup, "search")); err != nil {
		t.Fatal(err)
	}

	p = startServer(t, dir)
	batch = batch[:0]
	for i := range 30 {
		batch = append(batch, unit(i, "aheadlost"))
	}
	lost := postUnitBatch(t, p, batch)
	p.must(t, 200, "PUT", itemPath("ahead", "g", "it"), mustJSON(t, "aheadall aheadlostitem"))
	waitCaughtUp(t, p, p.headSeq(t), 20*time.Second)
	p.Stop()

	// Restore the store, keep the index.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "search" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.CopyFS(dir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}

	p = startServer(t, dir)
	head := p.headSeq(t)
	if head != old[len(old)-1].Seq {
		t.Fatalf("restored head %d, want %d", head, old[len(old)-1].Seq)
	}
	batch = batch[:0]
	for i := range 40 {
		batch = append(batch, unit(i, "aheadnext"))
	}
	next := postUnitBatch(t, p, batch) // the seqs the lost units had
	final, _ := waitCaughtUp(t, p, next[len(next)-1].Seq, 20*time.Second)
	t.Logf("after the restore: %+v", final)
	if final.Reason == "" {
		t.Errorf("no rebuild of an index ahead of the log: %+v", final)
	}
	want := map[string]string{"aheadlostitem": ""}
	for i, u := range old {
		want[fmt.Sprintf("aheadold%d", i)] = unitKey(u.ID)
	}
	for i := range lost {
		want[fmt.Sprintf("aheadlost%d", i)] = ""
	}
	for i, u := range next {
		want[fmt.Sprintf("aheadnext%d", i)] = unitKey(u.ID)
	}
	checkTokens(t, p, want)
	if a := search(t, p, "q", "aheadall", "count", "true", "limit", "1"); *a.Total != int64(len(old)+len(next)) {
		t.Errorf("aheadall counts %d documents, want %d", *a.Total, len(old)+len(next))
	}
	p.Stop()
}
