package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// sigilBin is the sigil binary built once for every test in this package
// that runs it as a child process.
var sigilBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test that runs the binary skips (sigilBinary), so none is built.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sigil-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sigilBin = filepath.Join(dir, "sigil")
	build := exec.Command("go", "build", "-o", sigilBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build sigil: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sigilBinary is the path of the built binary. Tests that run it as a
// child process (a server, a CLI command) skip with -short: they are what
// makes this package's suite take minutes, and `make short` is the quick loop.
func sigilBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the sigil binary as a child process; skipped with -short")
	}
	return sigilBin
}

// testPassphrase is a throwaway passphrase for test CAs only.
const testPassphrase = "test-only-passphrase-not-secret"

// caDir is an initialized CA directory.
type caDir struct {
	dir            string
	config         string
	root           string
	db             string
	store          string // the PostgreSQL DSN of a CA on PostgreSQL
	passphraseFile string
	adminToken     string
}

// testStorePostgres reports whether SIGIL_TEST_STORE=postgres asks for
// the CAs of these tests to keep their records in PostgreSQL (a database
// of pgtest's each) instead of SQLite.
func testStorePostgres() bool { return os.Getenv("SIGIL_TEST_STORE") == "postgres" }

// sqlite returns the CA's SQLite file for a test that reads or alters it
// directly; on a CA in PostgreSQL it skips the test, saying so.
func (c *caDir) sqlite(t testing.TB) string {
	t.Helper()
	if c.store != "" {
		t.Skip("SQLITE FILE TEST: this CA is on PostgreSQL (SIGIL_TEST_STORE=postgres) and the test reads or alters the SQLite file")
	}
	return c.db
}

// verifyArgs names the CA's store for sigil audit verify.
func (c *caDir) verifyArgs() []string {
	if c.store != "" {
		return []string{"--store", c.store}
	}
	return []string{"--db", c.db}
}

// handedOut holds every address freeAddr has returned in this process.
var handedOut sync.Map

// freeAddr returns a 127.0.0.1 address that was free a moment ago and that
// it never returned before: the kernel may hand a just-closed probe port out
// again, and two servers of one test told the same port collide (lego's
// http-01 listener once got sigil serve's HTTP port).
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, seen := handedOut.LoadOrStore(addr, true); !seen {
			return addr
		}
	}
	t.Fatal("freeAddr: no unused port in 100 tries")
	return ""
}

// runSigil runs the binary and returns stdout, stderr and the error; in a
// test marked inProcess it runs the command tree in this process instead.
func runSigil(t testing.TB, env []string, args ...string) (string, string, error) {
	t.Helper()
	if isInProcess(t) {
		return runSigilInProcess(t, env, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sigilBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// initCA runs `sigil init` with fresh listen addresses (in this process,
// with cheap KDF parameters, in a test marked inProcess: initInProcess).
func initCA(t testing.TB, extra ...string) *caDir {
	t.Helper()
	dir := t.TempDir()
	pf := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pf, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca")
	var dsn string
	if testStorePostgres() && !slices.Contains(extra, "--store") {
		dsn = pgtest.NewDatabase(t)
		extra = append(slices.Clone(extra), "--store", dsn)
	}
	args := append([]string{"init", "--dir", caPath, "--passphrase-file", pf,
		"--https-addr", freeAddr(t), "--http-addr", freeAddr(t)}, extra...)
	run := runSigil
	if isInProcess(t) {
		run = initInProcess
	}
	out, errOut, err := run(t, nil, args...)
	if err != nil {
		t.Fatalf("sigil init: %v\n%s%s", err, out, errOut)
	}
	c := &caDir{dir: caPath, config: filepath.Join(caPath, "sigil.yaml"), root: filepath.Join(caPath, "root.pem"),
		db: filepath.Join(caPath, "sigil.db"), store: dsn, passphraseFile: pf}
	for _, line := range strings.Split(out, "\n") {
		if tok := strings.TrimSpace(line); strings.HasPrefix(tok, "sigil_") {
			c.adminToken = tok
		}
	}
	if c.adminToken == "" {
		t.Fatalf("sigil init printed no admin token:\n%s", out)
	}
	return c
}

// serverProc is a running `sigil serve`: a child process, or (srv set) a
// server started in this process by startServeInProcess.
type serverProc struct {
	cmd      *exec.Cmd
	srv      *server
	httpsURL string
	httpURL  string
	stderr   *lockedBuffer
	done     chan error
}

// startServe starts `sigil serve` on fresh ports, with extra flags if
// given, and waits until /healthz answers. In a test marked inProcess the
// server runs in this process (startServeInProcess).
func startServe(t testing.TB, c *caDir, extra ...string) *serverProc {
	t.Helper()
	if isInProcess(t) {
		return startServeInProcess(t, c, extra...)
	}
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)
	args := append([]string{"serve", "--config", c.config, "--passphrase-file", c.passphraseFile,
		"--https-addr", httpsAddr, "--http-addr", httpAddr}, extra...)
	cmd := exec.Command(sigilBinary(t), args...)
	p := &serverProc{cmd: cmd, httpsURL: "https://" + httpsAddr, httpURL: "http://" + httpAddr,
		stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	client := c.httpClient(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.httpsURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("sigil serve exited: %v\n%s", err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sigil serve not healthy after 30s: %v\n%s", err, p.stderr)
		}
		time.Sleep(50 * time.Millisecond) // polling a child process for readiness, not timing behaviour
	}
}

// stop sends SIGTERM and waits for a graceful exit (idempotent).
func (p *serverProc) stop(t testing.TB) {
	if p.srv != nil {
		p.stopInProcess(t)
		return
	}
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("sigil serve did not stop within 30s")
	}
}

// kill sends SIGKILL and waits; child processes only.
func (p *serverProc) kill() {
	if p.srv != nil {
		panic("kill: the server runs in this process; use startServe without inProcess")
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// httpClient trusts the CA's root.
func (c *caDir) httpClient(t testing.TB) *http.Client {
	t.Helper()
	pemData, err := os.ReadFile(c.root)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("root.pem holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// clientArgs are the flags every admin subcommand needs.
func (p *serverProc) clientArgs(c *caDir) []string {
	return []string{"--server", p.httpsURL, "--ca-file", c.root, "--token", c.adminToken}
}
