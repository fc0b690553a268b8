package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"

	"engram/client"
)

// cronCommand is `engram cron` and its subcommands, in usage order.
var cronCommand = commandGroup{name: "cron", notes: "At each time of its schedule, a job\n" +
	`publishes {"job","scheduled_at","payload"} on its queue (lease it with engram queue lease).` + "\n" +
	"Output is compact JSON, one value per line. Exit status: 0 ok, 1 error (the server's\n" +
	"message on stderr: a bad expression, an unknown job), 2 usage.\n", subs: []subcommand{
	{"put", "NAME --schedule EXPR --queue TOPIC [--timezone Z] [--payload JSON] [--catch-up skip|once]", "create or replace the job NAME; prints it (with its next_fire_at)", runCronPut},
	{"get", "NAME", "print the job NAME (with its last_fired_at and next_fire_at)", runCronGet},
	{"rm", "NAME", "delete the job NAME: it fires no more", runCronRm},
	{"ls", "", "list the jobs by name, one a line", runCronList},
}}

// runCron creates, shows, deletes and lists cron jobs: engram cron
// put|get|rm|ls.
func runCron(args []string, stdout, stderr io.Writer) error {
	return cronCommand.run(args, stdout, stderr)
}

func runCronPut(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("cron", "put", "NAME",
		"Creates the job NAME, or replaces it whole, and prints it:\n"+
			`{"name","schedule","timezone","queue","payload","catch_up","created_at","updated_at",`+"\n"+
			`"last_fired_at","next_fire_at"}. --schedule has five fields (minute hour day month`+"\n"+
			"weekday), six (seconds first) or seven (seconds first, year last), or is @hourly,\n"+
			"@daily, @weekly, @monthly or @yearly; quote it. A bad one is an error naming the field\n"+
			"(exit status 1). A replaced job keeps created_at and last_fired_at.", stderr)
	schedule := f.String("schedule", "", "the cron `expression` (\"*/5 * * * * *\": every 5 seconds); required")
	queue := f.String("queue", "", "the `topic` each fire publishes on; required")
	timezone := f.String("timezone", "", "the IANA `zone` the fields are read in (default: UTC)")
	payload := f.String("payload", "", "any `JSON` carried in each fire's message (quote a string: '\"text\"'); - reads stdin (default: null)")
	catchUp := f.String("catch-up", "", "what to do with times missed while the server was stopped: `skip|once` (default skip: fire none; once: fire once, for the latest)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	switch {
	case *schedule == "":
		return f.usageError("--schedule is required")
	case *queue == "":
		return f.usageError("--queue is required")
	}
	spec := client.CronJobSpec{Schedule: *schedule, Timezone: *timezone, Queue: *queue, CatchUp: *catchUp}
	if *payload != "" {
		b, err := readArg(*payload)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return f.usageError("--payload is not valid JSON (quote a string: '\"text\"')")
		}
		spec.Payload = json.RawMessage(b)
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	j, err := c.PutCron(ctx, pos[0], spec)
	if err != nil {
		return err
	}
	return printJSON(stdout, j)
}

func runCronGet(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("cron", "get", "NAME",
		"Prints the job NAME, with its last_fired_at (the scheduled time of its last fire, null\n"+
			"before the first) and next_fire_at. An unknown job is an error (404 not_found, exit\n"+
			"status 1).", stderr)
	return f.call(args, 1, 1, stdout, func(ctx context.Context, c *client.Client, pos []string) (any, error) {
		return c.GetCron(ctx, pos[0])
	})
}

func runCronRm(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("cron", "rm", "NAME",
		"Deletes the job NAME; prints nothing. It fires no more (messages it published stay on\n"+
			"their queue). An unknown job is an error (404 not_found, exit status 1).", stderr)
	return f.call(args, 1, 1, stdout, func(ctx context.Context, c *client.Client, pos []string) (any, error) {
		return nil, c.DeleteCron(ctx, pos[0])
	})
}

func runCronList(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("cron", "ls", "",
		"Prints every job, one JSON object a line, by name, following every page.", stderr)
	pageSize := f.Int("page-size", 0, "jobs per request, 1 to 1000 (0: the server's default)")
	if _, err := f.parse(args, 0, 0); err != nil {
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
	for j, err := range c.AllCron(ctx, client.ListOptions{Limit: *pageSize}) {
		if err != nil {
			return err
		}
		if err := printJSON(w, j); err != nil {
			return err
		}
	}
	return w.Flush()
}
