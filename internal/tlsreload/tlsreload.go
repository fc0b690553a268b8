package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Config names the pair's files.
type Config struct {
	// CertFile is the PEM certificate, the leaf first and then its chain.
	// Required.
	CertFile string
	// KeyFile is the PEM private key of the leaf. Required.
	KeyFile string
}

// Reloader holds the certificate being served. Its methods are safe for
// concurrent use.
type Reloader struct {
	cfg  Config
	log  *slog.Logger
	cert atomic.Pointer[tls.Certificate]
}

// New loads the pair and returns a Reloader serving it. A pair that cannot
// be loaded is an error naming the file.
func New(cfg Config, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.CertFile == "":
		return nil, errors.New("tlsreload: cert file: required")
	case cfg.KeyFile == "":
		return nil, errors.New("tlsreload: key file: required")
	}
	r := &Reloader{cfg: cfg, log: log}
	c, err := load(cfg)
	if err != nil {
		return nil, err
	}
	r.cert.Store(c)
	r.warnExpired(c.Leaf)
	return r, nil
}

// load reads and checks the pair: the key must match the leaf. An expired
// leaf is loaded (and logged by the caller): refusing it would not make the
// clients' view better.
func load(cfg Config) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsreload: load %s and %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	if c.Leaf == nil { // set by LoadX509KeyPair since Go 1.23
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsreload: %s: %w", cfg.CertFile, err)
		}
	}
	return &c, nil
}

// Reload loads the pair again from the same files. On success new
// handshakes get the new certificate and it is logged ("tls: reloaded");
// on failure the error is logged and returned, and the old pair is still
// served.
func (r *Reloader) Reload() error {
	c, err := load(r.cfg)
	if err != nil {
		r.log.Error("tls: reload failed, still serving the previous certificate", "err", err,
			"serial", r.Leaf().SerialNumber.String())
		return err
	}
	r.cert.Store(c)
	r.log.Info("tls: reloaded", Attrs(c.Leaf)...)
	r.warnExpired(c.Leaf)
	return nil
}

func (r *Reloader) warnExpired(c *x509.Certificate) {
	if now := time.Now(); now.After(c.NotAfter) || now.Before(c.NotBefore) {
		r.log.Warn("tls: the certificate is outside its validity period; clients will refuse it", Attrs(c)...)
	}
}

// Leaf is the certificate being served.
func (r *Reloader) Leaf() *x509.Certificate { return r.cert.Load().Leaf }

// GetCertificate is tls.Config.GetCertificate: the pair loaded last.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// TLSConfig is a server configuration serving the Reloader's certificate:
// TLS 1.2 and newer, HTTP/1.1 only (the server speaks nothing else).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// Attrs describes a certificate for a log line: subject, serial and
// not_after.
func Attrs(c *x509.Certificate) []any {
	return []any{"subject", c.Subject.String(), "serial", c.SerialNumber.String(),
		"not_after", c.NotAfter.UTC().Format(time.RFC3339)}
}
