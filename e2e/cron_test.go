package e2e_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Cron against the real binary: per-second jobs across kill -9 at random
// moments. Every scheduled second fires at most once; every second while
// the server was up fires exactly once; the seconds of each downtime are
// skipped in one cron.skipped event (catch_up skip) or fired once for the
// latest (catch_up once).

type cronFired struct {
	Name        string `json:"name"`
	ScheduledAt string `json:"scheduled_at"`
	MessageID   string `json:"message_id"`
	Missed      int    `json:"missed"`
}

type cronSkipped struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	From  string `json:"from"`
	To    string `json:"to"`
}

type cronJob struct {
	Name        string          `json:"name"`
	Schedule    string          `json:"schedule"`
	Timezone    string          `json:"timezone"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload"`
	CatchUp     string          `json:"catch_up"`
	LastFiredAt *string         `json:"last_fired_at"`
	NextFireAt  *string         `json:"next_fire_at"`
}

// cronLog reads the job's fires and skips from the log, and checks that
// each fire's message is on the queue once, with the right payload.
func cronLog(t *testing.T, p *proc, job, queue string) ([]cronFired, []cronSkipped) {
	t.Helper()
	var fired []cronFired
	var skipped []cronSkipped
	for _, ev := range streamLog(t, p, "cron/"+job) {
		switch ev.Type {
		case "cron.fired":
			var f cronFired
			if err := json.Unmarshal(ev.Data, &f); err != nil || f.Name != job || f.MessageID == "" {
				t.Fatalf("cron.fired %s: %v", ev.Data, err)
			}
			fired = append(fired, f)
		case "cron.skipped":
			var s cronSkipped
			if err := json.Unmarshal(ev.Data, &s); err != nil || s.Name != job || s.Count < 1 {
				t.Fatalf("cron.skipped %s: %v", ev.Data, err)
			}
			skipped = append(skipped, s)
		case "cron.updated", "cron.deleted":
		default:
			t.Fatalf("event %s on cron/%s", ev.Type, job)
		}
	}
	published := map[string]int{}
	for _, ev := range streamLog(t, p, "queues/"+queue) {
		if ev.Type == "queue.published" {
			var d struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			published[d.ID]++
		}
	}
	if len(published) != len(fired) {
		t.Errorf("%s: %d messages published on %s, %d cron.fired events", job, len(published), queue, len(fired))
	}
	for _, f := range fired {
		if published[f.MessageID] != 1 {
			t.Errorf("%s: fire %s: message %s published %d times", job, f.ScheduledAt, f.MessageID, published[f.MessageID])
		}
	}
	return fired, skipped
}

func TestCronExactlyOnceAcrossKill(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)

	// The contract's answers to bad input.
	checkError(t, p.call(t, "PUT", "/v1/cron/bad", map[string]any{"schedule": "61 * * * * *", "queue": "q"}), 400, "invalid_argument", "schedule")
	checkError(t, p.call(t, "PUT", "/v1/cron/bad", map[string]any{"schedule": "* * * *", "queue": "q"}), 400, "invalid_argument", "schedule")
	checkError(t, p.call(t, "PUT", "/v1/cron/bad", map[string]any{"schedule": "* * * * *", "queue": "q", "timezone": "Mars/Base"}), 400, "invalid_argument", "timezone")
	checkError(t, p.call(t, "PUT", "/v1/cron/bad", map[string]any{"schedule": "* * * * *", "queue": "q", "catch_up": "all"}), 400, "invalid_argument", "catch_up")
	checkError(t, p.call(t, "GET", "/v1/cron/bad", nil), 404, "not_found", "")
	checkError(t, p.call(t, "DELETE", "/v1/cron/bad", nil), 404, "not_found", "")

	jobs := []struct{ name, queue, catchUp string }{
		{"tick-skip", "cron-skip", "skip"},
		{"tick-once", "cron-once", "once"},
	}
	for _, j := range jobs {
		var got cronJob
		body := p.must(t, 200, "PUT", "/v1/cron/"+j.name, map[string]any{
			"schedule": "* * * * * *", "queue": j.queue, "catch_up": j.catchUp, "payload": map[string]any{"job": j.name}})
		if err := json.Unmarshal(body, &got); err != nil || got.Name != j.name || got.Timezone != "UTC" || got.CatchUp != j.catchUp ||
			got.LastFiredAt != nil || got.NextFireAt == nil {
			t.Fatalf("PUT: %s %v", body, err)
		}
	}

	// Up for 7 to 13 s, killed at a random moment, down for 1.2 to 2.5 s;
	// four times.
	type window struct{ up, down time.Time } // up: ready; down: just before the kill
	var windows []window
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	up := time.Now()
	for range 4 {
		time.Sleep(7*time.Second + time.Duration(rng.IntN(6000))*time.Millisecond)
		windows = append(windows, window{up: up, down: time.Now()})
		p.Kill9()
		time.Sleep(1200*time.Millisecond + time.Duration(rng.IntN(1300))*time.Millisecond)
		p = startServer(t, dir)
		up = time.Now()
	}
	time.Sleep(4 * time.Second)
	windows = append(windows, window{up: up, down: time.Now()})
	for _, j := range jobs {
		p.must(t, 204, "DELETE", "/v1/cron/"+j.name, nil)
	}
	end := time.Now()

	// gapOf tells which downtime a scheduled time falls in (-1: none). A
	// downtime runs from a second before the kill (a fire in flight may
	// not have committed) to the restart's readiness.
	gapOf := func(s time.Time) int {
		for i := 0; i+1 < len(windows); i++ {
			if s.After(windows[i].down.Add(-time.Second)) && !s.After(windows[i+1].up) {
				return i
			}
		}
		return -1
	}
	mustUp := func(s time.Time) bool { // a second the server was surely up for
		for _, w := range windows {
			if !s.Before(w.up) && s.Before(w.down.Add(-time.Second)) {
				return true
			}
		}
		return false
	}
	first := windows[0].up.Truncate(time.Second).Add(2 * time.Second)
	last := end.Truncate(time.Second).Add(-2 * time.Second)

	for _, j := range jobs {
		fired, skipped := cronLog(t, p, j.name, j.queue)
		firedAt := map[int64]cronFired{}
		for _, f := range fired {
			s := mustTime(t, f.ScheduledAt)
			if s.Nanosecond() != 0 {
				t.Errorf("%s: fired at %s, not a whole second", j.name, f.ScheduledAt)
			}
			if prev, dup := firedAt[s.Unix()]; dup {
				t.Errorf("%s: %s fired twice (%+v, %+v)", j.name, f.ScheduledAt, prev, f)
			}
			firedAt[s.Unix()] = f
		}
		skippedAt := map[int64]int{} // second → its cron.skipped event
		for i, s := range skipped {
			from, to := mustTime(t, s.From), mustTime(t, s.To)
			if n := int(to.Sub(from)/time.Second) + 1; n != s.Count {
				t.Errorf("%s: %+v: count %d, the range holds %d seconds", j.name, s, s.Count, n)
			}
			for at := from; !at.After(to); at = at.Add(time.Second) {
				skippedAt[at.Unix()] = i
			}
		}
		// Each second from first to last: fired, skipped, or (catch_up
		// once) stood for by the catch-up fire of its downtime.
		catchUps := map[int]cronFired{} // downtime → its catch-up fire
		skipsIn := map[int]int{}        // downtime → its cron.skipped event
		for _, f := range fired {
			if f.Missed == 0 {
				continue
			}
			g := gapOf(mustTime(t, f.ScheduledAt))
			if j.catchUp != "once" || g < 0 {
				t.Errorf("%s: catch-up fire %+v outside a downtime", j.name, f)
				continue
			}
			if _, dup := catchUps[g]; dup {
				t.Errorf("%s: two catch-up fires in downtime %d", j.name, g)
			}
			catchUps[g] = f
		}
		for i, s := range skipped {
			g := gapOf(mustTime(t, s.From))
			if j.catchUp != "skip" || g < 0 || gapOf(mustTime(t, s.To)) != g {
				t.Errorf("%s: %+v outside a downtime", j.name, s)
				continue
			}
			if _, dup := skipsIn[g]; dup {
				t.Errorf("%s: two cron.skipped events in downtime %d", j.name, g)
			}
			skipsIn[g] = i
		}
		counts := map[string]int{}
		for at := first; !at.After(last); at = at.Add(time.Second) {
			f, isFired := firedAt[at.Unix()]
			_, isSkipped := skippedAt[at.Unix()]
			switch {
			case isFired && isSkipped:
				t.Errorf("%s: %v fired and skipped", j.name, at)
			case isFired:
				counts["fired"]++
			case isSkipped:
				counts["skipped"]++
			case j.catchUp == "once" && gapOf(at) >= 0:
				// Missed; the downtime's catch-up fire, later, stands for it.
				c, ok := catchUps[gapOf(at)]
				if !ok || !mustTime(t, c.ScheduledAt).After(at) {
					t.Errorf("%s: %v neither fired nor caught up (catch-up %+v)", j.name, at, c)
				}
				counts["caught up"]++
			default:
				t.Errorf("%s: %v neither fired nor skipped", j.name, at)
			}
			if mustUp(at) && (!isFired || f.Missed != 0) {
				t.Errorf("%s: %v: the server was up, but it did not fire on time", j.name, at)
			}
		}
		// A catch-up fire stands for every second since the fire before it.
		for g, c := range catchUps {
			s := mustTime(t, c.ScheduledAt)
			n := 1
			for at := s.Add(-time.Second); ; at = at.Add(-time.Second) {
				if _, ok := firedAt[at.Unix()]; ok || at.Before(windows[0].up) {
					break
				}
				n++
			}
			if c.Missed != n {
				t.Errorf("%s: downtime %d: catch-up fire %+v, want missed %d", j.name, g, c, n)
			}
		}
		wantGaps := len(windows) - 1
		if j.catchUp == "skip" && len(skipsIn) != wantGaps {
			t.Errorf("%s: cron.skipped in %d downtimes, want %d: %+v", j.name, len(skipsIn), wantGaps, skipped)
		}
		if j.catchUp == "once" && len(catchUps) != wantGaps {
			t.Errorf("%s: catch-up fires in %d downtimes, want %d", j.name, len(catchUps), wantGaps)
		}
		t.Logf("%s: %v over %v..%v; %d cron.fired, %d cron.skipped", j.name, counts, first.Format(time.TimeOnly), last.Format(time.TimeOnly), len(fired), len(skipped))
	}

	// The jobs are gone: nothing fires after the deletes.
	if r := p.call(t, "GET", "/v1/cron", nil); r.Status != 200 || string(r.Body) != `{"jobs":[],"next_cursor":null}` {
		t.Errorf("list after the deletes: %s", r)
	}
	n, _ := cronLog(t, p, "tick-skip", "cron-skip")
	time.Sleep(1500 * time.Millisecond)
	if n2, _ := cronLog(t, p, "tick-skip", "cron-skip"); len(n2) != len(n) {
		t.Errorf("a deleted job fired: %d fires, then %d", len(n), len(n2))
	}
	if slices.ContainsFunc(n, func(f cronFired) bool { return mustTime(t, f.ScheduledAt).After(end) }) {
		t.Errorf("a fire after the delete")
	}
	p.Stop()
}
