package api

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"
)

// peerPoll is how often a waiting request checks that its client is still
// there.
const peerPoll = 100 * time.Millisecond

// waitContext returns the context of a request that may wait (a long-poll
// lease, a lock acquire with wait_ms), cancelled when the client closes its
// connection: fasthttp never cancels a request's context, and a client that
// gave up must not be handed a lease or a lock it can never answer for. The
// returned stop must be called when the handler is done.
func waitContext(c *fiber.Ctx) (context.Context, func()) {
	ctx, cancel := context.WithCancel(c.UserContext())
	raw := rawConn(c)
	if raw == nil {
		return ctx, cancel
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(peerPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if peerGone(raw) {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() {
		close(done)
		cancel()
	}
}

// clientGone reports whether the client of c has closed its connection.
func clientGone(c *fiber.Ctx) bool {
	raw := rawConn(c)
	return raw != nil && peerGone(raw)
}

func rawConn(c *fiber.Ctx) syscall.RawConn {
	sc, ok := c.Context().Conn().(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// peerGone peeks at the socket without consuming anything: end of stream
// (the client's FIN) or a reset means the client is gone; pending bytes (a
// pipelined request) or nothing to read mean it is still there.
func peerGone(raw syscall.RawConn) bool {
	gone := false
	var buf [1]byte
	err := raw.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default:
			gone = true
		}
		return true // never wait for readiness
	})
	return gone || err != nil
}
