package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	"engram/client"
	"engram/internal/server"
)

// A worker reads a context and a subscriber follows its events.
func Example() {
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

	// The subscriber: every event of the context from the start of the log
	// (AfterSeq nil would mean live events only). It reconnects and resumes
	// by itself until Close.
	from := uint64(0)
	sub, err := c.Subscribe(ctx, "contexts/support-1", client.SubscribeOptions{AfterSeq: &from})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// Agents write into the context. Their own ids make retries safe.
	if _, err := c.CreateContext(ctx, client.ContextCreate{ID: "support-1", AgentIDs: []string{"triage"}}); err != nil {
		log.Fatal(err)
	}
	question, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{
		ID: client.NewID(), ContextID: "support-1", AgentID: "triage", Type: client.UnitMessage,
		Payload: json.RawMessage(`"my order is late"`),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := c.CreateUnit(ctx, client.WorkUnitCreate{
		ID: client.NewID(), ContextID: "support-1", AgentID: "planner", Type: client.UnitPlan,
		Payload:       json.RawMessage(`"look the order up"`),
		Relationships: []client.Relationship{{TargetID: question.ID, Type: client.RelRespondsTo}},
	}); err != nil {
		log.Fatal(err)
	}

	// The worker reads the context, then its units oldest first.
	cx, err := c.GetContext(ctx, "support-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("context", cx.ID, "agents", cx.AgentIDs)
	for u, err := range c.AllUnits(ctx, "support-1", client.ListUnitsOptions{Order: client.OrderAsc}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("unit", u.Seq, u.AgentID, u.Type, string(u.Payload))
	}
	for u, err := range c.AllRelated(ctx, question.ID, client.RelatedOptions{Direction: client.DirectionIn}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("answered by", u.AgentID)
	}

	// The subscriber sees the same history as events, once each, in order.
	for range 3 {
		ev := <-sub.Events()
		fmt.Println("event", ev.Seq, ev.Type)
	}

	// Output:
	// context support-1 agents [triage]
	// unit 2 triage MESSAGE "my order is late"
	// unit 3 planner PLAN "look the order up"
	// answered by planner
	// event 1 context.created
	// event 2 workunit.created
	// event 3 workunit.created
}
