package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/lifecycle"
	"github.com/sigil-ca/sigil/store"
)

// TestJobsRunWaitJoinsRunningRun: `jobs run --wait` while the job is
// already running (here the run a start makes of a job that never ran)
// does not fail with "already running", nor take that run's result, which
// began before the command: it waits the run out, triggers its own, and
// returns that one.
func TestJobsRunWaitJoinsRunningRun(t *testing.T) {
	t.Parallel()
	tc := testca.New(t, testca.Options{})
	sched, err := lifecycle.New(lifecycle.Config{Clock: tc.Clock, Logger: slog.New(slog.DiscardHandler)}, tc.Store)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var runs atomic.Int32
	err = sched.Add(lifecycle.Job{Name: "slow", Schedule: lifecycle.Schedule{Every: time.Hour}, Task: func(ctx context.Context) (lifecycle.Result, error) {
		if runs.Add(1) == 1 {
			select { // the start's run holds until the test lets it go
			case <-release:
			case <-ctx.Done():
				return lifecycle.Result{}, ctx.Err()
			}
		}
		return lifecycle.Result{Items: 7}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{st: tc.Store, jobs: sched}
	h, err := api.New(api.Config{MaxBodyBytes: 1 << 16, Logger: slog.New(slog.DiscardHandler), Clock: tc.Clock,
		Log: tc.Authority.Log(), Jobs: jobsAPI{s}}, tc.Authority, tc.Authority.Access())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Token: tc.Init.AdminToken, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sched.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sched.Stop() })
	waitFor(t, ctx, func() bool { return runs.Load() == 1 }) // the start's run is going
	if _, err := c.RunJob(ctx, "slow"); !client.IsKind(err, "conflict") {
		t.Fatalf("a plain trigger during the run: %v, want a conflict", err)
	}

	type answer struct {
		run api.JobRun
		err error
	}
	done := make(chan answer, 1)
	var started atomic.Bool
	go func() {
		r, err := runJobAndWait(ctx, c, "slow", func() { started.Store(true) })
		done <- answer{r, err}
	}()
	select {
	case a := <-done:
		t.Fatalf("returned %+v, %v while the start's run was still going", a.run, a.err)
	case <-time.After(3 * jobPoll): // it polls meanwhile, on the real clock
	}
	if started.Load() {
		t.Fatal("reported started while the earlier run still held the job")
	}
	close(release)
	a := <-done
	if a.err != nil {
		t.Fatalf("runJobAndWait: %v", a.err)
	}
	if !started.Load() || runs.Load() != 2 {
		t.Fatalf("started %v, %d runs; want its own second run", started.Load(), runs.Load())
	}
	if a.run.Result != store.JobOK || a.run.Items != 7 || !strings.HasPrefix(a.run.Trigger, "manual:") {
		t.Errorf("run %+v, want the manual run, ok with 7 items", a.run)
	}
	d, err := c.Job(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Runs) != 2 || d.Runs[1].Trigger != "missed" || d.Runs[0].ID != a.run.ID {
		t.Errorf("runs %+v, want the start's run then the one returned", d.Runs)
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not reached")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
