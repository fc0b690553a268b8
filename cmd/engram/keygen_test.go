package main

import (
	"bytes"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"engram/internal/auth"
)

func TestKeygen(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch([]string{"keygen", "--name", "ingest", "--scopes", "read,admin"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	lines := strings.Split(out.String(), "\n")
	key, ok := strings.CutPrefix(lines[0], "key:    ")
	if !ok || !strings.HasPrefix(key, auth.KeyPrefix) || len(key) != len(auth.KeyPrefix)+43 {
		t.Fatalf("first line %q: want key: egk_ and 43 base64url characters", lines[0])
	}
	sum, ok := strings.CutPrefix(lines[1], "sha256: ")
	if !ok || sum != auth.HashKey(key) {
		t.Fatalf("second line %q: want the key's sha256 %s", lines[1], auth.HashKey(key))
	}
	// The snippet loads, and the key authenticates as the named key.
	_, snippet, _ := strings.Cut(out.String(), "auth:\n")
	var file struct {
		Auth auth.Config `yaml:"auth"`
	}
	if err := yaml.Unmarshal([]byte("auth:\n"+snippet), &file); err != nil {
		t.Fatalf("snippet does not parse: %v\n%s", err, out.String())
	}
	a, err := auth.New(file.Auth, nil)
	if err != nil {
		t.Fatalf("snippet does not load: %v", err)
	}
	p, err := a.Authenticate(key)
	if err != nil || p.Name() != "ingest" || !p.Can(auth.ScopeAdmin) {
		t.Fatalf("Authenticate(key) = %v, %v; want ingest with admin", p, err)
	}

	// Two runs give two keys.
	var out2 bytes.Buffer
	dispatch([]string{"keygen"}, &out2, &errb)
	if strings.Split(out2.String(), "\n")[0] == lines[0] {
		t.Fatal("two runs printed the same key")
	}
}

func TestKeygenBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad name", []string{"--name", "a b"}, "--name"},
		{"unknown scope", []string{"--scopes", "read,root"}, "--scopes: [1]: unknown scope"},
		{"no scopes", []string{"--scopes", ""}, "--scopes: empty"},
		{"extra argument", []string{"x"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(append([]string{"keygen"}, tc.args...), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, out.String(), errb.String(), tc.want)
			}
		})
	}
}
