package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
)

var (
	// ErrBadBackup reports a tar that is not a whole, intact backup.
	ErrBadBackup = errors.New("backup: bad backup")
	// ErrNotEmpty reports a restore into a directory that holds files.
	ErrNotEmpty = errors.New("backup: the directory is not empty")
)

// Limits bound what a backup may hold. Zero fields mean the defaults.
type Limits struct {
	// MaxBytes caps the total size of the store's files. Zero means 1 TiB.
	MaxBytes int64
	// MaxFiles caps their number. Zero means 100,000.
	MaxFiles int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes == 0 {
		l.MaxBytes = 1 << 40
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = 100_000
	}
	return l
}

// maxSmallEntry caps the manifest and the checksum list.
const maxSmallEntry = 16 << 20

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Force replaces the contents of a non-empty directory (never one a
	// server has open). False means such a directory is refused.
	Force bool
	Limits
}

// Check reads a whole backup from r without writing anything and returns
// its manifest: ErrBadBackup when it is not a whole, intact backup.
func Check(r io.Reader, lim Limits) (Manifest, error) {
	return readTar(r, lim.withDefaults(), func(string, int64) (io.Writer, func() error, error) {
		return io.Discard, func() error { return nil }, nil
	})
}

// Restore extracts a backup from r into dir, which must not exist or be
// empty (or opts.Force). It extracts into a new directory beside dir, checks
// every file's checksum and that the store opens with the manifest's head
// seq, fsyncs, and only then moves it into place. The search index is not
// restored: the server rebuilds it at its first start.
func Restore(r io.Reader, dir string, opts RestoreOptions) (Manifest, error) {
	dir = filepath.Clean(dir)
	var m Manifest
	release, err := checkTarget(dir, opts.Force)
	if err != nil {
		return m, err
	}
	defer release()
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	tmp := filepath.Join(parent, "."+filepath.Base(dir)+".restore-"+ulid.Make().String())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	m, err = readTar(r, opts.Limits.withDefaults(), func(name string, size int64) (io.Writer, func() error, error) {
		f, err := os.OpenFile(filepath.Join(tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, nil, err
		}
		return f, func() error {
			err := f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}, nil
	})
	if err != nil {
		return m, err
	}
	// The store must open and hold what the manifest says.
	db, err := storage.OpenReadOnly(tmp, nil)
	if err != nil {
		return m, fmt.Errorf("%w: the restored store does not open: %v", ErrBadBackup, err)
	}
	head := db.HeadSeq()
	db.Close()
	os.Remove(filepath.Join(tmp, "LOCK")) // Pebble's, made by the open above
	if head != m.HeadSeq {
		return m, fmt.Errorf("%w: the restored store's head seq is %d, the manifest says %d", ErrBadBackup, head, m.HeadSeq)
	}
	if err := syncDir(tmp); err != nil {
		return m, err
	}
	if err := moveIntoPlace(tmp, dir); err != nil {
		return m, err
	}
	ok = true
	return m, syncDir(parent)
}

// checkTarget checks that dir may be restored into; for a non-empty dir
// with force it holds the data-dir lock until release, so that no server
// opens it meanwhile.
func checkTarget(dir string, force bool) (release func(), err error) {
	release = func() {}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return release, nil
	case err != nil:
		return release, fmt.Errorf("backup: %w", err)
	case !fi.IsDir():
		return release, fmt.Errorf("backup: %s is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return release, fmt.Errorf("backup: %w", err)
	}
	if len(ents) == 0 {
		return release, nil
	}
	if !force {
		return release, fmt.Errorf("%w: %s holds %d entries (restore into a new directory, or --force to replace them)", ErrNotEmpty, dir, len(ents))
	}
	lock, err := vfs.Default.Lock(filepath.Join(dir, "engram.lock"))
	if err != nil {
		return release, fmt.Errorf("%w: %q (%v): is a server running on %s?", storage.ErrLocked, dir, err, dir)
	}
	return func() { lock.Close() }, nil
}

// moveIntoPlace renames tmp to dir; an existing dir (empty, or forced) is
// renamed away first and removed after.
func moveIntoPlace(tmp, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".replaced-"+ulid.Make().String())
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("backup: %w", err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("backup: restored, but removing the replaced files in %s: %w", old, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: sync %s: %w", dir, err)
	}
	return nil
}

// createFunc opens the destination of an entry; done finishes it.
type createFunc func(name string, size int64) (w io.Writer, done func() error, err error)

// readTar reads a backup: the manifest first, then exactly the files it
// lists (and the note) as regular files of the listed sizes, then the
// checksums, which must match, then the end. Anything else is
// ErrBadBackup.
func readTar(r io.Reader, lim Limits, create createFunc) (Manifest, error) {
	var m Manifest
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBackup, fmt.Sprintf(format, a...))
	}
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	next := func() (*tar.Header, error) {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, bad("truncated: it ends before %s", SumsName)
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		if err := checkHeader(h); err != nil {
			return nil, bad("entry %q: %v", h.Name, err)
		}
		return h, nil
	}
	h, err := tr.Next()
	if err != nil || h.Name != ManifestName {
		if err != nil && err != io.EOF {
			return m, bad("%v", err)
		}
		return m, errNotBackup
	}
	if err := checkHeader(h); err != nil {
		return m, bad("entry %q: %v", h.Name, err)
	}
	if h.Size > maxSmallEntry {
		return m, bad("%s is %d bytes", ManifestName, h.Size)
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return m, bad("%v", err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, bad("%s: %v", ManifestName, err)
	}
	if err := checkManifest(&m, lim); err != nil {
		return m, err
	}
	sums := map[string]string{ManifestName: sumOf(raw)}
	want := map[string]int64{NoteName: -1}
	for _, f := range m.Files {
		want[f.Name] = f.Size
	}
	for {
		h, err := next()
		if err != nil {
			return m, err
		}
		if h.Name == SumsName {
			if h.Size > maxSmallEntry {
				return m, bad("%s is %d bytes", SumsName, h.Size)
			}
			raw, err := io.ReadAll(tr)
			if err != nil {
				return m, bad("%v", err)
			}
			if err := checkSums(raw, sums, want); err != nil {
				return m, err
			}
			break
		}
		size, ok := want[h.Name]
		switch {
		case !ok && sums[h.Name] != "":
			return m, bad("entry %q twice", h.Name)
		case !ok:
			return m, bad("entry %q is not in the manifest", h.Name)
		case h.Name == NoteName && h.Size > maxSmallEntry:
			return m, bad("%s is %d bytes", NoteName, h.Size)
		case h.Name != NoteName && h.Size != size:
			return m, bad("%s is %d bytes, the manifest says %d", h.Name, h.Size, size)
		}
		delete(want, h.Name)
		w, done, err := create(h.Name, h.Size)
		if err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		hs := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, hs), tr)
		if derr := done(); err == nil && derr != nil {
			return m, fmt.Errorf("backup: %s: %w", h.Name, derr)
		}
		if err != nil {
			return m, bad("%s: %v", h.Name, err)
		}
		if n != h.Size {
			return m, bad("%s: %d bytes, want %d", h.Name, n, h.Size)
		}
		sums[h.Name] = hex.EncodeToString(hs.Sum(nil))
	}
	if _, err := tr.Next(); err != io.EOF {
		if err == nil {
			return m, bad("entries after %s", SumsName)
		}
		return m, bad("%v", err)
	}
	return m, nil
}

// checkHeader accepts a regular file with a plain name.
func checkHeader(h *tar.Header) error {
	switch h.Typeflag {
	case tar.TypeReg:
	case tar.TypeSymlink, tar.TypeLink:
		return errors.New("links are not allowed")
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return errors.New("devices and fifos are not allowed")
	case tar.TypeDir:
		return errors.New("directories are not allowed")
	default:
		return fmt.Errorf("entry type %q is not allowed", h.Typeflag)
	}
	if h.Name == ManifestName || h.Name == NoteName || h.Name == SumsName {
		return nil
	}
	if err := checkName(h.Name); err != nil {
		return fmt.Errorf("unsafe name: %v", err)
	}
	if h.Size < 0 {
		return errors.New("negative size")
	}
	return nil
}

// checkManifest checks a manifest against this engram and the limits.
func checkManifest(m *Manifest, lim Limits) error {
	switch {
	case m.Format != FormatVersion:
		return fmt.Errorf("%w: backup format %d, this engram reads %d", ErrBadBackup, m.Format, FormatVersion)
	case m.Layout > storage.LayoutVersion:
		return fmt.Errorf("%w: the backup has layout %d, this engram reads up to %d; use a newer engram", storage.ErrNewerLayout, m.Layout, storage.LayoutVersion)
	case m.Layout != storage.LayoutVersion:
		return fmt.Errorf("%w: the backup has layout %d, which this engram cannot read (it reads %d)", ErrBadBackup, m.Layout, storage.LayoutVersion)
	case len(m.Files) == 0:
		return fmt.Errorf("%w: the manifest lists no files", ErrBadBackup)
	case len(m.Files) > lim.MaxFiles:
		return fmt.Errorf("%w: %d files, more than the limit of %d", ErrBadBackup, len(m.Files), lim.MaxFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	var total int64
	for _, f := range m.Files {
		if err := checkName(f.Name); err != nil {
			return fmt.Errorf("%w: manifest file %q: unsafe name: %v", ErrBadBackup, f.Name, err)
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: manifest lists %q twice", ErrBadBackup, f.Name)
		}
		seen[f.Name] = true
		if f.Size < 0 || f.Size > lim.MaxBytes || total+f.Size > lim.MaxBytes {
			return fmt.Errorf("%w: the files are larger than the limit of %d bytes", ErrBadBackup, lim.MaxBytes)
		}
		total += f.Size
	}
	return nil
}

// checkSums compares the checksum list with what was read; every listed
// file must have been read.
func checkSums(raw []byte, got map[string]string, missing map[string]int64) error {
	for name := range missing {
		return fmt.Errorf("%w: truncated: %s is missing", ErrBadBackup, name)
	}
	listed := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(raw), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			return fmt.Errorf("%w: %s: bad line %q", ErrBadBackup, SumsName, line)
		}
		listed[name] = sum
	}
	for name, sum := range got {
		if listed[name] != sum {
			return fmt.Errorf("%w: %s: checksum mismatch (corrupt)", ErrBadBackup, name)
		}
	}
	if len(listed) != len(got) {
		return fmt.Errorf("%w: %s lists %d entries, the tar holds %d", ErrBadBackup, SumsName, len(listed), len(got))
	}
	return nil
}

func sumOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ReadManifest reads the manifest at the start of a backup without reading
// the rest.
func ReadManifest(r io.Reader) (Manifest, error) {
	var m Manifest
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != ManifestName || h.Typeflag != tar.TypeReg || h.Size > maxSmallEntry {
		return m, errNotBackup
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		return m, fmt.Errorf("%w: %s: %v", ErrBadBackup, ManifestName, err)
	}
	return m, nil
}
