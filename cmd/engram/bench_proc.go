package main

// Server processes for the real-time scenarios: the Engram server binary
// (built from this module) and the raw broadcast server (this binary,
// re-executed), each in its own process so that its RSS and CPU are its
// own, apart from the subscriber clients in the bench process.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// benchProc is a child process the bench started: a server it talks to
// over loopback.
type benchProc struct {
	name string
	cmd  *exec.Cmd
	addr string
	// stdin keeps the child alive: the broadcast server exits when it
	// closes (and so when the bench dies).
	stdin io.WriteCloser

	mu   sync.Mutex
	tail bytes.Buffer // the last of its stderr/log, for error messages

	exited  chan struct{}
	waitErr error
}

func (p *benchProc) Addr() string { return p.addr }
func (p *benchProc) Pid() int     { return p.cmd.Process.Pid }

// logTail returns the last lines the child wrote to stderr.
func (p *benchProc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.tail.String()
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}

func (p *benchProc) keepTail(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail.Write(line)
	p.tail.WriteByte('\n')
	if p.tail.Len() > 64<<10 {
		b := append([]byte(nil), p.tail.Bytes()[p.tail.Len()-8<<10:]...)
		p.tail.Reset()
		p.tail.Write(b)
	}
}

// startProc starts argv and waits until listening(line) finds the address
// in one of its output lines (stdout and stderr are both scanned).
func startProc(name string, argv []string, listening func(line []byte) (string, bool), timeout time.Duration) (*benchProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	// The child dies with the bench (the thread that started it, in fact:
	// the runtime keeps threads alive, so in practice the process).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &benchProc{name: name, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	found := make(chan string, 2)
	var wg sync.WaitGroup
	scan := func(r io.Reader) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.keepTail(sc.Bytes())
			if addr, ok := listening(sc.Bytes()); ok {
				select {
				case found <- addr:
				default:
				}
			}
		}
	}
	wg.Add(2)
	go scan(stdout)
	go scan(stderr)
	go func() {
		wg.Wait() // the pipes must be drained before Wait
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-found:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before listening (%v): %s", name, p.waitErr, p.logTail())
	case <-time.After(timeout):
		p.kill()
		return nil, fmt.Errorf("%s: no listening line after %v: %s", name, timeout, p.logTail())
	}
}

// stop asks the child to end (SIGTERM, stdin closed) and waits up to
// timeout before killing it.
func (p *benchProc) stop(timeout time.Duration) error {
	if p == nil {
		return nil
	}
	p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		var ee *exec.ExitError
		if p.waitErr != nil && !(errors.As(p.waitErr, &ee) && !ee.Exited()) {
			return fmt.Errorf("%s: %v: %s", p.name, p.waitErr, p.logTail())
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not stop within %v: killed", p.name, timeout)
	}
}

func (p *benchProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// listeningAddrFromJSONLog picks the "addr" of the server's JSON log line
// whose msg is "engram listening".
func listeningAddrFromJSONLog(line []byte) (string, bool) {
	if !bytes.Contains(line, []byte(`"engram listening"`)) {
		return "", false
	}
	var m struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(line, &m) != nil || m.Msg != "engram listening" || m.Addr == "" {
		return "", false
	}
	host, port, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), true
}

// buildServerBinary builds engram/cmd/server into dir (the bench runs from
// the module, as `go run ./cmd/engram bench` does).
func buildServerBinary(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("go is not on PATH to build the server (pass --server-bin)")
	}
	out := filepath.Join(dir, "engram-server")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "engram/cmd/server")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build engram/cmd/server (run the bench from the repository, or pass --server-bin): %v: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

// startServerProc starts the Engram server binary on a free loopback port
// with its data in dataDir.
func startServerProc(bin, dataDir, syncMode string, maxConns int) (*benchProc, error) {
	argv := []string{bin, "--addr", "127.0.0.1:0", "--data", dataDir, "--log-format", "json",
		"--max-connections", strconv.Itoa(maxConns), "--sync", syncMode}
	return startProc("engram server", argv, listeningAddrFromJSONLog, 60*time.Second)
}

// procRSS reads VmRSS and VmHWM (peak) of pid, in bytes.
func procRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	rss, hwm, ok := parseProcStatusRSS(b)
	if !ok {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, hwm, nil
}

// parseProcStatusRSS returns VmRSS and VmHWM of /proc/<pid>/status text in
// bytes.
func parseProcStatusRSS(b []byte) (rss, hwm int64, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) >= 3 && f[2] == "kB" {
			v *= 1024
		}
		switch f[0] {
		case "VmRSS:":
			rss, ok = v, true
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm, ok
}

// procTicks is utime+stime of pid (a running child, not yet reaped, is not
// in this process's cutime).
func procTicks(pid int) (int64, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	var sum int64
	for _, s := range f[11:13] { // utime, stime
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

// cpuWithChildren samples the machine, this process and the given child
// processes, so that a child server's CPU counts as the bench's own load
// and not as other processes' noise.
type cpuWithChildren struct {
	base  cpuSample
	child []int64
}

func sampleCPUWith(pids ...int) cpuWithChildren {
	s := cpuWithChildren{base: sampleCPU(), child: make([]int64, len(pids))}
	for i, pid := range pids {
		s.child[i], _ = procTicks(pid)
	}
	return s
}

// childCores is how many cores child i used between a and b.
func childCores(a, b cpuWithChildren, i int) float64 {
	d := b.base.at.Sub(a.base.at).Seconds()
	if d <= 0 || i >= len(a.child) || i >= len(b.child) {
		return 0
	}
	return float64(b.child[i]-a.child[i]) / clockTicks / d
}

// otherCoresWith is otherCores less the children's CPU.
func otherCoresWith(a, b cpuWithChildren) float64 {
	o := otherCores(a.base, b.base)
	for i := range a.child {
		o -= childCores(a, b, i)
	}
	return max(o, 0)
}

// raiseFDLimit raises this process's soft RLIMIT_NOFILE to its hard limit
// (children inherit it) and returns the soft limit in force.
func raiseFDLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
	} else {
		// Setting it, even unchanged, makes children inherit this limit
		// rather than the one the runtime saw at start.
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur, nil
}

// fdReserve is what the bench and a server need besides subscriber
// connections (Pebble files, listeners, pipes, the writer's connections).
const fdReserve = 512

// fitConns returns how many connections fit under an fd limit: each needs
// one descriptor in the bench and one in the server, each process having
// the limit.
func fitConns(want int, limit uint64) int {
	if limit >= uint64(want+fdReserve) {
		return want
	}
	if limit <= fdReserve {
		return 0
	}
	return int(limit) - fdReserve
}

// goRuntimeStats are the server's Go runtime gauges from GET /metrics.
type goRuntimeStats struct {
	Goroutines float64
	HeapInuse  float64 // bytes
	StackInuse float64 // bytes
	ok         bool
}

// parseGoRuntimeMetrics picks go_goroutines and the heap and stack in use
// out of Prometheus text.
func parseGoRuntimeMetrics(body []byte) goRuntimeStats {
	v := metricValues(body)
	return goRuntimeStats{
		Goroutines: v["go_goroutines"],
		HeapInuse:  v["go_memstats_heap_inuse_bytes"],
		StackInuse: v["go_memstats_stack_inuse_bytes"],
		ok:         has(v, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes"),
	}
}

// scrapeGoRuntime reads the server's Go runtime gauges.
func scrapeGoRuntime(baseURL string) goRuntimeStats {
	status, body, err := doOnce(baseURL+"/metrics", "GET", nil)
	if err != nil || status != 200 {
		return goRuntimeStats{}
	}
	return parseGoRuntimeMetrics(body)
}
