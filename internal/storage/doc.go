// Package storage owns Engram's single Pebble database: the key layout
// (keys.go), the encoding of log records, opening and closing the store with
// its layout-version check and data-dir lock, and read access for the layers
// above.
//
// It never decides what a key means to the domain and never writes on its own
// behalf: all writes arrive as batches from the sequencer (package wal), which
// is the only writer.
package storage
