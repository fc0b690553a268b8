// Package e2e holds Engram's black-box tests: they build the real server
// binary once, start it as a child process per test on a free loopback port
// and a temporary data dir, and talk to it only over HTTP, signals and its
// log, as an operator or a client would. The crash tests kill it with
// SIGKILL while writers run and check, after a restart and offline with the
// storage package, that no acknowledged write was lost and that the log is
// gapless.
//
// The package has no code of its own beyond this comment; it must never
// reach into a running server's internals.
package e2e
