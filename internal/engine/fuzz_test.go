package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"engram/internal/engine"
	"engram/internal/jsonx"
)

// Fixed units the fuzz inputs can relate to: the store of every fuzz worker
// holds them.
const (
	fuzzTarget  = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	fuzzTarget2 = "01BX5ZZKBKACTAV9WEVGEMMVRZ"
)

func fuzzEnv(f *testing.F) *env {
	v := newEnv(f)
	_, err := v.e.CreateUnits(context.Background(), []engine.UnitInput{
		{ID: fuzzTarget, ContextID: "fz", AgentID: "seed", Type: "MESSAGE", Payload: json.RawMessage(`"hello"`)},
		{ID: fuzzTarget2, ContextID: "fz", AgentID: "seed", Type: "PLAN"},
	})
	if err != nil {
		f.Fatal(err)
	}
	return v
}

var unitSeeds = []string{
	`{"context_id":"c1","agent_id":"a1","type":"MESSAGE"}`,
	`{"context_id":"c1","agent_id":"a1","type":"MESSAGE","payload":"hi"}`,
	`{"id":"01HZZZZZZZZZZZZZZZZZZZZZZZ","context_id":"c1","agent_id":"a1","type":"PLAN","payload":{"b":[1,2.0,{"z":null,"a":true}],"a":"x"}}`,
	`{"id":"01hzzzzzzzzzzzzzzzzzzzzzzy","context_id":"c1","agent_id":"a1","type":"PLAN","metadata":{},"payload":{"a":"x","b":[1,2.0,{"a":true,"z":null}]}}`,
	`{"id":"01J0000000000000000000000A","context_id":"c.2~:@-_","agent_id":"x","type":"TOOL_CALL","metadata":{"k":"v","<>":"&"},"payload_base64":"AAECAwQ="}`,
	`{"id":"01J0000000000000000000000B","context_id":"c1","agent_id":"a","type":"TOOL_RESULT","relationships":[{"target_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","type":"CAUSES"},{"target_id":"01bx5zzkbkactav9wevgemmvrz","type":"RESPONDS_TO","metadata":{"w":"1"}}]}`,
	`{"id":"01J0000000000000000000000C","context_id":"c1","agent_id":"a","type":"ERROR","payload":null,"payload_base64":null,"seq":7,"timestamp":"x"}`,
	`{"id":"01J0000000000000000000000D","context_id":"c1","agent_id":"a","type":"SYSTEM","payload":"\u0000\ud800\u2028<&>\"\\"}`,
	`{"id":"01J0000000000000000000000E","context_id":"c1","agent_id":"a","type":"OBSERVATION","payload":  [ 1 ,  -0.0e+5 , 1E400 , "a b" ] }`,
	`{"id":"01J0000000000000000000000F","context_id":"c1","agent_id":"a","type":"REASONING","payload":{"a":1,"a":2}}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":"x","payload_base64":"eA=="}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload_base64":"not base64"}`,
	`{"context_id":"c1","agent_id":"a","type":"message"}`,
	`{"context_id":"","agent_id":"a","type":"MESSAGE"}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","metadata":{"":"x"}}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","relationships":[{"target_id":"01J0000000000000000000000Z","type":"CAUSES"}]}`,
	`{"id":"01J00000000000000000000010","context_id":"c1","agent_id":"a","type":"MESSAGE","relationships":[{"target_id":"01J00000000000000000000010","type":"CAUSES"}]}`,
	`{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","context_id":"fz","agent_id":"seed","type":"MESSAGE","payload":"hello"}`,
	`{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","context_id":"fz","agent_id":"seed","type":"MESSAGE","payload":"other"}`,
	`{"Context_ID":"c1","AGENT_ID":"a","Type":"MESSAGE"}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","extra":1}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE"} {}`,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"context_id":1}`,
	`[]`,
	`null`,
	``,
	`{"context_id":"c1","agent_id":"a","type":"MESSAGE","payload":"` + "\xff" + `"}`,
}

// checkCreated asserts what a successful create must satisfy.
func checkCreated(t *testing.T, v *env, data []byte, res engine.CreateResult, hadID []bool, resubmit func() (engine.CreateResult, error)) {
	t.Helper()
	for i, raw := range res.Units {
		if !json.Valid(raw) {
			t.Fatalf("units[%d]: invalid JSON %q", i, raw)
		}
		if !utf8.Valid(raw) {
			t.Fatalf("units[%d]: stored JSON is not UTF-8: %q", i, raw)
		}
		var back engine.UnitInput
		if err := jsonx.Decode(raw, &back); err != nil {
			t.Fatalf("units[%d] %s does not decode back: %v", i, raw, err)
		}
		u := parseUnit(t, raw)
		if got := v.getUnit(t, u.ID); !bytes.Equal(got, raw) {
			t.Fatalf("GetUnit(%s) = %s, want %s", u.ID, got, raw)
		}
		// The unit as read back is an idempotent retry of itself.
		head := v.head()
		again, err := v.e.CreateUnit(context.Background(), &back)
		if err != nil || again.Created || !bytes.Equal(again.Units[0], raw) {
			t.Fatalf("re-sending stored unit %s: %v Created=%v got %s", raw, err, again.Created, again.Units)
		}
		if v.head() != head {
			t.Fatalf("re-sending stored unit wrote")
		}
	}
	all := true
	for _, h := range hadID {
		all = all && h
	}
	if !all {
		return
	}
	head := v.head()
	again, err := resubmit()
	if err != nil {
		t.Fatalf("resubmitting %q: %v", data, err)
	}
	if again.Created || v.head() != head {
		t.Fatalf("resubmitting %q: Created=%v head %d -> %d", data, again.Created, head, v.head())
	}
	for i := range res.Units {
		if !bytes.Equal(again.Units[i], res.Units[i]) {
			t.Fatalf("resubmit units[%d] = %s, want %s", i, again.Units[i], res.Units[i])
		}
	}
}

func checkRejected(t *testing.T, v *env, data []byte, err error, head uint64) {
	t.Helper()
	if !errors.Is(err, engine.ErrInvalid) && !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("input %q: error %v (%T) is neither ErrInvalid nor ErrConflict", data, err, err)
	}
	if err.Error() == "" || strings.HasPrefix(err.Error(), "engine: ") {
		t.Fatalf("input %q: error %q is not a client message", data, err)
	}
	if v.head() != head {
		t.Fatalf("input %q rejected (%v) but head moved %d -> %d", data, err, head, v.head())
	}
}

func FuzzUnitInput(f *testing.F) {
	for _, s := range unitSeeds {
		f.Add([]byte(s))
	}
	v := fuzzEnv(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		var in engine.UnitInput
		if err := jsonx.Decode(data, &in); err != nil {
			return // malformed: the API answers 400 before the engine
		}
		hadID := in.ID != ""
		head := v.head()
		res, err := v.e.CreateUnit(ctx, &in)
		if err != nil {
			checkRejected(t, v, data, err, head)
			return
		}
		if len(res.Units) != 1 {
			t.Fatalf("%d units", len(res.Units))
		}
		if res.Created && v.head() <= head {
			t.Fatalf("Created but head %d -> %d", head, v.head())
		}
		checkCreated(t, v, data, res, []bool{hadID}, func() (engine.CreateResult, error) {
			var again engine.UnitInput
			if err := jsonx.Decode(data, &again); err != nil {
				t.Fatal(err)
			}
			return v.e.CreateUnit(ctx, &again)
		})
	})
}

func FuzzBatchInput(f *testing.F) {
	for _, s := range unitSeeds {
		f.Add([]byte(`{"units":[` + s + `]}`))
	}
	f.Add([]byte(`{"units":[]}`))
	f.Add([]byte(`{"units":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"units":[` + unitSeeds[0] + `,` + unitSeeds[2] + `,` + unitSeeds[5] + `]}`))
	f.Add([]byte(`{"units":[{"id":"01J00000000000000000000100","context_id":"n1","agent_id":"a","type":"MESSAGE"},
		{"id":"01J00000000000000000000101","context_id":"n2","agent_id":"b","type":"PLAN","relationships":[{"target_id":"01j00000000000000000000100","type":"SEQUENTIAL"}]}]}`))
	f.Add([]byte(`{"units":[{"id":"01J00000000000000000000200","context_id":"n1","agent_id":"a","type":"MESSAGE"},
		{"id":"01J00000000000000000000200","context_id":"n1","agent_id":"a","type":"MESSAGE"}]}`))
	f.Add([]byte(`{"units":[{"context_id":"n1","agent_id":"a","type":"MESSAGE","relationships":[{"target_id":"01J00000000000000000000301","type":"CAUSES"}]},
		{"id":"01J00000000000000000000301","context_id":"n1","agent_id":"a","type":"MESSAGE"}]}`))
	v := fuzzEnv(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		var in engine.BatchInput
		if err := jsonx.Decode(data, &in); err != nil {
			return
		}
		hadID := make([]bool, len(in.Units))
		for i, u := range in.Units {
			hadID[i] = u.ID != ""
		}
		head := v.head()
		res, err := v.e.CreateUnits(ctx, in.Units)
		if err != nil {
			checkRejected(t, v, data, err, head)
			return
		}
		if len(res.Units) != len(hadID) {
			t.Fatalf("%d units for %d inputs", len(res.Units), len(hadID))
		}
		// New units have contiguous seqs in request order.
		var last uint64
		for i, raw := range res.Units {
			u := parseUnit(t, raw)
			if u.Seq <= head {
				continue // an existing unit
			}
			if last != 0 && u.Seq != last+1 {
				t.Fatalf("units[%d] seq %d after %d: not contiguous", i, u.Seq, last)
			}
			last = u.Seq
		}
		if res.Created && last != v.head() {
			t.Fatalf("last unit seq %d, head %d", last, v.head())
		}
		checkCreated(t, v, data, res, hadID, func() (engine.CreateResult, error) {
			var again engine.BatchInput
			if err := jsonx.Decode(data, &again); err != nil {
				t.Fatal(err)
			}
			return v.e.CreateUnits(ctx, again.Units)
		})
	})
}
