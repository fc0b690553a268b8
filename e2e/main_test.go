package e2e_test

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// serverBin is the engram-server binary built by TestMain.
var serverBin string

// client is shared by every test; TestMain closes its idle connections before
// goleak looks for leftover goroutines.
var client = &http.Client{
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
	Timeout: 30 * time.Second,
}

// afterRun runs cleanup between m.Run and goleak's check.
type afterRun struct {
	m     *testing.M
	after func()
}

func (a afterRun) Run() int {
	code := a.m.Run()
	a.after()
	return code
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "engram-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "engram-server")
	if err := buildServer(serverBin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(afterRun{m, func() {
		client.CloseIdleConnections()
		os.RemoveAll(dir)
	}})
}

// buildServer builds engram/cmd/server into out. ENGRAM_E2E_RACE=1 builds it
// with the race detector (slow to build the first time), so that a data race
// in the server makes it exit 66 and the graceful-stop checks fail.
func buildServer(out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if os.Getenv("ENGRAM_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "engram/cmd/server")
	cmd := exec.Command(goTool, args...)
	cmd.Env = os.Environ()
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %v\n%s", goTool, args, err, b)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", out, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
