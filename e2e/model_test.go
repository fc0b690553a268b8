package e2e_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

// The shapes of the contract, as a client decodes them.

type unitJSON struct {
	ID            string            `json:"id"`
	Seq           uint64            `json:"seq"`
	ContextID     string            `json:"context_id"`
	AgentID       string            `json:"agent_id"`
	Type          string            `json:"type"`
	Timestamp     string            `json:"timestamp"`
	Metadata      map[string]string `json:"metadata"`
	Payload       json.RawMessage   `json:"payload"`
	PayloadBase64 *string           `json:"payload_base64"`
	Relationships []relJSON         `json:"relationships"`
}

type relJSON struct {
	TargetID string            `json:"target_id"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata"`
}

type contextJSON struct {
	ID          string            `json:"id"`
	DisplayName string            `json:"display_name"`
	AgentIDs    []string          `json:"agent_ids"`
	PinnedUnits []string          `json:"pinned_units"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   string            `json:"created_at"`
	UpdatedAt   string            `json:"updated_at"`
}

var (
	unitKeys     = []string{"id", "seq", "context_id", "agent_id", "type", "timestamp", "metadata", "relationships"}
	unitOptional = []string{"payload", "payload_base64"}
	contextKeys  = []string{"id", "display_name", "agent_ids", "pinned_units", "metadata", "created_at", "updated_at"}
	timeRE       = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`)
)

// checkKeys checks that the object raw has every key of required and no key
// outside required and optional.
func checkKeys(t testing.TB, what string, raw []byte, required, optional []string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: not a JSON object: %v: %s", what, err, raw)
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: lacks %q: %s", what, k, raw)
		}
	}
	for k := range m {
		if !slices.Contains(required, k) && !slices.Contains(optional, k) {
			t.Errorf("%s: unexpected key %q: %s", what, k, raw)
		}
	}
}

func decodeUnit(t testing.TB, raw []byte) unitJSON {
	t.Helper()
	checkKeys(t, "work unit", raw, unitKeys, unitOptional)
	var u unitJSON
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatalf("work unit: %v: %s", err, raw)
	}
	if _, err := ulid.ParseStrict(u.ID); err != nil || u.ID != strings.ToUpper(u.ID) {
		t.Errorf("work unit id %q is not an upper-case ULID", u.ID)
	}
	if u.Seq == 0 {
		t.Errorf("work unit %s: seq 0", u.ID)
	}
	if !timeRE.MatchString(u.Timestamp) {
		t.Errorf("work unit %s: timestamp %q is not RFC 3339 UTC with nanoseconds", u.ID, u.Timestamp)
	}
	if u.Metadata == nil || u.Relationships == nil {
		t.Errorf("work unit %s: metadata and relationships must be an object and an array: %s", u.ID, raw)
	}
	return u
}

func decodeContext(t testing.TB, raw []byte) contextJSON {
	t.Helper()
	checkKeys(t, "context", raw, contextKeys, nil)
	var c contextJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("context: %v: %s", err, raw)
	}
	if c.AgentIDs == nil || c.PinnedUnits == nil || c.Metadata == nil {
		t.Errorf("context %s: agent_ids, pinned_units and metadata must not be null: %s", c.ID, raw)
	}
	if !timeRE.MatchString(c.CreatedAt) || !timeRE.MatchString(c.UpdatedAt) {
		t.Errorf("context %s: times %q, %q are not RFC 3339 UTC with nanoseconds", c.ID, c.CreatedAt, c.UpdatedAt)
	}
	return c
}

// page is one page of a listing: its items (raw) and next_cursor.
type page struct {
	Items [][]byte
	Next  string // "" when next_cursor is null
}

// decodePage decodes {"<name>": [...], "next_cursor": string|null}.
func decodePage(t testing.TB, name string, raw []byte) page {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("list: %v: %s", err, raw)
	}
	if len(m) != 2 {
		t.Errorf("list: want exactly %q and next_cursor: %s", name, raw)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(m[name], &items); err != nil || items == nil {
		t.Fatalf("list: %q is not an array: %s", name, raw)
	}
	nc, ok := m["next_cursor"]
	if !ok {
		t.Fatalf("list: no next_cursor: %s", raw)
	}
	var next *string
	if err := json.Unmarshal(nc, &next); err != nil {
		t.Fatalf("list: next_cursor: %v: %s", err, raw)
	}
	p := page{Items: make([][]byte, len(items))}
	for i, it := range items {
		p.Items[i] = it
	}
	if next != nil {
		if *next == "" {
			t.Errorf("list: next_cursor is \"\"; the end is null")
		}
		p.Next = *next
	}
	return p
}

// listAll follows next_cursor from path (which has a query string or not)
// until null, and returns every item in order and the number of pages.
func listAll(t testing.TB, p *proc, path, name string) ([][]byte, int) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var all [][]byte
	cursor := ""
	for pages := 1; ; pages++ {
		q := path
		if cursor != "" {
			q += sep + "cursor=" + url.QueryEscape(cursor)
		}
		pg := decodePage(t, name, p.must(t, 200, "GET", q, nil))
		all = append(all, pg.Items...)
		if pg.Next == "" {
			return all, pages
		}
		if pages > 100000 {
			t.Fatalf("listing %s does not end", path)
		}
		cursor = pg.Next
	}
}

func decodeUnits(t testing.TB, raws [][]byte) []unitJSON {
	t.Helper()
	out := make([]unitJSON, len(raws))
	for i, r := range raws {
		out[i] = decodeUnit(t, r)
	}
	return out
}

func unitIDs(us []unitJSON) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newID is a fresh upper-case ULID.
func newID() string { return ulid.Make().String() }
