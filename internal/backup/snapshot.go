package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
)

// Store is what a Source needs of the live store.
type Store interface {
	// Dir is the data directory; checkpoints are made inside it.
	Dir() string
	// Checkpoint writes a consistent copy of the store into dir.
	Checkpoint(dir string) error
}

var _ Store = (*storage.DB)(nil)

// tmpPrefix starts the name of a checkpoint directory inside the data dir.
const tmpPrefix = ".backup-"

// Config configures a Source.
type Config struct {
	// Version is the engram version recorded in manifests. Empty means
	// "dev".
	Version string
	// Now is the clock of manifests. Nil means time.Now.
	Now func() time.Time
	// MaxInFlight caps the snapshots open at once: each pins the store's
	// files of its moment (hard links) until it is closed, and each is a
	// whole-store stream. Zero means 2.
	MaxInFlight int
}

// ErrBusy refuses a snapshot while MaxInFlight others are open.
var ErrBusy = errors.New("backup: busy")

// A Source takes snapshots of a live store. Safe for concurrent use.
type Source struct {
	db    Store
	cfg   Config
	log   *slog.Logger
	slots chan struct{} // one per open snapshot
}

// New returns a Source of db. It removes the checkpoint directories a
// process that ended mid-backup left in the data dir: call it before any
// snapshot of db is taken.
func New(db Store, cfg Config, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 2
	}
	stale, _ := filepath.Glob(filepath.Join(db.Dir(), tmpPrefix+"*"))
	for _, d := range stale {
		if err := os.RemoveAll(d); err != nil {
			log.Warn("removing a stale backup checkpoint", "dir", d, "err", err)
		} else {
			log.Info("removed a stale backup checkpoint", "dir", d)
		}
	}
	return &Source{db: db, cfg: cfg, log: log, slots: make(chan struct{}, cfg.MaxInFlight)}
}

// A Snapshot is a consistent copy of the store, taken by Source.Take,
// ready to be written as a tar. Close removes it.
type Snapshot struct {
	dir     string
	m       Manifest
	once    sync.Once
	err     error
	release func() // frees the Source's slot
}

// Take checkpoints the store into a directory inside its data dir (hard
// links: cheap, and writes go on) and reads the checkpoint's head seq. The
// caller must Close the snapshot.
func (s *Source) Take() (*Snapshot, error) {
	select {
	case s.slots <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: %d backups are streaming, the most at once; retry when one ends", ErrBusy, cap(s.slots))
	}
	release := func() { <-s.slots }
	dir := filepath.Join(s.db.Dir(), tmpPrefix+ulid.Make().String())
	if err := s.db.Checkpoint(dir); err != nil {
		os.RemoveAll(dir)
		release()
		return nil, fmt.Errorf("backup: %w", err)
	}
	snap := &Snapshot{dir: dir, release: release}
	if err := snap.describe(s.cfg); err != nil {
		snap.Close()
		return nil, err
	}
	return snap, nil
}

// describe lists the checkpoint's files, then opens it read-only for its
// layout, head and oldest seqs.
func (snap *Snapshot) describe(cfg Config) error {
	ents, err := os.ReadDir(snap.dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m := Manifest{Format: FormatVersion, Created: cfg.Now().UTC(), Version: cfg.Version, Search: searchNote}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return fmt.Errorf("backup: checkpoint holds %q, not a regular file", e.Name())
		}
		if err := checkName(e.Name()); err != nil {
			return fmt.Errorf("backup: checkpoint file %q: %v", e.Name(), err)
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		m.Files = append(m.Files, File{Name: e.Name(), Size: fi.Size()})
	}
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	db, err := storage.OpenReadOnly(snap.dir, nil)
	if err != nil {
		return fmt.Errorf("backup: read the checkpoint: %w", err)
	}
	defer db.Close()
	if m.Layout, err = db.Layout(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m.HeadSeq = db.HeadSeq()
	if m.OldestSeq, err = db.OldestSeq(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	snap.m = m
	return nil
}

// Manifest describes the snapshot.
func (snap *Snapshot) Manifest() Manifest { return snap.m }

// WriteTo writes the snapshot to w as a tar: the manifest, the note, the
// store's files and their checksums. It returns the bytes written. It may
// be called once.
func (snap *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	mj, err := json.MarshalIndent(&snap.m, "", "  ")
	if err != nil {
		return cw.n, err
	}
	var sums strings.Builder
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: snap.m.Created, Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(tw, io.TeeReader(io.LimitReader(r, size), h))
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s: %d bytes, want %d: it changed during the backup", name, n, size)
		}
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), name)
		return nil
	}
	mj = append(mj, '\n')
	if err := add(ManifestName, int64(len(mj)), strings.NewReader(string(mj))); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	if err := add(NoteName, int64(len(note)), strings.NewReader(note)); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	for _, f := range snap.m.Files {
		err := func() error {
			fh, err := os.Open(filepath.Join(snap.dir, f.Name))
			if err != nil {
				return err
			}
			defer fh.Close()
			return add(f.Name, f.Size, fh)
		}()
		if err != nil {
			return cw.n, fmt.Errorf("backup: write: %w", err)
		}
	}
	s := sums.String()
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: SumsName, Size: int64(len(s)), Mode: 0o644, ModTime: snap.m.Created, Format: tar.FormatPAX,
	}); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	if _, err := io.WriteString(tw, s); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	if err := tw.Close(); err != nil {
		return cw.n, fmt.Errorf("backup: write: %w", err)
	}
	return cw.n, nil
}

// Close removes the snapshot's checkpoint. It is safe to call more than
// once.
func (snap *Snapshot) Close() error {
	snap.once.Do(func() {
		if err := os.RemoveAll(snap.dir); err != nil {
			snap.err = fmt.Errorf("backup: remove the checkpoint: %w", err)
		}
		if snap.release != nil {
			snap.release()
		}
	})
	return snap.err
}

// Dir is the checkpoint's directory (for tests).
func (snap *Snapshot) Dir() string { return snap.dir }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errNotBackup reports a tar that does not start with a manifest.
var errNotBackup = errors.New("backup: not an Engram backup (no " + ManifestName + " first)")
