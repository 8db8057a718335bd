package api

import (
	"context"
	"net/http"

	"github.com/sigil-ca/sigil/api/wire"
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

// JobStatus is one scheduled job (shared with the auditor page).
type JobStatus = wire.JobStatus

// JobRun is one recorded run.
type JobRun = wire.JobRun

// JobDetail is a job with its recent runs, newest first.
type JobDetail struct {
	JobStatus
	Runs []JobRun `json:"runs"`
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
			d.Runs = append(d.Runs, wire.NewJobRun(run))
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

// NewJobRun converts a stored run, as wire.NewJobRun does.
func NewJobRun(r store.JobRun) JobRun { return wire.NewJobRun(r) }
