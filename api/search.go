package api

import (
	"bytes"
	"encoding/json"
	"math"

	"github.com/gofiber/fiber/v2"

	"engram/internal/engine"
	"engram/internal/search"
	"engram/internal/wal"
)

// reindexReason is the reason a rebuild asked for over the API reports.
const reindexReason = "requested over the API"

func (h *handlers) search(c *fiber.Ctx) error {
	q, err := searchQuery(c)
	if err != nil {
		return err
	}
	// A min_seq wait or a long query ends when the client hangs up.
	ctx, stop := waitContext(c)
	defer stop()
	res, err := h.cfg.Search.Search(ctx, q)
	if err != nil {
		return err
	}
	return sendUnescaped(c, fiber.StatusOK, res)
}

// searchQuery reads the query parameters of GET /v1/search. The integers
// are parsed here; the search package checks the rest (and the ranges
// again) and names the parameter of each problem.
func searchQuery(c *fiber.Ctx) (search.Query, error) {
	q := search.Query{
		Q:         c.Query("q"),
		Kind:      c.Query("kind"),
		ContextID: c.Query("context_id"),
		AgentID:   c.Query("agent_id"),
		Type:      c.Query("type"),
		Stream:    c.Query("stream"),
		Sort:      c.Query("sort"),
	}
	var err error
	if q.Limit, err = queryInt(c, "limit", 1, search.MaxLimit); err != nil {
		return q, err
	}
	if q.Offset, err = queryInt(c, "offset", 0, search.MaxOffset); err != nil {
		return q, err
	}
	minSeq, err := queryInt(c, "min_seq", 0, math.MaxInt)
	if err != nil {
		return q, err
	}
	q.MinSeq = uint64(minSeq)
	switch s := c.Query("count"); s {
	case "", "false":
	case "true":
		q.Count = true
	default:
		return q, badRequest("count: %q is not true or false", engine.Truncate(s))
	}
	return q, nil
}

func (h *handlers) reindex(c *fiber.Ctx) error {
	if len(c.Body()) > 0 { // nothing to say but {}
		var in struct{}
		if err := decode(c, &in); err != nil {
			return err
		}
	}
	st := h.cfg.Search.Reindex(reindexReason)
	h.audit(c, "reindex", "head_seq", st.HeadSeq)
	return sendValue(c, fiber.StatusAccepted, wireStatus(st))
}

func (h *handlers) reindexStatus(c *fiber.Ctx) error {
	return sendValue(c, fiber.StatusOK, wireStatus(h.cfg.Search.Status()))
}

// reindexStatusJSON is search.Status with its time written as every time of
// the API is (UTC, nine fractional digits).
type reindexStatusJSON struct {
	search.Status
	StartedAt *string `json:"started_at,omitempty"` // shadows Status.StartedAt
}

func wireStatus(st search.Status) reindexStatusJSON {
	out := reindexStatusJSON{Status: st}
	if st.StartedAt != nil {
		s := wal.FormatTime(*st.StartedAt)
		out.StartedAt = &s
	}
	return out
}

// sendUnescaped answers v as JSON, leaving <, > and & as they are: search
// snippets carry <mark> markers, and \u003cmark\u003e would only obscure
// them (the body is application/json, never HTML).
func sendUnescaped(c *fiber.Ctx, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return sendJSON(c, status, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}
