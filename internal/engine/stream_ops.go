package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Stream item updates (PATCH /v1/streams/{stream}/{group}/{item} and iii's
// stream::update): a list of ops applied in order to the item's JSON value.
// checkOps rejects a malformed request as a whole; applyOps skips each op
// that cannot apply to the current value and reports it as an OpError with
// one of iii's stable codes, while the other ops still apply.
//
// The rules mirror iii's engine (apply_update_ops), with these choices:
//
//   - set, increment, decrement and remove take one literal first-level key
//     ("" is the root, dots are not split); like iii, they require the path.
//     merge and append take an absent, null or "" path (the root), a key, or
//     an array of literal segments.
//   - Path rules apply to every op, as in iii: at most 32 segments, each
//     non-empty, at most 256 bytes and none of __proto__, constructor,
//     prototype. The code names the op: merge.path.too_deep,
//     append.path.proto_polluted, set.path.segment_too_long, ...
//   - An absent item starts as {}. Until an op applies, a root increment or
//     decrement sets the item to by (-by) and a root append starts it from
//     nothing (a string stays a string, anything else becomes [value]), as
//     iii does; once the item exists, {} is an object like any other.
//   - A root merge into a value that is not an object fails with
//     merge.target_not_object (iii leaves the value alone without reporting;
//     API.md reports every skipped op). A merge with a non-empty path
//     replaces a non-object root, and every missing or non-object
//     intermediate, with {}, as iii does.
//   - append with a non-empty path needs an object root
//     (append.target_not_object). A missing leaf becomes the value itself
//     when it is a string and the path has one segment, [value] otherwise;
//     an existing null leaf is treated like a missing one-segment leaf.
//   - Numbers: integers add exactly (int64, or uint64 when the result only
//     fits there); anything else adds in float64. A result beyond the
//     integer ranges becomes a float64; one that is not finite fails with
//     increment.not_number (decrement.not_number), as in iii. by may be any
//     finite JSON number (iii only takes an int64).

// StreamOp is one update op as a client sends it.
type StreamOp struct {
	Type string `json:"type"`
	// Path is a string, or (merge/append) an array of strings. Absent or
	// null is the root for merge and append; set, increment, decrement and
	// remove require a string ("" is the root).
	Path  json.RawMessage `json:"path,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
	By    json.RawMessage `json:"by,omitempty"`
}

// OpError reports one op that was skipped.
type OpError struct {
	OpIndex int    `json:"op_index"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MaxStreamOps bounds the ops of one update.
const MaxStreamOps = 1000

// Limits on op paths and merge values (iii's MAX_PATH_DEPTH,
// MAX_SEGMENT_BYTES, MAX_VALUE_KEYS, MAX_VALUE_DEPTH).
const (
	maxOpPathSegments  = 32
	maxOpSegmentBytes  = 256
	maxMergeValueKeys  = 1024
	maxMergeValueDepth = 16
)

// The op types.
const (
	opSet       = "set"
	opIncrement = "increment"
	opDecrement = "decrement"
	opRemove    = "remove"
	opMerge     = "merge"
	opAppend    = "append"
)

const opTypeList = "set, increment, decrement, remove, merge, append"

// The stable codes of OpError that do not depend on the op type. Path codes
// are built from the op type: "<type>.path.<reason>".
const (
	codeSetTargetNotObject    = "set.target_not_object"
	codeRemoveTargetNotObject = "remove.target_not_object"
	codeAppendTargetNotObject = "append.target_not_object"
	codeAppendTypeMismatch    = "append.type_mismatch"
	codeMergeTargetNotObject  = "merge.target_not_object"
	codeMergeValueNotObject   = "merge.value.not_an_object"
	codeMergeValueTooManyKeys = "merge.value.too_many_keys"
	codeMergeValueTooDeep     = "merge.value.too_deep"
	codeMergeValueProto       = "merge.value.proto_polluted"
)

// protoKeys are the path segments and merge-value keys refused because a
// JavaScript consumer spreading the value would pollute prototypes. The
// order is iii's (sorted), so the key reported first is the same.
var protoKeys = [...]string{"__proto__", "constructor", "prototype"}

func isProtoKey(s string) bool {
	for _, k := range protoKeys {
		if s == k {
			return true
		}
	}
	return false
}

// checkOps validates the request as a whole: 1..MaxStreamOps ops, each with
// a known type and the fields its type needs, of the right JSON kinds. Only
// shape errors are reported here; failures that depend on the current value,
// and the per-op limits, are OpErrors from applyOps.
func checkOps(ops []StreamOp) error {
	if len(ops) == 0 {
		return invalidf("ops: at least one op is required")
	}
	if len(ops) > MaxStreamOps {
		return invalidf("ops: %d ops, at most %d", len(ops), MaxStreamOps)
	}
	for i := range ops {
		if err := checkOp(i, &ops[i]); err != nil {
			return err
		}
	}
	return nil
}

func checkOp(i int, op *StreamOp) error {
	switch op.Type {
	case opSet, opRemove:
		if _, err := keyPath(op.Path); err != nil {
			return invalidf("ops[%d].path: %v", i, err)
		}
		if op.Type == opSet && len(op.Value) > 0 && !json.Valid(op.Value) {
			return invalidf("ops[%d].value: malformed JSON", i)
		}
	case opIncrement, opDecrement:
		if _, err := keyPath(op.Path); err != nil {
			return invalidf("ops[%d].path: %v", i, err)
		}
		if _, err := parseBy(op.By); err != nil {
			return invalidf("ops[%d].by: %v", i, err)
		}
	case opMerge, opAppend:
		if _, err := segmentPath(op.Path); err != nil {
			var se *segmentError
			if errors.As(err, &se) {
				return invalidf("ops[%d].path[%d]: %v", i, se.index, se.err)
			}
			return invalidf("ops[%d].path: %v", i, err)
		}
		if len(op.Value) == 0 {
			return invalidf("ops[%d].value: required for %s", i, op.Type)
		}
		if !json.Valid(op.Value) {
			return invalidf("ops[%d].value: malformed JSON", i)
		}
	case "":
		return invalidf("ops[%d].type: required (%s)", i, opTypeList)
	default:
		return invalidf("ops[%d].type: unknown op type %q (%s)", i, Truncate(op.Type), opTypeList)
	}
	return nil
}

// rawKind names the JSON kind of raw for messages.
func rawKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '[':
		return "an array"
	case c == '{':
		return "an object"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	}
	return "malformed JSON"
}

func isAbsent(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// keyPath parses the path of set, increment, decrement and remove: a JSON
// string, "" being the root.
func keyPath(raw json.RawMessage) (string, error) {
	if isAbsent(raw) {
		return "", errors.New(`required (a string; "" is the root)`)
	}
	raw = bytes.TrimSpace(raw)
	if raw[0] != '"' {
		return "", fmt.Errorf("expected a string, got %s", rawKind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("malformed JSON string")
	}
	return s, nil
}

type segmentError struct {
	index int
	err   error
}

func (e *segmentError) Error() string { return fmt.Sprintf("[%d]: %v", e.index, e.err) }

// segmentPath parses the path of merge and append: absent, null, "" or []
// is the root (no segments), a string is one segment, an array of strings
// is literal segments.
func segmentPath(raw json.RawMessage) ([]string, error) {
	if isAbsent(raw) {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("malformed JSON string")
		}
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, errors.New("malformed JSON array")
		}
		if len(elems) == 0 {
			return nil, nil
		}
		segs := make([]string, len(elems))
		for j, e := range elems {
			e = bytes.TrimSpace(e)
			if len(e) == 0 || e[0] != '"' {
				return nil, &segmentError{j, fmt.Errorf("expected a string, got %s", rawKind(e))}
			}
			if err := json.Unmarshal(e, &segs[j]); err != nil {
				return nil, &segmentError{j, errors.New("malformed JSON string")}
			}
		}
		return segs, nil
	}
	return nil, fmt.Errorf("expected a string or an array of strings, got %s", rawKind(raw))
}

// applyOps applies ops (already checked) in order to old, the item's current
// JSON (nil when the item is absent: it starts as {}). It returns the new
// JSON, compact with object keys sorted, and the errors of the ops it
// skipped (in op order). err is only for an internal failure (old is not
// valid JSON, or an op that checkOps would have refused).
func applyOps(old []byte, ops []StreamOp) (newValue []byte, errs []OpError, err error) {
	a := opApplier{missing: len(old) == 0}
	if a.missing {
		a.root = map[string]any{}
	} else if a.root, err = decodeJSON(old); err != nil {
		return nil, nil, fmt.Errorf("engine: stream item value: %w", err)
	}
	for i := range ops {
		oe, err := a.apply(i, &ops[i])
		if err != nil {
			return nil, nil, fmt.Errorf("engine: ops[%d]: %w", i, err)
		}
		if oe != nil {
			errs = append(errs, *oe)
			continue
		}
		a.missing = false
	}
	newValue, err = encodeJSON(a.root)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: encode stream item value: %w", err)
	}
	return newValue, errs, nil
}

// opApplier holds the value being updated, decoded with json.Number.
type opApplier struct {
	root any
	// missing: the item was absent and no op has applied yet.
	missing bool
}

func opErr(i int, code, format string, args ...any) *OpError {
	return &OpError{OpIndex: i, Code: code, Message: fmt.Sprintf("ops[%d]: ", i) + fmt.Sprintf(format, args...)}
}

// apply applies op i, or reports why it was skipped (leaving the value as it
// was).
func (a *opApplier) apply(i int, op *StreamOp) (*OpError, error) {
	switch op.Type {
	case opSet:
		key, err := keyPath(op.Path)
		if err != nil {
			return nil, err
		}
		if oe := checkKey(i, op.Type, key); oe != nil {
			return oe, nil
		}
		var v any
		if len(op.Value) > 0 {
			if v, err = decodeJSON(op.Value); err != nil {
				return nil, err
			}
		}
		if key == "" {
			a.root = v
			return nil, nil
		}
		m, ok := a.root.(map[string]any)
		if !ok {
			return opErr(i, codeSetTargetNotObject, "cannot set field %q: the item is %s, not an object", Truncate(key), kindOf(a.root)), nil
		}
		m[key] = v
		return nil, nil

	case opIncrement, opDecrement:
		key, err := keyPath(op.Path)
		if err != nil {
			return nil, err
		}
		by, err := parseBy(op.By)
		if err != nil {
			return nil, err
		}
		if oe := checkKey(i, op.Type, key); oe != nil {
			return oe, nil
		}
		if op.Type == opDecrement {
			by = by.neg()
		}
		if key == "" {
			if a.missing {
				a.root = by.value()
				return nil, nil
			}
			v, oe := addTo(i, op.Type, "the item", a.root, by)
			if oe != nil {
				return oe, nil
			}
			a.root = v
			return nil, nil
		}
		m, ok := a.root.(map[string]any)
		if !ok {
			return opErr(i, op.Type+".target_not_object", "cannot %s field %q: the item is %s, not an object", op.Type, Truncate(key), kindOf(a.root)), nil
		}
		cur, ok := m[key]
		if !ok {
			m[key] = by.value()
			return nil, nil
		}
		v, oe := addTo(i, op.Type, fmt.Sprintf("field %q", Truncate(key)), cur, by)
		if oe != nil {
			return oe, nil
		}
		m[key] = v
		return nil, nil

	case opRemove:
		key, err := keyPath(op.Path)
		if err != nil {
			return nil, err
		}
		if oe := checkKey(i, op.Type, key); oe != nil {
			return oe, nil
		}
		if key == "" {
			a.root = nil
			return nil, nil
		}
		m, ok := a.root.(map[string]any)
		if !ok {
			return opErr(i, codeRemoveTargetNotObject, "cannot remove field %q: the item is %s, not an object", Truncate(key), kindOf(a.root)), nil
		}
		delete(m, key)
		return nil, nil

	case opMerge:
		return a.merge(i, op)

	case opAppend:
		return a.append(i, op)
	}
	return nil, fmt.Errorf("unknown op type %q", Truncate(op.Type))
}

// merge shallow-merges an object into the root or into the object at a
// path, creating (or replacing with {}) what is missing or not an object on
// the way.
func (a *opApplier) merge(i int, op *StreamOp) (*OpError, error) {
	segs, err := segmentPath(op.Path)
	if err != nil {
		return nil, err
	}
	if oe := checkSegments(i, op.Type, segs); oe != nil {
		return oe, nil
	}
	v, err := decodeJSON(op.Value)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return opErr(i, codeMergeValueNotObject, "merge value is %s, not an object", kindOf(v)), nil
	}
	if len(obj) > maxMergeValueKeys {
		return opErr(i, codeMergeValueTooManyKeys, "merge value has %d keys, at most %d", len(obj), maxMergeValueKeys), nil
	}
	for _, k := range protoKeys {
		if _, ok := obj[k]; ok {
			return opErr(i, codeMergeValueProto, "merge value key %q is not allowed (prototype pollution)", k), nil
		}
	}
	if depthExceeds(v, maxMergeValueDepth) {
		return opErr(i, codeMergeValueTooDeep, "merge value nests more than %d levels deep", maxMergeValueDepth), nil
	}
	var target map[string]any
	if len(segs) == 0 {
		if target, ok = a.root.(map[string]any); !ok {
			return opErr(i, codeMergeTargetNotObject, "cannot merge into the item: it is %s, not an object", kindOf(a.root)), nil
		}
	} else {
		root, ok := a.root.(map[string]any)
		if !ok {
			root = map[string]any{}
			a.root = root
		}
		target = walkOrCreate(root, segs)
	}
	for k, e := range obj {
		target[k] = e
	}
	return nil, nil
}

// append pushes a value onto an array or concatenates a string, at the root
// or at a path (creating missing or non-object intermediates as {}).
func (a *opApplier) append(i int, op *StreamOp) (*OpError, error) {
	segs, err := segmentPath(op.Path)
	if err != nil {
		return nil, err
	}
	if oe := checkSegments(i, op.Type, segs); oe != nil {
		return oe, nil
	}
	v, err := decodeJSON(op.Value)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		cur := a.root
		if a.missing {
			cur = nil
		}
		r, oe := appendTo(i, "the item", cur, v)
		if oe != nil {
			return oe, nil
		}
		a.root = r
		return nil, nil
	}
	root, ok := a.root.(map[string]any)
	if !ok {
		return opErr(i, codeAppendTargetNotObject, "cannot append at %s: the item is %s, not an object", segmentsLabel(segs), kindOf(a.root)), nil
	}
	parent := walkOrCreate(root, segs[:len(segs)-1])
	leaf := segs[len(segs)-1]
	cur, ok := parent[leaf]
	if !ok {
		if len(segs) == 1 {
			parent[leaf] = initialAppend(v)
		} else {
			parent[leaf] = []any{v}
		}
		return nil, nil
	}
	r, oe := appendTo(i, segmentsLabel(segs), cur, v)
	if oe != nil {
		return oe, nil
	}
	parent[leaf] = r
	return nil, nil
}

// appendTo returns cur with v appended: pushed onto an array, concatenated
// to a string, or (cur null or missing) a first value.
func appendTo(i int, label string, cur, v any) (any, *OpError) {
	switch c := cur.(type) {
	case []any:
		return append(c, v), nil
	case string:
		s, ok := v.(string)
		if !ok {
			return nil, opErr(i, codeAppendTypeMismatch, "%s is a string; only a string can be appended to it, not %s", label, kindOf(v))
		}
		return c + s, nil
	case nil:
		return initialAppend(v), nil
	}
	return nil, opErr(i, codeAppendTypeMismatch, "%s is %s; append needs an array, a string, null or a missing field", label, kindOf(cur))
}

// initialAppend is what appending v to nothing gives: a string stays a
// string (so later appends concatenate), anything else starts an array.
func initialAppend(v any) any {
	if _, ok := v.(string); ok {
		return v
	}
	return []any{v}
}

// walkOrCreate returns the object at segs under m, replacing each missing or
// non-object step with {}.
func walkOrCreate(m map[string]any, segs []string) map[string]any {
	for _, s := range segs {
		child, ok := m[s].(map[string]any)
		if !ok {
			child = map[string]any{}
			m[s] = child
		}
		m = child
	}
	return m
}

// checkKey applies the path rules to the key of set, increment, decrement
// or remove ("" being the root, which has no segment to check).
func checkKey(i int, typ, key string) *OpError {
	if key == "" {
		return nil
	}
	return checkSegments(i, typ, []string{key})
}

// checkSegments applies iii's path rules, reporting the first violation
// with a code named after the op type.
func checkSegments(i int, typ string, segs []string) *OpError {
	if len(segs) > maxOpPathSegments {
		return opErr(i, typ+".path.too_deep", "path has %d segments, at most %d", len(segs), maxOpPathSegments)
	}
	for j, s := range segs {
		switch {
		case s == "":
			return opErr(i, typ+".path.empty_segment", "path segment %d is empty", j)
		case len(s) > maxOpSegmentBytes:
			return opErr(i, typ+".path.segment_too_long", "path segment %d is %d bytes, at most %d", j, len(s), maxOpSegmentBytes)
		case isProtoKey(s):
			return opErr(i, typ+".path.proto_polluted", "path segment %q is not allowed (prototype pollution)", s)
		}
	}
	return nil
}

func segmentsLabel(segs []string) string {
	if len(segs) == 1 {
		return fmt.Sprintf("field %q", Truncate(segs[0]))
	}
	var b strings.Builder
	b.WriteByte('[')
	for j, s := range segs {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(Truncate(s)))
	}
	b.WriteByte(']')
	return b.String()
}

// kindOf names the JSON kind of a decoded value for messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// depthExceeds reports whether v nests deeper than limit, counting each
// object or array as one level (iii's json_depth: {} is 1, a scalar 0).
func depthExceeds(v any, limit int) bool {
	if limit < 0 {
		return true
	}
	switch c := v.(type) {
	case map[string]any:
		if limit == 0 {
			return true
		}
		for _, e := range c {
			if depthExceeds(e, limit-1) {
				return true
			}
		}
	case []any:
		if limit == 0 {
			return true
		}
		for _, e := range c {
			if depthExceeds(e, limit-1) {
				return true
			}
		}
	}
	return false
}

// number is a JSON number as increment and decrement compute with it: an
// integer (int64, or big beyond it) or a float64.
type number struct {
	kind byte // 'i': i; 'b': b (an integer outside int64); 'f': f
	i    int64
	b    *big.Int
	f    float64
}

// parseNumber classifies a JSON number literal the way serde_json does: a
// literal without fraction or exponent is an integer when it fits int64 or
// uint64, anything else is a float64 (possibly infinite when out of range).
func parseNumber(s string) (number, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return number{kind: 'i', i: i}, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return number{kind: 'b', b: new(big.Int).SetUint64(u)}, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return number{}, err
	}
	return number{kind: 'f', f: f}, nil
}

// parseBy parses the by of increment and decrement: a finite JSON number.
func parseBy(raw json.RawMessage) (number, error) {
	raw = bytes.TrimSpace(raw)
	if isAbsent(raw) {
		return number{}, errors.New("required (a number)")
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return number{}, fmt.Errorf("expected a number, got %s", rawKind(raw))
	}
	if !json.Valid(raw) {
		return number{}, errors.New("malformed JSON number")
	}
	n, err := parseNumber(string(raw))
	if err != nil {
		return number{}, errors.New("malformed JSON number")
	}
	if n.kind == 'f' && (math.IsInf(n.f, 0) || math.IsNaN(n.f)) {
		return number{}, fmt.Errorf("%s is out of the range of a float64", Truncate(string(raw)))
	}
	return n, nil
}

func (n number) neg() number {
	switch n.kind {
	case 'i':
		if n.i != math.MinInt64 {
			return number{kind: 'i', i: -n.i}
		}
		return number{kind: 'b', b: new(big.Int).Neg(big.NewInt(n.i))}
	case 'b':
		return number{kind: 'b', b: new(big.Int).Neg(n.b)}
	}
	return number{kind: 'f', f: -n.f}
}

func (n number) float() float64 {
	switch n.kind {
	case 'i':
		return float64(n.i)
	case 'b':
		f, _ := new(big.Float).SetInt(n.b).Float64()
		return f
	}
	return n.f
}

func (n number) bigInt() *big.Int {
	if n.kind == 'b' {
		return n.b
	}
	return big.NewInt(n.i)
}

// value is n as it goes into the tree: an integer that fits int64 or
// uint64 as an exact json.Number, anything else as a float64.
func (n number) value() any {
	switch n.kind {
	case 'i':
		return json.Number(strconv.FormatInt(n.i, 10))
	case 'b':
		if n.b.IsInt64() {
			return json.Number(strconv.FormatInt(n.b.Int64(), 10))
		}
		if n.b.IsUint64() {
			return json.Number(strconv.FormatUint(n.b.Uint64(), 10))
		}
		return n.float()
	}
	return n.f
}

// add returns x+y: exact when both are integers and the sum fits int64 or
// uint64, a float64 otherwise; ok is false when the sum is not finite.
func add(x, y number) (sum any, ok bool) {
	if x.kind != 'f' && y.kind != 'f' {
		if x.kind == 'i' && y.kind == 'i' {
			s := x.i + y.i
			// Overflow iff both operands have the sign the sum lacks.
			if (x.i >= 0) == (y.i >= 0) && (s >= 0) != (x.i >= 0) {
				return number{kind: 'b', b: new(big.Int).Add(big.NewInt(x.i), big.NewInt(y.i))}.value(), true
			}
			return json.Number(strconv.FormatInt(s, 10)), true
		}
		return number{kind: 'b', b: new(big.Int).Add(x.bigInt(), y.bigInt())}.value(), true
	}
	f := x.float() + y.float()
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, false
	}
	return f, true
}

// addTo adds by to cur, the value at label, for the op typ.
func addTo(i int, typ, label string, cur any, by number) (any, *OpError) {
	var x number
	switch c := cur.(type) {
	case json.Number:
		var err error
		if x, err = parseNumber(string(c)); err != nil {
			return nil, opErr(i, typ+".not_number", "%s is not a valid number", label)
		}
	case float64:
		x = number{kind: 'f', f: c}
	default:
		return nil, opErr(i, typ+".not_number", "%s is %s, not a number", label, kindOf(cur))
	}
	v, ok := add(x, by)
	if !ok {
		return nil, opErr(i, typ+".not_number", "%s: the result is not a finite number", label)
	}
	return v, nil
}

// decodeJSON decodes one JSON value, keeping numbers as json.Number.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// encodeJSON encodes v compactly, without HTML escaping.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
