package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle"
	"github.com/sigil-ca/sigil/store"
)

// JobConfig overrides one scheduled job.
type JobConfig struct {
	// Schedule is "every 1h" or a five-field cron expression (UTC).
	Schedule string `yaml:"schedule"`
	Enabled  *bool  `yaml:"enabled"`
}

// jobDefault is a job's built-in schedule and whether it runs unless told.
type jobDefault struct {
	schedule func(c *Config) string
	enabled  bool
}

// jobDefaults lists every job sigil serve knows, by name.
var jobDefaults = map[string]jobDefault{
	// crl.refresh sets how often every CRL is regenerated.
	"crl-publish": {schedule: func(c *Config) string { return "every " + time.Duration(c.CRL.Refresh).String() }, enabled: true},
	// Responses are re-signed before half their validity: the refresh runs
	// at least every eighth of it (revocation.Responder.RefreshInterval).
	"ocsp-refresh":          {schedule: func(c *Config) string { return "every " + ocspRefreshEvery(c).String() }, enabled: true},
	"ocsp-responder-rotate": {schedule: func(*Config) string { return "every 1h" }, enabled: true},
	// Renews due managed certificates, revokes superseded versions after
	// their overlap and destroys keys whose certificates have expired.
	lifecycle.ManagedRenewJob: {schedule: func(*Config) string { return "every 5m" }, enabled: true},
	// Off by default: it needs the passphrase held in memory.
	"kek-rotate": {schedule: func(*Config) string { return "0 3 1 * *" }, enabled: false},
	"tidy":       {schedule: func(*Config) string { return "0 4 * * *" }, enabled: true},
	// Rotates the active intermediate at intermediate.rotate_at of its
	// life and destroys retired ones' keys once their certificates expired.
	"intermediate-rotate": {schedule: func(*Config) string { return "every 1h" }, enabled: true},
	"expiry-notify":       {schedule: func(*Config) string { return "every 1h" }, enabled: true},
	// Signs a transparency log tree head when the tree grew, or when the
	// latest head is older than ca.TreeHeadMaxAge.
	"log-sign": {schedule: func(*Config) string { return "every 10m" }, enabled: true},
}

// ocspRefreshEvery is the longest ocsp-refresh interval that keeps every
// response under half its validity.
func ocspRefreshEvery(c *Config) time.Duration {
	return max(time.Duration(c.OCSP.Validity)/8, time.Minute)
}

// jobSchedule returns name's configured or default schedule and whether it is enabled.
func (c *Config) jobSchedule(name string) (lifecycle.Schedule, bool, error) {
	def := jobDefaults[name]
	jc := c.Jobs[name]
	spec := jc.Schedule
	if spec == "" {
		spec = def.schedule(c)
	}
	s, err := lifecycle.ParseSchedule(spec)
	if err != nil {
		return lifecycle.Schedule{}, false, fmt.Errorf("jobs.%s.schedule: %w", name, err)
	}
	enabled := def.enabled
	if jc.Enabled != nil {
		enabled = *jc.Enabled
	}
	return s, enabled, nil
}

func (c *Config) validateJobs() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Jobs)) {
		if _, ok := jobDefaults[name]; !ok {
			errs = append(errs, fmt.Errorf("jobs.%s: no such job (known: %v)", name, slices.Sorted(maps.Keys(jobDefaults))))
			continue
		}
		s, enabled, err := c.jobSchedule(name)
		switch {
		case err != nil:
			errs = append(errs, err)
		case name == "ocsp-refresh" && (!enabled || s.Every > ocspRefreshEvery(c) || s.Cron != ""):
			errs = append(errs, fmt.Errorf("jobs.ocsp-refresh: must stay enabled, every %s or more often (an eighth of ocsp.validity), so that no response passes half its validity",
				ocspRefreshEvery(c)))
		}
	}
	return errs
}

// startJobs registers the scheduled jobs and starts the scheduler; a job
// that fell due while the server was down runs now.
func (s *server) startJobs(ctx context.Context, clk clockwork.Clock, reg prometheus.Registerer) error {
	managedRenew, err := lifecycle.ManagedRenewTask(lifecycle.ManagedRenewConfig{Logger: s.log}, s.auth)
	if err != nil {
		return err
	}
	tidy, err := s.newTidier(clk)
	if err != nil {
		return err
	}
	notify, err := s.newNotifier(clk, reg)
	if err != nil {
		return err
	}
	tasks := map[string]lifecycle.Job{
		"crl-publish": {Task: func(ctx context.Context) (lifecycle.Result, error) {
			n, err := s.crl.Publish(ctx)
			return lifecycle.Result{Items: int64(n)}, err
		}},
		"ocsp-refresh": {Task: func(ctx context.Context) (lifecycle.Result, error) {
			n, err := s.ocsp.Refresh(ctx)
			return lifecycle.Result{Items: int64(n)}, err
		}},
		"ocsp-responder-rotate": {ChangesState: true, Task: func(ctx context.Context) (lifecycle.Result, error) {
			rotated, err := s.ocsp.RotateIfDue(ctx)
			if rotated {
				return lifecycle.Result{Items: 1}, err
			}
			return lifecycle.Result{}, err
		}},
		lifecycle.ManagedRenewJob: {Task: managedRenew, ChangesState: true},
		"kek-rotate": {ChangesState: true, Task: func(ctx context.Context) (lifecycle.Result, error) {
			_, n, err := s.auth.RotateKEK(ctx, "system:kek-rotate")
			return lifecycle.Result{Items: int64(n)}, err
		}},
		"tidy":                {Task: tidy.Run},
		"intermediate-rotate": {Task: s.intermediateRotateTask(), ChangesState: true},
		"expiry-notify":       {Task: notify.Run},
		"log-sign": {Task: func(ctx context.Context) (lifecycle.Result, error) {
			_, signed, err := s.auth.SignTreeHead(ctx, ca.TreeHeadMaxAge)
			if signed {
				return lifecycle.Result{Items: 1}, err
			}
			return lifecycle.Result{}, err
		}},
	}
	sched, err := lifecycle.New(lifecycle.Config{Clock: clk, Logger: s.log, Metrics: lifecycle.NewMetrics(reg)}, s.st)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(jobDefaults)) {
		j, ok := tasks[name]
		if !ok {
			return fmt.Errorf("job %s has no task", name)
		}
		j.Name = name
		var enabled bool
		if j.Schedule, enabled, err = s.cfg.jobSchedule(name); err != nil {
			return err
		}
		j.Disabled = !enabled
		if err := sched.Add(j); err != nil {
			return err
		}
	}
	if err := sched.Start(ctx); err != nil {
		return err
	}
	s.jobs = sched
	return nil
}

// stopJobs stops the scheduler, waiting for running jobs.
func (s *server) stopJobs() {
	if s.jobs != nil {
		if err := s.jobs.Stop(); err != nil {
			s.log.Error("stop jobs", "error", err)
		}
		s.jobs = nil
	}
}

// jobsAPI serves /v1/jobs from the server's scheduler, which starts after
// the API handler is built.
type jobsAPI struct{ s *server }

func (j jobsAPI) sched() (*lifecycle.Scheduler, error) {
	if j.s.jobs == nil {
		return nil, &ca.Error{Kind: ca.Unavailable, Detail: "the scheduler is not running"}
	}
	return j.s.jobs, nil
}

func (j jobsAPI) JobStatus(ctx context.Context) ([]api.JobStatus, error) {
	sched, err := j.sched()
	if err != nil {
		return nil, err
	}
	sts, err := sched.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.JobStatus, 0, len(sts))
	for _, st := range sts {
		js := api.JobStatus{Name: st.Name, Schedule: st.Schedule, Enabled: st.Enabled, Running: st.Running, NextRun: st.NextRun.UTC()}
		if st.Last != nil {
			r := api.NewJobRun(*st.Last)
			js.LastRun = &r
		}
		out = append(out, js)
	}
	return out, nil
}

func (j jobsAPI) JobRuns(ctx context.Context, name string, limit int) ([]store.JobRun, error) {
	return j.s.st.JobRuns(ctx, name, limit)
}

func (j jobsAPI) TriggerJob(_ context.Context, name, actor string) error {
	sched, err := j.sched()
	if err != nil {
		return err
	}
	err = sched.Trigger(name, actor)
	switch {
	case errors.Is(err, lifecycle.ErrUnknownJob):
		return &ca.Error{Kind: ca.NotFound, Detail: err.Error()}
	case errors.Is(err, lifecycle.ErrRunning), errors.Is(err, lifecycle.ErrDisabled):
		return &ca.Error{Kind: ca.Conflict, Detail: err.Error()}
	}
	return err
}

func jobsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Scheduled jobs: schedules, last runs, and running one now"}
	cmd.AddCommand(jobsListCmd(), jobsShowCmd(), jobsRunCmd())
	return cmd
}

func jobsListCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the scheduled jobs with their schedule, last run and next run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			resp, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			t := table{header: []string{"JOB", "SCHEDULE", "ENABLED", "LAST RUN", "RESULT", "ITEMS", "DURATION", "NEXT RUN"}}
			for _, j := range resp.Jobs {
				last, result, items, dur := "never", "", "", ""
				if r := j.LastRun; r != nil {
					last, result, items = fmtTime(r.Started), r.Result, strconv.FormatInt(r.Items, 10)
					if !r.Ended.IsZero() {
						dur = r.Ended.Sub(r.Started).Round(time.Millisecond).String()
					}
					if r.Error != "" {
						result += ": " + r.Error
					}
				}
				if j.Running {
					result = "running"
				}
				next := "-"
				if !j.NextRun.IsZero() {
					next = fmtTime(j.NextRun)
				}
				t.rows = append(t.rows, []string{j.Name, j.Schedule, strconv.FormatBool(j.Enabled), last, result, items, dur, next})
			}
			return render(cmd.OutOrStdout(), format, t, resp)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

func jobsShowCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a job's recent runs, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			d, err := c.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), format, runsTable(d.Runs), d)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

func runsTable(runs []api.JobRun) table {
	t := table{header: []string{"RUN", "TRIGGER", "STARTED", "ENDED", "RESULT", "ITEMS", "ERROR"}}
	for _, r := range runs {
		ended := ""
		if !r.Ended.IsZero() {
			ended = fmtTime(r.Ended)
		}
		t.rows = append(t.rows, []string{strconv.FormatInt(r.ID, 10), r.Trigger, fmtTime(r.Started), ended, r.Result,
			strconv.FormatInt(r.Items, 10), r.Error})
	}
	return t
}

func jobsRunCmd() *cobra.Command {
	var cf clientFlags
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a job now (refused while it is running); --wait waits for its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			name := args[0]
			before, err := c.Job(cmd.Context(), name)
			if err != nil {
				return err
			}
			var lastID int64
			if len(before.Runs) > 0 {
				lastID = before.Runs[0].ID
			}
			if _, err := c.RunJob(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "job %s started\n", name)
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				d, err := c.Job(ctx, name)
				if err != nil {
					return err
				}
				if len(d.Runs) > 0 && d.Runs[0].ID > lastID && d.Runs[0].Result != store.JobRunning {
					r := d.Runs[0]
					fmt.Fprintf(cmd.OutOrStdout(), "job %s run %d: %s, %d items in %s\n", name, r.ID, r.Result, r.Items,
						r.Ended.Sub(r.Started).Round(time.Millisecond))
					if r.Result != store.JobOK {
						return fmt.Errorf("job %s failed: %s", name, r.Error)
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("job %s: no result within %s (it goes on in the server; see sigil jobs show %s)", name, timeout, name)
				case <-tick.C:
				}
			}
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the run to end and print its result")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	return cmd
}
