package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Errors of Trigger.
var (
	ErrUnknownJob = errors.New("no such job")
	ErrRunning    = errors.New("job is already running")
	ErrDisabled   = errors.New("job is disabled")
	// ErrNotLeader refuses a manual run on a node that is not the elected
	// job runner of its cluster: another node answers.
	ErrNotLeader = errors.New("jobs run on the elected node, and this node is not it")
)

// Elector elects the one node of several, sharing one database, that runs
// the jobs. IsLeader returns nil while this node leads, an error otherwise
// (not elected, or the election cannot be reached). It must be cheap: it is
// asked before every run and every ElectionPoll.
type Elector interface {
	IsLeader(ctx context.Context) error
}

// jobError is a refusal of Trigger: a ca error of kind k whose detail is
// what the caller sees, wrapping the sentinel.
func jobError(k ca.Kind, sentinel error, detail string) error {
	return &ca.Error{Kind: k, Detail: detail, Err: sentinel}
}

// Result is what a run did.
type Result struct {
	Items int64 // certificates renewed, CRLs published, keys rotated, ...
}

// Task is a job's work. It should stop early when ctx is done.
type Task func(ctx context.Context) (Result, error)

// Job describes one named job.
type Job struct {
	Name     string
	Schedule Schedule
	Disabled bool
	Task     Task
	// ChangesState marks jobs that rotate keys or issue, renew or revoke
	// certificates: their runs that did something, or failed, are audited
	// (job.run), besides the events of each change.
	ChangesState bool
}

// Store is what the scheduler records runs in (its transactions see
// lifecycle's view, Tx). store.SQLite implements it.
type Store interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	// LatestJobRuns returns the latest run of every job that has run, by
	// job name: what a start decides missed runs from.
	LatestJobRuns(ctx context.Context) (map[string]store.JobRun, error)
}

// Config configures a Scheduler.
type Config struct {
	Clock   clockwork.Clock
	Logger  *slog.Logger
	Metrics *Metrics // optional
	// Node names this node on the runs it records (node.name).
	Node string
	// Elector, when several nodes share one database, makes one of them
	// the job runner; nil: this node is alone and runs every job.
	Elector Elector
	// ElectionPoll is how often a node asks whether it leads (default
	// DefaultElectionPoll): a node that becomes leader marks the old
	// leader's unfinished runs interrupted and runs what fell due.
	ElectionPoll time.Duration
}

// DefaultElectionPoll bounds how long the jobs wait for a new leader after
// one dies (plus the database noticing the dead node's session).
const DefaultElectionPoll = 10 * time.Second

// Scheduler runs jobs. Add them, then Start; Stop waits for running jobs.
type Scheduler struct {
	cfg     Config
	st      Store
	clk     clockwork.Clock
	log     *slog.Logger
	metrics *Metrics

	jobs map[string]*job

	ctx    context.Context
	cancel context.CancelFunc
	gs     gocron.Scheduler
	wg     sync.WaitGroup // runs started outside gocron (missed, manual), the election loop

	leading atomic.Bool // with an Elector: this node led at the last ask
}

type job struct {
	Job
	running sync.Mutex // held for the whole of a run: TryLock makes jobs singletons
	active  atomic.Bool
	gjob    gocron.Job
}

// New returns a scheduler; no job runs before Start.
func New(cfg Config, st Store) (*Scheduler, error) {
	if cfg.Clock == nil || cfg.Logger == nil || st == nil {
		return nil, errors.New("lifecycle: clock, logger and store are required")
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.ElectionPoll <= 0 {
		cfg.ElectionPoll = DefaultElectionPoll
	}
	return &Scheduler{cfg: cfg, st: st, clk: cfg.Clock, log: cfg.Logger, metrics: m, jobs: map[string]*job{}}, nil
}

// Add registers j. It must be called before Start.
func (s *Scheduler) Add(j Job) error {
	switch {
	case s.gs != nil:
		return fmt.Errorf("job %s: the scheduler has started", j.Name)
	case j.Name == "" || j.Task == nil:
		return errors.New("job: name and task are required")
	case j.Schedule.IsZero() && !j.Disabled:
		return fmt.Errorf("job %s: no schedule", j.Name)
	case s.jobs[j.Name] != nil:
		return fmt.Errorf("job %s: added twice", j.Name)
	}
	s.jobs[j.Name] = &job{Job: j}
	return nil
}

// Start marks runs left running by a previous process as interrupted,
// schedules every enabled job, and at once runs those whose last run is
// older than their schedule allows (they were due while the server was
// down), never ran, or were interrupted.
func (s *Scheduler) Start(ctx context.Context) error {
	if s.gs != nil {
		return errors.New("lifecycle: started twice")
	}
	opts := []gocron.SchedulerOption{gocron.WithClock(s.clk), gocron.WithLocation(time.UTC), gocron.WithLogger(gocronLogger{s.log})}
	if s.cfg.Elector != nil {
		// gocron asks before each tick; run asks again whether the tick is
		// still due (a new leader may have run it already).
		opts = append(opts, gocron.WithDistributedElector(s.cfg.Elector))
	}
	gs, err := gocron.NewScheduler(opts...)
	if err != nil {
		return fmt.Errorf("lifecycle: scheduler: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		j := s.jobs[name]
		if j.Disabled {
			continue
		}
		var def gocron.JobDefinition
		if j.Schedule.Cron != "" {
			def = gocron.CronJob(j.Schedule.Cron, false)
		} else {
			def = gocron.DurationJob(j.Schedule.Every)
		}
		// Singleton by the job's own lock, not gocron's singleton mode:
		// that mode sees only gocron's ticks (not runs at start or manual
		// ones) and frees its slot a moment after the task returns, so a
		// tick landing then would be dropped. The lock is held exactly for
		// the run, whoever started it; a tick finding it taken is skipped.
		j.gjob, err = gs.NewJob(def, gocron.NewTask(func() { s.run(j, "schedule") }), gocron.WithName(j.Name))
		if err != nil {
			_ = gs.Shutdown()
			return fmt.Errorf("lifecycle: job %s: %w", j.Name, err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if s.cfg.Elector == nil {
		if err := s.takeOver(ctx); err != nil {
			_ = gs.Shutdown()
			return err
		}
		s.gs = gs
		gs.Start()
		s.runMissed(ctx)
		return nil
	}
	s.gs = gs
	gs.Start()
	s.elect(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := s.clk.NewTicker(s.cfg.ElectionPoll)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.Chan():
				s.elect(s.ctx)
			}
		}
	}()
	return nil
}

// elect asks the Elector whether this node leads; a node that has just
// become leader takes the jobs over and runs what fell due.
func (s *Scheduler) elect(ctx context.Context) {
	err := s.cfg.Elector.IsLeader(ctx)
	was := s.leading.Swap(err == nil)
	switch {
	case err == nil && !was:
		s.log.InfoContext(ctx, "this node is now the elected job runner")
		if err := s.takeOver(ctx); err != nil {
			s.log.ErrorContext(ctx, "cannot take the jobs over", "error", err)
			s.leading.Store(false) // try again at the next poll
			return
		}
		s.runMissed(ctx)
	case err != nil && was:
		s.log.WarnContext(ctx, "this node is no longer the elected job runner", "error", err)
	}
}

// takeOver marks the runs left running by a previous process (or, in a
// cluster, by the previous leader) as interrupted: only the job runner
// calls it, so no live node's run is among them.
func (s *Scheduler) takeOver(ctx context.Context) error {
	err := update(ctx, s.st, func(tx Tx) error {
		n, err := tx.InterruptJobRuns(s.clk.Now(), "the server stopped during the run")
		if n > 0 {
			s.log.WarnContext(ctx, "job runs interrupted by the last shutdown", "runs", n)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	return nil
}

// runMissed runs, now, every enabled job whose last run is older than its
// schedule allows (it was due while no node ran jobs), that never ran, or
// that was interrupted.
func (s *Scheduler) runMissed(ctx context.Context) {
	latest, err := s.st.LatestJobRuns(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "cannot read the last job runs: missed runs wait for their schedule", "error", err)
		return
	}
	now := s.clk.Now()
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		j := s.jobs[name]
		if j.Disabled {
			continue
		}
		last, ok := latest[name]
		if ok && last.Result != store.JobInterrupted && j.Schedule.next(last.Started).After(now) {
			continue
		}
		s.log.InfoContext(ctx, "job due while no node ran it runs now", "job", j.Name)
		if j.running.TryLock() {
			s.goRunLocked(j, "missed")
		}
	}
}

// Stop stops scheduling, cancels the context of running jobs and waits
// for them to return.
func (s *Scheduler) Stop() error {
	if s.gs == nil {
		return nil
	}
	s.cancel()
	err := s.gs.Shutdown()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("lifecycle: stop: %w", err)
	}
	return nil
}

// Trigger runs the job name now, in the background, unless it is running
// (ErrRunning: overlapping triggers run once), disabled or unknown. Those
// refusals are *ca.Error, as /v1/jobs shows them: an unknown job is
// ca.NotFound, a running or disabled one ca.Conflict, one asked of a node
// that is not the elected job runner ca.Unavailable; errors.Is still finds
// the sentinel.
func (s *Scheduler) Trigger(name, actor string) error {
	j := s.jobs[name]
	switch {
	case j == nil:
		return jobError(ca.NotFound, ErrUnknownJob, "no job named "+name) // as GET /v1/jobs/{name} says it
	case j.Disabled:
		return jobError(ca.Conflict, ErrDisabled, fmt.Sprintf("%s: %s", name, ErrDisabled))
	case s.gs == nil:
		return errors.New("lifecycle: not started")
	case s.cfg.Elector != nil && s.cfg.Elector.IsLeader(s.ctx) != nil:
		// Unavailable, not Conflict: this node cannot run it at all; the
		// elected one can (through a load balancer, a retry may reach it).
		return jobError(ca.Unavailable, ErrNotLeader, fmt.Sprintf("%s: %s (another node runs it)", name, ErrNotLeader))
	case !j.running.TryLock():
		return jobError(ca.Conflict, ErrRunning, fmt.Sprintf("%s: %s", name, ErrRunning))
	}
	s.goRunLocked(j, "manual:"+actor)
	return nil
}

// goRunLocked runs j, whose lock the caller took, in the background, and
// releases the lock when it ends; Stop waits for it.
func (s *Scheduler) goRunLocked(j *job, trigger string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer j.running.Unlock()
		s.runLocked(j, trigger)
	}()
}

// run is what gocron calls on schedule.
func (s *Scheduler) run(j *job, trigger string) {
	if !j.running.TryLock() {
		s.log.Info("job still running: scheduled run skipped", "job", j.Name)
		s.metrics.skipped.WithLabelValues(j.Name).Inc()
		return
	}
	defer j.running.Unlock()
	if s.cfg.Elector != nil && s.ranThisPeriod(j) {
		s.metrics.skipped.WithLabelValues(j.Name).Inc()
		return
	}
	s.runLocked(j, trigger)
}

// ranThisPeriod reports whether j already ran for the tick now falls in:
// each node keeps its own timers, so after a change of leader the new
// one's tick can come soon after the run it made on taking over (or the
// old leader made). Within half a period (a cron schedule: before its next
// slot) of the last start, a tick is the same tick.
func (s *Scheduler) ranThisPeriod(j *job) bool {
	latest, err := s.st.LatestJobRuns(s.ctx)
	if err != nil {
		return false // the run records its own failure to read the store
	}
	last, ok := latest[j.Name]
	if !ok || last.Result == store.JobInterrupted {
		return false
	}
	now := s.clk.Now()
	if j.Schedule.Cron != "" {
		return j.Schedule.next(last.Started).After(now.Add(time.Second))
	}
	return now.Sub(last.Started) < j.Schedule.Every/2
}

// runLocked runs j, which the caller holds, and records the run.
func (s *Scheduler) runLocked(j *job, trigger string) {
	ctx := s.ctx
	j.active.Store(true)
	defer j.active.Store(false)
	rec := store.JobRun{Job: j.Name, Trigger: trigger, Started: s.clk.Now(), Node: s.cfg.Node}
	recorded := true
	err := update(ctx, s.st, func(tx Tx) error {
		if err := tx.StartJobRun(&rec); err != nil {
			return err
		}
		actor, manual := strings.CutPrefix(trigger, "manual:")
		if !manual {
			return nil
		}
		_, err := tx.AppendAudit(audit.Event{Time: rec.Started, Actor: actor, Action: audit.ActionJobTriggered, Target: j.Name,
			Detail: map[string]string{"run": strconv.FormatInt(rec.ID, 10)}})
		return err
	})
	if err != nil {
		// The work matters more than its record: run anyway.
		s.log.ErrorContext(ctx, "cannot record the start of a job run", "job", j.Name, "error", err)
		recorded = false
	}
	start := time.Now()
	res, err := j.Task(ctx)
	s.metrics.duration.WithLabelValues(j.Name).Observe(time.Since(start).Seconds())
	rec.Ended, rec.Items, rec.Result = s.clk.Now(), res.Items, store.JobOK
	if err != nil {
		rec.Result, rec.Error = store.JobFailed, err.Error()
		s.log.ErrorContext(ctx, "job failed", "job", j.Name, "trigger", trigger, "items", res.Items, "error", err)
	} else {
		s.log.InfoContext(ctx, "job done", "job", j.Name, "trigger", trigger, "items", res.Items,
			"next", s.nextRun(j))
	}
	s.metrics.observe(j.Name, rec)
	if !recorded {
		return
	}
	// Recorded even when the scheduler is stopping: the run happened.
	werr := update(context.WithoutCancel(ctx), s.st, func(tx Tx) error {
		if err := tx.FinishJobRun(rec); err != nil {
			return err
		}
		if !j.ChangesState || (res.Items == 0 && err == nil) {
			return nil
		}
		detail := map[string]string{"trigger": trigger, "result": rec.Result, "items": strconv.FormatInt(res.Items, 10),
			"run": strconv.FormatInt(rec.ID, 10)}
		if err != nil {
			detail["error"] = err.Error()
		}
		_, aerr := tx.AppendAudit(audit.Event{Time: rec.Ended, Actor: "system:" + j.Name, Action: audit.ActionJobRun, Target: j.Name, Detail: detail})
		return aerr
	})
	if werr != nil {
		s.log.ErrorContext(ctx, "cannot record the end of a job run", "job", j.Name, "error", werr)
	}
}

func (s *Scheduler) nextRun(j *job) time.Time {
	if j.gjob == nil {
		return time.Time{}
	}
	t, err := j.gjob.NextRun()
	if err != nil {
		return time.Time{}
	}
	return t
}

// Status is one job as `sigil jobs list` shows it.
type Status struct {
	Name     string
	Schedule string
	Enabled  bool
	Running  bool
	Last     *store.JobRun // nil: never ran
	NextRun  time.Time     // zero: not scheduled
}

// Status lists every job, by name, with its last recorded run.
func (s *Scheduler) Status(ctx context.Context) ([]Status, error) {
	latest, err := s.st.LatestJobRuns(ctx)
	if err != nil {
		return nil, fmt.Errorf("job status: %w", err)
	}
	var out []Status
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		j := s.jobs[name]
		st := Status{Name: name, Schedule: j.Schedule.String(), Enabled: !j.Disabled}
		if j.Schedule.IsZero() {
			st.Schedule = ""
		}
		if last, ok := latest[name]; ok {
			st.Last = &last
		}
		st.Running = j.active.Load()
		if !j.Disabled {
			st.NextRun = s.nextRun(j)
		}
		out = append(out, st)
	}
	return out, nil
}

// gocronLogger sends gocron's own messages to slog.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn("gocron: "+msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("gocron: "+msg, args...) }
