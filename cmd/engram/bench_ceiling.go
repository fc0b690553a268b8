package main

// Machine ceilings, measured in the same run as the scenarios: raw fsync in
// the data dir, raw Pebble synced commits (64 writers, and 1000-record
// batches) and a trivial handler on the same Fiber stack.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/cockroachdb/pebble/v2"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"
)

// recordSize is the size of one appended record / Pebble value: about one
// work unit's JSON.
const recordSize = 300

// ceilingFsync appends recordSize bytes to a file in dir and fdatasyncs it,
// in a loop for d (at least 50 times), and reports the latency of each
// append+fdatasync.
func ceilingFsync(ctx context.Context, dir string, d time.Duration) (measurement, error) {
	path := filepath.Join(dir, "fsync-ceiling.dat")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return measurement{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, recordSize)
	_, _ = rand.Read(buf)
	fd := int(f.Fd())
	h := newLatencyHist()
	start := time.Now()
	deadline := start.Add(d)
	var n int64
	for ; n < 50 || time.Now().Before(deadline); n++ {
		if ctx.Err() != nil {
			return measurement{}, ctx.Err()
		}
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return measurement{}, err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return measurement{}, fmt.Errorf("fdatasync: %w", err)
		}
		h.RecordValue(max(time.Since(t0).Microseconds(), 1))
	}
	var lr loadResult
	fillPercentiles(&lr, h)
	lr.Requests, lr.DurationSec, lr.Clients = n, time.Since(start).Seconds(), 1
	lr.ReqPerSec = float64(n) / lr.DurationSec
	m := fromLoad("ceiling.fsync", "ceiling: append 300 B + fdatasync (data dir)", kindCeiling, "fsync", lr)
	m.Driver = ""
	return m, nil
}

// quietPebbleLogger drops Pebble's info lines and keeps its errors.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...interface{}) {}
func (quietPebbleLogger) Errorf(format string, args ...interface{}) {
	log.Printf("pebble: "+format, args...)
}
func (quietPebbleLogger) Fatalf(format string, args ...interface{}) {
	log.Fatalf("pebble: "+format, args...)
}

// openCeilingPebble opens a fresh Pebble DB with default options (only the
// logger is quieted) in dir/name. The caller closes it and removes the dir.
func openCeilingPebble(dir, name string) (*pebble.DB, string, error) {
	path := filepath.Join(dir, name)
	_ = os.RemoveAll(path)
	db, err := pebble.Open(path, &pebble.Options{Logger: quietPebbleLogger{}})
	if err != nil {
		return nil, "", fmt.Errorf("pebble open %s: %w", path, err)
	}
	return db, path, nil
}

// pebbleKey is a 16-byte key: writer id then a per-writer counter, big-endian.
func pebbleKey(buf []byte, writer, n uint64) []byte {
	buf = buf[:0]
	buf = binary.BigEndian.AppendUint64(buf, writer)
	return binary.BigEndian.AppendUint64(buf, n)
}

// pebbleWriters runs `writers` goroutines, each calling op (one timed
// operation: a synced Set or a synced batch) in a loop until d has passed,
// and returns the operations' latency histogram, their count and the
// elapsed time. Each goroutine gets its own key buffer.
func pebbleWriters(ctx context.Context, writers int, d time.Duration, op func(w uint64, key []byte) error) (*hdrhistogram.Histogram, int64, time.Duration, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    = newLatencyHist()
		ops      atomic.Int64
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w uint64) {
			defer wg.Done()
			h := newLatencyHist()
			key := make([]byte, 0, 16)
			var err error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err = op(w, key); err != nil {
					break
				}
				h.RecordValue(max(time.Since(t0).Microseconds(), 1))
				ops.Add(1)
			}
			mu.Lock()
			total.Merge(h)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}(uint64(w))
	}
	wg.Wait()
	if firstErr != nil {
		return nil, 0, 0, firstErr
	}
	return total, ops.Load(), time.Since(start), ctx.Err()
}

// ceilingPebbleSets runs `writers` goroutines, each doing db.Set(key,
// 300 B, pebble.Sync) in a loop for d; Pebble groups concurrent syncs into
// one WAL fsync. Reports synced commits/s and commit latency.
func ceilingPebbleSets(ctx context.Context, dir string, writers int, d time.Duration) (measurement, error) {
	db, path, err := openCeilingPebble(dir, "pebble-ceiling-sets")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(path)
	defer db.Close()
	val := make([]byte, recordSize)
	_, _ = rand.Read(val)
	next := make([]uint64, writers) // per-writer key counter
	hist, commits, elapsed, err := pebbleWriters(ctx, writers, d, func(w uint64, key []byte) error {
		next[w]++
		return db.Set(pebbleKey(key, w, next[w]), val, pebble.Sync)
	})
	if err != nil {
		return measurement{}, fmt.Errorf("pebble set: %w", err)
	}
	var lr loadResult
	fillPercentiles(&lr, hist)
	lr.Requests, lr.DurationSec, lr.Clients = commits, elapsed.Seconds(), writers
	lr.ReqPerSec = float64(lr.Requests) / lr.DurationSec
	m := fromLoad(fmt.Sprintf("ceiling.pebble_sets.w%d", writers),
		fmt.Sprintf("ceiling: Pebble Set+Sync, %d goroutines", writers), kindCeiling, "commit", lr)
	m.Driver = ""
	return m, nil
}

// ceilingPebbleBatches runs `writers` goroutines, each building batches of
// batchSize 300 B records and committing them with pebble.Sync, for d.
// Reports records/s; the latencies are per batch commit (build + commit).
func ceilingPebbleBatches(ctx context.Context, dir string, writers, batchSize int, d time.Duration) (measurement, error) {
	db, path, err := openCeilingPebble(dir, fmt.Sprintf("pebble-ceiling-batches-w%d", writers))
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(path)
	defer db.Close()
	val := make([]byte, recordSize)
	_, _ = rand.Read(val)
	next := make([]uint64, writers) // per-writer key counter
	hist, batches, elapsed, err := pebbleWriters(ctx, writers, d, func(w uint64, key []byte) error {
		b := db.NewBatch()
		defer b.Close()
		for i := 0; i < batchSize; i++ {
			next[w]++
			if err := b.Set(pebbleKey(key, w, next[w]), val, nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		return measurement{}, fmt.Errorf("pebble batch: %w", err)
	}
	var lr loadResult
	fillPercentiles(&lr, hist)
	lr.Requests, lr.DurationSec, lr.Clients = batches*int64(batchSize), elapsed.Seconds(), writers
	lr.ReqPerSec = float64(lr.Requests) / lr.DurationSec
	m := fromLoad(fmt.Sprintf("ceiling.pebble_batches.w%d", writers),
		fmt.Sprintf("ceiling: Pebble %d-record batches + Sync, %d goroutine(s)", batchSize, writers), kindCeiling, "record", lr)
	m.Driver = ""
	m.Note = "latencies are per batch"
	return m, nil
}

// trivialUnit mirrors the shape of a work-unit create request so that the
// trivial handler decodes the same JSON the real one does.
type trivialUnit struct {
	ID            string            `json:"id,omitempty"`
	ContextID     string            `json:"context_id"`
	AgentID       string            `json:"agent_id"`
	Type          string            `json:"type"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 string            `json:"payload_base64,omitempty"`
	Relationships []struct {
		TargetID string            `json:"target_id"`
		Type     string            `json:"type"`
		Metadata map[string]string `json:"metadata,omitempty"`
	} `json:"relationships,omitempty"`
}

type trivialCreated struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	ContextID string `json:"context_id"`
}

// trivialApp is the HTTP ceiling: a Fiber app configured like a plain
// fiber.New() whose POST /v1/workunits decodes the body with encoding/json
// and answers 201 with a small JSON body, and whose GET
// /v1/contexts/:id/workunits answers a prepared body (set with SetListBody),
// with no storage behind either.
type trivialApp struct {
	app      *fiber.App
	ln       net.Listener
	seq      atomic.Uint64
	listBody atomic.Pointer[[]byte]
	done     chan error
}

func startTrivialApp() (*trivialApp, error) {
	t := &trivialApp{done: make(chan error, 1)}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/v1/workunits", func(c *fiber.Ctx) error {
		var u trivialUnit
		if err := json.Unmarshal(c.Body(), &u); err != nil {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fiber.Map{"code": "invalid_argument", "message": err.Error()}})
		}
		if u.ContextID == "" || u.AgentID == "" || u.Type == "" {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fiber.Map{"code": "invalid_argument", "message": "missing field"}})
		}
		return c.Status(fiber.StatusCreated).JSON(trivialCreated{
			ID: "01JDQ8ZZZZZZZZZZZZZZZZZZZZ", Seq: t.seq.Add(1), ContextID: u.ContextID,
		})
	})
	app.Get("/v1/contexts/:id/workunits", func(c *fiber.Ctx) error {
		b := t.listBody.Load()
		if b == nil {
			return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fiber.Map{"code": "not_found", "message": "no list body prepared"}})
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(fiber.StatusOK).Send(*b)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.app, t.ln = app, ln
	go func() { t.done <- app.Listener(ln) }()
	return t, nil
}

func (t *trivialApp) Addr() string { return t.ln.Addr().String() }

// SetListBody sets the bytes GET /v1/contexts/:id/workunits answers.
func (t *trivialApp) SetListBody(b []byte) { t.listBody.Store(&b) }

func (t *trivialApp) Shutdown(ctx context.Context) error {
	err := t.app.ShutdownWithContext(ctx)
	select {
	case lerr := <-t.done:
		if err == nil && lerr != nil && !errors.Is(lerr, net.ErrClosed) {
			err = lerr
		}
	case <-ctx.Done():
	}
	return err
}
