package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/store"
)

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
	st, err := store.OpenReadOnly(ctx, c.sqlite(t))
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
	cmd := exec.Command(sigilBinary(t), "dev", "--data", data, "--https-addr", httpsAddr, "--http-addr", httpAddr)
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
	if code, body := get(p.httpsURL + "/healthz"); code != http.StatusOK || !strings.Contains(body, `"role":"embedded"`) {
		t.Errorf("/healthz: %d %s, want 200 with the SQLite store's role", code, body)
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
