// Package engine is Engram's domain: contexts and work units (and, later,
// streams, queues, locks and cron) as commands over storage.
//
// Every change is a wal.Command run on the sequencer's single writer, so
// read-modify-write logic needs no locks of its own. Validation that does not
// depend on stored state happens before a command is submitted, so the writer
// spends its time only on what must be ordered. Reads go straight to storage
// and see only committed (and so durable) data.
//
// The engine never speaks HTTP: it returns *Error values whose Kind the api
// package maps to status codes, and it never reaches subscribers directly:
// they learn of changes through the events its commands emit.
package engine
