package e2e_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"engram/internal/storage"
)

// cliBin builds engram/cmd/engram (the CLI) once, beside the server binary.
var cliBin = sync.OnceValues(func() (string, error) {
	out := filepath.Join(filepath.Dir(serverBin), "engram")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "build", "-o", out, "engram/cmd/engram")
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build engram/cmd/engram: %v\n%s", err, b)
	}
	return out, nil
})

// runEngram runs the CLI and returns its exit code and output.
func runEngram(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin, err := cliBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("engram %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// getBackup streams GET /v1/admin/backup into file and returns the
// response's headers.
func getBackup(t *testing.T, p *proc, file string) http.Header {
	t.Helper()
	resp, err := client.Get(p.URL + "/v1/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /v1/admin/backup: %d %s", resp.StatusCode, clip(b))
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatalf("reading the backup: %v", err)
	}
	return resp.Header
}

// dumpStore returns every key and value of the stopped store in dir.
func dumpStore(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := storage.OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out
}

// TestBackupUnderWriteLoad: writers post units while GET /v1/admin/backup
// streams; the backup restores (engram restore) to a store that passes
// engram verify, and a server on it serves every unit acknowledged before
// the backup began, by id and by search (the index rebuilt at its start).
// Then a backup of that idle server, restored twice, gives identical
// stores.
func TestBackupUnderWriteLoad(t *testing.T) {
	work := t.TempDir()
	p := startServer(t, filepath.Join(work, "live"))

	type sent struct{ id, tok string }
	var (
		mu      sync.Mutex
		acked   []sent // in the order of their acknowledgements
		stopW   atomic.Bool
		wg      sync.WaitGroup
		errs    []string
		nAcked  atomic.Int64
		payload = strings.Repeat("lorem ipsum dolor sit amet ", 40) // ~1 KB
	)
	for w := range 3 {
		wg.Go(func() {
			for i := 0; !stopW.Load(); i++ {
				tok := fmt.Sprintf("bkw%dn%d", w, i)
				u, _, err := postUnit(p, map[string]any{"context_id": fmt.Sprintf("bk-%d", w), "agent_id": "a", "type": "MESSAGE",
					"payload": map[string]any{"text": "bkcommon " + tok + " " + payload}})
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
				acked = append(acked, sent{u.ID, tok})
				mu.Unlock()
				nAcked.Add(1)
			}
		})
	}
	if !pollUntil(30*time.Second, 5*time.Millisecond, func() bool { return nAcked.Load() >= 1500 }) {
		t.Fatalf("writers acknowledged %d units in 30 s", nAcked.Load())
	}
	mu.Lock()
	before := append([]sent(nil), acked...) // acknowledged before the backup began
	mu.Unlock()
	file := filepath.Join(work, "backup.tar")
	start := time.Now()
	atStart := nAcked.Load()
	h := getBackup(t, p, file)
	took := time.Since(start)
	during := nAcked.Load() - atStart
	stopW.Store(true)
	wg.Wait()
	for _, e := range errs {
		t.Error("writer:", e)
	}
	fi, _ := os.Stat(file)
	t.Logf("backup of %d+ units: %d bytes in %v; %d units acknowledged while it streamed", len(before), fi.Size(), took, during)
	if ct := h.Get("Content-Type"); ct != "application/x-tar" {
		t.Errorf("Content-Type %q", ct)
	}
	cd := h.Get("Content-Disposition")
	var headSeq uint64
	if _, err := fmt.Sscanf(cd, `attachment; filename="engram-backup-%d.tar"`, &headSeq); err != nil || headSeq == 0 {
		t.Errorf("Content-Disposition %q", cd)
	}
	p.Stop()
	if left, _ := filepath.Glob(filepath.Join(work, "live", ".backup-*")); len(left) != 0 {
		t.Errorf("checkpoints left in the data dir: %v", left)
	}

	restored := filepath.Join(work, "restored")
	if code, out := runEngram(t, "restore", "--data", restored, file); code != 0 || !strings.Contains(out, fmt.Sprintf("head_seq %d,", headSeq)) {
		t.Fatalf("engram restore: exit %d:\n%s", code, out)
	}
	if code, out := runEngram(t, "verify", "--data", restored); code != 0 || !strings.Contains(out, "ok: no problems") {
		t.Fatalf("engram verify: exit %d:\n%s", code, out)
	} else {
		t.Logf("engram verify:\n%s", out)
	}

	p2 := startServer(t, restored)
	if got := p2.headSeq(t); got != headSeq {
		t.Errorf("restored head seq %d, the backup's is %d", got, headSeq)
	}
	for _, u := range before {
		if r := p2.call(t, "GET", "/v1/workunits/"+u.id, nil); r.Status != 200 {
			t.Fatalf("unit %s (acknowledged before the backup): %s", u.id, r)
		}
	}
	// The search index was rebuilt from the restored store.
	waitCaughtUp(t, p2, headSeq, 60*time.Second)
	a := search(t, p2, "q", "bkcommon", "count", "true", "limit", "1")
	if a.Total == nil || *a.Total < int64(len(before)) {
		t.Errorf("search finds %v units, want at least %d", a.Total, len(before))
	}
	for _, u := range []sent{before[0], before[len(before)/2], before[len(before)-1]} {
		if a := search(t, p2, "q", u.tok); len(a.Hits) != 1 || a.Hits[0].ID != u.id {
			t.Errorf("search %s: %+v, want unit %s", u.tok, a.Hits, u.id)
		}
	}

	// An idle server's backup, restored twice: identical stores.
	idle := filepath.Join(work, "idle.tar")
	getBackup(t, p2, idle)
	raw, err := os.ReadFile(idle)
	if err != nil {
		t.Fatal(err)
	}
	var dumps []map[string]string
	for i := range 2 {
		dir := filepath.Join(work, fmt.Sprintf("again-%d", i))
		cmd := exec.Command(mustCLI(t), "restore", "--data", dir, "-")
		cmd.Stdin = bytes.NewReader(raw)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("engram restore from stdin: %v\n%s", err, out)
		}
		if code, out := runEngram(t, "verify", "--data", dir); code != 0 {
			t.Fatalf("engram verify: exit %d:\n%s", code, out)
		}
		dumps = append(dumps, dumpStore(t, dir))
	}
	p2.Stop()
	want := dumpStore(t, restored)
	for i, d := range dumps {
		if len(d) != len(want) {
			t.Fatalf("restore %d holds %d keys, the server's store %d", i, len(d), len(want))
		}
		for k, v := range want {
			if d[k] != v {
				t.Fatalf("restore %d: key %x differs", i, k)
			}
		}
	}
}

func mustCLI(t *testing.T) string {
	t.Helper()
	bin, err := cliBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
