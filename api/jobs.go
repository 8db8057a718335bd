package api

import (
	"context"
	"net/http"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// Jobs is what /v1/jobs needs from the scheduler. Errors are ca errors:
// NotFound for an unknown job, Conflict for one running or disabled.
type Jobs interface {
	JobStatus(ctx context.Context) ([]JobStatus, error)
	JobRuns(ctx context.Context, name string, limit int) ([]store.JobRun, error)
	TriggerJob(ctx context.Context, name, actor string) error
}

// JobStatus is one scheduled job.
type JobStatus struct {
	Name     string    `json:"name"`
	Schedule string    `json:"schedule"`
	Enabled  bool      `json:"enabled"`
	Running  bool      `json:"running"`
	LastRun  *JobRun   `json:"last_run,omitempty"`
	NextRun  time.Time `json:"next_run,omitzero"`
}

// JobRun is one recorded run.
type JobRun struct {
	ID      int64     `json:"id"`
	Trigger string    `json:"trigger"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Result  string    `json:"result"`
	Error   string    `json:"error,omitempty"`
	Items   int64     `json:"items"`
}

// JobDetail is a job with its recent runs, newest first.
type JobDetail struct {
	JobStatus
	Runs []JobRun `json:"runs"`
}

// NewJobRun converts a stored run.
func NewJobRun(r store.JobRun) JobRun {
	return JobRun{ID: r.ID, Trigger: r.Trigger, Started: r.Started.UTC(), Ended: r.Ended.UTC(), Result: r.Result, Error: r.Error, Items: r.Items}
}

func (api *API) listJobs(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	jobs, err := api.cfg.Jobs.JobStatus(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, JobList{Jobs: jobs})
	return nil
}

func (api *API) getJob(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	name := r.PathValue("name")
	jobs, err := api.cfg.Jobs.JobStatus(r.Context())
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Name != name {
			continue
		}
		runs, err := api.cfg.Jobs.JobRuns(r.Context(), name, 20)
		if err != nil {
			return err
		}
		d := JobDetail{JobStatus: j, Runs: []JobRun{}}
		for _, run := range runs {
			d.Runs = append(d.Runs, NewJobRun(run))
		}
		writeJSON(w, http.StatusOK, d)
		return nil
	}
	return &ca.Error{Kind: ca.NotFound, Detail: "no job named " + name}
}

func (api *API) runJob(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	name := r.PathValue("name")
	if err := api.cfg.Jobs.TriggerJob(r.Context(), name, p.Actor()); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, JobStarted{Job: name, Started: true})
	return nil
}
