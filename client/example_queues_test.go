package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"engram/client"
	"engram/internal/server"
)

// A worker consumes a queue: each message is acked when its handler
// succeeds and nacked (to be delivered again after its backoff) when it
// fails.
func ExampleClient_Work() {
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

	// Producers publish jobs. A dedupe id makes a retried publish safe.
	noBackoff := time.Duration(0) // retry at once (the default backoff is 1 s)
	for _, job := range []string{"resize-1", "resize-2", "resize-3"} {
		if _, err := c.Publish(ctx, "images", client.PublishMessage{
			Payload: map[string]string{"job": job}, DedupeID: job, Backoff: &noBackoff,
		}); err != nil {
			log.Fatal(err)
		}
	}
	if p, err := c.Publish(ctx, "images", client.PublishMessage{Payload: map[string]string{"job": "resize-1"}, DedupeID: "resize-1"}); err == nil {
		fmt.Println("retried publish is a duplicate:", p.Duplicate)
	}

	// The worker runs until its context ends; here it stops once every job
	// is done. resize-2 fails on its first attempt and is delivered again.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := 0
	err = c.Work(wctx, "images", client.WorkOptions{}, func(ctx context.Context, m client.LeasedMessage) error {
		fmt.Printf("attempt %d: %s\n", m.Attempt, m.Payload)
		if string(m.Payload) == `{"job":"resize-2"}` && m.Attempt == 1 {
			return errors.New("storage busy")
		}
		if done++; done == 3 {
			stop()
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	st, err := c.QueueStats(ctx, "images")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ready %d, leased %d, dead %d\n", st.Ready, st.Leased, st.Dead)

	// Output:
	// retried publish is a duplicate: true
	// attempt 1: {"job":"resize-1"}
	// attempt 1: {"job":"resize-2"}
	// attempt 1: {"job":"resize-3"}
	// attempt 2: {"job":"resize-2"}
	// ready 0, leased 0, dead 0
}
