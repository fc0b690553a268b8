package client

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"time"
	"unicode/utf8"
)

// Queues are durable topics of messages delivered at least once: a consumer
// leases messages, which hides them for a visibility time, and acks them
// when done; a lease that expires, or a nack, makes the message ready again
// after a backoff, and after its max attempts it moves to the topic's
// dead-letter list. Topic names match ^[A-Za-z0-9._~:@-]{1,128}$.

// PublishMessage is one message to publish. Only Payload is required.
type PublishMessage struct {
	// Payload is any JSON value, encoded with encoding/json (a
	// json.RawMessage is sent as it is). Nil is the JSON null.
	Payload any
	// Delay makes the message ready that long after the publish (up to 30
	// days; sent in whole milliseconds, rounded up). Zero: ready at once.
	Delay time.Duration
	// DedupeID, when not empty, makes the publish idempotent: a dedupe id
	// the topic saw in the last 24 h publishes nothing and answers the
	// first message, marked Duplicate.
	DedupeID string
	// MaxAttempts is how many deliveries the message gets before it goes
	// to the dead-letter list, 1 to 1000. Zero: the server's default (5).
	MaxAttempts int
	// Backoff is the first redelivery delay after an expired lease or a
	// nack without a delay; it doubles with each attempt. Nil: the server's
	// default (1 s). A pointer, because zero (no backoff) is valid.
	Backoff *time.Duration
	// Group, when not empty, makes the message part of a FIFO group: the
	// messages of a group are delivered one at a time, in publish order.
	Group string
}

// wirePublish is a PublishMessage as the server reads it.
type wirePublish struct {
	Payload     any    `json:"payload"`
	DelayMs     int64  `json:"delay_ms,omitempty"`
	DedupeID    string `json:"dedupe_id,omitempty"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	BackoffMs   *int64 `json:"backoff_ms,omitempty"`
	Group       string `json:"group,omitempty"`
}

func (m PublishMessage) wire() wirePublish {
	w := wirePublish{Payload: m.Payload, DelayMs: millis(m.Delay), DedupeID: m.DedupeID, MaxAttempts: m.MaxAttempts, Group: m.Group}
	if w.Payload == nil {
		w.Payload = json.RawMessage("null") // nil would send no payload
	}
	if m.Backoff != nil {
		ms := millis(*m.Backoff)
		w.BackoffMs = &ms
	}
	return w
}

// millis is d in whole milliseconds, rounded away from zero, so that a
// positive duration never turns into zero (which may mean "the default").
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	switch {
	case d > 0 && d%time.Millisecond != 0:
		ms++
	case d < 0 && d%time.Millisecond != 0:
		ms--
	}
	return ms
}

// Published is a published message.
type Published struct {
	ID string `json:"id"`
	// Seq is the seq of the message's queue.published event.
	Seq uint64 `json:"seq"`
	// AvailableAt is when the message is (or was) ready to lease.
	AvailableAt time.Time `json:"available_at"`
	// Duplicate is true when the message's dedupe id had been seen: this is
	// the first message with that id, and nothing was published.
	Duplicate bool `json:"duplicate"`
}

// queuePath is the path of a topic, after checking that it is not empty
// (an empty one would make another route).
func queuePath(op, topic string) (string, error) {
	if err := requireID(op, "topic", topic); err != nil {
		return "", err
	}
	return "/v1/queues/" + segment(topic), nil
}

// Publish publishes one message on a topic (POST
// /v1/queues/{topic}/messages). A message whose DedupeID the topic saw in
// the last 24 h is not published again: the answer is the first message,
// with Duplicate set.
func (c *Client) Publish(ctx context.Context, topic string, msg PublishMessage) (*Published, error) {
	out, err := c.publish(ctx, "Publish", topic, msg.wire())
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, errors.New("client: POST /v1/queues/{topic}/messages: the server answered no message")
	}
	return &out[0], nil
}

// PublishBatch publishes 1 to 1000 messages on a topic atomically, all or
// none (POST /v1/queues/{topic}/messages), and returns them in request
// order, each duplicate with Duplicate set (the server answers 200 when
// every message is one, 201 otherwise).
func (c *Client) PublishBatch(ctx context.Context, topic string, msgs []PublishMessage) ([]Published, error) {
	in := struct {
		Messages []wirePublish `json:"messages"`
	}{make([]wirePublish, len(msgs))} // never null: let the server name an empty batch
	for i, m := range msgs {
		in.Messages[i] = m.wire()
	}
	return c.publish(ctx, "PublishBatch", topic, in)
}

func (c *Client) publish(ctx context.Context, op, topic string, in any) ([]Published, error) {
	p, err := queuePath(op, topic)
	if err != nil {
		return nil, err
	}
	var out struct {
		Messages []Published `json:"messages"`
	}
	if _, err := c.do(ctx, http.MethodPost, p+"/messages", nil, in, &out); err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// LeaseOptions says how many messages to lease and for how long. The zero
// value leases at most one message for the server's default visibility (30
// s), without waiting.
type LeaseOptions struct {
	// Max is the most messages to lease, 1 to 1000. Zero: 1.
	Max int
	// Visibility is how long the leased messages stay hidden from other
	// consumers (1 ms to 12 h); ack them before it ends, or they are
	// delivered again. Zero: the server's default (30 s).
	Visibility time.Duration
	// Wait long-polls up to that long (at most 30 s) for a message to be
	// ready when none is. Zero: answer at once.
	Wait time.Duration
}

// LeasedMessage is a leased message.
type LeasedMessage struct {
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
	// Attempt is this delivery's number, 1 for the first.
	Attempt int `json:"attempt"`
	// Receipt names this lease of the message, for Ack and Nack. A receipt
	// of an earlier lease of the same message is stale.
	Receipt        string    `json:"receipt"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	PublishedAt    time.Time `json:"published_at"`
}

// leaseDeadlineMargin is the time a long-poll keeps, before its context's
// deadline, for its answer to come back.
const leaseDeadlineMargin = time.Second

// Lease leases up to opts.Max ready messages of a topic (POST
// /v1/queues/{topic}/lease), in ready order (available_at, then publish
// order). With opts.Wait it long-polls: the server answers as soon as a
// message is ready, or with no message when the wait ends. An empty answer
// is an empty slice and a nil error.
//
// The long poll fits the client's limits: the request may outlast the HTTP
// client's Timeout (see WithHTTPClient) by the wait, and when ctx has a
// deadline the wait is cut to end a second before it, so that the server's
// answer is read (a message leased for an answer nobody reads would stay
// hidden until its visibility ends).
func (c *Client) Lease(ctx context.Context, topic string, opts LeaseOptions) ([]LeasedMessage, error) {
	p, err := queuePath("Lease", topic)
	if err != nil {
		return nil, err
	}
	wait := opts.Wait
	if dl, ok := ctx.Deadline(); ok && wait > 0 {
		if left := time.Until(dl) - leaseDeadlineMargin; left < wait {
			wait = max(left.Truncate(time.Millisecond), 0)
		}
	}
	in := struct {
		Max          int    `json:"max,omitempty"`
		VisibilityMs int64  `json:"visibility_ms,omitempty"`
		WaitMs       *int64 `json:"wait_ms,omitempty"`
	}{Max: opts.Max, VisibilityMs: millis(opts.Visibility)}
	if opts.Wait != 0 {
		ms := millis(wait)
		in.WaitMs = &ms
	}
	cl := c
	if c.hc.Timeout > 0 && wait > 0 {
		// Let the request last the wait beyond the client's Timeout; the
		// copy shares the transport, so connections are still reused.
		hc := *c.hc
		hc.Timeout += wait
		cc := *c
		cc.hc = &hc
		cl = &cc
	}
	var out struct {
		Messages []LeasedMessage `json:"messages"`
	}
	if _, err := cl.do(ctx, http.MethodPost, p+"/lease", nil, in, &out); err != nil {
		return nil, err
	}
	if out.Messages == nil {
		out.Messages = []LeasedMessage{}
	}
	return out.Messages, nil
}

// AckResult is the answer to Ack.
type AckResult struct {
	// Acked is how many messages were acked: done and deleted.
	Acked int `json:"acked"`
	// Stale lists the receipts whose lease no longer held (expired, leased
	// again, already acked or nacked, unknown): those were not acked.
	Stale []string `json:"stale"`
}

// Ack acknowledges leased messages by their receipts (POST
// /v1/queues/{topic}/ack): they are done and deleted. A stale receipt is
// not an error; it is listed in the result's Stale (its message may be
// delivered again, or may have been acked already).
func (c *Client) Ack(ctx context.Context, topic string, receipts ...string) (*AckResult, error) {
	p, err := queuePath("Ack", topic)
	if err != nil {
		return nil, err
	}
	in := struct {
		Receipts []string `json:"receipts"`
	}{receipts}
	if in.Receipts == nil {
		in.Receipts = []string{} // let the server name the problem
	}
	var out AckResult
	if _, err := c.do(ctx, http.MethodPost, p+"/ack", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NackOptions says when a nacked message is ready again, and why it
// failed.
type NackOptions struct {
	// Delay makes the message ready again after it (0: at once). Nil: after
	// the message's backoff, backoff × 2^(attempt−1).
	Delay *time.Duration
	// Error is kept with the message (up to 4096 bytes) and shown in the
	// dead-letter list if it dies. Empty keeps the previous one.
	Error string
}

// NackResult says where a nacked message went.
type NackResult struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	// State is "ready", "delayed" or "dead" (the message had had its max
	// attempts).
	State string `json:"state"`
	// AvailableAt is when the message is ready again; nil when it is dead.
	AvailableAt *time.Time `json:"available_at"`
}

// Nack gives a leased message back without acking it (POST
// /v1/queues/{topic}/nack): it is ready again after opts.Delay (or its
// backoff), or goes to the dead-letter list if this was its last attempt.
// A stale receipt (the lease expired, or the message was acked, nacked or
// leased again) is ErrGone.
func (c *Client) Nack(ctx context.Context, topic, receipt string, opts NackOptions) (*NackResult, error) {
	p, err := queuePath("Nack", topic)
	if err != nil {
		return nil, err
	}
	in := struct {
		Receipt string  `json:"receipt"`
		DelayMs *int64  `json:"delay_ms,omitempty"`
		Error   *string `json:"error,omitempty"`
	}{Receipt: receipt}
	if opts.Delay != nil {
		ms := millis(*opts.Delay)
		in.DelayMs = &ms
	}
	if opts.Error != "" {
		in.Error = &opts.Error
	}
	var out NackResult
	if _, err := c.do(ctx, http.MethodPost, p+"/nack", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeadMessage is a message of a dead-letter list.
type DeadMessage struct {
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
	// Attempt is the number of deliveries it had.
	Attempt int `json:"attempt"`
	// Error is its last error: a nack's, or "lease expired".
	Error  string    `json:"error"`
	DeadAt time.Time `json:"dead_at"`
}

// DeadList is one page of ListDead.
type DeadList struct {
	Messages []DeadMessage `json:"messages"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// ListDead returns one page of a topic's dead-letter list, in the order
// the messages died (GET /v1/queues/{topic}/dead). A topic without dead
// letters (or never used) is an empty page.
func (c *Client) ListDead(ctx context.Context, topic string, opts ListOptions) (*DeadList, error) {
	p, err := queuePath("ListDead", topic)
	if err != nil {
		return nil, err
	}
	var out DeadList
	if _, err := c.do(ctx, http.MethodGet, p+"/dead", opts.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllDead iterates over a topic's dead letters, in the order they died,
// from opts.Cursor on, following the cursors with pages of opts.Limit
// messages. An error is yielded once, as the last element.
func (c *Client) AllDead(ctx context.Context, topic string, opts ListOptions) iter.Seq2[DeadMessage, error] {
	return pages(opts.Cursor, func(cursor string) ([]DeadMessage, *string, error) {
		page, err := c.ListDead(ctx, topic, ListOptions{Limit: opts.Limit, Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		return page.Messages, page.NextCursor, nil
	})
}

// Redrive moves every dead letter of a topic back to ready, with attempt
// 0 (POST /v1/queues/{topic}/redrive), and returns how many it moved.
func (c *Client) Redrive(ctx context.Context, topic string) (int, error) {
	p, err := queuePath("Redrive", topic)
	if err != nil {
		return 0, err
	}
	var out struct {
		Redriven int `json:"redriven"`
	}
	if _, err := c.do(ctx, http.MethodPost, p+"/redrive", nil, nil, &out); err != nil {
		return 0, err
	}
	return out.Redriven, nil
}

// QueueStats are a topic's messages by state.
type QueueStats struct {
	Topic string `json:"topic"`
	// Ready counts the messages waiting behind their FIFO group's head
	// too.
	Ready   int64 `json:"ready"`
	Leased  int64 `json:"leased"`
	Delayed int64 `json:"delayed"`
	Dead    int64 `json:"dead"`
}

// QueueList is one page of ListQueues.
type QueueList struct {
	Queues []QueueStats `json:"queues"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// QueueStats returns a topic's message counts (GET /v1/queues/{topic});
// all zero for a topic never used.
func (c *Client) QueueStats(ctx context.Context, topic string) (*QueueStats, error) {
	p, err := queuePath("QueueStats", topic)
	if err != nil {
		return nil, err
	}
	var out QueueStats
	if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListQueues returns one page of the topics that hold or held messages,
// by name, with their counts (GET /v1/queues).
func (c *Client) ListQueues(ctx context.Context, opts ListOptions) (*QueueList, error) {
	var out QueueList
	if _, err := c.do(ctx, http.MethodGet, "/v1/queues", opts.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllQueues iterates over the topics, by name, from opts.Cursor on,
// following the cursors with pages of opts.Limit topics. An error is
// yielded once, as the last element.
func (c *Client) AllQueues(ctx context.Context, opts ListOptions) iter.Seq2[QueueStats, error] {
	return pages(opts.Cursor, func(cursor string) ([]QueueStats, *string, error) {
		page, err := c.ListQueues(ctx, ListOptions{Limit: opts.Limit, Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		return page.Queues, page.NextCursor, nil
	})
}

// WorkOptions configures Work. The zero value leases one message at a time
// with the server's default visibility, long-polling 20 s.
type WorkOptions struct {
	// Max is the most messages one lease takes (0: 1); Work handles them
	// one after another, so their visibility must cover all of them.
	Max int
	// Visibility is each lease's visibility (0: the server's default, 30
	// s). A message whose handling outlasts it is delivered again.
	Visibility time.Duration
	// Wait is each lease's long-poll wait (0: 20 s; at most 30 s).
	Wait time.Duration
	// OnError, when not nil, is called with each error Work gets past: a
	// failed lease it retries, a failed or stale ack or nack (the message
	// will be delivered again). Called from Work's goroutine.
	OnError func(error)
}

// workSettle bounds the ack or nack that settles a message after Work's
// context ended.
const workSettle = 5 * time.Second

// ErrStaleAck is passed to WorkOptions.OnError when a handled message could
// not be acked because its lease no longer held: it will be delivered
// again (or was already handled by another consumer).
var ErrStaleAck = errors.New("client: ack of a stale receipt (the lease had ended; the message will be delivered again)")

// Work consumes a topic until ctx ends: it long-polls for messages, calls
// handle for each, one at a time, acks the message when handle returns nil
// and nacks it with the error's text (for the dead-letter list) otherwise,
// so that it is delivered again after its backoff. Delivery is at least
// once: handle must tolerate a message it has seen before (a lease that
// expired while handling, a lost ack).
//
// handle gets ctx; a message whose handling was under way when ctx ended is
// still acked or nacked (within 5 s), and the leased messages not yet
// handled are nacked to be ready again at once. Failed leases are retried
// with backoff (1 s to 30 s, or the server's Retry-After) while retrying can
// help. Work returns nil when ctx ends, and an error that retrying cannot
// fix (a bad topic, refused credentials) at once. Run several Work calls at
// once to handle messages concurrently.
func (c *Client) Work(ctx context.Context, topic string, opts WorkOptions, handle func(ctx context.Context, m LeasedMessage) error) error {
	if err := requireID("Work", "topic", topic); err != nil {
		return err
	}
	if opts.Wait == 0 {
		opts.Wait = 20 * time.Second
	}
	report := func(err error) {
		if opts.OnError != nil {
			opts.OnError(err)
		}
	}
	failures := 0
	for ctx.Err() == nil {
		msgs, err := c.Lease(ctx, topic, LeaseOptions{Max: opts.Max, Visibility: opts.Visibility, Wait: opts.Wait})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return err
			}
			report(err)
			failures++
			d := min(time.Second<<min(failures-1, 5), 30*time.Second)
			var e *Error
			if errors.As(err, &e) && e.RetryAfter > d {
				d = min(e.RetryAfter, time.Minute)
			}
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		for i, m := range msgs {
			if ctx.Err() != nil {
				// Give back the messages not handled: ready again at once.
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workSettle)
				var zero time.Duration
				for _, m := range msgs[i:] {
					if _, err := c.Nack(sctx, topic, m.Receipt, NackOptions{Delay: &zero, Error: "worker stopped before handling it"}); err != nil {
						report(err)
					}
				}
				cancel()
				return nil
			}
			herr := handle(ctx, m)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workSettle)
			if herr == nil {
				res, err := c.Ack(sctx, topic, m.Receipt)
				switch {
				case err != nil:
					report(err)
				case len(res.Stale) > 0:
					report(ErrStaleAck)
				}
			} else if _, err := c.Nack(sctx, topic, m.Receipt, NackOptions{Error: errorText(herr)}); err != nil {
				report(err)
			}
			cancel()
		}
	}
	return nil
}

// errorText is err's text cut to the 4096 bytes a nack keeps, on a rune
// boundary.
func errorText(err error) string {
	const maxLen = 4096
	s := err.Error()
	if s == "" {
		s = "error"
	}
	if len(s) <= maxLen {
		return s
	}
	i := maxLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
