package limiter

import (
	"fmt"
	"time"
	// Embedded zone data: the sidecar image has no /usr/share/zoneinfo.
	_ "time/tzdata"
)

// Period is a calendar period a quota resets on.
type Period int

const (
	Hour Period = iota + 1
	Day
	// Week is the ISO week: it starts on Monday.
	Week
	Month
)

// ParsePeriod reads the API's spelling: Hour, Day, Week or Month.
func ParsePeriod(s string) (Period, error) {
	switch s {
	case "Hour":
		return Hour, nil
	case "Day":
		return Day, nil
	case "Week":
		return Week, nil
	case "Month":
		return Month, nil
	}
	return 0, fmt.Errorf("period %q is not one of Hour, Day, Week, Month", s)
}

func (p Period) String() string {
	switch p {
	case Hour:
		return "Hour"
	case Day:
		return "Day"
	case Week:
		return "Week"
	case Month:
		return "Month"
	}
	return fmt.Sprintf("Period(%d)", int(p))
}

// maxZoneSpans bounds the walk over a zone's offset changes inside one
// period; no real zone changes its offset this often in a month.
const maxZoneSpans = 16

// Bounds returns the calendar period that contains t in loc: [start, end).
//
// A period starts where loc's wall clock shows the period's first moment
// (00:00 on the 1st for Month, 00:00 on Monday for Week, ...). Periods follow
// the wall clock across offset changes, so a day can last 23 or 25 hours.
// When a change skips the first moment (a zone that springs forward at
// midnight), the period starts at the change. When a change lands the clock
// exactly on a first moment (New York falling back to 01:00), that instant
// starts a new period; otherwise a clock set back stays in the same period
// (Lord Howe's 01:30 after 01:59 keeps the 01:00 hour going).
func (p Period) Bounds(t time.Time, loc *time.Location) (start, end time.Time, err error) {
	if p < Hour || p > Month {
		return time.Time{}, time.Time{}, fmt.Errorf("unknown period %d", int(p))
	}
	if start, err = p.start(t, loc); err != nil {
		return time.Time{}, time.Time{}, err
	}
	end, err = p.end(t, start, loc)
	return start, end, err
}

func (p Period) start(t time.Time, loc *time.Location) (time.Time, error) {
	for range maxZoneSpans {
		lt := t.In(loc)
		candidate := p.truncate(wall(lt)).Add(-offset(lt))
		spanStart, _ := lt.ZoneBounds()
		if spanStart.IsZero() || !candidate.Before(spanStart) {
			return candidate, nil
		}
		// The period's first moment is not in t's offset span.
		atChange := wall(spanStart.In(loc))
		if p.truncate(atChange).Equal(atChange) {
			return spanStart, nil
		}
		before := spanStart.Add(-time.Nanosecond)
		if !p.truncate(wall(before.In(loc))).Equal(p.truncate(atChange)) {
			return spanStart, nil // the change skipped the first moment
		}
		t = before
	}
	return time.Time{}, fmt.Errorf("%s containing %v in %s: too many offset changes", p, t, loc)
}

func (p Period) end(t, start time.Time, loc *time.Location) (time.Time, error) {
	for range maxZoneSpans {
		lt := t.In(loc)
		candidate := p.next(p.truncate(wall(lt))).Add(-offset(lt))
		_, spanEnd := lt.ZoneBounds()
		if spanEnd.IsZero() || candidate.Before(spanEnd) {
			return candidate, nil
		}
		next, err := p.start(spanEnd, loc)
		if err != nil {
			return time.Time{}, err
		}
		if !next.Equal(start) {
			return next, nil
		}
		t = spanEnd
	}
	return time.Time{}, fmt.Errorf("%s containing %v in %s: too many offset changes", p, t, loc)
}

// wall is t's local date and clock reading as a UTC time, so that calendar
// arithmetic on it ignores offsets.
func wall(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

func offset(t time.Time) time.Duration {
	_, off := t.Zone()
	return time.Duration(off) * time.Second
}

// truncate returns the first moment of the period containing the wall time w.
func (p Period) truncate(w time.Time) time.Time {
	y, mo, d := w.Date()
	switch p {
	case Hour:
		return time.Date(y, mo, d, w.Hour(), 0, 0, 0, time.UTC)
	case Week:
		back := (int(w.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, mo, d-back, 0, 0, 0, 0, time.UTC)
	case Month:
		return time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

// next returns the first moment of the period after the one starting at w.
func (p Period) next(w time.Time) time.Time {
	switch p {
	case Hour:
		return w.Add(time.Hour)
	case Week:
		return w.AddDate(0, 0, 7)
	case Month:
		return w.AddDate(0, 1, 0)
	}
	return w.AddDate(0, 0, 1)
}
