// Command engram-server runs Engram: `go run ./cmd/server` serves on
// 127.0.0.1:8080 with its data in ./data. See the README for configuration.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // cron time zones on hosts (and distroless images) without zoneinfo

	"engram/internal/server"
	"engram/internal/tlsreload"
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
	hup := make(chan os.Signal, 1) // SIGHUP reloads the TLS pair
	signal.Notify(hup, syscall.SIGHUP)
	var certs *tlsreload.Reloader
	if cfg.TLSCert != "" {
		if certs, err = tlsreload.New(tlsreload.Config{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey}, log); err != nil {
			log.Error("cannot start", "err", err)
			return 1
		}
		log.Info("tls: serving", tlsreload.Attrs(certs.Leaf())...)
	}
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
		RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		QueueMetricsTopics: cfg.QueueTopics,
		TLS:                tlsConfig(certs),
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
wait:
	for {
		select {
		case <-hup:
			if certs == nil {
				log.Info("SIGHUP: nothing to reload (no --tls-cert)")
				continue
			}
			certs.Reload() // logs the outcome; a failure keeps the old pair
		case sig := <-sigs:
			log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
			break wait
		case err := <-srv.Done():
			log.Error("server stopped", "err", err)
			code = 1
			break wait
		}
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

// tlsConfig is the server's TLS configuration: nil (plain HTTP) without a
// certificate.
func tlsConfig(certs *tlsreload.Reloader) *tls.Config {
	if certs == nil {
		return nil
	}
	return certs.TLSConfig()
}
