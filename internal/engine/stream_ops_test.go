package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// decodeOps decodes a JSON array of ops as the API would.
func decodeOps(tb testing.TB, s string) []StreamOp {
	tb.Helper()
	var ops []StreamOp
	if err := json.Unmarshal([]byte(s), &ops); err != nil {
		tb.Fatalf("ops %s: %v", s, err)
	}
	return ops
}

// nested returns {"n":{"n":...{}}} with depth levels of objects.
func nested(depth int) string {
	return strings.Repeat(`{"n":`, depth-1) + "{}" + strings.Repeat("}", depth-1)
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

func segments(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%q", fmt.Sprintf("s%d", i))
	}
	return "[" + strings.Join(s, ",") + "]"
}

type wantOpErr struct {
	index int
	code  string
	// in is a substring the message must contain (besides the ops[i] prefix).
	in string
}

func TestApplyOps(t *testing.T) {
	long := strings.Repeat("x", 257)
	max := strings.Repeat("x", 256)
	tests := []struct {
		name string
		old  string // "" = absent item
		ops  string
		want string
		errs []wantOpErr
	}{
		// set
		{name: "set field", old: `{"a":1}`, ops: `[{"type":"set","path":"b","value":{"c":[1,2]}}]`, want: `{"a":1,"b":{"c":[1,2]}}`},
		{name: "set overwrites", old: `{"a":1}`, ops: `[{"type":"set","path":"a","value":"x"}]`, want: `{"a":"x"}`},
		{name: "set without value is null", old: `{"a":1}`, ops: `[{"type":"set","path":"a"}]`, want: `{"a":null}`},
		{name: "set root", old: `{"a":1}`, ops: `[{"type":"set","path":"","value":[1]}]`, want: `[1]`},
		{name: "set root without value", old: `{"a":1}`, ops: `[{"type":"set","path":""}]`, want: `null`},
		{name: "set dotted key not split", old: `{"a":{"b":1}}`, ops: `[{"type":"set","path":"a.b","value":2}]`, want: `{"a":{"b":1},"a.b":2}`},
		{name: "set on absent item", ops: `[{"type":"set","path":"a","value":1}]`, want: `{"a":1}`},
		{name: "set.target_not_object", old: `"s"`, ops: `[{"type":"set","path":"a","value":1}]`, want: `"s"`,
			errs: []wantOpErr{{0, "set.target_not_object", `field "a": the item is a string`}}},
		{name: "set.path.proto_polluted", old: `{}`, ops: `[{"type":"set","path":"__proto__","value":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "set.path.proto_polluted", `"__proto__"`}}},
		{name: "set.path.segment_too_long", old: `{}`, ops: `[{"type":"set","path":"` + long + `","value":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "set.path.segment_too_long", "257 bytes"}}},
		{name: "set key of 256 bytes", old: `{}`, ops: `[{"type":"set","path":"` + max + `","value":1}]`, want: `{"` + max + `":1}`},
		{name: "set keeps html and unicode", old: `{}`, ops: `[{"type":"set","path":"<é>","value":"a&b"}]`, want: `{"<é>":"a&b"}`},

		// increment / decrement
		{name: "increment int", old: `{"n":2}`, ops: `[{"type":"increment","path":"n","by":3}]`, want: `{"n":5}`},
		{name: "increment missing is by", old: `{}`, ops: `[{"type":"increment","path":"n","by":3}]`, want: `{"n":3}`},
		{name: "decrement int", old: `{"n":5}`, ops: `[{"type":"decrement","path":"n","by":3}]`, want: `{"n":2}`},
		{name: "decrement missing is minus by", old: `{}`, ops: `[{"type":"decrement","path":"n","by":3}]`, want: `{"n":-3}`},
		{name: "decrement missing float", old: `{}`, ops: `[{"type":"decrement","path":"n","by":1.5}]`, want: `{"n":-1.5}`},
		{name: "increment float field", old: `{"n":1.5}`, ops: `[{"type":"increment","path":"n","by":2},{"type":"decrement","path":"n","by":1}]`, want: `{"n":2.5}`},
		{name: "increment by float", old: `{"n":1}`, ops: `[{"type":"increment","path":"n","by":0.25}]`, want: `{"n":1.25}`},
		{name: "increment exponent literal is float", old: `{"n":1e2}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":101}`},
		{name: "increment large int exact", old: `{"n":9007199254740993}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":9007199254740994}`},
		{name: "increment past int64 to uint64", old: `{"n":9223372036854775807}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":9223372036854775808}`},
		{name: "increment uint64 exact", old: `{"n":18446744073709551610}`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `{"n":18446744073709551609}`},
		{name: "increment past uint64 to float", old: `{"n":18446744073709551615}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":18446744073709552000}`},
		{name: "decrement below int64 to float", old: `{"n":-9223372036854775808}`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `{"n":-9223372036854776000}`},
		{name: "decrement missing by min int64", old: `{}`, ops: `[{"type":"decrement","path":"n","by":-9223372036854775808}]`, want: `{"n":9223372036854775808}`},
		{name: "increment by zero keeps value", old: `{"n":7}`, ops: `[{"type":"increment","path":"n","by":0}]`, want: `{"n":7}`},
		{name: "increment dotted key not split", old: `{"a":{"b":1}}`, ops: `[{"type":"increment","path":"a.b","by":1}]`, want: `{"a":{"b":1},"a.b":1}`},
		{name: "increment root number", old: `2`, ops: `[{"type":"increment","path":"","by":3}]`, want: `5`},
		{name: "decrement root number", old: `5`, ops: `[{"type":"decrement","path":"","by":3}]`, want: `2`},
		{name: "increment root of absent item", ops: `[{"type":"increment","path":"","by":4}]`, want: `4`},
		{name: "decrement root of absent item", ops: `[{"type":"decrement","path":"","by":4}]`, want: `-4`},
		{name: "increment.not_number string", old: `{"n":"x"}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":"x"}`,
			errs: []wantOpErr{{0, "increment.not_number", `field "n" is a string, not a number`}}},
		{name: "increment.not_number null", old: `{"n":null}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":null}`,
			errs: []wantOpErr{{0, "increment.not_number", "null"}}},
		{name: "increment.not_number by zero still checks", old: `{"n":true}`, ops: `[{"type":"increment","path":"n","by":0}]`, want: `{"n":true}`,
			errs: []wantOpErr{{0, "increment.not_number", "a boolean"}}},
		{name: "decrement.not_number", old: `{"n":[1]}`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `{"n":[1]}`,
			errs: []wantOpErr{{0, "decrement.not_number", `field "n" is an array`}}},
		{name: "increment.not_number root of existing object", old: `{}`, ops: `[{"type":"increment","path":"","by":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "increment.not_number", "the item is an object"}}},
		{name: "increment.not_number float overflow", old: `{"n":1.7e308}`, ops: `[{"type":"increment","path":"n","by":1.7e308}]`, want: `{"n":1.7e308}`,
			errs: []wantOpErr{{0, "increment.not_number", "not a finite number"}}},
		{name: "decrement.not_number float overflow", old: `{"n":-1.7e308}`, ops: `[{"type":"decrement","path":"n","by":1.7e308}]`, want: `{"n":-1.7e308}`,
			errs: []wantOpErr{{0, "decrement.not_number", "not a finite number"}}},
		{name: "increment.target_not_object", old: `[1]`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `[1]`,
			errs: []wantOpErr{{0, "increment.target_not_object", "an array"}}},
		{name: "decrement.target_not_object", old: `3`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `3`,
			errs: []wantOpErr{{0, "decrement.target_not_object", "a number"}}},
		{name: "increment.path.proto_polluted", old: `{}`, ops: `[{"type":"increment","path":"constructor","by":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "increment.path.proto_polluted", "constructor"}}},
		{name: "decrement.path.segment_too_long", old: `{}`, ops: `[{"type":"decrement","path":"` + long + `","by":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "decrement.path.segment_too_long", "257"}}},

		// remove
		{name: "remove field", old: `{"a":1,"b":2}`, ops: `[{"type":"remove","path":"a"}]`, want: `{"b":2}`},
		{name: "remove missing field", old: `{"a":1}`, ops: `[{"type":"remove","path":"x"}]`, want: `{"a":1}`},
		{name: "remove root", old: `{"":1,"a":1}`, ops: `[{"type":"remove","path":""}]`, want: `null`},
		{name: "remove dotted key not split", old: `{"a":{"b":1},"a.b":2}`, ops: `[{"type":"remove","path":"a.b"}]`, want: `{"a":{"b":1}}`},
		{name: "remove.target_not_object", old: `null`, ops: `[{"type":"remove","path":"a"}]`, want: `null`,
			errs: []wantOpErr{{0, "remove.target_not_object", "null"}}},
		{name: "remove.path.proto_polluted", old: `{"prototype":1}`, ops: `[{"type":"remove","path":"prototype"}]`, want: `{"prototype":1}`,
			errs: []wantOpErr{{0, "remove.path.proto_polluted", "prototype"}}},

		// merge
		{name: "merge root", old: `{"a":1,"b":{"x":1}}`, ops: `[{"type":"merge","value":{"b":{"y":2},"c":3}}]`, want: `{"a":1,"b":{"y":2},"c":3}`},
		{name: "merge root empty string path", old: `{"a":1}`, ops: `[{"type":"merge","path":"","value":{"b":2}}]`, want: `{"a":1,"b":2}`},
		{name: "merge root empty array path", old: `{"a":1}`, ops: `[{"type":"merge","path":[],"value":{"b":2}}]`, want: `{"a":1,"b":2}`},
		{name: "merge root null path", old: `{"a":1}`, ops: `[{"type":"merge","path":null,"value":{"b":2}}]`, want: `{"a":1,"b":2}`},
		{name: "merge on absent item", ops: `[{"type":"merge","value":{"a":1}}]`, want: `{"a":1}`},
		{name: "merge key", old: `{"s":{"t1":"a"}}`, ops: `[{"type":"merge","path":"s","value":{"t2":"b"}}]`, want: `{"s":{"t1":"a","t2":"b"}}`},
		{name: "merge key creates object", old: `{}`, ops: `[{"type":"merge","path":"s","value":{"a":1}}]`, want: `{"s":{"a":1}}`},
		{name: "merge string and one-segment array agree", old: `{}`, ops: `[{"type":"merge","path":["s"],"value":{"a":1}}]`, want: `{"s":{"a":1}}`},
		{name: "merge path creates intermediates", old: `{}`, ops: `[{"type":"merge","path":["a","b","c"],"value":{"x":1}}]`, want: `{"a":{"b":{"c":{"x":1}}}}`},
		{name: "merge path replaces non-object intermediates", old: `{"a":{"b":"junk","k":1},"z":[1]}`, ops: `[{"type":"merge","path":["a","b","c"],"value":{"x":1}}]`, want: `{"a":{"b":{"c":{"x":1}},"k":1},"z":[1]}`},
		{name: "merge path replaces non-object leaf", old: `{"a":[1,2]}`, ops: `[{"type":"merge","path":"a","value":{"x":1}}]`, want: `{"a":{"x":1}}`},
		{name: "merge path replaces non-object root", old: `[1,2]`, ops: `[{"type":"merge","path":["a"],"value":{"x":1}}]`, want: `{"a":{"x":1}}`},
		{name: "merge dotted segment not split", old: `{"a":{"b":{"p":true}}}`, ops: `[{"type":"merge","path":["a.b"],"value":{"x":1}}]`, want: `{"a":{"b":{"p":true}},"a.b":{"x":1}}`},
		{name: "merge shallow at target", old: `{"s":{"a":{"author":"old","topic":"kept"}}}`, ops: `[{"type":"merge","path":["s","a"],"value":{"author":"new"}}]`, want: `{"s":{"a":{"author":"new","topic":"kept"}}}`},
		{name: "merge value of 1024 keys", old: `{}`, ops: `[{"type":"merge","value":` + manyKeys(1024) + `}]`, want: manyKeysSorted(1024)},
		{name: "merge value 16 deep", old: `{}`, ops: `[{"type":"merge","path":"a","value":` + nested(16) + `}]`, want: `{"a":` + nested(16) + `}`},
		{name: "merge path of 32 segments", old: `{}`, ops: `[{"type":"merge","path":` + segments(32) + `,"value":{}}]`, want: nestedSegments(32)},
		{name: "merge.target_not_object", old: `"leaf"`, ops: `[{"type":"merge","value":{"a":1}}]`, want: `"leaf"`,
			errs: []wantOpErr{{0, "merge.target_not_object", "a string"}}},
		{name: "merge.value.not_an_object", old: `{"a":1}`, ops: `[{"type":"merge","path":"foo","value":"x"}]`, want: `{"a":1}`,
			errs: []wantOpErr{{0, "merge.value.not_an_object", "a string"}}},
		{name: "merge.value.not_an_object null", old: `{"a":1}`, ops: `[{"type":"merge","value":null}]`, want: `{"a":1}`,
			errs: []wantOpErr{{0, "merge.value.not_an_object", "null"}}},
		{name: "merge.path.too_deep", old: `{}`, ops: `[{"type":"merge","path":` + segments(33) + `,"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.too_deep", "33 segments, at most 32"}}},
		{name: "merge.path.segment_too_long", old: `{}`, ops: `[{"type":"merge","path":["a","` + long + `"],"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.segment_too_long", "segment 1 is 257 bytes"}}},
		{name: "merge.path.empty_segment", old: `{}`, ops: `[{"type":"merge","path":["a",""],"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.empty_segment", "segment 1 is empty"}}},
		{name: "merge.path.empty_segment only", old: `{}`, ops: `[{"type":"merge","path":[""],"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.empty_segment", "segment 0"}}},
		{name: "merge.path.proto_polluted __proto__", old: `{}`, ops: `[{"type":"merge","path":["__proto__","polluted"],"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.proto_polluted", "__proto__"}}},
		{name: "merge.path.proto_polluted constructor", old: `{}`, ops: `[{"type":"merge","path":"constructor","value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.proto_polluted", "constructor"}}},
		{name: "merge.path.proto_polluted prototype deep", old: `{}`, ops: `[{"type":"merge","path":["a","b","prototype"],"value":{"x":1}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.path.proto_polluted", "prototype"}}},
		{name: "merge.value.too_many_keys", old: `{}`, ops: `[{"type":"merge","value":` + manyKeys(1025) + `}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.value.too_many_keys", "1025 keys, at most 1024"}}},
		{name: "merge.value.too_deep", old: `{}`, ops: `[{"type":"merge","path":"a","value":` + nested(17) + `}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.value.too_deep", "16"}}},
		{name: "merge.value.too_deep by arrays", old: `{}`, ops: `[{"type":"merge","value":{"a":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.value.too_deep", ""}}},
		{name: "merge.value.proto_polluted", old: `{}`, ops: `[{"type":"merge","path":"foo","value":{"__proto__":{"polluted":true}}}]`, want: `{}`,
			errs: []wantOpErr{{0, "merge.value.proto_polluted", "__proto__"}}},
		{name: "merge proto key below top level allowed", old: `{}`, ops: `[{"type":"merge","value":{"a":{"constructor":1}}}]`, want: `{"a":{"constructor":1}}`},

		// append
		{name: "append to array", old: `{"e":[{"k":"start"}]}`, ops: `[{"type":"append","path":"e","value":{"k":"chunk"}}]`, want: `{"e":[{"k":"start"},{"k":"chunk"}]}`},
		{name: "append array as one element", old: `{"e":[]}`, ops: `[{"type":"append","path":"e","value":["a","b"]}]`, want: `{"e":[["a","b"]]}`},
		{name: "append to string", old: `{"t":"hello"}`, ops: `[{"type":"append","path":"t","value":" world"}]`, want: `{"t":"hello world"}`},
		{name: "append string to missing field stays string", old: `{}`, ops: `[{"type":"append","path":"t","value":"hello"}]`, want: `{"t":"hello"}`},
		{name: "append object to missing field starts array", old: `{}`, ops: `[{"type":"append","path":"e","value":{"k":1}}]`, want: `{"e":[{"k":1}]}`},
		{name: "append null to missing field", old: `{}`, ops: `[{"type":"append","path":"e","value":null}]`, want: `{"e":[null]}`},
		{name: "append to null field", old: `{"s":null,"a":null}`, ops: `[{"type":"append","path":"s","value":"x"},{"type":"append","path":"a","value":1}]`, want: `{"a":[1],"s":"x"}`},
		{name: "append in order", old: `{"e":[]}`, ops: `[{"type":"append","path":"e","value":"first"},{"type":"append","path":"e","value":"second"}]`, want: `{"e":["first","second"]}`},
		{name: "append root of absent item string", ops: `[{"type":"append","value":"hello"}]`, want: `"hello"`},
		{name: "append root of absent item object", ops: `[{"type":"append","path":"","value":{"k":1}}]`, want: `[{"k":1}]`},
		{name: "append root array", old: `[1]`, ops: `[{"type":"append","path":[],"value":2}]`, want: `[1,2]`},
		{name: "append root string", old: `"ab"`, ops: `[{"type":"append","value":"c"}]`, want: `"abc"`},
		{name: "append root null", old: `null`, ops: `[{"type":"append","value":5}]`, want: `[5]`},
		{name: "append dotted key not split", old: `{"u.n":["A"],"u":{"n":["B"]}}`, ops: `[{"type":"append","path":"u.n","value":"C"}]`, want: `{"u":{"n":["B"]},"u.n":["A","C"]}`},
		{name: "append path to existing array", old: `{"id":{"buf":["a"]}}`, ops: `[{"type":"append","path":["id","buf"],"value":"b"}]`, want: `{"id":{"buf":["a","b"]}}`},
		{name: "append path creates intermediates", old: `{}`, ops: `[{"type":"append","path":["a","b","buf"],"value":"x"}]`, want: `{"a":{"b":{"buf":["x"]}}}`},
		{name: "append path replaces non-object intermediate", old: `{"a":5}`, ops: `[{"type":"append","path":["a","buf"],"value":1}]`, want: `{"a":{"buf":[1]}}`},
		{name: "append path missing leaf string is array", old: `{"id":{}}`, ops: `[{"type":"append","path":["id","buf"],"value":"x"}]`, want: `{"id":{"buf":["x"]}}`},
		{name: "append path null leaf string stays string", old: `{"id":{"buf":null}}`, ops: `[{"type":"append","path":["id","buf"],"value":"x"}]`, want: `{"id":{"buf":"x"}}`},
		{name: "append path to string", old: `{"id":{"t":"a"}}`, ops: `[{"type":"append","path":["id","t"],"value":"b"}]`, want: `{"id":{"t":"ab"}}`},
		{name: "append.type_mismatch string target", old: `{"t":"hello"}`, ops: `[{"type":"append","path":"t","value":{"not":"string"}}]`, want: `{"t":"hello"}`,
			errs: []wantOpErr{{0, "append.type_mismatch", `field "t" is a string; only a string can be appended to it, not an object`}}},
		{name: "append.type_mismatch object target", old: `{"e":{}}`, ops: `[{"type":"append","path":"e","value":"chunk"}]`, want: `{"e":{}}`,
			errs: []wantOpErr{{0, "append.type_mismatch", `field "e" is an object`}}},
		{name: "append.type_mismatch number target", old: `{"e":1}`, ops: `[{"type":"append","path":"e","value":1}]`, want: `{"e":1}`,
			errs: []wantOpErr{{0, "append.type_mismatch", "a number"}}},
		{name: "append.type_mismatch nested object leaf", old: `{"id":{"buf":{"x":"y"}}}`, ops: `[{"type":"append","path":["id","buf"],"value":"z"}]`, want: `{"id":{"buf":{"x":"y"}}}`,
			errs: []wantOpErr{{0, "append.type_mismatch", `["id","buf"] is an object`}}},
		{name: "append.type_mismatch root of existing object", old: `{}`, ops: `[{"type":"append","value":1}]`, want: `{}`,
			errs: []wantOpErr{{0, "append.type_mismatch", "the item is an object"}}},
		{name: "append.target_not_object nested", old: `[1,2,3]`, ops: `[{"type":"append","path":["a","b"],"value":"x"}]`, want: `[1,2,3]`,
			errs: []wantOpErr{{0, "append.target_not_object", "an array"}}},
		{name: "append.target_not_object key", old: `"s"`, ops: `[{"type":"append","path":"a","value":"x"}]`, want: `"s"`,
			errs: []wantOpErr{{0, "append.target_not_object", "a string"}}},
		{name: "append.path.proto_polluted intermediate", old: `{}`, ops: `[{"type":"append","path":["a","constructor","b"],"value":"x"}]`, want: `{}`,
			errs: []wantOpErr{{0, "append.path.proto_polluted", "constructor"}}},
		{name: "append.path.proto_polluted leaf", old: `{"safe":{}}`, ops: `[{"type":"append","path":["safe","prototype"],"value":"x"}]`, want: `{"safe":{}}`,
			errs: []wantOpErr{{0, "append.path.proto_polluted", "prototype"}}},
		{name: "append.path.segment_too_long", old: `{}`, ops: `[{"type":"append","path":"` + long + `","value":"x"}]`, want: `{}`,
			errs: []wantOpErr{{0, "append.path.segment_too_long", "257"}}},
		{name: "append.path.empty_segment", old: `{}`, ops: `[{"type":"append","path":["a",""],"value":"x"}]`, want: `{}`,
			errs: []wantOpErr{{0, "append.path.empty_segment", "segment 1"}}},
		{name: "append.path.too_deep", old: `{}`, ops: `[{"type":"append","path":` + segments(33) + `,"value":"x"}]`, want: `{}`,
			errs: []wantOpErr{{0, "append.path.too_deep", "33"}}},

		// combinations
		{name: "failing ops skipped later ops apply", old: `{"bad":"v","e":{}}`,
			ops:  `[{"type":"increment","path":"bad","by":1},{"type":"set","path":"__proto__","value":true},{"type":"append","path":"e","value":"c"},{"type":"set","path":"ok","value":true}]`,
			want: `{"bad":"v","e":{},"ok":true}`,
			errs: []wantOpErr{{0, "increment.not_number", ""}, {1, "set.path.proto_polluted", ""}, {2, "append.type_mismatch", ""}}},
		{name: "failure between successes", old: `{"buf":[]}`,
			ops:  `[{"type":"append","path":"buf","value":"first"},{"type":"append","path":["__proto__","p"],"value":true},{"type":"append","path":"buf","value":"third"}]`,
			want: `{"buf":["first","third"]}`,
			errs: []wantOpErr{{1, "append.path.proto_polluted", ""}}},
		{name: "ops see earlier ops", old: `{"n":10}`,
			ops:  `[{"type":"increment","path":"n","by":5},{"type":"decrement","path":"n","by":3},{"type":"set","path":"m","value":{}},{"type":"merge","path":"m","value":{"k":1}},{"type":"remove","path":"n"}]`,
			want: `{"m":{"k":1}}`},
		{name: "set root then field ops", old: `{"a":1}`,
			ops:  `[{"type":"set","path":"","value":"s"},{"type":"set","path":"a","value":1},{"type":"append","value":"t"}]`,
			want: `"st"`,
			errs: []wantOpErr{{1, "set.target_not_object", ""}}},
		{name: "absent item: root increment after a failed op still starts from by",
			ops:  `[{"type":"merge","value":"x"},{"type":"increment","path":"","by":2}]`,
			want: `2`,
			errs: []wantOpErr{{0, "merge.value.not_an_object", ""}}},
		{name: "absent item: root increment after an applied op is not_number",
			ops:  `[{"type":"merge","value":{}},{"type":"increment","path":"","by":2}]`,
			want: `{}`,
			errs: []wantOpErr{{1, "increment.not_number", "the item is an object"}}},
		{name: "absent item: all ops fail leaves {}",
			ops:  `[{"type":"merge","value":1},{"type":"set","path":"constructor","value":1}]`,
			want: `{}`,
			errs: []wantOpErr{{0, "merge.value.not_an_object", ""}, {1, "set.path.proto_polluted", ""}}},
		{name: "remove root then merge path recreates object", old: `{"a":1}`,
			ops:  `[{"type":"remove","path":""},{"type":"merge","path":"b","value":{"c":1}}]`,
			want: `{"b":{"c":1}}`},
		{name: "merge then increment int stays int", old: `{}`,
			ops:  `[{"type":"merge","value":{"n":1}},{"type":"increment","path":"n","by":1}]`,
			want: `{"n":2}`},
		{name: "float then int ops stay float", old: `{"n":0.5}`,
			ops:  `[{"type":"increment","path":"n","by":0.5},{"type":"increment","path":"n","by":1}]`,
			want: `{"n":2}`},
		{name: "large numbers in untouched fields survive", old: `{"big":123456789012345678901234567890,"f":1.000000000000000000001}`,
			ops:  `[{"type":"set","path":"x","value":1}]`,
			want: `{"big":123456789012345678901234567890,"f":1.000000000000000000001,"x":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops := decodeOps(t, tc.ops)
			if err := checkOps(ops); err != nil {
				t.Fatalf("checkOps: %v", err)
			}
			var old []byte
			if tc.old != "" {
				old = []byte(tc.old)
			}
			got, errs, err := applyOps(old, ops)
			if err != nil {
				t.Fatalf("applyOps: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("new value\n got %s\nwant %s", got, tc.want)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %+v, want %d", errs, len(tc.errs))
			}
			for j, w := range tc.errs {
				e := errs[j]
				if e.OpIndex != w.index || e.Code != w.code {
					t.Errorf("errors[%d] = %d %s, want %d %s", j, e.OpIndex, e.Code, w.index, w.code)
				}
				prefix := fmt.Sprintf("ops[%d]: ", w.index)
				if !strings.HasPrefix(e.Message, prefix) || !strings.Contains(e.Message, w.in) {
					t.Errorf("errors[%d].message = %q, want prefix %q and %q", j, e.Message, prefix, w.in)
				}
			}
		})
	}
}

func manyKeysSorted(n int) string {
	var m map[string]json.Number
	if err := json.Unmarshal([]byte(manyKeys(n)), &m); err != nil {
		panic(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// nestedSegments is {"s0":{"s1":...{}}} for n segments.
func nestedSegments(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"s%d":`, i)
	}
	b.WriteString("{}")
	b.WriteString(strings.Repeat("}", n))
	return b.String()
}

func TestApplyOpsDeterministic(t *testing.T) {
	// The same ops give the same bytes every time (map order never leaks).
	ops := decodeOps(t, `[{"type":"merge","value":{"c":1,"a":2,"b":3,"__proto__":1,"constructor":2}},{"type":"merge","value":{"z":1,"y":{"x":2,"w":3}}}]`)
	var first []byte
	var firstErrs []OpError
	for i := range 50 {
		got, errs, err := applyOps([]byte(`{"m":1,"k":2}`), ops)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first, firstErrs = got, errs
			continue
		}
		if string(got) != string(first) || fmt.Sprint(errs) != fmt.Sprint(firstErrs) {
			t.Fatalf("run %d: %s %v, first %s %v", i, got, errs, first, firstErrs)
		}
	}
	if len(firstErrs) != 1 || !strings.Contains(firstErrs[0].Message, `"__proto__"`) {
		t.Fatalf("errors %v, want the __proto__ key reported", firstErrs)
	}
	if string(first) != `{"k":2,"m":1,"y":{"w":3,"x":2},"z":1}` {
		t.Fatalf("got %s", first)
	}
}

func TestApplyOpsInternalErrors(t *testing.T) {
	tests := []struct {
		name string
		old  string
		ops  []StreamOp
	}{
		{"old not JSON", `{"a":`, []StreamOp{{Type: "remove", Path: json.RawMessage(`"a"`)}}},
		{"old with trailing data", `{} {}`, []StreamOp{{Type: "remove", Path: json.RawMessage(`"a"`)}}},
		{"unchecked unknown type", `{}`, []StreamOp{{Type: "nope"}}},
		{"unchecked bad path", `{}`, []StreamOp{{Type: "set", Path: json.RawMessage(`1`)}}},
		{"unchecked bad value", `{}`, []StreamOp{{Type: "merge", Value: json.RawMessage(`{`)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs, err := applyOps([]byte(tc.old), tc.ops)
			if err == nil {
				t.Fatalf("no error; got %s %v", got, errs)
			}
			if !strings.HasPrefix(err.Error(), "engine: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestCheckOps(t *testing.T) {
	tooMany := "[" + strings.TrimSuffix(strings.Repeat(`{"type":"remove","path":"a"},`, MaxStreamOps+1), ",") + "]"
	atMax := "[" + strings.TrimSuffix(strings.Repeat(`{"type":"remove","path":"a"},`, MaxStreamOps), ",") + "]"
	tests := []struct {
		name string
		ops  string
		want string // "" = valid; else a substring of the message
	}{
		{"all types", `[{"type":"set","path":"a","value":1},{"type":"increment","path":"n","by":1},{"type":"decrement","path":"n","by":-2.5},
			{"type":"remove","path":""},{"type":"merge","value":{}},{"type":"append","path":["a","b"],"value":null}]`, ""},
		{"at most ops", atMax, ""},
		{"per-op limits are not request errors", `[{"type":"merge","path":` + segments(40) + `,"value":"x"},{"type":"set","path":"__proto__"},{"type":"append","path":["",""],"value":1}]`, ""},
		{"set without value", `[{"type":"set","path":"a"}]`, ""},
		{"null ops", `null`, "ops: at least one op is required"},
		{"no ops", `[]`, "ops: at least one op is required"},
		{"too many ops", tooMany, "ops: 1001 ops, at most 1000"},
		{"missing type", `[{"path":"a"}]`, "ops[0].type: required (set, increment, decrement, remove, merge, append)"},
		{"unknown type", `[{"type":"set","path":"a"},{"type":"set","path":"a"},{"type":"set","path":"a"},{"type":"foo"}]`,
			`ops[3].type: unknown op type "foo" (set, increment, decrement, remove, merge, append)`},
		{"type is case sensitive", `[{"type":"Set","path":"a"}]`, `ops[0].type: unknown op type "Set"`},
		{"set path missing", `[{"type":"set","value":1}]`, `ops[0].path: required`},
		{"set path null", `[{"type":"set","path":null,"value":1}]`, `ops[0].path: required`},
		{"set path array", `[{"type":"set","path":["a"],"value":1}]`, `ops[0].path: expected a string, got an array`},
		{"remove path number", `[{"type":"remove","path":1}]`, `ops[0].path: expected a string, got a number`},
		{"increment path missing", `[{"type":"increment","by":1}]`, `ops[0].path: required`},
		{"increment by missing", `[{"type":"increment","path":"n"}]`, `ops[0].by: required (a number)`},
		{"increment by null", `[{"type":"increment","path":"n","by":null}]`, `ops[0].by: required (a number)`},
		{"increment by string", `[{"type":"increment","path":"n","by":"1"}]`, `ops[0].by: expected a number, got a string`},
		{"decrement by bool", `[{"type":"decrement","path":"n","by":true}]`, `ops[0].by: expected a number, got a boolean`},
		{"increment by out of range", `[{"type":"increment","path":"n","by":1e400}]`, `ops[0].by: 1e400 is out of the range of a float64`},
		{"merge value missing", `[{"type":"merge","path":"a"}]`, `ops[0].value: required for merge`},
		{"append value missing", `[{"type":"append","path":"a"}]`, `ops[0].value: required for append`},
		{"merge path number", `[{"type":"merge","path":3,"value":{}}]`, `ops[0].path: expected a string or an array of strings, got a number`},
		{"merge path object", `[{"type":"merge","path":{},"value":{}}]`, `ops[0].path: expected a string or an array of strings, got an object`},
		{"append path element not string", `[{"type":"append","path":["a",1],"value":1}]`, `ops[0].path[1]: expected a string, got a number`},
		{"append path element null", `[{"type":"append","path":[null],"value":1}]`, `ops[0].path[0]: expected a string, got null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOps(decodeOps(t, tc.ops))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkOps: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an invalid-argument *Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckOpsHandBuilt(t *testing.T) {
	// Ops built in Go rather than decoded: malformed raw JSON is refused.
	tests := []struct {
		name string
		op   StreamOp
		want string
	}{
		{"set value malformed", StreamOp{Type: "set", Path: json.RawMessage(`"a"`), Value: json.RawMessage(`{`)}, "ops[0].value: malformed JSON"},
		{"merge value malformed", StreamOp{Type: "merge", Value: json.RawMessage(`[1,`)}, "ops[0].value: malformed JSON"},
		{"by malformed", StreamOp{Type: "increment", Path: json.RawMessage(`"n"`), By: json.RawMessage(`1.`)}, "ops[0].by: malformed JSON number"},
		{"path malformed", StreamOp{Type: "set", Path: json.RawMessage(`"a`)}, "ops[0].path: malformed JSON string"},
		{"segments malformed", StreamOp{Type: "append", Path: json.RawMessage(`["a"`), Value: json.RawMessage(`1`)}, "ops[0].path: malformed JSON array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOps([]StreamOp{tc.op})
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func BenchmarkApplyOps(b *testing.B) {
	old := []byte(`{"count":41,"title":"hello","events":[{"k":"start"}],"meta":{"a":1,"b":{"c":2}}}`)
	ops := decodeOps(b, `[{"type":"increment","path":"count","by":1},{"type":"append","path":"events","value":{"k":"chunk"}},
		{"type":"merge","path":["meta","b"],"value":{"d":3}},{"type":"set","path":"title","value":"bye"}]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := applyOps(old, ops); err != nil {
			b.Fatal(err)
		}
	}
}
