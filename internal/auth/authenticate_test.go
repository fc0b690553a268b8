package auth

import (
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAuthenticateKeys(t *testing.T) {
	good, goodHash, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, otherHash, _ := GenerateKey(nil)
	a, err := New(Config{Keys: []Key{
		{Name: "ingest", SHA256: goodHash, Scopes: []string{"read", "write"}},
		{Name: "ops", SHA256: strings.ToUpper(otherHash), Scopes: []string{"admin"}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lastByte := good[:len(good)-1] + string(good[len(good)-1]^1)
	for _, tc := range []struct {
		name, token, want string // want: the principal's name
		err               error
	}{
		{"right key", good, "ingest", nil},
		{"second key, uppercase hash in config", other, "ops", nil},
		{"wrong key", "egk_nope", "", ErrUnknownKey},
		{"last byte differs", lastByte, "", ErrUnknownKey},
		{"prefix of the key", good[:len(good)-1], "", ErrUnknownKey},
		{"key with a trailing space", good + " ", "", ErrUnknownKey},
		{"empty", "", "", ErrMissingCredentials},
		{"the hash instead of the key", goodHash, "", ErrUnknownKey},
		{"jwt-shaped without jwt configured", "a.b.c", "", ErrUnknownKey},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.token)
			if tc.err != nil {
				if p != nil || !errors.Is(err, tc.err) || !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrPermissionDenied) {
					t.Fatalf("Authenticate = %v, %v; want %v (401)", p, err, tc.err)
				}
				checkNoEcho(t, err, tc.token)
				return
			}
			if err != nil || p.Name() != tc.want || p.Kind() != "key" {
				t.Fatalf("Authenticate = %v, %v; want key %s", p, err, tc.want)
			}
		})
	}
	p, _ := a.Authenticate(good)
	if !p.Can(ScopeRead) || !p.Can(ScopeWrite) || p.Can(ScopeAdmin) || !p.Unrestricted() {
		t.Fatal("ingest: want read and write, not admin, unrestricted")
	}
	p, _ = a.Authenticate(other)
	if !p.Can(ScopeRead) || !p.Can(ScopeWrite) || !p.Can(ScopeAdmin) {
		t.Fatal("ops: admin must imply read and write")
	}
}

// checkNoEcho fails when err's message holds token (or a long piece of it).
func checkNoEcho(t *testing.T, err error, token string) {
	t.Helper()
	if len(token) >= 8 && strings.Contains(err.Error(), token[:8]) {
		t.Fatalf("error %q echoes the token", err)
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		err          error
	}{
		{"Bearer abc", "abc", nil},
		{"bearer abc", "abc", nil},
		{"BEARER  abc ", "abc", nil},
		{"", "", ErrMissingCredentials},
		{"Basic dXNlcjpwYXNz", "", ErrMalformed},
		{"Bearer", "", ErrMalformed},
		{"Bearer ", "", ErrMalformed},
		{"abc", "", ErrMalformed},
	} {
		got, err := BearerToken(tc.header)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, got, err, tc.want, tc.err)
		}
	}
}

const testSecret = "0123456789abcdef0123456789abcdef-test"

var testNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// jwtClaims is a claims map with exp an hour after testNow.
func jwtClaims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "agent-7", "exp": testNow.Add(time.Hour).Unix(), "scope": "read write"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func signHS(t testing.TB, secret string, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signRS(t testing.TB, priv *rsa.PrivateKey, m jwt.SigningMethod, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned is an alg "none" token.
func unsigned(t testing.TB, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newAt(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return testNow }
	return a
}

func TestAuthenticateJWTHS256(t *testing.T) {
	a := newAt(t, Config{JWT: &JWTConfig{HS256Secret: testSecret}})
	priv, _ := writeRSAPublicKey(t, 2048)
	valid := signHS(t, testSecret, jwtClaims(nil))
	parts := strings.Split(valid, ".")
	for _, tc := range []struct {
		name  string
		token string
		err   error // nil: valid
	}{
		{"valid", valid, nil},
		{"expired an hour ago", signHS(t, testSecret, jwtClaims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), ErrExpired},
		{"expired within the leeway", signHS(t, testSecret, jwtClaims(map[string]any{"exp": testNow.Add(-Leeway + time.Second).Unix()})), nil},
		{"expired just past the leeway", signHS(t, testSecret, jwtClaims(map[string]any{"exp": testNow.Add(-Leeway - time.Second).Unix()})), ErrExpired},
		{"nbf in the future", signHS(t, testSecret, jwtClaims(map[string]any{"nbf": testNow.Add(time.Hour).Unix()})), ErrNotYetValid},
		{"nbf within the leeway", signHS(t, testSecret, jwtClaims(map[string]any{"nbf": testNow.Add(Leeway - time.Second).Unix()})), nil},
		{"nbf past", signHS(t, testSecret, jwtClaims(map[string]any{"nbf": testNow.Add(-time.Hour).Unix()})), nil},
		{"no exp", signHS(t, testSecret, jwtClaims(map[string]any{"exp": nil})), ErrMalformed},
		{"wrong secret", signHS(t, testSecret+"x", jwtClaims(nil)), ErrBadSignature},
		{"alg none", unsigned(t, jwtClaims(nil)), ErrBadSignature},
		{"alg none with the valid signature", strings.Join([]string{b64(`{"alg":"none","typ":"JWT"}`), parts[1], parts[2]}, "."), ErrBadSignature},
		{"HS512 with the secret", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwtClaims(nil)).SignedString([]byte(testSecret))
			return s
		}(), ErrBadSignature},
		{"RS256 while HS256 is configured", signRS(t, priv, jwt.SigningMethodRS256, jwtClaims(nil)), ErrBadSignature},
		{"claims swapped under the signature", strings.Join([]string{parts[0], b64(`{"sub":"root","scope":"admin","exp":9999999999}`), parts[2]}, "."), ErrBadSignature},
		{"signature cut", valid[:len(valid)-4], ErrBadSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrBadSignature},
		{"two parts (not JWT-shaped: an unknown key)", parts[0] + "." + parts[1], ErrUnknownKey},
		{"four parts", valid + ".x", ErrUnknownKey},
		{"three empty parts", "..", ErrMalformed},
		{"garbage header", "!!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"header not JSON", b64("nope") + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"unknown alg", b64(`{"alg":"XX999"}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"scope not a string", signHS(t, testSecret, jwtClaims(map[string]any{"scope": []string{"read"}})), ErrMalformed},
		{"exp not a number", signHS(t, testSecret, jwtClaims(map[string]any{"exp": "tomorrow"})), ErrMalformed},
		{"unknown prefix kind", signHS(t, testSecret, jwtClaims(map[string]any{"engram_prefixes": map[string]any{"context": []string{"a"}}})), ErrMalformed},
		{"null prefix list", signHS(t, testSecret, jwtClaims(map[string]any{"engram_prefixes": map[string]any{"queues": nil}})), ErrMalformed},
		{"bad prefix pattern", signHS(t, testSecret, jwtClaims(map[string]any{"engram_prefixes": map[string]any{"queues": []string{"a*b"}}})), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.token)
			if tc.err == nil {
				if err != nil || p == nil || p.Kind() != "jwt" {
					t.Fatalf("Authenticate = %v, %v; want a JWT principal", p, err)
				}
				return
			}
			if p != nil || !errors.Is(err, tc.err) || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Authenticate = %v, %v; want %v", p, err, tc.err)
			}
			for _, part := range strings.Split(tc.token, ".") {
				if len(part) >= 8 && strings.Contains(err.Error(), part) {
					t.Fatalf("error %q echoes the token", err)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error %q holds the secret", err)
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestAuthenticateJWTRS256(t *testing.T) {
	priv, pubFile := writeRSAPublicKey(t, 2048)
	otherPriv, _ := writeRSAPublicKey(t, 2048)
	a := newAt(t, Config{JWT: &JWTConfig{RS256PublicKeyFile: pubFile}})
	pubPEM, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		err   error
	}{
		{"valid", signRS(t, priv, jwt.SigningMethodRS256, jwtClaims(nil)), nil},
		{"expired", signRS(t, priv, jwt.SigningMethodRS256, jwtClaims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), ErrExpired},
		{"nbf in the future", signRS(t, priv, jwt.SigningMethodRS256, jwtClaims(map[string]any{"nbf": testNow.Add(time.Hour).Unix()})), ErrNotYetValid},
		{"another RSA key", signRS(t, otherPriv, jwt.SigningMethodRS256, jwtClaims(nil)), ErrBadSignature},
		{"RS512 with the right key", signRS(t, priv, jwt.SigningMethodRS512, jwtClaims(nil)), ErrBadSignature},
		{"PS256 with the right key", signRS(t, priv, jwt.SigningMethodPS256, jwtClaims(nil)), ErrBadSignature},
		// Algorithm confusion: HS256 keyed with the public key's PEM bytes
		// (or its DER) as the HMAC secret, which a verifier that takes the
		// alg from the token would accept.
		{"HS256 signed with the public key PEM", signHS(t, string(pubPEM), jwtClaims(nil)), ErrBadSignature},
		{"alg none", unsigned(t, jwtClaims(nil)), ErrBadSignature},
		{"malformed", "not.a.jwt", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.token)
			if tc.err == nil {
				if err != nil || p == nil || p.Name() != "agent-7" {
					t.Fatalf("Authenticate = %v, %v; want agent-7", p, err)
				}
				return
			}
			if p != nil || !errors.Is(err, tc.err) {
				t.Fatalf("Authenticate = %v, %v; want %v", p, err, tc.err)
			}
		})
	}
}

func TestJWTClaimsMapping(t *testing.T) {
	a := newAt(t, Config{JWT: &JWTConfig{HS256Secret: testSecret}})
	auth := func(extra map[string]any) *Principal {
		t.Helper()
		p, err := a.Authenticate(signHS(t, testSecret, jwtClaims(extra)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := auth(nil)
	if p.Name() != "agent-7" || !p.Can(ScopeRead) || !p.Can(ScopeWrite) || p.Can(ScopeAdmin) || !p.Unrestricted() {
		t.Fatalf("default claims: %+v", p)
	}
	p = auth(map[string]any{"scope": "openid admin profile"})
	if !p.Can(ScopeRead) || !p.Can(ScopeAdmin) {
		t.Fatal("admin among unknown scopes: want admin (and read)")
	}
	p = auth(map[string]any{"scope": nil})
	if p.Can(ScopeRead) || p.Can(ScopeWrite) || p.Can(ScopeAdmin) {
		t.Fatal("no scope claim: want no scope")
	}
	if err := p.Require(ScopeRead); !errors.Is(err, ErrPermissionDenied) || !errors.Is(err, ErrScope) {
		t.Fatalf("Require without scope: %v; want 403 scope", err)
	}
	p = auth(map[string]any{"sub": nil})
	if p.Name() != "jwt" {
		t.Fatalf("no sub: name %q, want jwt", p.Name())
	}
	p = auth(map[string]any{"sub": "has space\n"})
	if p.Name() != "jwt" {
		t.Fatalf("sub that is not a name: name %q, want jwt", p.Name())
	}
	p = auth(map[string]any{"engram_prefixes": map[string]any{
		"contexts": []string{"team-a-*"}, "streams": []string{"presence/*"}, "queues": []string{}}})
	if p.Unrestricted() || !p.AllowContext("team-a-1") || p.AllowContext("team-b-1") ||
		!p.AllowStream("presence", "room") || p.AllowStream("chat", "room") ||
		p.AllowQueue("jobs") || !p.AllowLock("anything") {
		t.Fatal("engram_prefixes not mapped")
	}
}
