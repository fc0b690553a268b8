package jsonx_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"engram/internal/jsonx"
)

type inner struct {
	Name string            `json:"name"`
	N    int               `json:"n"`
	Tags map[string]string `json:"tags"`
}

type doc struct {
	ID    string          `json:"id"`
	Count int             `json:"count"`
	Flag  bool            `json:"flag"`
	Items []inner         `json:"items"`
	One   *inner          `json:"one"`
	Raw   json.RawMessage `json:"raw"`
	List  []string        `json:"list"`
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr []string // substrings of the error; nil means success
		check   func(t *testing.T, d *doc)
	}{
		{name: "ok", in: `{"id":"a","count":2,"flag":true,"items":[{"name":"x","n":1}],"raw":{"k":[1,2]}}`,
			check: func(t *testing.T, d *doc) {
				if d.ID != "a" || d.Count != 2 || !d.Flag || len(d.Items) != 1 || d.Items[0].Name != "x" {
					t.Errorf("decoded %+v", d)
				}
				if string(d.Raw) != `{"k":[1,2]}` {
					t.Errorf("raw = %s", d.Raw)
				}
			}},
		{name: "surrounding white space", in: " \n\t{\"id\":\"a\"}\r\n ",
			check: func(t *testing.T, d *doc) {
				if d.ID != "a" {
					t.Errorf("id = %q", d.ID)
				}
			}},
		{name: "null document", in: `null`, wantErr: []string{"body: expected a JSON object, got null"}},
		{name: "invalid UTF-8", in: "{\"id\":\"a\xffb\"}", wantErr: []string{"body: not valid UTF-8"}},
		{name: "empty body", in: ``, wantErr: []string{"body", "empty"}},
		{name: "white space body", in: " \n\t ", wantErr: []string{"body", "empty"}},
		{name: "unknown top field", in: `{"id":"a","bogus":1}`, wantErr: []string{"bogus", "unknown field"}},
		{name: "unknown nested field", in: `{"items":[{"name":"x","color":"red"}]}`, wantErr: []string{"color", "unknown field"}},
		{name: "unknown field in pointer", in: `{"one":{"nope":true}}`, wantErr: []string{"nope", "unknown field"}},
		{name: "type error top", in: `{"count":"two"}`, wantErr: []string{"count: expected a number, got JSON string"}},
		{name: "type error string", in: `{"id":5}`, wantErr: []string{"id: expected a string, got JSON number"}},
		{name: "type error bool", in: `{"flag":"yes"}`, wantErr: []string{"flag: expected a boolean, got JSON string"}},
		{name: "type error array", in: `{"list":{}}`, wantErr: []string{"list: expected an array, got JSON object"}},
		{name: "type error array element", in: `{"list":["a",1]}`, wantErr: []string{"list[1]: expected a string, got JSON number"}},
		{name: "type error nested path", in: `{"items":[{"name":"x"},{"name":7}]}`, wantErr: []string{"items[1].name: expected a string"}},
		{name: "type error deep path", in: `{"one":{"tags":{"k":1}}}`, wantErr: []string{"one.tags", "expected a string"}},
		{name: "type error object", in: `{"one":[1]}`, wantErr: []string{"one: expected an object, got JSON array"}},
		{name: "type error root", in: `[1,2]`, wantErr: []string{"body: expected a JSON object, got an array"}},
		{name: "root string", in: `"x"`, wantErr: []string{"body: expected a JSON object, got a string"}},
		{name: "number out of range", in: `{"count":1e400}`, wantErr: []string{"count"}},
		{name: "trailing document", in: `{"id":"a"} {"id":"b"}`, wantErr: []string{"body: unexpected data after the JSON document"}},
		{name: "trailing garbage", in: `{"id":"a"}x`, wantErr: []string{"body: unexpected data after the JSON document"}},
		{name: "trailing bracket", in: `{"id":"a"}}`, wantErr: []string{"body: unexpected data after the JSON document"}},
		{name: "truncated", in: `{"id":"a"`, wantErr: []string{"body: truncated JSON"}},
		{name: "truncated string", in: `{"id":"a`, wantErr: []string{"body: truncated JSON"}},
		{name: "syntax error", in: `{"id":"a",}`, wantErr: []string{"body: malformed JSON at offset"}},
		{name: "bad escape", in: `{"id":"\x"}`, wantErr: []string{"body: malformed JSON", "escape"}},
		{name: "single quotes", in: `{'id':'a'}`, wantErr: []string{"body: malformed JSON"}},
		{name: "depth at limit", in: `{"raw":` + nested(jsonx.MaxDepth-1) + `}`},
		{name: "depth over limit", in: `{"raw":` + nested(jsonx.MaxDepth) + `}`, wantErr: []string{fmt.Sprintf("body: nested deeper than %d levels", jsonx.MaxDepth)}},
		{name: "very deep", in: `{"raw":` + nested(100000) + `}`, wantErr: []string{"nested deeper"}},
		{name: "deep brackets in a string are fine", in: `{"id":"` + nested(200) + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := jsonx.Decode([]byte(tc.in), &d)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Decode(%.80q) = %v, want success", tc.in, err)
				}
				if tc.check != nil {
					tc.check(t, &d)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode(%.80q) succeeded, want error containing %q", tc.in, tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Decode(%.80q) = %q, want it to contain %q", tc.in, err, s)
				}
			}
			if strings.Contains(err.Error(), "json: ") {
				t.Errorf("error %q leaks the encoding/json prefix", err)
			}
		})
	}
}

// TestDecodeTypeErrorIndex: a type error inside an array names the element,
// as the engine's own validation does ("units[1].type").
func TestDecodeTypeErrorIndex(t *testing.T) {

	var d doc
	err := jsonx.Decode([]byte(`{"items":[{"name":"x"},{"name":7}]}`), &d)
	if err == nil || !strings.Contains(err.Error(), "items[1].name") {
		t.Fatalf("Decode = %v, want it to name items[1].name", err)
	}
}

func TestExplain(t *testing.T) {
	var syn *json.SyntaxError
	if err := json.Unmarshal([]byte(`{,}`), &struct{}{}); !errors.As(err, &syn) {
		t.Fatalf("setup: %v is not a syntax error", err)
	}
	var typ *json.UnmarshalTypeError
	typeErr := json.Unmarshal([]byte(`{"a":{"b":true}}`), &struct {
		A struct {
			B string `json:"b"`
		} `json:"a"`
	}{})
	if !errors.As(typeErr, &typ) {
		t.Fatalf("setup: %v is not a type error", typeErr)
	}
	rootTypeErr := json.Unmarshal([]byte(`"s"`), &[]int{})
	tests := []struct {
		name string
		in   error
		want string
	}{
		{"syntax", syn, "body: malformed JSON at offset 2: invalid character ','"},
		{"type with path", typeErr, "a.b: expected a string, got JSON bool"},
		{"type at root", rootTypeErr, "body: expected an array, got JSON string"},
		{"unexpected EOF", io.ErrUnexpectedEOF, "body: truncated JSON"},
		{"EOF", io.EOF, "body: truncated JSON"},
		{"wrapped EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "body: truncated JSON"},
		{"unknown field", errors.New(`json: unknown field "zap"`), "zap: unknown field"},
		{"other json error", errors.New("json: cannot unmarshal into Go value"), "body: cannot unmarshal into Go value"},
		{"plain error", errors.New("boom"), "body: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := jsonx.Explain(tc.in)
			if got == nil || !strings.HasPrefix(got.Error(), tc.want) {
				t.Errorf("Explain(%v) = %v, want prefix %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCheckDepth(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		wantErr bool
	}{
		{"empty", ``, 1, false},
		{"scalar", `1`, 0, false},
		{"flat object at max", `{"a":1}`, 1, false},
		{"nested over max", `{"a":{}}`, 1, true},
		{"arrays at max", nested(5), 5, false},
		{"arrays over max", nested(6), 5, true},
		{"mixed at max", `{"a":[{"b":[1]}]}`, 4, false},
		{"mixed over max", `{"a":[{"b":[1]}]}`, 3, true},
		{"siblings do not add up", `[[],[],[],[]]`, 2, false},
		{"brackets in a string", `{"a":"[[[[{{{{"}`, 1, false},
		{"brackets in a key", `{"[[[[":1}`, 1, false},
		{"escaped quote keeps the string open", `["\"[[[["]`, 1, false},
		{"escaped backslash then quote closes the string", `["\\",[[1]]]`, 2, true},
		{"escaped backslash at max", `["\\",[1]]`, 2, false},
		{"many escapes", `["\\\"[[[\\\\"]`, 1, false},
		{"closing brackets in a string do not reduce depth", `[[["]]]]"]]]`, 2, true},
		{"unicode escape", `["\u005b[[["]`, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := jsonx.CheckDepth([]byte(tc.in), tc.max)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckDepth(%q, %d) = %v, wantErr %v", tc.in, tc.max, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("nested deeper than %d levels", tc.max)) {
				t.Errorf("error %q does not state the limit", err)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"plain", "hello world", `"hello world"`},
		{"name chars", "a.b_c~d:e@f-g", `"a.b_c~d:e@f-g"`},
		{"quote", `say "hi"`, `"say \"hi\""`},
		{"backslash", `a\b`, `"a\\b"`},
		{"newline tab", "a\nb\tc\r", `"a\nb\tc\r"`},
		{"control chars", "\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"del is not escaped", "\x7f", "\"\x7f\""},
		{"html", "<a>&</a>", `"\u003ca\u003e\u0026\u003c/a\u003e"`},
		{"unicode", "héllo 世界 🎉", `"héllo 世界 🎉"`},
		{"line separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"invalid utf-8", "a\xffb", `"a\ufffdb"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := jsonx.AppendString([]byte("prefix:"), tc.in)
			if string(got) != "prefix:"+tc.want {
				t.Fatalf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
			}
			enc := got[len("prefix:"):]
			if !json.Valid(enc) {
				t.Fatalf("AppendString(%q) = %s: not valid JSON", tc.in, enc)
			}
			var back string
			if err := json.Unmarshal(enc, &back); err != nil {
				t.Fatal(err)
			}
			if want := strings.ToValidUTF8(tc.in, "\uFFFD"); back != want {
				t.Errorf("round trip of %q = %q, want %q", tc.in, back, want)
			}
		})
	}
}

func TestAppendStringAllBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "x" + string([]byte{byte(c)}) + "y"
		enc := jsonx.AppendString(nil, s)
		if !json.Valid(enc) {
			t.Errorf("byte %#x: %q is not valid JSON", c, enc)
		}
	}
}

func TestCompact(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"already compact", `{"a":[1,2],"b":"c"}`, `{"a":[1,2],"b":"c"}`},
		{"spaces", `{ "a" : [ 1 , 2 ] , "b" : "c" }`, `{"a":[1,2],"b":"c"}`},
		{"newlines and tabs", "{\n\t\"a\":\r\n 1\n}", `{"a":1}`},
		{"space in string kept", `{"a": "x y\tz"}`, `{"a":"x y\tz"}`},
		{"escaped quote in string", `[ "a\" b" , 1 ]`, `["a\" b",1]`},
		{"scalar", ` 12.50 `, `12.50`},
		{"string only", `"a b"`, `"a b"`},
		{"numbers keep text", `[ 1.0 , 1e2 , -0 ]`, `[1.0,1e2,-0]`},
		{"html not escaped", `{ "a": "<&>" }`, `{"a":"<&>"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := jsonx.Compact([]byte("pre"), []byte(tc.in))
			if string(got) != "pre"+tc.want {
				t.Errorf("Compact(%q) = %s, want pre%s", tc.in, got, tc.want)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		in   []string // every encoding must give want
		want string
	}{
		{"key order", []string{`{"b":1,"a":2}`, `{"a":2,"b":1}`, ` { "a" : 2 , "b" : 1 } `}, `{"a":2,"b":1}`},
		{"nested key order", []string{`{"z":{"y":1,"x":[{"q":1,"p":2}]},"a":null}`, `{"a":null,"z":{"x":[{"p":2,"q":1}],"y":1}}`},
			`{"a":null,"z":{"x":[{"p":2,"q":1}],"y":1}}`},
		{"white space", []string{"[1, 2,\n3]", "[1,2,3]", "\t[ 1 ,2 , 3 ]\n"}, `[1,2,3]`},
		{"numbers keep their text", []string{`[1.0, 1e2, 100, -0, 0.10]`}, `[1.0,1e2,100,-0,0.10]`},
		{"big number keeps its text", []string{`123456789012345678901234567890`}, `123456789012345678901234567890`},
		{"string escapes normalised", []string{`"\u0061\u00e9"`, `"aé"`}, `"aé"`},
		{"scalars", []string{`true`}, `true`},
		{"null", []string{` null `}, `null`},
		{"empty containers", []string{`{ }`, `{}`}, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, in := range tc.in {
				got, err := jsonx.Canonical([]byte(in))
				if err != nil {
					t.Fatalf("Canonical(%q): %v", in, err)
				}
				if string(got) != tc.want {
					t.Errorf("Canonical(%q) = %s, want %s", in, got, tc.want)
				}
			}
		})
	}
	t.Run("different numbers differ", func(t *testing.T) {
		a, _ := jsonx.Canonical([]byte(`{"n":1}`))
		b, _ := jsonx.Canonical([]byte(`{"n":1.0}`))
		if string(a) == string(b) {
			t.Errorf("1 and 1.0 canonicalise alike: %s", a)
		}
	})
	t.Run("empty input", func(t *testing.T) {
		got, err := jsonx.Canonical(nil)
		if err != nil || got != nil {
			t.Errorf("Canonical(nil) = %q, %v; want nil, nil", got, err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		if _, err := jsonx.Canonical([]byte(`{"a":`)); err == nil {
			t.Error("Canonical of truncated JSON succeeded")
		}
	})
}
