package search

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refLeaves collects the string leaves of a decoded JSON value.
func refLeaves(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			refLeaves(e, out)
		}
	case map[string]any:
		for _, e := range x {
			refLeaves(e, out)
		}
	}
}

// FuzzWalkLeaves checks the streaming walk against decoding the whole value:
// the same leaves for valid JSON (objects with repeated keys aside, which
// decode to one), and no panic on anything.
func FuzzWalkLeaves(f *testing.F) {
	for _, s := range []string{
		`"plain"`, `{"a":"x","b":["y",1,true,null,{"c":"z"}],"d":{"e":"w"}}`, `[["a"],["b",{"k":"v"}]]`,
		`42`, `null`, `{"a":{}}`, `[]`, `{"a":[{"b":"c"}],"d":"e"}`, `"\u00e9\n"`, `{"a":"b"} x`, `{"a"`, `[1,`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []string
		err := walkLeaves(b, func(s string) bool { got = append(got, s); return true })
		v, uerr := decodeAny(b)
		if uerr != nil {
			if err == nil && json.Valid(b) {
				t.Fatalf("%q: walk succeeded on what Unmarshal refuses", b)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: valid JSON, walk failed: %v", b, err)
		}
		if strings.Contains(string(b), `":`) && hasRepeatedKeys(b) {
			return
		}
		var want []string
		refLeaves(v, &want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%q: leaves %q, want %q", b, got, want)
		}
	})
}

// hasRepeatedKeys reports JSON whose decoding drops values (the walk sees
// them all).
func hasRepeatedKeys(b []byte) bool {
	v, _ := decodeAny(b)
	re, _ := json.Marshal(v)
	var n1, n2 int
	_ = walkLeaves(b, func(string) bool { n1++; return true })
	_ = walkLeaves(re, func(string) bool { n2++; return true })
	return n1 != n2
}

// FuzzTextBuilder: the body never passes the cap and is valid UTF-8 when
// its leaves are.
func FuzzTextBuilder(f *testing.F) {
	f.Add(`{"a":"héllo wörld","b":["x","y"]}`, 7)
	f.Add(`"日本語のテキスト"`, 5)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		tb := textBuilder{max: max}
		if tb.addLeaves([]byte(s)) != nil {
			return
		}
		if tb.Len() > max {
			t.Fatalf("body %d bytes, cap %d", tb.Len(), max)
		}
		if utf8.ValidString(s) && !utf8.ValidString(tb.String()) {
			t.Fatalf("body %q is not UTF-8", tb.String())
		}
	})
}

// decodeAny decodes one JSON value with numbers kept as text (any number
// JSON allows, however large).
func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errNotJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotJSON
	}
	return v, nil
}
