package server

import (
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

type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &lingerConn{TCPConn: tc}, nil
	}
	return c, err
}

type lingerConn struct {
	*net.TCPConn
	once   sync.Once
	rmu    sync.Mutex // held by a server Read; the drain waits for it
	closed atomic.Bool
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
	return c.TCPConn.Read(b)
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
