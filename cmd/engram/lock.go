package main

import (
	"bufio"
	"context"
	"io"
	"math"

	"engram/client"
)

// lockCommand is `engram lock` and its subcommands, in usage order.
var lockCommand = commandGroup{name: "lock", notes: "Durations are Go durations (500ms, 30s, 2m).\n" +
	"Output is compact JSON, one value per line. Exit status: 0 ok, 1 error (the server's\n" +
	"message on stderr: a held resource, a lock gone), 2 usage.\n", subs: []subcommand{
	{"acquire", "RESOURCE... --holder H --ttl D [--wait D]", "lock every RESOURCE, or none; prints the lock (with its lock_id and fencing_token)", runLockAcquire},
	{"renew", "LOCK_ID --ttl D", "extend a held lock to now + --ttl", runLockRenew},
	{"release", "LOCK_ID", "release a held lock", runLockRelease},
	{"get", "RESOURCE", "print the lock holding RESOURCE (exit status 1 when it is free)", runLockGet},
	{"ls", "[PREFIX]", "list the locks holding a resource that starts with PREFIX (all without), one a line", runLockList},
}}

// runLock acquires, renews, releases and lists locks: engram lock
// acquire|renew|release|get|ls.
func runLock(args []string, stdout, stderr io.Writer) error {
	return lockCommand.run(args, stdout, stderr)
}

func runLockAcquire(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("lock", "acquire", "RESOURCE...",
		"Locks every RESOURCE (1 to 64) for --holder, or none, for --ttl unless renewed. Prints\n"+
			`{"lock_id","resources","holder","fencing_token","acquired_at","expires_at"}; renew or`+"\n"+
			"release it by its lock_id. A resource held by another lock is an error naming its holder\n"+
			"(exit status 1), after waiting up to --wait for it. Waiting acquirers are served in\n"+
			"arrival order, and a new one does not jump the line; interrupting a wait (Ctrl-C)\n"+
			"leaves the line.", stderr)
	holder := f.String("holder", "", "who holds the lock (1 to 256 bytes), shown to others; required")
	var ttl, wait optDuration
	f.Var(&ttl, "ttl", "how long the lock lasts unless renewed, 100ms to 24h; required")
	f.Var(&wait, "wait", "wait up to this long (at most 1m) for held resources (default: do not wait)")
	pos, err := f.parse(args, 0, math.MaxInt)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return f.usageError("want at least one RESOURCE")
	case *holder == "":
		return f.usageError("--holder is required")
	case ttl.d == nil || *ttl.d == 0:
		return f.usageError("--ttl is required (100ms to 24h)")
	}
	req := client.AcquireRequest{Resources: pos, Holder: *holder, TTL: *ttl.d}
	if wait.d != nil {
		req.Wait = *wait.d
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	l, err := c.Acquire(ctx, req)
	if err != nil {
		return err
	}
	return printJSON(stdout, l)
}

func runLockRenew(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("lock", "renew", "LOCK_ID",
		"Extends a held lock to now + --ttl and prints it (its fencing_token stays). A lock that\n"+
			"was released or has expired is an error (410 gone, exit status 1): acquire it again.", stderr)
	var ttl optDuration
	f.Var(&ttl, "ttl", "the lock's new time to live from now, 100ms to 24h; required")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if ttl.d == nil || *ttl.d == 0 {
		return f.usageError("--ttl is required (100ms to 24h)")
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	l, err := c.Renew(ctx, pos[0], *ttl.d)
	if err != nil {
		return err
	}
	return printJSON(stdout, l)
}

func runLockRelease(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("lock", "release", "LOCK_ID",
		"Releases a held lock; prints nothing. A lock that was already released or has expired\n"+
			"is an error (410 gone, exit status 1).", stderr)
	return f.call(args, 1, 1, stdout, func(ctx context.Context, c *client.Client, pos []string) (any, error) {
		return nil, c.Release(ctx, pos[0])
	})
}

func runLockGet(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("lock", "get", "RESOURCE",
		"Prints the lock holding RESOURCE. A free resource is an error (404 not_found, exit\n"+
			"status 1).", stderr)
	return f.call(args, 1, 1, stdout, func(ctx context.Context, c *client.Client, pos []string) (any, error) {
		return c.GetLock(ctx, pos[0])
	})
}

func runLockList(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("lock", "ls", "[PREFIX]",
		"Prints the locks holding a resource that starts with PREFIX (every lock without one),\n"+
			"one JSON object a line, in the order of their first such resource, following every\n"+
			"page; each lock once.", stderr)
	pageSize := f.Int("page-size", 0, "locks per request, 1 to 1000 (0: the server's default)")
	pos, err := f.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if *pageSize < 0 || *pageSize > 1000 {
		return f.usageError("--page-size must be 0 to 1000")
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for l, err := range c.AllLocks(ctx, prefix, client.ListOptions{Limit: *pageSize}) {
		if err != nil {
			return err
		}
		if err := printJSON(w, l); err != nil {
			return err
		}
	}
	return w.Flush()
}
