package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"time"
)

// Cron jobs are durable schedules: at each time of its expression, the
// server publishes one message on the job's queue (see CronMessage), in the
// same command as the job's LastFiredAt, so each scheduled time fires at
// most once, and exactly once while the server runs. Job names match
// ^[A-Za-z0-9._~:@-]{1,128}$.

// Catch-up policies of a cron job: what happens to the scheduled times
// missed while the server was stopped (or more than a minute late).
const (
	// CronCatchUpSkip (the default) fires none of them; the server writes
	// one cron.skipped event with their count.
	CronCatchUpSkip = "skip"
	// CronCatchUpOnce fires once, for the latest of them.
	CronCatchUpOnce = "once"
)

// CronJobSpec is what PutCron stores. Schedule and Queue are required.
type CronJobSpec struct {
	// Schedule is the cron expression: five fields (minute hour
	// day-of-month month day-of-week), six (a seconds field first) or
	// seven (seconds first, a year field last), or a macro (@hourly,
	// @daily, @weekly, @monthly, @yearly). A malformed one, or one with no
	// time after now, is ErrInvalidArgument naming the field.
	Schedule string
	// Timezone is the IANA zone the fields are read in. Empty: UTC.
	Timezone string
	// Queue is the topic each fire publishes on.
	Queue string
	// Payload is any JSON value, encoded with encoding/json (a
	// json.RawMessage is sent as it is), carried in each fire's message.
	// Nil is the JSON null.
	Payload any
	// CatchUp is CronCatchUpSkip or CronCatchUpOnce. Empty: the server's
	// default (skip).
	CatchUp string
}

// CronJob is a stored cron job.
type CronJob struct {
	Name string `json:"name"`
	// Schedule is the expression as given, runs of spaces made one.
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone"`
	Queue    string `json:"queue"`
	// Payload is the JSON given, compacted; null when none was.
	Payload   json.RawMessage `json:"payload"`
	CatchUp   string          `json:"catch_up"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// LastFiredAt is the scheduled time of the last fire; nil before the
	// first.
	LastFiredAt *time.Time `json:"last_fired_at"`
	// NextFireAt is the next scheduled time the server will deal with (it
	// can be in the past for a moment while missed times are caught up);
	// nil when the expression has no more.
	NextFireAt *time.Time `json:"next_fire_at"`
}

// CronJobList is one page of ListCron.
type CronJobList struct {
	Jobs []CronJob `json:"jobs"`
	// NextCursor is the cursor of the next page; nil (null) at the end.
	NextCursor *string `json:"next_cursor"`
}

// CronMessage is the payload of the queue message a fire publishes: decode
// a LeasedMessage's Payload into it.
type CronMessage struct {
	// Job is the job's name.
	Job string `json:"job"`
	// ScheduledAt is the scheduled time this message fires for (not the
	// time it was published).
	ScheduledAt time.Time `json:"scheduled_at"`
	// Payload is the job's payload (null when it has none).
	Payload json.RawMessage `json:"payload"`
}

// cronPath is the path of a job, after checking that its name is not empty
// (an empty one would make another route).
func cronPath(op, name string) (string, error) {
	if err := requireID(op, "name", name); err != nil {
		return "", err
	}
	return "/v1/cron/" + segment(name), nil
}

// PutCron creates the job name, or replaces it whole (PUT
// /v1/cron/{name}), and returns it as stored. A new job fires from its
// first scheduled time after its creation. A replaced job keeps CreatedAt
// and LastFiredAt; if its Schedule or Timezone changed, the new schedule
// starts from now (nothing earlier counts as missed).
func (c *Client) PutCron(ctx context.Context, name string, spec CronJobSpec) (*CronJob, error) {
	p, err := cronPath("PutCron", name)
	if err != nil {
		return nil, err
	}
	in := struct {
		Schedule string `json:"schedule"`
		Timezone string `json:"timezone,omitempty"` // none: UTC
		Queue    string `json:"queue"`
		Payload  any    `json:"payload"`
		CatchUp  string `json:"catch_up,omitempty"` // none: the server's default
	}{Schedule: spec.Schedule, Timezone: spec.Timezone, Queue: spec.Queue, Payload: spec.Payload, CatchUp: spec.CatchUp}
	if in.Payload == nil {
		in.Payload = json.RawMessage("null")
	}
	var out CronJob
	if _, err := c.do(ctx, http.MethodPut, p, nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCron returns the job name (GET /v1/cron/{name}); ErrNotFound when
// there is none.
func (c *Client) GetCron(ctx context.Context, name string) (*CronJob, error) {
	p, err := cronPath("GetCron", name)
	if err != nil {
		return nil, err
	}
	var out CronJob
	if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListCron returns one page of the jobs, by name (GET /v1/cron).
func (c *Client) ListCron(ctx context.Context, opts ListOptions) (*CronJobList, error) {
	var out CronJobList
	if _, err := c.do(ctx, http.MethodGet, "/v1/cron", opts.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllCron iterates over the jobs, by name, from opts.Cursor on, following
// the cursors with pages of opts.Limit jobs. An error is yielded once, as
// the last element.
func (c *Client) AllCron(ctx context.Context, opts ListOptions) iter.Seq2[CronJob, error] {
	return pages(opts.Cursor, func(cursor string) ([]CronJob, *string, error) {
		page, err := c.ListCron(ctx, ListOptions{Limit: opts.Limit, Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		return page.Jobs, page.NextCursor, nil
	})
}

// DeleteCron deletes the job name (DELETE /v1/cron/{name}); it fires no
// more. A job that does not exist is ErrNotFound.
func (c *Client) DeleteCron(ctx context.Context, name string) error {
	p, err := cronPath("DeleteCron", name)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodDelete, p, nil, nil, nil)
	return err
}
