package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

// Search (GET /v1/search, SQLite FTS5) against the binary: a known corpus
// checked query by query against a model of what each document holds, bad
// syntax, read-your-writes, and concurrent writers and searchers. The crash,
// rebuild and retention tests are in search_crash_test.go.

// searchHit is one hit of GET /v1/search.
type searchHit struct {
	Kind      string  `json:"kind"`
	ID        string  `json:"id"`
	ContextID string  `json:"context_id"`
	Stream    string  `json:"stream"`
	Group     string  `json:"group"`
	Score     float64 `json:"score"`
	Snippet   string  `json:"snippet"`
	Seq       uint64  `json:"seq"`
}

// key names the document a hit is: the unit, or the stream item.
func (h searchHit) key() string {
	if h.Kind == "stream_item" {
		return itemKey(h.Stream, h.Group, h.ID)
	}
	return unitKey(h.ID)
}

func unitKey(id string) string { return "workunit/" + id }
func itemKey(stream, group, id string) string {
	return "stream_item/" + stream + "/" + group + "/" + id
}

// searchAnswer is the body of a 200 from GET /v1/search.
type searchAnswer struct {
	Hits       []searchHit `json:"hits"`
	Total      *int64      `json:"total"`
	IndexedSeq uint64      `json:"indexed_seq"`
}

func (a searchAnswer) keys() []string {
	out := make([]string, len(a.Hits))
	for i, h := range a.Hits {
		out[i] = h.key()
	}
	return out
}

// decodeSearch decodes and checks the shape of a search answer: hits (an
// array), indexed_seq, total only when asked for; each hit has kind, id,
// score, snippet and seq, a unit's its context_id and no stream or group,
// a stream item's its stream and group and no context_id. It never fails
// the test, so searcher goroutines may use it.
func decodeSearch(raw []byte, count bool) (searchAnswer, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return searchAnswer{}, fmt.Errorf("search answer: %v: %s", err, clip(raw))
	}
	want := []string{"hits", "indexed_seq"}
	if count {
		want = append(want, "total")
	}
	for _, k := range want {
		if _, ok := top[k]; !ok {
			return searchAnswer{}, fmt.Errorf("search answer lacks %q: %s", k, clip(raw))
		}
	}
	if len(top) != len(want) {
		return searchAnswer{}, fmt.Errorf("search answer has keys other than %v: %s", want, clip(raw))
	}
	var rawHits []json.RawMessage
	if err := json.Unmarshal(top["hits"], &rawHits); err != nil || rawHits == nil {
		return searchAnswer{}, fmt.Errorf("search answer: hits is not an array: %s", clip(raw))
	}
	var a searchAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return searchAnswer{}, fmt.Errorf("search answer: %v: %s", err, clip(raw))
	}
	if count && (a.Total == nil || *a.Total < int64(len(a.Hits))) {
		return searchAnswer{}, fmt.Errorf("search answer: total %v for %d hits: %s", top["total"], len(a.Hits), clip(raw))
	}
	for i, rh := range rawHits {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(rh, &m); err != nil {
			return searchAnswer{}, fmt.Errorf("hit %d: %v: %s", i, err, clip(rh))
		}
		h := a.Hits[i]
		req := []string{"kind", "id", "score", "snippet", "seq"}
		switch h.Kind {
		case "workunit":
			req = append(req, "context_id")
			if h.ContextID == "" || len(h.ID) != 26 {
				return searchAnswer{}, fmt.Errorf("hit %d: a work unit without a context_id or a ULID: %s", i, clip(rh))
			}
		case "stream_item":
			req = append(req, "stream", "group")
			if h.Stream == "" || h.Group == "" || h.ID == "" {
				return searchAnswer{}, fmt.Errorf("hit %d: a stream item without stream, group or id: %s", i, clip(rh))
			}
		default:
			return searchAnswer{}, fmt.Errorf("hit %d: kind %q: %s", i, h.Kind, clip(rh))
		}
		for _, k := range req {
			if _, ok := m[k]; !ok {
				return searchAnswer{}, fmt.Errorf("hit %d lacks %q: %s", i, k, clip(rh))
			}
		}
		if len(m) != len(req) {
			return searchAnswer{}, fmt.Errorf("hit %d has keys other than %v: %s", i, req, clip(rh))
		}
	}
	return a, nil
}

// searchURL is GET /v1/search with the query parameters kv (name, value,
// name, value...).
func searchURL(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return "/v1/search?" + v.Encode()
}

// hasParam reports whether kv sets name to value.
func hasParam(kv []string, name, value string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == name && kv[i+1] == value {
			return true
		}
	}
	return false
}

// trySearch runs one search; it never fails the test. status is 0 on a
// transport error; the answer is decoded (and checked) only for a 200.
func trySearch(p *proc, kv ...string) (int, searchAnswer, []byte, error) {
	status, body, err := p.do("GET", searchURL(kv...), nil)
	if err != nil {
		return 0, searchAnswer{}, nil, err
	}
	if status != 200 {
		return status, searchAnswer{}, body, nil
	}
	a, err := decodeSearch(body, hasParam(kv, "count", "true"))
	return status, a, body, err
}

// search runs one search that must answer 200.
func search(t testing.TB, p *proc, kv ...string) searchAnswer {
	t.Helper()
	status, a, body, err := trySearch(p, kv...)
	if err != nil && status == 0 {
		t.Fatalf("GET %s: %v", searchURL(kv...), err)
	}
	if status != 200 {
		t.Fatalf("GET %s: %d %s", searchURL(kv...), status, clip(body))
	}
	if err != nil {
		t.Fatalf("GET %s: %v", searchURL(kv...), err)
	}
	return a
}

// searchAll pages through every hit of a search (limit 1000, by offset)
// and checks that no document comes twice.
func searchAll(t testing.TB, p *proc, kv ...string) []searchHit {
	t.Helper()
	var all []searchHit
	seen := map[string]bool{}
	for off := 0; ; off += 1000 {
		a := search(t, p, append(slices.Clone(kv), "limit", "1000", "offset", fmt.Sprint(off))...)
		for _, h := range a.Hits {
			if seen[h.key()] {
				t.Fatalf("search %v: %s found twice", kv, h.key())
			}
			seen[h.key()] = true
		}
		all = append(all, a.Hits...)
		if len(a.Hits) < 1000 {
			return all
		}
	}
}

// checkTokens checks that each token of want finds exactly its document:
// want maps a token to the key of the one document holding it, or to "" for
// a token no document may hold. It asks for many tokens at once
// ("t1 OR t2 OR ..."), with the extra parameters kv (min_seq, filters).
func checkTokens(t testing.TB, p *proc, want map[string]string, kv ...string) {
	t.Helper()
	tokens := make([]string, 0, len(want))
	for tok := range want {
		tokens = append(tokens, tok)
	}
	slices.Sort(tokens)
	bad := 0
	for len(tokens) > 0 {
		var chunk []string
		size := 0
		for len(tokens) > 0 && size+len(tokens[0])+4 < 1900 && len(chunk) < 900 {
			size += len(tokens[0]) + 4
			chunk, tokens = append(chunk, tokens[0]), tokens[1:]
		}
		expect := map[string]string{} // document → token
		for _, tok := range chunk {
			if k := want[tok]; k != "" {
				expect[k] = tok
			}
		}
		a := search(t, p, append(slices.Clone(kv), "q", strings.Join(chunk, " OR "), "count", "true", "limit", "1000")...)
		got := map[string]bool{}
		for _, h := range a.Hits {
			got[h.key()] = true
			if _, ok := expect[h.key()]; !ok {
				if bad++; bad <= 10 {
					t.Errorf("a search for %d tokens found %s, which holds none of them (snippet %q)", len(chunk), h.key(), h.Snippet)
				}
			}
		}
		for k, tok := range expect {
			if !got[k] {
				if bad++; bad <= 10 {
					t.Errorf("token %s does not find %s", tok, k)
				}
			}
		}
		if *a.Total != int64(len(expect)) {
			t.Errorf("a search for %d tokens of %d documents counts total %d", len(chunk), len(expect), *a.Total)
		}
	}
	if bad > 10 {
		t.Errorf("%d token problems in all", bad)
	}
}

// reindexStatus is the body of GET and POST /v1/admin/reindex.
type reindexStatus struct {
	IndexedSeq uint64 `json:"indexed_seq"`
	HeadSeq    uint64 `json:"head_seq"`
	Rebuilding bool   `json:"rebuilding"`
	Reason     string `json:"reason"`
	Phase      string `json:"phase"`
	Scanned    int64  `json:"scanned"`
	StartedAt  string `json:"started_at"`
}

// decodeReindex checks the status shape: indexed_seq, head_seq and
// rebuilding always, reason, phase, scanned and started_at when set.
func decodeReindex(t testing.TB, raw []byte) reindexStatus {
	t.Helper()
	checkKeys(t, "reindex status", raw, []string{"indexed_seq", "head_seq", "rebuilding"},
		[]string{"reason", "phase", "scanned", "started_at"})
	var s reindexStatus
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		t.Fatalf("reindex status: %v: %s", err, raw)
	}
	if s.StartedAt != "" && !timeRE.MatchString(s.StartedAt) {
		t.Errorf("reindex status: started_at %q is not RFC 3339 UTC with nanoseconds", s.StartedAt)
	}
	switch s.Phase {
	case "", "queued", "scan", "log":
	default:
		t.Errorf("reindex status: phase %q", s.Phase)
	}
	return s
}

func getReindex(t testing.TB, p *proc) reindexStatus {
	t.Helper()
	return decodeReindex(t, p.must(t, 200, "GET", "/v1/admin/reindex", nil))
}

// waitCaughtUp polls GET /v1/admin/reindex until no rebuild runs and the
// index holds the head (at least atLeast), and returns the last status.
// seen collects the phases reported on the way.
func waitCaughtUp(t testing.TB, p *proc, atLeast uint64, timeout time.Duration) (reindexStatus, map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	var st reindexStatus
	if !pollUntil(timeout, 5*time.Millisecond, func() bool {
		st = getReindex(t, p)
		if st.Rebuilding {
			seen[st.Phase] = true
		}
		return !st.Rebuilding && st.IndexedSeq >= st.HeadSeq && st.IndexedSeq >= atLeast
	}) {
		t.Fatalf("the index has not caught up %v after: %+v (wanted at least seq %d)", timeout, st, atLeast)
	}
	return st, seen
}

// postUnit posts one work unit; it never fails the test. status is 0 when
// no answer came.
func postUnit(p *proc, unit any) (ackedUnit, int, error) {
	body, err := json.Marshal(unit)
	if err != nil {
		return ackedUnit{}, 0, err
	}
	status, ans, err := p.do("POST", "/v1/workunits", body)
	if err != nil {
		return ackedUnit{}, 0, err
	}
	if status != 201 {
		return ackedUnit{}, status, fmt.Errorf("POST /v1/workunits: %d %s", status, clip(ans))
	}
	var u ackedUnit
	if err := json.Unmarshal(ans, &u); err != nil || u.Seq == 0 || u.ID == "" {
		return ackedUnit{}, status, fmt.Errorf("POST /v1/workunits answered %s", clip(ans))
	}
	return u, status, nil
}

// postUnitBatch posts units with one batch request and returns the
// acknowledged units, in order.
func postUnitBatch(t testing.TB, p *proc, units []map[string]any) []ackedUnit {
	t.Helper()
	raw := p.must(t, 201, "POST", "/v1/workunits/batch", map[string]any{"units": units})
	var ans struct {
		Units []ackedUnit `json:"units"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || len(ans.Units) != len(units) {
		t.Fatalf("batch answer of %d units: %v: %s", len(units), err, clip(raw))
	}
	return ans.Units
}

func mustPostUnit(t testing.TB, p *proc, unit any) ackedUnit {
	t.Helper()
	u, _, err := postUnit(p, unit)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func itemPath(stream, group, id string) string {
	return "/v1/streams/" + url.PathEscape(stream) + "/" + url.PathEscape(group) + "/" + url.PathEscape(id)
}

// ---- the model of a corpus ----

// sdoc is a document the index must hold, as the test wrote it.
type sdoc struct {
	kind            string // workunit or stream_item
	id              string
	ctx, agent, typ string // work units
	stream, group   string // stream items
	seq             uint64 // the seq of the change the document holds
	leaves          [][]string
	text            []string // the leaves as written
}

func (d *sdoc) key() string {
	if d.kind == "stream_item" {
		return itemKey(d.stream, d.group, d.id)
	}
	return unitKey(d.id)
}

// tokens splits text as FTS5's unicode61 tokenizer does for the ASCII text
// of the corpus: runs of letters and digits, folded to lower case.
func tokens(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func (d *sdoc) addLeaf(text string) {
	d.text = append(d.text, text)
	d.leaves = append(d.leaves, tokens(text))
}

func (d *sdoc) has(w string) bool {
	for _, l := range d.leaves {
		if slices.Contains(l, w) {
			return true
		}
	}
	return false
}

func (d *sdoc) hasPrefix(p string) bool {
	for _, l := range d.leaves {
		for _, w := range l {
			if strings.HasPrefix(w, p) {
				return true
			}
		}
	}
	return false
}

// hasPhrase: the words in a row inside one leaf. (Every leaf starts and ends
// with a boundary word no phrase query uses, so a phrase never spans two.)
func (d *sdoc) hasPhrase(ws ...string) bool {
	for _, l := range d.leaves {
		for i := 0; i+len(ws) <= len(l); i++ {
			if slices.Equal(l[i:i+len(ws)], ws) {
				return true
			}
		}
	}
	return false
}

// corpus is the known corpus: the documents by key and the seq of the last
// write.
type corpus struct {
	docs  map[string]*sdoc
	last  uint64
	dense string // the unit dense with rankword
}

var (
	corpusContexts = []string{"proj-apollo", "proj-borealis", "proj:cygnus@v1.2~x", "proj-apollo2"}
	corpusAgents   = []string{"agent.planner", "agent.coder", "agent.critic"}
	corpusTypes    = []string{"MESSAGE", "REASONING", "TOOL_CALL", "OBSERVATION", "PLAN"}
	corpusWords    = []string{"amber", "azure", "cobalt", "crimson", "jade", "otter", "osprey", "lynx", "heron",
		"badger", "deploy", "deploys", "deployed", "deployment", "rollback", "release", "candidate", "kernel",
		"quantum", "harbor"}
)

// leafText is one text leaf: a boundary word ("note" or "memo"), 3 to 6
// words of the vocabulary with planted words among them, and a boundary
// word; sometimes with a capital and punctuation.
func leafText(rng *rand.Rand, planted ...string) string {
	n := 3 + rng.IntN(4)
	ws := make([]string, 0, n+len(planted))
	for range n {
		ws = append(ws, corpusWords[rng.IntN(len(corpusWords))])
	}
	for _, p := range planted {
		i := rng.IntN(len(ws) + 1)
		ws = slices.Insert(ws, i, p)
	}
	if rng.IntN(3) == 0 {
		ws[0] = strings.ToUpper(ws[0][:1]) + ws[0][1:]
	}
	sep := " "
	if rng.IntN(4) == 0 {
		sep = ", "
	}
	bound := func() string { return []string{"note", "memo"}[rng.IntN(2)] }
	return bound() + " " + strings.Join(ws, sep) + " " + bound() + "."
}

// writeCorpus writes the known corpus: 51 work units with text in 4 contexts
// by 3 agents of 5 types (string payloads, JSON objects and arrays with
// nested string leaves beside numbers, booleans and nulls, metadata-only
// units, non-ASCII text), two units without text (a binary payload, a
// number), stream items in three streams (one id in two streams, names with
// every character names allow), some updated (PUT, PATCH), one deleted, one
// replaced by a value without text, and a custom stream event and a queue
// message, which are not state and not searchable. Units go in two batches
// with item writes between them, so that the kinds interleave by seq.
func writeCorpus(t testing.TB, p *proc) *corpus {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	c := &corpus{docs: map[string]*sdoc{}}
	var units []map[string]any
	var udocs []*sdoc
	for i := range 48 {
		d := &sdoc{kind: "workunit", id: newID(), ctx: corpusContexts[i%4], agent: corpusAgents[(i/3)%3], typ: corpusTypes[i%5]}
		u := map[string]any{"id": d.id, "context_id": d.ctx, "agent_id": d.agent, "type": d.typ}
		var leaf []string
		switch i % 4 {
		case 0:
			leaf = []string{leafText(rng)}
			u["payload"] = leaf[0]
		case 1:
			leaf = []string{leafText(rng), leafText(rng, "deepword"), leafText(rng, "listword")}
			u["payload"] = map[string]any{"headline": leaf[0], "body": map[string]any{
				"paragraph": leaf[1], "weight": 424242, "flag": true, "nothing": nil,
				"list": []any{leaf[2], 31337, false}}}
		case 2:
			leaf = []string{leafText(rng), leafText(rng, "deepword")}
			u["payload"] = []any{leaf[0], 31337, map[string]any{"inner": leaf[1]}}
		case 3: // metadata only
		}
		for _, l := range leaf {
			d.addLeaf(l)
		}
		md := map[string]string{"topic": leafText(rng, []string{"alphameta", "betameta"}[i%2])}
		if i%7 == 0 {
			md["owner"] = leafText(rng, "ownerword")
		}
		// Metadata values in key order, as the index takes them (the
		// model's leaves are independent of the order anyway).
		for _, k := range []string{"owner", "topic"} {
			if v, ok := md[k]; ok {
				d.addLeaf(v)
			}
		}
		u["metadata"] = md
		units = append(units, u)
		udocs = append(udocs, d)
	}
	// Ranking: a short unit dense with rankword, a long one with it once.
	dense := &sdoc{kind: "workunit", id: newID(), ctx: "proj-apollo", agent: "agent.planner", typ: "MESSAGE"}
	dense.addLeaf("note rankword rankword rankword rankword memo")
	c.dense = dense.key()
	long := "note rankword"
	for i := range 40 {
		long += " " + corpusWords[i%len(corpusWords)]
	}
	sparse := &sdoc{kind: "workunit", id: newID(), ctx: "proj-apollo", agent: "agent.planner", typ: "MESSAGE"}
	sparse.addLeaf(long + " memo")
	// Non-ASCII text.
	uni := &sdoc{kind: "workunit", id: newID(), ctx: "proj-borealis", agent: "agent.critic", typ: "OBSERVATION"}
	uni.addLeaf("note Größe naïve 東京 memo")
	for _, d := range []*sdoc{sparse, dense, uni} {
		units = append(units, map[string]any{"id": d.id, "context_id": d.ctx, "agent_id": d.agent, "type": d.typ, "payload": d.text[0]})
		udocs = append(udocs, d)
	}
	// No text: a binary payload ("note base64word memo") and a number.
	units = append(units,
		map[string]any{"context_id": "proj-apollo", "agent_id": "agent.coder", "type": "TOOL_RESULT", "payload_base64": "bm90ZSBiYXNlNjR3b3JkIG1lbW8="},
		map[string]any{"context_id": "proj-borealis", "agent_id": "agent.coder", "type": "TOOL_RESULT", "payload": 12345})

	postBatch := func(from, to int) {
		t.Helper()
		for i, u := range postUnitBatch(t, p, units[from:to]) {
			if j := from + i; j < len(udocs) {
				if u.ID != udocs[j].id {
					t.Fatalf("batch answer unit %d is %s, sent %s", i, u.ID, udocs[j].id)
				}
				udocs[j].seq = u.Seq
				c.docs[udocs[j].key()] = udocs[j]
			}
			c.last = max(c.last, u.Seq)
		}
	}
	// items: PUT value, the seq is the head after it (nothing else writes).
	put := func(stream, group, id string, value any, leaves ...string) {
		t.Helper()
		p.must(t, 200, "PUT", itemPath(stream, group, id), mustJSON(t, value))
		d := &sdoc{kind: "stream_item", id: id, stream: stream, group: group, seq: p.headSeq(t)}
		for _, l := range leaves {
			d.addLeaf(l)
		}
		c.last = d.seq
		if len(leaves) == 0 {
			delete(c.docs, d.key())
		} else {
			c.docs[d.key()] = d
		}
	}

	postBatch(0, 25)
	a, b, e := leafText(rng), leafText(rng, "listword"), leafText(rng)
	put("notes", "g1", "item-a", a, a)
	put("notes", "g1", "item-b", map[string]any{"title": a + " " + b, "meta": map[string]any{"count": 7, "labels": []any{b, 3}}}, a+" "+b, b)
	put("notes", "g2", "item-c", e, e)
	put("notes", "g2", "item-upd", "note obsoleteword memo", "note obsoleteword memo")
	put("notes", "g2", "item-patch", map[string]any{"title": "note patchold memo", "n": 1}, "note patchold memo")
	put("boards", "main", "item-del", "note doomedword memo", "note doomedword memo")
	put("boards", "main", "item-num", "note numbergone memo", "note numbergone memo")
	postBatch(25, len(units))
	d1, d2 := leafText(rng), leafText(rng, "deepword")
	put("boards", "main", "item-d", d1, d1)
	// The same item id in another stream, and names with every character
	// names allow.
	put("boards", "main", "item-a", "note otherboard memo", "note otherboard memo")
	put("ns:team@x~y.z", "g:1_2", "it.em~1@x", "note oddnames memo", "note oddnames memo")
	put("boards", "main", "item-e", map[string]any{"x": map[string]any{"y": []any{d2, nil, true}}}, d2)
	// Changes: a new text, a patch, a delete, a value without text.
	put("notes", "g2", "item-upd", "note freshword memo", "note freshword memo")
	p.must(t, 200, "PATCH", itemPath("notes", "g2", "item-patch"), map[string]any{"ops": []any{
		map[string]any{"type": "set", "path": "title", "value": "note patchnew memo"},
		map[string]any{"type": "increment", "path": "n", "by": 1},
	}})
	pd := c.docs[itemKey("notes", "g2", "item-patch")]
	pd.seq, pd.text, pd.leaves = p.headSeq(t), nil, nil
	pd.addLeaf("note patchnew memo")
	// Not state, so not searchable: a custom stream event, a queue message.
	p.must(t, 202, "POST", "/v1/streams/notes/g1/events", map[string]any{"type": "x", "data": "note sentword memo"})
	p.must(t, 201, "POST", "/v1/queues/corpus/messages", map[string]any{"payload": "note queueword memo"})
	p.must(t, 200, "DELETE", itemPath("boards", "main", "item-del"), nil)
	delete(c.docs, itemKey("boards", "main", "item-del"))
	put("boards", "main", "item-num", 42)
	c.last = p.headSeq(t)
	return c
}

// corpusQuery is one query of the known corpus and the documents it must
// find.
type corpusQuery struct {
	kv    []string // q and filters
	want  func(d *sdoc) bool
	empty bool                // no document may match
	mark  func(m string) bool // each marked fragment of a snippet, lower-cased (nil: any)
}

func term(w string) func(*sdoc) bool { return func(d *sdoc) bool { return d.has(w) } }
func isUnit(d *sdoc) bool            { return d.kind == "workunit" }
func isItem(d *sdoc) bool            { return d.kind == "stream_item" }
func markIs(w string) func(string) bool {
	return func(m string) bool { return m == w }
}

var corpusQueries = []corpusQuery{
	{kv: []string{"q", "amber"}, want: term("amber"), mark: markIs("amber")},
	{kv: []string{"q", "AMBER"}, want: term("amber"), mark: markIs("amber")},
	{kv: []string{"q", "deploy"}, want: term("deploy"), mark: markIs("deploy")},
	{kv: []string{"q", `"release candidate"`}, want: func(d *sdoc) bool { return d.hasPhrase("release", "candidate") }},
	{kv: []string{"q", `"candidate release"`}, want: func(d *sdoc) bool { return d.hasPhrase("candidate", "release") }},
	{kv: []string{"q", `"amber otter" OR "otter amber"`}, want: func(d *sdoc) bool {
		return d.hasPhrase("amber", "otter") || d.hasPhrase("otter", "amber")
	}},
	{kv: []string{"q", "deploy*"}, want: func(d *sdoc) bool { return d.hasPrefix("deploy") },
		mark: func(m string) bool { return strings.HasPrefix(m, "deploy") }},
	{kv: []string{"q", "dep*"}, want: func(d *sdoc) bool { return d.hasPrefix("dep") },
		mark: func(m string) bool { return strings.HasPrefix(m, "dep") }},
	{kv: []string{"q", "deploy* NOT deployment"}, want: func(d *sdoc) bool { return d.hasPrefix("deploy") && !d.has("deployment") }},
	{kv: []string{"q", "amber AND otter"}, want: func(d *sdoc) bool { return d.has("amber") && d.has("otter") }},
	{kv: []string{"q", "amber otter"}, want: func(d *sdoc) bool { return d.has("amber") && d.has("otter") }},
	{kv: []string{"q", "amber OR otter"}, want: func(d *sdoc) bool { return d.has("amber") || d.has("otter") }},
	{kv: []string{"q", "amber NOT otter"}, want: func(d *sdoc) bool { return d.has("amber") && !d.has("otter") }},
	{kv: []string{"q", "(amber OR azure) AND (otter OR lynx)"}, want: func(d *sdoc) bool {
		return (d.has("amber") || d.has("azure")) && (d.has("otter") || d.has("lynx"))
	}},
	{kv: []string{"q", "(amber OR azure) NOT (otter OR lynx)"}, want: func(d *sdoc) bool {
		return (d.has("amber") || d.has("azure")) && !(d.has("otter") || d.has("lynx"))
	}},
	{kv: []string{"q", `kernel AND ("release candidate" OR rollback)`}, want: func(d *sdoc) bool {
		return d.has("kernel") && (d.hasPhrase("release", "candidate") || d.has("rollback"))
	}},
	{kv: []string{"q", "alphameta"}, want: term("alphameta"), mark: markIs("alphameta")},
	{kv: []string{"q", "ownerword"}, want: term("ownerword"), mark: markIs("ownerword")},
	{kv: []string{"q", "deepword"}, want: term("deepword"), mark: markIs("deepword")},
	{kv: []string{"q", "listword"}, want: term("listword"), mark: markIs("listword")},
	{kv: []string{"q", "rankword"}, want: term("rankword"), mark: markIs("rankword")},
	// Filters, alone and together.
	{kv: []string{"q", "note", "kind", "workunit"}, want: func(d *sdoc) bool { return isUnit(d) && d.has("note") }},
	{kv: []string{"q", "note", "kind", "stream_item"}, want: func(d *sdoc) bool { return isItem(d) && d.has("note") }},
	{kv: []string{"q", "amber", "context_id", "proj-apollo"}, want: func(d *sdoc) bool { return d.ctx == "proj-apollo" && d.has("amber") }},
	{kv: []string{"q", "note", "agent_id", "agent.coder"}, want: func(d *sdoc) bool { return d.agent == "agent.coder" && d.has("note") }},
	{kv: []string{"q", "memo", "type", "PLAN"}, want: func(d *sdoc) bool { return d.typ == "PLAN" && d.has("memo") }},
	{kv: []string{"q", "note OR memo", "stream", "notes"}, want: func(d *sdoc) bool { return d.stream == "notes" }},
	{kv: []string{"q", "note OR memo", "context_id", "proj-borealis", "agent_id", "agent.critic"}, want: func(d *sdoc) bool {
		return d.ctx == "proj-borealis" && d.agent == "agent.critic"
	}},
	{kv: []string{"q", "note OR memo", "context_id", "proj:cygnus@v1.2~x", "agent_id", "agent.planner", "type", "REASONING"}, want: func(d *sdoc) bool {
		return d.ctx == "proj:cygnus@v1.2~x" && d.agent == "agent.planner" && d.typ == "REASONING"
	}},
	{kv: []string{"q", "note", "kind", "workunit", "context_id", "proj-apollo"}, want: func(d *sdoc) bool { return d.ctx == "proj-apollo" && d.has("note") }},
	{kv: []string{"q", "note OR memo", "kind", "stream_item", "stream", "boards"}, want: func(d *sdoc) bool { return d.stream == "boards" }},
	{kv: []string{"q", "deepword OR listword", "stream", "notes"}, want: func(d *sdoc) bool { return d.stream == "notes" && (d.has("deepword") || d.has("listword")) }},
	{kv: []string{"q", "deepword", "kind", "stream_item"}, want: func(d *sdoc) bool { return isItem(d) && d.has("deepword") }},
	{kv: []string{"q", "note OR memo", "context_id", "proj-apollo2"}, want: func(d *sdoc) bool { return d.ctx == "proj-apollo2" }},
	{kv: []string{"q", "note OR memo", "context_id", "proj:cygnus@v1.2~x"}, want: func(d *sdoc) bool { return d.ctx == "proj:cygnus@v1.2~x" }},
	{kv: []string{"q", "note OR memo", "stream", "ns:team@x~y.z"}, want: func(d *sdoc) bool { return d.stream == "ns:team@x~y.z" }},
	{kv: []string{"q", "otherboard OR oddnames"}, want: func(d *sdoc) bool { return d.has("otherboard") || d.has("oddnames") }},
	{kv: []string{"q", "größe"}, want: term("größe"), mark: markIs("größe")},
	{kv: []string{"q", "東京"}, want: term("東京"), mark: markIs("東京")},
	{kv: []string{"q", "note", "context_id", "proj-nowhere"}, empty: true},
	{kv: []string{"q", "note", "stream", "nowhere"}, empty: true},
	{kv: []string{"q", "note", "agent_id", "agent.nobody"}, empty: true},
	// Object keys, metadata keys, numbers, booleans and null are not text;
	// neither is a binary payload.
	{kv: []string{"q", "headline"}, empty: true},
	{kv: []string{"q", "paragraph"}, empty: true},
	{kv: []string{"q", "weight OR flag OR nothing OR list OR inner"}, empty: true},
	{kv: []string{"q", "body"}, empty: true},
	{kv: []string{"q", "topic OR owner"}, empty: true},
	{kv: []string{"q", "title OR meta OR labels OR count"}, empty: true},
	{kv: []string{"q", "424242"}, empty: true},
	{kv: []string{"q", "31337 OR 12345 OR 42 OR 7"}, empty: true},
	{kv: []string{"q", "true OR false OR null"}, empty: true},
	{kv: []string{"q", "base64word OR bm90ZSBiYXNlNjR3b3JkIG1lbW8"}, empty: true},
	{kv: []string{"q", "sentword OR queueword"}, empty: true},
	// Stream items: found by their current value only.
	{kv: []string{"q", "freshword"}, want: term("freshword"), mark: markIs("freshword")},
	{kv: []string{"q", "obsoleteword"}, empty: true},
	{kv: []string{"q", "patchnew"}, want: term("patchnew"), mark: markIs("patchnew")},
	{kv: []string{"q", "patchold"}, empty: true},
	{kv: []string{"q", "doomedword"}, empty: true},
	{kv: []string{"q", "numbergone"}, empty: true},
}

var markRE = regexp.MustCompile(`<mark>(.*?)</mark>`)

// checkCorpus runs every corpus query with min_seq = the last write, by
// relevance (with count=true) and newest first, and checks each answer
// against the model: exactly the expected documents, each hit's fields, the
// total, the order, the snippets.
func checkCorpus(t testing.TB, p *proc, c *corpus) {
	t.Helper()
	minSeq := fmt.Sprint(c.last)
	for _, cq := range corpusQueries {
		var want []*sdoc
		for _, d := range c.docs {
			if !cq.empty && cq.want(d) {
				want = append(want, d)
			}
		}
		if !cq.empty && (len(want) == 0 || len(want) == len(c.docs)) {
			t.Fatalf("corpus query %v: the model expects %d of %d documents: pick a query that tells something", cq.kv, len(want), len(c.docs))
		}
		slices.SortFunc(want, func(a, b *sdoc) int { return int(b.seq) - int(a.seq) })
		wantKeys := make([]string, len(want))
		for i, d := range want {
			wantKeys[i] = d.key()
		}

		rel := search(t, p, append(slices.Clone(cq.kv), "min_seq", minSeq, "count", "true", "limit", "1000")...)
		rec := search(t, p, append(slices.Clone(cq.kv), "min_seq", minSeq, "sort", "recent", "limit", "1000")...)
		for _, a := range []searchAnswer{rel, rec} {
			if a.IndexedSeq < c.last {
				t.Errorf("%v: indexed_seq %d below min_seq %s", cq.kv, a.IndexedSeq, minSeq)
			}
		}
		if rec.Total != nil {
			t.Errorf("%v: total %d without count=true", cq.kv, *rec.Total)
		}
		if *rel.Total != int64(len(want)) {
			t.Errorf("%v: total %d, want %d", cq.kv, *rel.Total, len(want))
		}
		got := rel.keys()
		slices.Sort(got)
		sorted := slices.Clone(wantKeys)
		slices.Sort(sorted)
		if !slices.Equal(got, sorted) {
			t.Errorf("%v: found %d documents, want %d\n missing: %v\n   extra: %v", cq.kv, len(got), len(sorted),
				minus(sorted, got), minus(got, sorted))
			for _, k := range minus(got, sorted) {
				if d := c.docs[k]; d != nil {
					t.Logf("  extra %s holds %q", k, d.text)
				}
			}
			continue
		}
		// Newest first: exactly the expected documents by decreasing seq.
		if recKeys := rec.keys(); !slices.Equal(recKeys, wantKeys) {
			t.Errorf("%v sort=recent: order %v, want %v", cq.kv, recKeys, wantKeys)
		}
		for i := 1; i < len(rec.Hits); i++ {
			if rec.Hits[i].Seq >= rec.Hits[i-1].Seq {
				t.Errorf("%v sort=recent: seq %d after %d", cq.kv, rec.Hits[i].Seq, rec.Hits[i-1].Seq)
			}
		}
		// By relevance: scores never increase down the list.
		for i := 1; i < len(rel.Hits); i++ {
			if rel.Hits[i].Score > rel.Hits[i-1].Score {
				t.Errorf("%v: hit %d scores %v after %v: not ranked", cq.kv, i, rel.Hits[i].Score, rel.Hits[i-1].Score)
				break
			}
		}
		for _, h := range append(rel.Hits, rec.Hits...) {
			d := c.docs[h.key()]
			if h.Seq != d.seq || h.ID != d.id || h.ContextID != d.ctx || h.Stream != d.stream || h.Group != d.group {
				t.Errorf("%v: hit %+v, want the document %s at seq %d (context %q)", cq.kv, h, d.key(), d.seq, d.ctx)
			}
			marks := markRE.FindAllStringSubmatch(h.Snippet, -1)
			if len(marks) == 0 {
				t.Errorf("%v: %s: snippet %q marks nothing", cq.kv, h.key(), h.Snippet)
			}
			for _, m := range marks {
				if cq.mark != nil && !cq.mark(strings.ToLower(m[1])) {
					t.Errorf("%v: %s: snippet %q marks %q", cq.kv, h.key(), h.Snippet, m[1])
				}
			}
			if plain := strings.NewReplacer("<mark>", "", "</mark>", "").Replace(h.Snippet); !snippetOf(plain, d.text) {
				t.Errorf("%v: %s: snippet %q is not a part of the document's text %q", cq.kv, h.key(), h.Snippet, d.text)
			}
		}
	}
}

// snippetOf reports whether each line of a snippet (without its marks and
// its "…" ends) is a piece of one of the texts.
func snippetOf(snippet string, texts []string) bool {
	all := strings.Join(texts, "\n")
	for _, line := range strings.Split(snippet, "\n") {
		line = strings.TrimSpace(strings.Trim(line, "…"))
		if line != "" && !strings.Contains(all, line) {
			return false
		}
	}
	return true
}

// minus is a without the elements of b (both sorted).
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, x)
		}
	}
	return out
}

// TestSearchCorpus checks every query of the known corpus against the model,
// then ranking, the default limit and paging.
func TestSearchCorpus(t *testing.T) {
	p := startServer(t, t.TempDir())
	c := writeCorpus(t, p)
	t.Logf("corpus: %d documents, last seq %d", len(c.docs), c.last)
	checkCorpus(t, p, c)
	minSeq := fmt.Sprint(c.last)

	// The unit dense with rankword ranks above the long one that has it once.
	rank := search(t, p, "q", "rankword", "min_seq", minSeq)
	if len(rank.Hits) != 2 || rank.Hits[0].key() != c.dense {
		t.Errorf("rankword: hits %+v, want the dense unit first", rank.Hits)
	} else if rank.Hits[0].Score <= rank.Hits[1].Score {
		t.Errorf("rankword: scores %v then %v", rank.Hits[0].Score, rank.Hits[1].Score)
	}

	// Every document holds note or memo. Without a limit, 20 hits; with
	// limit=1 and sort=recent, the newest document.
	all := search(t, p, "q", "note OR memo", "count", "true", "limit", "1000")
	if len(all.Hits) != len(c.docs) || *all.Total != int64(len(c.docs)) {
		t.Fatalf("note OR memo finds %d (total %d) of %d documents", len(all.Hits), *all.Total, len(c.docs))
	}
	if def := search(t, p, "q", "note OR memo"); len(def.Hits) != 20 {
		t.Errorf("default limit: %d hits, want 20", len(def.Hits))
	}
	if one := search(t, p, "q", "note OR memo", "limit", "1", "sort", "recent"); len(one.Hits) != 1 || one.Hits[0].Seq != maxSeq(c) {
		t.Errorf("limit=1 sort=recent: %+v, want the newest document (seq %d)", one.Hits, maxSeq(c))
	}

	// Paging with limit and offset covers the whole set once, in the order
	// of the unpaged answer, for both sorts.
	for _, sort := range []string{"relevance", "recent"} {
		whole := search(t, p, "q", "note OR memo", "sort", sort, "limit", "1000").keys()
		var paged []string
		for off := 0; ; off += 7 {
			a := search(t, p, "q", "note OR memo", "sort", sort, "limit", "7", "offset", fmt.Sprint(off), "count", "true")
			if *a.Total != int64(len(c.docs)) {
				t.Errorf("sort=%s offset %d: total %d, want %d", sort, off, *a.Total, len(c.docs))
			}
			if len(a.Hits) > 7 {
				t.Fatalf("sort=%s offset %d: %d hits for limit 7", sort, off, len(a.Hits))
			}
			paged = append(paged, a.keys()...)
			if len(a.Hits) < 7 {
				break
			}
		}
		if len(paged) != len(c.docs) {
			t.Errorf("sort=%s: pages of 7 give %d hits, the corpus has %d documents", sort, len(paged), len(c.docs))
		}
		if !slices.Equal(paged, whole) {
			t.Errorf("sort=%s: pages of 7 give %d hits, different from the %d of one page:\n paged %v\n whole %v", sort, len(paged), len(whole), paged, whole)
		}
		seen := map[string]bool{}
		for _, k := range paged {
			if seen[k] {
				t.Errorf("sort=%s: %s on two pages", sort, k)
			}
			seen[k] = true
		}
	}
	// Past the end: no hits, still 200.
	if a := search(t, p, "q", "note", "offset", "5000"); len(a.Hits) != 0 {
		t.Errorf("offset 5000: %d hits", len(a.Hits))
	}
	p.Stop()
}

func maxSeq(c *corpus) uint64 {
	var m uint64
	for _, d := range c.docs {
		m = max(m, d.seq)
	}
	return m
}

// TestSearchBadQuery: bad syntax and bad parameters are 400
// invalid_argument naming the parameter, never a 500, and the server goes on
// answering; a min_seq the index does not reach answers 503 after 5 s.
func TestSearchBadQuery(t *testing.T) {
	p := startServer(t, t.TempDir())
	u := mustPostUnit(t, p, map[string]any{"context_id": "c", "agent_id": "a", "type": "MESSAGE", "payload": "note goodword memo"})

	// Meanwhile, a min_seq far ahead: 503 unavailable after about 5 s.
	type lagResult struct {
		r    response
		took time.Duration
	}
	lagc := make(chan lagResult, 1)
	go func() {
		start := time.Now()
		var r response
		resp, err := client.Get(p.URL + searchURL("q", "goodword", "min_seq", fmt.Sprint(u.Seq+1_000_000)))
		if err == nil {
			r.Status, r.Header = resp.StatusCode, resp.Header
			r.Body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			r.Body = []byte(err.Error())
		}
		lagc <- lagResult{r, time.Since(start)}
	}()

	bad := []string{
		"(goodword", "goodword)", "((goodword)", "(goodword))", ")(",
		`"goodword`, `goodword"`, `"`, `"goodword ""`,
		"AND goodword", "goodword AND", "OR", "goodword OR", "NOT goodword", "goodword NOT", "goodword AND AND note",
		"goodword:note", "nosuchcolumn:goodword", "NEAR(", "NEAR(goodword note", "NEAR(goodword note, x)",
		"*", "goodword +", "()", ":", "-goodword", "{",
		"", "   ", strings.Repeat("goodword ", 334), "good\x00word",
	}
	for _, q := range bad {
		name := q
		if len(name) > 40 {
			name = fmt.Sprintf("%d bytes", len(q))
		}
		t.Run(fmt.Sprintf("q=%q", name), func(t *testing.T) {
			r := p.call(t, "GET", searchURL("q", q), nil)
			e := checkError(t, r, 400, "invalid_argument", "")
			if !strings.HasPrefix(e.Message, "q:") {
				t.Errorf("message %q does not start with \"q:\"", e.Message)
			}
		})
	}
	t.Run("no q", func(t *testing.T) {
		e := checkError(t, p.call(t, "GET", "/v1/search", nil), 400, "invalid_argument", "")
		if !strings.HasPrefix(e.Message, "q:") {
			t.Errorf("message %q does not start with \"q:\"", e.Message)
		}
	})
	// Other parameters: 400 naming the parameter.
	for _, tc := range []struct {
		kv    []string
		field string
	}{
		{[]string{"kind", "unit"}, "kind"},
		{[]string{"kind", "WORKUNIT"}, "kind"},
		{[]string{"sort", "oldest"}, "sort"},
		{[]string{"limit", "0"}, "limit"},
		{[]string{"limit", "1001"}, "limit"},
		{[]string{"limit", "ten"}, "limit"},
		{[]string{"limit", "-1"}, "limit"},
		{[]string{"offset", "-1"}, "offset"},
		{[]string{"offset", "x"}, "offset"},
		{[]string{"min_seq", "-1"}, "min_seq"},
		{[]string{"min_seq", "soon"}, "min_seq"},
		{[]string{"min_seq", "99999999999999999999999"}, "min_seq"},
		{[]string{"count", "yes"}, "count"},
		{[]string{"context_id", "bad name"}, "context_id"},
		{[]string{"agent_id", strings.Repeat("a", 129)}, "agent_id"},
		{[]string{"stream", "a/b"}, "stream"},
		{[]string{"type", "NOPE"}, "type"}, // an enum, as in the unit listing
	} {
		t.Run(strings.Join(tc.kv, "="), func(t *testing.T) {
			r := p.call(t, "GET", searchURL(append([]string{"q", "goodword"}, tc.kv...)...), nil)
			checkError(t, r, 400, "invalid_argument", tc.field)
		})
	}
	// Odd but maybe valid input: 200 or 400, never anything else.
	for _, q := range []string{
		"\xff\xfe", "gööd wörd", "🙂", strings.Repeat("(", 500) + "goodword" + strings.Repeat(")", 500),
		strings.Repeat("x", 2000), "goodword*", `"goodword"*`, "NEAR(goodword note)", "NEAR(goodword note, 3)",
		"^goodword", "body:goodword", "tags:goodword", "{body}: goodword", "{tags kind}: goodword", "goodword + note",
		"rank:goodword", "kind:goodword", `"" OR goodword`, "goodword OR (note NOT (memo AND (goodword)))",
		strings.Repeat("goodword OR ", 170) + "goodword",
	} {
		r := p.call(t, "GET", searchURL("q", q), nil)
		switch r.Status {
		case 200:
			if _, err := decodeSearch(r.Body, false); err != nil {
				t.Errorf("q=%q: %v", clip([]byte(q)), err)
			}
		case 400:
			checkError(t, r, 400, "invalid_argument", "q")
		default:
			t.Errorf("q=%q: %s, want 200 or 400", clip([]byte(q)), r)
		}
	}

	// Still answering, and writes still indexed.
	p.must(t, 200, "GET", "/readyz", nil)
	u2 := mustPostUnit(t, p, map[string]any{"context_id": "c", "agent_id": "a", "type": "MESSAGE", "payload": "note goodword again memo"})
	a := search(t, p, "q", "goodword", "min_seq", fmt.Sprint(u2.Seq), "sort", "recent")
	if got := a.keys(); !slices.Equal(got, []string{unitKey(u2.ID), unitKey(u.ID)}) {
		t.Errorf("goodword after the bad queries: %v", got)
	}

	lag := <-lagc
	e := checkError(t, lag.r, 503, "unavailable", "")
	if v, ok := e.Details["indexed_seq"].(float64); !ok || uint64(v) < u.Seq {
		t.Errorf("503 for min_seq: details %v, want indexed_seq >= %d", e.Details, u.Seq)
	}
	if lag.took < 4500*time.Millisecond || lag.took > 15*time.Second {
		t.Errorf("min_seq far ahead answered after %v, want about 5 s", lag.took)
	}
	p.Stop()
}

// TestSearchReadYourWrites: 200 writes in a row (units, new stream items,
// item updates and deletes), each followed at once by a search with min_seq
// = its seq, which must find it (and an updated or deleted item no longer by
// its old value).
func TestSearchReadYourWrites(t *testing.T) {
	p := startServer(t, t.TempDir())
	itemTok := map[string]string{} // item id → its current token
	for i := range 200 {
		tok := fmt.Sprintf("ryw%03dtok", i)
		if i%3 != 2 {
			unit := map[string]any{"id": newID(), "context_id": fmt.Sprintf("ryw-%d", i%4), "agent_id": "a", "type": "MESSAGE",
				"payload": map[string]any{"text": "note " + tok + " memo", "n": i}}
			u := mustPostUnit(t, p, unit)
			if i%10 == 0 { // an idempotent retry: no second document
				p.must(t, 200, "POST", "/v1/workunits", unit)
			}
			a := search(t, p, "q", tok, "min_seq", fmt.Sprint(u.Seq), "count", "true")
			if a.IndexedSeq < u.Seq || len(a.Hits) != 1 || *a.Total != 1 || a.Hits[0].key() != unitKey(u.ID) || a.Hits[0].Seq != u.Seq {
				t.Fatalf("write %d: unit %s at seq %d; search for %s with min_seq: indexed_seq %d, total %d, hits %+v", i, u.ID, u.Seq, tok, a.IndexedSeq, *a.Total, a.Hits)
			}
			continue
		}
		// Stream items: every other one a new item, else an update of one.
		id := fmt.Sprintf("item-%d", i%5)
		old := itemTok[id]
		if old != "" && i%4 == 0 { // a delete
			p.must(t, 200, "DELETE", itemPath("ryw", "g", id), nil)
			delete(itemTok, id)
			head := p.headSeq(t)
			if a := search(t, p, "q", old, "min_seq", fmt.Sprint(head)); len(a.Hits) != 0 || a.IndexedSeq < head {
				t.Fatalf("write %d: item %s deleted at seq %d, its token %s still finds %+v (indexed_seq %d)", i, id, head, old, a.Hits, a.IndexedSeq)
			}
			continue
		}
		p.must(t, 200, "PUT", itemPath("ryw", "g", id), mustJSON(t, map[string]any{"text": "note " + tok + " memo"}))
		itemTok[id] = tok
		head := p.headSeq(t) // at least the seq of the PUT
		a := search(t, p, "q", tok, "min_seq", fmt.Sprint(head))
		if a.IndexedSeq < head || len(a.Hits) != 1 || a.Hits[0].key() != itemKey("ryw", "g", id) || a.Hits[0].Seq != head {
			t.Fatalf("write %d: item %s at seq %d; search for %s with min_seq: indexed_seq %d, hits %+v", i, id, head, tok, a.IndexedSeq, a.Hits)
		}
		if old != "" {
			if a := search(t, p, "q", old, "min_seq", fmt.Sprint(head)); len(a.Hits) != 0 {
				t.Fatalf("write %d: item %s updated from %s to %s, the old token still finds %+v", i, id, old, tok, a.Hits)
			}
		}
	}
	p.Stop()
}

// TestSearchConcurrency: 4 writers and 4 searchers for a few seconds. Every
// search answers 200; per searcher indexed_seq never goes back; a search
// with min_seq = the newest acknowledged unit finds a unit at least that
// new; afterwards every acknowledged unit is found.
func TestSearchConcurrency(t *testing.T) {
	p := startServer(t, t.TempDir())
	const (
		writers   = 4
		searchers = 4
		runFor    = 3 * time.Second
	)
	var (
		stop     atomic.Bool
		newest   atomic.Uint64 // the seq of the newest acknowledged unit
		mu       sync.Mutex
		problems []string
		acked    = map[string]string{} // token → unit key
		items    = map[string]string{} // item id → its last token
		itemToks []string              // every token an item held
		searches atomic.Int64
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
		stop.Store(true)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				tok := fmt.Sprintf("cw%dn%d", w, i)
				if w == 0 && i%2 == 1 { // one writer also updates stream items
					id := fmt.Sprintf("it%d", i%6)
					val, _ := json.Marshal("note concitem " + tok + " memo")
					status, body, err := p.do("PUT", itemPath("conc", "g", id), val)
					if err != nil || status != 200 {
						problem("PUT %s: %d %v %s", id, status, err, clip(body))
						return
					}
					mu.Lock()
					items[id] = tok
					itemToks = append(itemToks, tok)
					mu.Unlock()
					continue
				}
				u, _, err := postUnit(p, map[string]any{"context_id": fmt.Sprintf("conc-%d", w), "agent_id": "a", "type": "MESSAGE",
					"payload": "note concword " + tok + " memo"})
				if err != nil {
					problem("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				acked[tok] = unitKey(u.ID)
				mu.Unlock()
				for {
					n := newest.Load()
					if u.Seq <= n || newest.CompareAndSwap(n, u.Seq) {
						break
					}
				}
			}
		})
	}
	for s := range searchers {
		wg.Go(func() {
			var lastIndexed uint64
			var lastTotal int64
			for i := 0; !stop.Load(); i++ {
				n := newest.Load()
				kv := []string{"q", "concword", "kind", "workunit", "sort", "recent", "limit", "5", "count", "true"}
				if n > 0 && i%2 == 0 {
					kv = append(kv, "min_seq", fmt.Sprint(n))
				}
				if s == 3 {
					kv = []string{"q", "concword OR concitem", "limit", "50", "count", "true"}
				}
				status, a, body, err := trySearch(p, kv...)
				searches.Add(1)
				if err != nil || status != 200 {
					problem("searcher %d: %v: %d %v %s", s, kv, status, err, clip(body))
					return
				}
				if a.IndexedSeq < lastIndexed {
					problem("searcher %d: indexed_seq %d after %d", s, a.IndexedSeq, lastIndexed)
				}
				if *a.Total < lastTotal {
					problem("searcher %d: total %d after %d: units never go", s, *a.Total, lastTotal)
				}
				lastIndexed, lastTotal = a.IndexedSeq, *a.Total
				if hasParam(kv, "min_seq", fmt.Sprint(n)) && n > 0 {
					if a.IndexedSeq < n || len(a.Hits) == 0 || a.Hits[0].Seq < n {
						problem("searcher %d: min_seq %d: indexed_seq %d, newest hit %+v", s, n, a.IndexedSeq, a.Hits)
					}
				}
				for j := 1; j < len(a.Hits) && s != 3; j++ {
					if a.Hits[j].Seq >= a.Hits[j-1].Seq {
						problem("searcher %d: sort=recent seq %d after %d", s, a.Hits[j].Seq, a.Hits[j-1].Seq)
					}
				}
			}
		})
	}
	time.Sleep(runFor)
	stop.Store(true)
	wg.Wait()
	for _, pr := range problems {
		t.Error(pr)
	}
	if t.Failed() {
		t.FailNow()
	}
	head := fmt.Sprint(p.headSeq(t))
	t.Logf("%d units and %d searches in %v", len(acked), searches.Load(), runFor)
	if len(acked) < 20 || searches.Load() < 20 {
		t.Errorf("too little happened: %d units, %d searches", len(acked), searches.Load())
	}
	want := map[string]string{}
	for _, tok := range itemToks {
		want[tok] = "" // replaced by a later value: found no more
	}
	for tok, k := range acked {
		want[tok] = k
	}
	for id, tok := range items {
		want[tok] = itemKey("conc", "g", id)
	}
	checkTokens(t, p, want, "min_seq", head)
	hits := searchAll(t, p, "q", "concword", "min_seq", head)
	if len(hits) != len(acked) {
		t.Errorf("concword finds %d units, %d were acknowledged", len(hits), len(acked))
	}
	if a := search(t, p, "q", "concitem", "count", "true"); *a.Total != int64(len(items)) {
		t.Errorf("concitem finds %d items, want %d (one document per item)", *a.Total, len(items))
	}
	p.Stop()
}

// TestSearchStopWithMinSeqWait: a graceful stop does not wait for a search
// parked on a min_seq the index has not reached (as it does not wait for a
// parked queue long poll): the search answers 503 unavailable or is cut, and
// the server exits 0 at once.
func TestSearchStopWithMinSeqWait(t *testing.T) {
	p := startServer(t, t.TempDir())
	u := mustPostUnit(t, p, map[string]any{"context_id": "c", "agent_id": "a", "type": "MESSAGE", "payload": "note parked memo"})
	type result struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, body, err := p.do("GET", searchURL("q", "parked", "min_seq", fmt.Sprint(u.Seq+1000)), nil)
		done <- result{status, body, err}
	}()
	time.Sleep(200 * time.Millisecond) // let the search park: a deliberate pause
	start := time.Now()
	p.Stop()
	took := time.Since(start)
	if took > 3*time.Second {
		t.Errorf("graceful stop took %v with a min_seq search parked (the wait is up to 5 s)", took)
	}
	select {
	case r := <-done:
		if r.err == nil && r.status != 503 {
			t.Errorf("the parked search answered %d %s at the stop, want 503", r.status, clip(r.body))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the parked search got no answer 10 s after the stop")
	}
}
