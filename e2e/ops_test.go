package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestOperations(t *testing.T) {
	p := startServer(t, t.TempDir())
	p.must(t, 201, "POST", "/v1/workunits", `{"context_id":"c","agent_id":"a","type":"MESSAGE"}`)

	t.Run("healthz", func(t *testing.T) {
		r := p.call(t, "GET", "/healthz", nil)
		var body map[string]string
		if r.Status != 200 || json.Unmarshal(r.Body, &body) != nil || body["status"] != "ok" {
			t.Errorf("/healthz: %s", r)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		r := p.call(t, "GET", "/readyz", nil)
		if r.Status != 200 || !json.Valid(r.Body) {
			t.Errorf("/readyz: %s", r)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		r := p.call(t, "GET", "/metrics", nil)
		if r.Status != 200 {
			t.Fatalf("/metrics: %s", r)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("/metrics Content-Type %q", ct)
		}
		body := string(r.Body)
		for _, want := range []string{
			"engram_wal_commit_seconds_bucket",
			"engram_wal_commit_seconds_count",
			"engram_http_request_duration_seconds_bucket",
			`route="/v1/workunits"`,
			"engram_wal_head_seq 2",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if strings.Contains(body, "engram_wal_commit_seconds_count 0\n") {
			t.Errorf("/metrics: no commit observed after a write")
		}
	})
	t.Run("openapi", func(t *testing.T) {
		r := p.call(t, "GET", "/v1/openapi.yaml", nil)
		if r.Status != 200 {
			t.Fatalf("/v1/openapi.yaml: %s", r)
		}
		if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "yaml") {
			t.Errorf("/v1/openapi.yaml Content-Type %q", ct)
		}
		var doc struct {
			OpenAPI string                    `yaml:"openapi"`
			Info    map[string]any            `yaml:"info"`
			Paths   map[string]map[string]any `yaml:"paths"`
		}
		if err := yaml.Unmarshal(r.Body, &doc); err != nil {
			t.Fatalf("openapi.yaml does not parse: %v", err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info["title"] == nil {
			t.Errorf("openapi %q info %v", doc.OpenAPI, doc.Info)
		}
		for path, methods := range map[string][]string{
			"/v1/contexts":                {"get", "post"},
			"/v1/contexts/{id}":           {"get", "patch"},
			"/v1/contexts/{id}/workunits": {"get"},
			"/v1/workunits":               {"post"},
			"/v1/workunits/batch":         {"post"},
			"/v1/workunits/{id}":          {"get"},
			"/v1/workunits/{id}/related":  {"get"},
			"/healthz":                    {"get"},
			"/readyz":                     {"get"},
			"/metrics":                    {"get"},
		} {
			for _, m := range methods {
				if doc.Paths[path][m] == nil {
					t.Errorf("openapi.yaml lacks %s %s", strings.ToUpper(m), path)
				}
			}
		}
	})
	t.Run("unknown routes are JSON 404s", func(t *testing.T) {
		for _, rt := range []struct{ method, path string }{
			{"GET", "/v1/nope"},
			{"POST", "/nope"},
			{"GET", "/"},
			{"GET", "/debug/pprof/"},
			{"GET", "/debug/pprof/heap"},
			{"DELETE", "/v1/contexts"},
			{"PUT", "/v1/workunits"},
			{"DELETE", "/v1/workunits/" + newID()},
			{"POST", "/healthz"},
		} {
			checkError(t, p.call(t, rt.method, rt.path, nil), 404, "not_found", "")
		}
		// Unmatched paths share one label value: clients cannot grow the
		// metrics.
		body := string(p.must(t, 200, "GET", "/metrics", nil))
		if strings.Contains(body, "/v1/nope") || strings.Contains(body, "pprof") {
			t.Errorf("/metrics has a label value per unknown path")
		}
		if !strings.Contains(body, `route="unmatched"`) {
			t.Errorf(`/metrics has no route="unmatched" series`)
		}
	})
}
