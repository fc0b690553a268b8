package main

// The raw WebSocket broadcast ceiling: `engram bench _broadcast-server`
// (hidden; the bench re-executes its own binary with it) serves a plain
// WebSocket endpoint on the same Fiber stack and WebSocket library as
// Engram's /v1/ws, and on command broadcasts one prepared 300 B frame per
// message to every connection, with one queue and one writer goroutine per
// connection as Engram has. Nothing is stored, routed or wrapped: it is
// what fan-out costs on this machine without Engram.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	fiberws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// broadcastServerArg is the hidden first argument of `engram bench` that
// runs the raw broadcast server instead of the bench.
const broadcastServerArg = "_broadcast-server"

// rawFrameSize is the size of the ceiling's frame payload.
const rawFrameSize = 300

// rawFrame returns the ceiling's frame for message seq stamped at ns: the
// same stamp the Engram writer puts in its payloads, padded to size bytes.
func rawFrame(seq uint64, ns int64, size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"payload":"`...)
	b = appendStamp(b, ns, int64(seq))
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// bcastConn is one connection of the broadcast server.
type bcastConn struct {
	ch   chan *websocket.PreparedMessage
	done chan struct{}
}

type bcastHub struct {
	queue int
	mu    sync.Mutex
	conns map[*bcastConn]struct{}
}

func (h *bcastHub) serve(c *fiberws.Conn) {
	bc := &bcastConn{ch: make(chan *websocket.PreparedMessage, h.queue), done: make(chan struct{})}
	h.mu.Lock()
	h.conns[bc] = struct{}{}
	h.mu.Unlock()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case pm := <-bc.ch:
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := c.WritePreparedMessage(pm); err != nil {
					c.NetConn().SetReadDeadline(time.Now())
					return
				}
			case <-bc.done:
				return
			}
		}
	}()
	for {
		if _, _, err := c.NextReader(); err != nil {
			break
		}
	}
	h.mu.Lock()
	delete(h.conns, bc)
	h.mu.Unlock()
	close(bc.done)
	<-writerDone
}

func (h *bcastHub) snapshot() []*bcastConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*bcastConn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}

// broadcastResult answers POST /broadcast.
type broadcastResult struct {
	Sent    int64   `json:"sent"`    // messages broadcast
	Conns   int     `json:"conns"`   // connections each was offered to
	Dropped int64   `json:"dropped"` // offers refused by a full queue (paced mode)
	Gone    int64   `json:"gone"`    // offers to connections that had closed
	Elapsed float64 `json:"elapsed_s"`
}

// broadcast sends messages to every connection for d: at rate per second
// (offers that find a full queue are dropped and counted), or with rate 0
// as fast as the slowest connection's queue lets it (offers wait for room:
// nothing is dropped).
func (h *bcastHub) broadcast(ctx context.Context, rate float64, d time.Duration) broadcastResult {
	conns := h.snapshot()
	res := broadcastResult{Conns: len(conns)}
	start := time.Now()
	deadline := start.Add(d)
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		if rate > 0 {
			at := start.Add(time.Duration(float64(seq-1) / rate * float64(time.Second)))
			if !at.Before(deadline) {
				break
			}
			time.Sleep(time.Until(at))
		} else if !time.Now().Before(deadline) {
			break
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, rawFrame(seq, time.Now().UnixNano(), rawFrameSize))
		if err != nil {
			break
		}
		for _, c := range conns {
			if rate > 0 {
				select {
				case c.ch <- pm:
				case <-c.done:
					res.Gone++
				default:
					res.Dropped++
				}
				continue
			}
			select {
			case c.ch <- pm:
			case <-c.done:
				res.Gone++
			}
		}
		res.Sent++
	}
	res.Elapsed = time.Since(start).Seconds()
	return res
}

// runBroadcastServer is `engram bench _broadcast-server`: it prints
// "listening ADDR" and serves until stdin closes or SIGTERM.
func runBroadcastServer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench "+broadcastServerArg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	queue := fs.Int("queue", 256, "per-connection queue, in messages")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	h := &bcastHub{queue: max(*queue, 1), conns: map[*bcastConn]struct{}{}}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	// The same upgrader settings as Engram's /v1/ws.
	app.Get("/ws", fiberws.New(h.serve, fiberws.Config{ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}}))
	app.Get("/conns", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"conns": len(h.snapshot())}) })
	app.Post("/broadcast", func(c *fiber.Ctx) error {
		rate, err1 := strconv.ParseFloat(c.Query("rate", "0"), 64)
		d, err2 := time.ParseDuration(c.Query("duration", "1s"))
		if err1 != nil || err2 != nil || rate < 0 || d <= 0 {
			return c.Status(fiber.StatusBadRequest).SendString("rate, duration")
		}
		return c.JSON(h.broadcast(c.Context(), rate, d))
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- app.Listener(ln) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = app.ShutdownWithContext(sctx)
	return nil
}

// listeningAddrFromLine parses the broadcast server's "listening ADDR".
func listeningAddrFromLine(line []byte) (string, bool) {
	const p = "listening "
	if len(line) <= len(p) || string(line[:len(p)]) != p {
		return "", false
	}
	addr := string(line[len(p):])
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", false
	}
	return addr, true
}

// startBroadcastServer re-executes this binary as the broadcast server.
func startBroadcastServer(queue int) (*benchProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc("broadcast server", []string{self, "bench", broadcastServerArg, "--queue", strconv.Itoa(queue)},
		listeningAddrFromLine, 30*time.Second)
}

// requestBroadcast asks the broadcast server at addr to broadcast for d at
// rate (0: as fast as possible) and returns its account once it is done.
func requestBroadcast(ctx context.Context, addr string, rate float64, d time.Duration) (broadcastResult, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(fmt.Sprintf("http://%s/broadcast?rate=%g&duration=%s", addr, rate, d))
	req.Header.SetMethod("POST")
	c := &fasthttp.Client{ReadTimeout: d + time.Minute, WriteTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- c.Do(req, resp) }()
	select {
	case err := <-errc:
		if err != nil {
			return broadcastResult{}, err
		}
	case <-ctx.Done():
		return broadcastResult{}, ctx.Err()
	}
	if resp.StatusCode() != 200 {
		return broadcastResult{}, fmt.Errorf("broadcast: status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	var r broadcastResult
	if err := json.Unmarshal(resp.Body(), &r); err != nil {
		return broadcastResult{}, fmt.Errorf("broadcast: %w", err)
	}
	if r.Sent == 0 {
		return r, errors.New("broadcast: nothing was sent")
	}
	return r, nil
}
