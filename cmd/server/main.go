// Command engram-server runs Engram: `go run ./cmd/server` serves on
// 127.0.0.1:8080 with its data in ./data. See the README for configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // cron time zones on hosts (and distroless images) without zoneinfo

	"engram/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := loadConfig(args, os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "engram-server: %v\n", err)
		return 2
	}
	log := cfg.logger(os.Stderr)
	if cfg.ConfigFile != "" {
		log.Info("config file read", "path", cfg.ConfigFile)
	}
	// Signals first: a supervisor may send SIGTERM as soon as it sees the
	// "listening" line, which Start logs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// The profiler first: it is up when the "listening" line is logged, and
	// closed last.
	if cfg.PprofAddr != "" {
		prof, err := startProfiler(cfg.PprofAddr, log)
		if err != nil {
			log.Error("cannot start", "err", err)
			return 1
		}
		defer prof.Close()
	}
	srv, err := server.New(server.Config{
		Addr: cfg.Addr, DataDir: cfg.Data, Sync: cfg.Sync, MaxBody: cfg.MaxBody, Logger: log,
		RetentionAge: cfg.RetentionAge, RetentionEvents: cfg.RetentionEvents,
		MaxConnections: cfg.MaxConnections, MaxSubscriptions: cfg.MaxSubs,
		StreamMaxItems: cfg.StreamMaxItems, StreamSyncMax: cfg.StreamSyncMax,
		ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		QueueMetricsTopics: cfg.QueueTopics,
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		log.Error("cannot start", "err", err)
		srv.Shutdown(context.Background())
		return 1
	}
	if cfg.Sync == "none" {
		log.Warn("--sync=none: writes are acknowledged before they are on disk; a machine crash may lose them")
	}

	code := 0
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
	case err := <-srv.Done():
		log.Error("server stopped", "err", err)
		code = 1
	}
	// A second signal during shutdown ends the process at once.
	go func() {
		sig := <-sigs
		log.Error("second signal: exiting without finishing shutdown", "signal", sig.String())
		os.Exit(130)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	return code
}
