package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"engram/client"
)

// queueCommand is `engram queue` and its subcommands, in usage order.
var queueCommand = commandGroup{name: "queue", notes: "Durations are Go durations (500ms, 30s, 2m).\n" +
	"Output is compact JSON, one value per line. Exit status: 0 ok, 1 error (the server's\n" +
	"message on stderr), 2 usage.\n", subs: []subcommand{
	{"publish", "TOPIC PAYLOAD|- [--delay D] [--dedupe-id ID] [--group G] [--max-attempts N] [--backoff D]", "publish a message (JSON; - reads it from stdin)", runQueuePublish},
	{"lease", "TOPIC [--max N] [--visibility D] [--wait D]", "lease ready messages, printing one JSON message a line", runQueueLease},
	{"ack", "TOPIC RECEIPT...", "acknowledge leased messages: done", runQueueAck},
	{"nack", "TOPIC RECEIPT [--delay D] [--error TEXT]", "give a leased message back, to be delivered again (or to die)", runQueueNack},
	{"stats", "[TOPIC]", "print a topic's message counts, or every topic's", runQueueStats},
	{"dead", "TOPIC", "list a topic's dead letters, one JSON message a line", runQueueDead},
	{"redrive", "TOPIC", "move a topic's dead letters back to ready", runQueueRedrive},
}}

// runQueue publishes, leases and settles queue messages: engram queue
// publish|lease|ack|nack|stats|dead|redrive.
func runQueue(args []string, stdout, stderr io.Writer) error {
	return queueCommand.run(args, stdout, stderr)
}

// optDuration is a duration flag that tells "not given" from 0.
type optDuration struct{ d *time.Duration }

func (o *optDuration) String() string {
	if o.d == nil {
		return ""
	}
	return o.d.String()
}

func (o *optDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (500ms, 30s, 2m)", s)
	}
	o.d = &d
	return nil
}

// publishedLine is a published message as `queue publish` prints it.
type publishedLine struct {
	ID          string    `json:"id"`
	Seq         uint64    `json:"seq"`
	AvailableAt time.Time `json:"available_at"`
	Duplicate   bool      `json:"duplicate"`
}

func runQueuePublish(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "publish", "TOPIC PAYLOAD|-",
		"Publishes one message whose payload is PAYLOAD, any JSON (quote a string: '\"text\"'); -\n"+
			"reads it from stdin. Put -- before a PAYLOAD that starts with - (a negative number).\n"+
			`Prints {"id":..,"seq":..,"available_at":..,"duplicate":false}; "duplicate" is true when`+"\n"+
			"the --dedupe-id was seen on the topic in the last 24 h (nothing was published; the id\n"+
			"is the first message's).", stderr)
	delay := f.Duration("delay", 0, "make the message ready after this `duration`")
	dedupe := f.String("dedupe-id", "", "publish only if this `id` was not seen on the topic in the last 24 h")
	group := f.String("group", "", "FIFO `group`: its messages are delivered one at a time, in order")
	maxAttempts := f.Int("max-attempts", 0, "deliveries before the message goes to the dead letters, 1 to 1000 (0: the server's default, 5)")
	var backoff optDuration
	f.Var(&backoff, "backoff", "first redelivery delay, doubling with each attempt (default: the server's, 1s)")
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return err
	}
	payload, err := readArg(pos[1])
	if err != nil {
		return err
	}
	if !json.Valid(payload) {
		return f.usageError("PAYLOAD is not valid JSON (quote a string: '\"text\"')")
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	p, err := c.Publish(ctx, pos[0], client.PublishMessage{
		Payload: json.RawMessage(payload), Delay: *delay, DedupeID: *dedupe, Group: *group,
		MaxAttempts: *maxAttempts, Backoff: backoff.d,
	})
	if err != nil {
		return err
	}
	return printJSON(stdout, publishedLine{p.ID, p.Seq, p.AvailableAt, p.Duplicate})
}

func runQueueLease(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "lease", "TOPIC",
		"Leases up to --max ready messages and prints them, one JSON object a line:\n"+
			`{"id","payload","attempt","receipt","lease_expires_at","published_at"}. Ack each by its`+"\n"+
			"receipt before --visibility ends, or it is delivered again. With --wait it waits for a\n"+
			"message when none is ready; no message prints nothing (exit status 0).", stderr)
	maxN := f.Int("max", 1, "most messages to lease, 1 to 1000")
	vis := f.Duration("visibility", 0, "how long the messages stay hidden from other consumers (0: the server's default, 30s)")
	wait := f.Duration("wait", 0, "long-poll up to this `duration` (at most 30s) for a message")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	msgs, err := c.Lease(ctx, pos[0], client.LeaseOptions{Max: *maxN, Visibility: *vis, Wait: *wait})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	for _, m := range msgs {
		if err := printJSON(w, m); err != nil {
			return err
		}
	}
	return w.Flush()
}

func runQueueAck(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "ack", "TOPIC RECEIPT...",
		"Acknowledges leased messages by their receipts: they are done and deleted. Prints\n"+
			`{"acked":n,"stale":[..]}. A stale receipt (the lease had ended) is not acked; then the`+"\n"+
			"exit status is 1.", stderr)
	pos, err := f.parse(args, 0, math.MaxInt)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return f.usageError("want TOPIC and at least one RECEIPT, got %d arguments", len(pos))
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	res, err := c.Ack(ctx, pos[0], pos[1:]...)
	if err != nil {
		return err
	}
	if err := printJSON(stdout, res); err != nil {
		return err
	}
	if len(res.Stale) > 0 {
		return fmt.Errorf("%d of %d receipts stale (the lease had ended; not acked)", len(res.Stale), len(pos)-1)
	}
	return nil
}

func runQueueNack(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "nack", "TOPIC RECEIPT",
		"Gives a leased message back: it is ready again after --delay (default: its backoff), or\n"+
			"goes to the dead letters if this was its last attempt. Prints\n"+
			`{"id","attempt","state","available_at"} (state: ready, delayed or dead). A stale`+"\n"+
			"receipt is an error (exit status 1).", stderr)
	var delay optDuration
	f.Var(&delay, "delay", "make the message ready again after this duration (0: at once; default: its backoff)")
	errText := f.String("error", "", "why it failed, kept with the message (shown in the dead letters)")
	return f.call(args, 2, 2, stdout, func(ctx context.Context, c *client.Client, pos []string) (any, error) {
		return c.Nack(ctx, pos[0], pos[1], client.NackOptions{Delay: delay.d, Error: *errText})
	})
}

func runQueueStats(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "stats", "[TOPIC]",
		`With TOPIC, prints its counts: {"topic","ready","leased","delayed","dead"} (zeros for a`+"\n"+
			"topic never used). Without, prints those of every topic, one a line, by name.", stderr)
	pos, err := f.parse(args, 0, 1)
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	if len(pos) == 1 {
		st, err := c.QueueStats(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, st)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for q, err := range c.AllQueues(ctx, client.ListOptions{}) {
		if err != nil {
			return err
		}
		if err := printJSON(w, q); err != nil {
			return err
		}
	}
	return w.Flush()
}

func runQueueDead(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "dead", "TOPIC",
		"Prints the topic's dead letters in the order they died, one JSON object a line:\n"+
			`{"id","payload","attempt","error","dead_at"}, following every page.`, stderr)
	pageSize := f.Int("page-size", 0, "messages per request, 1 to 1000 (0: the server's default)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if *pageSize < 0 || *pageSize > 1000 {
		return f.usageError("--page-size must be 0 to 1000")
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for m, err := range c.AllDead(ctx, pos[0], client.ListOptions{Limit: *pageSize}) {
		if err != nil {
			return err
		}
		if err := printJSON(w, m); err != nil {
			return err
		}
	}
	return w.Flush()
}

func runQueueRedrive(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("queue", "redrive", "TOPIC",
		`Moves every dead letter of the topic back to ready, with attempt 0. Prints {"redriven":n}.`, stderr)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	n, err := c.Redrive(ctx, pos[0])
	if err != nil {
		return err
	}
	return printJSON(stdout, struct {
		Redriven int `json:"redriven"`
	}{n})
}
