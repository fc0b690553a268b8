package server

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A lingering close keeps a closing connection's read side open for a
// moment to drain what the client is still sending. fasthttp answers an
// oversized body (413) from its Content-Length and closes without reading
// the body; closing a socket with unread data makes the kernel send a reset,
// and a client still writing would see "connection reset" instead of the
// 413. net/http closes the same way (closeWriteAndWait).
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 16 << 20
)

type lingerListener struct {
	net.Listener
	hits *limitHits // nil: timeouts are not counted
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &lingerConn{TCPConn: tc, hits: l.hits}, nil
	}
	return c, err
}

// asLingerConn is c's lingerConn, under its TLS layer if it has one.
func asLingerConn(c net.Conn) (*lingerConn, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*lingerConn)
	return lc, ok
}

type lingerConn struct {
	*net.TCPConn
	once   sync.Once
	rmu    sync.Mutex // held by a server Read; the drain waits for it
	closed atomic.Bool

	hits    *limitHits
	state   atomic.Int32 // a fasthttp.ConnState, from the server's ConnState hook
	counted atomic.Bool  // a timeout of this connection was counted
}

// Read fails once the connection is closed: only the drain reads on, so a
// request that arrives after Close is never executed without a way to
// answer it.
func (c *lingerConn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.TCPConn.Read(b)
	if err != nil {
		c.countTimeout(err, false)
	}
	return n, err
}

// Write counts a write that failed at its deadline (a client that stopped
// reading).
func (c *lingerConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	if err != nil {
		c.countTimeout(err, true)
	}
	return n, err
}

// Close sends what is written and a FIN, then drains the client's data
// (bounded in bytes and time) in the background before the final close.
func (c *lingerConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.TCPConn.SetReadDeadline(time.Now()) // wake a Read blocked now
		if err := c.TCPConn.CloseWrite(); err != nil {
			c.TCPConn.Close()
			return
		}
		go func() {
			c.rmu.Lock() // no server Read is in progress from here on
			defer c.rmu.Unlock()
			c.TCPConn.SetReadDeadline(time.Now().Add(lingerTime))
			io.CopyN(io.Discard, c.TCPConn, lingerBytes)
			c.TCPConn.Close()
		}()
	})
	return nil
}
