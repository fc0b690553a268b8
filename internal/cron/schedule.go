package cron

import (
	"strings"
	"time"

	"github.com/adhocore/gronx"

	"engram/internal/engine"
)

// fieldNames name the seven fields in the order gronx reads them, which is
// also the contract's: seconds first, year last.
var fieldNames = [7]string{"second", "minute", "hour", "day of month", "month", "day of week", "year"}

// macros are the usual shorthands, written out in five fields.
var macros = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// names are the month and weekday names, as gronx reads them.
var names = strings.NewReplacer(
	"SUN", "0", "MON", "1", "TUE", "2", "WED", "3", "THU", "4", "FRI", "5", "SAT", "6",
	"JAN", "1", "FEB", "2", "MAR", "3", "APR", "4", "MAY", "5", "JUN", "6", "JUL", "7",
	"AUG", "8", "SEP", "9", "OCT", "10", "NOV", "11", "DEC", "12",
)

// A Schedule is a parsed expression in its time zone.
type Schedule struct {
	// expr is the expression in gronx's seven fields, never guessed at:
	// gronx takes six fields whose last looks like a year as minutes to
	// year, where the contract says six fields start with seconds.
	expr string
	loc  *time.Location
}

// ParseSchedule parses a cron expression of five fields (minute hour day
// month weekday), six (second first) or seven (second first, year last), or
// one of the macros (@hourly, @daily, ...), in the IANA time zone tz (empty
// means UTC). The errors name the field and carry the parser's reason.
func ParseSchedule(expr, tz string) (*Schedule, error) {
	loc, err := loadZone(tz)
	if err != nil {
		return nil, err
	}
	canon, err := canonical(expr)
	if err != nil {
		return nil, err
	}
	return &Schedule{expr: canon, loc: loc}, nil
}

func loadZone(tz string) (*time.Location, error) {
	if tz == "" || tz == "UTC" {
		return time.UTC, nil
	}
	if tz == "Local" {
		return nil, invalidf("timezone: %q is not an IANA time zone name", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, invalidf("timezone: %q is not a known IANA time zone", engine.Truncate(tz))
	}
	return loc, nil
}

// canonical rewrites expr in seven fields and validates each with gronx.
func canonical(expr string) (string, error) {
	e := strings.TrimSpace(expr)
	if e == "" {
		return "", invalidf("schedule: required")
	}
	if strings.HasPrefix(e, "@") {
		m, ok := macros[strings.ToLower(e)]
		if !ok {
			return "", invalidf("schedule: unknown macro %q (want @yearly, @monthly, @weekly, @daily or @hourly)", engine.Truncate(e))
		}
		e = m
	}
	fields := strings.Fields(names.Replace(strings.ToUpper(e)))
	switch len(fields) {
	case 5:
		fields = append(append([]string{"0"}, fields...), "*")
	case 6:
		fields = append(fields, "*")
	case 7:
	default:
		return "", invalidf("schedule: %q has %d fields, want 5 (minute hour day month weekday), 6 (second first) or 7 (second first, year last)", engine.Truncate(expr), len(fields))
	}
	ref := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for pos, f := range fields {
		if f == "*" || f == "?" {
			continue
		}
		c := &gronx.SegmentChecker{}
		c.SetRef(ref)
		if _, err := c.CheckDue(f, pos); err != nil {
			return "", invalidf("schedule: %s field %q: %v", fieldNames[pos], engine.Truncate(f), err)
		}
	}
	canon := strings.Join(fields, " ")
	if !gronx.IsValid(canon) {
		return "", invalidf("schedule: %q is not a valid cron expression", engine.Truncate(expr))
	}
	return canon, nil
}

// Next is the first scheduled time strictly after t, in whole seconds. ok is
// false when the expression has no time after t (a year in the past, a
// 30th of February).
func (s *Schedule) Next(t time.Time) (time.Time, bool) {
	n, err := gronx.NextTickAfter(s.expr, t.In(s.loc), false)
	if err != nil || !n.After(t) {
		return time.Time{}, false
	}
	return n, true
}

// String is the expression as gronx reads it (seven fields).
func (s *Schedule) String() string { return s.expr }

func invalidf(format string, args ...any) error {
	return engine.Errorf(engine.ErrInvalid, format, args...)
}
