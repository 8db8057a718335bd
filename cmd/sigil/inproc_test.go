package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"
)

// inProcessTests holds the names of the top-level tests marked inProcess.
var inProcessTests sync.Map

// inProcess marks t (with its subtests) to run sigil in this process:
// initCA, startServe and runSigil (and the e2e helpers built on them) then
// run the same command tree and server code as the binary, without building
// or starting it, so the test also runs with -short. For tests that are not
// about process behaviour (signals, exit codes, crashes, restarts).
func inProcess(t *testing.T) {
	t.Helper()
	if strings.Contains(t.Name(), "/") {
		t.Fatal("inProcess marks a top-level test")
	}
	inProcessTests.Store(t.Name(), true)
	t.Cleanup(func() { inProcessTests.Delete(t.Name()) })
}

// skipLoadTestInShort skips a load test (hundreds of requests against an
// in-process server, seconds of CPU) under -short: make short stays quick,
// make test runs it.
func skipLoadTestInShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("a load test; skipped with -short")
	}
}

func isInProcess(t testing.TB) bool {
	top, _, _ := strings.Cut(t.Name(), "/")
	_, ok := inProcessTests.Load(top)
	return ok
}

// runSigilInProcess runs the sigil command tree (newRootCmd, as main does)
// with args, and returns stdout, stderr (with the "sigil: " error line main
// prints) and the error. The commands read SIGIL_* variables from the
// process environment, which parallel tests share, so in-process runs take
// flags only: env must be empty.
func runSigilInProcess(t testing.TB, env []string, args ...string) (string, string, error) {
	t.Helper()
	if len(env) > 0 {
		t.Fatalf("runSigilInProcess: env %q: in-process runs take flags, not the environment", env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runCmd(ctx, newRootCmd(), args)
}

// runCmd executes root with args as main does, capturing its output.
func runCmd(ctx context.Context, root *cobra.Command, args []string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(""))
	if code, err := execute(ctx, root, &stderr); code != 0 {
		return stdout.String(), stderr.String(), &inProcessExit{code: code, err: err}
	}
	return stdout.String(), stderr.String(), nil
}

// inProcessExit is a failed in-process run: the exit code main would have
// exited with, like *exec.ExitError for the binary (exitCoder).
type inProcessExit struct {
	code int
	err  error
}

func (e *inProcessExit) Error() string { return fmt.Sprintf("exit status %d: %v", e.code, e.err) }
func (e *inProcessExit) Unwrap() error { return e.err }
func (e *inProcessExit) ExitCode() int { return e.code }

// exitCoder is a finished sigil run's exit code: *exec.ExitError for the
// binary, *inProcessExit in process.
type exitCoder interface{ ExitCode() int }

// initInProcess runs `sigil init` (args[0] is "init") in this process with
// the cheap KDF parameters sigil dev uses: the keystore wraps the CA keys
// with them, so the server unlocks them cheaply too. Argon2id at production
// cost is most of an in-process test's time otherwise; the keystore tests
// and the child-process tests keep covering it.
func initInProcess(t testing.TB, env []string, args ...string) (string, string, error) {
	t.Helper()
	if len(env) > 0 || len(args) == 0 || args[0] != "init" {
		t.Fatalf("initInProcess: env %q args %q: want sigil init with flags", env, args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := &initOptions{fastKDF: true}
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Name() == "init" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newInitCmd(o))
	return runCmd(ctx, root, args)
}

// startServeInProcess starts the server as `sigil serve` does (its flags,
// config loading and startServer) on fresh 127.0.0.1 ports, with extra
// flags if given, and shuts it down in t.Cleanup. Its log goes to p.stderr.
func startServeInProcess(t testing.TB, c *caDir, extra ...string) *serverProc {
	t.Helper()
	return startServeWithClock(t, c, nil, extra...)
}

// startServeWithClock is startServeInProcess with the server on clk (nil:
// the wall clock), for tests of what happens as time passes (expiry,
// schedules): they step clk instead of waiting. Start clk at the real time
// (clockwork.NewFakeClockAt(time.Now())) when TLS clients or openssl check
// what the server issues against the wall clock.
func startServeWithClock(t testing.TB, c *caDir, clk clockwork.Clock, extra ...string) *serverProc {
	t.Helper()
	if !isInProcess(t) {
		t.Fatal("startServeWithClock: the test must be marked inProcess")
	}
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)
	args := append([]string{"--config", c.config, "--passphrase-file", c.passphraseFile,
		"--https-addr", httpsAddr, "--http-addr", httpAddr}, extra...)
	o := &serveOptions{clock: clk}
	cmd := newServeCmd(o)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("sigil serve %q: %v", args, err)
	}
	p := &serverProc{stderr: &lockedBuffer{}}
	cmd.SetErr(p.stderr)
	cmd.SetContext(context.Background())
	s, err := o.start(cmd)
	if err != nil {
		t.Fatalf("sigil serve (in process): %v\n%s", err, p.stderr)
	}
	p.srv, p.httpsURL, p.httpURL = s, s.HTTPSURL(), s.HTTPURL()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stopInProcess shuts the in-process server down as SIGTERM would
// (idempotent).
func (p *serverProc) stopInProcess(t testing.TB) {
	if p.done != nil {
		return
	}
	p.done = make(chan error)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.shutdown(ctx); err != nil {
		t.Errorf("sigil serve (in process) shutdown: %v\n%s", err, p.stderr)
	}
}

// lockedBuffer is a bytes.Buffer the server's goroutines may log to while
// a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
