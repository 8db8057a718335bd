package main

// End-to-end tests of the sigil CLI: every test initializes its own CA with
// the real binary (TestMain builds it once), runs `sigil serve` as a child
// process on free ports and drives it with the admin subcommands, as an
// operator would.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/api"
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
	var ee *exec.ExitError
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

// e2eSignHTTPS posts a CSR to /v1/sign with a bearer token.
func e2eSignHTTPS(ctx context.Context, client *http.Client, base, token string, csrPEM []byte, profile string) (*api.SignResponse, error) {
	body, err := json.Marshal(api.SignRequest{CSR: string(csrPEM), Profile: profile})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/sign", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST /v1/sign: %d %s", resp.StatusCode, data)
	}
	var sr api.SignResponse
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("POST /v1/sign: %w", err)
	}
	return &sr, nil
}

// e2eVerifyReport is `sigil audit verify` output.
type e2eVerifyReport struct{ events, checkpoints, head int }

var e2eVerifyRe = regexp.MustCompile(`audit chain OK: (\d+) events, (\d+) signed checkpoints, head (\d+) [0-9a-f]{64}`)

func e2eAuditVerify(t testing.TB, c *caDir) e2eVerifyReport {
	t.Helper()
	out, _ := e2eRun(t, "audit", "verify", "--db", c.db, "--ca-file", c.root)
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

// ---------------------------------------------------------------------------
// sigil init

var e2eTokenRe = regexp.MustCompile(`sigil_[A-Za-z0-9_-]{16,}`)

func TestCLIInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pf := e2eWriteFile(t, dir, "passphrase", []byte(testPassphrase+"\n"))
	caPath := filepath.Join(dir, "ca")
	httpsAddr := freeAddr(t)
	args := []string{"init", "--dir", caPath, "--passphrase-file", pf, "--https-addr", httpsAddr, "--http-addr", freeAddr(t)}
	out, errOut := e2eRun(t, args...)

	t.Run("fingerprint", func(t *testing.T) {
		root := e2eReadRoot(t, &caDir{root: filepath.Join(caPath, "root.pem")})
		if !root.IsCA || root.CheckSignatureFrom(root) != nil {
			t.Errorf("root.pem is not a self-signed CA certificate")
		}
		m := regexp.MustCompile(`SHA-256:\s*([0-9A-Fa-f:]{64,})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("init printed no SHA-256 fingerprint:\n%s", out)
		}
		sum := sha256.Sum256(root.Raw)
		got := strings.ToLower(strings.ReplaceAll(m[1], ":", ""))
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("printed fingerprint %s, SHA-256 of root.pem's DER is %s", got, want)
		}
	})

	t.Run("one admin token", func(t *testing.T) {
		toks := e2eTokenRe.FindAllString(out+errOut, -1)
		if len(toks) != 1 {
			t.Fatalf("init printed %d tokens, want exactly 1:\n%s%s", len(toks), out, errOut)
		}
		// The token works, as an admin.
		c := &caDir{dir: caPath, config: filepath.Join(caPath, "sigil.yaml"), root: filepath.Join(caPath, "root.pem"),
			db: filepath.Join(caPath, "sigil.db"), passphraseFile: pf, adminToken: toks[0]}
		p := startServe(t, c)
		tl, _ := e2eRun(t, e2eAdmin(p, c, "token", "list", "--format", "json")...)
		if !strings.Contains(tl, `"role": "admin"`) {
			t.Errorf("token list does not show the admin token:\n%s", tl)
		}
		p.stop(t)
	})

	t.Run("sigil.yaml", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(caPath, "sigil.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "#") {
			t.Fatal("sigil.yaml has no comments")
		}
		e2eCheckEveryKeyCommented(t, text)
		if strings.Contains(text, testPassphrase) || e2eTokenRe.MatchString(text) {
			t.Error("sigil.yaml holds a secret")
		}
		cfg, err := ParseConfig(data, caPath)
		if err != nil {
			t.Fatalf("generated sigil.yaml does not load: %v", err)
		}
		if cfg.HTTPS.Addr != httpsAddr {
			t.Errorf("https.addr = %q, want %q", cfg.HTTPS.Addr, httpsAddr)
		}
		for _, name := range []string{"tls-server", "tls-client", "tls-server-client"} {
			if _, ok := cfg.Profiles[name]; !ok {
				t.Errorf("generated config lacks profile %s", name)
			}
		}
		if got, want := cfg.DatabasePath(), filepath.Join(caPath, "sigil.db"); got != want {
			t.Errorf("database path %s, want %s", got, want)
		}
	})

	t.Run("secrets stay out of output", func(t *testing.T) {
		if strings.Contains(out+errOut, testPassphrase) {
			t.Error("init printed the passphrase")
		}
	})

	t.Run("second init changes nothing", func(t *testing.T) {
		before := e2eSnapshotDir(t, caPath)
		line := e2eFail(t, args...)
		if !strings.Contains(line, "exists") {
			t.Errorf("refusal does not say the CA exists: %s", line)
		}
		after := e2eSnapshotDir(t, caPath)
		for path, b := range before {
			a, ok := after[path]
			switch {
			case !ok:
				t.Errorf("%s disappeared", path)
			case a.mode != b.mode || !a.mtime.Equal(b.mtime) || a.sum != b.sum:
				t.Errorf("%s changed: %v %v %x -> %v %v %x", path, b.mode, b.mtime, b.sum, a.mode, a.mtime, a.sum)
			}
		}
		for path := range after {
			if _, ok := before[path]; !ok {
				t.Errorf("%s appeared", path)
			}
		}
	})
}

// e2eCheckEveryKeyCommented checks the commenting rule of the generated
// sigil.yaml: each top-level key has a comment directly above it or in its
// section; each key nested under a section has a comment directly above it;
// each profile field is named in a comment before its first use (the
// profiles header documents every field).
func e2eCheckEveryKeyCommented(t *testing.T, text string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	keyRe := regexp.MustCompile(`^( *)([A-Za-z_][A-Za-z0-9_-]*):`)
	indentOf := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	isComment := func(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "#") }
	prevIsComment := func(i int) bool {
		return i > 0 && strings.TrimSpace(lines[i-1]) != "" && isComment(lines[i-1])
	}
	var comments strings.Builder
	section, keys := "", 0
	for i, line := range lines {
		if isComment(line) {
			comments.WriteString(line + "\n")
			continue
		}
		m := keyRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		keys++
		indent, key := len(m[1]), m[2]
		switch {
		case indent == 0:
			section = key
			ok := prevIsComment(i)
			for j := i + 1; !ok && j < len(lines); j++ {
				if strings.TrimSpace(lines[j]) != "" && indentOf(lines[j]) == 0 {
					break
				}
				ok = isComment(lines[j])
			}
			if !ok {
				t.Errorf("sigil.yaml line %d: top-level key %q has no comment in its section", i+1, key)
			}
		case section == "profiles" && indent == 2:
			// A profile's name; the profiles header describes them.
		case section == "profiles":
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `\b`).MatchString(comments.String()) {
				t.Errorf("sigil.yaml line %d: profile field %q is not described in any comment above it", i+1, key)
			}
		default:
			if !prevIsComment(i) {
				t.Errorf("sigil.yaml line %d: key %s.%s has no comment directly above it", i+1, section, key)
			}
		}
	}
	if keys < 10 {
		t.Errorf("sigil.yaml has only %d keys; the check found nothing to check", keys)
	}
}

// ---------------------------------------------------------------------------
// sigil cert issue

func TestCLICertIssue(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()

	t.Run("csr file to --out", func(t *testing.T) {
		csrPath, keyPub := e2eCSRFile(t, dir, "csr.example")
		out := filepath.Join(dir, "csr-chain.pem")
		stdout, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--csr", csrPath, "--profile", "tls-server", "--out", out)...)
		if stdout != "" {
			t.Errorf("with --out, stdout should be empty, got:\n%s", stdout)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		chain := e2eParseChain(t, data)
		e2eVerifyChain(t, c, chain, "csr.example", x509.ExtKeyUsageServerAuth)
		if !e2eSamePublicKey(keyPub, chain[0].PublicKey) {
			t.Error("leaf does not certify the CSR's key")
		}
	})

	t.Run("san with key-out", func(t *testing.T) {
		keyOut, out := filepath.Join(dir, "a.key"), filepath.Join(dir, "a-chain.pem")
		e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "a.example", "--san", "10.0.0.5", "--profile", "tls-server",
			"--key-out", keyOut, "--out", out)...)
		info, err := os.Stat(keyOut)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		chain := e2eParseChain(t, data)
		e2eVerifyChain(t, c, chain, "a.example", x509.ExtKeyUsageServerAuth)
		e2eVerifyChain(t, c, chain, "10.0.0.5", x509.ExtKeyUsageServerAuth)
		leaf := chain[0]
		if !slices.Equal(leaf.DNSNames, []string{"a.example"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) {
			t.Errorf("leaf SANs: dns %v ip %v", leaf.DNSNames, leaf.IPAddresses)
		}
		if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), leaf.PublicKey) {
			t.Error("key file does not match the leaf's public key")
		}

		// An existing key file is never overwritten.
		before, _ := os.ReadFile(keyOut)
		line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "b.example", "--profile", "tls-server", "--key-out", keyOut)...)
		if !strings.Contains(line, "exists") {
			t.Errorf("refusal does not explain: %s", line)
		}
		if after, _ := os.ReadFile(keyOut); !bytes.Equal(before, after) {
			t.Error("an existing --key-out file was overwritten")
		}
	})

	t.Run("chain to stdout", func(t *testing.T) {
		keyOut := filepath.Join(dir, "s.key")
		stdout, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "stdout.example", "--profile", "tls-server", "--key-out", keyOut)...)
		chain := e2eParseChain(t, []byte(stdout))
		e2eVerifyChain(t, c, chain, "stdout.example", x509.ExtKeyUsageServerAuth)
		if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), chain[0].PublicKey) {
			t.Error("key file does not match the leaf's public key")
		}
	})
}

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

// TestCLIIssueProfilesAndKeyTypes issues with every profile of the generated
// sigil.yaml for every key type the CLI generates and checks each chain.
func TestCLIIssueProfilesAndKeyTypes(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	ekus := map[string][]x509.ExtKeyUsage{
		"tls-server":        {x509.ExtKeyUsageServerAuth},
		"tls-client":        {x509.ExtKeyUsageClientAuth},
		"tls-server-client": {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, profile := range []string{"tls-server", "tls-client", "tls-server-client"} {
		for _, kt := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"} {
			t.Run(profile+"/"+kt, func(t *testing.T) {
				keyOut := filepath.Join(t.TempDir(), "k.pem")
				out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "host.example", "--profile", profile,
					"--key-type", kt, "--key-out", keyOut)...)
				chain := e2eParseChain(t, []byte(out))
				e2eVerifyChain(t, c, chain, "host.example", ekus[profile]...)
				leaf := chain[0]
				if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), leaf.PublicKey) {
					t.Error("key file does not match the leaf")
				}
				if _, isRSA := leaf.PublicKey.(*rsa.PublicKey); !isRSA && leaf.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0 {
					t.Errorf("%s leaf has key/data encipherment usage", kt)
				}
				if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
					t.Error("leaf lacks digitalSignature")
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// sigil cert show / cert list

func TestCLICertShowAndList(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	a := e2eIssueSAN(t, p, c, "tls-server", "a.example", "10.0.0.5")[0]
	b := e2eIssueSAN(t, p, c, "tls-client", "b.example")[0]
	d := e2eIssueSAN(t, p, c, "tls-server", "d.example")[0]

	t.Run("show table", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(a))...)
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("cert show line %q is not \"field: value\"", line)
			}
			fields[k] = strings.TrimSpace(v)
		}
		want := map[string]string{"serial": e2eSerial(a), "status": "valid", "subject": "CN=a.example",
			"sans": "a.example, 10.0.0.5", "profile": "tls-server", "key": "ecdsa-p256", "channel": "api",
			"not after": a.NotAfter.UTC().Format(time.RFC3339)}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("cert show %s = %q, want %q\n%s", k, fields[k], v, out)
			}
		}
		if !strings.HasPrefix(fields["requester"], "token:") {
			t.Errorf("requester %q, want token:ID", fields["requester"])
		}
	})

	t.Run("show json", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(b), "--format", "json")...)
		var got api.Certificate
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("cert show --format json: %v\n%s", err, out)
		}
		if got.Serial != e2eSerial(b) || got.Profile != "tls-client" || got.Status != "valid" || !slices.Equal(got.SANs, []string{"b.example"}) {
			t.Errorf("cert show json = %+v", got)
		}
		if !got.NotAfter.Equal(b.NotAfter) || !got.NotBefore.Equal(b.NotBefore) {
			t.Errorf("validity %v..%v, certificate says %v..%v", got.NotBefore, got.NotAfter, b.NotBefore, b.NotAfter)
		}
	})

	t.Run("show pem", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(d), "--pem")...)
		chain := e2eParseChain(t, []byte(out))
		if len(chain) != 1 || !bytes.Equal(chain[0].Raw, d.Raw) {
			t.Errorf("cert show --pem is not the issued certificate:\n%s", out)
		}
	})

	t.Run("show unknown", func(t *testing.T) {
		line := e2eFail(t, e2eAdmin(p, c, "cert", "show", "abcdef0123456789")...)
		if !strings.Contains(line, "not_found") && !strings.Contains(strings.ToLower(line), "no certificate") {
			t.Errorf("unclear error: %s", line)
		}
	})

	all := e2eListCerts(t, p, c)
	if len(all) < 3 {
		t.Fatalf("cert list shows %d certificates", len(all))
	}

	t.Run("list table aligned", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "list", "--all")...)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		header := []string{"SERIAL", "SUBJECT", "SANS", "PROFILE", "STATUS", "NOT AFTER", "REQUESTER"}
		starts := make([]int, len(header))
		for i, h := range header {
			starts[i] = strings.Index(lines[0], h)
			if starts[i] < 0 || (i > 0 && starts[i] <= starts[i-1]) {
				t.Fatalf("header %q lacks %s in order", lines[0], h)
			}
		}
		if starts[0] != 0 {
			t.Errorf("header does not start at column 0: %q", lines[0])
		}
		if len(lines)-1 != len(all) {
			t.Fatalf("table has %d rows, json has %d certificates", len(lines)-1, len(all))
		}
		for r, line := range lines[1:] {
			cert := all[r]
			want := []string{cert.Serial, cert.Subject, strings.Join(cert.SANs, ","), cert.Profile, cert.Status, fmtTime(cert.NotAfter), cert.Requester}
			for i, s := range starts {
				end := len(line)
				if i+1 < len(starts) {
					end = min(starts[i+1], len(line))
				}
				if s > len(line) {
					t.Errorf("row %d is shorter than column %s: %q", r, header[i], line)
					break
				}
				if s > 0 && line[s-1] != ' ' {
					t.Errorf("row %d: column %s does not start at %d: %q", r, header[i], s, line)
				}
				if got := strings.TrimRight(line[s:end], " "); got != want[i] {
					t.Errorf("row %d column %s = %q, want %q (misaligned?)\n%s\n%s", r, header[i], got, want[i], lines[0], line)
				}
			}
		}
	})

	t.Run("list csv", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "list", "--all", "--format", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("csv: %v\n%s", err, out)
		}
		if want := []string{"SERIAL", "SUBJECT", "SANS", "PROFILE", "STATUS", "NOT AFTER", "REQUESTER"}; !slices.Equal(recs[0], want) {
			t.Errorf("csv header %v, want %v", recs[0], want)
		}
		if len(recs)-1 != len(all) {
			t.Fatalf("csv has %d rows, json %d", len(recs)-1, len(all))
		}
		for i, r := range recs[1:] {
			if r[0] != all[i].Serial || r[2] != strings.Join(all[i].SANs, ",") {
				t.Errorf("csv row %d = %v, json says %s %v", i, r, all[i].Serial, all[i].SANs)
			}
		}
	})

	serials := func(cs []api.Certificate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Serial)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	for _, tc := range []struct {
		name    string
		filters []string
		want    []string
	}{
		{"name", []string{"--name", "b.example"}, []string{e2eSerial(b)}},
		{"name substring of SAN", []string{"--name", "10.0.0"}, []string{e2eSerial(a)}},
		{"profile", []string{"--profile", "tls-client"}, []string{e2eSerial(b)}},
		{"profile and name", []string{"--profile", "tls-server", "--name", "d.example"}, []string{e2eSerial(d)}},
		{"serial", []string{"--serial", e2eSerial(d)}, []string{e2eSerial(d)}},
		{"status revoked", []string{"--status", "revoked"}, nil},
		{"status valid", []string{"--status", "valid"}, serials(all)},
		{"name none", []string{"--name", "nothing.invalid"}, nil},
	} {
		t.Run("filter "+tc.name, func(t *testing.T) {
			got := serials(e2eListCerts(t, p, c, tc.filters...))
			if !slices.Equal(got, sorted(tc.want...)) {
				t.Errorf("cert list %v = %v, want %v", tc.filters, got, tc.want)
			}
		})
	}

	t.Run("bad filter", func(t *testing.T) {
		line := e2eFail(t, e2eAdmin(p, c, "cert", "list", "--status", "bogus")...)
		if !strings.Contains(line, "bogus") {
			t.Errorf("error does not name the bad status: %s", line)
		}
		e2eFail(t, e2eAdmin(p, c, "cert", "list", "--format", "xml")...)
	})
}

// ---------------------------------------------------------------------------
// Refusals

func TestCLIRefusals(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 700)
	_, _ = rand.Read(garbage)
	for _, tc := range []struct {
		name    string
		csr     []byte
		explain string // a word the one error line must contain
	}{
		{"cn only", e2eCSR(t, e2eP256(t), "cn-only.example"), "common name"},
		{"disallowed ip", e2eCSR(t, e2eP256(t), "", "8.8.8.8"), "8.8.8.8"},
		{"rsa 1024", e2eCSR(t, rsa1024, "weak.example", "weak.example"), "1024"},
		{"garbage", garbage, "csr"},
		{"garbage pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("not a csr at all")}), "csr"},
		{"certificate instead of csr", func() []byte { d, _ := os.ReadFile(c.root); return d }(), "certificate request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e2eListCerts(t, p, c)
			refusedBefore := len(e2eListAudit(t, p, c, "--action", "request.refused"))
			path := e2eWriteFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".csr", tc.csr)
			line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--csr", path, "--profile", "tls-server", "--out", filepath.Join(dir, "never.pem"))...)
			if !strings.Contains(strings.ToLower(line), strings.ToLower(tc.explain)) {
				t.Errorf("error line does not mention %q: %s", tc.explain, line)
			}
			if _, err := os.Stat(filepath.Join(dir, "never.pem")); err == nil {
				t.Error("a refused request wrote --out")
			}
			after := e2eListCerts(t, p, c)
			if len(after) != len(before) {
				t.Errorf("refused request left a certificate: %d -> %d", len(before), len(after))
			}
			// DESIGN.md: refused requests are audited.
			if refused := len(e2eListAudit(t, p, c, "--action", "request.refused")); refused != refusedBefore+1 {
				t.Errorf("request.refused events %d -> %d, want one more", refusedBefore, refused)
			}
		})
	}

	t.Run("disallowed name with key-out writes no key", func(t *testing.T) {
		before := e2eListCerts(t, p, c)
		refusedBefore := len(e2eListAudit(t, p, c, "--action", "request.refused"))
		keyOut := filepath.Join(dir, "never.key")
		line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "8.8.8.8", "--profile", "tls-server", "--key-out", keyOut)...)
		if !strings.Contains(line, "8.8.8.8") {
			t.Errorf("error does not name the address: %s", line)
		}
		if _, err := os.Stat(keyOut); err == nil {
			t.Error("a refused request wrote --key-out")
		}
		if after := e2eListCerts(t, p, c); len(after) != len(before) {
			t.Errorf("refused request left a certificate")
		}
		if refused := len(e2eListAudit(t, p, c, "--action", "request.refused")); refused != refusedBefore+1 {
			t.Errorf("request.refused events %d -> %d, want one more", refusedBefore, refused)
		}
	})

	t.Run("unknown profile", func(t *testing.T) {
		e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "x.example", "--profile", "nope", "--key-out", filepath.Join(dir, "x.key"))...)
	})
}

// ---------------------------------------------------------------------------
// Tokens

func TestCLITokens(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	createdRe := regexp.MustCompile(`created (\w+) token (\S+) `)

	create := func(t *testing.T, args ...string) (id, secret string) {
		t.Helper()
		out, errOut := e2eRun(t, e2eAdmin(p, c, append([]string{"token", "create"}, args...)...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !e2eTokenRe.MatchString(lines[0]) {
			t.Fatalf("token create should print the secret alone on stdout, got:\n%s", out)
		}
		m := createdRe.FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("token create stderr does not name the token:\n%s", errOut)
		}
		if strings.Count(out+errOut, lines[0]) != 1 {
			t.Errorf("the secret is printed more than once")
		}
		return m[2], lines[0]
	}
	issue := func(tok, profile, name string) (string, string, error) {
		return runSigil(t, nil, e2eWithToken(p, c, tok, "cert", "issue", "--san", name, "--profile", profile,
			"--key-out", filepath.Join(dir, name+".key"))...)
	}

	issuerID, issuer := create(t, "--role", "issuer", "--profiles", "tls-client")
	auditorID, auditor := create(t, "--role", "auditor")

	t.Run("issuer", func(t *testing.T) {
		out, errOut, err := issue(issuer, "tls-server", "srv.example")
		if err == nil {
			t.Fatalf("issuer token limited to tls-client issued with tls-server:\n%s", out)
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "forbidden") {
			t.Errorf("want a forbidden error, got %s", line)
		}
		out, errOut, err = issue(issuer, "tls-client", "cli.example")
		if err != nil {
			t.Fatalf("issuer token could not issue with tls-client: %v\n%s", err, errOut)
		}
		leaf := e2eParseChain(t, []byte(out))[0]
		got := e2eListCerts(t, p, c, "--serial", e2eSerial(leaf))
		if len(got) != 1 || got[0].Requester != "token:"+issuerID {
			t.Errorf("record %+v, want requester token:%s", got, issuerID)
		}
		// An issuer cannot administer.
		_, errOut, err = runSigil(t, nil, e2eWithToken(p, c, issuer, "token", "create", "--role", "admin")...)
		if err == nil || !strings.Contains(e2eOneErrorLine(t, errOut), "forbidden") {
			t.Errorf("issuer created a token: %v %s", err, errOut)
		}
	})

	t.Run("auditor", func(t *testing.T) {
		for _, args := range [][]string{{"cert", "list"}, {"audit", "list"}, {"keys", "list"}} {
			if _, errOut, err := runSigil(t, nil, e2eWithToken(p, c, auditor, args...)...); err != nil {
				t.Errorf("auditor cannot %v: %v\n%s", args, err, errOut)
			}
		}
		out, errOut, err := issue(auditor, "tls-server", "aud.example")
		if err == nil {
			t.Fatalf("auditor issued a certificate:\n%s", out)
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "forbidden") {
			t.Errorf("want a forbidden error, got %s", line)
		}
		if _, err := os.Stat(filepath.Join(dir, "aud.example.key")); err == nil {
			t.Error("refused issuance wrote the key file")
		}
	})

	t.Run("list never prints secrets", func(t *testing.T) {
		for _, format := range []string{"table", "json", "csv"} {
			out, errOut := e2eRun(t, e2eAdmin(p, c, "token", "list", "--format", format)...)
			for _, secret := range []string{c.adminToken, issuer, auditor} {
				// sigil_<id>_<secret>: the id may show, the secret part never.
				part := secret[strings.LastIndex(secret, "_")+1:]
				if strings.Contains(out+errOut, part) {
					t.Errorf("token list --format %s prints a secret", format)
				}
			}
			for _, id := range []string{issuerID, auditorID} {
				if !strings.Contains(out, id) {
					t.Errorf("token list --format %s lacks token %s", format, id)
				}
			}
		}
	})

	t.Run("revoke", func(t *testing.T) {
		_, errOut := e2eRun(t, e2eAdmin(p, c, "token", "revoke", auditorID)...)
		if !strings.Contains(errOut, auditorID) {
			t.Errorf("revoke did not confirm: %s", errOut)
		}
		_, errOut, err := runSigil(t, nil, e2eWithToken(p, c, auditor, "cert", "list")...)
		if err == nil {
			t.Fatal("a revoked token still works")
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "unauthorized") {
			t.Errorf("want unauthorized, got %s", line)
		}
		// Revoking again, or an unknown id, is a clear error.
		e2eFail(t, e2eAdmin(p, c, "token", "revoke", auditorID)...)
		e2eFail(t, e2eAdmin(p, c, "token", "revoke", "0000000000000000")...)
		// Other tokens still work.
		if _, errOut, err := issue(issuer, "tls-client", "still.example"); err != nil {
			t.Errorf("issuer token stopped working after another was revoked: %s", errOut)
		}
		// Token events are audited.
		for _, action := range []string{"token.created", "token.revoked"} {
			if len(e2eListAudit(t, p, c, "--action", action, "--target", auditorID)) != 1 {
				t.Errorf("no %s event for %s", action, auditorID)
			}
		}
	})

	t.Run("bad token", func(t *testing.T) {
		_, errOut, err := runSigil(t, nil, e2eWithToken(p, c, "sigil_0000000000000000_bogus", "cert", "list")...)
		if err == nil || !strings.Contains(e2eOneErrorLine(t, errOut), "unauthorized") {
			t.Errorf("a bogus token was accepted: %v %s", err, errOut)
		}
	})
}

// ---------------------------------------------------------------------------
// sigil keys rewrap

func TestCLIKeysRewrapWhileIssuing(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	newPF := e2eWriteFile(t, dir, "new-passphrase", []byte("a-brand-new-test-passphrase\n"))
	wrongPF := e2eWriteFile(t, dir, "wrong-passphrase", []byte("not-the-current-passphrase\n"))

	_, keysBefore := e2eListKeys(t, p, c)
	if len(keysBefore) < 3 {
		t.Fatalf("only %d keys", len(keysBefore))
	}
	for _, k := range keysBefore {
		if k.KEK != "kek-1" {
			t.Fatalf("key %s starts under %s, want kek-1", k.ID, k.KEK)
		}
	}

	// 8 clients issue over HTTPS until each has finished one issuance that
	// began after the rewrap returned.
	client := c.httpClient(t)
	var (
		rewrapDone   atomic.Bool
		rewrapStart  atomic.Int64
		rewrapEnd    atomic.Int64
		ok, during   atomic.Int64
		mu           sync.Mutex
		failures     []string
		wg           sync.WaitGroup
		clientsReady sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientsReady.Add(8)
	for i := range 8 {
		name := fmt.Sprintf("w%d.example", i)
		csrPEM := e2eCSR(t, e2eP256(t), name, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready := false
			for ctx.Err() == nil {
				after := rewrapDone.Load()
				_, err := e2eSignHTTPS(ctx, client, p.httpsURL, c.adminToken, csrPEM, "tls-server")
				now := time.Now().UnixNano()
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					if !ready {
						ready = true
						clientsReady.Done()
					}
					if ctx.Err() != nil || after {
						return
					}
					continue
				}
				ok.Add(1)
				if s := rewrapStart.Load(); s != 0 && now > s && (rewrapEnd.Load() == 0 || now < rewrapEnd.Load()) {
					during.Add(1)
				}
				if !ready {
					ready = true
					clientsReady.Done()
				}
				if after {
					return
				}
			}
		}()
	}
	clientsReady.Wait() // every client has issued once: load is running

	rewrapStart.Store(time.Now().UnixNano())
	out, errOut, err := runSigil(t, nil, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", c.passphraseFile, "--new-passphrase-file", newPF)...)
	rewrapEnd.Store(time.Now().UnixNano())
	rewrapDone.Store(true)
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("keys rewrap: %v\n%s%s", err, out, errOut)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d issuances failed during the rewrap (of %d); first: %s", len(failures), int64(len(failures))+ok.Load(), failures[0])
	}
	if during.Load() == 0 {
		t.Errorf("no issuance completed while the rewrap ran: issuance stopped")
	}
	t.Logf("%d issuances, %d of them during the rewrap, 0 failures expected (got %d)", ok.Load(), during.Load(), len(failures))
	if !strings.Contains(out, "kek-2") {
		t.Errorf("rewrap output does not name the new KEK: %s", out)
	}

	keysJSON, keysAfter := e2eListKeys(t, p, c)
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("key count %d -> %d", len(keysBefore), len(keysAfter))
	}
	for _, k := range keysAfter {
		if k.KEK != "kek-2" {
			t.Errorf("key %s (%s) is under %s after the rewrap, want kek-2", k.ID, k.Purpose, k.KEK)
		}
		if k.State != "active" {
			t.Errorf("key %s state %s", k.ID, k.State)
		}
	}
	for _, action := range []string{"key.rewrapped", "kek.rotated"} {
		if len(e2eListAudit(t, p, c, "--action", action)) == 0 {
			t.Errorf("no %s audit event", action)
		}
	}

	t.Run("wrong current passphrase changes nothing", func(t *testing.T) {
		eventsBefore := e2eListAudit(t, p, c)
		line := e2eFail(t, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", wrongPF, "--new-passphrase-file", newPF)...)
		if !strings.Contains(strings.ToLower(line), "passphrase") || !strings.Contains(strings.ToLower(line), "wrong") {
			t.Errorf("unclear error: %s", line)
		}
		// The previous (now retired) passphrase is wrong too.
		e2eFail(t, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", c.passphraseFile, "--new-passphrase-file", wrongPF)...)
		if again, _ := e2eListKeys(t, p, c); again != keysJSON {
			t.Errorf("keys list changed after a refused rewrap:\n%s\n->\n%s", keysJSON, again)
		}
		eventsAfter := e2eListAudit(t, p, c)
		if len(eventsAfter) < len(eventsBefore) {
			t.Fatalf("audit log shrank")
		}
		refused := 0
		for _, e := range eventsAfter[len(eventsBefore):] {
			if e.Action == "kek.rewrap.refused" {
				refused++
			} else {
				t.Errorf("refused rewrap appended a %s event", e.Action)
			}
		}
		if refused != 2 {
			t.Errorf("%d kek.rewrap.refused events for 2 refused rewraps: each refusal is audited", refused)
		}
	})

	p.stop(t)
	verifyBefore := e2eAuditVerify(t, c)

	t.Run("old passphrase no longer unlocks", func(t *testing.T) {
		line := e2eFail(t, "serve", "--config", c.config, "--passphrase-file", c.passphraseFile,
			"--https-addr", freeAddr(t), "--http-addr", freeAddr(t))
		if !strings.Contains(line, "wrong passphrase") {
			t.Errorf("want a clear \"wrong passphrase\" error, got: %s", line)
		}
		if got := e2eAuditVerify(t, c); got != verifyBefore {
			t.Errorf("a failed start changed the audit log: %+v -> %+v", verifyBefore, got)
		}
	})

	t.Run("new passphrase starts and issues", func(t *testing.T) {
		c2 := *c
		c2.passphraseFile = newPF
		p2 := startServe(t, &c2)
		chain := e2eIssueSAN(t, p2, &c2, "tls-server", "after.example")
		e2eVerifyChain(t, &c2, chain, "after.example", x509.ExtKeyUsageServerAuth)
		p2.stop(t)
	})
}

// ---------------------------------------------------------------------------
// Audit list and offline verification

func TestCLIAudit(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	first := e2eIssueSAN(t, p, c, "tls-server", "first.example")[0]
	second := e2eIssueSAN(t, p, c, "tls-client", "second.example")[0]

	t.Run("action csv", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "audit", "list", "--all", "--action", "cert.issued", "--format", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("csv: %v\n%s", err, out)
		}
		if want := []string{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"}; !slices.Equal(recs[0], want) {
			t.Fatalf("csv header %v, want %v", recs[0], want)
		}
		targets := map[string]bool{}
		lastSeq := 0
		for _, r := range recs[1:] {
			if r[3] != "cert.issued" {
				t.Errorf("--action cert.issued listed %s", r[3])
			}
			seq, err := strconv.Atoi(r[0])
			if err != nil || seq <= lastSeq {
				t.Errorf("seq %q out of order after %d", r[0], lastSeq)
			}
			lastSeq = seq
			if _, err := time.Parse(time.RFC3339, r[1]); err != nil {
				t.Errorf("time %q: %v", r[1], err)
			}
			targets[r[4]] = true
		}
		for _, s := range []string{e2eSerial(first), e2eSerial(second)} {
			if !targets[s] {
				t.Errorf("cert.issued events lack serial %s", s)
			}
		}
		// One event per certificate in the record.
		if n, want := len(recs)-1, len(e2eListCerts(t, p, c)); n != want {
			t.Errorf("%d cert.issued events, %d certificates", n, want)
		}
	})

	t.Run("prefix", func(t *testing.T) {
		for _, e := range e2eListAudit(t, p, c, "--action", "cert.") {
			if !strings.HasPrefix(e.Action, "cert.") {
				t.Errorf("--action cert. listed %s", e.Action)
			}
		}
	})

	t.Run("since", func(t *testing.T) {
		all := e2eListAudit(t, p, c)
		var secondEvent *api.AuditEvent
		for i := range all {
			if all[i].Action == "cert.issued" && all[i].Target == e2eSerial(second) {
				secondEvent = &all[i]
			}
		}
		if secondEvent == nil {
			t.Fatal("no event for the second certificate")
		}
		since := secondEvent.Time
		got := e2eListAudit(t, p, c, "--since", since.Format(time.RFC3339Nano))
		var want []int64
		for _, e := range all {
			if !e.Time.Before(since) {
				want = append(want, e.Seq)
			}
		}
		var gotSeqs []int64
		for _, e := range got {
			gotSeqs = append(gotSeqs, e.Seq)
			if e.Time.Before(since) {
				t.Errorf("--since %s listed event %d at %s", since, e.Seq, e.Time)
			}
		}
		// Events appended after `all` was read (none expected) may follow.
		if len(gotSeqs) < len(want) || !slices.Equal(gotSeqs[:len(want)], want) {
			t.Errorf("--since %s: seqs %v, want %v", since, gotSeqs, want)
		}
		for _, e := range got {
			if e.Target == e2eSerial(first) {
				t.Errorf("--since listed the earlier certificate's event")
			}
		}
		if future := e2eListAudit(t, p, c, "--since", time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)); len(future) != 0 {
			t.Errorf("--since tomorrow listed %d events", len(future))
		}
		if past := e2eListAudit(t, p, c, "--since", "2000-01-01T00:00:00Z"); len(past) < len(all) {
			t.Errorf("--since 2000 listed %d of %d events", len(past), len(all))
		}
		e2eFail(t, e2eAdmin(p, c, "audit", "list", "--since", "yesterday")...)
	})

	t.Run("verify stopped database", func(t *testing.T) {
		events := e2eListAudit(t, p, c)
		p.stop(t)
		out, errOut := e2eRun(t, "audit", "verify", "--db", c.db, "--ca-file", c.root)
		m := e2eVerifyRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("audit verify output not understood:\n%s%s", out, errOut)
		}
		if want := strconv.Itoa(len(events)); m[1] != want {
			t.Errorf("audit verify counted %s events, audit list shows %s", m[1], want)
		}
		if m[3] != strconv.FormatInt(events[len(events)-1].Seq, 10) {
			t.Errorf("audit verify head %s, last listed event %d", m[3], events[len(events)-1].Seq)
		}
		if strings.Contains(errOut, "note:") {
			t.Errorf("with --ca-file the checkpoint keys should be certified by the root: %s", errOut)
		}
		// A root that is not this CA's fails.
		other := initCA(t)
		line := e2eFail(t, "audit", "verify", "--db", c.db, "--ca-file", other.root)
		if !strings.Contains(line, "FAILED") {
			t.Errorf("verification against a foreign root: %s", line)
		}
	})
}

// ---------------------------------------------------------------------------
// Graceful shutdown

// e2eGatedBody is a request body that reports its first Read and then blocks
// until released. With "Expect: 100-continue" the client reads the body only
// after the server answered 100 Continue, which Go's server does when the
// handler first reads the body: so the first Read proves the request is
// inside the handler.
type e2eGatedBody struct {
	data    []byte
	started chan struct{}
	release <-chan struct{}
	once    sync.Once
	off     int
}

func (g *e2eGatedBody) Read(p []byte) (int, error) {
	if g.off == 0 {
		g.once.Do(func() { close(g.started) })
		<-g.release
	}
	if g.off >= len(g.data) {
		return 0, io.EOF
	}
	n := copy(p, g.data[g.off:])
	g.off += n
	return n, nil
}

func TestCLIGracefulShutdown(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	e2eIssueSAN(t, p, c, "tls-server", "warmup.example")

	tr := c.httpClient(t).Transport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	const inflight = 8
	release := make(chan struct{})
	type result struct {
		resp *api.SignResponse
		err  error
	}
	results := make(chan result, inflight)
	var started []chan struct{}
	for i := range inflight {
		name := fmt.Sprintf("inflight%d.example", i)
		body, err := json.Marshal(api.SignRequest{CSR: string(e2eCSR(t, e2eP256(t), name, name)), Profile: "tls-server"})
		if err != nil {
			t.Fatal(err)
		}
		g := &e2eGatedBody{data: body, started: make(chan struct{}), release: release}
		started = append(started, g.started)
		go func() {
			req, err := http.NewRequest(http.MethodPost, p.httpsURL+"/v1/sign", g)
			if err != nil {
				results <- result{err: err}
				return
			}
			req.ContentLength = int64(len(body))
			req.Header.Set("Authorization", "Bearer "+c.adminToken)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusCreated {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, data)
			}
			var sr api.SignResponse
			if err == nil {
				err = json.Unmarshal(data, &sr)
			}
			results <- result{resp: &sr, err: err}
		}()
	}
	deadline := time.After(30 * time.Second)
	for _, s := range started {
		select {
		case <-s:
		case r := <-results:
			t.Fatalf("request finished before the server asked for its body: %v", r.err)
		case <-deadline:
			t.Fatal("requests did not reach the handler in 30s")
		}
	}

	// Every request is inside the handler. Signal, and wait until the
	// server stops accepting connections: shutdown has begun.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(p.httpsURL, "https://")
	until := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(until) {
			t.Fatal("server still accepts connections 30s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond) // polling the child for its listener to close
	}
	close(release)

	var serials []string
	for range inflight {
		r := <-results
		if r.err != nil {
			t.Errorf("in-flight request failed during graceful shutdown: %v", r.err)
			continue
		}
		serials = append(serials, r.resp.Serial)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("sigil serve exited with %v after SIGTERM, want 0\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		p.kill()
		t.Fatal("sigil serve did not exit within 30s of SIGTERM")
	}

	// The audit log ends with a checkpoint of its head.
	ctx := context.Background()
	st, err := store.OpenReadOnly(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head, err := st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) == 0 || cps[len(cps)-1].Seq != head.Seq {
		t.Errorf("no checkpoint at the audit head %d after shutdown (checkpoints: %d)", head.Seq, len(cps))
	}
	// Every certificate a client received is in the record.
	for _, s := range serials {
		if _, err := st.Certificate(ctx, s); err != nil {
			t.Errorf("certificate %s returned during shutdown is not recorded: %v", s, err)
		}
	}
	rep := e2eAuditVerify(t, c)
	if rep.head != int(head.Seq) {
		t.Errorf("audit verify head %d, store head %d", rep.head, head.Seq)
	}
}

// ---------------------------------------------------------------------------
// sigil dev

func TestCLIDev(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "dev")
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(sigilBin, "dev", "--data", data, "--https-addr", httpsAddr, "--http-addr", httpAddr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	banner := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if !sent && strings.HasPrefix(sc.Text(), "Try:") {
				banner <- b.String()
				sent = true
			}
		}
		if !sent {
			banner <- b.String()
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	var out string
	select {
	case out = <-banner:
	case <-time.After(60 * time.Second):
		t.Fatal("sigil dev printed no banner in 60s")
	}
	if !strings.Contains(out, "Try:") { // stdout closed early: dev exited
		err := <-done
		done <- err // for the cleanup
		t.Fatalf("sigil dev did not start: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	if !strings.Contains(out, "NOT FOR PRODUCTION") {
		t.Errorf("dev banner lacks NOT FOR PRODUCTION:\n%s", out)
	}
	for _, want := range []string{"https://" + httpsAddr, "http://" + httpAddr, "root.pem"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev output lacks %s:\n%s", want, out)
		}
	}

	c := &caDir{dir: data, root: filepath.Join(data, "root.pem"), db: filepath.Join(data, "sigil.db")}
	root := e2eReadRoot(t, c)
	if !root.IsCA {
		t.Error("root.pem is not a CA")
	}
	interData, err := os.ReadFile(filepath.Join(data, "intermediate.pem"))
	if err != nil {
		t.Fatal(err)
	}
	inter := e2eParseChain(t, interData)
	if len(inter) != 1 || inter[0].CheckSignatureFrom(root) != nil || !inter[0].IsCA {
		t.Error("intermediate.pem is not a CA certificate signed by root.pem")
	}
	tokPath := filepath.Join(data, "admin.token")
	info, err := os.Stat(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode %v, want 0600", info.Mode().Perm())
	}
	tok, err := os.ReadFile(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	c.adminToken = strings.TrimSpace(string(tok))
	p := &serverProc{httpsURL: "https://" + httpsAddr, httpURL: "http://" + httpAddr}

	chain := e2eIssueSAN(t, p, c, "tls-server", "app.localhost")
	e2eVerifyChain(t, c, chain, "app.localhost", x509.ExtKeyUsageServerAuth)
	if !bytes.Equal(chain[1].Raw, inter[0].Raw) {
		t.Error("the issued chain's intermediate is not intermediate.pem")
	}

	rootPEM, _ := os.ReadFile(c.root)
	client := c.httpClient(t)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, base := range []string{p.httpsURL, p.httpURL} {
		code, body := get(base + "/roots.pem")
		if code != http.StatusOK || body != string(rootPEM) {
			t.Errorf("%s/roots.pem: %d, body equals root.pem: %v", base, code, body == string(rootPEM))
		}
	}
	if code, body := get(p.httpsURL + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	code, metrics := get(p.httpsURL + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	if !regexp.MustCompile(`(?m)^sigil_certificates_issued_total\{profile="tls-server"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics lacks a non-zero sigil_certificates_issued_total for tls-server")
	}
	if !regexp.MustCompile(`(?m)^sigil_store_commit_seconds_count [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics lacks sigil_store_commit_seconds observations")
	}
	if !strings.Contains(metrics, "sigil_issuance_seconds") {
		t.Errorf("/metrics lacks sigil_issuance_seconds")
	}

	// A clean stop.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("sigil dev exited with %v after SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("sigil dev did not stop within 30s of SIGTERM")
	}
}
