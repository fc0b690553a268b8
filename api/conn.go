package api

import (
	"context"
	"crypto/tls"
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
	raw, overTLS := rawConn(c)
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
				if peerGone(raw, overTLS) {
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
	raw, overTLS := rawConn(c)
	return raw != nil && peerGone(raw, overTLS)
}

// rawConn is the socket of c's connection (nil if it has none), and whether
// TLS runs over it.
func rawConn(c *fiber.Ctx) (raw syscall.RawConn, overTLS bool) {
	conn := c.Context().Conn()
	if tc, ok := conn.(*tls.Conn); ok {
		conn, overTLS = tc.NetConn(), true
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return raw, overTLS
}

// peerGone peeks at the socket without consuming anything: end of stream
// (the client's FIN) or a reset means the client is gone; pending bytes (a
// pipelined request) or nothing to read mean it is still there. Over TLS a
// client that leaves sends close_notify before its FIN, so pending bytes
// prove nothing: there the socket's TCP state tells (peerShutdown).
func peerGone(raw syscall.RawConn, overTLS bool) bool {
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
		if !gone && overTLS {
			gone = peerShutdown(int(fd))
		}
		return true // never wait for readiness
	})
	return gone || err != nil
}
