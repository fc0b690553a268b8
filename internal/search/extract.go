package search

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Document kinds as the API names them, and as the kind column stores them.
const (
	KindUnit = "workunit"
	KindItem = "stream_item"
)

// A doc is one row of the index.
type doc struct {
	rowid  int64
	kind   string
	id     string
	ctx    string // work units
	stream string // stream items
	group  string // stream items
	body   string
	tags   string
}

// Tag tokens. Each filter value becomes one token: a letter naming the
// field, then the value's bytes in hex, so that any value (names allow
// characters the tokenizer splits on) is one token, and a prefix of a value
// is a prefix of its token.
const (
	tagContext = "c"
	tagAgent   = "a"
	tagType    = "t"
	tagStream  = "s"
	tagGroup   = "g"
	tagUnit    = "kw"
	tagItem    = "ks"
)

func tagToken(field, value string) string { return field + hex.EncodeToString([]byte(value)) }

func kindTag(kind string) string {
	if kind == KindItem {
		return tagItem
	}
	return tagUnit
}

// unitFields is what the index reads of a work unit's JSON.
type unitFields struct {
	ID        string            `json:"id"`
	ContextID string            `json:"context_id"`
	AgentID   string            `json:"agent_id"`
	Type      string            `json:"type"`
	Metadata  map[string]string `json:"metadata"`
	Payload   json.RawMessage   `json:"payload"`
}

// unitDoc builds the document of a work unit from its stored JSON. A unit
// without text (a binary or numeric payload and no metadata) has no
// document: ok is false.
func unitDoc(seq uint64, unitJSON []byte, maxText int) (d doc, ok bool, err error) {
	var u unitFields
	if err := json.Unmarshal(unitJSON, &u); err != nil {
		return d, false, err
	}
	var t textBuilder
	t.max = maxText
	if len(u.Payload) > 0 {
		if err := t.addLeaves(u.Payload); err != nil {
			return d, false, err
		}
	}
	// Metadata values in key order, so that a rebuilt body is the same text.
	for _, k := range sortedKeys(u.Metadata) {
		t.add(u.Metadata[k])
	}
	if t.empty() {
		return d, false, nil
	}
	return doc{
		rowid: int64(seq), kind: KindUnit, id: u.ID, ctx: u.ContextID, body: t.String(),
		tags: strings.Join([]string{tagUnit, tagToken(tagContext, u.ContextID),
			tagToken(tagAgent, u.AgentID), tagToken(tagType, u.Type)}, " "),
	}, true, nil
}

// itemDoc builds the document of a stream item's value; ok is false when
// the value holds no text.
func itemDoc(rowid int64, stream, group, item string, value []byte, maxText int) (d doc, ok bool, err error) {
	var t textBuilder
	t.max = maxText
	if err := t.addLeaves(value); err != nil {
		return d, false, err
	}
	if t.empty() {
		return d, false, nil
	}
	return doc{
		rowid: rowid, kind: KindItem, id: item, stream: stream, group: group, body: t.String(),
		tags: strings.Join([]string{tagItem, tagToken(tagStream, stream), tagToken(tagGroup, group)}, " "),
	}, true, nil
}

// itemKey is an item's key in the items side table.
func itemKey(stream, group, item string) string { return stream + "\x00" + group + "\x00" + item }

// textBuilder joins text leaves with newlines, up to max bytes (cut at a
// rune boundary); what is past max is not indexed.
type textBuilder struct {
	strings.Builder
	max  int
	full bool
}

func (t *textBuilder) empty() bool { return t.Len() == 0 }

func (t *textBuilder) add(s string) {
	if t.full || strings.TrimSpace(s) == "" {
		return
	}
	if t.Len() > 0 {
		t.WriteByte('\n')
	}
	if room := t.max - t.Len(); len(s) > room {
		cut := max(room, 0)
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, t.full = s[:cut], true
	}
	t.WriteString(s)
}

var errNotJSON = errors.New("search: value is not JSON")

// addLeaves adds the string leaves of a JSON value.
func (t *textBuilder) addLeaves(v []byte) error {
	return walkLeaves(v, func(s string) bool {
		t.add(s)
		return !t.full
	})
}

// walkLeaves calls fn with each string leaf of the JSON value v, in order,
// until fn returns false. Object keys, numbers, booleans and nulls are not
// leaves of text.
func walkLeaves(v []byte, fn func(string) bool) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return errNotJSON
	}
	if v[0] == '"' { // the common case: a string payload
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		fn(s)
		return nil
	}
	if v[0] != '{' && v[0] != '[' {
		if !json.Valid(v) {
			return errNotJSON
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	// inObject[i] says whether the i-th open container is an object; key
	// says whether the next string in the innermost object is a key.
	var inObject []bool
	key := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(inObject) > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch x := tok.(type) {
		case json.Delim:
			switch x {
			case '{':
				inObject = append(inObject, true)
				key = true
			case '[':
				inObject = append(inObject, false)
				key = false
			default:
				inObject = inObject[:len(inObject)-1]
				key = len(inObject) > 0 && inObject[len(inObject)-1]
				if len(inObject) == 0 {
					// One value only: anything after it is not JSON.
					if _, err := dec.Token(); err != io.EOF {
						return errNotJSON
					}
					return nil
				}
			}
			continue
		case string:
			if !key && !fn(x) {
				return nil
			}
		}
		if len(inObject) > 0 && inObject[len(inObject)-1] {
			key = !key
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
