package cron

import (
	"errors"
	"strings"
	"testing"
	"time"

	"engram/internal/engine"
)

func TestParseSchedule(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		tt, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	cases := []struct {
		name, expr, tz string
		after          time.Time
		want           []string // the next times, in UTC
		err            string   // a substring of the error
	}{
		{name: "five fields", expr: "*/15 * * * *", after: utc("2026-01-01T10:07:30Z"),
			want: []string{"2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"}},
		{name: "six fields start with seconds", expr: "*/20 * * * * *", after: utc("2026-01-01T10:00:05Z"),
			want: []string{"2026-01-01T10:00:20Z", "2026-01-01T10:00:40Z", "2026-01-01T10:01:00Z"}},
		{name: "seven fields end with the year", expr: "0 0 12 1 1 * 2030", after: utc("2026-01-01T00:00:00Z"),
			want: []string{"2030-01-01T12:00:00Z"}},
		{name: "year range", expr: "30 0 0 * * * 2027-2028", after: utc("2026-06-01T00:00:00Z"),
			want: []string{"2027-01-01T00:00:30Z", "2027-01-02T00:00:30Z"}},
		{name: "names and ranges", expr: "0 9 * * MON-FRI", after: utc("2026-01-02T10:00:00Z"), // a Friday
			want: []string{"2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"}},
		{name: "macro", expr: "@daily", after: utc("2026-01-01T10:00:00Z"), want: []string{"2026-01-02T00:00:00Z"}},
		{name: "spaces", expr: "  0   12  * * *  ", after: utc("2026-01-01T00:00:00Z"), want: []string{"2026-01-01T12:00:00Z"}},
		{name: "zone winter", expr: "0 0 9 * * *", tz: "Europe/Paris", after: utc("2026-01-10T00:00:00Z"),
			want: []string{"2026-01-10T08:00:00Z"}},
		{name: "zone summer", expr: "0 0 9 * * *", tz: "Europe/Paris", after: utc("2026-07-10T00:00:00Z"),
			want: []string{"2026-07-10T07:00:00Z"}},
		{name: "DST spring forward skips a missing wall time", expr: "0 30 2 * * *", tz: "America/New_York",
			after: time.Date(2026, 3, 7, 12, 0, 0, 0, ny),
			want:  []string{"2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}},
		{name: "DST fall back: a daily time fires at its first instant", expr: "0 30 1 * * *", tz: "America/New_York",
			after: time.Date(2026, 10, 31, 12, 0, 0, 0, ny),
			want:  []string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{name: "DST fall back: steps follow the clock through both", expr: "0 */30 * * * *", tz: "America/New_York",
			after: time.Date(2026, 11, 1, 1, 10, 0, 0, ny),
			want:  []string{"2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"}},

		{name: "empty", expr: " ", err: "schedule: required"},
		{name: "four fields", expr: "* * * *", err: "has 4 fields"},
		{name: "eight fields", expr: "* * * * * * * *", err: "has 8 fields"},
		{name: "second out of range", expr: "61 * * * * *", err: `schedule: second field "61"`},
		{name: "minute out of range", expr: "60 * * * *", err: `schedule: minute field "60"`},
		{name: "six fields never take a year last", expr: "0 0 12 1 1 2030", err: `schedule: day of week field "2030"`},
		{name: "garbage", expr: "a b c d e", err: `schedule: minute field "A"`},
		{name: "bad step", expr: "*/ * * * *", err: "schedule:"},
		{name: "unknown macro", expr: "@sometimes", err: "unknown macro"},
		{name: "unknown zone", expr: "* * * * *", tz: "Mars/Olympus", err: "timezone:"},
		{name: "Local is not a zone", expr: "* * * * *", tz: "Local", err: "timezone:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchedule(tc.expr, tc.tz)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("err = %v, want invalid with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			at := tc.after
			for i, w := range tc.want {
				n, ok := s.Next(at)
				if !ok || !n.Equal(utc(w)) {
					t.Fatalf("next #%d after %v = %v %v, want %s", i, at, n.UTC(), ok, w)
				}
				at = n
			}
		})
	}
}

// TestNextNoDrift: stepping through a day of per-second times from the
// expression lands on every whole second, with no gap and no drift.
func TestNextNoDrift(t *testing.T) {
	s, err := ParseSchedule("* * * * * *", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := start
	for i := 1; i <= 6*3600; i++ {
		n, ok := s.Next(at.Add(time.Duration(i%997) * time.Microsecond)) // a late look changes nothing
		if !ok || !n.Equal(start.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("tick %d: %v", i, n)
		}
		at = n
	}
}

func TestNextNone(t *testing.T) {
	s, err := ParseSchedule("0 0 0 1 1 * 2020", "")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Fatalf("next = %v, want none", n)
	}
}
