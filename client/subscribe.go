package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Event is one entry of the event log, as subscribers receive it.
type Event struct {
	// Seq is the event's position in the log: positive, strictly
	// increasing and gapless over the whole log (not per topic).
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Type  string    `json:"type"`
	Topic string    `json:"topic"`
	// Data depends on Type: the WorkUnit of workunit.created, the Context
	// of context.created and context.updated.
	Data json.RawMessage `json:"data"`
	// Raw is the whole event JSON as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// SubscribeOptions configures a Subscription. The zero value subscribes to
// live events with the default backoff and keep-alive.
type SubscribeOptions struct {
	// AfterSeq, when not nil, asks for every event of the topic with a
	// greater seq (history first, then live). Nil means live events only:
	// those committed after the subscription starts (see HeadSeq).
	AfterSeq *uint64
	// MinBackoff and MaxBackoff bound the wait before a reconnection; it
	// doubles with each failed attempt, with jitter. Zero means 100 ms and
	// 10 s.
	MinBackoff, MaxBackoff time.Duration
	// KeepAlive is how often the client pings a quiet connection; a
	// connection on which nothing at all arrived (server pings included) for
	// three times this long is dropped and reconnected. Zero means 20 s;
	// negative turns keep-alive off.
	KeepAlive time.Duration
}

// handshakeTimeout bounds a (re)connection: the WebSocket handshake and the
// wait for the subscribed frame.
const handshakeTimeout = 30 * time.Second

var pingFrame = []byte(`{"op":"ping"}`)

// Subscription follows one topic of the event log over /v1/ws. It delivers
// each event of the topic once, in seq order, through Events, reconnecting
// and resuming by itself. Its methods are safe for concurrent use.
type Subscription struct {
	c     *Client
	topic string
	opts  SubscribeOptions

	parent context.Context
	ctx    context.Context // ends on Close or with parent
	cancel context.CancelFunc
	events chan Event
	done   chan struct{} // closed when run has returned

	head       uint64        // head_seq of the first subscribed frame
	pos        atomic.Uint64 // see LastSeq
	closed     atomic.Bool   // Close was called
	active     atomic.Int64  // unix nanos of the last sign of life on the connection
	delivering atomic.Bool   // blocked handing an event to the caller
	dials      atomic.Int64  // connections established (for tests)

	// Owned by the run goroutine (and by Subscribe before it starts it).
	subN  int
	subID string // the id of the current subscription on the connection

	mu   sync.Mutex
	conn *websocket.Conn // the current connection, nil between connections
	err  error           // why it ended, set before events is closed
}

// Subscribe subscribes to topic ("contexts/c1", or a prefix "contexts/*")
// over the WebSocket /v1/ws. It returns once the server confirmed the
// subscription, or with the error that prevented it (an *Error for a bad
// topic, history_truncated or refused credentials, else a connection
// error); it does not retry that first connection.
//
// ctx bounds the whole subscription, not just this call: when it ends, the
// subscription ends. The caller must read Events until it is closed, or call
// Close. A caller that reads too slowly is cut off by the server (lagged)
// and the subscription resumes where it was, so a slow reader costs
// throughput, never events.
func (c *Client) Subscribe(ctx context.Context, topic string, opts SubscribeOptions) (*Subscription, error) {
	if topic == "" {
		return nil, &Error{Code: "invalid_argument", Message: "Subscribe: topic: required", Details: map[string]any{}}
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 20 * time.Second
	}
	if opts.AfterSeq != nil {
		v := *opts.AfterSeq
		opts.AfterSeq = &v
	}
	s := &Subscription{c: c, topic: topic, opts: opts, parent: ctx, events: make(chan Event), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(ctx)
	conn, head, err := s.connect(opts.AfterSeq)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.head = head
	if opts.AfterSeq != nil {
		s.pos.Store(*opts.AfterSeq)
	} else {
		s.pos.Store(head)
	}
	s.setConn(conn)
	go s.run(conn)
	return s, nil
}

// Events delivers the events, in seq order, each once. It is unbuffered:
// the subscription reads its connection only as fast as the caller takes
// events (the server cuts a reader that falls far behind, and the
// subscription then resumes by itself). It is closed when the subscription
// ends; Err then says why.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err is why the subscription ended, once Events is closed: nil after
// Close, the context's error when the context of Subscribe ended, else the
// error retrying could not fix (errors.Is(err, ErrHistoryTruncated): the
// events to resume from were removed by retention). Before the end it is
// nil.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// LastSeq is the seq of the last event handed to the caller through Events
// or, before the first, the seq the subscription started after (AfterSeq,
// or HeadSeq for a live subscription). Once Events is closed, pass it as
// AfterSeq to resume later without gap or repeat. While the subscription
// runs it is updated just after each hand-over, so it may still show the
// seq before the event just received (never one not yet received).
func (s *Subscription) LastSeq() uint64 { return s.pos.Load() }

// HeadSeq is the last seq committed in the whole log when the subscription
// was first confirmed.
func (s *Subscription) HeadSeq() uint64 { return s.head }

// Topic is the subscribed topic.
func (s *Subscription) Topic() string { return s.topic }

// Close ends the subscription, closes its connection and waits for its
// goroutines; Events is closed after it returns. It is safe to call more
// than once.
func (s *Subscription) Close() error {
	s.closed.Store(true)
	s.cancel()
	<-s.done
	return nil
}

func (s *Subscription) setConn(c *websocket.Conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
}

// dropConn closes the current connection as a network failure would (a test
// hook); the subscription then reconnects.
func (s *Subscription) dropConn() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.CloseNow()
	}
}

func (s *Subscription) touch() { s.active.Store(time.Now().UnixNano()) }

func (s *Subscription) newSubID() string {
	s.subN++
	s.subID = "s" + strconv.Itoa(s.subN)
	return s.subID
}

// frame is any frame the server sends on /v1/ws.
type frame struct {
	Op        string          `json:"op"`
	ID        string          `json:"id"`
	HeadSeq   *uint64         `json:"head_seq"`
	Event     json.RawMessage `json:"event"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	LastSeq   *uint64         `json:"last_seq"`
	OldestSeq *uint64         `json:"oldest_seq"`
}

// error is the *Error of an error frame.
func (f *frame) error() *Error {
	e := &Error{Code: f.Code, Message: f.Message, Details: map[string]any{}}
	if c, ok := codes[f.Code]; ok {
		e.Status = c.status
	}
	if f.LastSeq != nil {
		e.Details["last_seq"] = float64(*f.LastSeq)
	}
	if f.OldestSeq != nil {
		e.OldestSeq = *f.OldestSeq
		e.Details["oldest_seq"] = float64(*f.OldestSeq)
	}
	return e
}

func (s *Subscription) sendSubscribe(ctx context.Context, conn *websocket.Conn, id string, after *uint64) error {
	b, err := json.Marshal(struct {
		Op       string  `json:"op"`
		ID       string  `json:"id"`
		Topic    string  `json:"topic"`
		AfterSeq *uint64 `json:"after_seq,omitempty"`
	}{"subscribe", id, s.topic, after})
	if err != nil {
		return err
	}
	return conn.Write(ctx, websocket.MessageText, b)
}

// connect dials /v1/ws, subscribes after after (nil: live) and waits for the
// subscribed frame. It returns the connection and the frame's head_seq.
func (s *Subscription) connect(after *uint64) (*websocket.Conn, uint64, error) {
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, s.c.base+"/v1/ws", &websocket.DialOptions{
		HTTPClient: s.c.hc,
		HTTPHeader: s.c.header(),
		OnPingReceived: func(context.Context, []byte) bool {
			s.touch()
			return true
		},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if resp.Body == nil {
				resp.Body = http.NoBody
			}
			return nil, 0, readError(resp)
		}
		return nil, 0, fmt.Errorf("client: subscribe %s: GET /v1/ws: %w", s.topic, err)
	}
	s.dials.Add(1)
	conn.SetReadLimit(-1) // events are as large as the server let their writes be
	s.touch()
	id := s.newSubID()
	fail := func(err error) (*websocket.Conn, uint64, error) {
		conn.CloseNow()
		return nil, 0, err
	}
	if err := s.sendSubscribe(ctx, conn, id, after); err != nil {
		return fail(fmt.Errorf("client: subscribe %s: send: %w", s.topic, err))
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return fail(fmt.Errorf("client: subscribe %s: waiting for subscribed: %w", s.topic, err))
		}
		s.touch()
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			return fail(fmt.Errorf("client: subscribe %s: malformed frame: %w", s.topic, err))
		}
		switch {
		case f.Op == "subscribed" && f.ID == id:
			var head uint64
			if f.HeadSeq != nil {
				head = *f.HeadSeq
			}
			return conn, head, nil
		case f.Op == "error" && (f.ID == id || f.ID == ""):
			return fail(f.error())
		}
	}
}

// run delivers events until the subscription ends, reconnecting as needed.
func (s *Subscription) run(conn *websocket.Conn) {
	defer close(s.done)
	attempt := 0
	var err error
	for {
		var delivered bool
		delivered, err = s.serve(conn)
		s.setConn(nil)
		if s.ctx.Err() != nil || !retryable(err) {
			break
		}
		if delivered {
			attempt = 0
		}
		conn = nil
		for conn == nil {
			attempt++
			if !sleep(s.ctx, s.backoff(attempt, err)) {
				break
			}
			after := s.pos.Load()
			var cerr error
			if conn, _, cerr = s.connect(&after); cerr != nil {
				err = cerr
				if s.ctx.Err() != nil || !retryable(cerr) {
					break
				}
			}
		}
		if conn == nil {
			break
		}
		s.setConn(conn)
	}
	switch {
	case s.closed.Load():
		err = nil
	case s.parent.Err() != nil:
		err = s.parent.Err()
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.events)
}

// serve reads conn until it fails or the subscription ends, handing events
// to the caller. It reports whether it delivered any, and why it stopped.
func (s *Subscription) serve(conn *websocket.Conn) (delivered bool, err error) {
	kctx, kcancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	if s.opts.KeepAlive > 0 {
		wg.Go(func() { s.keepAlive(kctx, conn) })
	}
	defer func() {
		kcancel()
		conn.CloseNow()
		wg.Wait()
	}()
	for {
		_, data, err := conn.Read(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return delivered, s.ctx.Err()
			}
			return delivered, fmt.Errorf("client: subscription %s: read: %w", s.topic, err)
		}
		s.touch()
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			return delivered, fmt.Errorf("client: subscription %s: malformed frame: %w", s.topic, err)
		}
		switch f.Op {
		case "event":
			if f.ID != s.subID {
				continue // an earlier subscription's
			}
			var ev Event
			if err := json.Unmarshal(f.Event, &ev); err != nil {
				return delivered, fmt.Errorf("client: subscription %s: malformed event: %w", s.topic, err)
			}
			if ev.Seq <= s.pos.Load() {
				continue // seen before a reconnection
			}
			ev.Raw = f.Event
			s.delivering.Store(true)
			select {
			case s.events <- ev:
			case <-s.ctx.Done():
				s.delivering.Store(false)
				return delivered, s.ctx.Err()
			}
			s.delivering.Store(false)
			s.touch()
			s.pos.Store(ev.Seq)
			delivered = true
		case "error":
			if f.ID != "" && f.ID != s.subID {
				continue
			}
			if f.Code == "lagged" {
				// The server ended the subscription, not the connection:
				// subscribe again from where the caller is. Everything the
				// server sent before the notice has been delivered.
				after := s.pos.Load()
				if err := s.sendSubscribe(s.ctx, conn, s.newSubID(), &after); err != nil {
					return delivered, fmt.Errorf("client: subscription %s: resubscribe: %w", s.topic, err)
				}
				continue
			}
			return delivered, f.error()
		}
	}
}

// keepAlive pings a quiet connection and drops a dead one.
func (s *Subscription) keepAlive(ctx context.Context, conn *websocket.Conn) {
	every := s.opts.KeepAlive
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle := time.Since(time.Unix(0, s.active.Load()))
		if idle >= 3*every && !s.delivering.Load() {
			conn.CloseNow() // the reader fails and run reconnects
			return
		}
		if idle >= every {
			// The pong (and the write itself) tell the server we are alive;
			// a failed write shows in the reader.
			conn.Write(ctx, websocket.MessageText, pingFrame)
		}
	}
}

// backoff is the wait before reconnection attempt n (from 1): MinBackoff
// doubling up to MaxBackoff, with jitter (half to all of it), and at least
// the server's Retry-After.
func (s *Subscription) backoff(n int, err error) time.Duration {
	d := s.opts.MaxBackoff
	if n <= 30 {
		d = min(s.opts.MinBackoff<<(n-1), s.opts.MaxBackoff)
	}
	d = d/2 + rand.N(d/2+1)
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > d {
		d = min(e.RetryAfter, time.Minute)
	}
	return d
}

// retryable reports whether a subscription that failed with err may
// succeed by reconnecting: after a transport failure, or an error the server
// calls temporary (unavailable, internal, rate_limited).
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.temporary()
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
