package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"engram/client"
)

// serverFlag adds the --server, --token and --ca flags every networked
// subcommand shares; ENGRAM_SERVER, ENGRAM_TOKEN and ENGRAM_CA are their
// defaults.
func serverFlag(fs *flag.FlagSet) (server, token, ca *string) {
	def := os.Getenv("ENGRAM_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	server = fs.String("server", def, "server base URL (env ENGRAM_SERVER)")
	token = fs.String("token", os.Getenv("ENGRAM_TOKEN"), "bearer token (env ENGRAM_TOKEN)")
	ca = fs.String("ca", os.Getenv("ENGRAM_CA"), "PEM file of the CA (or self-signed certificate) to trust for an https server, besides the system's (env ENGRAM_CA)")
	return server, token, ca
}

func newClient(server, token, ca string) (*client.Client, error) {
	var opts []client.Option
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if ca != "" {
		cfg, err := caConfig(ca)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLSConfig(cfg))
	}
	return client.New(server, opts...)
}

// caConfig is a TLS configuration that trusts the certificates of the PEM
// file ca as well as the system's roots.
func caConfig(ca string) (*tls.Config, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca: %s holds no PEM certificate", ca)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpClient is an HTTP client that trusts ca (see caConfig); the default
// client when ca is empty.
func httpClient(ca string) (*http.Client, error) {
	if ca == "" {
		return http.DefaultClient, nil
	}
	cfg, err := caConfig(ca)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// runTail prints the events of a topic as JSON lines, following it live and
// reconnecting (resuming from the last seq printed) when the connection
// drops.
func runTail(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("engram tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("topic", "", "topic to follow: exact (contexts/c1) or a prefix ending in /* (contexts/*); required")
	after := fs.Int64("after-seq", -1, "replay the events after this seq first (0: the whole history); default: live only")
	count := fs.Int("count", 0, "exit after printing this many events (0: follow until interrupted)")
	server, token, ca := serverFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: engram tail --topic TOPIC [--after-seq N] [--count N] [--server URL] [--ca FILE]\n\n"+
			"Prints the events of TOPIC as JSON lines (one event per line, in seq order), following\n"+
			"new events live. When the connection drops it reconnects and resumes after the last\n"+
			"event printed, so nothing is skipped or repeated.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case *topic == "":
		fmt.Fprintln(stderr, "engram tail: --topic is required")
		fs.Usage()
		return errUsage
	case *after < -1:
		fmt.Fprintln(stderr, "engram tail: --after-seq must be 0 or more")
		return errUsage
	case *count < 0:
		fmt.Fprintln(stderr, "engram tail: --count must be 0 or more")
		return errUsage
	}
	c, err := newClient(*server, *token, *ca)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := client.SubscribeOptions{}
	if *after >= 0 {
		v := uint64(*after)
		opts.AfterSeq = &v
	}
	sub, err := c.Subscribe(ctx, *topic, opts)
	if err != nil {
		return err
	}
	defer sub.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	printed := 0
	for ev := range sub.Events() {
		w.Write(ev.Raw)
		w.WriteByte('\n')
		printed++
		if *count > 0 && printed >= *count {
			return w.Flush()
		}
		if len(sub.Events()) == 0 { // flush when caught up, not per line
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	return sub.Err()
}

// runHealth exits 0 when the server answers /readyz with 200: the Docker
// image's health check (the image has no curl).
func runHealth(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("engram health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 0, "give up after this long (default 3s)")
	server, token, ca := serverFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *timeout <= 0 {
		*timeout = 3_000_000_000
	}
	c, err := newClient(*server, *token, *ca)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
