// Package tlsreload owns the server's TLS certificate: it loads a PEM
// certificate and key pair from two files, serves it to new handshakes
// through tls.Config.GetCertificate, and loads the pair again from the same
// files on request (cmd/server does it on SIGHUP).
//
// A reload that fails changes nothing: the pair loaded last keeps being
// served. Handshakes already done are never touched; only new ones see a new
// certificate. The package never listens and never watches files itself.
package tlsreload
