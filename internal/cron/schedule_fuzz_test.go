package cron

import (
	"testing"
	"time"
)

// FuzzParseSchedule: no expression or zone makes the parser or the next-time
// computation panic, and an accepted schedule's next time is after now.
func FuzzParseSchedule(f *testing.F) {
	for _, seed := range []struct{ expr, tz string }{
		{"*/5 * * * *", "UTC"}, {"0 */2 * * * *", "Europe/Paris"}, {"0 0 0 1 1 * 2030", "UTC"},
		{"@hourly", "UTC"}, {"0 0 30 2 *", "UTC"}, {"61 * * * *", "UTC"}, {"* * * * * * * *", ""},
		{"1-5/2 MON-FRI JAN * *", "America/New_York"}, {"", "Nowhere/City"},
	} {
		f.Add(seed.expr, seed.tz)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr, tz string) {
		if len(expr) > 256 || len(tz) > 64 {
			return
		}
		s, err := ParseSchedule(expr, tz)
		if err != nil {
			return
		}
		if next, ok := s.Next(now); ok && !next.After(now) {
			t.Fatalf("%q in %q: next %v is not after %v", expr, tz, next, now)
		}
	})
}
