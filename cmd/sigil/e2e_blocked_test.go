package main

import (
	"encoding/pem"
	"strings"
	"testing"
)

// TestCLIBlockedKeys: a keyCompromise revocation through the CLI revokes
// the key's other certificates and refuses the key in a new CSR; `keys
// block` does the same for a key given as a certificate.
func TestCLIBlockedKeys(t *testing.T) {
	t.Parallel()
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
