package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// TestJobsEndToEnd: sigil serve runs its scheduled jobs; a job that never
// ran runs at start; `sigil jobs run --wait` runs one now and prints its
// result; `sigil jobs list` and `show` report the runs and the node
// (node.name) that made them.
func TestJobsEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	e2eSetConfig(t, c, "  name: \"\"\n", "  name: ca-node-7\n") // node.name, the template's one empty name
	p := startServe(t, c)

	list := func() map[string]api.JobStatus {
		t.Helper()
		out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "list", "--format", "json")...)
		var resp struct {
			Jobs []api.JobStatus `json:"jobs"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("jobs list --format json: %v\n%s", err, out)
		}
		m := map[string]api.JobStatus{}
		for _, j := range resp.Jobs {
			m[j.Name] = j
		}
		return m
	}
	crl, ok := list()["crl-publish"]
	if !ok || !crl.Enabled || crl.Schedule != "every 1h0m0s" || crl.NextRun.IsZero() {
		t.Fatalf("crl-publish listed as %+v", crl)
	}

	out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "run", "crl-publish", "--wait")...)
	if !strings.Contains(out, "job crl-publish run") || !strings.Contains(out, ": ok, 1 items") {
		t.Errorf("jobs run --wait printed %q", out)
	}
	out, _ = e2eRun(t, e2eAdmin(p, c, "jobs", "show", "crl-publish", "--format", "json")...)
	var d api.JobDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Runs) < 2 || !strings.HasPrefix(d.Runs[0].Trigger, "manual:token:") || d.Runs[len(d.Runs)-1].Trigger != "missed" {
		t.Errorf("runs %+v, want the manual run after the one at start", d.Runs)
	}
	for _, r := range d.Runs {
		if r.Node != "ca-node-7" {
			t.Errorf("run %d by node %q, want ca-node-7 (node.name)", r.ID, r.Node)
		}
	}
	if shown, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "show", "crl-publish")...); !lineHas(shown, "NODE") || !lineHas(shown, "manual:token:", "ca-node-7") {
		t.Errorf("jobs show table:\n%s", shown)
	}
	table, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "list")...)
	if !lineHas(table, "JOB", "NODE") || !lineHas(table, "crl-publish", "every 1h0m0s", "ca-node-7") {
		t.Errorf("jobs list table:\n%s", table)
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "jobs", "run", "no-such-job")...); !strings.Contains(msg, "no job named no-such-job") {
		t.Errorf("unknown job: %q", msg)
	}
	events := e2eListAudit(t, p, c, "--action", "job.triggered")
	if len(events) != 1 || events[0].Target != "crl-publish" {
		t.Errorf("job.triggered events %+v", events)
	}
}
