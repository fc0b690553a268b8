package main

// The search group of `engram bench`, on its own in-process server (a
// fresh store, so that its index holds exactly the corpus), each figure
// compared in the same run with raw FTS5 in this process:
//
//  1. corpus: --search-units work units with deterministic text (24 to 36
//     words drawn from a Zipf vocabulary of 200,000 words, so that a few
//     words are in most units and most words in few, plus the word
//     "common" in about half of them; 100 contexts, 8 agents, 5 types),
//     first inserted into a plain FTS5 table (the raw insert ceiling: one
//     transaction per 10,000 rows, WAL, synchronous=NORMAL), then written
//     through POST /v1/workunits/batch, 1000 per request, from 2 clients;
//  2. index throughput: how long after the last write the index holds the
//     last seq (a search with min_seq), as units/s, against the raw insert;
//  3. query latency, one client, sequential: a selective term (10 to 100
//     matching units), two terms ANDed and the common term, each with
//     sort=relevance and sort=recent, limit 20; each query runs on the
//     server over HTTP and on the raw table (the equivalent SELECT), one
//     after the other, so both see the same machine;
//  4. index lag at --search-rate paced single-unit writes for
//     --search-lag-seconds: engram_search_lag_seconds sampled every 100 ms,
//     and every 200 ms a probe that takes the seq of a just-acknowledged
//     write and times how long until a search with min_seq answers.
//
// Budgets (DESIGN.md): each query case's p99 within 1.5 × the raw p99;
// selective terms p99 ≤ 10 ms and sort=recent on the common term p99
// ≤ 20 ms (stated at 1M units); index lag ≤ 1 s at 5k writes/s.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
	_ "modernc.org/sqlite"
)

const (
	groupSearch = "search"

	srchVocab       = 200000 // distinct Zipf words (3 syllables each: unique below 343,000)
	srchZipfS       = 1.1
	srchMinWords    = 24 // Zipf words per unit: 24..36
	srchMaxWords    = 36
	srchCommon      = "common" // in about half of the units
	srchContexts    = 100
	srchAgents      = 8
	srchSeed        = 0x5EA4C4
	srchLimit       = 20
	srchRawTx       = 10000 // rows per transaction of the raw insert
	srchWriters     = 2     // batch clients writing the corpus
	srchMaxTerms    = 64    // distinct selective terms; half as many pairs
	srchCaseCap     = 2 * time.Minute
	srchCatchStall  = time.Minute // no index progress this long: the bench gives up
	srchDrainMax    = 2 * time.Minute
	srchProbeEvery  = 200 * time.Millisecond
	srchSampleEvery = 100 * time.Millisecond

	srchRatioLimit     = 1.5
	srchSelectiveMs    = 10
	srchRecentCommonMs = 20
	srchLagLimitMs     = 1000
	srchBudgetUnits    = 1000000
	srchBudgetRate     = 5000

	srchLagMetric     = "engram_search_lag_seconds"
	srchIndexedMetric = "engram_search_indexed_seq"
)

var srchTypes = []string{"MESSAGE", "REASONING", "TOOL_CALL", "TOOL_RESULT", "OBSERVATION"}

// Measurement ids of the search group.
const (
	srchRawInsertID = "ceiling.search.fts5_insert"
	srchWriteID     = "search.corpus_write"
	srchIndexID     = "search.index"
	srchLagID       = "search.lag"
)

func srchQueryID(c string) string    { return "search.query." + c }
func srchRawQueryID(c string) string { return "ceiling.search.fts5." + c }

// The query kinds and sorts, in the order they run.
const (
	srchSelective = "selective"
	srchAnd2      = "and2"
	srchCommonK   = "common"
	srchRelevance = "relevance"
	srchRecent    = "recent"
)

var srchKindNames = map[string]string{
	srchSelective: "selective term (10-100 matches)",
	srchAnd2:      "two terms ANDed",
	srchCommonK:   "common term (~50% of units)",
}

// srchCaseIDs lists the query cases: kind.sort.
var srchCaseIDs = []string{
	srchSelective + "." + srchRelevance, srchSelective + "." + srchRecent,
	srchAnd2 + "." + srchRelevance, srchAnd2 + "." + srchRecent,
	srchCommonK + "." + srchRelevance, srchCommonK + "." + srchRecent,
}

// srchFigures are the search-specific figures of a search measurement.
type srchFigures struct {
	Units int `json:"units"` // corpus size

	// Query cases (P50Ms/P99Ms of the measurement are per query).
	Case       string  `json:"case,omitempty"` // kind.sort
	Distinct   int     `json:"distinct_queries,omitempty"`
	MatchMin   int64   `json:"matches_min,omitempty"` // units each query matches (raw count)
	MatchMax   int64   `json:"matches_max,omitempty"`
	MatchMean  float64 `json:"matches_mean,omitempty"`
	P50Ratio   float64 `json:"p50_ratio,omitempty"` // server p50 / raw p50
	Mismatches int64   `json:"hit_count_mismatches"`

	// Corpus and index.
	Events       int64   `json:"events,omitempty"`         // log events the corpus wrote
	IndexedAtEnd int64   `json:"indexed_at_end,omitempty"` // events indexed when the writes ended
	WriteS       float64 `json:"write_s,omitempty"`
	CatchUpS     float64 `json:"catch_up_s,omitempty"`          // from the last write's answer until indexed
	OverallRate  float64 `json:"overall_units_per_s,omitempty"` // from the first write until indexed
	AloneRate    float64 `json:"alone_units_per_s,omitempty"`   // after the writes ended
	RawFileMB    float64 `json:"raw_file_mb,omitempty"`

	// Lag.
	TargetRate    float64 `json:"target_writes_per_s,omitempty"`
	Missed        int64   `json:"missed,omitempty"` // paced writes no writer was free for
	Failed        int64   `json:"failed,omitempty"`
	WriteP50Ms    float64 `json:"write_p50_ms,omitempty"`
	WriteP99Ms    float64 `json:"write_p99_ms,omitempty"`
	Probes        int64   `json:"probes,omitempty"`
	ProbeRetries  int64   `json:"probe_retries,omitempty"` // 503s (min_seq not reached in 5 s)
	MetricSamples int64   `json:"metric_samples,omitempty"`
	MetricP50Ms   float64 `json:"metric_p50_ms,omitempty"`
	MetricP99Ms   float64 `json:"metric_p99_ms,omitempty"`
	MetricMaxMs   float64 `json:"metric_max_ms,omitempty"`
	DrainMs       float64 `json:"drain_ms,omitempty"` // last write's answer → index holds it
	Verified      bool    `json:"verified"`
}

// srchReportConfig is the search group's setup in the report.
type srchReportConfig struct {
	Client     string  `json:"client"`
	Raw        string  `json:"raw"`
	Units      int     `json:"units"`
	Corpus     string  `json:"corpus"`
	Queries    int     `json:"queries_per_case"`
	Limit      int     `json:"limit"`
	LagRate    float64 `json:"lag_rate"`
	LagSeconds int     `json:"lag_seconds"`
	LagWriters int     `json:"lag_writers"`
}

const srchClientDesc = "fasthttp in the bench process, one fasthttp.HostClient (1 connection) per client: the corpus from 2 batch clients, queries from 1 client one at a time, paced writes from N clients; latencies in HdrHistograms"

const srchRawDesc = "modernc.org/sqlite in the bench process: CREATE VIRTUAL TABLE d USING fts5(body) in a temp file, WAL, synchronous=NORMAL; queries SELECT rowid, snippet(d,0,'<mark>','</mark>','…',16), bm25(d) FROM d WHERE d MATCH ? ORDER BY rank LIMIT 20 (relevance) and the same without bm25(d) ORDER BY rowid DESC LIMIT 20 (recent, which the server does not score), all rows read"

func (b *bench) srchConfig() *srchReportConfig {
	if b.rep.Config.Search == nil {
		b.rep.Config.Search = &srchReportConfig{
			Client: srchClientDesc, Raw: srchRawDesc, Units: b.cfg.SearchUnits,
			Corpus: fmt.Sprintf("%d-%d words per unit from a Zipf vocabulary (s=%.1f, %d words) plus %q in about half; %d contexts, %d agents, %d types; payload = the text",
				srchMinWords, srchMaxWords, srchZipfS, srchVocab, srchCommon, srchContexts, srchAgents, len(srchTypes)),
			Queries: b.cfg.SearchQueries, Limit: srchLimit, LagRate: b.cfg.SearchRate, LagSeconds: b.cfg.SearchLagSeconds,
			LagWriters: srchLagWriters(b.cfg.SearchRate),
		}
	}
	return b.rep.Config.Search
}

// ---------------------------------------------------------------- flags

// addSearchFlags registers the search group's flags.
func addSearchFlags(fs *flag.FlagSet, cfg *benchConfig) {
	fs.IntVar(&cfg.SearchUnits, "search-units", 1000000, "search: work units in the corpus (the budgets are stated at 1000000; --quick makes it 100000 unless set)")
	fs.IntVar(&cfg.SearchQueries, "search-queries", 200, "search: timed queries per query case, each run on the server and on raw FTS5 (a case stops after "+srchCaseCap.String()+")")
	fs.Float64Var(&cfg.SearchRate, "search-rate", srchBudgetRate, "search: paced single-unit writes/s of the index-lag step (the budget is at 5000)")
	fs.IntVar(&cfg.SearchLagSeconds, "search-lag-seconds", 20, "search: seconds of paced writes in the index-lag step (--quick makes it 5 unless set; 0 skips the step)")
}

// searchFlagDefaults applies --quick to the search flags not set and
// checks them.
func searchFlagDefaults(cfg *benchConfig, set map[string]bool, stderr io.Writer) error {
	if cfg.Quick {
		if !set["search-units"] {
			cfg.SearchUnits = 100000
		}
		if !set["search-lag-seconds"] {
			cfg.SearchLagSeconds = 5
		}
	}
	switch {
	case cfg.SearchUnits < 1000 || cfg.SearchUnits > 100000000:
		fmt.Fprintln(stderr, "engram bench: --search-units must be 1000..100000000")
	case cfg.SearchQueries < 1:
		fmt.Fprintln(stderr, "engram bench: --search-queries must be positive")
	case cfg.SearchRate <= 0 || cfg.SearchRate > 1e6:
		fmt.Fprintln(stderr, "engram bench: --search-rate must be in (0, 1000000]")
	case cfg.SearchLagSeconds < 0:
		fmt.Fprintln(stderr, "engram bench: --search-lag-seconds must not be negative")
	default:
		return nil
	}
	return errUsage
}

// ---------------------------------------------------------------- corpus

// srchWord is the word of Zipf rank k: three consonant-vowel syllables,
// one token for FTS5's unicode61 tokenizer, never "common".
func srchWord(k int) string {
	const cons, vows = "bdfgklmnprstvz", "aeiou"
	var w [6]byte
	for s := 0; s < 3; s++ {
		syl := k % (len(cons) * len(vows))
		k /= len(cons) * len(vows)
		w[2*s], w[2*s+1] = cons[syl/len(vows)], vows[syl%len(vows)]
	}
	return string(w[:])
}

// srchCorpus is the corpus: unit i's text is a function of i alone, so
// that any part of it can be made again (the raw table, the batches, the
// lag step's units) without holding it in memory.
type srchCorpus struct {
	n      int
	vocab  []string
	df     []int32 // units holding each word (set by the raw insert)
	common int     // units holding srchCommon
}

func newSrchCorpus(n int) *srchCorpus {
	c := &srchCorpus{n: n, vocab: make([]string, srchVocab)}
	for k := range c.vocab {
		c.vocab[k] = srchWord(k)
	}
	return c
}

// srchGen makes units' words; one per goroutine.
type srchGen struct {
	pcg *rand.PCG
	r   *rand.Rand
	z   *rand.Zipf
	ids []int32
}

func newSrchGen() *srchGen {
	g := &srchGen{pcg: rand.NewPCG(0, 0)}
	g.r = rand.New(g.pcg)
	g.z = rand.NewZipf(g.r, srchZipfS, 1, srchVocab-1)
	return g
}

// words returns the word ranks of unit i in order (-1 is srchCommon); the
// slice is reused by the next call.
func (g *srchGen) words(i int) []int32 {
	g.pcg.Seed(srchSeed, uint64(i))
	n := srchMinWords + g.r.IntN(srchMaxWords-srchMinWords+1)
	ids := g.ids[:0]
	for k := 0; k < n; k++ {
		ids = append(ids, int32(g.z.Uint64()))
	}
	if g.r.IntN(2) == 0 {
		ids = slices.Insert(ids, g.r.IntN(n+1), -1)
	}
	g.ids = ids
	return ids
}

// appendText appends the text of words to dst and reports whether it
// holds srchCommon.
func (c *srchCorpus) appendText(dst []byte, ids []int32) ([]byte, bool) {
	common := false
	for k, id := range ids {
		if k > 0 {
			dst = append(dst, ' ')
		}
		if id < 0 {
			dst, common = append(dst, srchCommon...), true
		} else {
			dst = append(dst, c.vocab[id]...)
		}
	}
	return dst, common
}

// appendUnitJSON appends the create body of unit i (any i: the lag step
// writes units past the corpus) and reports whether it holds srchCommon.
func (c *srchCorpus) appendUnitJSON(dst []byte, g *srchGen, i int) ([]byte, bool) {
	dst = append(dst, `{"context_id":"bench-search-c`...)
	dst = strconv.AppendInt(dst, int64(i%srchContexts), 10)
	dst = append(dst, `","agent_id":"bench-agent-`...)
	dst = strconv.AppendInt(dst, int64(i%srchAgents), 10)
	dst = append(dst, `","type":"`...)
	dst = append(dst, srchTypes[i%len(srchTypes)]...)
	dst = append(dst, `","payload":"`...)
	dst, common := c.appendText(dst, g.words(i))
	return append(dst, `"}`...), common
}

// batchJSON is the batch body of units from..to-1.
func (c *srchCorpus) batchJSON(g *srchGen, from, to int) []byte {
	b := make([]byte, 0, (to-from)*320+16)
	b = append(b, `{"units":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		b, _ = c.appendUnitJSON(b, g, i)
	}
	return append(b, `]}`...)
}

// ---------------------------------------------------------------- terms

// srchTerms are the queries of each kind.
type srchTerms struct {
	selective []string
	pairs     []string
	note      string
}

// pickSrchTerms chooses the selective words (10 to 100 units each, those
// nearest 50 first; the nearest to 50 when none is in that band) and the
// pairs (words in 1-10% of the units, a rarer one with a more frequent
// one, so that a pair matches roughly 0.1% of the units).
func pickSrchTerms(df []int32, n int) (srchTerms, error) {
	var t srchTerms
	dist := func(k int) int32 { return max(df[k]-50, 50-df[k]) }
	var sel []int
	for k, d := range df {
		if d >= 10 && d <= 100 {
			sel = append(sel, k)
		}
	}
	if len(sel) == 0 {
		for k, d := range df {
			if d > 0 {
				sel = append(sel, k)
			}
		}
		t.note = "no word is in 10-100 units at this size: the selective terms are the words nearest 50 units"
	}
	sort.SliceStable(sel, func(a, b int) bool { return dist(sel[a]) < dist(sel[b]) })
	for _, k := range sel[:min(len(sel), srchMaxTerms)] {
		t.selective = append(t.selective, srchWord(k))
	}
	var band []int
	lo, hi := int32(max(n/100, 1)), int32(max(n/10, 2))
	for k, d := range df {
		if d >= lo && d <= hi {
			band = append(band, k)
		}
	}
	sort.SliceStable(band, func(a, b int) bool { return df[band[a]] < df[band[b]] })
	for i := 0; i < len(band)/2 && i < srchMaxTerms/2; i++ {
		t.pairs = append(t.pairs, srchWord(band[i])+" AND "+srchWord(band[len(band)-1-i]))
	}
	if len(t.selective) == 0 || len(t.pairs) == 0 {
		return t, fmt.Errorf("search: the corpus of %d units has %d selective words and %d words in 1-10%% of the units: too small", n, len(sel), len(band))
	}
	return t, nil
}

// ---------------------------------------------------------------- raw FTS5

// srchRaw is the raw FTS5 table of the ceilings.
type srchRaw struct {
	dir  string
	path string
	db   *sql.DB
	rel  *sql.Stmt
	rec  *sql.Stmt
	cnt  *sql.Stmt
}

func openSrchRaw(parent string) (*srchRaw, error) {
	dir, err := os.MkdirTemp(parent, "search-raw-*")
	if err != nil {
		return nil, err
	}
	r := &srchRaw{dir: dir, path: filepath.Join(dir, "raw.db")}
	r.db, err = sql.Open("sqlite", "file:"+r.path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err == nil {
		r.db.SetMaxOpenConns(1)
		r.db.SetMaxIdleConns(1)
		r.db.SetConnMaxIdleTime(0)
		_, err = r.db.Exec(`CREATE VIRTUAL TABLE d USING fts5(body)`)
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("raw FTS5 table in %s: %w", dir, err)
	}
	return r, nil
}

func (r *srchRaw) close() {
	for _, s := range []*sql.Stmt{r.rel, r.rec, r.cnt} {
		if s != nil {
			s.Close()
		}
	}
	if r.db != nil {
		r.db.Close()
	}
	os.RemoveAll(r.dir)
}

// fileMB is the size of the table's files.
func (r *srchRaw) fileMB() float64 {
	var n int64
	for _, p := range []string{r.path, r.path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return float64(n) / 1e6
}

// insert fills the table with the corpus, srchRawTx rows per transaction,
// timing only the transactions (the texts of a transaction are made
// before it starts), and counts each word's units on the way.
func (r *srchRaw) insert(ctx context.Context, c *srchCorpus, progress func(done int)) (*hdrhistogram.Histogram, time.Duration, error) {
	c.df = make([]int32, srchVocab)
	c.common = 0
	seen := make([]int32, srchVocab) // the last unit (+1) that counted each word
	g := newSrchGen()
	h := newLatencyHist()
	var timed time.Duration
	texts := make([]string, 0, srchRawTx)
	var buf []byte
	for from := 0; from < c.n; from += srchRawTx {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		to := min(from+srchRawTx, c.n)
		texts = texts[:0]
		for i := from; i < to; i++ {
			ids := g.words(i)
			for _, id := range ids {
				if id >= 0 && seen[id] != int32(i+1) {
					seen[id] = int32(i + 1)
					c.df[id]++
				}
			}
			var common bool
			buf, common = c.appendText(buf[:0], ids)
			if common {
				c.common++
			}
			texts = append(texts, string(buf))
		}
		t0 := time.Now()
		tx, err := r.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, 0, err
		}
		st, err := tx.Prepare(`INSERT INTO d(rowid, body) VALUES (?, ?)`)
		if err == nil {
			for k, s := range texts {
				if _, err = st.Exec(int64(from+k+1), s); err != nil {
					break
				}
			}
			st.Close()
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return nil, 0, fmt.Errorf("raw FTS5 insert: %w", err)
		}
		d := time.Since(t0)
		timed += d
		h.RecordValue(max(d.Microseconds(), 1))
		if progress != nil {
			progress(to)
		}
	}
	return h, timed, nil
}

// prepare readies the query statements.
func (r *srchRaw) prepare() error {
	// What the server answers: relevance with its bm25 score, recent
	// without one (see internal/search's sqlRecent).
	const cols = `SELECT rowid, snippet(d, 0, '<mark>', '</mark>', '…', 16)`
	const match = ` FROM d WHERE d MATCH ?`
	var err error
	if r.rel, err = r.db.Prepare(cols + `, bm25(d)` + match + ` ORDER BY rank LIMIT ` + strconv.Itoa(srchLimit)); err != nil {
		return err
	}
	if r.rec, err = r.db.Prepare(cols + match + ` ORDER BY rowid DESC LIMIT ` + strconv.Itoa(srchLimit)); err != nil {
		return err
	}
	r.cnt, err = r.db.Prepare(`SELECT count(*) FROM d WHERE d MATCH ?`)
	return err
}

// query runs q with the sort's statement and reads every row.
func (r *srchRaw) query(ctx context.Context, q, sortBy string) (int, error) {
	st := r.rel
	if sortBy == srchRecent {
		st = r.rec
	}
	rows, err := st.QueryContext(ctx, q)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	var (
		rowid int64
		snip  string
		score float64
	)
	dest := []any{&rowid, &snip, &score}
	if sortBy == srchRecent {
		dest = dest[:2] // no score, as the server
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func (r *srchRaw) count(ctx context.Context, q string) (int64, error) {
	var n int64
	err := r.cnt.QueryRowContext(ctx, q).Scan(&n)
	return n, err
}

// ---------------------------------------------------------------- HTTP client

// srchClient is one connection to the server.
type srchClient struct {
	hc   *fasthttp.HostClient
	req  *fasthttp.Request
	resp *fasthttp.Response
	base string
}

func newSrchClient(base string) *srchClient {
	return &srchClient{
		hc:  &fasthttp.HostClient{Addr: strings.TrimPrefix(base, "http://"), MaxConns: 1, ReadTimeout: time.Minute, WriteTimeout: time.Minute, MaxResponseBodySize: 64 << 20},
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(), base: base,
	}
}

func (c *srchClient) close() {
	c.hc.CloseIdleConnections()
	fasthttp.ReleaseRequest(c.req)
	fasthttp.ReleaseResponse(c.resp)
}

// do sends one request; the answer's body is valid until the next call.
func (c *srchClient) do(method, pathQuery string, body []byte) (int, []byte, time.Duration, error) {
	c.req.Reset()
	c.req.SetRequestURI(c.base + pathQuery)
	c.req.Header.SetMethod(method)
	if body != nil {
		c.req.Header.SetContentType("application/json")
		c.req.SetBodyRaw(body)
	}
	t0 := time.Now()
	err := c.hc.Do(c.req, c.resp)
	lat := time.Since(t0)
	if err != nil {
		return 0, nil, lat, err
	}
	return c.resp.StatusCode(), c.resp.Body(), lat, nil
}

// srchPath is the search request of q.
func srchPath(q, sortBy string, limit int, minSeq uint64, count bool) string {
	p := "/v1/search?q=" + url.QueryEscape(q) + "&sort=" + sortBy + "&limit=" + strconv.Itoa(limit)
	if minSeq > 0 {
		p += "&min_seq=" + strconv.FormatUint(minSeq, 10)
	}
	if count {
		p += "&count=true"
	}
	return p
}

// srchAnswer is what the bench reads of a search answer.
type srchAnswer struct {
	Hits       []json.RawMessage `json:"hits"`
	Total      *int64            `json:"total"`
	IndexedSeq uint64            `json:"indexed_seq"`
}

// search sends one search and decodes a 200 (after the clock stops);
// anything else is an error.
func (c *srchClient) search(q, sortBy string, limit int, count bool) (srchAnswer, time.Duration, error) {
	var a srchAnswer
	p := srchPath(q, sortBy, limit, 0, count)
	st, body, lat, err := c.do("GET", p, nil)
	if err == nil && st != 200 {
		err = fmt.Errorf("GET %s: status %d: %.300s", p, st, body)
	}
	if err == nil {
		if err = json.Unmarshal(body, &a); err != nil {
			err = fmt.Errorf("GET %s: %w: %.300s", p, err, body)
		}
	}
	return a, lat, err
}

var indexedSeqKey = []byte(`"indexed_seq":`)

// waitIndexed waits until the index holds seq: a search with min_seq
// (sort=recent, so that the query itself costs next to nothing) answers
// 200; the server waits up to 5 s and then answers 503 with how far the
// index got. It gives up when the index makes no progress for stall.
func (c *srchClient) waitIndexed(ctx context.Context, seq uint64, stall time.Duration, progress func(indexed uint64)) (retries int64, err error) {
	p := srchPath(srchCommon, srchRecent, 1, seq, false)
	last, lastAt := uint64(0), time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return retries, err
		}
		st, body, _, err := c.do("GET", p, nil)
		switch {
		case err != nil:
			return retries, err
		case st == 200:
			return retries, nil
		case st != 503:
			return retries, fmt.Errorf("GET %s: status %d: %.300s", p, st, body)
		}
		retries++
		if i := bytes.Index(body, indexedSeqKey); i >= 0 {
			if v, _, ok := parseDigits(body[i+len(indexedSeqKey):]); ok && uint64(v) > last {
				last, lastAt = uint64(v), time.Now()
				if progress != nil {
					progress(last)
				}
			}
		}
		if time.Since(lastAt) > stall {
			return retries, fmt.Errorf("the index made no progress for %s (indexed_seq %d, waiting for %d)", stall, last, seq)
		}
	}
}

// scrapeMetric reads one unlabeled metric from /metrics.
func scrapeMetric(base, name string) (float64, bool) {
	st, body, err := doOnce(base+"/metrics", "GET", nil)
	if err != nil || st != 200 {
		return 0, false
	}
	v, ok := metricValues(body)[name]
	return v, ok
}

// ---------------------------------------------------------------- the group

// srchRun is the state of one run of the group.
type srchRun struct {
	base      string
	corpus    *srchCorpus
	raw       *srchRaw
	terms     srchTerms
	cases     []srchCase
	lagNext   int   // the next unit index the lag step writes
	indexed   int64 // units holding srchCommon the server should have
	headStart uint64
}

// srchCase is one query case.
type srchCase struct {
	id, kind, sort string
	queries        []string
	matches        []int64
}

// searchScenarios runs the search group on its own server.
func (b *bench) searchScenarios(ctx context.Context) (err error) {
	b.srchConfig()
	n := b.cfg.SearchUnits
	srv, err := startEngramServer(filepath.Join(b.dataDir, "search-server"), b.cfg.Sync)
	if err != nil {
		return fmt.Errorf("search: engram server: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("search: server shutdown: %w", serr)
		}
	}()
	r := &srchRun{base: "http://" + srv.Addr(), corpus: newSrchCorpus(n), lagNext: n}

	// Preflight: the route answers on the empty index.
	pre := newSrchClient(r.base)
	a, _, err := pre.search(srchCommon, srchRecent, 1, false)
	pre.close()
	if err != nil {
		return fmt.Errorf("search preflight (does the server serve /v1/search?): %w", err)
	}
	r.headStart = a.IndexedSeq

	r.raw, err = openSrchRaw(b.dataDir)
	if err != nil {
		return err
	}
	defer r.raw.close()

	if err := b.srchCorpusStep(ctx, r); err != nil {
		return err
	}
	if err := b.srchPickCases(ctx, r); err != nil {
		return err
	}
	if err := b.measure(ctx, func() ([]measurement, error) { return b.srchQueryStep(ctx, r) }); err != nil {
		return err
	}
	if b.cfg.SearchLagSeconds > 0 {
		if err := b.measure(ctx, func() ([]measurement, error) {
			m, err := b.srchLagStep(ctx, r)
			if err != nil {
				return nil, err
			}
			return []measurement{m}, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// srchCorpusStep measures the raw insert ceiling, then writes the corpus
// through the server and waits for its index. It runs once (no retries:
// the corpus cannot be written twice).
func (b *bench) srchCorpusStep(ctx context.Context, r *srchRun) error {
	c := r.corpus
	n := c.n

	// 1. The raw insert ceiling.
	name := fmt.Sprintf("ceiling: raw FTS5 insert of %d units' text, %d rows per transaction", n, srchRawTx)
	b.progress("%s", name)
	b.waitQuiet(ctx)
	s0 := sampleCPU()
	lastSaid := time.Now()
	h, timed, err := r.raw.insert(ctx, c, func(done int) {
		if time.Since(lastSaid) > 10*time.Second {
			b.progress("  raw insert: %d/%d", done, n)
			lastSaid = time.Now()
		}
	})
	s1 := sampleCPU()
	if err != nil {
		return err
	}
	lr := loadResult{Clients: 1, Requests: int64(n), DurationSec: timed.Seconds()}
	fillPercentiles(&lr, h)
	lr.ReqPerSec = float64(n) / lr.DurationSec
	cm := fromLoad(srchRawInsertID, name, kindCeiling, "unit", lr)
	cm.Group = groupSearch
	cm.OtherCores, cm.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	cm.Search = &srchFigures{Units: n, RawFileMB: r.raw.fileMB(), Verified: true}
	cm.Note = fmt.Sprintf("latencies per %d-row transaction; texts made before each; %d units hold %q; file %.0f MB", srchRawTx, c.common, srchCommon, cm.Search.RawFileMB)
	b.show(cm)
	b.rep.Measurements = append(b.rep.Measurements, cm)
	if err := r.raw.prepare(); err != nil {
		return fmt.Errorf("raw FTS5 statements: %w", err)
	}

	// 2. The corpus through the server, then its index.
	name = fmt.Sprintf("corpus: %d units via POST /v1/workunits/batch (%d per request), %d clients", n, batchSize, srchWriters)
	b.progress("%s", name)
	b.waitQuiet(ctx)
	stop, err := b.startProfile(srchIndexID)
	if err != nil {
		return err
	}
	defer stop()
	w0 := scrapeWAL(r.base)
	s0 = sampleCPU()
	wr, err := srchWriteCorpus(ctx, r.base, c)
	writeEnd := time.Now()
	s1 = sampleCPU()
	if err != nil {
		return fmt.Errorf("search corpus: %w", err)
	}
	indexedAtEnd, indexedOK := scrapeMetric(r.base, srchIndexedMetric)
	wn := walNote(w0, scrapeWAL(r.base))
	lr = loadResult{Driver: "fasthttp", Clients: srchWriters, Requests: int64(n), DurationSec: wr.elapsed.Seconds()}
	fillPercentiles(&lr, wr.lat)
	lr.ReqPerSec = float64(n) / lr.DurationSec
	wm := fromLoad(srchWriteID, name, kindScenario, "unit", lr)
	wm.Group = groupSearch
	wm.OtherCores, wm.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	events := int64(wr.maxSeq - r.headStart)
	wm.Search = &srchFigures{Units: n, Events: events, WriteS: wr.elapsed.Seconds(), Verified: true}
	wm.Note = joinNoteIf(fmt.Sprintf("latencies per batch; %d log events (seq %d..%d); the bodies are made in this process meanwhile", events, r.headStart+1, wr.maxSeq), wn)
	b.show(wm)
	b.rep.Measurements = append(b.rep.Measurements, wm)

	b.progress("waiting for the index to hold seq %d (it held %.0f when the writes ended)", wr.maxSeq, indexedAtEnd)
	cl := newSrchClient(r.base)
	defer cl.close()
	s0 = sampleCPU()
	lastSaid = time.Now()
	_, err = cl.waitIndexed(ctx, wr.maxSeq, srchCatchStall, func(ix uint64) {
		if time.Since(lastSaid) >= 5*time.Second {
			b.progress("  index at %d/%d", ix, wr.maxSeq)
			lastSaid = time.Now()
		}
	})
	caught := time.Now()
	s1 = sampleCPU()
	if err != nil {
		return fmt.Errorf("search index catch-up: %w", err)
	}
	catchUp := caught.Sub(writeEnd)
	f := &srchFigures{Units: n, Events: events, IndexedAtEnd: int64(indexedAtEnd) - int64(r.headStart),
		WriteS: wr.elapsed.Seconds(), CatchUpS: catchUp.Seconds(), Verified: true}
	unitsPerEvent := float64(n) / float64(max(events, 1))
	f.OverallRate = float64(n) / caught.Sub(wr.start).Seconds()
	left := float64(events - f.IndexedAtEnd)
	if catchUp > 0 {
		f.AloneRate = left * unitsPerEvent / catchUp.Seconds()
	}
	im := measurement{ID: srchIndexID, Group: groupSearch, Kind: kindScenario, Unit: "unit", Clients: 1, Ops: int64(n),
		OtherCores: otherCores(s0, s1), SelfCores: selfCores(s0, s1), Search: f}
	if !indexedOK {
		f.AloneRate = 0
		im.Name = "search index throughput, from the first write (" + srchIndexedMetric + " not on /metrics)"
		im.Rate, im.DurationS = f.OverallRate, caught.Sub(wr.start).Seconds()
		im.Note = fmt.Sprintf("indexed %s after the writes ended; how far the index was then is unknown", catchUp.Round(time.Millisecond))
	} else if left >= math.Max(10000, 0.1*float64(events)) {
		im.Name = "search index throughput, after the writes ended (indexer alone)"
		im.Rate, im.DurationS = f.AloneRate, catchUp.Seconds()
		im.Note = fmt.Sprintf("%.0f of %d events were left when the writes ended; indexed %s later; from the first write until indexed: %s units/s",
			left, events, catchUp.Round(time.Millisecond), fmtRate(f.OverallRate))
	} else {
		im.Name = "search index throughput, from the first write (the index kept up with the writes)"
		im.Rate, im.DurationS = f.OverallRate, caught.Sub(wr.start).Seconds()
		im.Note = fmt.Sprintf("only %.0f of %d events were left when the writes ended (indexed %s later): the rate is bounded by the writes, so it is a lower bound of the indexer's",
			left, events, catchUp.Round(time.Millisecond))
	}
	im.compareWith(cm)
	im.P99Ratio = 0
	b.show(im)
	b.rep.Measurements = append(b.rep.Measurements, im)
	r.indexed = int64(c.common)
	return nil
}

// srchWriteResult is what srchWriteCorpus did.
type srchWriteResult struct {
	start   time.Time
	elapsed time.Duration
	lat     *hdrhistogram.Histogram // per batch
	maxSeq  uint64
}

// srchWriteCorpus writes the corpus in batches from srchWriters clients;
// one goroutine makes the bodies ahead of them.
func srchWriteCorpus(ctx context.Context, base string, c *srchCorpus) (srchWriteResult, error) {
	res := srchWriteResult{lat: newLatencyHist()}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bodies := make(chan []byte, 2*srchWriters)
	go func() {
		defer close(bodies)
		g := newSrchGen()
		for from := 0; from < c.n; from += batchSize {
			select {
			case bodies <- c.batchJSON(g, from, min(from+batchSize, c.n)):
			case <-wctx.Done():
				return
			}
		}
	}()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	res.start = time.Now()
	for w := 0; w < srchWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newSrchClient(base)
			defer cl.close()
			h := newLatencyHist()
			var top uint64
			for body := range bodies {
				if wctx.Err() != nil {
					continue // drain
				}
				st, resp, lat, err := cl.do("POST", "/v1/workunits/batch", body)
				if err == nil && st != 201 {
					err = fmt.Errorf("POST /v1/workunits/batch: status %d: %.300s", st, resp)
				}
				if err != nil {
					fail(err)
					continue
				}
				h.RecordValue(max(lat.Microseconds(), 1))
				if i := bytes.LastIndex(resp, seqKey); i >= 0 {
					if v, _, ok := parseDigits(resp[i+len(seqKey):]); ok {
						top = max(top, uint64(v))
					}
				}
			}
			mu.Lock()
			res.lat.Merge(h)
			res.maxSeq = max(res.maxSeq, top)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(res.start)
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.maxSeq == 0 {
		return res, errors.New("no seq in the batch answers")
	}
	return res, nil
}

// srchPickCases chooses the queries and counts their matches in the raw
// table; the server's counts of a few must equal them (the same corpus).
func (b *bench) srchPickCases(ctx context.Context, r *srchRun) error {
	var err error
	if r.terms, err = pickSrchTerms(r.corpus.df, r.corpus.n); err != nil {
		return err
	}
	if r.terms.note != "" {
		b.note("search: %s", r.terms.note)
	}
	byKind := map[string][]string{srchSelective: r.terms.selective, srchAnd2: r.terms.pairs, srchCommonK: {srchCommon}}
	counts := map[string]int64{}
	for _, qs := range byKind {
		for _, q := range qs {
			if counts[q], err = r.raw.count(ctx, q); err != nil {
				return fmt.Errorf("raw FTS5 count of %q: %w", q, err)
			}
		}
	}
	r.cases = nil
	for _, id := range srchCaseIDs {
		kind, sortBy, _ := strings.Cut(id, ".")
		sc := srchCase{id: id, kind: kind, sort: sortBy, queries: byKind[kind]}
		for _, q := range sc.queries {
			sc.matches = append(sc.matches, counts[q])
		}
		r.cases = append(r.cases, sc)
	}
	// The server's totals of the first queries of each kind.
	cl := newSrchClient(r.base)
	defer cl.close()
	for _, qs := range byKind {
		for _, q := range qs[:min(len(qs), 3)] {
			a, _, err := cl.search(q, srchRecent, 1, true)
			if err != nil {
				return fmt.Errorf("search count check: %w", err)
			}
			if a.Total == nil || *a.Total != counts[q] {
				got := "no total"
				if a.Total != nil {
					got = strconv.FormatInt(*a.Total, 10)
				}
				return fmt.Errorf("search: the server counts %s units matching %q, the raw FTS5 table of the same texts %d: the index does not hold the corpus", got, q, counts[q])
			}
		}
	}
	if int64(r.corpus.common) != counts[srchCommon] {
		return fmt.Errorf("search: %d units hold %q, the raw table counts %d", r.corpus.common, srchCommon, counts[srchCommon])
	}
	return nil
}

// srchQueryStep runs every query case: per query the server (HTTP) and
// the raw table, in alternating order.
func (b *bench) srchQueryStep(ctx context.Context, r *srchRun) ([]measurement, error) {
	cl := newSrchClient(r.base)
	defer cl.close()
	var out []measurement
	for _, sc := range r.cases {
		b.waitQuiet(ctx)
		kname := srchKindNames[sc.kind]
		name := fmt.Sprintf("search %s, sort=%s, limit %d", kname, sc.sort, srchLimit)
		b.progress("%s: %d distinct queries, %d timed on the server and on raw FTS5", name, len(sc.queries), b.cfg.SearchQueries)
		// Warm-up: each distinct query once on each.
		for _, q := range sc.queries {
			if _, _, err := cl.search(q, sc.sort, srchLimit, false); err != nil {
				return nil, err
			}
			if _, err := r.raw.query(ctx, q, sc.sort); err != nil {
				return nil, fmt.Errorf("raw FTS5 %q: %w", q, err)
			}
		}
		stop, err := b.startProfile(srchQueryID(sc.id))
		if err != nil {
			return nil, err
		}
		srvH, rawH := newLatencyHist(), newLatencyHist()
		var srvT, rawT time.Duration
		var mismatches int64
		s0 := sampleCPU()
		start := time.Now()
		done := 0
		for j := 0; j < b.cfg.SearchQueries && time.Since(start) < srchCaseCap && ctx.Err() == nil; j++ {
			q := sc.queries[j%len(sc.queries)]
			var hits, rows int
			for side := 0; side < 2; side++ {
				if (side+j)%2 == 0 {
					a, lat, err := cl.search(q, sc.sort, srchLimit, false)
					if err != nil {
						stop()
						return nil, err
					}
					hits = len(a.Hits)
					srvH.RecordValue(max(lat.Microseconds(), 1))
					srvT += lat
				} else {
					t0 := time.Now()
					n, err := r.raw.query(ctx, q, sc.sort)
					lat := time.Since(t0)
					if err != nil {
						stop()
						return nil, fmt.Errorf("raw FTS5 %q: %w", q, err)
					}
					rows = n
					rawH.RecordValue(max(lat.Microseconds(), 1))
					rawT += lat
				}
			}
			if hits != rows {
				mismatches++
			}
			done++
		}
		s1 := sampleCPU()
		stop()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f := srchCaseFigures(sc, r.corpus.n)
		rlr := loadResult{Clients: 1, Requests: int64(done), DurationSec: rawT.Seconds()}
		fillPercentiles(&rlr, rawH)
		rlr.ReqPerSec = ratio(float64(done), rlr.DurationSec)
		rm := fromLoad(srchRawQueryID(sc.id), "ceiling: raw FTS5 "+name, kindCeiling, "query", rlr)
		rm.Group = groupSearch
		rm.OtherCores, rm.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
		rf := f
		rm.Search = &rf
		slr := loadResult{Driver: "fasthttp", Clients: 1, Requests: int64(done), DurationSec: srvT.Seconds()}
		fillPercentiles(&slr, srvH)
		slr.ReqPerSec = ratio(float64(done), slr.DurationSec)
		sm := fromLoad(srchQueryID(sc.id), name, kindScenario, "query", slr)
		sm.Group = groupSearch
		sm.OtherCores, sm.SelfCores = rm.OtherCores, rm.SelfCores
		sm.compareWith(rm)
		f.P50Ratio = ratio(sm.P50Ms, rm.P50Ms)
		f.Mismatches = mismatches
		f.Verified = mismatches == 0
		sm.Search = &f
		if mismatches > 0 {
			sm.Invalid = fmt.Sprintf("%d of %d queries answered another number of hits than raw FTS5", mismatches, done)
		}
		if done < b.cfg.SearchQueries {
			sm.Note = fmt.Sprintf("stopped after %d queries: the case's %s cap", done, srchCaseCap)
		}
		b.show(rm)
		b.show(sm)
		out = append(out, rm, sm)
	}
	return out, nil
}

// srchCaseFigures describes a case's queries.
func srchCaseFigures(sc srchCase, units int) srchFigures {
	f := srchFigures{Units: units, Case: sc.id, Distinct: len(sc.queries)}
	var sum int64
	for i, m := range sc.matches {
		if i == 0 || m < f.MatchMin {
			f.MatchMin = m
		}
		f.MatchMax = max(f.MatchMax, m)
		sum += m
	}
	if len(sc.matches) > 0 {
		f.MatchMean = float64(sum) / float64(len(sc.matches))
	}
	return f
}

// srchLagWriters is how many clients the lag step writes from: enough for
// the rate at 20 ms a write.
func srchLagWriters(rate float64) int {
	return min(max(int(math.Ceil(rate/50)), 8), 256)
}

// srchAck is a write's seq and when its answer came.
type srchAck struct {
	seq uint64
	ns  int64
}

// srchLagStep writes paced single units and measures how far behind the
// index runs.
func (b *bench) srchLagStep(ctx context.Context, r *srchRun) (measurement, error) {
	rate := b.cfg.SearchRate
	d := time.Duration(b.cfg.SearchLagSeconds) * time.Second
	writers := srchLagWriters(rate)
	name := fmt.Sprintf("search index lag, paced POST /v1/workunits at %s/s, %d clients", fmtRate(rate), writers)
	b.waitQuiet(ctx)
	b.progress("%s (%s)", name, d)
	stop, err := b.startProfile(srchLagID)
	if err != nil {
		return measurement{}, err
	}
	defer stop()

	var (
		next      atomic.Int64
		committed atomic.Int64
		failed    atomic.Int64
		commons   atomic.Int64
		missed    atomic.Int64
		mu        sync.Mutex
		latest    srchAck
		firstErr  string
		writeH    = newLatencyHist()
		wg        sync.WaitGroup
	)
	base := r.lagNext
	tokens := make(chan struct{}, max(int(rate), 64))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newSrchClient(r.base)
			defer cl.close()
			g := newSrchGen()
			h := newLatencyHist()
			var body []byte
			for range tokens {
				if ctx.Err() != nil {
					continue // drain
				}
				i := base + int(next.Add(1)-1)
				var common bool
				body, common = r.corpus.appendUnitJSON(body[:0], g, i)
				st, resp, lat, err := cl.do("POST", "/v1/workunits", body)
				if err == nil && st != 201 {
					err = fmt.Errorf("POST /v1/workunits: status %d: %.200s", st, resp)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				now := time.Now().UnixNano()
				h.RecordValue(max(lat.Microseconds(), 1))
				committed.Add(1)
				if common {
					commons.Add(1)
				}
				if seq, ok := parseSeqField(resp); ok {
					mu.Lock()
					if seq > latest.seq {
						latest = srchAck{seq, now}
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			writeH.Merge(h)
			mu.Unlock()
		}()
	}

	// The metric sampler and the prober run while the writes do.
	var aux sync.WaitGroup
	metricH := newLatencyHist()
	var metricMax float64
	var samples int64
	aux.Add(1)
	go func() {
		defer aux.Done()
		cl := newSrchClient(r.base)
		defer cl.close()
		t := time.NewTicker(srchSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			st, body, _, err := cl.do("GET", "/metrics", nil)
			if err != nil || st != 200 {
				continue
			}
			if v, ok := metricValues(body)[srchLagMetric]; ok {
				metricH.RecordValue(max(int64(v*1e6), 0)) // 0: caught up
				metricMax = math.Max(metricMax, v*1000)
				samples++
			}
		}
	}()
	probeH := newLatencyHist()
	var probes, retries int64
	var probeErr error
	aux.Add(1)
	go func() {
		defer aux.Done()
		cl := newSrchClient(r.base)
		defer cl.close()
		t := time.NewTicker(srchProbeEvery)
		defer t.Stop()
		var probed uint64
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			a := latest
			mu.Unlock()
			if a.seq <= probed {
				continue
			}
			probed = a.seq
			n, err := cl.waitIndexed(ctx, a.seq, srchCatchStall, nil)
			retries += n
			if err != nil {
				probeErr = err
				return
			}
			probeH.RecordValue(max((time.Now().UnixNano()-a.ns)/1000, 1))
			probes++
		}
	}()

	// The pacer: tokens at the rate; one that finds no room (every writer
	// busy and a second's worth queued) is missed.
	s0 := sampleCPU()
	w0 := scrapeWAL(r.base)
	start := time.Now()
	var sent int64
	tick := time.NewTicker(time.Millisecond)
pace:
	for ctx.Err() == nil {
		<-tick.C
		el := time.Since(start)
		if el >= d {
			el = d
		}
		due := int64(el.Seconds() * rate)
		for sent < due {
			select {
			case tokens <- struct{}{}:
				sent++
			default:
				missed.Add(due - sent)
				sent = due
			}
		}
		if el >= d {
			break pace
		}
	}
	tick.Stop()
	close(tokens)
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	aux.Wait()
	s1 := sampleCPU()
	wn := walNote(w0, scrapeWAL(r.base))
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}
	if probeErr != nil {
		return measurement{}, fmt.Errorf("search lag probe: %w", probeErr)
	}
	r.lagNext = base + int(next.Load())
	r.indexed += commons.Load()

	// Drain: until the index holds the last acknowledged write.
	mu.Lock()
	last := latest
	mu.Unlock()
	cl := newSrchClient(r.base)
	defer cl.close()
	var drain time.Duration
	if last.seq > 0 {
		dctx, dcancel := context.WithTimeout(ctx, srchDrainMax)
		_, err := cl.waitIndexed(dctx, last.seq, srchCatchStall, nil)
		dcancel()
		if err != nil {
			return measurement{}, fmt.Errorf("search lag drain: %w", err)
		}
		drain = time.Duration(max(time.Now().UnixNano()-last.ns, 0))
	}
	// Every unit holding the common word is in the index.
	a, _, err := cl.search(srchCommon, srchRecent, 1, true)
	if err != nil {
		return measurement{}, fmt.Errorf("search lag count check: %w", err)
	}

	lr := loadResult{Driver: "fasthttp", Clients: writers, Requests: committed.Load(), DurationSec: elapsed.Seconds()}
	fillPercentiles(&lr, probeH)
	lr.ReqPerSec = float64(lr.Requests) / lr.DurationSec
	m := fromLoad(srchLagID, name, kindScenario, "write", lr)
	m.Group = groupSearch
	m.OtherCores, m.SelfCores = otherCores(s0, s1), selfCores(s0, s1)
	f := &srchFigures{Units: r.corpus.n, TargetRate: rate, Missed: missed.Load(), Failed: failed.Load(),
		Probes: probes, ProbeRetries: retries, MetricSamples: samples, MetricMaxMs: metricMax, DrainMs: float64(drain) / 1e6}
	f.WriteP50Ms, f.WriteP99Ms, _, _ = histMs(writeH)
	if samples > 0 {
		f.MetricP50Ms, f.MetricP99Ms, _, _ = histMs(metricH)
	}
	m.Search = f
	var inv []string
	if f.Failed > 0 {
		inv = append(inv, fmt.Sprintf("%d writes failed, first: %s", f.Failed, firstErr))
	}
	if lr.ReqPerSec < 0.9*rate {
		inv = append(inv, fmt.Sprintf("held %s writes/s, under 90%% of the %s asked (%d paced writes missed: no writer free)", fmtRate(lr.ReqPerSec), fmtRate(rate), f.Missed))
	}
	if probes == 0 {
		inv = append(inv, "no probe completed")
	}
	if a.Total == nil || *a.Total != r.indexed {
		got := "no total"
		if a.Total != nil {
			got = strconv.FormatInt(*a.Total, 10)
		}
		inv = append(inv, fmt.Sprintf("the index counts %s units holding %q, %d were written", got, srchCommon, r.indexed))
	} else {
		f.Verified = f.Failed == 0
	}
	m.Invalid = strings.Join(inv, "; ")
	m.Note = joinNoteIf(fmt.Sprintf("p50/p99/max: probe lag (a just-acknowledged write's answer → a search with its min_seq answered), %d probes every %s, %d answered 503 first; %s sampled every %s: p50 %s p99 %s max %s (%d samples); writes p50 %s p99 %s; the index held the last write %s after its answer; %d units with %q counted as written",
		probes, srchProbeEvery, retries, srchLagMetric, srchSampleEvery, fmtMs(f.MetricP50Ms), fmtMs(f.MetricP99Ms), fmtMs(f.MetricMaxMs), samples,
		fmtMs(f.WriteP50Ms), fmtMs(f.WriteP99Ms), fmtMs(f.DrainMs), r.indexed, srchCommon), wn)
	b.show(m)
	return m, nil
}

// ---------------------------------------------------------------- budgets

func srchBudgetRatioName(caseID string) string {
	kind, sortBy, _ := strings.Cut(caseID, ".")
	return fmt.Sprintf("search: %s, sort=%s: p99 vs raw FTS5", srchKindNames[kind], sortBy)
}

const (
	srchBudgetLagProbe  = "search: index lag: p99 (write answered → min_seq search answered)"
	srchBudgetLagMetric = "search: index lag: max of " + srchLagMetric + " (every 100 ms)"
)

// searchBudgetUses says whether search budget b uses measurement id.
func searchBudgetUses(b budgetResult, id string) (uses, known bool) {
	if !strings.HasPrefix(b.Name, "search: ") {
		return false, false
	}
	if c, ok := strings.CutPrefix(b.FigureID, "search.query."); ok {
		return id == b.FigureID || id == srchRawQueryID(c), true
	}
	return id == b.FigureID, true
}

// computeSearchBudgets checks the search figures (none when the group did
// not run).
func computeSearchBudgets(ms []measurement, syncMode string) []budgetResult {
	if !hasGroup(ms, groupSearch) {
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
	atSize := func(b *budgetResult, m measurement) {
		if m.Search != nil && m.Search.Units != srchBudgetUnits && (b.Result == resultMet || b.Result == resultNotMet) {
			b.Reason = joinNote(b.Reason, fmt.Sprintf("corpus of %d units; the budget is stated at %d", m.Search.Units, srchBudgetUnits))
		}
	}
	for _, id := range srchCaseIDs {
		kind, sortBy, _ := strings.Cut(id, ".")
		b := budgetResult{Name: srchBudgetRatioName(id), FigureID: srchQueryID(id), Unit: "ms", Cmp: "<=", Limit: srchRatioLimit,
			Budget: fmt.Sprintf("p99 ≤ %.1f × raw FTS5 p99, same queries and corpus", srchRatioLimit)}
		s, okS := findMeasurement(ms, srchQueryID(id))
		c, okC := findMeasurement(ms, srchRawQueryID(id))
		if !okS || !okC {
			var miss []string
			if !okS {
				miss = append(miss, srchQueryID(id))
			}
			if !okC {
				miss = append(miss, srchRawQueryID(id))
			}
			b.Result, b.Reason = resultNotMeasured, "missing "+strings.Join(miss, ", ")
			out = append(out, b)
			continue
		}
		b.Figure, b.Ceiling = s.P99Ms, c.P99Ms
		b.CeilingDesc = "raw FTS5 p99"
		b.evaluate(invalidOf(s, c))
		out = append(out, b)
		limit := 0.0
		switch {
		case kind == srchSelective:
			limit = srchSelectiveMs
		case kind == srchCommonK && sortBy == srchRecent:
			limit = srchRecentCommonMs
		}
		if limit > 0 {
			a := budgetResult{Name: fmt.Sprintf("search: %s, sort=%s: p99", srchKindNames[kind], sortBy), FigureID: srchQueryID(id), Unit: "ms",
				Cmp: "<=", Limit: limit, Absolute: true, Budget: fmt.Sprintf("p99 ≤ %.0f ms (absolute, at 1M units)", limit), Figure: s.P99Ms}
			a.evaluate(invalidOf(s))
			atSize(&a, s)
			out = append(out, a)
		}
	}
	lag, ok := findMeasurement(ms, srchLagID)
	for _, k := range []struct {
		name string
		fig  func() float64
	}{
		{srchBudgetLagProbe, func() float64 { return lag.P99Ms }},
		{srchBudgetLagMetric, func() float64 { return lag.Search.MetricMaxMs }},
	} {
		b := budgetResult{Name: k.name, FigureID: srchLagID, Unit: "ms", Cmp: "<=", Limit: srchLagLimitMs, Absolute: true,
			Budget: fmt.Sprintf("≤ %d ms at %d writes/s (absolute)", srchLagLimitMs, srchBudgetRate)}
		if !ok || lag.Search == nil {
			b.Result, b.Reason = resultNotMeasured, "missing "+srchLagID+" (--search-lag-seconds 0?)"
			out = append(out, b)
			continue
		}
		b.Name = fmt.Sprintf("%s at %s writes/s", k.name, fmtRate(lag.Search.TargetRate))
		b.Figure = k.fig()
		b.evaluate(lag.Invalid)
		if lag.Search.TargetRate != srchBudgetRate && (b.Result == resultMet || b.Result == resultNotMet) {
			b.Reason = joinNote(b.Reason, fmt.Sprintf("paced at %s writes/s; the budget is stated at %d", fmtRate(lag.Search.TargetRate), srchBudgetRate))
		}
		out = append(out, b)
	}
	annotateBudgets(out, ms, syncMode)
	return out
}

// ---------------------------------------------------------------- report

// formatSearch renders the search table ("" when the group did not run).
func formatSearch(r benchReport) string {
	if !hasGroup(r.Measurements, groupSearch) {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\n-- search: raw FTS5 ceilings, corpus, index throughput, queries (server over HTTP and raw FTS5, alternating), index lag --\n")
	if c := r.Config.Search; c != nil {
		fmt.Fprintf(&sb, "setup: own server (--sync=%s) with a fresh store; corpus %d units: %s; client: %s; raw: %s; %d timed queries per case, limit %d; lag: %s writes/s for %d s from %d clients\n",
			r.Config.Sync, c.Units, c.Corpus, c.Client, c.Raw, c.Queries, c.Limit, fmtRate(c.LagRate), c.LagSeconds, c.LagWriters)
	}
	sb.WriteString("rate: units/s, queries/s (one client, sequential), writes/s; p50/p99/max: per transaction, per batch, per query, and for the lag the probe's lag\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tclients\trate\tp50\tp99\tmax\tdetails\tvs ceiling\tbudgets\tcpu\tother\tstatus")
	for _, m := range r.Measurements {
		if m.Group != groupSearch {
			continue
		}
		det, vs := "-", "-"
		if f := m.Search; f != nil {
			switch {
			case m.ID == srchRawInsertID:
				det = fmt.Sprintf("%d rows, %.1f s in transactions, %.0f MB", m.Ops, m.DurationS, f.RawFileMB)
			case m.ID == srchWriteID:
				det = fmt.Sprintf("%d units in %.1f s, %d events", m.Ops, f.WriteS, f.Events)
			case m.ID == srchIndexID:
				det = fmt.Sprintf("%d/%d events indexed when the writes ended; caught up %.1f s later; first write → indexed %s units/s", f.IndexedAtEnd, f.Events, f.CatchUpS, fmtRate(f.OverallRate))
				vs = fmt.Sprintf("%s× raw insert", fmtRatio(m.RateRatio))
			case strings.HasPrefix(m.ID, "search.query.") || strings.HasPrefix(m.ID, "ceiling.search.fts5."):
				det = fmt.Sprintf("%d queries, %d distinct, each matching %d-%d units (mean %.0f)", m.Ops, f.Distinct, f.MatchMin, f.MatchMax, f.MatchMean)
				if f.MatchMin == f.MatchMax {
					det = fmt.Sprintf("%d queries, %d distinct, matching %d units", m.Ops, f.Distinct, f.MatchMin)
				}
				if c, ok := findMeasurement(r.Measurements, m.CeilingID); ok && m.Kind == kindScenario {
					vs = fmt.Sprintf("p50 %s×, p99 %s× raw (p99 %+.2f ms)", fmtRatio(f.P50Ratio), fmtRatio(m.P99Ratio), m.P99Ms-c.P99Ms)
				}
			case m.ID == srchLagID:
				det = fmt.Sprintf("asked %s/s; %d probes; %s p99 %s max %s; drained %s after the last write", fmtRate(f.TargetRate), f.Probes, srchLagMetric, fmtMs(f.MetricP99Ms), fmtMs(f.MetricMaxMs), fmtMs(f.DrainMs))
			}
		}
		status := "ok"
		if m.Invalid != "" {
			status = "INVALID: " + m.Invalid
		}
		if m.noisy() {
			status = "NOISY, " + status
		}
		fmt.Fprintf(tw, "%s\t%d\t%s %s/s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n",
			m.Name, m.Clients, fmtRate(m.Rate), m.Unit, fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMs(m.MaxMs), det, vs, srchVerdicts(m.ID, r.Budgets), m.SelfCores, m.OtherCores, status)
	}
	tw.Flush()
	for _, m := range r.Measurements {
		if m.Group == groupSearch && m.Note != "" {
			fmt.Fprintf(&sb, "  %s: %s\n", m.ID, m.Note)
		}
	}
	return sb.String()
}

// srchVerdicts lists the results of the budgets whose figure is id.
func srchVerdicts(id string, bs []budgetResult) string {
	var parts []string
	for _, b := range bs {
		if b.FigureID != id || !strings.HasPrefix(b.Name, "search: ") {
			continue
		}
		what := fmt.Sprintf("p99 ≤ %.1f× raw", b.Limit)
		switch {
		case strings.Contains(b.Name, srchLagMetric):
			what = "metric max ≤ " + fmtMs(b.Limit)
		case b.Absolute:
			what = "p99 ≤ " + fmtMs(b.Limit)
		}
		parts = append(parts, what+" "+b.Result)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}
