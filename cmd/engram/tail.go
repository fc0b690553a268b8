package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"engram/client"
)

// serverFlag adds the --server and --token flags every networked
// subcommand shares; ENGRAM_SERVER and ENGRAM_TOKEN are their defaults.
func serverFlag(fs *flag.FlagSet) (server, token *string) {
	def := os.Getenv("ENGRAM_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	server = fs.String("server", def, "server base URL (env ENGRAM_SERVER)")
	token = fs.String("token", os.Getenv("ENGRAM_TOKEN"), "bearer token (env ENGRAM_TOKEN)")
	return server, token
}

func newClient(server, token string) (*client.Client, error) {
	var opts []client.Option
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	return client.New(server, opts...)
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
	server, token := serverFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: engram tail --topic TOPIC [--after-seq N] [--count N] [--server URL]\n\n"+
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
	c, err := newClient(*server, *token)
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
	server, token := serverFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *timeout <= 0 {
		*timeout = 3_000_000_000
	}
	c, err := newClient(*server, *token)
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
