package wire

import (
	"time"

	"github.com/sigil-ca/sigil/store"
)

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
	Node    string    `json:"node,omitempty"` // the node that ran it, in a cluster
}

// NewJobRun converts a stored run.
func NewJobRun(r store.JobRun) JobRun {
	return JobRun{ID: r.ID, Trigger: r.Trigger, Started: r.Started.UTC(), Ended: r.Ended.UTC(), Result: r.Result, Error: r.Error, Items: r.Items, Node: r.Node}
}
