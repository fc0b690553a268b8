package auth

import (
	"errors"
	"testing"
)

// principal builds a key principal with scopes and prefixes through New.
func principal(t testing.TB, p Prefixes, scopes ...string) *Principal {
	t.Helper()
	a, err := New(Config{Keys: []Key{{Name: "k", SHA256: HashKey("k"), Scopes: scopes, Prefixes: p}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := a.Authenticate("k")
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func TestPrefixes(t *testing.T) {
	p := principal(t, Prefixes{
		Contexts: []string{"team-a-*", "shared"},
		Streams:  []string{"presence/*", "chat/general", "doc*"},
		Queues:   []string{"jobs-*"},
		Locks:    []string{"team-a/*"},
	}, "read", "write")
	for _, tc := range []struct {
		name string
		got  bool
		want bool
	}{
		{"context by prefix", p.AllowContext("team-a-1"), true},
		{"context equal to the prefix text", p.AllowContext("team-a-"), true},
		{"context outside", p.AllowContext("team-b-1"), false},
		{"context exact", p.AllowContext("shared"), true},
		{"exact is not a prefix", p.AllowContext("shared2"), false},
		{"exact is not a prefix, shorter", p.AllowContext("share"), false},
		{"stream group by stream prefix", p.AllowStream("presence", "room-1"), true},
		{"stream exact group", p.AllowStream("chat", "general"), true},
		{"stream other group", p.AllowStream("chat", "random"), false},
		{"stream name prefix spans groups", p.AllowStream("docs", "x"), true},
		{"stream name that only starts like presence", p.AllowStream("presence2", "x"), false},
		{"queue by prefix", p.AllowQueue("jobs-email"), true},
		{"queue outside", p.AllowQueue("mail"), false},
		{"lock by prefix", p.AllowLock("team-a/db/users"), true},
		{"lock outside", p.AllowLock("team-b/db"), false},
		{"lock equal to the prefix text's stem", p.AllowLock("team-a"), false},
		{"not unrestricted", p.Unrestricted(), false},
		{"nil principal allows nothing", (*Principal)(nil).AllowContext("x"), false},
		{"nil principal has no scope", (*Principal)(nil).Can(ScopeRead), false},
		{"open principal", Open().Unrestricted() && Open().Can(ScopeAdmin), true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// Only contexts restricted: the other kinds stay open.
	q := principal(t, Prefixes{Contexts: []string{"a"}}, "read")
	if !q.AllowQueue("any") || !q.AllowStream("s", "g") || !q.AllowLock("x/y") || q.Unrestricted() {
		t.Fatal("a key restricted in contexts only: other kinds open, but not Unrestricted")
	}
	if err := q.Require(ScopeWrite); !errors.Is(err, ErrPermissionDenied) || !errors.Is(err, ErrScope) || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("Require(write) on a read key: %v", err)
	}
	if q.Require(ScopeRead) != nil {
		t.Fatal("Require(read) on a read key")
	}
}

func TestAllowTopic(t *testing.T) {
	restricted := principal(t, Prefixes{
		Contexts: []string{"team-a-*", "shared"},
		Streams:  []string{"presence/*", "chat/general"},
		Queues:   []string{"jobs-*"},
		Locks:    []string{"team-a/*"},
	}, "read")
	restrictedAdmin := principal(t, Prefixes{Contexts: []string{"team-a-*"}}, "admin")
	unrestricted := principal(t, Prefixes{}, "read")
	writeOnly := principal(t, Prefixes{}, "write")
	everything := principal(t, Prefixes{Contexts: []string{"*"}, Streams: []string{"*"}, Queues: []string{"*"}, Locks: []string{"*"}}, "read")

	for _, tc := range []struct {
		name  string
		p     *Principal
		topic string
		want  bool
	}{
		{"context in prefix", restricted, "contexts/team-a-1", true},
		{"context exact", restricted, "contexts/shared", true},
		{"context outside", restricted, "contexts/team-b-1", false},
		{"all contexts, restricted", restricted, "contexts/*", false},
		{"contexts within the prefix", restricted, "contexts/team-a-x/*", true},
		{"all contexts, unrestricted", unrestricted, "contexts/*", true},
		{"all contexts, every-pattern lists", everything, "contexts/*", true},
		{"all contexts, restricted admin", restrictedAdmin, "contexts/*", false},
		{"stream group in prefix", restricted, "streams/presence/room-1", true},
		{"stream exact group", restricted, "streams/chat/general", true},
		{"stream other group", restricted, "streams/chat/random", false},
		{"all groups of a stream under its prefix", restricted, "streams/presence/*", true},
		{"all groups of an exact-only stream", restricted, "streams/chat/*", false},
		{"all streams, restricted", restricted, "streams/*", false},
		{"stream topic without group", restricted, "streams/presence", false},
		{"stream topic with three parts", restricted, "streams/presence/a/b", false},
		{"queue in prefix", restricted, "queues/jobs-email", true},
		{"queue outside", restricted, "queues/mail", false},
		{"all queues, restricted", restricted, "queues/*", false},
		{"locks, restricted read", restricted, "locks", false},
		{"locks prefix, restricted read", restricted, "locks/*", false},
		{"locks, restricted admin", restrictedAdmin, "locks", true},
		{"locks, unrestricted read", unrestricted, "locks", true},
		{"cron, restricted read", restricted, "cron/nightly", false},
		{"cron all, restricted read", restricted, "cron/*", false},
		{"cron, restricted admin", restrictedAdmin, "cron/nightly", true},
		{"cron, unrestricted read", unrestricted, "cron/*", true},
		{"unknown kind, restricted", restricted, "other/x", false},
		{"unknown kind, restricted admin", restrictedAdmin, "other/x", false},
		{"bare kind, restricted", restricted, "contexts", false},
		{"star, restricted", restricted, "*", false},
		{"star, every-pattern lists", everything, "*", false},
		{"star, unrestricted", unrestricted, "*", true},
		{"no read scope", writeOnly, "contexts/x", false},
		{"nil principal", nil, "contexts/x", false},
		{"open", Open(), "*", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.AllowTopic(tc.topic); got != tc.want {
				t.Fatalf("AllowTopic(%q) = %v, want %v", tc.topic, got, tc.want)
			}
			err := tc.p.CheckTopic(tc.topic)
			if tc.want != (err == nil) || (err != nil && !errors.Is(err, ErrPermissionDenied)) {
				t.Fatalf("CheckTopic(%q) = %v", tc.topic, err)
			}
		})
	}
}

func TestSearchFilter(t *testing.T) {
	if f := principal(t, Prefixes{Queues: []string{"q"}}, "read").SearchFilter(); !f.Unlimited() || !f.AllowHit("workunit", "any", "", "") {
		t.Fatalf("queue-only limits leave search unlimited: %+v", f)
	}
	f := principal(t, Prefixes{Contexts: []string{"team-a-*"}, Streams: []string{}}, "read").SearchFilter()
	if f.Unlimited() || f.Contexts == nil || f.Streams == nil || len(f.Streams) != 0 {
		t.Fatalf("filter %+v", f)
	}
	if f.Contexts[0] != (Pattern{Text: "team-a-", Prefix: true}) {
		t.Fatalf("contexts %v", f.Contexts)
	}
	for _, tc := range []struct {
		kind, ctx, stream, group string
		want                     bool
	}{
		{"workunit", "team-a-1", "", "", true},
		{"workunit", "team-b-1", "", "", false},
		{"stream_item", "", "s", "g", false},
		{"something_new", "", "", "", false},
	} {
		if got := f.AllowHit(tc.kind, tc.ctx, tc.stream, tc.group); got != tc.want {
			t.Errorf("AllowHit(%q, %q, %q, %q) = %v", tc.kind, tc.ctx, tc.stream, tc.group, got)
		}
	}
	f.Contexts[0].Text = "changed"
	if g := principal(t, Prefixes{Contexts: []string{"team-a-*"}}, "read").SearchFilter(); g.Contexts[0].Text != "team-a-" {
		t.Fatal("SearchFilter must return copies")
	}
	if n := (*Principal)(nil).SearchFilter(); n.AllowHit("workunit", "x", "", "") || n.AllowHit("stream_item", "", "s", "g") {
		t.Fatal("nil principal's filter must let nothing through")
	}
}

func TestKeysBeforeJWT(t *testing.T) {
	// A configured key that happens to be JWT-shaped is still a key.
	a := newAt(t, Config{
		Keys: []Key{{Name: "dotted", SHA256: HashKey("a.b.c"), Scopes: []string{"read"}}},
		JWT:  &JWTConfig{HS256Secret: testSecret},
	})
	if p, err := a.Authenticate("a.b.c"); err != nil || p.Name() != "dotted" {
		t.Fatalf("Authenticate(a.b.c) = %v, %v", p, err)
	}
	if p, err := a.Authenticate(signHS(t, testSecret, jwtClaims(nil))); err != nil || p.Kind() != "jwt" {
		t.Fatalf("JWT beside keys = %v, %v", p, err)
	}
	if _, err := a.Authenticate("egk_unknown"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key beside JWT: %v", err)
	}
}

func TestDecision(t *testing.T) {
	if ErrExpired.Decision.Status() != 401 || ErrExpired.Decision.Code() != "unauthenticated" ||
		ErrPrefix.Decision.Status() != 403 || ErrPrefix.Decision.Code() != "permission_denied" {
		t.Fatal("decision mapping")
	}
	d := Denied("queue %q is outside the credential's prefixes", "mail")
	if !errors.Is(d, ErrPermissionDenied) || !errors.Is(d, ErrPrefix) || errors.Is(d, ErrScope) || d.Error() != `auth: queue "mail" is outside the credential's prefixes` {
		t.Fatalf("Denied: %v", d)
	}
}
