package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// MaxTokenLen bounds a presented credential; a longer one is refused as
// malformed before it is hashed or parsed.
const MaxTokenLen = 8 << 10

// Authenticator turns bearer tokens into Principals. It is immutable after
// New and safe for concurrent use.
type Authenticator struct {
	keys        []apiKey
	jwt         *jwtVerifier // nil: API keys only
	metricsAuth bool
	log         *slog.Logger
	now         func() time.Time // the JWT clock; tests set it
}

// apiKey is one configured key: its hash and the Principal it yields.
type apiKey struct {
	hash      [sha256.Size]byte
	principal *Principal
}

// New validates cfg and builds the Authenticator. Every error names the
// field ("auth.keys[1].sha256: ..."). log (nil: discarded) gets one line
// saying what is configured: key names and the JWT algorithm, never a
// secret or a hash.
func New(cfg Config, log *slog.Logger) (*Authenticator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{metricsAuth: cfg.MetricsAuth, log: log, now: time.Now}
	if len(cfg.Keys) == 0 && cfg.JWT == nil {
		return nil, fmt.Errorf("auth: neither auth.keys nor auth.jwt is configured (leave the auth section out to run without auth)")
	}
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for i, k := range cfg.Keys {
		where := fmt.Sprintf("auth.keys[%d]", i)
		if !validName(k.Name) {
			return nil, fmt.Errorf("auth: %s.name: %q: want 1 to 128 of [A-Za-z0-9._~:@-]", where, k.Name)
		}
		if j, dup := names[k.Name]; dup {
			return nil, fmt.Errorf("auth: %s.name: %q is also the name of auth.keys[%d]", where, k.Name, j)
		}
		names[k.Name] = i
		where = fmt.Sprintf("auth.keys[%d] (%s)", i, k.Name)
		// The hash is not a secret in the way the key is, but it is not
		// echoed either: an error says what is wrong with it, not what it is.
		var h [sha256.Size]byte
		if len(k.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("auth: %s.sha256: %d characters, want 64 hex digits (the SHA-256 of the key; engram keygen prints it)", where, len(k.SHA256))
		}
		if _, err := hex.Decode(h[:], []byte(k.SHA256)); err != nil {
			return nil, fmt.Errorf("auth: %s.sha256: not hex: want 64 hex digits", where)
		}
		if j, dup := hashes[h]; dup {
			return nil, fmt.Errorf("auth: %s.sha256: the same hash as auth.keys[%d]: one key, two names", where, j)
		}
		hashes[h] = i
		scopes, err := parseScopes(k.Scopes)
		if err != nil {
			return nil, fmt.Errorf("auth: %s.scopes: %w", where, err)
		}
		prefixes, err := compilePrefixes(k.Prefixes, where+".prefixes")
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.keys = append(a.keys, apiKey{hash: h, principal: &Principal{name: k.Name, kind: "key", scopes: scopes, prefixes: prefixes}})
	}
	if cfg.JWT != nil {
		v, err := newJWTVerifier(*cfg.JWT)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.jwt = v
	}
	keyNames := make([]string, len(cfg.Keys))
	for i, k := range cfg.Keys {
		keyNames[i] = k.Name
	}
	attrs := []any{"keys", keyNames, "metrics_auth", cfg.MetricsAuth}
	if a.jwt != nil {
		attrs = append(attrs, "jwt", a.jwt.alg)
	}
	log.Info("auth configured", attrs...)
	return a, nil
}

// parseScopes parses a config key's scopes: at least one, each known.
func parseScopes(list []string) (scopeSet, error) {
	if len(list) == 0 {
		return 0, fmt.Errorf("empty: want one or more of read, write, admin")
	}
	var s scopeSet
	for i, name := range list {
		b, ok := scopeBit(name)
		if !ok {
			return 0, fmt.Errorf("[%d]: unknown scope %q (want read, write or admin)", i, name)
		}
		s |= b
	}
	return s, nil
}

// MetricsAuth reports whether GET /metrics needs a credential.
func (a *Authenticator) MetricsAuth() bool { return a.metricsAuth }

// Authenticate turns a bearer token into its Principal, or a 401 *Error.
//
// An API key is recognised by the SHA-256 of the presented token, compared
// with crypto/subtle against every configured hash, without stopping at a
// match, so the time taken depends on the number of keys and not on which
// key (or how much of a hash) matched. A map lookup by hash would be safe
// too (a timing leak about a hash tells nothing usable about a 256-bit
// key), but the scan is as cheap for a config-sized list and needs no
// argument. A token that matches no key and looks like a JWT (three
// dot-separated parts) is verified as a JWT when auth.jwt is configured.
func (a *Authenticator) Authenticate(token string) (*Principal, error) {
	if token == "" {
		return nil, ErrMissingCredentials
	}
	if len(token) > MaxTokenLen {
		return nil, unauthenticated("malformed", fmt.Sprintf("malformed credentials: longer than %d bytes", MaxTokenLen))
	}
	sum := sha256.Sum256([]byte(token))
	var found *Principal
	for i := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], a.keys[i].hash[:]) == 1 {
			found = a.keys[i].principal
		}
	}
	if found != nil {
		return found, nil
	}
	if a.jwt != nil && strings.Count(token, ".") == 2 {
		return a.jwt.verify(token, a.now)
	}
	return nil, ErrUnknownKey
}

// BearerToken extracts the token of an Authorization header value
// ("Bearer <token>", the scheme case-insensitive). An empty header is
// ErrMissingCredentials; another scheme or an empty token is malformed.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrMissingCredentials
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", unauthenticated("malformed", "malformed Authorization header: want \"Bearer <API key or JWT>\"")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", unauthenticated("malformed", "malformed Authorization header: empty token")
	}
	return token, nil
}
