// Package backup owns Engram's backups: taking a consistent snapshot of a
// running store (a Pebble checkpoint) and streaming it as a tar with a
// manifest and checksums, restoring such a tar into a new data directory
// safely, and verifying a stopped store's layout and log offline.
//
// A backup holds the store only: the search index is derived state and is
// rebuilt from the store at the first start on a restored directory. The
// package never writes to a live store (a checkpoint is a copy beside it,
// removed when the snapshot is closed) and never extracts anything but the
// regular files its manifest lists.
package backup
