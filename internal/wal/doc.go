// Package wal is Engram's write path: the sequencer. It is the only writer to
// storage. Concurrent callers Submit commands; one goroutine (the writer)
// applies them in order into a group batch, assigns every event its seq
// (gapless, strictly increasing) and commits the batch without waiting for
// its fsync; a second goroutine (the syncer) waits for each batch's fsync in
// commit order, then hands the batch's events on in seq order and answers its
// commands. So the next batch is built while this one syncs, and nothing is
// acknowledged before it is on disk.
//
// It is not a second log file: Pebble's own write-ahead log is the durable
// log; this package decides order and grouping. Each command's writes are
// staged apart until it returns, so a failed command leaves no trace, and a
// command reads the writes of the commands before it in the same batch.
//
// A command runs on the writer goroutine: it must not block, wait on other
// commands, or call Submit.
package wal
