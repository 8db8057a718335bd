// Package testkms runs a real local-kms (an implementation of the AWS KMS API,
// github.com/nsmithuk/local-kms) for one test: its own data directory, a port
// chosen by the kernel, stopped when the test ends.
//
// Where local-kms is not installed the test is skipped with a message saying
// how to install it, unless SIGIL_REQUIRE_KMS=1 (set by .ci/run), where it
// fails instead.
package testkms

import (
	"bufio"
	"context"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv names the variable that turns a missing local-kms into a failure.
const RequireEnv = "SIGIL_REQUIRE_KMS"

// Install is the command that installs the version the tests are written for.
const Install = "go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"

// Region is the region local-kms is started with; it is part of every ARN.
const Region = "eu-west-2"

// The dummy credentials the SDK signs with; local-kms does not check them.
// They are plainly not real AWS credentials.
const (
	AccessKeyID     = "sigil-test-access-key"
	SecretAccessKey = "sigil-test-secret-not-real"
)

// started is local-kms's log line once it listens (it binds PORT=0 to a free
// port and reports which).
var started = regexp.MustCompile(`Local KMS started on [0-9.]+:([0-9]+)`)

// startWait bounds how long a start may take: this is a wall-clock bound on a
// child process, not a test of time-dependent behaviour.
const startWait = 30 * time.Second

// Server is a running local-kms.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // data directory
	cmd      *exec.Cmd
	once     sync.Once
	done     chan struct{}
}

// Binary returns the path of local-kms, skipping (or failing under
// SIGIL_REQUIRE_KMS=1) when it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("local-kms"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "local-kms")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "local-kms is not installed (" + Install + "): AWS KMS tests skipped"
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 but %s", RequireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

// Start runs local-kms until the test ends and returns once it answers.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, t.TempDir(), "0")
}

// Restart starts a stopped server again on the same port with the same
// data, as a KMS coming back after an outage; the old one must be stopped.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	select {
	case <-s.done:
	default:
		t.Fatal("testkms: Restart of a server still running")
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(s.Endpoint, "http://"), ":")
	n := start(t, s.Dir, port)
	if n.Endpoint != s.Endpoint {
		t.Fatalf("testkms: restarted on %s, not %s", n.Endpoint, s.Endpoint)
	}
	return n
}

func start(t testing.TB, dir, listen string) *Server {
	t.Helper()
	bin := Binary(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT="+listen,
		"KMS_REGION="+Region,
		"KMS_DATA_PATH="+filepath.Join(dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"),
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start local-kms: %v", err)
	}
	s := &Server{Dir: dir, cmd: cmd, done: make(chan struct{})}
	t.Cleanup(s.Stop)

	port := make(chan string, 1)
	var logMu sync.Mutex
	var logBuf strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logBuf.WriteString(line + "\n")
			logMu.Unlock()
			if m := started.FindStringSubmatch(line); m != nil {
				select {
				case port <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()

	select {
	case p := <-port:
		s.Endpoint = "http://127.0.0.1:" + p
	case <-s.done:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("local-kms exited before listening:\n%s", logBuf.String())
	case <-time.After(startWait):
		t.Fatalf("local-kms did not report its port within %s", startWait)
	}
	if err := s.waitAnswer(); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitAnswer calls ListKeys until local-kms answers it.
func (s *Server) waitAnswer() error {
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint, strings.NewReader("{}"))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("ListKeys: %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("local-kms at %s does not answer: %v", s.Endpoint, last)
}

// Stop ends local-kms and waits for it to exit; later calls do nothing.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// ConfigFile writes an AWS shared config file whose profile "sigil-test"
// points the SDK at this server with the dummy credentials, and returns its
// path: the awskms URI takes it as credentials-file and the profile by name.
func (s *Server) ConfigFile(t testing.TB) string {
	t.Helper()
	return WriteConfig(t, s.Endpoint)
}

// Profile is the profile ConfigFile writes.
const Profile = "sigil-test"

// WriteConfig writes an AWS shared config file for endpoint, which need not
// answer (tests of an unreachable KMS use a closed port).
func WriteConfig(t testing.TB, endpoint string) string {
	t.Helper()
	body := fmt.Sprintf("[profile %s]\nregion = %s\nendpoint_url = %s\naws_access_key_id = %s\naws_secret_access_key = %s\nmax_attempts = 1\n",
		Profile, Region, endpoint, AccessKeyID, SecretAccessKey)
	p := filepath.Join(t.TempDir(), "aws-config")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
