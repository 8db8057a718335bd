package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/internal/testkms"
)

// TestE2EIntermediateInKMS runs sigil init with the intermediate key created
// in a real local-kms, serves, issues a certificate through the CLI (signed
// by KMS) and verifies its chain to the root sigil init wrote.
func TestE2EIntermediateInKMS(t *testing.T) {
	inProcess(t)
	t.Parallel()
	srv := testkms.Start(t)
	uri := "awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t)
	c := initCA(t, "--intermediate-key-uri", uri)
	p := startServe(t, c)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "app.key")
	e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--profile", "tls-server", "--san", "app.localhost", "--key-out", keyFile, "--out", certFile)...)
	chain := e2eParseChain(t, mustRead(t, certFile))
	roots := e2eParseChain(t, mustRead(t, c.root))
	if len(chain) < 2 || len(roots) != 1 {
		t.Fatalf("chain of %d certificates, %d roots", len(chain), len(roots))
	}
	rootPool, inters := x509.NewCertPool(), x509.NewCertPool()
	rootPool.AddCert(roots[0])
	inters.AddCert(chain[1])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: inters, DNSName: "app.localhost",
		CurrentTime: chain[0].NotBefore.Add(chain[0].NotAfter.Sub(chain[0].NotBefore) / 2)}); err != nil {
		t.Fatalf("chain of a certificate signed in KMS: %v", err)
	}

	_, keys := e2eListKeys(t, p, c)
	var backends []string
	for _, k := range keys {
		backends = append(backends, k.Purpose+"="+k.Backend)
		if k.Purpose == "intermediate" && (!strings.HasPrefix(k.URI, "awskms:key-id=") || k.KEK != "") {
			t.Errorf("intermediate key listed with uri %q, kek %q", k.URI, k.KEK)
		}
	}
	if got := strings.Join(backends, " "); !strings.Contains(got, "intermediate=awskms") || !strings.Contains(got, "root=passphrase") {
		t.Errorf("key inventory backends: %s", got)
	}
}

// TestE2EKeyURIRefusesPIN checks that a PIN inside --root-key-uri is
// refused before anything is created, with a message saying where it goes.
func TestE2EKeyURIRefusesPIN(t *testing.T) {
	inProcess(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	pf := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pf, []byte(testPassphrase), 0o600); err != nil {
		t.Fatal(err)
	}
	line := e2eFail(t, "init", "--dir", dir, "--passphrase-file", pf,
		"--root-key-uri", "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=root;object=k?pin-value=123456")
	if !strings.Contains(line, "pin-source") || !strings.Contains(line, "SIGIL_HSM_PIN") || strings.Contains(line, "123456") {
		t.Errorf("refusal: %q", line)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "sigil.*")); len(m) != 0 {
		t.Errorf("a refused init left %v", m)
	}
}

// TestE2EKeyBackendFlag checks --root-key-backend against --root-key-uri.
func TestE2EKeyBackendFlag(t *testing.T) {
	inProcess(t)
	t.Parallel()
	pf := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pf, []byte(testPassphrase), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--root-key-backend", "pkcs11"}, "needs --root-key-uri"},
		{[]string{"--root-key-backend", "awskms", "--root-key-uri", "pkcs11:module-path=/m.so;token=t;object=k"}, "does not match"},
		{[]string{"--intermediate-key-backend", "yubikey"}, "want softkms, pkcs11 or awskms"},
		{[]string{"--intermediate-key-uri", "azurekms:vault=v;name=n"}, "not supported yet"},
	} {
		dir := filepath.Join(t.TempDir(), "ca")
		line := e2eFail(t, append([]string{"init", "--dir", dir, "--passphrase-file", pf}, tc.args...)...)
		if !strings.Contains(line, tc.want) {
			t.Errorf("init %v: %q, want %q", tc.args, line, tc.want)
		}
	}
}
