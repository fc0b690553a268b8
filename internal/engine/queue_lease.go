package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"engram/internal/storage"
	"engram/internal/wal"
)

// LeaseInput asks for up to Max ready messages, hidden from other consumers
// for VisibilityMs, waiting up to WaitMs for one to be ready.
type LeaseInput struct {
	Max          *int   `json:"max"`
	VisibilityMs *int64 `json:"visibility_ms"`
	WaitMs       *int64 `json:"wait_ms"`
}

// Leased is a leased message.
type Leased struct {
	ID             string          `json:"id"`
	Payload        json.RawMessage `json:"payload"`
	Attempt        int             `json:"attempt"`
	Receipt        string          `json:"receipt"`
	LeaseExpiresAt string          `json:"lease_expires_at"`
	PublishedAt    string          `json:"published_at"`
}

// Lease leases up to max ready messages of topic, in ready order
// (available_at, then seq). With a wait it long-polls: publishes, expiring
// leases and nacks wake it, not polling.
func (e *Engine) Lease(ctx context.Context, topic string, in LeaseInput) ([]Leased, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, err
	}
	max, vis, wait := 1, DefaultVisibility, time.Duration(0)
	if in.Max != nil {
		if *in.Max < 1 || *in.Max > MaxLease {
			return nil, invalidf("max: %d out of range 1..%d", *in.Max, MaxLease)
		}
		max = *in.Max
	}
	if in.VisibilityMs != nil {
		if *in.VisibilityMs < 1 || *in.VisibilityMs > MaxVisibility.Milliseconds() {
			return nil, invalidf("visibility_ms: %d out of range 1..%d", *in.VisibilityMs, MaxVisibility.Milliseconds())
		}
		vis = time.Duration(*in.VisibilityMs) * time.Millisecond
	}
	if in.WaitMs != nil {
		if *in.WaitMs < 0 || *in.WaitMs > MaxLeaseWait.Milliseconds() {
			return nil, invalidf("wait_ms: %d out of range 0..%d", *in.WaitMs, MaxLeaseWait.Milliseconds())
		}
		wait = time.Duration(*in.WaitMs) * time.Millisecond
	}
	start := time.Now()
	deadline := start.Add(wait)
	for {
		// Take the wake-up channel before looking, so that a publish
		// between the look and the wait is not missed. Without a wait
		// there is nothing to wake.
		var woken <-chan struct{}
		if wait > 0 {
			woken = e.qwait.channel(topic)
		}
		out, err := e.leaseOnce(ctx, topic, max, vis)
		if err != nil || len(out) > 0 {
			e.qwait.done(topic, woken)
			if len(out) > 0 {
				e.qm.leaseLatency.Observe(time.Since(start).Seconds())
			}
			return out, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			e.qwait.done(topic, woken)
			return out, nil
		}
		t := time.NewTimer(left)
		select {
		case <-woken:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			e.qwait.done(topic, woken)
			return []Leased{}, nil
		case <-e.qstop:
			t.Stop()
			e.qwait.done(topic, woken)
			return []Leased{}, nil
		}
		t.Stop()
		e.qwait.done(topic, woken)
	}
}

func (e *Engine) leaseOnce(ctx context.Context, topic string, max int, vis time.Duration) ([]Leased, error) {
	var q *qtx
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		q = e.newQtx(tx)
		p := storage.QueueReadyPrefix(topic)
		end := storage.PrefixEnd(p)
		lower := p
		if b := q.readyLowOf(topic); b != nil {
			lower = b
		}
		it, err := tx.NewIter(lower, end)
		if err != nil {
			return nil, err
		}
		var ids []ulid.ULID
		var last []byte
		for ok := it.First(); ok && len(ids) < max; ok = it.Next() {
			var id ulid.ULID
			if len(it.Value()) != 16 {
				it.Close()
				return nil, fmt.Errorf("engine: corrupt ready entry")
			}
			copy(id[:], it.Value())
			ids = append(ids, id)
			last = append(last[:0], it.Key()...)
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		// Every entry below the last one taken is gone now; with none
		// found, every entry from the bound on is.
		if last != nil {
			q.raiseReady(topic, last)
		} else {
			q.raiseReady(topic, end)
		}
		out := make([]Leased, 0, len(ids))
		for _, id := range ids {
			m, err := q.get(id)
			if err != nil {
				return nil, err
			}
			if m == nil || m.State != queueStateReady {
				return nil, fmt.Errorf("engine: ready entry of %s without a ready message", id)
			}
			q.unindex(m)
			if err := q.move(m, queueStateLeased); err != nil {
				return nil, err
			}
			m.Attempt++
			m.LeaseExpiresAt = q.now + int64(vis)
			m.LeaseSeq, m.LeaseNonce = tx.NextSeq(), newNonce()
			q.tx.Set(storage.QueueLeasedKey(m.LeaseExpiresAt, m.ID), nil)
			q.noteDeadline(m.LeaseExpiresAt)
			if err := q.put(m); err != nil {
				return nil, err
			}
			q.emit(QueueLeased, m, msgEvent{LeaseExpiresAt: fmtNano(m.LeaseExpiresAt)})
			payload, err := q.payload(m.ID)
			if err != nil {
				return nil, err
			}
			out = append(out, Leased{
				ID: m.ID.String(), Payload: payload, Attempt: m.Attempt, Receipt: receipt(m.ID, m.LeaseSeq, m.LeaseNonce),
				LeaseExpiresAt: fmtNano(m.LeaseExpiresAt), PublishedAt: fmtNano(m.PublishedAt),
			})
		}
		q.finish()
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	e.afterQueueCommand(q)
	out := res.([]Leased)
	e.qm.leased.Add(float64(len(out)))
	for _, m := range out {
		if m.Attempt > 1 {
			e.qm.redelivered.Inc()
		}
	}
	return out, nil
}

// leasedMsg returns the message a receipt leased, if that lease still
// holds: not acked or nacked, not expired, not re-leased.
func (q *qtx) leasedMsg(topic, r string) (*qmsg, error) {
	id, leaseSeq, nonce, ok := parseReceipt(r)
	if !ok {
		return nil, nil
	}
	m, err := q.get(id)
	if err != nil || m == nil {
		return nil, err
	}
	if m.Topic != topic || m.State != queueStateLeased || m.LeaseSeq != leaseSeq || m.LeaseNonce != nonce || m.LeaseExpiresAt <= q.now {
		return nil, nil
	}
	return m, nil
}

// AckResult is the answer to an ack.
type AckResult struct {
	Acked int      `json:"acked"`
	Stale []string `json:"stale"`
}

// Ack acknowledges leased messages: they are done and deleted. A receipt
// whose lease no longer holds (expired, re-leased, already acked, unknown)
// is not acked and is listed in Stale.
func (e *Engine) Ack(ctx context.Context, topic string, receipts []string) (*AckResult, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, err
	}
	if len(receipts) == 0 || len(receipts) > MaxLease {
		return nil, invalidf("receipts: %d receipts, want 1..%d", len(receipts), MaxLease)
	}
	for i, r := range receipts {
		if _, _, _, ok := parseReceipt(r); !ok {
			return nil, invalidf("receipts[%d]: %q is not a receipt (use the receipt a lease answered)", i, Truncate(r))
		}
	}
	var q *qtx
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		q = e.newQtx(tx)
		out := &AckResult{Stale: []string{}}
		for _, r := range receipts {
			m, err := q.leasedMsg(topic, r)
			if err != nil {
				return nil, err
			}
			if m == nil {
				out.Stale = append(out.Stale, r)
				continue
			}
			q.unindex(m)
			if err := q.move(m, ""); err != nil {
				return nil, err
			}
			tx.Delete(storage.QueueMsgKey(m.ID))
			tx.Delete(storage.QueuePayloadKey(m.ID))
			q.emit(QueueAcked, m, msgEvent{})
			if err := q.leaveGroup(m); err != nil {
				return nil, err
			}
			out.Acked++
		}
		q.finish()
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	e.afterQueueCommand(q)
	out := res.(*AckResult)
	e.qm.acked.Add(float64(out.Acked))
	return out, nil
}

// NackInput gives a leased message back.
type NackInput struct {
	Receipt string  `json:"receipt"`
	DelayMs *int64  `json:"delay_ms"`
	Error   *string `json:"error"`
}

// NackResult says where a nacked message went.
type NackResult struct {
	ID          string  `json:"id"`
	Attempt     int     `json:"attempt"`
	State       string  `json:"state"` // ready, delayed or dead
	AvailableAt *string `json:"available_at"`
}

// Nack ends a lease without an ack: the message is ready again after
// delay_ms (or its backoff), or dead once it was delivered max_attempts
// times. A stale receipt is ErrGone.
func (e *Engine) Nack(ctx context.Context, topic string, in NackInput) (*NackResult, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, err
	}
	if in.Receipt == "" {
		return nil, invalidf("receipt: required")
	}
	delay := time.Duration(-1)
	if in.DelayMs != nil {
		if *in.DelayMs < 0 || *in.DelayMs > MaxQueueDelay.Milliseconds() {
			return nil, invalidf("delay_ms: %d out of range 0..%d", *in.DelayMs, MaxQueueDelay.Milliseconds())
		}
		delay = time.Duration(*in.DelayMs) * time.Millisecond
	}
	errText := ""
	if in.Error != nil {
		if len(*in.Error) > MaxQueueErrorLen {
			return nil, invalidf("error: longer than %d bytes", MaxQueueErrorLen)
		}
		errText = *in.Error
	}
	if _, _, _, ok := parseReceipt(in.Receipt); !ok {
		return nil, invalidf("receipt: %q is not a receipt (use the receipt a lease answered)", Truncate(in.Receipt))
	}

	var q *qtx
	res, err := e.seq.Submit(ctx, func(tx *wal.Tx) (any, error) {
		q = e.newQtx(tx)
		m, err := q.leasedMsg(topic, in.Receipt)
		if err != nil {
			return nil, err
		}
		if m == nil {
			return nil, gonef("receipt: stale (the lease expired, or the message was acked, nacked or leased again)")
		}
		if err := q.release(m, delay, queueReasonNack, errText); err != nil {
			return nil, err
		}
		q.finish()
		out := &NackResult{ID: m.ID.String(), Attempt: m.Attempt, State: m.State}
		if m.State != queueStateDead {
			at := fmtNano(m.AvailableAt)
			out.AvailableAt = &at
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	e.afterQueueCommand(q)
	out := res.(*NackResult)
	e.qm.nacked.Inc()
	if out.State == queueStateDead {
		e.qm.dead.Inc()
	}
	return out, nil
}
