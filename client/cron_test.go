package client_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"engram/client"
)

func TestCronPutGetDelete(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)

	before := time.Now()
	j, err := c.PutCron(ctx, "nightly", client.CronJobSpec{
		Schedule: "0  0 3 * * *", Timezone: "Europe/Paris", Queue: "reports",
		Payload: map[string]any{"kind": "nightly"}, CatchUp: client.CronCatchUpOnce,
	})
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != "nightly" || j.Schedule != "0 0 3 * * *" || j.Timezone != "Europe/Paris" || j.Queue != "reports" ||
		string(j.Payload) != `{"kind":"nightly"}` || j.CatchUp != "once" || j.CreatedAt.Before(before.Add(-time.Second)) ||
		!j.UpdatedAt.Equal(j.CreatedAt) || j.LastFiredAt != nil || j.NextFireAt == nil {
		t.Fatalf("put: %+v", j)
	}
	// The next fire is 03:00 in Paris, within a day.
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	if n := j.NextFireAt.In(paris); n.Hour() != 3 || n.Minute() != 0 || n.Second() != 0 || !n.After(before) || n.Sub(before) > 25*time.Hour {
		t.Fatalf("next_fire_at: %v", n)
	}

	got, err := c.GetCron(ctx, "nightly")
	if err != nil || got.Name != "nightly" || got.Schedule != j.Schedule || !got.CreatedAt.Equal(j.CreatedAt) ||
		got.NextFireAt == nil || !got.NextFireAt.Equal(*j.NextFireAt) || string(got.Payload) != string(j.Payload) {
		t.Fatalf("get: %+v, %v", got, err)
	}

	// Replace: the defaults (UTC, skip, null payload), created_at kept.
	j2, err := c.PutCron(ctx, "nightly", client.CronJobSpec{Schedule: "@hourly", Queue: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if j2.Timezone != "UTC" || j2.CatchUp != client.CronCatchUpSkip || string(j2.Payload) != "null" || j2.Queue != "other" ||
		!j2.CreatedAt.Equal(j.CreatedAt) || !j2.UpdatedAt.After(j.UpdatedAt) || j2.NextFireAt == nil ||
		j2.NextFireAt.Minute() != 0 || j2.NextFireAt.Second() != 0 {
		t.Fatalf("replace: %+v", j2)
	}
	// A json.RawMessage payload is sent as it is.
	j3, err := c.PutCron(ctx, "raw", client.CronJobSpec{Schedule: "*/5 * * * *", Queue: "q", Payload: json.RawMessage(`[1, "two"]`)})
	if err != nil || string(j3.Payload) != `[1,"two"]` {
		t.Fatalf("raw payload: %+v, %v", j3, err)
	}

	if err := c.DeleteCron(ctx, "nightly"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCron(ctx, "nightly"); !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), `cron job "nightly" not found`) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := c.DeleteCron(ctx, "nightly"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := c.GetCron(ctx, "never"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

func TestCronBadInput(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	put := func(name string, spec client.CronJobSpec) func() error {
		return func() error { _, err := c.PutCron(ctx, name, spec); return err }
	}
	for _, tc := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"bad field", put("j", client.CronJobSpec{Schedule: "61 * * * *", Queue: "q"}), `schedule: minute field "61"`},
		{"field count", put("j", client.CronJobSpec{Schedule: "* * *", Queue: "q"}), `schedule: "* * *" has 3 fields`},
		{"no schedule", put("j", client.CronJobSpec{Queue: "q"}), "schedule: required"},
		{"bad macro", put("j", client.CronJobSpec{Schedule: "@often", Queue: "q"}), `schedule: unknown macro "@often"`},
		{"never", put("j", client.CronJobSpec{Schedule: "0 0 30 2 *", Queue: "q"}), `schedule: "0 0 30 2 *" has no time after now`},
		{"bad zone", put("j", client.CronJobSpec{Schedule: "* * * * *", Timezone: "Mars/Olympus", Queue: "q"}), `timezone: "Mars/Olympus"`},
		{"no queue", put("j", client.CronJobSpec{Schedule: "* * * * *"}), "queue: required"},
		{"bad queue", put("j", client.CronJobSpec{Schedule: "* * * * *", Queue: "a/b"}), `queue: "a/b" must match`},
		{"bad catch_up", put("j", client.CronJobSpec{Schedule: "* * * * *", Queue: "q", CatchUp: "all"}), `catch_up: "all" is not skip or once`},
		{"bad name", put("a b", client.CronJobSpec{Schedule: "* * * * *", Queue: "q"}), `name: "a b" must match`},
		{"put no name", put("", client.CronJobSpec{Schedule: "* * * * *", Queue: "q"}), "PutCron: name: required"},
		{"get no name", func() error { _, err := c.GetCron(ctx, ""); return err }, "GetCron: name: required"},
		{"delete no name", func() error { return c.DeleteCron(ctx, "") }, "DeleteCron: name: required"},
		{"list bad limit", func() error { _, err := c.ListCron(ctx, client.ListOptions{Limit: 1001}); return err }, "limit: 1001 out of range"},
		{"list bad cursor", func() error { _, err := c.ListCron(ctx, client.ListOptions{Cursor: "!"}); return err }, "cursor: malformed"},
	} {
		err := tc.fn()
		if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid_argument with %q", tc.name, err, tc.want)
		}
	}
	// A 4xx wrote nothing.
	if page, err := c.ListCron(ctx, client.ListOptions{}); err != nil || len(page.Jobs) != 0 {
		t.Fatalf("after bad puts: %+v, %v", page, err)
	}
}

func TestCronList(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	var names []string
	for i := range 5 {
		name := fmt.Sprintf("job-%d", 4-i) // created out of order, listed by name
		if _, err := c.PutCron(ctx, name, client.CronJobSpec{Schedule: "@daily", Queue: "q"}); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	slices.Sort(names)

	page, err := c.ListCron(ctx, client.ListOptions{Limit: 2})
	if err != nil || len(page.Jobs) != 2 || page.Jobs[0].Name != "job-0" || page.Jobs[1].Name != "job-1" || page.NextCursor == nil {
		t.Fatalf("page 1: %+v, %v", page, err)
	}
	if page.Jobs[0].NextFireAt == nil || page.Jobs[0].Queue != "q" {
		t.Fatalf("page 1 job: %+v", page.Jobs[0])
	}
	page, err = c.ListCron(ctx, client.ListOptions{Limit: 3, Cursor: *page.NextCursor})
	if err != nil || len(page.Jobs) != 3 || page.Jobs[2].Name != "job-4" || page.NextCursor != nil {
		t.Fatalf("page 2: %+v, %v", page, err)
	}

	for _, limit := range []int{0, 1, 2, 5, 6} {
		var got []string
		for j, err := range c.AllCron(ctx, client.ListOptions{Limit: limit}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, j.Name)
		}
		if !slices.Equal(got, names) {
			t.Errorf("AllCron limit %d: %v, want %v", limit, got, names)
		}
	}
	var got []string
	for j, err := range c.AllCron(ctx, client.ListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, j.Name)
		if len(got) == 2 {
			break
		}
	}
	if !slices.Equal(got, names[:2]) {
		t.Errorf("AllCron with a break: %v", got)
	}
	// An error is yielded once, last.
	n := 0
	for _, err := range c.AllCron(ctx, client.ListOptions{Limit: -1}) {
		n++
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("AllCron with a bad limit: %v", err)
		}
	}
	if n != 1 {
		t.Errorf("AllCron with a bad limit yielded %d times", n)
	}
}

// TestCronFires: a per-second job publishes on its queue within a couple of
// seconds, and its last_fired_at follows.
func TestCronFires(t *testing.T) {
	c := lockServer(t)
	ctx := lockCtx(t)
	put := time.Now()
	if _, err := c.PutCron(ctx, "tick", client.CronJobSpec{Schedule: "* * * * * *", Queue: "ticks", Payload: map[string]int{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Lease(ctx, "ticks", client.LeaseOptions{Max: 1, Wait: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("no fire within 3s of the put (%v)", time.Since(put))
	}
	var m client.CronMessage
	if err := json.Unmarshal(msgs[0].Payload, &m); err != nil {
		t.Fatalf("message %s: %v", msgs[0].Payload, err)
	}
	if m.Job != "tick" || string(m.Payload) != `{"n":1}` || m.ScheduledAt.Nanosecond() != 0 ||
		!m.ScheduledAt.After(put.Add(-time.Second)) || m.ScheduledAt.After(time.Now()) {
		t.Fatalf("message: %+v (put at %v)", m, put)
	}
	if _, err := c.Ack(ctx, "ticks", msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	j, err := c.GetCron(ctx, "tick")
	if err != nil {
		t.Fatal(err)
	}
	if j.LastFiredAt == nil || j.LastFiredAt.Before(m.ScheduledAt) || j.NextFireAt == nil || !j.NextFireAt.After(*j.LastFiredAt) {
		t.Fatalf("after a fire: %+v", j)
	}
	// Deleted: it fires no more.
	if err := c.DeleteCron(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	// Fires since the first lease (or under way during the delete) are
	// for times before the delete; drain them.
	for {
		msgs, err := c.Lease(ctx, "ticks", client.LeaseOptions{Max: 10, Wait: 1500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			var cm client.CronMessage
			if err := json.Unmarshal(m.Payload, &cm); err != nil || cm.ScheduledAt.After(deleted) {
				t.Fatalf("message after delete: %s", m.Payload)
			}
		}
		if time.Since(deleted) > 10*time.Second {
			t.Fatal("still firing after the delete")
		}
	}
}
