package client

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"time"
)

// Locks are TTL locks over one or more resources, taken all together or
// not at all, each acquisition with a fencing token that is strictly
// greater than every earlier one of the server. A lock is free from its
// ExpiresAt on unless renewed. Resources are 1 to 512 bytes of UTF-8
// without control characters; slashes are allowed, and ListLocks lists by
// prefix.

// AcquireRequest says what to lock, for whom and for how long.
type AcquireRequest struct {
	// Resources are the resources to lock, 1 to 64, no duplicates: all of
	// them or none.
	Resources []string
	// Holder names who holds the lock (1 to 256 bytes); others see it in
	// the conflict (see LockHeld).
	Holder string
	// TTL is how long the lock lasts unless renewed, 100 ms to 24 h (sent
	// in whole milliseconds, rounded up). Required.
	TTL time.Duration
	// Wait, when a resource is held, waits up to that long (at most 60 s)
	// in line for it before the conflict. Zero: answer at once. Waiting
	// acquirers are served first come, first served; a request does not
	// jump the line, so even a zero Wait is a conflict while others wait
	// for one of the resources.
	Wait time.Duration
}

// Lock is a held lock.
type Lock struct {
	LockID string `json:"lock_id"`
	// Resources are the locked resources, in the order of the request.
	Resources []string `json:"resources"`
	Holder    string   `json:"holder"`
	// FencingToken is strictly greater than the token of every earlier
	// acquisition on the server (restarts included). Pass it along with
	// the writes the lock protects, so that their target can refuse a
	// holder whose lock expired since a newer one was taken.
	FencingToken uint64    `json:"fencing_token"`
	AcquiredAt   time.Time `json:"acquired_at"`
	// ExpiresAt is when the lock ends unless renewed.
	ExpiresAt time.Time `json:"expires_at"`
}

// LockList is one page of ListLocks.
type LockList struct {
	Locks []Lock `json:"locks"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// LockHeldDetails says why an acquire was refused (see LockHeld).
type LockHeldDetails struct {
	// Resource is the first resource of the request found held (or
	// waited for by others).
	Resource string
	// HeldBy, LockID and ExpiresAt describe the lock holding Resource.
	// They are empty when Resource was free but other acquirers were
	// waiting for it ahead of the request.
	HeldBy    string
	LockID    string
	ExpiresAt time.Time
}

// LockHeld reports whether err is an Acquire's conflict (ErrConflict), and
// returns its details: who holds which resource, until when.
func LockHeld(err error) (*LockHeldDetails, bool) {
	var e *Error
	if !errors.As(err, &e) || !errors.Is(e, ErrConflict) {
		return nil, false
	}
	d := &LockHeldDetails{}
	d.Resource, _ = e.Details["resource"].(string)
	d.HeldBy, _ = e.Details["held_by"].(string)
	d.LockID, _ = e.Details["lock_id"].(string)
	if s, ok := e.Details["expires_at"].(string); ok {
		d.ExpiresAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	if d.Resource == "" {
		return nil, false // another conflict than a held lock
	}
	return d, true
}

// lockPath is the path of a lock, after checking that its id is not empty
// (an empty one would make another route).
func lockPath(op, lockID string) (string, error) {
	if err := requireID(op, "lock_id", lockID); err != nil {
		return "", err
	}
	return "/v1/locks/" + segment(lockID), nil
}

// Acquire locks every resource of req, or none (POST /v1/locks). A
// resource held by another lock for the whole req.Wait is ErrConflict;
// LockHeld(err) tells who holds it. The lock must be renewed (Renew)
// before its TTL ends if the work takes longer, and released (Release)
// when done.
//
// The wait fits the client's limits as Lease's long poll does: the request
// may outlast the HTTP client's Timeout (see WithHTTPClient) by the wait,
// and when ctx has a deadline the wait is cut to end a second before it,
// so that the server's answer is read rather than abandoned (the server
// gives back a lock whose client has hung up, when it notices).
func (c *Client) Acquire(ctx context.Context, req AcquireRequest) (*Lock, error) {
	wait := req.Wait
	if dl, ok := ctx.Deadline(); ok && wait > 0 {
		if left := time.Until(dl) - leaseDeadlineMargin; left < wait {
			wait = max(left.Truncate(time.Millisecond), 0)
		}
	}
	in := struct {
		Resources []string `json:"resources"`
		Holder    string   `json:"holder"`
		TTLMs     int64    `json:"ttl_ms,omitempty"` // none: let the server name it
		WaitMs    *int64   `json:"wait_ms,omitempty"`
	}{Resources: req.Resources, Holder: req.Holder, TTLMs: millis(req.TTL)}
	if in.Resources == nil {
		in.Resources = []string{} // let the server name the problem
	}
	if req.Wait != 0 {
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
	var out Lock
	if _, err := cl.do(ctx, http.MethodPost, "/v1/locks", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Renew extends a held lock to now + ttl (POST /v1/locks/{lock_id}/renew);
// its fencing token stays. A lock that was released or has expired is
// ErrGone: acquire the resources again.
func (c *Client) Renew(ctx context.Context, lockID string, ttl time.Duration) (*Lock, error) {
	p, err := lockPath("Renew", lockID)
	if err != nil {
		return nil, err
	}
	in := struct {
		TTLMs int64 `json:"ttl_ms,omitempty"`
	}{millis(ttl)}
	var out Lock
	if _, err := c.do(ctx, http.MethodPost, p+"/renew", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Release frees a held lock (DELETE /v1/locks/{lock_id}); the first
// acquirer waiting for each of its resources is woken. A lock that was
// already released or has expired is ErrGone.
func (c *Client) Release(ctx context.Context, lockID string) error {
	p, err := lockPath("Release", lockID)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodDelete, p, nil, nil, nil)
	return err
}

// GetLock returns the lock holding a resource (GET /v1/locks?resource=);
// ErrNotFound when the resource is free.
func (c *Client) GetLock(ctx context.Context, resource string) (*Lock, error) {
	var out Lock
	if _, err := c.do(ctx, http.MethodGet, "/v1/locks", url.Values{"resource": {resource}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListLocks returns one page of the locks holding a resource that starts
// with prefix ("" lists all), in the order of those resources (GET
// /v1/locks?prefix=). A lock appears once per page, but a lock holding
// several matching resources may appear again on a later page; AllLocks
// drops those repeats.
func (c *Client) ListLocks(ctx context.Context, prefix string, opts ListOptions) (*LockList, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	var out LockList
	if _, err := c.do(ctx, http.MethodGet, "/v1/locks", opts.query(q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllLocks iterates over the locks holding a resource that starts with
// prefix ("" for all), from opts.Cursor on, following the cursors with
// pages of opts.Limit locks. Each lock is yielded once, at its first
// matching resource. An error is yielded once, as the last element.
func (c *Client) AllLocks(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[Lock, error] {
	return func(yield func(Lock, error) bool) {
		seen := map[string]bool{}
		for l, err := range pages(opts.Cursor, func(cursor string) ([]Lock, *string, error) {
			page, err := c.ListLocks(ctx, prefix, ListOptions{Limit: opts.Limit, Cursor: cursor})
			if err != nil {
				return nil, nil, err
			}
			return page.Locks, page.NextCursor, nil
		}) {
			if err == nil && len(l.Resources) > 1 { // only those can come again
				if seen[l.LockID] {
					continue
				}
				seen[l.LockID] = true
			}
			if !yield(l, err) {
				return
			}
		}
	}
}
