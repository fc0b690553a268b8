package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeWS is a scripted /v1/ws server for the frame sequences a real server
// produces only under load or failure. Each connection runs the script with
// its number (from 1); handshake can refuse a connection with an answer of
// its own by returning false.
type fakeWS struct {
	t         *testing.T
	hs        *httptest.Server
	n         atomic.Int32
	wg        sync.WaitGroup
	handshake func(w http.ResponseWriter, r *http.Request, n int) bool
	script    func(p *peer, n int)
}

func newFakeWS(t *testing.T, handshake func(w http.ResponseWriter, r *http.Request, n int) bool, script func(p *peer, n int)) *fakeWS {
	f := &fakeWS{t: t, handshake: handshake, script: script}
	f.hs = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.hs.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeWS) serve(w http.ResponseWriter, r *http.Request) {
	f.wg.Add(1)
	defer f.wg.Done()
	n := int(f.n.Add(1))
	if r.URL.Path != "/v1/ws" {
		http.NotFound(w, r)
		return
	}
	if f.handshake != nil && !f.handshake(w, r, n) {
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		f.t.Errorf("accept: %v", err)
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f.script(&peer{t: f.t, c: c, ctx: ctx}, n)
}

func (f *fakeWS) client(t *testing.T, opts ...Option) *Client {
	c, err := New(f.hs.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peer is the server side of one connection.
type peer struct {
	t     *testing.T
	c     *websocket.Conn
	ctx   context.Context
	pings int  // pings received
	pong  bool // answer pings
}

// clientFrame is a frame the client sends.
type clientFrame struct {
	Op       string  `json:"op"`
	ID       string  `json:"id"`
	Topic    string  `json:"topic"`
	AfterSeq *uint64 `json:"after_seq"`
}

// recv returns the client's next frame other than a ping; ok is false
// when the connection ended.
func (p *peer) recv() (clientFrame, bool) {
	for {
		_, b, err := p.c.Read(p.ctx)
		if err != nil {
			return clientFrame{}, false
		}
		var f clientFrame
		if err := json.Unmarshal(b, &f); err != nil {
			p.t.Errorf("client sent %q: %v", b, err)
			return f, false
		}
		if f.Op == "ping" {
			p.pings++
			if p.pong {
				p.send(`{"op":"pong"}`)
			}
			continue
		}
		return f, true
	}
}

// expectSubscribe reads a subscribe frame and checks its id and after_seq
// (nil: absent).
func (p *peer) expectSubscribe(id string, after *uint64) bool {
	f, ok := p.recv()
	if !ok {
		p.t.Errorf("connection ended, want subscribe %s", id)
		return false
	}
	switch {
	case f.Op != "subscribe" || f.ID != id || f.Topic != "contexts/f":
		p.t.Errorf("got %+v, want subscribe %s to contexts/f", f, id)
		return false
	case (after == nil) != (f.AfterSeq == nil) || (after != nil && *after != *f.AfterSeq):
		p.t.Errorf("subscribe %s: after_seq %v, want %v", id, deref(f.AfterSeq), deref(after))
		return false
	}
	return true
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}

func (p *peer) send(format string, args ...any) {
	if err := p.c.Write(p.ctx, websocket.MessageText, fmt.Appendf(nil, format, args...)); err != nil {
		p.t.Errorf("write: %v", err)
	}
}

func (p *peer) subscribed(id string, head uint64) {
	p.send(`{"op":"subscribed","id":%q,"head_seq":%d}`, id, head)
}

func (p *peer) event(id string, seq uint64) {
	p.send(`{"op":"event","id":%q,"event":{"seq":%d,"time":"2026-11-22T10:00:00.123456789Z","type":"workunit.created","topic":"contexts/f","data":{"n":%d}}}`, id, seq, seq)
}

// drain reads until the client goes away.
func (p *peer) drain() {
	for {
		if _, ok := p.recv(); !ok {
			return
		}
	}
}

func u64(v uint64) *uint64 { return &v }

// collect reads events until Events closes.
func collect(t *testing.T, sub *Subscription) []uint64 {
	t.Helper()
	var seqs []uint64
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return seqs
			}
			seqs = append(seqs, ev.Seq)
		case <-time.After(10 * time.Second):
			t.Fatalf("events still open after %v (got %v)", 10*time.Second, seqs)
		}
	}
}

// TestSubscribeFramesLaggedUnavailableTruncated: lagged resubscribes on the
// same connection from the last delivered seq; unavailable reconnects;
// repeats and other subscriptions' events are dropped; history_truncated
// ends the subscription.
func TestSubscribeFramesLaggedUnavailableTruncated(t *testing.T) {
	f := newFakeWS(t, nil, func(p *peer, n int) {
		switch n {
		case 1:
			if !p.expectSubscribe("s1", nil) {
				return
			}
			p.subscribed("s1", 10)
			p.event("s1", 11)
			p.event("s1", 12)
			p.event("s1", 12)       // a repeat
			p.event("other", 13)    // not ours
			p.send(`{"op":"pong"}`) // not asked for, harmless
			p.send(`{"op":"error","id":"s1","code":"lagged","message":"too slow","last_seq":12}`)
			if !p.expectSubscribe("s2", u64(12)) {
				return
			}
			p.subscribed("s2", 12)
			p.event("s1", 13) // the old subscription's: ignored
			p.event("s2", 12) // a repeat
			p.event("s2", 13)
			p.send(`{"op":"error","id":"s2","code":"unavailable","message":"shutting down","last_seq":13}`)
			p.drain()
		case 2:
			if !p.expectSubscribe("s3", u64(13)) {
				return
			}
			p.subscribed("s3", 20)
			p.event("s3", 14)
			p.send(`{"op":"error","id":"s3","code":"history_truncated","message":"gone","last_seq":14,"oldest_seq":100}`)
			p.drain()
		default:
			t.Errorf("connection %d: the subscription should have ended", n)
		}
	})
	sub, err := f.client(t).Subscribe(ctxT(t), "contexts/f", SubscribeOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.HeadSeq() != 10 {
		t.Fatalf("HeadSeq %d", sub.HeadSeq())
	}
	if got := collect(t, sub); fmt.Sprint(got) != "[11 12 13 14]" {
		t.Fatalf("events %v", got)
	}
	err = sub.Err()
	var e *Error
	if !errors.Is(err, ErrHistoryTruncated) || !errors.Is(err, ErrGone) || !errors.As(err, &e) || e.OldestSeq != 100 || e.Status != 410 || e.Message != "gone" {
		t.Fatalf("Err = %#v", err)
	}
	if sub.LastSeq() != 14 || sub.dials.Load() != 2 {
		t.Fatalf("LastSeq %d, %d connections", sub.LastSeq(), sub.dials.Load())
	}
}

// TestSubscribeHandshakes: the token and user agent go with the handshake;
// a refused handshake is an *Error, retried when temporary (503) and final
// otherwise (403).
func TestSubscribeHandshakes(t *testing.T) {
	refuse := func(w http.ResponseWriter, status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"refused %d","details":{}}}`, code, status)
	}
	f := newFakeWS(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Header.Get("Authorization") != "Bearer k" {
			refuse(w, 401, "unauthenticated")
			return false
		}
		if ua := r.Header.Get("User-Agent"); ua != "ua/1" {
			t.Errorf("User-Agent %q", ua)
		}
		switch n {
		case 3:
			refuse(w, 503, "unavailable")
			return false
		case 5:
			refuse(w, 403, "permission_denied")
			return false
		}
		return true
	}, func(p *peer, n int) {
		switch n {
		case 2:
			if !p.expectSubscribe("s1", u64(0)) {
				return
			}
			p.subscribed("s1", 5)
			p.event("s1", 1)
			p.event("s1", 2)
			// Then the connection drops (the script returns).
		case 4:
			if !p.expectSubscribe("s2", u64(2)) {
				return
			}
			p.subscribed("s2", 5)
			p.event("s2", 3)
		default:
			t.Errorf("connection %d reached the script", n)
		}
	})
	ctx := ctxT(t)
	_, err := f.client(t).Subscribe(ctx, "contexts/f", SubscribeOptions{})
	var e *Error
	if !errors.Is(err, ErrUnauthenticated) || !errors.As(err, &e) || e.Status != 401 || e.Message != "refused 401" {
		t.Fatalf("without a token: %#v", err)
	}
	sub, err := f.client(t, WithToken("k"), WithUserAgent("ua/1")).Subscribe(ctx, "contexts/f",
		SubscribeOptions{AfterSeq: u64(0), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if got := collect(t, sub); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("events %v", got)
	}
	if err := sub.Err(); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("Err = %v", err)
	}
	if n := f.n.Load(); n != 5 {
		t.Fatalf("%d handshakes, want 5", n)
	}
}

// TestSubscribeKeepAlive: a connection on which nothing arrives is dropped
// and replaced; one that answers the client's pings is kept.
func TestSubscribeKeepAlive(t *testing.T) {
	const every = 30 * time.Millisecond
	pingsOnSilent := make(chan int, 1)
	f := newFakeWS(t, nil, func(p *peer, n int) {
		switch n {
		case 1:
			if !p.expectSubscribe("s1", nil) {
				return
			}
			p.subscribed("s1", 10)
			p.drain() // silent: no pongs, no events
			pingsOnSilent <- p.pings
		case 2:
			if !p.expectSubscribe("s2", u64(10)) {
				return
			}
			p.subscribed("s2", 10)
			p.event("s2", 11)
			p.pong = true // answers the client's pings from now on
			for {
				f, ok := p.recv()
				if !ok {
					return
				}
				t.Errorf("unexpected frame %+v", f)
			}
		default:
			t.Errorf("connection %d: a live connection was dropped", n)
		}
	})
	sub, err := f.client(t).Subscribe(ctxT(t), "contexts/f", SubscribeOptions{KeepAlive: every, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := next(t, sub, 10*time.Second); ev.Seq != 11 {
		t.Fatalf("seq %d", ev.Seq)
	}
	if n := <-pingsOnSilent; n < 1 {
		t.Fatalf("the client sent %d pings on the silent connection", n)
	}
	// Quiet but answering: kept for many keep-alive periods.
	time.Sleep(15 * every)
	if d := sub.dials.Load(); d != 2 {
		t.Fatalf("%d connections, want 2", d)
	}
}
