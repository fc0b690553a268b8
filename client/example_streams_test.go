package client_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"engram/client"
	"engram/internal/server"
)

// Agents share live state in a stream: a group per room, an item per
// player, updated with ops that apply as one change.
func ExampleClient_UpdateItem() {
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

	// Set a value, then update it: the ops apply in order, as one change.
	if _, err := c.SetItem(ctx, "game", "room-1", "alice", map[string]any{"score": 10, "badges": []string{"rookie"}}); err != nil {
		log.Fatal(err)
	}
	ch, err := c.UpdateItem(ctx, "game", "room-1", "alice",
		client.OpIncrement("score", 5),
		client.OpAppend([]string{"badges"}, "first-blood"),
		client.OpIncrement("badges", 1), // not a number: skipped and reported
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("old", string(ch.OldValue))
	fmt.Println("new", string(ch.NewValue))
	for _, e := range ch.Errors {
		fmt.Println("skipped op", e.OpIndex, e.Code)
	}

	// Another player, then the whole group, page by page.
	if _, err := c.SetItem(ctx, "game", "room-1", "bob", map[string]any{"score": 7}); err != nil {
		log.Fatal(err)
	}
	for it, err := range c.AllItems(ctx, "game", "room-1", client.ListOptions{}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(it.ID, string(it.Value))
	}

	// Output:
	// old {"badges":["rookie"],"score":10}
	// new {"badges":["rookie","first-blood"],"score":15}
	// skipped op 2 increment.not_number
	// alice {"badges":["rookie","first-blood"],"score":15}
	// bob {"score":7}
}
