package main

import (
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// e2eFetchCRL GETs a CRL from the plain listener, checks the response and
// parses it, checking its signature against the intermediate.
func e2eFetchCRL(t testing.TB, url string, inter *x509.Certificate) ([]byte, *x509.RevocationList) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" ||
		resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("GET %s: %s, headers %v", url, resp.Status, resp.Header)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL at %s: %v", url, err)
	}
	if err := crl.CheckSignatureFrom(inter); err != nil {
		t.Errorf("CRL at %s: signature: %v", url, err)
	}
	return der, crl
}

// e2eAwaitCRLListing polls url (the server regenerates a CRL a couple of
// seconds after a revocation) until its CRL lists serial.
func e2eAwaitCRLListing(t testing.TB, url string, inter *x509.Certificate, serial string) ([]byte, *x509.RevocationList) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		der, crl := e2eFetchCRL(t, url, inter)
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Text(16) == serial {
				return der, crl
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRL %d at %s does not list %s after 20s", crl.Number, url, serial)
		}
		time.Sleep(100 * time.Millisecond) // polling a child process, not timing behaviour
	}
}

// e2eOpensslCRL runs `openssl crl -verify -text` on der against the chain
// and returns its output.
func e2eOpensslCRL(t testing.TB, c *caDir, inter *x509.Certificate, der []byte) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("!!!!! SKIPPING openssl crl -verify: openssl is not on PATH (.ci/run installs it) !!!!!")
	}
	dir := t.TempDir()
	root, err := os.ReadFile(c.root)
	if err != nil {
		t.Fatal(err)
	}
	chain := e2eWriteFile(t, dir, "chain.pem", append(pemBytes(inter.Raw), root...))
	crlFile := e2eWriteFile(t, dir, "crl.der", der)
	out, err := exec.Command(bin, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", chain, "-verify", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -verify: %v\n%s", err, out)
	}
	return string(out)
}

func TestCRLServe(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "crl.example")
	leaf, inter := chain[0], chain[1]
	// The CDP's path, fetched from this server's plain listener.
	path := "/crl/" + ca.IssuerID(inter) + ".crl"
	if len(leaf.CRLDistributionPoints) != 1 || !strings.HasSuffix(leaf.CRLDistributionPoints[0], path) {
		t.Fatalf("CDP %q, want one ending in %s", leaf.CRLDistributionPoints, path)
	}
	_, before := e2eFetchCRL(t, p.httpURL+path, inter)
	if len(before.RevokedCertificateEntries) != 0 {
		t.Errorf("a fresh CA's CRL lists %d entries", len(before.RevokedCertificateEntries))
	}

	serial := e2eSerial(leaf)
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", serial, "--reason", "keyCompromise")...)
	der, crl := e2eAwaitCRLListing(t, p.httpURL+path, inter, serial)
	if crl.Number.Cmp(before.Number) <= 0 {
		t.Errorf("CRL number %v after %v", crl.Number, before.Number)
	}
	out := e2eOpensslCRL(t, c, inter, der)
	for _, want := range []string{strings.ToUpper(serial), "Key Compromise", "X509v3 CRL Number", "X509v3 Authority Key Identifier"} {
		if !strings.Contains(strings.ToUpper(out), strings.ToUpper(want)) {
			t.Errorf("openssl crl -text does not show %q:\n%s", want, out)
		}
	}

	// A restarted server serves the same CRL at once.
	p.stop(t)
	p2 := startServe(t, c)
	_, again := e2eFetchCRL(t, p2.httpURL+path, inter)
	if again.Number.Cmp(crl.Number) < 0 || !slices.ContainsFunc(again.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
		return e.SerialNumber.Cmp(leaf.SerialNumber) == 0
	}) {
		t.Errorf("after restart: CRL number %v (was %v), lists the revoked serial: %v", again.Number, crl.Number, len(again.RevokedCertificateEntries))
	}
}

func TestCRLServeSharded(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "  shards: 0\n") {
		t.Fatalf("sigil.yaml has no crl.shards: 0:\n%s", cfg)
	}
	if err := os.WriteFile(c.config, []byte(strings.Replace(string(cfg), "  shards: 0\n", "  shards: 4\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "sharded.example")
	leaf, inter := chain[0], chain[1]
	cdp := leaf.CRLDistributionPoints[0]
	path := cdp[strings.Index(cdp, "/crl/"):]
	if parts := strings.Split(strings.TrimPrefix(path, "/crl/"), "/"); len(parts) != 2 || !slices.Contains([]string{"1.crl", "2.crl", "3.crl", "4.crl"}, parts[1]) {
		t.Fatalf("CDP %s does not name one of 4 shards", cdp)
	}
	serial := e2eSerial(leaf)
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", serial, "--reason", "superseded")...)
	der, _ := e2eAwaitCRLListing(t, p.httpURL+path, inter, serial)
	out := e2eOpensslCRL(t, c, inter, der)
	for _, want := range []string{"Issuing Distribution Point", "critical", "URI:" + cdp, "Only User Certificates", strings.ToUpper(serial), "Superseded"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl -text does not show %q:\n%s", want, out)
		}
	}
}
