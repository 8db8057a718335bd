package lifecycle

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is when a job runs: every fixed interval, or on a standard
// five-field cron expression (in UTC).
type Schedule struct {
	Every time.Duration
	Cron  string

	cron cron.Schedule
}

// ParseSchedule reads "every 1h" (or "@every 1h", or a bare duration) or a
// five-field cron expression such as "0 3 * * *" or a descriptor such as
// "@daily".
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Schedule{}, fmt.Errorf("schedule: empty")
	}
	for _, prefix := range []string{"@every ", "every "} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			s = strings.TrimSpace(rest)
			break
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Second {
			return Schedule{}, fmt.Errorf("schedule %q: interval under one second", s)
		}
		return Schedule{Every: d}, nil
	}
	c, err := cron.ParseStandard(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: neither an interval (every 1h) nor a cron expression: %w", s, err)
	}
	return Schedule{Cron: s, cron: c}, nil
}

// MustSchedule is ParseSchedule for built-in defaults.
func MustSchedule(s string) Schedule {
	sc, err := ParseSchedule(s)
	if err != nil {
		panic(err)
	}
	return sc
}

// String renders the schedule as ParseSchedule reads it.
func (s Schedule) String() string {
	if s.Cron != "" {
		return s.Cron
	}
	return "every " + s.Every.String()
}

// IsZero reports whether no schedule is set.
func (s Schedule) IsZero() bool { return s.Every == 0 && s.Cron == "" }

// next returns the first time the schedule fires after t.
func (s Schedule) next(t time.Time) time.Time {
	if s.cron != nil {
		return s.cron.Next(t.UTC())
	}
	return t.Add(s.Every)
}
