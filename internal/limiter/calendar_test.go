package limiter

import (
	"math/rand/v2"
	"testing"
	"time"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func rfc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPeriodBounds(t *testing.T) {
	tests := []struct {
		name, zone string
		period     Period
		at         string
		start, end string
		length     time.Duration
	}{
		// Day across DST changes.
		{"NY spring-forward day is 23h", "America/New_York", Day, "2026-03-08T12:00:00-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 23 * time.Hour},
		{"NY fall-back day is 25h", "America/New_York", Day, "2026-11-01T01:30:00-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 25 * time.Hour},
		{"Berlin spring-forward day is 23h", "Europe/Berlin", Day, "2026-03-29T03:30:00+02:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 23 * time.Hour},
		{"Berlin fall-back day is 25h", "Europe/Berlin", Day, "2026-10-25T02:30:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25 * time.Hour},
		{"Kolkata day starts at 18:30 UTC", "Asia/Kolkata", Day, "2026-01-31T20:00:00Z", "2026-02-01T00:00:00+05:30", "2026-02-02T00:00:00+05:30", 24 * time.Hour},
		{"Kolkata 31 Jan", "Asia/Kolkata", Day, "2026-01-31T23:59:59+05:30", "2026-01-31T00:00:00+05:30", "2026-02-01T00:00:00+05:30", 24 * time.Hour},
		{"Lord Howe fall-back day is 24.5h", "Australia/Lord_Howe", Day, "2026-04-05T01:45:00+10:30", "2026-04-05T00:00:00+11:00", "2026-04-06T00:00:00+10:30", 24*time.Hour + 30*time.Minute},
		{"Lord Howe spring-forward day is 23.5h", "Australia/Lord_Howe", Day, "2026-10-04T12:00:00+11:00", "2026-10-04T00:00:00+10:30", "2026-10-05T00:00:00+11:00", 23*time.Hour + 30*time.Minute},
		{"Lord Howe 31 Dec", "Australia/Lord_Howe", Day, "2026-12-31T23:30:00+11:00", "2026-12-31T00:00:00+11:00", "2027-01-01T00:00:00+11:00", 24 * time.Hour},
		{"NY 29 Feb", "America/New_York", Day, "2028-02-29T00:00:00-05:00", "2028-02-29T00:00:00-05:00", "2028-03-01T00:00:00-05:00", 24 * time.Hour},
		// Months: lengths, leap years, year end, DST inside.
		{"NY leap February", "America/New_York", Month, "2024-02-29T23:59:59-05:00", "2024-02-01T00:00:00-05:00", "2024-03-01T00:00:00-05:00", 29 * 24 * time.Hour},
		{"NY March loses an hour", "America/New_York", Month, "2026-03-31T12:00:00-04:00", "2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00", 31*24*time.Hour - time.Hour},
		{"NY November gains an hour", "America/New_York", Month, "2026-11-01T01:30:00-04:00", "2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00", 30*24*time.Hour + time.Hour},
		{"Berlin 31 Dec", "Europe/Berlin", Month, "2026-12-31T23:59:59+01:00", "2026-12-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00", 31 * 24 * time.Hour},
		{"Berlin 1 Jan belongs to the new year", "Europe/Berlin", Month, "2026-12-31T23:00:00Z", "2027-01-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00", 31 * 24 * time.Hour},
		{"Berlin October gains an hour", "Europe/Berlin", Month, "2026-10-25T02:30:00+01:00", "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00", 31*24*time.Hour + time.Hour},
		{"Kolkata 31 Jan", "Asia/Kolkata", Month, "2026-01-31T23:00:00+05:30", "2026-01-01T00:00:00+05:30", "2026-02-01T00:00:00+05:30", 31 * 24 * time.Hour},
		{"Kolkata February starts on 31 Jan UTC", "Asia/Kolkata", Month, "2026-01-31T19:00:00Z", "2026-02-01T00:00:00+05:30", "2026-03-01T00:00:00+05:30", 28 * 24 * time.Hour},
		{"Kolkata leap February", "Asia/Kolkata", Month, "2028-02-29T12:00:00+05:30", "2028-02-01T00:00:00+05:30", "2028-03-01T00:00:00+05:30", 29 * 24 * time.Hour},
		{"Lord Howe April gains half an hour", "Australia/Lord_Howe", Month, "2026-04-05T01:45:00+10:30", "2026-04-01T00:00:00+11:00", "2026-05-01T00:00:00+10:30", 30*24*time.Hour + 30*time.Minute},
		{"Lord Howe leap February", "Australia/Lord_Howe", Month, "2028-02-29T12:00:00+11:00", "2028-02-01T00:00:00+11:00", "2028-03-01T00:00:00+11:00", 29 * 24 * time.Hour},
		{"Lord Howe 31 Dec", "Australia/Lord_Howe", Month, "2026-12-31T23:30:00+11:00", "2026-12-01T00:00:00+11:00", "2027-01-01T00:00:00+11:00", 31 * 24 * time.Hour},
		// Hours and weeks.
		{"NY first 01:00 hour", "America/New_York", Hour, "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", time.Hour},
		{"NY repeated 01:00 hour", "America/New_York", Hour, "2026-11-01T01:30:00-05:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00", time.Hour},
		{"NY hour before the gap", "America/New_York", Hour, "2026-03-08T01:30:00-05:00", "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", time.Hour},
		{"Lord Howe hour set back 30 min lasts 1.5h", "Australia/Lord_Howe", Hour, "2026-04-05T01:45:00+10:30", "2026-04-05T01:00:00+11:00", "2026-04-05T02:00:00+10:30", 90 * time.Minute},
		{"Lord Howe hour after the gap lasts 30 min", "Australia/Lord_Howe", Hour, "2026-10-04T02:45:00+11:00", "2026-10-04T02:30:00+11:00", "2026-10-04T03:00:00+11:00", 30 * time.Minute},
		{"Kolkata hour", "Asia/Kolkata", Hour, "2026-01-31T13:10:00+05:30", "2026-01-31T13:00:00+05:30", "2026-01-31T14:00:00+05:30", time.Hour},
		{"NY ISO week with the fall-back", "America/New_York", Week, "2026-11-01T12:00:00-05:00", "2026-10-26T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 7*24*time.Hour + time.Hour},
		{"Berlin ISO week across the year end", "Europe/Berlin", Week, "2026-12-31T12:00:00+01:00", "2026-12-28T00:00:00+01:00", "2027-01-04T00:00:00+01:00", 7 * 24 * time.Hour},
		{"UTC Monday starts its week", "UTC", Week, "2026-11-23T00:00:00Z", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end, err := tt.period.Bounds(rfc(t, tt.at), mustZone(t, tt.zone))
			if err != nil {
				t.Fatal(err)
			}
			if !start.Equal(rfc(t, tt.start)) || !end.Equal(rfc(t, tt.end)) {
				t.Fatalf("Bounds = [%v, %v); want [%s, %s)", start, end, tt.start, tt.end)
			}
			if got := end.Sub(start); got != tt.length {
				t.Fatalf("length %v; want %v", got, tt.length)
			}
		})
	}
}

// TestPeriodBoundsPartition checks, at random instants in zones with odd
// rules, that periods tile time: each instant lies in its period, the period
// after ends where the next begins, and a period starts on its first wall
// moment unless an offset change skipped it.
func TestPeriodBoundsPartition(t *testing.T) {
	zones := []string{"UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe",
		"America/Santiago", "Asia/Beirut", "America/Havana", "Pacific/Chatham", "Africa/Casablanca", "Asia/Kathmandu"}
	rng := rand.New(rand.NewPCG(1, 2))
	lo := rfc(t, "2020-01-01T00:00:00Z").Unix()
	hi := rfc(t, "2032-01-01T00:00:00Z").Unix()
	for _, zone := range zones {
		loc := mustZone(t, zone)
		for _, p := range []Period{Hour, Day, Week, Month} {
			for range 2000 {
				at := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9))
				checkPartition(t, p, at, loc)
			}
		}
	}
}

func checkPartition(t *testing.T, p Period, at time.Time, loc *time.Location) {
	t.Helper()
	start, end, err := p.Bounds(at, loc)
	if err != nil {
		t.Fatalf("%s %v %s: %v", p, at, loc, err)
	}
	if at.Before(start) || !at.Before(end) {
		t.Fatalf("%s in %s: %v not in [%v, %v)", p, loc, at.In(loc), start.In(loc), end.In(loc))
	}
	if s2, _, _ := p.Bounds(end.Add(-time.Nanosecond), loc); !s2.Equal(start) {
		t.Fatalf("%s in %s: last instant of [%v, %v) starts at %v", p, loc, start.In(loc), end.In(loc), s2.In(loc))
	}
	if s3, _, _ := p.Bounds(end, loc); !s3.Equal(end) {
		t.Fatalf("%s in %s: period after %v starts at %v", p, loc, end.In(loc), s3.In(loc))
	}
	w := wall(start.In(loc))
	if zoneStart, _ := start.In(loc).ZoneBounds(); !p.truncate(w).Equal(w) && !zoneStart.Equal(start) {
		t.Fatalf("%s in %s: starts at %v, neither a first moment nor an offset change", p, loc, start.In(loc))
	}
	bounds := lengthBounds[p]
	if l := end.Sub(start); l <= bounds[0] || l > bounds[1] {
		t.Fatalf("%s in %s: [%v, %v) lasts %v", p, loc, start.In(loc), end.In(loc), l)
	}
}

// lengthBounds is (shortest exclusive, longest inclusive) for each period:
// offset changes move a period's length by at most a few hours.
var lengthBounds = map[Period][2]time.Duration{
	Hour:  {0, 3 * time.Hour},
	Day:   {20 * time.Hour, 28 * time.Hour},
	Week:  {7*24*time.Hour - 4*time.Hour, 7*24*time.Hour + 4*time.Hour},
	Month: {28*24*time.Hour - 4*time.Hour, 31*24*time.Hour + 4*time.Hour},
}

func TestParsePeriod(t *testing.T) {
	for _, p := range []Period{Hour, Day, Week, Month} {
		got, err := ParsePeriod(p.String())
		if err != nil || got != p {
			t.Fatalf("ParsePeriod(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePeriod("Fortnight"); err == nil || err.Error() != `period "Fortnight" is not one of Hour, Day, Week, Month` {
		t.Fatalf("ParsePeriod(Fortnight) error = %v", err)
	}
}
