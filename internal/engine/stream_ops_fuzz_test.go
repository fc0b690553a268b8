package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// knownOpCodes are every code applyOps may report.
var knownOpCodes = func() map[string]bool {
	m := map[string]bool{
		codeSetTargetNotObject: true, codeRemoveTargetNotObject: true,
		codeAppendTargetNotObject: true, codeAppendTypeMismatch: true,
		codeMergeTargetNotObject: true, codeMergeValueNotObject: true,
		codeMergeValueTooManyKeys: true, codeMergeValueTooDeep: true, codeMergeValueProto: true,
		"increment.not_number": true, "decrement.not_number": true,
		"increment.target_not_object": true, "decrement.target_not_object": true,
	}
	for _, op := range []string{opSet, opIncrement, opDecrement, opRemove, opMerge, opAppend} {
		for _, r := range []string{"too_deep", "empty_segment", "segment_too_long", "proto_polluted"} {
			m[op+".path."+r] = true
		}
	}
	return m
}()

// treeDepth is iii's json_depth: objects and arrays count one level each.
func treeDepth(v any) int {
	d := 0
	switch c := v.(type) {
	case map[string]any:
		for _, e := range c {
			d = max(d, treeDepth(e))
		}
		return d + 1
	case []any:
		for _, e := range c {
			d = max(d, treeDepth(e))
		}
		return d + 1
	}
	return 0
}

// treeKeys counts the object keys in v, at every level.
func treeKeys(v any) int {
	n := 0
	switch c := v.(type) {
	case map[string]any:
		for _, e := range c {
			n += 1 + treeKeys(e)
		}
	case []any:
		for _, e := range c {
			n += treeKeys(e)
		}
	}
	return n
}

func mustDecode(t *testing.T, what string, raw []byte) any {
	t.Helper()
	v, err := decodeJSON(raw)
	if err != nil {
		t.Fatalf("%s %q: %v", what, raw, err)
	}
	return v
}

func FuzzApplyOps(f *testing.F) {
	seeds := []struct{ old, ops string }{
		{``, `[{"type":"set","path":"a","value":1}]`},
		{`{"n":1}`, `[{"type":"increment","path":"n","by":2},{"type":"decrement","path":"n","by":0.5}]`},
		{`{"n":9223372036854775807}`, `[{"type":"increment","path":"n","by":9223372036854775807}]`},
		{`{"n":-9223372036854775808}`, `[{"type":"decrement","path":"n","by":18446744073709551615}]`},
		{`{"n":1.7e308}`, `[{"type":"increment","path":"n","by":1.7e308}]`},
		{``, `[{"type":"increment","path":"","by":-9223372036854775808},{"type":"decrement","path":"","by":1}]`},
		{`{"a":{"b":"x"}}`, `[{"type":"merge","path":["a","b","c"],"value":{"d":{"e":[1]}}}]`},
		{`"s"`, `[{"type":"merge","value":{"a":1}},{"type":"merge","path":"k","value":{"b":2}}]`},
		{`{}`, `[{"type":"merge","path":["__proto__"],"value":{}},{"type":"merge","value":{"constructor":1}}]`},
		{`{"e":[]}`, `[{"type":"append","path":"e","value":"x"},{"type":"append","path":["e"],"value":[1]}]`},
		{``, `[{"type":"append","value":"x"},{"type":"append","value":"y"}]`},
		{`[1]`, `[{"type":"append","path":["a","b"],"value":1},{"type":"append","path":[],"value":2}]`},
		{`{"t":"a"}`, `[{"type":"append","path":"t","value":1},{"type":"remove","path":"t"},{"type":"remove","path":""}]`},
		{`null`, `[{"type":"set","path":"a","value":1},{"type":"set","path":"","value":{"a":{"b":{}}}}]`},
		{`{"a.b":1}`, `[{"type":"set","path":"a.b","value":2},{"type":"append","path":["a",""],"value":1}]`},
		{`{}`, `[{"type":"merge","path":"m","value":` + nested(17) + `}]`},
		{`{}`, `[{"type":"merge","path":` + segments(33) + `,"value":{}}]`},
		{`{}`, `[{"type":"unknown"}]`},
		{`{}`, `[]`},
		{`{"a":`, `[{"type":"remove","path":"a"}]`},
	}
	for _, s := range seeds {
		f.Add([]byte(s.old), []byte(s.ops))
	}
	f.Fuzz(func(t *testing.T, oldRaw, opsRaw []byte) {
		var ops []StreamOp
		if err := json.Unmarshal(opsRaw, &ops); err != nil {
			return // the API answers 400 before the engine
		}
		if err := checkOps(ops); err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(e.Msg, "ops") {
				t.Fatalf("checkOps(%s): %v (%T) is not an invalid-argument error naming ops", opsRaw, err, err)
			}
			return
		}
		var old []byte
		if len(oldRaw) > 0 {
			old = oldRaw
		}
		got, errs, err := applyOps(old, ops)
		if old != nil && !json.Valid(old) {
			if err == nil {
				t.Fatalf("old %q is not JSON, yet applyOps answered %s", old, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("applyOps(%q, %s): %v", old, opsRaw, err)
		}
		if !json.Valid(got) {
			t.Fatalf("new value %q is not valid JSON", got)
		}
		if c := new(bytes.Buffer); json.Compact(c, got) != nil || !bytes.Equal(c.Bytes(), got) {
			t.Fatalf("new value %q is not compact", got)
		}

		// Errors: in op order, one at most per op, known codes, messages
		// naming the op.
		failed := make(map[int]string, len(errs))
		last := -1
		for _, e := range errs {
			if e.OpIndex <= last || e.OpIndex >= len(ops) {
				t.Fatalf("op_index %d out of order or range (%d ops): %+v", e.OpIndex, len(ops), errs)
			}
			last = e.OpIndex
			if !knownOpCodes[e.Code] {
				t.Fatalf("unknown code %q", e.Code)
			}
			if !strings.HasPrefix(e.Code, ops[e.OpIndex].Type+".") {
				t.Fatalf("code %q for a %s op", e.Code, ops[e.OpIndex].Type)
			}
			if !strings.HasPrefix(e.Message, fmt.Sprintf("ops[%d]: ", e.OpIndex)) {
				t.Fatalf("message %q does not name op %d", e.Message, e.OpIndex)
			}
			failed[e.OpIndex] = e.Code
		}

		// Limits: every merge that applied met the checks; the result is no
		// deeper, and has no more keys, than the ops that applied allow.
		var start any = map[string]any{}
		if old != nil {
			start = mustDecode(t, "old", old)
		}
		depthBound, keysBound := treeDepth(start), treeKeys(start)
		for i := range ops {
			op := &ops[i]
			if _, skipped := failed[i]; skipped {
				continue
			}
			var v any
			if len(op.Value) > 0 {
				v = mustDecode(t, "value", op.Value)
			}
			var segs []string
			switch op.Type {
			case opMerge, opAppend:
				segs, _ = segmentPath(op.Path)
			default:
				if k, _ := keyPath(op.Path); k != "" {
					segs = []string{k}
				}
			}
			if len(segs) > maxOpPathSegments {
				t.Fatalf("op %d applied with %d segments", i, len(segs))
			}
			for _, s := range segs {
				if s == "" || len(s) > maxOpSegmentBytes || isProtoKey(s) {
					t.Fatalf("op %d applied with segment %q", i, s)
				}
			}
			if op.Type == opMerge {
				obj, ok := v.(map[string]any)
				if !ok || len(obj) > maxMergeValueKeys || treeDepth(v) > maxMergeValueDepth {
					t.Fatalf("merge op %d applied with value %s", i, op.Value)
				}
				for _, k := range protoKeys {
					if _, ok := obj[k]; ok {
						t.Fatalf("merge op %d applied with key %q", i, k)
					}
				}
			}
			depthBound = max(depthBound, len(segs)+1+treeDepth(v))
			keysBound += len(segs) + treeKeys(v)
		}
		res := mustDecode(t, "new value", got)
		if d := treeDepth(res); d > depthBound {
			t.Fatalf("new value depth %d, bound %d", d, depthBound)
		}
		if n := treeKeys(res); n > keysBound {
			t.Fatalf("new value has %d keys, bound %d", n, keysBound)
		}

		// Deterministic: the same input gives the same bytes and errors.
		again, errs2, err := applyOps(old, ops)
		if err != nil || !bytes.Equal(again, got) || fmt.Sprint(errs2) != fmt.Sprint(errs) {
			t.Fatalf("second run differs: %s %v %v, first %s %v", again, errs2, err, got, errs)
		}
	})
}
