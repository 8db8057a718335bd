package main

// Interop with a third-party ACME client (issue 5, acceptance): lego, the
// Debian package, obtains and renews a certificate with http-01 against a
// real `sigil serve`. The challenge name resolves through a test DNS server
// on loopback, and sigil validates on the port lego's solver listens on.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// legoDomain is the name lego asks for; only the test DNS server knows it.
const legoDomain = "lego.sigil.test"

// legoTimeout bounds one lego run.
const legoTimeout = 2 * time.Minute

func TestLegoHTTP01(t *testing.T) {
	inProcess(t)
	if testing.Short() {
		t.Skip("skipped under -short: runs the lego ACME client as a child process")
	}
	legoBin, err := exec.LookPath("lego")
	if err != nil {
		t.Skip("!!! SKIPPING the lego ACME interop test (issue 5 acceptance): `lego` is not on PATH. " +
			"Install it with `apt-get install lego` (.ci/run does this) to run it. !!!")
	}

	d := startLoopbackDNS(t)
	d.setA(legoDomain, net.IPv4(127, 0, 0, 1))
	_, httpPort, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	c := initCA(t)
	p := startServe(t, c, "--acme-resolver", d.addr, "--acme-http-port", httpPort)

	dir := t.TempDir()
	base := []string{
		"--server", p.httpsURL + "/acme/directory",
		"--accept-tos",
		"--email", "ops@sigil.test",
		"--domains", legoDomain,
		"--http", "--http.port", "127.0.0.1:" + httpPort,
		"--path", dir,
		"--key-type", "ec256",
	}
	env := []string{"LEGO_CA_CERTIFICATES=" + c.root}
	certFile := filepath.Join(dir, "certificates", legoDomain+".crt")

	// Obtain.
	legoRun(t, p, legoBin, env, append(slices.Clone(base), "run")...)
	first := legoCheckCert(t, c, certFile)
	legoCheckRecord(t, p, c, first)

	// Renew: --days 9999 is beyond any certificate's remaining life, so
	// lego renews now; --no-random-sleep skips the jitter (up to 8 minutes)
	// lego adds when its stdout is not a terminal.
	legoRun(t, p, legoBin, env, append(slices.Clone(base), "renew", "--days", "9999", "--no-random-sleep")...)
	second := legoCheckCert(t, c, certFile)
	if first.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatalf("lego renew left the same certificate (serial %s)", ca.SerialString(first.SerialNumber))
	}
	legoCheckRecord(t, p, c, second)
	t.Logf("lego obtained %s and renewed it as %s (channel acme)",
		ca.SerialString(first.SerialNumber), ca.SerialString(second.SerialNumber))

	// Revoke: lego signs revokeCert with its account key.
	legoRun(t, p, legoBin, env, append(slices.Clone(base), "revoke", "--reason", "4")...)
	var rec api.Certificate
	out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", ca.SerialString(second.SerialNumber), "--format", "json")...)
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Status != "revoked" || rec.RevocationReason != "superseded" {
		t.Errorf("after lego revoke: status %s reason %s, want revoked superseded", rec.Status, rec.RevocationReason)
	}
}

// legoRun runs lego with args and env (added to the environment), logs its
// command line, and fails the test with lego's output and the server's
// stderr unless it exits 0 within legoTimeout.
func legoRun(t *testing.T, p *serverProc, legoBin string, env []string, args ...string) string {
	t.Helper()
	t.Logf("running: %s %s", strings.Join(env, " "), legoCommandLine(legoBin, args))
	ctx, cancel := context.WithTimeout(context.Background(), legoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, legoBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		p.stop(t) // so that its stderr is complete and no longer written
		t.Fatalf("lego %s: %v\n--- lego output:\n%s--- sigil serve stderr:\n%s", args[len(args)-1], err, &out, p.stderr)
	}
	return out.String()
}

// legoCommandLine quotes args for a shell, to copy into the README.
func legoCommandLine(bin string, args []string) string {
	parts := []string{bin}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// legoCheckCert reads lego's certificate bundle (leaf, then the issuer),
// checks that the leaf is for legoDomain and chains to the CA's root
// through the bundled intermediate, and returns the leaf.
func legoCheckCert(t *testing.T, c *caDir, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("lego wrote no certificate: %v", err)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("%s: unexpected PEM block %q", path, b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) < 2 {
		t.Fatalf("%s holds %d certificates, want the leaf and its intermediate:\n%s", path, len(certs), data)
	}
	rootPEM, err := os.ReadFile(c.root)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("root.pem holds no certificate")
	}
	for _, ic := range certs[1:] {
		inters.AddCert(ic)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: legoDomain,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("lego's certificate does not chain to root.pem for %s: %v", legoDomain, err)
	}
	if !slices.Equal(leaf.DNSNames, []string{legoDomain}) || len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Fatalf("lego's certificate names DNS %v IP %v URI %v email %v, want only DNS %s",
			leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses, legoDomain)
	}
	return leaf
}

// legoCheckRecord checks that the CA recorded cert as issued through ACME.
func legoCheckRecord(t *testing.T, p *serverProc, c *caDir, cert *x509.Certificate) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.httpsURL+"/v1/certificates?name="+url.QueryEscape(legoDomain), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	resp, err := c.httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.CertificateList
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/certificates: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("GET /v1/certificates: %v", err)
	}
	serial := ca.SerialString(cert.SerialNumber)
	for _, rec := range list.Certificates {
		if rec.Serial != serial {
			continue
		}
		if rec.Channel != ca.ChannelACME || rec.Status != "valid" || !slices.Equal(rec.SANs, []string{legoDomain}) {
			t.Fatalf("record of %s: channel %q, status %q, SANs %v; want acme, valid, [%s]",
				serial, rec.Channel, rec.Status, rec.SANs, legoDomain)
		}
		return
	}
	t.Fatalf("certificate %s is not in the record for name=%s (%d records)", serial, legoDomain, len(list.Certificates))
}
