package main

import (
	"crypto"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// e2eKeyState returns the state `sigil keys list` shows for key id.
func e2eKeyState(t testing.TB, p *serverProc, c *caDir, id string) string {
	t.Helper()
	_, keys := e2eListKeys(t, p, c)
	for _, k := range keys {
		if k.ID == id {
			return k.State
		}
	}
	t.Fatalf("sigil keys list shows no key %s", id)
	return ""
}

// e2eOpensslOCSP asks the server about leaf with openssl ocsp, trusting the
// root only, and returns the output.
func e2eOpensslOCSP(t testing.TB, p *serverProc, c *caDir, leaf, inter *x509.Certificate) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"ocsp", "-sha256", "-issuer", e2eWritePEM(t, dir, "inter.pem", inter), "-cert", e2eWritePEM(t, dir, "leaf.pem", leaf),
		"-url", p.httpURL + "/ocsp", "-CAfile", c.root, "-verify_other", e2eWritePEM(t, dir, "other.pem", inter)}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Response verify OK") {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestIntermediateRotationEndToEnd rotates the intermediate of a running
// server by hand (sigil ca rotate-intermediate) and follows the old one to
// its end with the intermediate-rotate job: certificates issued before and
// after verify to the root; the old intermediate's OCSP answers and CRL keep
// working, across a restart; its key is retired, then destroyed once its
// last certificate expired, as sigil keys list shows;
// every step is in the audit chain, which verifies.
func TestIntermediateRotationEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("!!!!! SKIPPING: openssl is not on PATH (.ci/run installs it) !!!!!")
	}
	c := initCA(t)
	// The shortest certificate lifetime the config allows, and the old key
	// destroyed as soon as its last certificate expired. The server's clock
	// is a fake one at the real time (openssl and TLS clients check what
	// it issues against the wall clock), stepped past that expiry.
	e2eSetConfig(t, c, "  # destroy_after: 24h\n", "  destroy_after: 0s\n")
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("  brief:\n    key_usage: [digital_signature]\n    ext_key_usage: [server_auth]\n    max_validity: 1m\n")...)
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	clk := clockwork.NewFakeClockAt(time.Now())
	p := startServeWithClock(t, c, clk)

	good := e2eIssueSAN(t, p, c, "brief", "old-good.example")
	revoked := e2eIssueSAN(t, p, c, "brief", "old-revoked.example")
	oldInter := good[1]
	oldID := ca.IssuerID(oldInter)
	_, keys := e2eListKeys(t, p, c)
	var oldKey string
	for _, k := range keys {
		if k.Purpose == "intermediate" && k.State == "active" {
			oldKey = k.ID
		}
	}

	out, _ := e2eRun(t, e2eAdmin(p, c, "ca", "rotate-intermediate", "--reason", "e2e")...)
	if !strings.Contains(out, oldID+" is retired") {
		t.Fatalf("sigil ca rotate-intermediate printed %q", out)
	}
	after := e2eIssueSAN(t, p, c, "tls-server", "new.example")
	newInter := after[1]
	newID := ca.IssuerID(newInter)
	if newID == oldID || newInter.CheckSignatureFrom(e2eReadRoot(t, c)) != nil {
		t.Fatalf("issued after the rotation by %s (before: %s)", newID, oldID)
	}
	for _, chain := range [][]*x509.Certificate{good, revoked, after} {
		e2eVerifyChain(t, c, chain, chain[0].DNSNames[0], x509.ExtKeyUsageServerAuth)
		e2eOpensslVerify(t, c, chain, x509.ExtKeyUsageServerAuth)
	}
	if s := e2eKeyState(t, p, c, oldKey); s != "retired" {
		t.Errorf("old intermediate key %s after the rotation, want retired", s)
	}
	out, _ = e2eRun(t, e2eAdmin(p, c, "ca", "intermediates")...)
	if !lineHas(out, newID, "active") || !lineHas(out, oldID, "retired") {
		t.Errorf("sigil ca intermediates:\n%s", out)
	}

	// The old intermediate still answers for its certificates.
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(revoked[0]), "--reason", "keyCompromise")...)
	// A revocation republishes after a debounce on the server's clock,
	// which stands still here: publish now (TestCRLServe covers the debounce).
	e2eRun(t, e2eAdmin(p, c, "jobs", "run", "crl-publish", "--wait")...)
	oldCRL := "/crl/" + oldID + ".crl"
	der, _ := e2eAwaitCRLListing(t, p.httpURL+oldCRL, oldInter, e2eSerial(revoked[0]))
	e2eOpensslCRL(t, c, oldInter, der)
	e2eFetchCRL(t, p.httpURL+"/crl/"+newID+".crl", newInter)
	checkOCSP := func(p *serverProc) {
		t.Helper()
		client := &http.Client{Timeout: 10 * time.Second}
		if r, _ := e2eOCSPGet(t, client, p.httpURL, good[0], oldInter, crypto.SHA256); r.Status != ocsp.Good {
			t.Errorf("OCSP for the old intermediate's good certificate: status %d", r.Status)
		}
		if r, _ := e2eOCSPGet(t, client, p.httpURL, after[0], newInter, crypto.SHA1); r.Status != ocsp.Good {
			t.Errorf("OCSP for the new intermediate's certificate: status %d", r.Status)
		}
		if out := e2eOpensslOCSP(t, p, c, revoked[0], oldInter); !strings.Contains(out, ": revoked") {
			t.Errorf("openssl ocsp for the old intermediate's revoked certificate:\n%s", out)
		}
	}
	checkOCSP(p)
	// Both survive a restart.
	p.stop(t)
	p = startServeWithClock(t, c, clk)
	checkOCSP(p)
	e2eFetchCRL(t, p.httpURL+oldCRL, oldInter)

	// The job destroys the old key once its last certificate expired
	// (destroy_after: 0s); it runs every hour, so it is run by hand here:
	// once before that (nothing to do), then with the server's clock a
	// second past it.
	last := good[0].NotAfter
	if revoked[0].NotAfter.After(last) {
		last = revoked[0].NotAfter
	}
	jobRun := func() string {
		t.Helper()
		out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "run", "intermediate-rotate", "--wait")...)
		return out
	}
	if out := jobRun(); !strings.Contains(out, ": ok, 0 items") {
		t.Fatalf("intermediate-rotate before %s, when the old intermediate's last certificate expires: %q", last, out)
	}
	if s := e2eKeyState(t, p, c, oldKey); s != "retired" {
		t.Fatalf("old intermediate key %s before its last certificate expired, want retired", s)
	}
	clk.Advance(last.Sub(clk.Now()) + time.Second)
	if out := jobRun(); !strings.Contains(out, ": ok, 1 items") {
		t.Fatalf("intermediate-rotate after %s: %q", last, out)
	}
	if s := e2eKeyState(t, p, c, oldKey); s != "destroyed" {
		t.Errorf("old intermediate key %s, want destroyed", s)
	}
	out, _ = e2eRun(t, e2eAdmin(p, c, "ca", "intermediates")...)
	if !lineHas(out, oldID, "destroyed") || !lineHas(out, newID, "active") {
		t.Errorf("sigil ca intermediates after destruction:\n%s", out)
	}
	if resp, err := http.Get(p.httpURL + oldCRL); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the destroyed intermediate's CRL: %v %v, want 404", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	// Its certificate stays fetchable: old chains name it.
	if resp, err := http.Get(p.httpURL + "/issuer/" + oldID + ".crt"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /issuer/%s.crt: %v %v", oldID, resp.Status, err)
	} else {
		resp.Body.Close()
	}

	// Every step in the audit chain, in order, and the chain verifies.
	var steps []string
	for _, ev := range e2eListAudit(t, p, c, "--limit", "1000") {
		switch {
		case ev.Action == audit.ActionIntermediateRotated && ev.Target == newID && ev.Detail["previous"] == oldID,
			ev.Action == "key.retired" && ev.Target == oldKey,
			ev.Action == "key.destroyed" && ev.Target == oldKey,
			ev.Action == audit.ActionIntermediateDestroyed && ev.Target == oldID:
			steps = append(steps, ev.Action)
		}
	}
	want := []string{"key.retired", audit.ActionIntermediateRotated, "key.destroyed", audit.ActionIntermediateDestroyed}
	if !slices.Equal(steps, want) {
		t.Errorf("audited steps %v, want %v", steps, want)
	}
	p.stop(t)
	e2eAuditVerify(t, c)
}

// lineHas reports whether one line of out holds every field.
func lineHas(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if !slices.ContainsFunc(fields, func(f string) bool { return !strings.Contains(line, f) }) {
			return true
		}
	}
	return false
}
