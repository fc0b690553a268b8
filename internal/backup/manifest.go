package backup

import (
	"errors"
	"path/filepath"
	"strings"
	"time"
)

// The names of the entries a backup adds around the store's files.
const (
	// ManifestName is the first entry: the Manifest, as JSON.
	ManifestName = "engram-backup.json"
	// NoteName follows it: a short note for whoever opens the tar.
	NoteName = "engram-backup-README.txt"
	// SumsName is the last entry: the SHA-256 of every other entry, in
	// sha256sum's format ("<hex>  <name>" lines).
	SumsName = "engram-backup.sha256"
)

// FormatVersion is the version of the tar's own format (its entries and
// manifest), apart from the store's layout version.
const FormatVersion = 1

// note is the text of NoteName.
const note = `This is a backup of an Engram data directory, taken while the server ran.
Restore it with:   engram restore --data DIR FILE.tar
Check it with:     engram verify --data DIR
It holds the store (a Pebble checkpoint) and engram-backup.json. The search
index is not in it: the server rebuilds it from the store at its first start
on the restored directory (or run engram reindex --data DIR beforehand).
`

// A Manifest describes a backup.
type Manifest struct {
	Format int `json:"format"`
	// Layout is the store's layout version (storage.LayoutVersion of the
	// server that took it).
	Layout uint32 `json:"layout"`
	// HeadSeq is the last seq the backup holds; OldestSeq the oldest log
	// event retention had kept.
	HeadSeq   uint64    `json:"head_seq"`
	OldestSeq uint64    `json:"oldest_seq"`
	Created   time.Time `json:"created"`
	// Version is the version of the engram that took it.
	Version string `json:"engram_version"`
	// Search says what became of the search index.
	Search string `json:"search"`
	// Files are the store's files, in the order of the tar.
	Files []File `json:"files"`
}

// A File is one of the store's files in a backup.
type File struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// searchNote is Manifest.Search.
const searchNote = "not included: rebuilt from the store at the first start"

// Bytes is the total size of the store's files.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// checkName accepts the name of a store file: one plain path element, not
// one of the backup's own entries.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errors.New("empty or dot name")
	case strings.ContainsAny(name, `/\`+"\x00") || filepath.IsAbs(name) || !filepath.IsLocal(name):
		return errors.New("not a plain file name")
	case name == ManifestName || name == NoteName || name == SumsName:
		return errors.New("reserved name")
	}
	return nil
}
