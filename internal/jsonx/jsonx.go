// Package jsonx holds the JSON helpers shared by the engine and the API:
// strict decoding whose errors name the offending field, string quoting for
// hand-built documents, and canonical forms for comparing values.
//
// It knows nothing of Engram's types.
package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects a document may have.
const MaxDepth = 64

// Decode decodes one JSON document from data into v. Unknown fields are
// errors, and so is anything after the document. The error text names the
// field and is meant for clients.
//
// The document must be UTF-8 (API.md: bodies are UTF-8), and when v points
// to a struct, a JSON object.
func Decode(data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return errors.New("body: empty, expected a JSON document")
	}
	if !utf8.Valid(data) {
		return errors.New("body: not valid UTF-8")
	}
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && trimmed[0] != '{' {
		return fmt.Errorf("body: expected a JSON object, got %s", kindOf(trimmed[0]))
	}
	if err := CheckDepth(data, MaxDepth); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			if p := pathAt(data, typ.Offset); p != "" {
				typ.Field = p
			}
		}
		return Explain(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("body: unexpected data after the JSON document")
	}
	return nil
}

// Explain turns an encoding/json error into a message naming the field.
func Explain(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("body: malformed JSON at offset %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return fmt.Errorf("%s: expected %s, got JSON %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("body: truncated JSON")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("%s: unknown field", strings.Trim(f, `"`))
	}
	return fmt.Errorf("body: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint64", "uint32", "float64":
		return "a number"
	}
	return goKind
}

func kindOf(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	}
	return "something else"
}

// pathAt returns the path (units[1].type) of the value that ends at offset
// in data, by walking its tokens. It runs only on the error path, to name
// the array element encoding/json's errors leave out.
func pathAt(data []byte, offset int64) string {
	type frame struct {
		array bool
		index int
		key   string
	}
	var stack []frame
	wantKey := false // in an object, the next string is a key
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&b, "[%d]", f.index)
			case i > 0:
				b.WriteString("." + f.key)
			default:
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	// after a value ends: step to the next array element or object key.
	next := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				wantKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if s, ok := tok.(string); ok && wantKey {
			stack[len(stack)-1].key = s
			wantKey = false
			continue
		}
		here := path()
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{})
			wantKey = true
		case json.Delim('['):
			stack = append(stack, frame{array: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			here = path()
			next()
		default:
			next()
		}
		if dec.InputOffset() >= offset {
			return here
		}
	}
}

// CheckDepth rejects documents nested deeper than max, before a decoder
// spends work (or stack) on them. Brackets inside strings are not counted.
func CheckDepth(data []byte, max int) error {
	depth, inStr, esc := 0, false, false
	for _, c := range data {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			if depth > max {
				return fmt.Errorf("body: nested deeper than %d levels", max)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// AppendString appends s as a JSON string.
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Compact appends raw with insignificant white space removed. raw must be
// valid JSON.
func Compact(dst, raw []byte) []byte {
	if !bytes.ContainsAny(raw, " \t\r\n") {
		return append(dst, raw...)
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, raw); err != nil {
		return append(dst, raw...)
	}
	return buf.Bytes()
}

// Canonical returns raw with object keys sorted and white space removed, so
// that two encodings of the same value compare equal. Numbers keep their
// text.
func Canonical(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
