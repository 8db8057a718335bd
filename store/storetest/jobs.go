package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// testJobRuns checks the record of scheduled job runs: a run is recorded
// running with an id and the node that runs it, finished once, interrupted if the process stopped
// during it, and the latest run of every job and a job's runs are read
// back newest first.
func testJobRuns(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	start := func(job, trigger string, at time.Time) store.JobRun {
		t.Helper()
		r := store.JobRun{Job: job, Trigger: trigger, Started: at, Node: "node-" + trigger}
		mustTx(t, s, func(tx store.Tx) error { return tx.StartJobRun(&r) })
		if r.ID == 0 || r.Result != store.JobRunning {
			t.Fatalf("StartJobRun: id %d, result %q; want an id, running", r.ID, r.Result)
		}
		return r
	}
	crl1 := start("crl", "schedule", testStart)
	crl1.Ended, crl1.Result, crl1.Items = testStart.Add(time.Second), store.JobOK, 3
	mustTx(t, s, func(tx store.Tx) error { return tx.FinishJobRun(crl1) })
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.FinishJobRun(crl1) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("finishing a finished run = %v, want ErrNotFound", err)
	}
	crl2 := start("crl", "manual:admin", testStart.Add(time.Minute))
	if crl2.ID <= crl1.ID {
		t.Errorf("second run id %d, not after %d", crl2.ID, crl1.ID)
	}
	crl2.Ended, crl2.Result, crl2.Error = testStart.Add(2*time.Minute), store.JobFailed, "sign: no key"
	mustTx(t, s, func(tx store.Tx) error { return tx.FinishJobRun(crl2) })
	tidy := start("tidy", "missed", testStart.Add(3*time.Minute))

	latest, err := s.LatestJobRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || !reflect.DeepEqual(latest["crl"], crl2) || !reflect.DeepEqual(latest["tidy"], tidy) {
		t.Errorf("LatestJobRuns =\n%+v\nwant crl %+v, tidy %+v", latest, crl2, tidy)
	}
	runs, err := s.JobRuns(ctx, "crl", 10)
	if err != nil || !reflect.DeepEqual(runs, []store.JobRun{crl2, crl1}) {
		t.Errorf("JobRuns(crl) =\n%+v, %v\nwant newest first\n%+v", runs, err, []store.JobRun{crl2, crl1})
	}
	if runs, err := s.JobRuns(ctx, "crl", 1); err != nil || len(runs) != 1 || runs[0].ID != crl2.ID {
		t.Errorf("JobRuns(crl, 1) = %+v, %v; want the newest only", runs, err)
	}

	// At start, a run still recorded running was cut short by a stop.
	at := testStart.Add(time.Hour)
	var n int64
	mustTx(t, s, func(tx store.Tx) error {
		var err error
		n, err = tx.InterruptJobRuns(at, "the server stopped during the run")
		return err
	})
	if n != 1 {
		t.Errorf("InterruptJobRuns = %d, want 1", n)
	}
	want := tidy
	want.Ended, want.Result, want.Error = at, store.JobInterrupted, "the server stopped during the run"
	if latest, err := s.LatestJobRuns(ctx); err != nil || !reflect.DeepEqual(latest["tidy"], want) {
		t.Errorf("interrupted run = %+v, %v; want %+v", latest["tidy"], err, want)
	}
	tidy.Ended, tidy.Result = at, store.JobOK
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.FinishJobRun(tidy) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("finishing an interrupted run = %v, want ErrNotFound", err)
	}
}
