// Package auth owns Engram's credentials and what they allow: the auth
// section of the config file (API keys stored as SHA-256 hashes, an optional
// JWT verifier for HS256 or RS256, metrics_auth), turning a presented bearer
// token into a Principal, and the Principal's answers to "may it use this
// scope, this context, this stream group, this queue, this lock resource,
// this event topic" and "which search hits may it see".
//
// It decides; it never serves. The api, notifier and server packages ask it
// and map its Error (401 unauthenticated or 403 permission_denied) to their
// transport. It keeps no state after New: an Authenticator and the
// Principals it returns are immutable and safe for concurrent use.
//
// It never logs, returns or formats a secret: not a presented token, not an
// API key, not a key's hash, not the HS256 secret. Errors tell the client
// what kind of credential problem it has, never the credential; logs name a
// key by its configured name and a JWT by its subject.
package auth
