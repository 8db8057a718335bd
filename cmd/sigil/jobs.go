package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle"
	"github.com/sigil-ca/sigil/lifecycle/pgelect"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
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
	lifecycle.IntermediateRotateJob: {schedule: func(*Config) string { return "every 1h" }, enabled: true},
	"expiry-notify":                 {schedule: func(*Config) string { return "every 1h" }, enabled: true},
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
	managedRenew, err := lifecycle.ManagedRenewTask(lifecycle.ManagedRenewConfig{Logger: s.log}, s.managed)
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
		"tidy": {Task: tidy.Run},
		lifecycle.IntermediateRotateJob: {Task: lifecycle.IntermediateRotateTask(s.auth.Intermediates(), s.cfg.Intermediate.RotateAt, s.cfg.destroyAfter()),
			ChangesState: true},
		"expiry-notify": {Task: notify.Run},
		"log-sign": {Task: func(ctx context.Context) (lifecycle.Result, error) {
			_, signed, err := s.auth.Log().SignTreeHead(ctx, ca.TreeHeadMaxAge)
			if signed {
				return lifecycle.Result{Items: 1}, err
			}
			return lifecycle.Result{}, err
		}},
	}
	lc := lifecycle.Config{Clock: clk, Logger: s.log, Metrics: lifecycle.NewMetrics(reg), Node: s.cfg.Node.Name}
	if s.cfg.Store.postgres() {
		// Several nodes may share the database: one, elected, runs the jobs.
		e, closeElector, err := jobElector(ctx, s.cfg.Store)
		if err != nil {
			return err
		}
		lc.Elector, s.closeElector = e, closeElector
	}
	sched, err := lifecycle.New(lc, s.st)
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
	if s.closeElector != nil {
		s.closeElector() // after the runs: another node may lead now
		s.closeElector = nil
	}
}

// jobElector elects the job runner among the nodes on one PostgreSQL
// database, over a connection of its own: the lock lives with its session,
// so a node that dies gives the lead up with it.
func jobElector(ctx context.Context, c StoreConfig) (lifecycle.Elector, func(), error) {
	pw, err := storePassword(c)
	if err != nil {
		return nil, nil, err
	}
	pool, err := postgres.Connect(ctx, c.DSN, pw, 2)
	if err != nil {
		return nil, nil, fmt.Errorf("job election: %w", err)
	}
	e := pgelect.New(pool, "jobs")
	return e, func() { e.Close(); pool.Close() }, nil
}

// jobsAPI serves /v1/jobs from the server's scheduler, which starts after
// the API handler is built. It stays here as wiring: it binds late to that
// scheduler (no scheduler yet or any more is Unavailable) and copies
// lifecycle.Status into the wire type, which neither lifecycle nor
// api/wire could do without importing the other.
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
	// Trigger's refusals are already ca errors (NotFound, Conflict).
	return sched.Trigger(name, actor)
}

func jobsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Scheduled jobs: schedules, last runs, and running one now"}
	cmd.AddCommand(jobsListCmd(), jobsShowCmd(), jobsRunCmd())
	return cmd
}

func jobsListCmd() *cobra.Command {
	return listCmd(&cobra.Command{
		Use:   "list",
		Short: "List the scheduled jobs with their schedule, last run and next run",
		Args:  cobra.NoArgs,
	}, listSpec[api.JobList, api.JobStatus]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.JobList, error) { return c.Jobs(ctx) },
		items: func(l api.JobList) []api.JobStatus { return l.Jobs },
		cols: []column[api.JobStatus]{
			{"JOB", func(j api.JobStatus) string { return j.Name }},
			{"SCHEDULE", func(j api.JobStatus) string { return j.Schedule }},
			{"ENABLED", func(j api.JobStatus) string { return strconv.FormatBool(j.Enabled) }},
			{"LAST RUN", func(j api.JobStatus) string {
				if j.LastRun == nil {
					return "never"
				}
				return fmtTime(j.LastRun.Started)
			}},
			{"RESULT", func(j api.JobStatus) string {
				switch r := j.LastRun; {
				case j.Running:
					return "running"
				case r == nil:
					return ""
				case r.Error != "":
					return r.Result + ": " + r.Error
				default:
					return r.Result
				}
			}},
			{"ITEMS", func(j api.JobStatus) string {
				if j.LastRun == nil {
					return ""
				}
				return strconv.FormatInt(j.LastRun.Items, 10)
			}},
			{"DURATION", func(j api.JobStatus) string {
				if r := j.LastRun; r != nil && !r.Ended.IsZero() {
					return r.Ended.Sub(r.Started).Round(time.Millisecond).String()
				}
				return ""
			}},
			{"NODE", func(j api.JobStatus) string {
				if j.LastRun == nil {
					return ""
				}
				return j.LastRun.Node
			}},
			{"NEXT RUN", func(j api.JobStatus) string {
				if j.NextRun.IsZero() {
					return "-"
				}
				return fmtTime(j.NextRun)
			}},
		},
	})
}

func jobsShowCmd() *cobra.Command {
	return listCmd(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a job's recent runs, newest first",
		Args:  cobra.ExactArgs(1),
	}, listSpec[api.JobDetail, api.JobRun]{
		fetch: func(ctx context.Context, c *client.Client, args []string) (api.JobDetail, error) {
			return c.Job(ctx, args[0])
		},
		items: func(d api.JobDetail) []api.JobRun { return d.Runs },
		cols:  runColumns(),
	})
}

// runColumns lay out a job's runs.
func runColumns() []column[api.JobRun] {
	return []column[api.JobRun]{
		{"RUN", func(r api.JobRun) string { return strconv.FormatInt(r.ID, 10) }},
		{"TRIGGER", func(r api.JobRun) string { return r.Trigger }},
		{"STARTED", func(r api.JobRun) string { return fmtTime(r.Started) }},
		{"ENDED", func(r api.JobRun) string {
			if r.Ended.IsZero() {
				return ""
			}
			return fmtTime(r.Ended)
		}},
		{"RESULT", func(r api.JobRun) string { return r.Result }},
		{"ITEMS", func(r api.JobRun) string { return strconv.FormatInt(r.Items, 10) }},
		{"NODE", func(r api.JobRun) string { return r.Node }},
		{"ERROR", func(r api.JobRun) string { return r.Error }},
	}
}

func jobsRunCmd() *cobra.Command {
	var cf clientFlags
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a job now (refused while it is running); --wait waits for a run that starts after this command, and prints its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			name := args[0]
			if !wait {
				if _, err := c.RunJob(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "job %s started\n", name)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			r, err := runJobAndWait(ctx, c, name, func() { fmt.Fprintf(cmd.ErrOrStderr(), "job %s started\n", name) })
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("job %s: no result within %s (it goes on in the server; see sigil jobs show %s)", name, timeout, name)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s run %d: %s, %d items in %s\n", name, r.ID, r.Result, r.Items,
				r.Ended.Sub(r.Started).Round(time.Millisecond))
			if r.Result != store.JobOK {
				return fmt.Errorf("job %s failed: %s", name, r.Error)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the run to end and print its result")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	return cmd
}

// jobPoll is how often jobs run --wait asks for the job's state.
const jobPoll = 250 * time.Millisecond

// runJobAndWait triggers job name and returns the run that trigger started,
// once it has ended. A run already going (the scheduler's, or another
// operator's) started before this call and may have missed what the caller
// wants done, so it is waited out and the job triggered again after it.
func runJobAndWait(ctx context.Context, c *client.Client, name string, started func()) (api.JobRun, error) {
	tick := time.NewTicker(jobPoll)
	defer tick.Stop()
	next := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			return nil
		}
	}
	var lastID int64
	for {
		d, err := c.Job(ctx, name)
		if err != nil {
			return api.JobRun{}, err
		}
		lastID = 0
		if len(d.Runs) > 0 {
			lastID = d.Runs[0].ID
		}
		_, err = c.RunJob(ctx, name)
		if err == nil {
			break
		}
		if !client.IsKind(err, "conflict") || !d.Enabled {
			// Unknown, disabled, or refused for a reason waiting does not cure.
			return api.JobRun{}, err
		}
		if err := next(); err != nil {
			return api.JobRun{}, err
		}
	}
	started()
	for {
		d, err := c.Job(ctx, name)
		if err != nil {
			return api.JobRun{}, err
		}
		if len(d.Runs) > 0 && d.Runs[0].ID > lastID && d.Runs[0].Result != store.JobRunning {
			return d.Runs[0], nil
		}
		if err := next(); err != nil {
			return api.JobRun{}, err
		}
	}
}
