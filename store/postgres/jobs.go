package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/store"
)

const (
	qInsertJobRun     = "INSERT INTO job_runs (job, trigger, started, result, node) VALUES (?, ?, ?, ?, ?)"
	qFinishJobRun     = "UPDATE job_runs SET ended = ?, result = ?, error = ?, items = ? WHERE id = ? AND result = 'running'"
	qInterruptJobRuns = "UPDATE job_runs SET ended = ?, result = 'interrupted', error = ? WHERE result = 'running'"
	jobRunColumns     = "id, job, trigger, started, ended, result, error, items, node"
	qLatestJobRuns    = "SELECT " + jobRunColumns + " FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY job)"
	qJobRuns          = "SELECT " + jobRunColumns + " FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT ?"
)

// StartJobRun implements store.Tx.
func (t *pgTx) StartJobRun(r *store.JobRun) error {
	if r.Job == "" || r.Trigger == "" || r.Started.IsZero() {
		return fmt.Errorf("start job run: incomplete %+v", *r)
	}
	if err := t.queryRow(qInsertJobRun+" RETURNING id", r.Job, r.Trigger, nanos(r.Started), store.JobRunning, r.Node).Scan(&r.ID); err != nil {
		return fmt.Errorf("start job run %s: %w", r.Job, err)
	}
	r.Result = store.JobRunning
	return nil
}

// FinishJobRun implements store.Tx.
func (t *pgTx) FinishJobRun(r store.JobRun) error {
	what := fmt.Sprintf("finish job run %s/%d", r.Job, r.ID)
	if r.Result != store.JobOK && r.Result != store.JobFailed {
		return fmt.Errorf("%s: result %q", what, r.Result)
	}
	res, err := t.exec(what, qFinishJobRun, nanos(r.Ended), r.Result, r.Error, r.Items, r.ID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%s: no such running job (%d rows, %v): %w", what, n, err, store.ErrNotFound)
	}
	return nil
}

// InterruptJobRuns implements store.Tx.
func (t *pgTx) InterruptJobRuns(at time.Time, why string) (int64, error) {
	res, err := t.exec("interrupt job runs", qInterruptJobRuns, nanos(at), why)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("interrupt job runs: %w", err)
	}
	return n, nil
}

func scanJobRun(sc interface{ Scan(...any) error }) (store.JobRun, error) {
	var r store.JobRun
	var started, ended int64
	if err := sc.Scan(&r.ID, &r.Job, &r.Trigger, &started, &ended, &r.Result, &r.Error, &r.Items, &r.Node); err != nil {
		return store.JobRun{}, err
	}
	r.Started, r.Ended = fromNanos(started), fromNanos(ended)
	return r, nil
}

// LatestJobRuns implements Store.
func (s *Store) LatestJobRuns(ctx context.Context) (map[string]store.JobRun, error) {
	rows, err := s.query(ctx, qLatestJobRuns)
	if err != nil {
		return nil, fmt.Errorf("latest job runs: %w", err)
	}
	defer rows.Close()
	out := map[string]store.JobRun{}
	for rows.Next() {
		r, err := scanJobRun(rows)
		if err != nil {
			return nil, fmt.Errorf("latest job runs: %w", err)
		}
		out[r.Job] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("latest job runs: %w", err)
	}
	return out, nil
}

// JobRuns implements Store.
func (s *Store) JobRuns(ctx context.Context, job string, limit int) ([]store.JobRun, error) {
	if limit <= 0 {
		limit = 20
	}
	rows, err := s.query(ctx, qJobRuns, job, limit)
	if err != nil {
		return nil, fmt.Errorf("runs of job %s: %w", job, err)
	}
	defer rows.Close()
	var out []store.JobRun
	for rows.Next() {
		r, err := scanJobRun(rows)
		if err != nil {
			return nil, fmt.Errorf("runs of job %s: %w", job, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runs of job %s: %w", job, err)
	}
	return out, nil
}
