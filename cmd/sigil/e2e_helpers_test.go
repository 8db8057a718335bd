package main

// End-to-end tests of the sigil CLI: every test initializes its own CA with
// the real binary (TestMain builds it once), runs `sigil serve` as a child
// process on free ports and drives it with the admin subcommands, as an
// operator would.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// ---------------------------------------------------------------------------
// Helpers (names prefixed to stay clear of other test files in the package).

// e2eRun runs the binary and fails the test unless it exits 0.
func e2eRun(t testing.TB, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := runSigil(t, nil, args...)
	if err != nil {
		t.Fatalf("sigil %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out, errOut
}

// e2eFail runs the binary, requires a non-zero exit with nothing on
// stdout and exactly one "sigil: ..." line on stderr, and returns that line.
func e2eFail(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := runSigil(t, nil, args...)
	var ee exitCoder
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("sigil %s: want a non-zero exit, got %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	if out != "" {
		t.Errorf("sigil %s failed but wrote to stdout:\n%s", strings.Join(args, " "), out)
	}
	return e2eOneErrorLine(t, errOut)
}

// e2eOneErrorLine checks that stderr is exactly one clear "sigil: ..." line.
func e2eOneErrorLine(t testing.TB, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "sigil: ") || len(strings.TrimSpace(strings.TrimPrefix(lines[0], "sigil:"))) < 5 {
		t.Errorf("stderr is not one clear \"sigil: ...\" line:\n%s", stderr)
	}
	return lines[0]
}

// e2eAdmin appends the admin token's client flags to args.
func e2eAdmin(p *serverProc, c *caDir, args ...string) []string {
	return append(slices.Clone(args), p.clientArgs(c)...)
}

// e2eWithToken appends client flags that authenticate with token.
func e2eWithToken(p *serverProc, c *caDir, token string, args ...string) []string {
	return append(slices.Clone(args), "--server", p.httpsURL, "--ca-file", c.root, "--token", token)
}

// e2eListCerts returns every certificate `cert list --format json --all` shows.
func e2eListCerts(t testing.TB, p *serverProc, c *caDir, filters ...string) []api.Certificate {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(p, c, append([]string{"cert", "list", "--format", "json", "--all"}, filters...)...)...)
	var l api.CertificateList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("cert list --format json: %v\n%s", err, out)
	}
	return l.Certificates
}

// e2eListAudit returns every audit event `audit list --format json --all` shows.
func e2eListAudit(t testing.TB, p *serverProc, c *caDir, filters ...string) []api.AuditEvent {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(p, c, append([]string{"audit", "list", "--format", "json", "--all"}, filters...)...)...)
	var l api.AuditList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("audit list --format json: %v\n%s", err, out)
	}
	return l.Events
}

// e2eAwaitJobsIdle waits until every enabled job has run and none is
// running: a server runs its never-run jobs at start, in the background,
// and their events (crl.published, ...) would otherwise land in the middle
// of a test that counts events.
func e2eAwaitJobsIdle(t testing.TB, p *serverProc, c *caDir) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := e2eRun(t, e2eAdmin(p, c, "jobs", "list", "--format", "json")...)
		var list api.JobList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("jobs list --format json: %v\n%s", err, out)
		}
		busy := slices.ContainsFunc(list.Jobs, func(j api.JobStatus) bool {
			return j.Running || (j.Enabled && (j.LastRun == nil || j.LastRun.Result == store.JobRunning))
		})
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still running a minute after start: %s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling a real server's background work
	}
}

// e2eListKeys returns the key inventory as JSON text and decoded.
func e2eListKeys(t testing.TB, p *serverProc, c *caDir) (string, []ca.KeyInfo) {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(p, c, "keys", "list", "--format", "json")...)
	var resp struct {
		Keys []ca.KeyInfo `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("keys list --format json: %v\n%s", err, out)
	}
	return out, resp.Keys
}

// e2eWriteFile writes data to dir/name and returns the path.
func e2eWriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// e2eCSR returns a PEM CSR for key with the given subject CN and SANs
// (IP addresses are recognized).
func e2eCSR(t testing.TB, key crypto.Signer, cn string, sans ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func e2eP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// e2eParseChain decodes a PEM chain; anything but CERTIFICATE blocks fails.
func e2eParseChain(t testing.TB, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("chain holds a %q PEM block", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain: %v", err)
		}
		out = append(out, c)
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("chain has trailing data: %q", rest)
	}
	return out
}

func e2eReadRoot(t testing.TB, c *caDir) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(c.root)
	if err != nil {
		t.Fatal(err)
	}
	chain := e2eParseChain(t, data)
	if len(chain) != 1 {
		t.Fatalf("root.pem holds %d certificates, want 1", len(chain))
	}
	return chain[0]
}

// e2eVerifyChain checks that chain is leaf then intermediate and verifies it
// against root.pem with Go and, when present, openssl.
func e2eVerifyChain(t testing.TB, c *caDir, chain []*x509.Certificate, name string, ekus ...x509.ExtKeyUsage) {
	t.Helper()
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want leaf then intermediate", len(chain))
	}
	leaf, inter := chain[0], chain[1]
	if leaf.IsCA || !inter.IsCA {
		t.Fatalf("chain order: leaf IsCA=%v, second IsCA=%v; want leaf then intermediate", leaf.IsCA, inter.IsCA)
	}
	if err := leaf.CheckSignatureFrom(inter); err != nil {
		t.Fatalf("leaf is not signed by the chain's intermediate: %v", err)
	}
	root := e2eReadRoot(t, c)
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Fatalf("intermediate is not signed by root.pem: %v", err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	for _, eku := range ekus {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: name,
			KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("x509.Verify (eku %v): %v", eku, err)
		}
	}
	e2eOpensslVerify(t, c, chain, ekus...)
}

// e2eOpensslVerify runs `openssl verify -CAfile root.pem -untrusted inter leaf`.
func e2eOpensslVerify(t testing.TB, c *caDir, chain []*x509.Certificate, ekus ...x509.ExtKeyUsage) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("!!!!! SKIPPING openssl verify: openssl is not on PATH; the chain was verified with Go's x509.Verify only !!!!!")
		return
	}
	dir := t.TempDir()
	leaf := e2eWriteFile(t, dir, "leaf.pem", pemBytes(chain[0].Raw))
	inter := e2eWriteFile(t, dir, "inter.pem", pemBytes(chain[1].Raw))
	purposes := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "sslserver", x509.ExtKeyUsageClientAuth: "sslclient"}
	runs := [][]string{{"verify", "-CAfile", c.root, "-untrusted", inter, leaf}}
	for _, eku := range ekus {
		if p, ok := purposes[eku]; ok {
			runs = append(runs, []string{"verify", "-purpose", p, "-CAfile", c.root, "-untrusted", inter, leaf})
		}
	}
	for _, args := range runs {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// e2eKeyFile reads a PKCS#8 PEM key file written by --key-out.
func e2eKeyFile(t testing.TB, path string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("%s is not one PKCS#8 PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k.(crypto.Signer)
}

func e2eSamePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// e2eSerial is the record's spelling of a serial: lower-case hex.
func e2eSerial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// e2eIssueSAN runs `cert issue --san ... --key-out` and returns the chain.
func e2eIssueSAN(t testing.TB, p *serverProc, c *caDir, profile string, sans ...string) []*x509.Certificate {
	t.Helper()
	args := []string{"cert", "issue", "--profile", profile, "--key-out", filepath.Join(t.TempDir(), "key.pem")}
	for _, s := range sans {
		args = append(args, "--san", s)
	}
	out, _ := e2eRun(t, e2eAdmin(p, c, args...)...)
	return e2eParseChain(t, []byte(out))
}

// e2eV1 is the typed /v1 client of p over hc, with token (none if empty).
func e2eV1(t testing.TB, hc *http.Client, p *serverProc, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: p.httpsURL, Token: token, HTTP: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// e2eSignHTTPS posts a CSR to /v1/sign with a bearer token.
func e2eSignHTTPS(ctx context.Context, hc *http.Client, base, token string, csrPEM []byte, profile string) (*api.SignResponse, error) {
	c, err := client.New(client.Config{Server: base, Token: token, HTTP: hc})
	if err != nil {
		return nil, err
	}
	sr, err := c.Sign(ctx, api.SignRequest{CSR: string(csrPEM), Profile: profile})
	if err != nil {
		return nil, err
	}
	return &sr, nil
}

// e2eVerifyReport is `sigil audit verify` output.
type e2eVerifyReport struct{ events, checkpoints, head int }

var e2eVerifyRe = regexp.MustCompile(`audit chain OK: (\d+) events, (\d+) signed checkpoints, head (\d+) [0-9a-f]{64}`)

func e2eAuditVerify(t testing.TB, c *caDir) e2eVerifyReport {
	t.Helper()
	out, _ := e2eRun(t, "audit", "verify", c.verifyArgs()[0], c.verifyArgs()[1], "--ca-file", c.root)
	m := e2eVerifyRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audit verify output not understood:\n%s", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return e2eVerifyReport{events: n(m[1]), checkpoints: n(m[2]), head: n(m[3])}
}

// e2eFileState is what must not change when a command is refused.
type e2eFileState struct {
	mode  fs.FileMode
	mtime time.Time
	sum   [32]byte
}

func e2eSnapshotDir(t testing.TB, dir string) map[string]e2eFileState {
	t.Helper()
	out := map[string]e2eFileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := e2eFileState{mode: info.Mode(), mtime: info.ModTime()}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(data)
		}
		out[path] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var e2eTokenRe = regexp.MustCompile(`sigil_[A-Za-z0-9_-]{16,}`)

// e2eCSRFile writes a CSR for name, made by openssl when it is on PATH,
// and returns its path and public key.
func e2eCSRFile(t testing.TB, dir, name string) (string, crypto.PublicKey) {
	t.Helper()
	csrPath := filepath.Join(dir, name+".csr")
	if bin, err := exec.LookPath("openssl"); err == nil {
		keyPath := filepath.Join(dir, name+".key")
		out, err := exec.Command(bin, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			"-keyout", keyPath, "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name, "-out", csrPath).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl req: %v\n%s", err, out)
		}
		return csrPath, e2eKeyFile(t, keyPath).Public()
	}
	t.Log("!!!!! openssl is not on PATH: making the CSR with Go instead !!!!!")
	key := e2eP256(t)
	e2eWriteFile(t, dir, name+".csr", e2eCSR(t, key, name, name))
	return csrPath, key.Public()
}
