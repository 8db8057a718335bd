package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

var testStart = testclock.At(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))

func openStore(t *testing.T, clk clockwork.Clock) (*store.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sigil.db")
	st, err := store.Open(context.Background(), store.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func newScheduler(t *testing.T, clk clockwork.Clock, st Store, jobs ...Job) *Scheduler {
	t.Helper()
	s, err := New(Config{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// counter is a task that reports each run on a channel and can be held.
type counter struct {
	runs  atomic.Int64
	ran   chan struct{}
	hold  chan struct{} // nil: return at once
	err   error
	items int64
}

func newCounter() *counter { return &counter{ran: make(chan struct{}, 16)} }

func (c *counter) task(ctx context.Context) (Result, error) {
	c.runs.Add(1)
	if c.hold != nil {
		select {
		case <-c.hold:
		case <-ctx.Done():
		}
	}
	defer func() { c.ran <- struct{}{} }()
	return Result{Items: c.items}, c.err
}

func (c *counter) wait(t *testing.T) {
	t.Helper()
	select {
	case <-c.ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not run")
	}
}

// latest waits until job's latest recorded run is finished and returns it.
func latest(t *testing.T, st *store.SQLite, job string) store.JobRun {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := st.LatestJobRuns(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := runs[job]; ok && r.Result != store.JobRunning {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished run of %s recorded", job)
		}
		time.Sleep(time.Millisecond) // waits for another goroutine's commit, not for the clock
	}
}

func TestParseSchedule(t *testing.T) {
	for in, want := range map[string]string{"every 1h": "every 1h0m0s", "@every 90s": "every 1m30s", "15m": "every 15m0s",
		"0 3 * * *": "0 3 * * *", "@daily": "@daily"} {
		s, err := ParseSchedule(in)
		if err != nil || s.String() != want {
			t.Errorf("ParseSchedule(%q) = %v, %v; want %s", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "every", "100ms", "61 * * * *", "soon"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
	c := MustSchedule("0 3 * * *")
	// testStart is 10:00 UTC: the next 03:00 is the following day's.
	want := testStart.Truncate(24 * time.Hour).Add(24*time.Hour + 3*time.Hour)
	if got := c.next(testStart); !got.Equal(want) {
		t.Errorf("next 03:00 after %v = %v", testStart, got)
	}
}

// TestRunsOnSchedule: a job runs when the fake clock reaches its interval,
// and each run is recorded with its items and trigger.
func TestRunsOnSchedule(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	c := newCounter()
	c.items = 3
	// Ran just now: nothing is due at start.
	seed(t, st, "crl-publish", testStart.Add(-time.Minute), store.JobOK)
	s := newScheduler(t, clk, st, Job{Name: "crl-publish", Schedule: MustSchedule("every 1h"), Task: c.task})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitForTimers(t, clk)
	if c.runs.Load() != 0 {
		t.Fatalf("ran %d times at start; it was not due", c.runs.Load())
	}
	for i := 1; i <= 3; i++ {
		clk.Advance(time.Hour)
		c.wait(t)
		r := latest(t, st, "crl-publish")
		if r.Result != store.JobOK || r.Items != 3 || r.Trigger != "schedule" || !r.Started.Equal(testStart.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("run %d recorded as %+v", i, r)
		}
		// The run is recorded before its lock is released; a tick in
		// between is skipped, as a tick during a run is.
		waitIdle(t, s, "crl-publish")
		waitForTimers(t, clk)
	}
	if n := c.runs.Load(); n != 3 {
		t.Errorf("%d runs in 3 hours, want 3", n)
	}
}

// TestMissedRunsAtStart: a job whose run fell due while the server was
// down runs at start; one that ran recently does not; one interrupted by a
// crash is marked so and run again.
func TestMissedRunsAtStart(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	seed(t, st, "managed-renew", testStart.Add(-2*time.Hour), store.JobOK)  // due an hour ago
	seed(t, st, "crl-publish", testStart.Add(-10*time.Minute), store.JobOK) // not due
	seed(t, st, "tidy", testStart.Add(-10*time.Minute), store.JobRunning)   // cut short by a crash
	seed(t, st, "expiry-notify", testStart.Add(-25*time.Hour), store.JobOK) // cron, daily at 03:00: due
	renew, crl, tidy, notify, never := newCounter(), newCounter(), newCounter(), newCounter(), newCounter()
	s := newScheduler(t, clk, st,
		Job{Name: "managed-renew", Schedule: MustSchedule("every 1h"), Task: renew.task},
		Job{Name: "crl-publish", Schedule: MustSchedule("every 1h"), Task: crl.task},
		Job{Name: "tidy", Schedule: MustSchedule("every 24h"), Task: tidy.task},
		Job{Name: "expiry-notify", Schedule: MustSchedule("0 3 * * *"), Task: notify.task},
		Job{Name: "kek-rotate", Schedule: MustSchedule("every 24h"), Task: never.task, Disabled: true},
	)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	renew.wait(t)
	tidy.wait(t)
	notify.wait(t)
	for name, trigger := range map[string]string{"managed-renew": "missed", "tidy": "missed", "expiry-notify": "missed"} {
		if r := latest(t, st, name); r.Trigger != trigger || r.Result != store.JobOK || !r.Started.Equal(testStart) {
			t.Errorf("%s: latest run %+v, want a missed run at start", name, r)
		}
	}
	runs, err := st.JobRuns(context.Background(), "tidy", 10)
	if err != nil || len(runs) != 2 || runs[1].Result != store.JobInterrupted {
		t.Errorf("tidy runs %+v (%v), want the crashed run marked interrupted", runs, err)
	}
	if crl.runs.Load() != 0 || never.runs.Load() != 0 {
		t.Errorf("crl-publish ran %d times, kek-rotate (disabled) %d: neither was due", crl.runs.Load(), never.runs.Load())
	}
	if err := s.Trigger("kek-rotate", "token:admin"); !errors.Is(err, ErrDisabled) || ca.KindOf(err) != ca.Conflict {
		t.Errorf("trigger of a disabled job: %v, want ErrDisabled, a Conflict", err)
	}
}

// TestOverlappingTriggersRunOnce: while a run is going, a manual trigger is
// refused and a scheduled tick is skipped.
func TestOverlappingTriggersRunOnce(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	seed(t, st, "managed-renew", testStart, store.JobOK)
	c := newCounter()
	c.hold = make(chan struct{})
	s := newScheduler(t, clk, st, Job{Name: "managed-renew", Schedule: MustSchedule("every 1m"), Task: c.task})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Trigger("managed-renew", "token:admin"); err != nil {
		t.Fatal(err)
	}
	for c.runs.Load() == 0 {
		time.Sleep(time.Millisecond) // the run's goroutine starting, not the clock
	}
	if err := s.Trigger("managed-renew", "token:admin"); !errors.Is(err, ErrRunning) || ca.KindOf(err) != ca.Conflict {
		t.Errorf("second trigger: %v, want ErrRunning, a Conflict", err)
	}
	waitForTimers(t, clk)
	clk.Advance(time.Minute) // the scheduled tick finds it running
	waitForTimers(t, clk)
	if sts, _ := s.Status(context.Background()); !sts[0].Running {
		t.Errorf("status does not show the job running: %+v", sts[0])
	}
	close(c.hold)
	c.wait(t)
	r := latest(t, st, "managed-renew")
	if r.Trigger != "manual:token:admin" {
		t.Errorf("latest run %+v, want the manual one", r)
	}
	if n := c.runs.Load(); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	evs, _, err := st.AuditEvents(context.Background(), store.AuditFilter{Action: "job.triggered"})
	if err != nil || len(evs) != 1 || evs[0].Actor != "token:admin" || evs[0].Target != "managed-renew" {
		t.Errorf("job.triggered events %+v (%v), want one by token:admin", evs, err)
	}
	for _, bad := range []string{"nope"} {
		if err := s.Trigger(bad, "x"); !errors.Is(err, ErrUnknownJob) || ca.KindOf(err) != ca.NotFound {
			t.Errorf("Trigger(%q) = %v", bad, err)
		}
	}
}

// TestFailureAndAudit: a failed run is recorded with its error; a job that
// changes state audits its runs that did something.
func TestFailureAndAudit(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	failing, renew := newCounter(), newCounter()
	failing.err = errors.New("issuer unavailable")
	renew.items = 5
	s := newScheduler(t, clk, st,
		Job{Name: "crl-publish", Schedule: MustSchedule("every 1h"), Task: failing.task},
		Job{Name: "managed-renew", Schedule: MustSchedule("every 1h"), Task: renew.task, ChangesState: true})
	if err := s.Start(context.Background()); err != nil { // neither ran before: both run at start
		t.Fatal(err)
	}
	defer s.Stop()
	failing.wait(t)
	renew.wait(t)
	if r := latest(t, st, "crl-publish"); r.Result != store.JobFailed || r.Error != "issuer unavailable" || r.Trigger != "missed" {
		t.Errorf("failed run recorded as %+v", r)
	}
	latest(t, st, "managed-renew")
	evs, _, err := st.AuditEvents(context.Background(), store.AuditFilter{Action: "job.run"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Target != "managed-renew" || evs[0].Detail["items"] != "5" || evs[0].Actor != "system:managed-renew" {
		t.Errorf("job.run events %+v, want one for managed-renew with 5 items", evs)
	}
	sts, err := s.Status(context.Background())
	if err != nil || len(sts) != 2 || sts[0].Name != "crl-publish" || sts[0].Last == nil || sts[0].NextRun.IsZero() {
		t.Errorf("status %+v (%v)", sts, err)
	}
}

func seed(t *testing.T, st *store.SQLite, job string, started time.Time, result string) {
	t.Helper()
	err := st.WithTx(context.Background(), func(tx store.Tx) error {
		r := store.JobRun{Job: job, Trigger: "schedule", Started: started}
		if err := tx.StartJobRun(&r); err != nil || result == store.JobRunning {
			return err
		}
		r.Ended, r.Result = started.Add(time.Second), result
		return tx.FinishJobRun(r)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitForTimers waits until gocron has set its timers on the fake clock.
// waitIdle waits until no run of job holds its lock.
func waitIdle(t *testing.T, s *Scheduler, job string) {
	t.Helper()
	j := s.jobs[job]
	deadline := time.Now().Add(10 * time.Second)
	for !j.running.TryLock() {
		if time.Now().After(deadline) {
			t.Fatalf("%s still running after 10s", job)
		}
		time.Sleep(time.Millisecond) // waits for another goroutine, not for the clock
	}
	j.running.Unlock()
}

func waitForTimers(t *testing.T, clk *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("no timer on the fake clock: %v", err)
	}
}
