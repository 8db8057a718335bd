package acme

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	xacme "golang.org/x/crypto/acme"
)

// lockedBuffer is a bytes.Buffer the server's goroutines may write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// TestRequestLogWireStatusAndProblem (issue 15 item 10): the request log
// line carries the status sent on the wire (201 for a new account) and,
// for a refusal, the problem type and detail the client got.
func TestRequestLogWireStatusAndProblem(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	ts := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatalf("Register: %v", err)
	}
	lines := buf.lines("path=" + ts.acme.Prefix() + "/new-account")
	if len(lines) != 1 || !strings.Contains(lines[0], "status=201") {
		t.Fatalf("new-account log lines %q, want one with status=201", lines)
	}
	if strings.Contains(lines[0], "problem_type") {
		t.Errorf("a success logged a problem: %s", lines[0])
	}

	// A refused request: an unsigned body to new-order.
	resp, err := ts.srv.Client().Post(ts.srv.URL+ts.acme.Prefix()+"/new-order", "application/jose+json", strings.NewReader(`{"protected":"e30","payload":"","signature":""}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("new-order with a bad JWS: %d %s", resp.StatusCode, body)
	}
	lines = buf.lines("path=" + ts.acme.Prefix() + "/new-order")
	if len(lines) != 1 {
		t.Fatalf("new-order log lines %q, want one", lines)
	}
	for _, want := range []string{"status=400", "problem_type=" + TypeMalformed, "problem_detail="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("refusal logged as %q, want it to contain %q", lines[0], want)
		}
	}

	// A 404 whose status the problem leaves at its type's default.
	resp, err = ts.srv.Client().Get(ts.srv.URL + ts.acme.Prefix() + "/renewal-info/nonsense")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lines = buf.lines("path=" + ts.acme.Prefix() + "/renewal-info/nonsense")
	if len(lines) != 1 || !strings.Contains(lines[0], "status="+strconv.Itoa(resp.StatusCode)) || !strings.Contains(lines[0], "problem_type=") {
		t.Errorf("renewal-info refusal (wire %d) logged as %q", resp.StatusCode, lines)
	}
}
