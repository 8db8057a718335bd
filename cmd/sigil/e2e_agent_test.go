package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// e2eShortProfile adds a profile of one-minute certificates to sigil.yaml,
// for watching renewals happen in real time.
func e2eShortProfile(t testing.TB, c *caDir) {
	t.Helper()
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	const short = "profiles:\n  short:\n    key_usage: [digital_signature]\n    ext_key_usage: [server_auth]\n    max_validity: 1m\n"
	text := strings.Replace(string(cfg), "profiles:\n", short, 1)
	if text == string(cfg) {
		t.Fatalf("sigil.yaml has no profiles section:\n%s", cfg)
	}
	if err := os.WriteFile(c.config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2EAgent runs `sigil agent` next to `sigil serve` with one-minute
// certificates (two minutes of lifetime with the backdate; --renew-at 0.55
// renews six seconds after each issuance) until it has renewed three times,
// while a reader loads the pair in a tight loop, as a server would.
func TestE2EAgent(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	e2eShortProfile(t, c)
	p := startServe(t, c)
	dir := t.TempDir()
	certFile, keyFile, hook := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "hook.log")
	e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--profile", "short", "--san", "localhost", "--key-out", keyFile, "--out", certFile)...)
	first, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	var loads, failures atomic.Int64
	var mu sync.Mutex
	var firstFailure error
	stopReader := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
				failures.Add(1)
				mu.Lock()
				if firstFailure == nil {
					firstFailure = err
				}
				mu.Unlock()
				continue
			}
			loads.Add(1)
		}
	}()

	agent := exec.Command(sigilBinary(t), "agent", "--server", p.httpsURL, "--ca-file", c.root, "--cert", certFile, "--key", keyFile,
		"--renew-at", "0.55", "--ari=false", "--exec", `echo "$SIGIL_SERIAL" >> `+hook)
	var agentErr bytes.Buffer
	agent.Stderr = &agentErr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	deadline := time.Now().Add(50 * time.Second)
	var serials []string
	for len(serials) < 3 {
		if data, err := os.ReadFile(hook); err == nil {
			serials = strings.Fields(string(data))
		}
		select {
		case err := <-exited:
			t.Fatalf("sigil agent exited: %v\n%s", err, agentErr.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = agent.Process.Kill()
			t.Fatalf("%d renewals after 50s, want 3\n%s", len(serials), agentErr.String())
		}
		time.Sleep(200 * time.Millisecond) // polling a child process, not timing behaviour
	}
	_ = agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sigil agent after SIGTERM: %v\n%s", err, agentErr.String())
		}
	case <-time.After(20 * time.Second):
		_ = agent.Process.Kill()
		t.Fatal("sigil agent did not stop on SIGTERM")
	}
	close(stopReader)
	wg.Wait()

	if failures.Load() > 0 || loads.Load() == 0 {
		t.Errorf("reader: %d loads, %d failures (first: %v)", loads.Load(), failures.Load(), firstFailure)
	}
	t.Logf("reader: %d loads of the pair during %d renewals, none mismatched or torn", loads.Load(), len(serials))
	// Each hook run names the certificate on disk after a renewal, and each
	// renewal replaces the one before, with the same key.
	prev := e2eSerial(first.Leaf)
	for _, s := range serials {
		certs := e2eListCerts(t, p, c, "--serial", s)
		if len(certs) != 1 || certs[0].Replaces != prev || certs[0].Channel != "renew" || certs[0].Profile != "short" {
			t.Fatalf("certificate %s: %+v, want a renewal (channel renew, profile short) replacing %s", s, certs, prev)
		}
		prev = s
	}
	last, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := e2eSerial(last.Leaf); got != serials[len(serials)-1] && !strings.Contains(agentErr.String(), got) {
		t.Errorf("on disk: %s, not a renewal the agent made", got)
	}
	if !e2eSamePublicKey(first.Leaf.PublicKey, last.Leaf.PublicKey) {
		t.Error("the key changed; renewal over mTLS keeps it")
	}
	e2eVerifyChain(t, c, e2eParseChain(t, mustRead(t, certFile)), "localhost", x509.ExtKeyUsageServerAuth)
	for path, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, info.Mode().Perm(), err, want)
		}
	}
	for _, want := range []string{"msg=waiting", "next_check=", `msg="certificate renewed"`, `msg="exec hook ran"`} {
		if !strings.Contains(agentErr.String(), want) {
			t.Errorf("agent log has no %s:\n%s", want, agentErr.String())
		}
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestE2EAgentOnce: `sigil agent --once` against `sigil serve`, asking the
// ACME renewal information (RFC 9773) when to renew, and the refusals of
// POST /v1/renew as a client sees them.
func TestE2EAgentOnce(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "app.key")
	e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--profile", "tls-server", "--san", "app.localhost", "--key-out", keyFile, "--out", certFile)...)
	agentArgs := []string{"agent", "--server", p.httpsURL, "--ca-file", c.root, "--cert", certFile, "--key", keyFile, "--once"}

	// Fresh: not due in the server's window; nothing written.
	before := mustRead(t, certFile)
	_, errOut := e2eRun(t, agentArgs...)
	if !strings.Contains(errOut, `msg="certificate not due for renewal"`) || !strings.Contains(errOut, "source=ari") {
		t.Errorf("agent --once on a fresh certificate:\n%s", errOut)
	}
	if !bytes.Equal(mustRead(t, certFile), before) {
		t.Error("agent --once renewed a certificate that was not due")
	}

	// Forced: renewed, with a new key when asked.
	e2eRun(t, append(agentArgs, "--force", "--rekey")...)
	renewed := e2eParseChain(t, mustRead(t, certFile))
	rec := e2eListCerts(t, p, c, "--serial", e2eSerial(renewed[0]))
	if len(rec) != 1 || rec[0].Replaces != e2eSerial(e2eParseChain(t, before)[0]) || rec[0].Channel != "renew" {
		t.Errorf("renewed record %+v", rec)
	}
	if e2eSamePublicKey(renewed[0].PublicKey, e2eParseChain(t, before)[0].PublicKey) {
		t.Error("--rekey kept the key")
	}
	e2eVerifyChain(t, c, renewed, "app.localhost", x509.ExtKeyUsageServerAuth)

	// Revoked: refused, non-zero, files untouched.
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(renewed[0]), "--reason", "superseded")...)
	snap := e2eSnapshotDir(t, dir)
	_, errOut, err := runSigil(t, nil, append(agentArgs, "--force")...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("agent --once with a revoked certificate: %v, want a non-zero exit\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "sigil: ") || !strings.Contains(last, "was revoked (superseded)") {
		t.Errorf("last stderr line %q, want the server's refusal", last)
	}
	if after := e2eSnapshotDir(t, dir); len(after) != len(snap) {
		t.Error("a refused renewal added or removed files")
	} else {
		for k, v := range snap {
			if after[k] != v {
				t.Errorf("a refused renewal changed %s", k)
			}
		}
	}

	// Without a client certificate: a JSON refusal, counted but not
	// audited one by one (issue 15: anonymous traffic must not grow the
	// audit log).
	unauthBefore := e2eMetricSum(t, c.httpClient(t), p, "sigil_unauthenticated_refusals_total")
	resp, err := c.httpClient(t).Post(p.httpsURL+"/v1/renew", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var apiErr struct{ Error, Detail string }
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &apiErr) != nil || apiErr.Error != "unauthorized" {
		t.Errorf("POST /v1/renew without a certificate: %d %s", resp.StatusCode, body)
	}
	var refusals []string
	for _, ev := range e2eListAudit(t, p, c, "--action", "request.refused") {
		if ev.Detail["request"] == "renew" {
			refusals = append(refusals, ev.Actor+" "+ev.Detail["reason"])
		}
	}
	if want := "token:"; len(refusals) != 1 || !strings.HasPrefix(refusals[0], want) {
		t.Errorf("renew refusals audited: %q, want only the revoked one (by its requester)", refusals)
	}
	if n := e2eMetricSum(t, c.httpClient(t), p, "sigil_unauthenticated_refusals_total") - unauthBefore; n != 1 {
		t.Errorf("sigil_unauthenticated_refusals_total grew by %v after the anonymous renewal, want 1", n)
	}
}
