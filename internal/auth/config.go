package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// Config is the auth section of the config file (API.md, Auth):
//
//	auth:
//	  keys: [{name, sha256, scopes, prefixes: {contexts, streams, queues, locks}}]
//	  jwt: {hs256_secret | rs256_public_key_file}
//	  metrics_auth: false
//
// Decoding it from YAML is strict: an unknown field (a typo such as
// "prefix:" or "context:") and a null prefix list ("queues:" with nothing
// after it) are errors, because either would silently widen a key. The
// caller decides whether auth is on: it calls New only when the file has an
// auth section; New refuses a section with neither keys nor jwt.
type Config struct {
	// Keys are the API keys. Empty: only JWTs are accepted (then JWT is
	// required).
	Keys []Key `yaml:"keys"`
	// JWT verifies bearer tokens that are JWTs. Nil: only API keys.
	JWT *JWTConfig `yaml:"jwt"`
	// MetricsAuth: GET /metrics needs a credential (any scope) when true;
	// false (the default) leaves it open like /healthz and /readyz.
	MetricsAuth bool `yaml:"metrics_auth"`
}

// Key is one API key. The key itself is never in the config, only its hash.
type Key struct {
	// Name names the key in logs, metrics and audit lines: required,
	// unique, [A-Za-z0-9._~:@-]{1,128}.
	Name string `yaml:"name"`
	// SHA256 is the lowercase or uppercase hex SHA-256 of the key as the
	// client sends it (`engram keygen` prints both): required, 64 digits.
	SHA256 string `yaml:"sha256"`
	// Scopes are read, write and admin (admin implies the others):
	// required, at least one.
	Scopes []string `yaml:"scopes"`
	// Prefixes limit the key to some names of each kind. Zero: everything.
	Prefixes Prefixes `yaml:"prefixes"`
}

// JWTConfig verifies JWT bearer tokens with exactly one key: an HS256
// secret or an RS256 public key. Only that algorithm is accepted.
type JWTConfig struct {
	// HS256Secret is the shared HMAC secret, at least 32 bytes (RFC 7518
	// section 3.2). Empty: not HS256.
	HS256Secret string `yaml:"hs256_secret"`
	// RS256PublicKeyFile is a PEM file holding an RSA public key (PKIX or
	// PKCS#1) or a certificate, 2048 bits or more. Empty: not RS256.
	RS256PublicKeyFile string `yaml:"rs256_public_key_file"`
}

// Prefixes limit a credential per kind of name. A nil list (the kind left
// out) allows every name of that kind; an empty list ([]) allows none; a
// list allows the names that match one of its patterns. A pattern ending in
// "*" matches the names that start with what comes before the "*" ("*"
// alone matches all); any other pattern matches one name exactly. "*" is
// allowed only at the end.
type Prefixes struct {
	// Contexts: context ids (work units by their context_id).
	Contexts []string `yaml:"contexts" json:"contexts"`
	// Streams: "{stream}/{group}", e.g. "presence/*" or "chat/room-1".
	Streams []string `yaml:"streams" json:"streams"`
	// Queues: queue topics.
	Queues []string `yaml:"queues" json:"queues"`
	// Locks: lock resources (which may hold "/": "team-a/*").
	Locks []string `yaml:"locks" json:"locks"`
}

var prefixKinds = []string{"contexts", "streams", "queues", "locks"}

// UnmarshalYAML decodes the config strictly (see Config).
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "auth", false, "keys", "jwt", "metrics_auth"); err != nil {
		return err
	}
	type plain Config
	return n.Decode((*plain)(c))
}

// UnmarshalYAML decodes a key strictly (see Config).
func (k *Key) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "auth.keys[]", false, "name", "sha256", "scopes", "prefixes"); err != nil {
		return err
	}
	type plain Key
	return n.Decode((*plain)(k))
}

// UnmarshalYAML decodes the jwt section strictly (see Config).
func (j *JWTConfig) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "auth.jwt", false, "hs256_secret", "rs256_public_key_file"); err != nil {
		return err
	}
	type plain JWTConfig
	return n.Decode((*plain)(j))
}

// UnmarshalYAML decodes prefixes strictly: unknown kinds and null lists are
// errors (see Config).
func (p *Prefixes) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "prefixes", true, prefixKinds...); err != nil {
		return err
	}
	type plain Prefixes
	return n.Decode((*plain)(p))
}

// checkFields fails on a mapping key not in allowed and, with noNulls, on a
// null value.
func checkFields(n *yaml.Node, where string, noNulls bool, allowed ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: want a mapping", n.Line, where)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			return fmt.Errorf("line %d: %s.%s: unknown field (want one of %v)", k.Line, where, k.Value, allowed)
		}
		if noNulls && v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
			return fmt.Errorf("line %d: %s.%s: null: leave it out to allow every name of this kind, or write [] to allow none", k.Line, where, k.Value)
		}
	}
	return nil
}

// UnmarshalJSON decodes the engram_prefixes claim strictly: unknown kinds
// and null lists are errors, as in the config file.
func (p *Prefixes) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		return fmt.Errorf("engram_prefixes: null")
	}
	for k, v := range raw {
		var dst *[]string
		switch k {
		case "contexts":
			dst = &p.Contexts
		case "streams":
			dst = &p.Streams
		case "queues":
			dst = &p.Queues
		case "locks":
			dst = &p.Locks
		default:
			return fmt.Errorf("engram_prefixes: unknown field %q", k)
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return fmt.Errorf("engram_prefixes.%s: null", k)
		}
		list := []string{}
		if err := json.Unmarshal(v, &list); err != nil {
			return fmt.Errorf("engram_prefixes.%s: %w", k, err)
		}
		*dst = list
	}
	return nil
}
