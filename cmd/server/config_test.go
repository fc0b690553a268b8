package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "engram.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:7000\ndata: /from-file\nmax_body: 2MiB\nsync: none\nlog_format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	limits := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(limits, []byte("read_timeout: 7s\nwrite_timeout: 1s\nidle_timeout: 8s\npprof_addr: \"[::1]:6060\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rates := filepath.Join(dir, "rates.yaml")
	if err := os.WriteFile(rates, []byte("rate_limit: 2.5\nrate_burst: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want func(*config) bool
	}{
		{"defaults", nil, nil, func(c *config) bool {
			return c.Addr == "127.0.0.1:8080" && c.Data == "./data" && c.Sync == "always" && c.MaxBody == 1<<20 &&
				c.LogFormat == "text" && !c.Insecure && c.ShutdownTimeout == 30*time.Second
		}},
		{"file", []string{"--config", file}, nil, func(c *config) bool {
			return c.Addr == "127.0.0.1:7000" && c.Data == "/from-file" && c.MaxBody == 2<<20 && c.Sync == "none" && c.LogFormat == "json"
		}},
		{"file via env", nil, map[string]string{"ENGRAM_CONFIG": file}, func(c *config) bool { return c.Data == "/from-file" }},
		{"env over file", []string{"--config", file}, map[string]string{"ENGRAM_DATA": "/from-env", "ENGRAM_MAX_BODY": "4096"},
			func(c *config) bool { return c.Data == "/from-env" && c.MaxBody == 4096 && c.Addr == "127.0.0.1:7000" }},
		{"flag over env", []string{"--config", file, "--data", "/from-flag"}, map[string]string{"ENGRAM_DATA": "/from-env"},
			func(c *config) bool { return c.Data == "/from-flag" }},
		{"insecure allows any addr", []string{"--addr", "0.0.0.0:8080"}, map[string]string{"ENGRAM_INSECURE": "1"},
			func(c *config) bool { return c.Insecure && c.Addr == "0.0.0.0:8080" }},
		{"bare --insecure", []string{"--insecure", "--addr", "0.0.0.0:8080"}, nil,
			func(c *config) bool { return c.Insecure && c.Addr == "0.0.0.0:8080" }},
		{"--insecure=false", []string{"--insecure=false"}, nil, func(c *config) bool { return !c.Insecure }},
		{"localhost is loopback", []string{"--addr", "localhost:1"}, nil, func(c *config) bool { return c.Addr == "localhost:1" }},
		{"ipv6 loopback", []string{"--addr", "[::1]:1"}, nil, func(c *config) bool { return c.Addr == "[::1]:1" }},
		{"timeout defaults, pprof off", nil, nil, func(c *config) bool {
			return c.ReadTimeout == 30*time.Second && c.WriteTimeout == 30*time.Second && c.IdleTimeout == 120*time.Second && c.PprofAddr == ""
		}},
		{"timeouts and pprof from flags", []string{"--read-timeout", "2s", "--write-timeout", "3s", "--idle-timeout", "4s", "--pprof-addr", "127.0.0.1:6060"}, nil,
			func(c *config) bool {
				return c.ReadTimeout == 2*time.Second && c.WriteTimeout == 3*time.Second && c.IdleTimeout == 4*time.Second && c.PprofAddr == "127.0.0.1:6060"
			}},
		{"timeouts and pprof from env", nil, map[string]string{"ENGRAM_READ_TIMEOUT": "5s", "ENGRAM_WRITE_TIMEOUT": "6s", "ENGRAM_IDLE_TIMEOUT": "1m", "ENGRAM_PPROF_ADDR": "localhost:0"},
			func(c *config) bool {
				return c.ReadTimeout == 5*time.Second && c.WriteTimeout == 6*time.Second && c.IdleTimeout == time.Minute && c.PprofAddr == "localhost:0"
			}},
		{"timeouts and pprof from file", []string{"--config", limits}, map[string]string{"ENGRAM_WRITE_TIMEOUT": "9s"},
			func(c *config) bool {
				return c.ReadTimeout == 7*time.Second && c.WriteTimeout == 9*time.Second && c.IdleTimeout == 8*time.Second && c.PprofAddr == "[::1]:6060"
			}},
		{"rate limit off by default", nil, nil, func(c *config) bool { return c.RateLimit == 0 && c.RateBurst == 0 }},
		{"rate limit from flags", []string{"--rate-limit", "20", "--rate-burst", "5"}, map[string]string{"ENGRAM_RATE_LIMIT": "7"},
			func(c *config) bool { return c.RateLimit == 20 && c.RateBurst == 5 }},
		{"rate limit from env", []string{"--config", rates}, map[string]string{"ENGRAM_RATE_LIMIT": "0.5", "ENGRAM_RATE_BURST": "3"},
			func(c *config) bool { return c.RateLimit == 0.5 && c.RateBurst == 3 }},
		{"rate limit from file", []string{"--config", rates}, nil, func(c *config) bool { return c.RateLimit == 2.5 && c.RateBurst == 10 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestConfigErrorsNameTheSource(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("adr: 1\n"), 0o600)
	nested := filepath.Join(dir, "nested.yaml")
	os.WriteFile(nested, []byte("data:\n  a: b\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad sync flag", []string{"--sync", "sometimes"}, nil, "--sync"},
		{"bad sync env", nil, map[string]string{"ENGRAM_SYNC": "x"}, "ENGRAM_SYNC"},
		{"bad size", []string{"--max-body", "lots"}, nil, "--max-body"},
		{"zero size", []string{"--max-body", "0"}, nil, "--max-body"},
		{"huge size", []string{"--max-body", "2GiB"}, nil, "--max-body"},
		{"bad level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"bad addr", []string{"--addr", "nope"}, nil, "--addr"},
		{"non-loopback without insecure", []string{"--addr", "0.0.0.0:8080"}, nil, "--insecure"},
		{"hostname without insecure", []string{"--addr", "example.com:80"}, nil, "loopback"},
		{"unknown file key", []string{"--config", bad}, nil, `unknown key "adr"`},
		{"nested file value", []string{"--config", nested}, nil, "single value"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "config file"},
		{"bad timeout", []string{"--shutdown-timeout", "-1s"}, nil, "--shutdown-timeout"},
		{"bad read timeout", []string{"--read-timeout", "soon"}, nil, "--read-timeout"},
		{"zero write timeout", []string{"--write-timeout", "0"}, nil, "--write-timeout"},
		{"negative idle timeout env", nil, map[string]string{"ENGRAM_IDLE_TIMEOUT": "-1s"}, "ENGRAM_IDLE_TIMEOUT"},
		{"pprof not loopback", []string{"--pprof-addr", "0.0.0.0:6060"}, nil, "loopback"},
		{"pprof not loopback, named", []string{"--pprof-addr", "0.0.0.0:6060", "--insecure"}, nil, "--pprof-addr"},
		{"pprof hostname env", nil, map[string]string{"ENGRAM_PPROF_ADDR": "example.com:6060"}, "ENGRAM_PPROF_ADDR"},
		{"pprof not host:port", []string{"--pprof-addr", "6060"}, nil, "host:port"},
		{"bad rate limit", []string{"--rate-limit", "fast"}, nil, "--rate-limit"},
		{"negative rate limit env", nil, map[string]string{"ENGRAM_RATE_LIMIT": "-1"}, "ENGRAM_RATE_LIMIT"},
		{"NaN rate limit", []string{"--rate-limit", "NaN"}, nil, "--rate-limit"},
		{"bad rate burst", []string{"--rate-burst", "1.5"}, nil, "--rate-burst"},
		{"negative rate burst env", nil, map[string]string{"ENGRAM_RATE_BURST": "-2"}, "ENGRAM_RATE_BURST"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.args, env(tc.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
