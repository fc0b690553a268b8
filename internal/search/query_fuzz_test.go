package search_test

import (
	"context"
	"errors"
	"testing"

	"engram/internal/search"
)

// FuzzQuery: whatever q a client sends, the answer is hits or an invalid
// argument, never another error or a panic, and a filter always holds: q
// cannot reach past its own group to the filter terms.
func FuzzQuery(f *testing.F) {
	v := newEnv(f)
	for i, c := range []string{"c1", "c2"} {
		v.unit(f, c, "a", "MESSAGE", "alpha beta gamma secret", nil)
		v.unit(f, c, "b", "PLAN", map[string]any{"x": "delta alpha", "n": i}, nil)
	}
	v.set(f, "s", "g", "i", "alpha item")
	v.waitCaughtUp(f)
	for _, s := range []string{
		"alpha", `"alpha beta"`, "alph*", "alpha NOT beta", "(alpha OR delta) AND gamma", "NEAR(alpha gamma, 2)",
		"a) OR tags : (kw", `") OR ("`, "body : alpha", "tags : kw", "{body tags} : alpha", "^alpha", "alpha +",
		"(", ")", `"`, "-alpha", "alpha:", "*", "NOT alpha", "alpha AND (", `""`, "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		res, err := v.x.Search(context.Background(), search.Query{Q: q, ContextID: "c1", Limit: 100})
		if err != nil {
			if !isInvalid(err) {
				var lag *search.LagError
				if !errors.As(err, &lag) {
					t.Fatalf("q %q: %v is not an invalid argument", q, err)
				}
			}
			return
		}
		for _, h := range res.Hits {
			if h.ContextID != "c1" || h.Kind != search.KindUnit {
				t.Fatalf("q %q escaped the context filter: %+v", q, h)
			}
		}
	})
}
