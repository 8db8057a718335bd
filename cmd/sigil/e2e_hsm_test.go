//go:build cgo && !nopkcs11

package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/internal/testhsm"
)

// TestE2ERootInHSM runs sigil init with the root key created in a real
// SoftHSM token: the intermediate certificate is signed there, the server
// issues under it, and sigil ca root-crl signs the root's next CRL through
// the token again. Not parallel: the token's SOFTHSM2_CONF is process-wide.
func TestE2ERootInHSM(t *testing.T) {
	inProcess(t)
	tk := testhsm.New(t, "sigil-root")
	uri := tk.URI("sigil-root")
	c := initCA(t, "--root-key-uri", uri)

	root := e2eParseChain(t, mustRead(t, c.root))[0]
	p := startServe(t, c)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "app.key")
	e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--profile", "tls-server", "--san", "app.localhost", "--key-out", keyFile, "--out", certFile)...)
	chain := e2eParseChain(t, mustRead(t, certFile))
	if len(chain) < 2 {
		t.Fatalf("chain of %d", len(chain))
	}
	if err := chain[1].CheckSignatureFrom(root); err != nil {
		t.Fatalf("the intermediate is not signed by the root key in the HSM: %v", err)
	}
	if err := chain[0].CheckSignatureFrom(chain[1]); err != nil {
		t.Fatal(err)
	}
	_, keys := e2eListKeys(t, p, c)
	found := false
	for _, k := range keys {
		if k.Purpose == "root" {
			found = true
			if k.Backend != "pkcs11" || !strings.Contains(k.URI, "object=sigil-root") || !strings.Contains(k.URI, ";id=") || strings.Contains(k.URI, tk.PIN()) {
				t.Errorf("root key listed as %s %q", k.Backend, k.URI)
			}
		}
	}
	if !found {
		t.Fatal("no root key listed")
	}
	resp, err := c.httpClient(t).Get(p.httpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s, %v", resp.Status, err)
	}
	p.stop(t)

	// The root signs its next CRL offline, through the token.
	out, _ := e2eRun(t, "ca", "root-crl", "--config", c.config, "--passphrase-file", c.passphraseFile)
	if !strings.Contains(out, "Signed root CRL number 2") {
		t.Errorf("sigil ca root-crl with the root in the HSM printed:\n%s", out)
	}

	// The PIN is nowhere at rest, in the server's log or in /metrics.
	s := newKeyScanner()
	s.addSecret("HSM PIN", []byte(tk.PIN()))
	s.addSecret("passphrase", []byte(testPassphrase))
	files := s.scanTree(t, c.dir)
	cells := s.scanDatabase(t, c.sqlite(t)) // on PostgreSQL the test ends here, skipped
	s.scan("sigil serve log", []byte(p.stderr.String()))
	s.scan("/metrics", metrics)
	s.scan("sigil ca root-crl output", []byte(out))
	for _, f := range s.findings {
		t.Errorf("secret found: %s", f)
	}
	if files < 3 || cells["keys"] == 0 || p.stderr.String() == "" {
		t.Errorf("scanned %d files, %v cells, a log of %d bytes", files, cells, len(p.stderr.String()))
	}
}
