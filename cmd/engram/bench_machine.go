package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes where the bench ran.
type machineInfo struct {
	NumCPU     int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	DataDir    string `json:"data_dir"`
	DataFS     string `json:"data_fs"`
}

func collectMachineInfo(dataDir string) machineInfo {
	mi := machineInfo{
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		DataDir:    dataDir,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		mi.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mi.MemTotal = memTotal(b)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		mi.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dataDir, &st); err == nil {
		mi.DataFS = fsTypeName(int64(st.Type))
	}
	return mi
}

// cpuModel returns the first "model name" of /proc/cpuinfo text.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotal returns MemTotal of /proc/meminfo text as "N GiB RAM".
func memTotal(meminfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return ""
			}
			return fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return ""
}

// fsTypeName names a statfs f_type magic number.
func fsTypeName(magic int64) string {
	switch magic {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs (fsync is free: disk ceilings are meaningless)"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	case 0xF2F52010:
		return "f2fs"
	case 0x6969:
		return "nfs"
	}
	return fmt.Sprintf("fs magic 0x%X", magic)
}

// cpuSample is a snapshot of CPU time, in clock ticks (USER_HZ), used to
// tell how much CPU other processes took while a measurement ran: the bench
// shares its cores with anything else running on the machine.
type cpuSample struct {
	at   time.Time
	busy int64 // all CPUs: user+nice+system+steal (irq/softirq left out: mostly our own network traffic)
	self int64 // this process and its reaped children (wrk): utime+stime+cutime+cstime
	ok   bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	st, err1 := os.ReadFile("/proc/stat")
	ps, err2 := os.ReadFile("/proc/self/stat")
	if err1 != nil || err2 != nil {
		return s
	}
	busy, ok1 := parseProcStatBusy(st)
	self, ok2 := parseSelfStatTicks(ps)
	s.busy, s.self, s.ok = busy, self, ok1 && ok2
	return s
}

// parseProcStatBusy returns user+nice+system+steal of the "cpu" line of
// /proc/stat.
func parseProcStatBusy(b []byte) (int64, bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 8} { // user nice system steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

// parseSelfStatTicks returns utime+stime+cutime+cstime of /proc/self/stat.
func parseSelfStatTicks(b []byte) (int64, bool) {
	// The command name (field 2) may hold spaces; fields resume after ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, so f[11]..f[14].
	if len(f) < 15 {
		return 0, false
	}
	var sum int64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// selfCores is how many cores this process and its reaped children (wrk)
// used, on average, between a and b.
func selfCores(a, b cpuSample) float64 {
	d := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || d <= 0 {
		return 0
	}
	return float64(b.self-a.self) / clockTicks / d
}

// otherCores is how many cores, on average, processes other than this one
// and its children kept busy between a and b.
func otherCores(a, b cpuSample) float64 {
	d := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || d <= 0 {
		return 0
	}
	other := float64((b.busy-a.busy)-(b.self-a.self)) / clockTicks
	return math.Max(other/d, 0)
}
