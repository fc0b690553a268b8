package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Search finds work units and stream items by their text: a work unit's
// string payload or the string leaves of its JSON payload, and its metadata
// values; a stream item's value, read the same way. The index follows the
// log in the background; SearchQuery.MinSeq makes a search wait for a write
// (read your writes).

// SearchKind is the kind of a searched document.
type SearchKind string

// The kinds.
const (
	KindWorkUnit   SearchKind = "workunit"
	KindStreamItem SearchKind = "stream_item"
)

// SearchSort is the order of the hits.
type SearchSort string

// The orders.
const (
	// SortRelevance (the default) puts the best bm25 score first.
	SortRelevance SearchSort = "relevance"
	// SortRecent puts the newest change first and scores nothing (Score
	// 0): the cheap order for terms that match much of the corpus.
	SortRecent SearchSort = "recent"
)

// SearchQuery is one search. Q is required; the zero value of every other
// field means "any" or the server's default.
type SearchQuery struct {
	// Q is the FTS5 query, 1 to 2048 bytes: terms (all of them), "phrases",
	// prefix*, AND, OR, NOT, parentheses. Quote text with punctuation. A
	// syntax error is ErrInvalidArgument.
	Q string
	// Kind keeps one kind of document.
	Kind SearchKind
	// ContextID, AgentID and Type keep work units of that context, agent
	// and type; Stream keeps items of that stream. A work unit filter with
	// Stream is ErrInvalidArgument.
	ContextID string
	AgentID   string
	Type      UnitType
	Stream    string
	// Sort is SortRelevance (empty means this) or SortRecent.
	Sort SearchSort
	// Limit is the most hits, 1 to 1000. Zero means the server's default
	// (20).
	Limit int
	// Offset skips that many hits first, 0 to 10000.
	Offset int
	// Count asks for SearchResult.Total (a scan of all the matches).
	Count bool
	// MinSeq makes the server wait, up to 5 s, until the index holds that
	// seq (the seq of your write) before it searches. Not reached in time:
	// ErrUnavailable, and SearchLagging tells how far the index is. Zero
	// does not wait.
	MinSeq uint64
}

func (q SearchQuery) query() url.Values {
	v := url.Values{"q": {q.Q}}
	for k, s := range map[string]string{
		"kind": string(q.Kind), "context_id": q.ContextID, "agent_id": q.AgentID,
		"type": string(q.Type), "stream": q.Stream, "sort": string(q.Sort),
	} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Count {
		v.Set("count", "true")
	}
	if q.MinSeq != 0 {
		v.Set("min_seq", strconv.FormatUint(q.MinSeq, 10))
	}
	return v
}

// SearchHit is one matching document.
type SearchHit struct {
	Kind SearchKind `json:"kind"`
	// ID is the work unit's id or the stream item's id.
	ID string `json:"id"`
	// ContextID is the work unit's context (work units only).
	ContextID string `json:"context_id,omitempty"`
	// Stream and Group are the item's (stream items only).
	Stream string `json:"stream,omitempty"`
	Group  string `json:"group,omitempty"`
	// Score is the bm25 relevance with SortRelevance: higher is better,
	// comparable only within one answer. It is 0 with SortRecent, which
	// does not score.
	Score float64 `json:"score"`
	// Snippet is up to 16 words around the best match, the matched words
	// between <mark> and </mark>, "…" where text was cut. It is plain text:
	// escape it before showing it as HTML.
	Snippet string `json:"snippet"`
	// Seq is the seq of the change the document holds (a work unit's Seq;
	// an item's last set or update); 0 for an item a rebuild found after
	// retention had removed that change.
	Seq uint64 `json:"seq"`
}

// SearchResult is the answer of Search.
type SearchResult struct {
	Hits []SearchHit `json:"hits"`
	// Total is the number of all matches, with SearchQuery.Count; nil
	// otherwise.
	Total *int64 `json:"total,omitempty"`
	// IndexedSeq: every event up to this seq is reflected in the answer.
	IndexedSeq uint64 `json:"indexed_seq"`
}

// Search runs a full-text search (GET /v1/search).
func (c *Client) Search(ctx context.Context, q SearchQuery) (*SearchResult, error) {
	var out SearchResult
	if _, err := c.do(ctx, http.MethodGet, "/v1/search", q.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SearchLagging reports whether err is a Search whose MinSeq the index did
// not reach within the server's wait (ErrUnavailable), and returns the seq
// the index had reached.
func SearchLagging(err error) (indexedSeq uint64, ok bool) {
	var e *Error
	if !errors.As(err, &e) || !errors.Is(e, ErrUnavailable) {
		return 0, false
	}
	n, ok := e.Details["indexed_seq"].(float64)
	if !ok {
		return 0, false
	}
	return uint64(n), true
}

// ReindexStatus is what the search index is doing.
type ReindexStatus struct {
	// IndexedSeq: every event up to it is searchable.
	IndexedSeq uint64 `json:"indexed_seq"`
	// HeadSeq is the last durable seq of the log.
	HeadSeq uint64 `json:"head_seq"`
	// Rebuilding is true from the request of a rebuild until the index has
	// caught up with the log again.
	Rebuilding bool `json:"rebuilding"`
	// Reason says why the last rebuild started; empty if none ran.
	Reason string `json:"reason,omitempty"`
	// Phase, while rebuilding: "queued", "scan" (reading stored records,
	// for a log retention has shortened) or "log" (replaying the log).
	Phase string `json:"phase,omitempty"`
	// Scanned counts the stored records the rebuild's scan has read.
	Scanned int64 `json:"scanned,omitempty"`
	// StartedAt is when the last rebuild was asked for; nil if none was.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// Done reports whether the index has caught up with the log up to head
// (the HeadSeq of the status Reindex answered).
func (s *ReindexStatus) Done(head uint64) bool {
	return !s.Rebuilding && s.IndexedSeq >= head
}

// Reindex starts a rebuild of the search index from storage (POST
// /v1/admin/reindex) and returns the status at once. Searches meanwhile
// answer from what has been rebuilt so far; poll ReindexStatus until Done.
func (c *Client) Reindex(ctx context.Context) (*ReindexStatus, error) {
	var out ReindexStatus
	if _, err := c.do(ctx, http.MethodPost, "/v1/admin/reindex", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReindexStatus returns the search index's status (GET
// /v1/admin/reindex).
func (c *Client) ReindexStatus(ctx context.Context) (*ReindexStatus, error) {
	var out ReindexStatus
	if _, err := c.do(ctx, http.MethodGet, "/v1/admin/reindex", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
