package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"engram/client"
	"engram/internal/server"
)

// lockServer runs an in-process server until the test ends and returns a
// client of it (with opts).
func lockServer(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	c, err := client.New("http://"+srv.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	// A Shutdown before the serve loop runs would leak it (see start).
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func lockCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestLockAcquireRenewRelease(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)

	before := time.Now()
	l, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main", "deploy/prod"}, Holder: "agent-1", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if l.LockID == "" || !slices.Equal(l.Resources, []string{"repo/main", "deploy/prod"}) || l.Holder != "agent-1" || l.FencingToken != 1 ||
		l.AcquiredAt.Before(before.Add(-time.Second)) || l.ExpiresAt.Sub(l.AcquiredAt) != time.Minute {
		t.Fatalf("acquire: %+v", l)
	}
	got, err := c.GetLock(ctx, "deploy/prod")
	if err != nil || got.LockID != l.LockID || !got.ExpiresAt.Equal(l.ExpiresAt) || got.FencingToken != 1 {
		t.Fatalf("get: %+v, %v", got, err)
	}

	// Held: ErrConflict, and LockHeld says by whom.
	_, err = c.Acquire(ctx, client.AcquireRequest{Resources: []string{"free", "deploy/prod"}, Holder: "agent-2", TTL: time.Second})
	if !errors.Is(err, client.ErrConflict) {
		t.Fatalf("acquire held: %v", err)
	}
	d, ok := client.LockHeld(err)
	if !ok || d.Resource != "deploy/prod" || d.HeldBy != "agent-1" || d.LockID != l.LockID || !d.ExpiresAt.Equal(l.ExpiresAt) {
		t.Fatalf("LockHeld: %+v, %v (%v)", d, ok, err)
	}
	// All or none: "free" was not taken.
	if _, err := c.GetLock(ctx, "free"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get free: %v", err)
	}
	// A wait that ends is a conflict too, after the wait.
	t0 := time.Now()
	_, err = c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main"}, Holder: "agent-2", TTL: time.Second, Wait: 150 * time.Millisecond})
	if _, ok := client.LockHeld(err); !ok || time.Since(t0) < 150*time.Millisecond {
		t.Fatalf("acquire with a wait: %v after %v", err, time.Since(t0))
	}

	// Renew moves the expiry, keeps the token.
	r, err := c.Renew(ctx, l.LockID, 2*time.Minute)
	if err != nil || r.LockID != l.LockID || r.FencingToken != 1 || !r.AcquiredAt.Equal(l.AcquiredAt) || !r.ExpiresAt.After(l.ExpiresAt) {
		t.Fatalf("renew: %+v, %v", r, err)
	}
	// A sub-millisecond TTL is rounded up, not down to an invalid 0.
	if _, err := c.Renew(ctx, l.LockID, 99*time.Millisecond+time.Microsecond); err != nil {
		t.Fatalf("renew 99.001ms: %v", err)
	}
	if _, err := c.Renew(ctx, l.LockID, time.Minute); err != nil {
		t.Fatal(err)
	}

	// Release; then it is gone, and the resources are free.
	if err := c.Release(ctx, l.LockID); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, l.LockID); !errors.Is(err, client.ErrGone) {
		t.Fatalf("release again: %v", err)
	}
	if _, err := c.Renew(ctx, l.LockID, time.Minute); !errors.Is(err, client.ErrGone) {
		t.Fatalf("renew after release: %v", err)
	}
	if _, err := c.GetLock(ctx, "repo/main"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after release: %v", err)
	}
	l2, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main"}, Holder: "agent-2", TTL: time.Second})
	if err != nil || l2.FencingToken <= l.FencingToken {
		t.Fatalf("acquire again: %+v, %v", l2, err)
	}
	// Not a lock conflict: LockHeld says no.
	if _, ok := client.LockHeld(err); ok {
		t.Error("LockHeld(nil) is true")
	}
	if _, ok := client.LockHeld(&client.Error{Status: 409, Code: "conflict", Details: map[string]any{}}); ok {
		t.Error("LockHeld of a conflict without details is true")
	}
	if _, ok := client.LockHeld(fmt.Errorf("wrapped: %w", &client.Error{Status: 409, Code: "conflict", Details: map[string]any{"resource": "r"}})); !ok {
		t.Error("LockHeld of a wrapped conflict is false")
	}
}

func TestLockBadInput(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	for _, tc := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"no resources", func() error {
			_, err := c.Acquire(ctx, client.AcquireRequest{Holder: "h", TTL: time.Second})
			return err
		}, "resources: 0 resources, want 1..64"},
		{"no holder", func() error {
			_, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"r"}, TTL: time.Second})
			return err
		}, "holder: required"},
		{"no ttl", func() error {
			_, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"r"}, Holder: "h"})
			return err
		}, "ttl_ms: required"},
		{"ttl too long", func() error {
			_, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"r"}, Holder: "h", TTL: 25 * time.Hour})
			return err
		}, "ttl_ms: 90000000 out of range"},
		{"wait too long", func() error {
			// (Without a deadline: one would cut the wait to fit.)
			_, err := c.Acquire(context.Background(), client.AcquireRequest{Resources: []string{"r"}, Holder: "h", TTL: time.Second, Wait: time.Minute + time.Millisecond})
			return err
		}, "wait_ms: 60001 out of range"},
		{"control character", func() error {
			_, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"a\x00"}, Holder: "h", TTL: time.Second})
			return err
		}, "resources[0]: "},
		{"renew no id", func() error { _, err := c.Renew(ctx, "", time.Second); return err }, "Renew: lock_id: required"},
		{"renew bad id", func() error { _, err := c.Renew(ctx, "nope", time.Second); return err }, `lock_id: "nope" is not a ULID`},
		{"renew no ttl", func() error { _, err := c.Renew(ctx, client.NewID(), 0); return err }, "ttl_ms: required"},
		{"release no id", func() error { return c.Release(ctx, "") }, "Release: lock_id: required"},
		{"release bad id", func() error { return c.Release(ctx, "not-a-ulid") }, `lock_id: "not-a-ulid" is not a ULID`},
		{"get no resource", func() error { _, err := c.GetLock(ctx, ""); return err }, "resource: required"},
		{"list bad limit", func() error { _, err := c.ListLocks(ctx, "", client.ListOptions{Limit: 1001}); return err }, "limit: 1001 out of range"},
		{"list bad cursor", func() error { _, err := c.ListLocks(ctx, "a", client.ListOptions{Cursor: "!"}); return err }, "cursor: malformed"},
	} {
		err := tc.fn()
		if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid_argument with %q", tc.name, err, tc.want)
		}
	}
	if _, err := c.Renew(ctx, strings.ToLower(client.NewID()), time.Second); !errors.Is(err, client.ErrGone) {
		t.Errorf("renew an unknown lock: %v", err)
	}
}

// TestLockWait: a waiting Acquire gets the lock when it is released, even
// when the wait outlasts the HTTP client's Timeout; a ctx deadline cuts the
// wait so that the answer is read.
func TestLockWait(t *testing.T) {
	c := lockServer(t, client.WithHTTPClient(&http.Client{Timeout: 300 * time.Millisecond}))
	ctx := lockCtx(t)
	held, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"r"}, Holder: "first", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(time.Second, func() { c.Release(context.Background(), held.LockID) })
	t0 := time.Now()
	l, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"r"}, Holder: "second", TTL: time.Minute, Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("waiting acquire (beyond the client's 300ms timeout): %v", err)
	}
	if took := time.Since(t0); l.Holder != "second" || took < 900*time.Millisecond || took > 8*time.Second {
		t.Fatalf("waiting acquire: %+v after %v", l, took)
	}

	// The client's Timeout still bounds a request that does not wait.
	// A deadline 1.5 s away cuts a 30 s wait to 0.5 s: the conflict
	// comes back, not a timeout.
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	_, err = c.Acquire(dctx, client.AcquireRequest{Resources: []string{"r"}, Holder: "third", TTL: time.Minute, Wait: 30 * time.Second})
	if _, ok := client.LockHeld(err); !ok {
		t.Fatalf("acquire with a deadline: %v after %v", err, time.Since(t0))
	}
	if took := time.Since(t0); took < 300*time.Millisecond || took > 1400*time.Millisecond {
		t.Errorf("acquire with a deadline took %v, want about 0.5s", took)
	}
}

func TestLockList(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	acquire := func(holder string, resources ...string) string {
		t.Helper()
		l, err := c.Acquire(ctx, client.AcquireRequest{Resources: resources, Holder: holder, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return l.LockID
	}
	a1 := acquire("h1", "a/1")
	a2 := acquire("h2", "a/2")
	multi := acquire("h3", "a/3", "z")
	b1 := acquire("h4", "b/1")

	page, err := c.ListLocks(ctx, "a/", client.ListOptions{Limit: 2})
	if err != nil || len(page.Locks) != 2 || page.Locks[0].LockID != a1 || page.Locks[1].LockID != a2 || page.NextCursor == nil {
		t.Fatalf("page 1: %+v, %v", page, err)
	}
	page, err = c.ListLocks(ctx, "a/", client.ListOptions{Limit: 2, Cursor: *page.NextCursor})
	if err != nil || len(page.Locks) != 1 || page.Locks[0].LockID != multi || page.NextCursor != nil {
		t.Fatalf("page 2: %+v, %v", page, err)
	}
	if page, err := c.ListLocks(ctx, "nothing", client.ListOptions{}); err != nil || page.Locks == nil || len(page.Locks) != 0 || page.NextCursor != nil {
		t.Fatalf("empty page: %+v, %v", page, err)
	}

	// All of them, each once, whatever the page size: the lock on a/3 and
	// z comes on two pages.
	for _, limit := range []int{0, 1, 2, 3} {
		var ids []string
		for l, err := range c.AllLocks(ctx, "", client.ListOptions{Limit: limit}) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, l.LockID)
		}
		if want := []string{a1, a2, multi, b1}; !slices.Equal(ids, want) {
			t.Errorf("AllLocks limit %d: %v, want %v", limit, ids, want)
		}
	}
	var ids []string
	for l, err := range c.AllLocks(ctx, "a/", client.ListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.LockID)
		if len(ids) == 2 {
			break
		}
	}
	if !slices.Equal(ids, []string{a1, a2}) {
		t.Errorf("AllLocks a/ with a break: %v", ids)
	}
	// An error is yielded once, last.
	n := 0
	for _, err := range c.AllLocks(ctx, "", client.ListOptions{Limit: -1}) {
		n++
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("AllLocks with a bad limit: %v", err)
		}
	}
	if n != 1 {
		t.Errorf("AllLocks with a bad limit yielded %d times", n)
	}
}

// Two agents share a resource: the second waits in line for the first to
// release it, and the fencing token tells their writes apart.
func ExampleClient_Acquire() {
	// An in-process server for the example; a real program passes the
	// server's URL to client.New.
	dir, err := os.MkdirTemp("", "engram-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Sync: "none"})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	c, err := client.New("http://" + srv.Addr())
	if err != nil {
		log.Fatal(err)
	}

	first, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main"}, Holder: "agent-1", TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Holder, "holds", first.Resources, "with token", first.FencingToken)

	// Without waiting, the second agent learns who holds it.
	_, err = c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main"}, Holder: "agent-2", TTL: 30 * time.Second})
	if held, ok := client.LockHeld(err); ok {
		fmt.Printf("%s is held by %s\n", held.Resource, held.HeldBy)
	}

	// Waiting, it gets the lock as soon as the first agent releases it.
	time.AfterFunc(100*time.Millisecond, func() {
		if err := c.Release(ctx, first.LockID); err != nil {
			log.Fatal(err)
		}
	})
	second, err := c.Acquire(ctx, client.AcquireRequest{Resources: []string{"repo/main"}, Holder: "agent-2", TTL: 30 * time.Second, Wait: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(second.Holder, "holds", second.Resources, "with token", second.FencingToken)
	if err := c.Release(ctx, second.LockID); err != nil {
		log.Fatal(err)
	}

	// Output:
	// agent-1 holds [repo/main] with token 1
	// repo/main is held by agent-1
	// agent-2 holds [repo/main] with token 2
}
