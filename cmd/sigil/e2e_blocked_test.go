package main

import (
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCLIBlockedKeys: a keyCompromise revocation through the CLI revokes
// the key's other certificates and refuses the key in a new CSR; `keys
// block` does the same for a key given as a certificate.
func TestCLIBlockedKeys(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	csr, _ := e2eCSRFile(t, dir, "blocked.example")
	issue := func() string {
		t.Helper()
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--csr", csr, "--profile", "tls-server")...)
		return e2eSerial(e2eParseChain(t, []byte(out))[0])
	}
	first, second := issue(), issue()
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", first, "--reason", "keyCompromise")...)
	if f := e2eShowFields(t, p, c, second); f["status"] != "revoked" || f["reason"] != "keyCompromise" {
		t.Errorf("the other certificate with the key: status %q reason %q, want revoked keyCompromise", f["status"], f["reason"])
	}
	msg := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--csr", csr, "--profile", "tls-server")...)
	if !strings.Contains(msg, "blocked") {
		t.Errorf("CSR with a compromised key: %q, want an error saying the key is blocked", msg)
	}

	// keys block, given a certificate: its certificates are revoked.
	leaf := e2eIssueSAN(t, p, c, "tls-server", "other.example")
	pemFile := e2eWriteFile(t, dir, "leaf.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf[0].Raw}))
	out, _ := e2eRun(t, e2eAdmin(p, c, "keys", "block", "--public-key", pemFile)...)
	if !strings.Contains(out, e2eSerial(leaf[0])) {
		t.Errorf("keys block output does not name the revoked certificate:\n%s", out)
	}
	if f := e2eShowFields(t, p, c, e2eSerial(leaf[0])); f["status"] != "revoked" {
		t.Errorf("certificate of a blocked key: status %q", f["status"])
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "keys", "block", "--public-key", pemFile)...); !strings.Contains(msg, "already blocked") {
		t.Errorf("blocking twice: %q", msg)
	}
}

// TestCLIBulkRevoke: --dry-run counts, the filters combine, and a bulk
// revocation revokes exactly the valid certificates that match.
func TestCLIBulkRevoke(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	// Two requesters: the admin token (cert issue) and an issuer token.
	for i := 0; i < 3; i++ {
		e2eIssueSAN(t, p, c, "tls-server", fmt.Sprintf("bulk%d.example", i))
	}
	out, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
	issuer := strings.TrimSpace(out)
	key := e2eP256(t)
	csr := e2eWriteFile(t, t.TempDir(), "other.csr", e2eCSR(t, key, "other.example", "other.example"))
	e2eRun(t, e2eWithToken(p, c, issuer, "cert", "issue", "--csr", csr, "--profile", "tls-server")...)
	var admin string
	for _, cert := range e2eListCerts(t, p, c) {
		if len(cert.SANs) > 0 && strings.HasPrefix(cert.SANs[0], "bulk") {
			admin = cert.Requester
		}
	}

	_, keys := e2eListKeys(t, p, c)
	var interKey string
	for _, k := range keys {
		if k.Purpose == "intermediate" {
			interKey = k.ID
		}
	}
	out, _ = e2eRun(t, e2eAdmin(p, c, "cert", "revoke", "--issued-by-key", interKey, "--requester", admin, "--reason", "cessationOfOperation", "--dry-run")...)
	if !strings.Contains(out, "3 certificate(s) would be revoked") {
		t.Fatalf("dry run: %q, want 3", out)
	}
	if n := len(e2eListCerts(t, p, c, "--status", "revoked")); n != 0 {
		t.Fatalf("a dry run revoked %d certificates", n)
	}
	now := time.Now().UTC()
	out, _ = e2eRun(t, e2eAdmin(p, c, "cert", "revoke", "--requester", admin, "--issued-between",
		now.Add(-time.Hour).Format(time.RFC3339)+","+now.Add(time.Hour).Format(time.RFC3339), "--reason", "cessationOfOperation")...)
	if !strings.Contains(out, "revoked 3 certificate(s); 0 already revoked; 0 failed") {
		t.Errorf("bulk revoke: %q", out)
	}
	for _, cert := range e2eListCerts(t, p, c) {
		if want := cert.Requester == admin; (cert.Status == "revoked") != want {
			t.Errorf("%s (requester %s): status %s", cert.Serial, cert.Requester, cert.Status)
		}
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "cert", "revoke", "--reason", "superseded")...); !strings.Contains(msg, "bulk") {
		t.Errorf("no serial and no filter: %q", msg)
	}
}
