package search

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"engram/internal/engine"
)

// Query limits.
const (
	MaxQueryBytes = 2048
	DefaultLimit  = 20
	MaxLimit      = 1000
	MaxOffset     = 10000
	// MinSeqWait is how long a query with min_seq waits for the index.
	MinSeqWait = 5 * time.Second
)

// Snippet markers around the matched terms.
const (
	MarkOpen  = "<mark>"
	MarkClose = "</mark>"
	snipEll   = "…"
	snipWords = 16
)

// Sort orders.
const (
	SortRelevance = "relevance"
	SortRecent    = "recent"
)

// Query is one search.
type Query struct {
	// Q is the FTS5 query: terms, "phrases", prefix*, AND, OR, NOT,
	// parentheses, NEAR.
	Q string
	// Kind is "", KindUnit or KindItem.
	Kind string
	// Filters: ContextID, AgentID and Type find work units; Stream finds
	// stream items. Empty means any.
	ContextID, AgentID, Type, Stream string
	// Sort is SortRelevance (empty means this) or SortRecent.
	Sort string
	// Limit is 1..MaxLimit (zero means DefaultLimit); Offset 0..MaxOffset.
	Limit, Offset int
	// Count asks for the number of all matches.
	Count bool
	// MinSeq waits until the index holds this seq (read your writes).
	MinSeq uint64
}

// Hit is one match.
type Hit struct {
	Kind      string `json:"kind"`
	ID        string `json:"id"`
	ContextID string `json:"context_id,omitempty"`
	Stream    string `json:"stream,omitempty"`
	Group     string `json:"group,omitempty"`
	// Score is the bm25 relevance (higher is better) with sort=relevance,
	// and 0 with sort=recent, which does not score.
	Score   float64 `json:"score"`
	Snippet string  `json:"snippet"`
	// Seq is the seq of the change the document holds; 0 for a stream item
	// that a rebuild found in state after retention removed its change.
	Seq uint64 `json:"seq"`
}

// Result is a query's answer.
type Result struct {
	Hits       []Hit  `json:"hits"`
	Total      *int64 `json:"total,omitempty"`
	IndexedSeq uint64 `json:"indexed_seq"`
}

// LagError answers a query whose MinSeq the index did not reach in time.
type LagError struct{ MinSeq, IndexedSeq uint64 }

func (e *LagError) Error() string {
	return fmt.Sprintf("the search index holds events up to seq %d and did not reach min_seq %d within %v; retry later",
		e.IndexedSeq, e.MinSeq, MinSeqWait)
}

// ErrUnavailable reports an index that cannot answer now (being replaced,
// or found corrupt; a rebuild is under way).
var ErrUnavailable = errors.New("search: index unavailable")

var invalidf = func(format string, args ...any) error { return engine.Errorf(engine.ErrInvalid, format, args...) }

// validate checks q and fills its defaults.
func (q *Query) validate() error {
	switch {
	case strings.TrimSpace(q.Q) == "":
		return invalidf("q: required (an FTS5 query: terms, \"phrases\", prefix*, AND, OR, NOT)")
	case len(q.Q) > MaxQueryBytes:
		return invalidf("q: %d bytes, at most %d", len(q.Q), MaxQueryBytes)
	case strings.ContainsRune(q.Q, 0):
		return invalidf("q: contains a NUL byte")
	}
	if err := checkNesting(q.Q); err != nil {
		return err
	}
	switch q.Kind {
	case "", KindUnit, KindItem:
	default:
		return invalidf("kind: %q is not %s or %s", engine.Truncate(q.Kind), KindUnit, KindItem)
	}
	for _, f := range []struct{ name, v string }{
		{"context_id", q.ContextID}, {"agent_id", q.AgentID}, {"stream", q.Stream},
	} {
		if f.v != "" && !engine.ValidName(f.v) {
			return invalidf("%s: %q must match ^[A-Za-z0-9._~:@-]{1,128}$", f.name, engine.Truncate(f.v))
		}
	}
	if q.Type != "" {
		if err := engine.CheckUnitType("type", q.Type); err != nil {
			return err
		}
	}
	unitFilter := q.ContextID != "" || q.AgentID != "" || q.Type != ""
	switch {
	case unitFilter && q.Stream != "":
		return invalidf("stream: filters stream items, and context_id, agent_id and type filter work units; use one or the other")
	case unitFilter && q.Kind == KindItem:
		return invalidf("kind: %s cannot match context_id, agent_id or type, which filter work units", KindItem)
	case q.Stream != "" && q.Kind == KindUnit:
		return invalidf("kind: %s cannot match stream, which filters stream items", KindUnit)
	}
	switch q.Sort {
	case "":
		q.Sort = SortRelevance
	case SortRelevance, SortRecent:
	default:
		return invalidf("sort: %q is not %s or %s", engine.Truncate(q.Sort), SortRelevance, SortRecent)
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit < 1 || q.Limit > MaxLimit:
		return invalidf("limit: %d is outside 1..%d", q.Limit, MaxLimit)
	}
	if q.Offset < 0 || q.Offset > MaxOffset {
		return invalidf("offset: %d is outside 0..%d", q.Offset, MaxOffset)
	}
	return nil
}

// checkNesting rejects a query whose parentheses or double quotes do not
// pair up. The query is placed inside "body : ( … )"; unpaired ones could
// close that group early and reach the tags column.
func checkNesting(q string) error {
	depth, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quoted:
			if c == '"' {
				if i+1 < len(q) && q[i+1] == '"' { // "" inside a string
					i++
				} else {
					quoted = false
				}
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth < 0 {
				return invalidf("q: syntax error: a ')' at byte %d closes nothing", i)
			}
		}
	}
	switch {
	case quoted:
		return invalidf("q: syntax error: a string (\") is not closed")
	case depth > 0:
		return invalidf("q: syntax error: %d '(' not closed", depth)
	}
	return nil
}

// match is the FTS5 expression of q: the user's query on the body column,
// ANDed with a tag token per filter.
func (q *Query) match() string {
	var b strings.Builder
	b.WriteString("body : (")
	b.WriteString(q.Q)
	b.WriteString(")")
	var tags []string
	switch {
	case q.Kind != "":
		tags = append(tags, kindTag(q.Kind))
	case q.ContextID != "" || q.AgentID != "" || q.Type != "":
		tags = append(tags, tagUnit)
	case q.Stream != "":
		tags = append(tags, tagItem)
	}
	if q.ContextID != "" {
		tags = append(tags, tagToken(tagContext, q.ContextID))
	}
	if q.AgentID != "" {
		tags = append(tags, tagToken(tagAgent, q.AgentID))
	}
	if q.Type != "" {
		tags = append(tags, tagToken(tagType, q.Type))
	}
	if q.Stream != "" {
		tags = append(tags, tagToken(tagStream, q.Stream))
	}
	if len(tags) > 0 {
		b.WriteString(` AND tags : ("`)
		b.WriteString(strings.Join(tags, `" AND "`))
		b.WriteString(`")`)
	}
	return b.String()
}

const hitColumns = `rowid, kind, id, ctx, stream, grp, snippet(docs, 0, '` + MarkOpen + `', '` + MarkClose + `', '` + snipEll + `', 16)`

var (
	// Ranked: FTS5 sorts by its rank (bm25 with tags weighted 0).
	sqlRelevance = `SELECT ` + hitColumns + `, rank FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT ? OFFSET ?`
	// Newest first: FTS5 walks the matches in descending rowid (seq)
	// order and stops at the limit. No score: bm25 counts, once per query,
	// every row holding each term (its idf), which is the cost of a common
	// term that this order exists to avoid (at 300k documents, 0.2 ms
	// without it, 6.4 ms with it, growing with the matches).
	sqlRecent = `SELECT ` + hitColumns + `, 0.0 FROM docs WHERE docs MATCH ? ORDER BY rowid DESC LIMIT ? OFFSET ?`
	sqlCount  = `SELECT count(*) FROM docs WHERE docs MATCH ?`
)

// Search answers q.
func (x *Index) Search(ctx context.Context, q Query) (*Result, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	if err := x.lockAt(ctx, q.MinSeq); err != nil {
		return nil, err
	}
	defer x.mu.RUnlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, x.cfg.QueryTimeout)
	defer cancel()
	// The checkpoint read before the query: everything up to it is in the
	// answer (the reader's snapshot may hold more).
	res := &Result{Hits: []Hit{}, IndexedSeq: x.indexed.Load()}
	match := q.match()
	// Prepared once per connection (database/sql keeps them); a transaction
	// only when a total is asked for, so that hits and total see the same
	// index.
	rel, rec, cnt, err := x.f.queries()
	if err != nil {
		return nil, x.queryErr(q.Q, err)
	}
	if q.Count {
		tx, err := x.f.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, x.queryErr(q.Q, err)
		}
		defer tx.Rollback()
		rel, rec, cnt = tx.StmtContext(ctx, rel), tx.StmtContext(ctx, rec), tx.StmtContext(ctx, cnt)
	}
	stmt := rel
	if q.Sort == SortRecent {
		stmt = rec
	}
	rows, err := stmt.QueryContext(ctx, match, q.Limit, q.Offset)
	if err != nil {
		return nil, x.queryErr(q.Q, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h Hit
		var rowid int64
		var kind string
		var score float64
		if err := rows.Scan(&rowid, &kind, &h.ID, &h.ContextID, &h.Stream, &h.Group, &h.Snippet, &score); err != nil {
			return nil, x.queryErr(q.Q, err)
		}
		// bm25 is lower for better matches; the API's score is higher.
		// (0 - score, not -score: no "-0" for sort=recent's 0.)
		h.Kind, h.Score = kind, 0-score
		if rowid > 0 {
			h.Seq = uint64(rowid)
		}
		res.Hits = append(res.Hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, x.queryErr(q.Q, err)
	}
	if q.Count {
		var n int64
		if err := cnt.QueryRowContext(ctx, match).Scan(&n); err != nil {
			return nil, x.queryErr(q.Q, err)
		}
		res.Total = &n
	}
	x.m.query.WithLabelValues(q.Sort).Observe(time.Since(start).Seconds())
	return res, nil
}

// lockAt waits until the index holds minSeq (up to MinSeqWait), then
// takes the read lock on the index file. A rebuild can replace the file
// between the wait and the lock and start again from 0, so the checkpoint
// is checked again under the lock.
func (x *Index) lockAt(ctx context.Context, minSeq uint64) error {
	deadline := time.Now().Add(MinSeqWait)
	for {
		if minSeq > 0 && !x.WaitFor(ctx, minSeq, time.Until(deadline)) {
			return &LagError{MinSeq: minSeq, IndexedSeq: x.indexed.Load()}
		}
		x.mu.RLock()
		if x.f == nil {
			x.mu.RUnlock()
			return ErrUnavailable
		}
		if x.indexed.Load() >= minSeq {
			return nil
		}
		x.mu.RUnlock()
	}
}

// queryErr turns a SQLite error into what the client is told: the query's
// own errors (syntax, an unknown column) are invalid arguments in plain
// words; a corrupt index starts a rebuild.
func (x *Index) queryErr(q string, err error) error {
	switch code := sqliteCode(err); {
	case code == sqlite3.SQLITE_ERROR:
		// Our SQL is fixed, so an error here is the MATCH expression's.
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "SQL logic error: ")
		msg = strings.TrimPrefix(msg, "fts5: ")
		if i := strings.LastIndex(msg, " ("); i > 0 && strings.HasSuffix(msg, ")") {
			msg = msg[:i]
		}
		if msg == `syntax error near ")"` && !strings.Contains(q, ")") {
			// The ")" is the one closing "body : ( q )": q ended early.
			msg = "syntax error: the query ends where a term was expected"
		}
		return invalidf("q: %s", msg)
	case code == sqlite3.SQLITE_INTERRUPT || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: the query ran longer than %v and was stopped; narrow it", ErrUnavailable, x.cfg.QueryTimeout)
	case isCorrupt(err):
		x.log.Error("search: query found the index corrupt; rebuilding", "err", err)
		x.retryRebuild("corrupt index: " + err.Error())
		return fmt.Errorf("%w: the index is corrupt and is being rebuilt", ErrUnavailable)
	case code == sqlite3.SQLITE_BUSY, code == sqlite3.SQLITE_LOCKED, code == sqlite3.SQLITE_IOERR,
		code == sqlite3.SQLITE_NOMEM, code == sqlite3.SQLITE_CANTOPEN:
		// The index file or the machine, not the query: retryable.
		x.log.Warn("search: query failed", "err", err)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("search: query: %w", err)
}
