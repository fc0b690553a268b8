package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew allowed on exp and nbf: a token is accepted up
// to 30 s after its exp and from 30 s before its nbf.
const Leeway = 30 * time.Second

// jwtVerifier checks JWTs with one configured key and its one algorithm.
type jwtVerifier struct {
	alg    string // "HS256" or "RS256"
	method jwt.SigningMethod
	key    any // []byte for HS256, *rsa.PublicKey for RS256
}

func newJWTVerifier(c JWTConfig) (*jwtVerifier, error) {
	switch {
	case c.HS256Secret != "" && c.RS256PublicKeyFile != "":
		return nil, fmt.Errorf("auth.jwt: both hs256_secret and rs256_public_key_file are set: pick one")
	case c.HS256Secret != "":
		if len(c.HS256Secret) < 32 {
			return nil, fmt.Errorf("auth.jwt.hs256_secret: %d bytes, want at least 32 (RFC 7518 section 3.2)", len(c.HS256Secret))
		}
		return &jwtVerifier{alg: "HS256", method: jwt.SigningMethodHS256, key: []byte(c.HS256Secret)}, nil
	case c.RS256PublicKeyFile != "":
		pemBytes, err := os.ReadFile(c.RS256PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.rs256_public_key_file: %w", err)
		}
		pub, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.rs256_public_key_file: %q: not a PEM RSA public key or certificate: %w", c.RS256PublicKeyFile, err)
		}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("auth.jwt.rs256_public_key_file: %q: a %d-bit RSA key, want 2048 bits or more", c.RS256PublicKeyFile, pub.N.BitLen())
		}
		return &jwtVerifier{alg: "RS256", method: jwt.SigningMethodRS256, key: pub}, nil
	}
	return nil, fmt.Errorf("auth.jwt: set hs256_secret or rs256_public_key_file")
}

// claims are the JWT claims Engram reads: the registered ones (exp, nbf,
// sub), "scope" ("read write") and "engram_prefixes" (the shape of a key's
// prefixes; absent: none).
type claims struct {
	jwt.RegisteredClaims
	Scope    string    `json:"scope"`
	Prefixes *Prefixes `json:"engram_prefixes"`
}

// verify checks token's signature with the configured key and algorithm
// only (alg "none", another HMAC or RSA variant, and HS256 signed with the
// RS256 public key as secret are all refused before any key is used), then
// exp (required) and nbf with Leeway, then maps the claims.
func (v *jwtVerifier) verify(token string, now func() time.Time) (*Principal, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(now),
	)
	var c claims
	_, err := p.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused other algorithms; this keeps
		// the key from ever meeting another method if that changes.
		if t.Method != v.method {
			return nil, fmt.Errorf("unexpected signing method")
		}
		return v.key, nil
	})
	if err != nil {
		return nil, jwtError(err)
	}
	return claimsPrincipal(&c)
}

// jwtError maps the library's error to a refusal whose message holds
// nothing of the token.
func jwtError(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthenticated("malformed", "malformed token: not a JWT, or its header or claims do not decode (scope must be a string, engram_prefixes an object of lists)")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthenticated("malformed", "malformed token: its alg is missing or unknown")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthenticated("bad_signature", "token signature is invalid, or its alg is not the configured one")
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthenticated("malformed", "malformed token: exp is required")
	}
	return unauthenticated("malformed", "malformed token: invalid claims")
}

// claimsPrincipal maps verified claims to a Principal. Unknown scopes are
// ignored (an identity provider may add its own, like "openid"); a token
// without a known scope authenticates but may do nothing (403).
func claimsPrincipal(c *claims) (*Principal, error) {
	pr := &Principal{name: "jwt", kind: "jwt"}
	if validName(c.Subject) {
		pr.name = c.Subject
	}
	for _, s := range strings.Fields(c.Scope) {
		if b, ok := scopeBit(s); ok {
			pr.scopes |= b
		}
	}
	var ps Prefixes
	if c.Prefixes != nil {
		ps = *c.Prefixes
	}
	compiled, err := compilePrefixes(ps, "engram_prefixes")
	if err != nil {
		return nil, unauthenticated("malformed", "malformed token: "+err.Error())
	}
	pr.prefixes = compiled
	return pr, nil
}
