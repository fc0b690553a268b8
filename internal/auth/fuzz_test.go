package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"engram/internal/router"
)

// FuzzAuthenticate: any token either authenticates as the one configured
// key or as a JWT that verifies independently, or is refused with a 401
// whose message is one of a fixed set (so it never echoes the token).
func FuzzAuthenticate(f *testing.F) {
	const theKey = "egk_the-one-key"
	a := newAt(f, Config{
		Keys: []Key{{Name: "k", SHA256: HashKey(theKey), Scopes: []string{"read"}}},
		JWT:  &JWTConfig{HS256Secret: testSecret},
	})
	valid := signHS(f, testSecret, jwtClaims(nil))
	for _, s := range []string{"", theKey, "egk_", "a.b.c", "..", valid, valid[:len(valid)-1],
		unsigned(f, jwtClaims(nil)), signHS(f, testSecret, jwtClaims(map[string]any{"engram_prefixes": map[string]any{"queues": []string{"a*"}}}))} {
		f.Add(s)
	}
	messages := map[string]bool{}
	for _, e := range []*Error{ErrMissingCredentials, ErrUnknownKey, ErrExpired, ErrNotYetValid,
		jwtError(jwt.ErrTokenMalformed), jwtError(jwt.ErrTokenUnverifiable), jwtError(jwt.ErrTokenSignatureInvalid),
		jwtError(jwt.ErrTokenRequiredClaimMissing), jwtError(jwt.ErrTokenInvalidClaims)} {
		messages[e.Message] = true
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := a.Authenticate(token)
		if err == nil {
			if p.Kind() == "key" && token == theKey {
				return
			}
			if p.Kind() != "jwt" {
				t.Fatalf("token %q authenticated as %s", token, p.Name())
			}
			if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(a.now), jwt.WithLeeway(Leeway)); err != nil {
				t.Fatalf("token %q accepted, but does not verify: %v", token, err)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Decision != Unauthenticated || p != nil {
			t.Fatalf("Authenticate(%q) = %v, %v; want a 401 *Error", token, p, err)
		}
		if !messages[e.Message] && !strings.HasPrefix(e.Message, "malformed token: engram_prefixes") &&
			!strings.HasPrefix(e.Message, "malformed credentials: longer than") {
			t.Fatalf("Authenticate(%q): message %q is not one of the fixed ones", token, e.Message)
		}
	})
}

// FuzzAllowTopic: whenever a subscription is allowed, every event topic it
// matches (router.Matches, the notifier's own matcher) is allowed too, and
// exact topics agree with AllowContext/AllowStream/AllowQueue.
func FuzzAllowTopic(f *testing.F) {
	f.Add("team-a-*", "presence/*", "jobs-*", uint8(1), "contexts/*", "team-a-1", "room")
	f.Add("team-a-*", "presence/*", "jobs-*", uint8(1), "contexts/team-a-x/*", "team-a-x", "g")
	f.Add("*", "p*", "", uint8(1), "streams/presence/*", "presence", "room")
	f.Add("a", "s/g", "q", uint8(4), "locks", "a", "g")
	f.Add("", "", "", uint8(3), "cron/*", "x", "y")
	f.Add("", "", "", uint8(2), "locks", "x", "y") // write only: no subscription at all
	f.Fuzz(func(t *testing.T, ctxPat, streamPat, queuePat string, scopes uint8, sub, n1, n2 string) {
		list := func(s string) []string {
			if s == "" {
				return nil // the kind left out
			}
			return strings.Split(s, ",")
		}
		var names []string
		for i, s := range []string{"read", "write", "admin"} {
			if scopes&(1<<i) != 0 {
				names = append(names, s)
			}
		}
		if len(names) == 0 {
			names = []string{"read"}
		}
		a, err := New(Config{Keys: []Key{{Name: "k", SHA256: HashKey("k"), Scopes: names,
			Prefixes: Prefixes{Contexts: list(ctxPat), Streams: list(streamPat), Queues: list(queuePat)}}}}, nil)
		if err != nil {
			return // patterns that do not validate
		}
		p, _ := a.Authenticate("k")
		if !validName(n1) || !validName(n2) {
			return
		}
		events := []string{"contexts/" + n1, "streams/" + n1 + "/" + n2, "queues/" + n1, "locks", "cron/" + n1}
		if p.AllowTopic(sub) {
			for _, ev := range events {
				if router.Matches(sub, ev) && !p.AllowTopic(ev) {
					t.Fatalf("subscription %q allowed but its event topic %q is not (prefixes %q %q %q, scopes %v)",
						sub, ev, ctxPat, streamPat, queuePat, names)
				}
			}
		}
		read := p.Can(ScopeRead)
		if p.AllowTopic(events[0]) != (read && p.AllowContext(n1)) ||
			p.AllowTopic(events[1]) != (read && p.AllowStream(n1, n2)) ||
			p.AllowTopic(events[2]) != (read && p.AllowQueue(n1)) ||
			p.AllowTopic(events[3]) != (read && (p.Can(ScopeAdmin) || p.Unrestricted())) ||
			p.AllowTopic(events[4]) != (read && (p.Can(ScopeAdmin) || p.Unrestricted())) {
			t.Fatalf("exact topics disagree with Allow* for %q/%q", n1, n2)
		}
	})
}
