package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// config is the server's configuration after flags, environment and file
// have been merged (in that order of precedence, over the defaults).
type config struct {
	Addr            string
	Data            string
	Sync            string
	MaxBody         int64
	LogLevel        slog.Level
	LogFormat       string
	Insecure        bool
	ShutdownTimeout time.Duration
	RetentionAge    time.Duration
	RetentionEvents uint64
	MaxConnections  int
	MaxSubs         int
	StreamMaxItems  int
	StreamSyncMax   int
	QueueTopics     int
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	RateLimit       float64
	RateBurst       int
	PprofAddr       string
	TLSCert         string
	TLSKey          string
	ConfigFile      string
}

// option is one setting, reachable as a flag, an ENGRAM_* variable and a key
// of the YAML file.
type option struct {
	flag, env, key, def, usage string
}

var options = []option{
	{"addr", "ENGRAM_ADDR", "addr", "127.0.0.1:8080", "listen address (host:port); a non-loopback address needs --insecure until auth exists"},
	{"data", "ENGRAM_DATA", "data", "./data", "data directory"},
	{"sync", "ENGRAM_SYNC", "sync", "always", "always: fsync before every acknowledgement; none: no fsync (a machine crash may lose acknowledged writes)"},
	{"max-body", "ENGRAM_MAX_BODY", "max_body", "1MiB", "largest request body (bytes, or with a unit: 512KiB, 4MiB)"},
	{"log-level", "ENGRAM_LOG_LEVEL", "log_level", "info", "debug, info, warn or error"},
	{"log-format", "ENGRAM_LOG_FORMAT", "log_format", "text", "text or json"},
	{"insecure", "ENGRAM_INSECURE", "insecure", "false", "allow listening on a non-loopback address without auth"},
	{"shutdown-timeout", "ENGRAM_SHUTDOWN_TIMEOUT", "shutdown_timeout", "30s", "how long in-flight requests may take to finish on SIGINT/SIGTERM"},
	{"retention-age", "ENGRAM_RETENTION_AGE", "retention_age", "0", "drop log events older than this (e.g. 168h); state is kept; 0 keeps all"},
	{"retention-events", "ENGRAM_RETENTION_EVENTS", "retention_events", "0", "keep at most this many of the newest log events; 0 keeps all"},
	{"max-connections", "ENGRAM_MAX_CONNECTIONS", "max_connections", "10000", "most WebSocket and SSE connections at once"},
	{"max-subscriptions", "ENGRAM_MAX_SUBSCRIPTIONS", "max_subscriptions", "256", "most subscriptions per WebSocket connection (topics per SSE stream)"},
	{"stream-max-items", "ENGRAM_STREAM_MAX_ITEMS", "stream_max_items", "1000000", "most items in one stream group"},
	{"stream-sync-max", "ENGRAM_STREAM_SYNC_MAX", "stream_sync_max", "10000", "most items a /stream join's sync holds; larger groups answer sync_too_large"},
	{"queue-metrics-topics", "ENGRAM_QUEUE_METRICS_TOPICS", "queue_metrics_topics", "100", "most queue topics engram_queue_depth names; the rest are summed as topic=\"other\""},
	{"read-timeout", "ENGRAM_READ_TIMEOUT", "read_timeout", "30s", "longest time to read a request's head and body (and a new connection's first request); slower clients are cut off"},
	{"write-timeout", "ENGRAM_WRITE_TIMEOUT", "write_timeout", "30s", "longest time to write a response; a client that stops reading is cut off (WebSocket and SSE streams have their own deadlines)"},
	{"idle-timeout", "ENGRAM_IDLE_TIMEOUT", "idle_timeout", "120s", "how long a keep-alive connection may wait for its next request"},
	{"rate-limit", "ENGRAM_RATE_LIMIT", "rate_limit", "0", "requests per second each client (remote IP) may make, a token bucket per client; over it: 429 with Retry-After; 0: no limit"},
	{"rate-burst", "ENGRAM_RATE_BURST", "rate_burst", "0", "requests a client may make at once (the bucket's size); 0: max(1, 2 × --rate-limit)"},
	{"pprof-addr", "ENGRAM_PPROF_ADDR", "pprof_addr", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060); empty: off"},
	{"tls-cert", "ENGRAM_TLS_CERT", "tls_cert", "", "PEM certificate file (leaf first, then its chain): serve HTTPS only; needs --tls-key; both are read again on SIGHUP"},
	{"tls-key", "ENGRAM_TLS_KEY", "tls_key", "", "PEM private key file of --tls-cert"},
}

// loadConfig merges args, the environment (getenv) and the YAML file named
// by --config / ENGRAM_CONFIG. It reports which source each bad value came
// from.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("engram-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make(map[string]*string, len(options))
	for _, o := range options {
		v := &flagValue{s: o.def, isBool: o.def == "false" || o.def == "true"}
		fs.Var(v, o.flag, fmt.Sprintf("%s (env %s)", o.usage, o.env))
		vals[o.flag] = &v.s
	}
	cfgPath := fs.String("config", "", "YAML config file (env ENGRAM_CONFIG); flags and environment override it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: engram-server [flags]\n\nEngram: an embedded, durable event store server.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	path := *cfgPath
	if !set["config"] {
		path = getenv("ENGRAM_CONFIG")
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			return nil, err
		}
	}
	// value returns the setting and where it came from.
	value := func(o option) (string, string) {
		switch {
		case set[o.flag]:
			return *vals[o.flag], "--" + o.flag
		case getenv(o.env) != "":
			return getenv(o.env), o.env
		}
		if v, ok := file[o.key]; ok {
			return v, path + ": " + o.key
		}
		return o.def, "default " + o.flag
	}
	c := &config{ConfigFile: path}
	for _, o := range options {
		v, src := value(o)
		if err := c.set(o.flag, v); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return nil, errors.New("--tls-cert is set but --tls-key (ENGRAM_TLS_KEY, tls_key) is missing: give both or neither")
	case c.TLSKey != "" && c.TLSCert == "":
		return nil, errors.New("--tls-key is set but --tls-cert (ENGRAM_TLS_CERT, tls_cert) is missing: give both or neither")
	}
	if !c.Insecure && !isLoopback(c.Addr) {
		return nil, fmt.Errorf("addr %q is not a loopback address: without auth the server listens on loopback only; set --insecure (ENGRAM_INSECURE=1) to listen there anyway", c.Addr)
	}
	return c, nil
}

func (c *config) set(name, v string) error {
	var err error
	switch name {
	case "addr":
		if _, _, err = net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not host:port", v)
		}
		c.Addr = v
	case "data":
		if v == "" {
			return errors.New("empty data directory")
		}
		c.Data = v
	case "sync":
		if v != "always" && v != "none" {
			return fmt.Errorf("%q is not always or none", v)
		}
		c.Sync = v
	case "max-body":
		n, perr := humanize.ParseBytes(v)
		if perr != nil || n < 1 || n > 1<<30 {
			return fmt.Errorf("%q is not a size between 1 B and 1 GiB", v)
		}
		c.MaxBody = int64(n)
	case "log-level":
		if err = c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("%q is not debug, info, warn or error", v)
		}
	case "log-format":
		if v != "text" && v != "json" {
			return fmt.Errorf("%q is not text or json", v)
		}
		c.LogFormat = v
	case "insecure":
		if c.Insecure, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%q is not a boolean", v)
		}
	case "retention-age":
		if c.RetentionAge, err = time.ParseDuration(v); err != nil || c.RetentionAge < 0 {
			if v != "0" {
				return fmt.Errorf("%q is not a duration ≥ 0 (e.g. 72h)", v)
			}
			c.RetentionAge, err = 0, nil
		}
	case "retention-events":
		if c.RetentionEvents, err = strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("%q is not a count ≥ 0", v)
		}
	case "max-connections", "max-subscriptions":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 1_000_000 {
			return fmt.Errorf("%q is not a number between 1 and 1000000", v)
		}
		if name == "max-connections" {
			c.MaxConnections = n
		} else {
			c.MaxSubs = n
		}
	case "queue-metrics-topics":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 100_000 {
			return fmt.Errorf("%q is not a number between 1 and 100000", v)
		}
		c.QueueTopics = n
	case "stream-max-items", "stream-sync-max":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 1_000_000_000 {
			return fmt.Errorf("%q is not a number between 1 and 1000000000", v)
		}
		if name == "stream-max-items" {
			c.StreamMaxItems = n
		} else {
			c.StreamSyncMax = n
		}
	case "read-timeout", "write-timeout", "idle-timeout":
		d, perr := time.ParseDuration(v)
		if perr != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration (e.g. 30s)", v)
		}
		switch name {
		case "read-timeout":
			c.ReadTimeout = d
		case "write-timeout":
			c.WriteTimeout = d
		default:
			c.IdleTimeout = d
		}
	case "rate-limit":
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || !(f >= 0 && f <= 1e9) {
			return fmt.Errorf("%q is not a rate between 0 and 1e9 requests/s", v)
		}
		c.RateLimit = f
	case "rate-burst":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 0 || n > 1e9 {
			return fmt.Errorf("%q is not a number between 0 and 1000000000", v)
		}
		c.RateBurst = n
	case "pprof-addr":
		if v != "" {
			if _, _, err = net.SplitHostPort(v); err != nil {
				return fmt.Errorf("%q is not host:port", v)
			}
			if !isLoopback(v) {
				return fmt.Errorf("%q is not a loopback address: the profiler listens on loopback only (e.g. 127.0.0.1:6060)", v)
			}
		}
		c.PprofAddr = v
	case "tls-cert":
		c.TLSCert = v
	case "tls-key":
		c.TLSKey = v
	case "shutdown-timeout":
		if c.ShutdownTimeout, err = time.ParseDuration(v); err != nil || c.ShutdownTimeout <= 0 {
			return fmt.Errorf("%q is not a positive duration", v)
		}
	}
	return nil
}

// flagValue holds a flag's text until the sources are merged. A boolean
// option's flag may stand alone (--insecure means --insecure=true).
type flagValue struct {
	s      string
	isBool bool
}

func (f *flagValue) String() string     { return f.s }
func (f *flagValue) Set(v string) error { f.s = v; return nil }
func (f *flagValue) IsBoolFlag() bool   { return f.isBool }

// readConfigFile reads the YAML file as flat settings. Unknown keys are
// errors, so a typo is not silently ignored.
func readConfigFile(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc map[string]yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, o := range options {
		known[o.key] = true
	}
	out := make(map[string]string, len(doc))
	for k, n := range doc {
		if !known[k] {
			return nil, fmt.Errorf("config file %s: line %d: unknown key %q", path, n.Line, k)
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config file %s: line %d: %s must be a single value", path, n.Line, k)
		}
		out[k] = n.Value
	}
	return out, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *config) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
