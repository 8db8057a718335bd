package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// e2eAwaitCRLNumber polls url (the server reloads the root CRL every
// crl.root_reload) until its CRL, signed by issuer, has number want.
func e2eAwaitCRLNumber(t testing.TB, url string, issuer *x509.Certificate, want int64) ([]byte, *x509.RevocationList) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		der, crl := e2eFetchCRL(t, url, issuer)
		if crl.Number.Int64() == want {
			return der, crl
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRL at %s is number %v after 20s, want %d", url, crl.Number, want)
		}
		time.Sleep(100 * time.Millisecond) // polling a child process, not timing behaviour
	}
}

// e2eCRLVerify runs `openssl verify -crl_check_all` on leaf against the
// chain and both CRLs, as a relying party checking the whole chain does,
// and returns whether it passed, and its output.
func e2eCRLVerify(t testing.TB, c *caDir, inter, leaf *x509.Certificate, rootCRL, intCRL []byte) (bool, string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("!!!!! SKIPPING openssl verify -crl_check_all: openssl is not on PATH (.ci/run installs it) !!!!!")
	}
	dir := t.TempDir()
	crlPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }
	args := []string{"verify", "-crl_check_all", "-CAfile", c.root,
		"-untrusted", e2eWriteFile(t, dir, "intermediate.pem", pemBytes(inter.Raw)),
		"-CRLfile", e2eWriteFile(t, dir, "root.crl.pem", crlPEM(rootCRL)),
		"-CRLfile", e2eWriteFile(t, dir, "int.crl.pem", crlPEM(intCRL)),
		e2eWriteFile(t, dir, "leaf.pem", pemBytes(leaf.Raw))}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return err == nil && strings.Contains(string(out), ": OK"), string(out)
}

// TestRootCRL: sigil init publishes the root's CRL, sigil serve serves it at
// the intermediate's CDP, openssl verifies the whole chain with both CRLs,
// and sigil ca root-crl, run while the server runs, signs the next one,
// which the server picks up; a revoked leaf and a revoked intermediate fail
// the check.
func TestRootCRL(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "  root_reload: 1m0s\n") {
		t.Fatalf("sigil.yaml has no crl.root_reload: 1m0s:\n%s", cfg)
	}
	if err := os.WriteFile(c.config, []byte(strings.Replace(string(cfg), "  root_reload: 1m0s\n", "  root_reload: 1s\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, c)
	root := e2eReadRoot(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "rootcrl.example")
	leaf, inter := chain[0], chain[1]
	rootID, intID := ca.IssuerID(root), ca.IssuerID(inter)

	// The intermediate's CDP is the root's CRL, served from the start.
	rootPath := "/crl/" + rootID + ".crl"
	if cdp := inter.CRLDistributionPoints; len(cdp) != 1 || !strings.HasSuffix(cdp[0], rootPath) {
		t.Fatalf("intermediate CDP %v, want one ending in %s", cdp, rootPath)
	}
	rootDER, rootCRL := e2eFetchCRL(t, p.httpURL+rootPath, root)
	if rootCRL.Number.Int64() != 1 || len(rootCRL.RevokedCertificateEntries) != 0 ||
		rootCRL.NextUpdate.Sub(rootCRL.ThisUpdate) != ca.DefaultRootCRLValidity {
		t.Errorf("init's root CRL: number %v, %d entries, valid %s", rootCRL.Number, len(rootCRL.RevokedCertificateEntries),
			rootCRL.NextUpdate.Sub(rootCRL.ThisUpdate))
	}
	intDER, _ := e2eFetchCRL(t, p.httpURL+"/crl/"+intID+".crl", inter)
	if ok, out := e2eCRLVerify(t, c, inter, leaf, rootDER, intDER); !ok {
		t.Fatalf("openssl verify -crl_check_all of a valid chain:\n%s", out)
	}

	// Signed offline while the server runs: picked up, and the server
	// still writes (its audit chain follows the other process's events).
	out, _ := e2eRun(t, "ca", "root-crl", "--config", c.config, "--passphrase-file", c.passphraseFile, "--validity", "2160h")
	if !strings.Contains(out, "Signed root CRL number 2: 0 revoked") || !strings.Contains(out, rootPath) {
		t.Errorf("sigil ca root-crl printed:\n%s", out)
	}
	rootDER, rootCRL = e2eAwaitCRLNumber(t, p.httpURL+rootPath, root, 2)
	if got := rootCRL.NextUpdate.Sub(rootCRL.ThisUpdate); got != 2160*time.Hour {
		t.Errorf("root CRL 2 is valid %s, want 2160h", got)
	}
	e2eIssueSAN(t, p, c, "tls-server", "after-root-crl.example")

	// A revoked leaf fails the whole-chain check.
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(leaf), "--reason", "keyCompromise")...)
	intDER, _ = e2eAwaitCRLListing(t, p.httpURL+"/crl/"+intID+".crl", inter, e2eSerial(leaf))
	if ok, out := e2eCRLVerify(t, c, inter, leaf, rootDER, intDER); ok || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check_all of a revoked leaf passed or said otherwise:\n%s", out)
	}

	// A revoked intermediate is listed on the root's next CRL, and then
	// every leaf under it fails.
	other := e2eIssueSAN(t, p, c, "tls-server", "other.example")[0]
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(inter), "--reason", "superseded")...)
	out, _ = e2eRun(t, "ca", "root-crl", "--config", c.config, "--passphrase-file", c.passphraseFile)
	if !strings.Contains(out, "number 3: 1 revoked") || !strings.Contains(out, "revoked: "+e2eSerial(inter)) {
		t.Errorf("sigil ca root-crl after revoking the intermediate printed:\n%s", out)
	}
	rootDER, rootCRL = e2eAwaitCRLNumber(t, p.httpURL+rootPath, root, 3)
	if len(rootCRL.RevokedCertificateEntries) != 1 || rootCRL.RevokedCertificateEntries[0].SerialNumber.Cmp(inter.SerialNumber) != 0 ||
		rootCRL.RevokedCertificateEntries[0].ReasonCode != ca.ReasonSuperseded {
		t.Errorf("root CRL 3 lists %v, want the intermediate (superseded)", rootCRL.RevokedCertificateEntries)
	}
	intDER, _ = e2eFetchCRL(t, p.httpURL+"/crl/"+intID+".crl", inter)
	if ok, out := e2eCRLVerify(t, c, inter, other, rootDER, intDER); ok || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check_all under a revoked intermediate passed or said otherwise:\n%s", out)
	}

	events := e2eListAudit(t, p, c, "--action", audit.ActionCRLPublished)
	var rootEvents []string
	for _, e := range events {
		if e.Target == rootID+"/0" {
			rootEvents = append(rootEvents, e.Actor+":"+e.Detail["number"])
		}
	}
	if strings.Join(rootEvents, " ") != "cli:1 cli:2 cli:3" {
		t.Errorf("crl.published events of the root: %v, want init's and two from sigil ca root-crl", rootEvents)
	}
	p.stop(t)
	for _, want := range []string{"sign it now with sigil ca root-crl", "stored CRL picked up"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("the server's log does not say %q:\n%s", want, p.stderr)
		}
	}
	if r := e2eAuditVerify(t, c); r.events == 0 || r.head != r.events {
		t.Errorf("audit verify after two offline signings: %+v", r)
	}
}

// TestRootCRLRefusals: sigil ca root-crl fails with one clear line and
// changes nothing on a wrong passphrase, a bad validity or a missing database.
func TestRootCRLRefusals(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	wrong := e2eWriteFile(t, t.TempDir(), "wrong", []byte("not-the-passphrase-at-all\n"))
	before := e2eSnapshotDir(t, c.dir)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong passphrase", []string{"--config", c.config, "--passphrase-file", wrong}, "passphrase"},
		{"validity too long", []string{"--config", c.config, "--passphrase-file", c.passphraseFile, "--validity", "9000h"}, "--validity"},
		{"validity too short", []string{"--config", c.config, "--passphrase-file", c.passphraseFile, "--validity", "10m"}, "--validity"},
		{"no config", []string{"--config", filepath.Join(t.TempDir(), "sigil.yaml"), "--passphrase-file", c.passphraseFile}, "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := e2eFail(t, append([]string{"ca", "root-crl"}, tc.args...)...)
			if !strings.Contains(line, tc.want) {
				t.Errorf("error %q does not mention %q", line, tc.want)
			}
		})
	}
	after := e2eSnapshotDir(t, c.dir)
	for path, st := range before {
		if after[path].sum != st.sum {
			t.Errorf("%s changed after refused runs", path)
		}
	}

	// A config whose database is gone: refused, and no empty database is
	// created. (A CA on PostgreSQL has no file to lose.)
	if c.store != "" {
		return
	}
	dir := t.TempDir()
	data, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := e2eWriteFile(t, dir, "sigil.yaml", data)
	line := e2eFail(t, "ca", "root-crl", "--config", cfgPath, "--passphrase-file", c.passphraseFile)
	if !strings.Contains(line, "sigil init") {
		t.Errorf("missing database: %q", line)
	}
	if _, err := os.Stat(filepath.Join(dir, "sigil.db")); err == nil {
		t.Errorf("sigil ca root-crl created a database")
	}
}
