package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"engram/internal/storage"
)

func TestBackupRestoreVerify(t *testing.T) {
	url := startServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "b.tar")

	code, out, errs := runCLI(t, "backup", "--server", url, "-o", file)
	if code != 0 || !strings.HasPrefix(out, "wrote "+file+": ") || !strings.Contains(out, " head_seq 4, ") {
		t.Fatalf("backup: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("backup left %s.tmp", file)
	}

	data := filepath.Join(dir, "data")
	code, out, errs = runCLI(t, "restore", "--data", data, file)
	if code != 0 || !strings.Contains(out, "head_seq 4,") || !strings.Contains(out, "the search index is rebuilt") {
		t.Fatalf("restore: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "verify", "--data", data)
	if code != 0 || !strings.Contains(out, "log: 4 records, seqs 1 to 4 (head_seq 4)") ||
		!strings.Contains(out, "work units: 3, unit index: 3 entries") || !strings.HasPrefix(strings.Split(out, "\n")[5], "ok: no problems") {
		t.Fatalf("verify: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A second restore into the same dir is refused; --force replaces it.
	code, _, errs = runCLI(t, "restore", "--data", data, file)
	if code != 1 || !strings.Contains(errs, "not empty") {
		t.Fatalf("restore into a non-empty dir: exit %d, stderr %q", code, errs)
	}
	if code, _, errs = runCLI(t, "restore", "--force", "--data", data, file); code != 0 {
		t.Fatalf("forced restore: exit %d, stderr %q", code, errs)
	}

	// Damage: verify lists it and exits 1.
	db, err := storage.Open(storage.Config{Dir: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	b.Delete(storage.LogKey(2), nil)
	if err := db.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	code, _, errs = runCLI(t, "verify", "--data", data)
	if code != 1 || !strings.Contains(errs, "is a server running on "+data+"?") {
		t.Errorf("verify of a dir in use: exit %d, stderr %q", code, errs)
	}
	db.Close()
	code, out, errs = runCLI(t, "verify", "--data", data)
	if code != 1 || !strings.Contains(out, "PROBLEM: log: seqs 2 to 2 are missing") || !strings.Contains(errs, "the store has problems") {
		t.Fatalf("verify of a damaged store: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestBackupCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"backup", "--server", "http://127.0.0.1:1"}, 2, "-o FILE is required"},
		{[]string{"backup", "--server", "http://127.0.0.1:1", "-o", filepath.Join(dir, "x.tar")}, 1, "engram backup:"},
		{[]string{"restore", filepath.Join(dir, "x.tar")}, 2, "--data DIR is required"},
		{[]string{"restore", "--data", dir}, 2, "want 1 argument"},
		{[]string{"restore", "--data", filepath.Join(dir, "d"), filepath.Join(dir, "none.tar")}, 1, "none.tar"},
		{[]string{"verify"}, 2, "--data DIR is required"},
		{[]string{"verify", "--data", dir}, 1, "holds no Engram data"},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.err)
		}
	}
}
