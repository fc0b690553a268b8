package storage

import "sync/atomic"

// A ScanFloor is where scans of a time-ordered index (queue delays and
// leases, dedupe windows, lock expiries: keys that start with a time) may
// start. Its loop deletes entries in key order up to "now", and no command
// writes an entry at or before its own now (the sequencer's command time
// never goes back), so nothing appears below the last entry the loop
// handled. Starting there skips the deleted keys Pebble keeps until
// compaction, which would otherwise make each pass of a mass expiry slower
// than the last. It is derived state: after a restart scans start at the
// prefix. Safe for concurrent use.
type ScanFloor struct{ key atomic.Pointer[[]byte] }

// Lower is the lower bound of a scan of the index with prefix.
func (f *ScanFloor) Lower(prefix []byte) []byte {
	if k := f.key.Load(); k != nil {
		return *k
	}
	return prefix
}

// Raise records that every entry below key is gone. Call it from the
// command that deleted them, once it can no longer fail.
func (f *ScanFloor) Raise(key []byte) { f.key.Store(&key) }
