package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/lifecycle"
)

// e2eJobs returns `sigil jobs list --format json` by job name.
func e2eJobs(t testing.TB, p *serverProc, c *caDir) map[string]api.JobStatus {
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

// e2eWaitIdle waits until job has finished the run it started with the
// server (a job that never ran runs at start).
func e2eWaitIdle(t testing.TB, p *serverProc, c *caDir, job string) api.JobRun {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j := e2eJobs(t, p, c)[job]
		if j.LastRun != nil && !j.Running && j.LastRun.Result != "running" {
			return *j.LastRun
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still running after a minute: %+v", job, j)
		}
		time.Sleep(100 * time.Millisecond) // polling a child process, not timing behaviour
	}
}

// TestExpiryNotifyEndToEnd: sigil serve posts one signed notice to the
// configured webhook for a certificate issued inside a threshold, once;
// the gauge counts it; the jobs are listed with their schedules.
func TestExpiryNotifyEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	secret := "e2e-webhook-secret-0123456789abcdef"
	e2eWriteFile(t, c.dir, "webhook.secret", []byte(secret+"\n"))
	var mu sync.Mutex
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := lifecycle.VerifyWebhook(lifecycle.WebhookSecret(secret), r.Header.Get(lifecycle.SignatureHeader), body, time.Now(), 0); err != nil {
			t.Errorf("webhook POST with a bad signature: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
	}))
	defer recv.Close()
	e2eSetConfig(t, c, `  webhook_url: ""`, `  webhook_url: "`+recv.URL+`/hooks/sigil?token=tok-e2e"`)
	e2eSetConfig(t, c, `  secret_file: ""`, `  secret_file: "webhook.secret"`)
	// A profile whose certificates are born inside the 7-day threshold.
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("  short:\n    key_usage: [digital_signature]\n    ext_key_usage: [server_auth]\n    max_validity: 48h\n")...)
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, c)

	jobs := e2eJobs(t, p, c)
	for name, want := range map[string]struct {
		schedule string
		enabled  bool
	}{"tidy": {"0 4 * * *", true}, "expiry-notify": {"every 1h0m0s", true}, "kek-rotate": {"0 3 1 * *", false}, "crl-publish": {"every 1h0m0s", true}} {
		if j := jobs[name]; j.Schedule != want.schedule || j.Enabled != want.enabled {
			t.Errorf("%s listed as %+v, want %s enabled=%v", name, j, want.schedule, want.enabled)
		}
	}
	if r := e2eWaitIdle(t, p, c, "expiry-notify"); r.Result != "ok" || r.Items != 0 {
		t.Errorf("expiry-notify at start: %+v, want ok with nothing to send", r)
	}
	chain := e2eIssueSAN(t, p, c, "short", "notify.example.test")
	serial := e2eSerial(chain[0])

	out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "run", "expiry-notify", "--wait")...)
	if !strings.Contains(out, ": ok, 1 items") {
		t.Errorf("jobs run expiry-notify --wait printed %q", out)
	}
	mu.Lock()
	if len(bodies) != 1 {
		t.Fatalf("%d webhook POSTs, want 1", len(bodies))
	}
	var notices []lifecycle.Notice
	if err := json.Unmarshal(bodies[0], &notices); err != nil {
		t.Fatalf("webhook body %s: %v", bodies[0], err)
	}
	mu.Unlock()
	if len(notices) != 1 {
		t.Fatalf("notices %+v, want one", notices)
	}
	n := notices[0]
	if n.Event != "certificate.expiring" || n.Serial != serial || n.Threshold != "7d" || n.DaysLeft != 1 || n.Profile != "short" ||
		len(n.SANs) != 1 || n.SANs[0] != "notify.example.test" || !n.NotAfter.Equal(chain[0].NotAfter) || !strings.HasPrefix(n.Requester, "token:") {
		t.Errorf("notice %+v", n)
	}
	if v := e2eMetric(t, p, c, `sigil_certificates_expiring{within="7d"}`); v != 1 {
		t.Errorf(`sigil_certificates_expiring{within="7d"} = %v, want 1`, v)
	}
	// Once: a second run sends nothing.
	out, _ = e2eRun(t, e2eAdmin(p, c, "jobs", "run", "expiry-notify", "--wait")...)
	if !strings.Contains(out, ": ok, 0 items") || len(bodies) != 1 {
		t.Errorf("second run printed %q after %d POSTs", out, len(bodies))
	}
	// tidy runs as documented; kek-rotate is off by default.
	out, _ = e2eRun(t, e2eAdmin(p, c, "jobs", "run", "tidy", "--wait")...)
	if !strings.Contains(out, "job tidy run") || !strings.Contains(out, ": ok, ") {
		t.Errorf("jobs run tidy --wait printed %q", out)
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "jobs", "run", "kek-rotate")...); !strings.Contains(msg, "disabled") {
		t.Errorf("running the disabled kek-rotate: %q", msg)
	}
	p.stop(t)
	if strings.Contains(p.stderr.String(), "tok-e2e") || strings.Contains(p.stderr.String(), secret) {
		t.Errorf("the server log holds the webhook token or secret:\n%s", p.stderr)
	}
}

// TestKEKRotateEndToEnd: with kek-rotate enabled the server rotates at its
// first start (the job never ran), every key moves to the new version, a
// restart opens them, and `sigil jobs run kek-rotate --wait` rotates again.
func TestKEKRotateEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("\njobs:\n  kek-rotate:\n    enabled: true\n")...)
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, c)
	if r := e2eWaitIdle(t, p, c, "kek-rotate"); r.Result != "ok" || r.Items < 3 {
		t.Fatalf("kek-rotate at start: %+v", r)
	}
	kekOf := func(p *serverProc) map[string]bool {
		_, keys := e2eListKeys(t, p, c)
		out := map[string]bool{}
		for _, k := range keys {
			if k.State != "destroyed" {
				out[k.KEK] = true
			}
		}
		return out
	}
	if got := kekOf(p); len(got) != 1 || !got["kek-2"] {
		t.Errorf("keys under %v after the first rotation, want kek-2 only", got)
	}
	p.stop(t)
	p = startServe(t, c)
	out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "run", "kek-rotate", "--wait")...)
	if !strings.Contains(out, "job kek-rotate run") || !strings.Contains(out, ": ok, ") {
		t.Errorf("jobs run kek-rotate --wait printed %q", out)
	}
	if got := kekOf(p); len(got) != 1 || !got["kek-3"] {
		t.Errorf("keys under %v after the second rotation, want kek-3 only", got)
	}
	e2eIssueSAN(t, p, c, "tls-server", "after-rotation.localhost")
	events := e2eListAudit(t, p, c, "--action", "kek.")
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action+" "+e.Target)
	}
	want := []string{"kek.created kek-1", "kek.rotation.started kek-2", "kek.rotated kek-2", "kek.rotation.started kek-3", "kek.rotated kek-3"}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Errorf("kek events %v, want %v", actions, want)
	}
	p.stop(t)
	if r := e2eAuditVerify(t, c); r.events == 0 {
		t.Error("audit verify saw no events")
	}
}
