package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// testHash is the hash of the key "k" (a valid 64-digit hex).
var testHash = HashKey("k")

func key(name string, scopes ...string) Key {
	return Key{Name: name, SHA256: HashKey("key-of-" + name), Scopes: scopes}
}

// writeRSAPublicKey writes the PEM (PKIX) public key of a new RSA key of
// bits to a temp file.
func writeRSAPublicKey(t testing.TB, bits int) (*rsa.PrivateKey, string) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, path
}

func TestNewValidation(t *testing.T) {
	_, pubFile := writeRSAPublicKey(t, 2048)
	_, smallFile := writeRSAPublicKey(t, 1024)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"), 0o600)
	secret := strings.Repeat("s", 32)
	withPrefixes := func(p Prefixes) Config {
		k := key("a", "read")
		k.Prefixes = p
		return Config{Keys: []Key{k}}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid; else a substring of the error
	}{
		{"one key", Config{Keys: []Key{key("a", "read")}}, ""},
		{"keys and hs256", Config{Keys: []Key{key("a", "read", "write", "admin")}, JWT: &JWTConfig{HS256Secret: secret}}, ""},
		{"rs256 only", Config{JWT: &JWTConfig{RS256PublicKeyFile: pubFile}}, ""},
		{"uppercase hex", Config{Keys: []Key{{Name: "a", SHA256: strings.ToUpper(testHash), Scopes: []string{"read"}}}}, ""},
		{"nothing configured", Config{}, "neither auth.keys nor auth.jwt"},
		{"empty name", Config{Keys: []Key{key("", "read")}}, "auth.keys[0].name"},
		{"name with space", Config{Keys: []Key{key("a b", "read")}}, "auth.keys[0].name"},
		{"duplicate name", Config{Keys: []Key{key("a", "read"), {Name: "a", SHA256: testHash, Scopes: []string{"read"}}}}, "auth.keys[1].name: \"a\" is also the name of auth.keys[0]"},
		{"duplicate hash", Config{Keys: []Key{{Name: "a", SHA256: testHash, Scopes: []string{"read"}}, {Name: "b", SHA256: testHash, Scopes: []string{"read"}}}}, "auth.keys[1] (b).sha256: the same hash as auth.keys[0]"},
		{"short hash", Config{Keys: []Key{{Name: "a", SHA256: testHash[:63], Scopes: []string{"read"}}}}, "auth.keys[0] (a).sha256: 63 characters"},
		{"long hash", Config{Keys: []Key{{Name: "a", SHA256: testHash + "0", Scopes: []string{"read"}}}}, "auth.keys[0] (a).sha256: 65 characters"},
		{"non-hex hash", Config{Keys: []Key{{Name: "a", SHA256: "zz" + testHash[2:], Scopes: []string{"read"}}}}, "auth.keys[0] (a).sha256: not hex"},
		{"no scopes", Config{Keys: []Key{key("a")}}, "auth.keys[0] (a).scopes: empty"},
		{"unknown scope", Config{Keys: []Key{key("a", "read", "root")}}, "auth.keys[0] (a).scopes: [1]: unknown scope \"root\""},
		{"empty prefix", withPrefixes(Prefixes{Contexts: []string{"x", ""}}), "auth.keys[0] (a).prefixes.contexts[1]: empty pattern"},
		{"star in the middle", withPrefixes(Prefixes{Queues: []string{"jobs-*-x"}}), "auth.keys[0] (a).prefixes.queues[0]: \"jobs-*-x\": \"*\" is allowed only at the end"},
		{"two stars", withPrefixes(Prefixes{Locks: []string{"a/**"}}), "prefixes.locks[0]: \"a/**\""},
		{"lone star is fine", withPrefixes(Prefixes{Contexts: []string{"*"}, Streams: []string{"*"}, Queues: []string{"*"}, Locks: []string{"*"}}), ""},
		{"empty lists are fine", withPrefixes(Prefixes{Contexts: []string{}, Streams: []string{}}), ""},
		{"slash in a context", withPrefixes(Prefixes{Contexts: []string{"a/b"}}), "prefixes.contexts[0]: \"a/b\": only name characters"},
		{"stream without group", withPrefixes(Prefixes{Streams: []string{"presence"}}), "prefixes.streams[0]: \"presence\" matches no \"{stream}/{group}\" (for every group of a stream write \"presence/*\")"},
		{"stream with two slashes", withPrefixes(Prefixes{Streams: []string{"a/b/c"}}), "prefixes.streams[0]"},
		{"stream prefix with two slashes", withPrefixes(Prefixes{Streams: []string{"a/b/*"}}), "prefixes.streams[0]"},
		{"stream prefix and group", withPrefixes(Prefixes{Streams: []string{"presence/room-*", "chat/general", "pres*"}}), ""},
		{"lock with control char", withPrefixes(Prefixes{Locks: []string{"a\x01"}}), "prefixes.locks[0]"},
		{"lock with slashes", withPrefixes(Prefixes{Locks: []string{"team-a/x/*", "b/c"}}), ""},
		{"jwt neither", Config{JWT: &JWTConfig{}}, "auth.jwt: set hs256_secret or rs256_public_key_file"},
		{"jwt both", Config{JWT: &JWTConfig{HS256Secret: secret, RS256PublicKeyFile: pubFile}}, "auth.jwt: both"},
		{"jwt short secret", Config{JWT: &JWTConfig{HS256Secret: "short"}}, "auth.jwt.hs256_secret: 5 bytes, want at least 32"},
		{"rs256 missing file", Config{JWT: &JWTConfig{RS256PublicKeyFile: filepath.Join(t.TempDir(), "none.pem")}}, "auth.jwt.rs256_public_key_file: open"},
		{"rs256 garbage", Config{JWT: &JWTConfig{RS256PublicKeyFile: garbage}}, "auth.jwt.rs256_public_key_file: \"" + garbage + "\": not a PEM RSA public key"},
		{"rs256 small key", Config{JWT: &JWTConfig{RS256PublicKeyFile: smallFile}}, "a 1024-bit RSA key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg, nil)
			if tc.want == "" {
				if err != nil || a == nil {
					t.Fatalf("New: %v; want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || (len(tc.cfg.Keys) > 0 && tc.cfg.Keys[0].SHA256 != "" && strings.Contains(err.Error(), tc.cfg.Keys[0].SHA256)) {
				t.Fatalf("error %q holds a secret or a hash", err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	type file struct {
		Auth *Config `yaml:"auth"`
	}
	good := `
auth:
  keys:
    - name: ingest
      sha256: "` + testHash + `"
      scopes: [read, write]
      prefixes:
        contexts: ["team-a-*"]
        streams: ["presence/*"]
        queues: []
  jwt:
    hs256_secret: "` + strings.Repeat("x", 40) + `"
  metrics_auth: true
`
	var f file
	if err := yaml.Unmarshal([]byte(good), &f); err != nil {
		t.Fatal(err)
	}
	k := f.Auth.Keys[0]
	if k.Name != "ingest" || k.SHA256 != testHash || strings.Join(k.Scopes, ",") != "read,write" ||
		strings.Join(k.Prefixes.Contexts, ",") != "team-a-*" || strings.Join(k.Prefixes.Streams, ",") != "presence/*" ||
		k.Prefixes.Queues == nil || len(k.Prefixes.Queues) != 0 || k.Prefixes.Locks != nil ||
		f.Auth.JWT == nil || len(f.Auth.JWT.HS256Secret) != 40 || !f.Auth.MetricsAuth {
		t.Fatalf("decoded %+v", f.Auth)
	}
	a, err := New(*f.Auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate("k")
	if err != nil {
		t.Fatal(err)
	}
	if p.AllowQueue("anything") || !p.AllowLock("anything") || !p.AllowContext("team-a-1") || p.AllowContext("team-b") {
		t.Fatal("queues: [] must allow no queue, absent locks every lock")
	}
	if !a.MetricsAuth() {
		t.Fatal("metrics_auth lost")
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"typo in prefixes", "auth:\n  keys:\n    - name: a\n      prefixes: {context: [x]}\n", "prefixes.context: unknown field"},
		{"null list", "auth:\n  keys:\n    - name: a\n      prefixes:\n        queues:\n", "prefixes.queues: null"},
		{"typo in key", "auth:\n  keys:\n    - name: a\n      scope: [read]\n", "auth.keys[].scope: unknown field"},
		{"typo in auth", "auth:\n  key: []\n", "auth.key: unknown field"},
		{"typo in jwt", "auth:\n  jwt: {hs256: x}\n", "auth.jwt.hs256: unknown field"},
		{"prefixes not a mapping", "auth:\n  keys:\n    - name: a\n      prefixes: [x]\n", "prefixes: want a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f file
			err := yaml.Unmarshal([]byte(tc.yaml), &f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want %q", err, tc.want)
			}
		})
	}
}
