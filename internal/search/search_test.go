package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"engram/internal/search"
)

// corpus writes a known set of units and items and returns the ids by name.
func corpus(t *testing.T, v *env) map[string]string {
	t.Helper()
	id := map[string]string{}
	id["fox"], _ = v.unit(t, "c1", "alice", "MESSAGE", "The quick brown fox jumps over the lazy dog", nil)
	id["dog"], _ = v.unit(t, "c1", "bob", "REASONING", "a lazy dog sleeps all afternoon", map[string]string{"mood": "sleepy"})
	id["json"], _ = v.unit(t, "c2", "alice", "TOOL_CALL",
		map[string]any{"tool": "weather", "args": map[string]any{"city": "Lisbon", "days": 3}, "notes": []any{"umbrella advised", 7, true, nil}}, nil)
	id["meta"], _ = v.unit(t, "c2", "carol", "OBSERVATION", 42, map[string]string{"source": "thermometer", "room": "kitchen"})
	id["accent"], _ = v.unit(t, "c3", "bob", "PLAN", "Café crème at the résidence", nil)
	id["empty"], _ = v.unit(t, "c3", "bob", "PLAN", map[string]any{"n": 1}, nil) // no text
	v.set(t, "s1", "g1", "i1", map[string]any{"title": "quick sync of the fox feed", "count": 3})
	v.set(t, "s1", "g1", "i2", "a plain string item about Lisbon")
	v.set(t, "s2", "g1", "i3", map[string]any{"text": "temporary words"})
	return id
}

func TestCorpusQueries(t *testing.T) {
	v := newEnv(t)
	id := corpus(t, v)
	cases := []struct {
		name string
		q    search.Query
		want []string // ids, sorted
	}{
		{"term", search.Query{Q: "lazy"}, []string{id["dog"], id["fox"]}},
		{"term is case-insensitive", search.Query{Q: "LAZY"}, []string{id["dog"], id["fox"]}},
		{"phrase", search.Query{Q: `"lazy dog sleeps"`}, []string{id["dog"]}},
		{"phrase order matters", search.Query{Q: `"dog lazy"`}, nil},
		{"prefix", search.Query{Q: "umbrel*"}, []string{id["json"]}},
		{"AND", search.Query{Q: "quick AND fox"}, []string{"i1", id["fox"]}},
		{"implicit AND", search.Query{Q: "quick fox"}, []string{"i1", id["fox"]}},
		{"OR", search.Query{Q: "afternoon OR thermometer"}, []string{id["dog"], id["meta"]}},
		{"NOT", search.Query{Q: "lazy NOT quick"}, []string{id["dog"]}},
		{"parentheses", search.Query{Q: "(quick OR sleeps) NOT feed"}, []string{id["dog"], id["fox"]}},
		{"nested JSON string leaf", search.Query{Q: "lisbon"}, []string{"i2", id["json"]}},
		{"metadata value", search.Query{Q: "kitchen"}, []string{id["meta"]}},
		{"metadata key is not text", search.Query{Q: "room"}, nil},
		{"JSON key is not text", search.Query{Q: "city"}, nil},
		{"number is not text", search.Query{Q: "42"}, nil},
		{"diacritics folded", search.Query{Q: "cafe residence"}, []string{id["accent"]}},
		{"kind workunit", search.Query{Q: "quick", Kind: search.KindUnit}, []string{id["fox"]}},
		{"kind stream_item", search.Query{Q: "quick", Kind: search.KindItem}, []string{"i1"}},
		{"context", search.Query{Q: "lazy", ContextID: "c1"}, []string{id["dog"], id["fox"]}},
		{"context excludes", search.Query{Q: "lisbon", ContextID: "c1"}, nil},
		{"agent", search.Query{Q: "lazy", AgentID: "bob"}, []string{id["dog"]}},
		{"type", search.Query{Q: "lazy", Type: "MESSAGE"}, []string{id["fox"]}},
		{"context and agent", search.Query{Q: "lazy OR lisbon", ContextID: "c1", AgentID: "alice"}, []string{id["fox"]}},
		{"stream", search.Query{Q: "lisbon OR temporary", Stream: "s1"}, []string{"i2"}},
		{"prefix of a name is not a filter", search.Query{Q: "lazy", ContextID: "c"}, nil},
		{"user query cannot reach tags", search.Query{Q: "tags : kw"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sortedIDs(v.search(t, tc.q))
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestHitFields(t *testing.T) {
	v := newEnv(t)
	id, seq := v.unit(t, "c1", "alice", "MESSAGE", "needle in a haystack", nil)
	iseq := v.set(t, "s1", "g1", "item-1", map[string]any{"v": "another needle"})
	res := v.search(t, search.Query{Q: "needle", Sort: search.SortRecent})
	if len(res.Hits) != 2 {
		t.Fatalf("hits %+v", res.Hits)
	}
	item, u := res.Hits[0], res.Hits[1]
	if item.Kind != search.KindItem || item.ID != "item-1" || item.Stream != "s1" || item.Group != "g1" || item.Seq != iseq || item.ContextID != "" {
		t.Errorf("item hit %+v", item)
	}
	if u.Kind != search.KindUnit || u.ID != id || u.ContextID != "c1" || u.Seq != seq || u.Stream != "" {
		t.Errorf("unit hit %+v", u)
	}
	if u.Snippet != "<mark>needle</mark> in a haystack" {
		t.Errorf("snippet %q", u.Snippet)
	}
	if b, _ := json.Marshal(res.Hits[0]); !strings.Contains(string(b), `"score":0,`) {
		t.Errorf("sort=recent hit %s, want score 0", b)
	}
	for _, h := range v.search(t, search.Query{Q: "needle"}).Hits {
		if h.Score <= 0 {
			t.Errorf("relevance score %v, want > 0", h.Score)
		}
	}
	if res.IndexedSeq < iseq || res.Total != nil {
		t.Errorf("indexed_seq %d total %v", res.IndexedSeq, res.Total)
	}
}

func TestSortLimitOffsetCount(t *testing.T) {
	v := newEnv(t)
	var seqs []uint64
	for i := range 30 {
		// Relevance: more mentions of "apple" in shorter text rank higher.
		text := strings.Repeat("apple ", 1+i%5) + fmt.Sprintf("filler %d words", i)
		_, s := v.unit(t, "c", "a", "MESSAGE", text, nil)
		seqs = append(seqs, s)
	}
	v.unit(t, "c", "a", "MESSAGE", "pear only", nil)

	res := v.search(t, search.Query{Q: "apple", Sort: search.SortRecent, Limit: 1000, Count: true})
	if len(res.Hits) != 30 || res.Total == nil || *res.Total != 30 {
		t.Fatalf("%d hits, total %v", len(res.Hits), res.Total)
	}
	for i, h := range res.Hits {
		if h.Seq != seqs[len(seqs)-1-i] {
			t.Fatalf("recent hit %d seq %d, want %d", i, h.Seq, seqs[len(seqs)-1-i])
		}
	}
	rel := v.search(t, search.Query{Q: "apple", Limit: 1000})
	for i := 1; i < len(rel.Hits); i++ {
		if rel.Hits[i].Score > rel.Hits[i-1].Score {
			t.Fatalf("relevance not descending at %d: %v > %v", i, rel.Hits[i].Score, rel.Hits[i-1].Score)
		}
	}
	// Pages of 7 cover every hit once, in both orders.
	for _, sort := range []string{search.SortRelevance, search.SortRecent} {
		var paged []string
		for off := 0; off < 35; off += 7 {
			paged = append(paged, ids(v.search(t, search.Query{Q: "apple", Sort: sort, Limit: 7, Offset: off}))...)
		}
		all := ids(v.search(t, search.Query{Q: "apple", Sort: sort, Limit: 1000}))
		if !slices.Equal(paged, all) {
			t.Fatalf("%s: paged %v, whole %v", sort, paged, all)
		}
	}
	if got := v.search(t, search.Query{Q: "apple"}); len(got.Hits) != search.DefaultLimit {
		t.Fatalf("default limit: %d hits", len(got.Hits))
	}
}

func TestStreamItemChanges(t *testing.T) {
	v := newEnv(t)
	v.set(t, "s", "g", "a", "original wording")
	if got := ids(v.search(t, search.Query{Q: "original"})); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("before update: %v", got)
	}
	seq := v.set(t, "s", "g", "a", map[string]any{"t": "revised wording"})
	if got := ids(v.search(t, search.Query{Q: "original"})); len(got) != 0 {
		t.Fatalf("old text still found: %v", got)
	}
	res := v.search(t, search.Query{Q: "revised"})
	if len(res.Hits) != 1 || res.Hits[0].Seq != seq {
		t.Fatalf("after update: %+v", res.Hits)
	}
	// A value without text removes the item's document; text brings it back.
	v.set(t, "s", "g", "a", 12)
	if got := ids(v.search(t, search.Query{Q: "wording"})); len(got) != 0 {
		t.Fatalf("numeric value still found: %v", got)
	}
	v.set(t, "s", "g", "a", "wording again")
	v.del(t, "s", "g", "a")
	if got := ids(v.search(t, search.Query{Q: "wording"})); len(got) != 0 {
		t.Fatalf("deleted item still found: %v", got)
	}
	// Many changes of one item in one index batch leave its last value.
	for i := range 50 {
		v.set(t, "s", "g", "b", fmt.Sprintf("version%d", i))
	}
	if got := ids(v.search(t, search.Query{Q: "version49"})); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("last version: %v", got)
	}
	if got := ids(v.search(t, search.Query{Q: "version48"})); len(got) != 0 {
		t.Fatalf("older version found: %v", got)
	}
}

func TestBadQueries(t *testing.T) {
	v := newEnv(t)
	v.unit(t, "c", "a", "MESSAGE", "something", nil)
	cases := []struct {
		q     search.Query
		field string
	}{
		{search.Query{}, "q:"},
		{search.Query{Q: "   "}, "q:"},
		{search.Query{Q: strings.Repeat("a", search.MaxQueryBytes+1)}, "q:"},
		{search.Query{Q: "a\x00b"}, "q:"},
		{search.Query{Q: "(a"}, "q:"},
		{search.Query{Q: "a)"}, "q:"},
		{search.Query{Q: "a) OR tags : (kw"}, "q:"},
		{search.Query{Q: `"a`}, "q:"},
		{search.Query{Q: "a AND"}, "q:"},
		{search.Query{Q: "AND a"}, "q:"},
		{search.Query{Q: "foo:bar"}, "q:"},
		{search.Query{Q: "NEAR(a b"}, "q:"},
		{search.Query{Q: "*"}, "q:"},
		{search.Query{Q: "a", Kind: "unit"}, "kind:"},
		{search.Query{Q: "a", Sort: "newest"}, "sort:"},
		{search.Query{Q: "a", Limit: -1}, "limit:"},
		{search.Query{Q: "a", Limit: search.MaxLimit + 1}, "limit:"},
		{search.Query{Q: "a", Offset: -1}, "offset:"},
		{search.Query{Q: "a", Offset: search.MaxOffset + 1}, "offset:"},
		{search.Query{Q: "a", ContextID: "bad name"}, "context_id:"},
		{search.Query{Q: "a", AgentID: "x/y"}, "agent_id:"},
		{search.Query{Q: "a", Type: strings.Repeat("T", 200)}, "type:"},
		{search.Query{Q: "a", Type: "FOO"}, "type: unknown work unit type"},
		{search.Query{Q: "a", Stream: "s s"}, "stream:"},
		{search.Query{Q: "a", Stream: "s", ContextID: "c"}, "stream:"},
		{search.Query{Q: "a", Kind: search.KindItem, AgentID: "x"}, "kind:"},
		{search.Query{Q: "a", Kind: search.KindUnit, Stream: "x"}, "kind:"},
	}
	for _, tc := range cases {
		_, err := v.x.Search(context.Background(), tc.q)
		if !isInvalid(err) || !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("q %.40q kind %q sort %q: got %v, want an invalid argument starting %q", tc.q.Q, tc.q.Kind, tc.q.Sort, err, tc.field)
		}
	}
	// A query that ends early is named as such, not by the ")" of the
	// group the query is placed in.
	if _, err := v.x.Search(context.Background(), search.Query{Q: "hello AND"}); err == nil ||
		err.Error() != "q: syntax error: the query ends where a term was expected" {
		t.Errorf("hello AND: %v", err)
	}
	// And the index still answers.
	if got := v.search(t, search.Query{Q: "something"}); len(got.Hits) != 1 {
		t.Fatalf("after bad queries: %+v", got)
	}
}

func TestMinSeq(t *testing.T) {
	v := newEnv(t)
	// Every write is searchable with its own seq as min_seq.
	for i := range 50 {
		_, seq := v.unit(t, "c", "a", "MESSAGE", fmt.Sprintf("token%d", i), nil)
		res, err := v.x.Search(context.Background(), search.Query{Q: fmt.Sprintf("token%d", i), MinSeq: seq})
		if err != nil || len(res.Hits) != 1 || res.IndexedSeq < seq {
			t.Fatalf("write %d (seq %d): %+v %v", i, seq, res, err)
		}
	}
	// A seq the index does not reach: the wait ends with the context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := v.x.Search(ctx, search.Query{Q: "token1", MinSeq: v.seq.Head() + 100})
	var lag *search.LagError
	if !errorsAs(err, &lag) || lag.IndexedSeq != v.seq.Head() || lag.MinSeq != v.seq.Head()+100 {
		t.Fatalf("got %v", err)
	}
}

func TestConcurrentQueriesAndWrites(t *testing.T) {
	v := newEnv(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var written atomic.Int64
	var lastSeq atomic.Uint64
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, seq := v.unit(t, fmt.Sprintf("c%d", w), "a", "MESSAGE", fmt.Sprintf("common word w%dn%d", w, i), nil)
				lastSeq.Store(max(lastSeq.Load(), seq))
				written.Add(1)
			}
		})
	}
	errs := make(chan error, 4)
	for r := range 3 {
		wg.Go(func() {
			var prev uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				sort := search.SortRecent
				if r == 0 {
					sort = search.SortRelevance
				}
				res, err := v.x.Search(context.Background(), search.Query{Q: "common", Sort: sort, Count: true})
				if err != nil {
					errs <- err
					return
				}
				if res.IndexedSeq < prev {
					errs <- fmt.Errorf("indexed_seq went back from %d to %d", prev, res.IndexedSeq)
					return
				}
				prev = res.IndexedSeq
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res := v.search(t, search.Query{Q: "common", Count: true, Limit: 1})
	if *res.Total != written.Load() {
		t.Fatalf("total %d, written %d", *res.Total, written.Load())
	}
	t.Logf("%d writes while queries ran", written.Load())
}

// TestMinSeqDuringRebuilds: a rebuild replaces the file and starts again
// from 0; a query with min_seq never answers from an index short of it.
func TestMinSeqDuringRebuilds(t *testing.T) {
	v := newEnv(t)
	var last uint64
	for i := range 20 {
		_, last = v.unit(t, "c", "a", "MESSAGE", fmt.Sprintf("disk %d", i), nil)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				v.x.Reindex("test")
			}
		}
	})
	for range 100 {
		res, err := v.x.Search(context.Background(), search.Query{Q: "disk", MinSeq: last, Limit: 100})
		var lag *search.LagError
		switch {
		case errorsAs(err, &lag):
		case err != nil:
			t.Fatal(err)
		case res.IndexedSeq < last || len(res.Hits) != 20:
			close(stop)
			wg.Wait()
			t.Fatalf("indexed_seq %d with min_seq %d: %d hits", res.IndexedSeq, last, len(res.Hits))
		}
	}
	close(stop)
	wg.Wait()
}
