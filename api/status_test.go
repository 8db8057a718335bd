package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
)

// TestStatusTable pins the one ca.Kind -> HTTP status table: every kind has
// a status, and anything else is a 500.
func TestStatusTable(t *testing.T) {
	t.Parallel()
	want := map[ca.Kind]int{
		ca.Internal:     http.StatusInternalServerError,
		ca.NotFound:     http.StatusNotFound,
		ca.Malformed:    http.StatusBadRequest,
		ca.Unauthorized: http.StatusUnauthorized,
		ca.Forbidden:    http.StatusForbidden,
		ca.RateLimited:  http.StatusTooManyRequests,
		ca.BadCSR:       http.StatusBadRequest,
		ca.Rejected:     http.StatusForbidden,
		ca.Conflict:     http.StatusConflict,
		ca.Unavailable:  http.StatusServiceUnavailable,
		ca.TooLarge:     http.StatusRequestEntityTooLarge,
	}
	for k := ca.Internal; k <= ca.TooLarge; k++ {
		t.Run(k.String(), func(t *testing.T) {
			w, ok := want[k]
			if !ok {
				t.Fatalf("kind %d (%s) has no expected status in this test: add it", int(k), k)
			}
			if got := status(k); got != w {
				t.Errorf("status(%s) = %d, want %d", k, got, w)
			}
		})
	}
	// A kind added after TooLarge would have a name; make it fail here.
	if name := (ca.TooLarge + 1).String(); !strings.HasPrefix(name, "kind(") {
		t.Errorf("ca.Kind %q follows TooLarge: give it a status in status() and in this test", name)
	}
	for _, k := range []ca.Kind{ca.TooLarge + 1, ca.Kind(99), ca.Kind(-1)} {
		if got := status(k); got != http.StatusInternalServerError {
			t.Errorf("status(%s) = %d, want 500", k, got)
		}
	}
}

// stubAuthority satisfies Authority; the routes exercised here never call it.
type stubAuthority struct{ Authority }

// stubAccess satisfies Access; the routes exercised here never call it.
type stubAccess struct{ Access }

// lockedBuffer is a log sink safe for concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newStubAPI(t *testing.T) (*API, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	a, err := New(Config{
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Clock:  testclock.New(),
	}, stubAuthority{}, stubAccess{})
	if err != nil {
		t.Fatal(err)
	}
	return a, logs
}

// serveError runs err through the adapter and returns the recorded response
// and its decoded body.
func serveError(t *testing.T, a *API, err error) (*httptest.ResponseRecorder, ErrorResponse) {
	t.Helper()
	h := a.adapt(func(http.ResponseWriter, *http.Request, ca.Principal) error { return err }, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/anything", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	var body ErrorResponse
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	return rec, body
}

func TestAdapterRendersEveryKind(t *testing.T) {
	t.Parallel()
	a, logs := newStubAPI(t)
	for k := ca.NotFound; k <= ca.TooLarge; k++ {
		t.Run(k.String(), func(t *testing.T) {
			detail := "detail for " + k.String()
			rec, body := serveError(t, a, &ca.Error{Kind: k, Detail: detail, Err: errors.New("hidden cause")})
			if rec.Code != status(k) {
				t.Errorf("status = %d, want %d", rec.Code, status(k))
			}
			if body.Error != k.String() {
				t.Errorf("error = %q, want %q", body.Error, k.String())
			}
			if body.Detail != detail {
				t.Errorf("detail = %q, want %q", body.Detail, detail)
			}
			if strings.Contains(rec.Body.String(), "hidden cause") {
				t.Errorf("response leaks the wrapped cause: %s", rec.Body.String())
			}
		})
	}

	t.Run("wrapped", func(t *testing.T) {
		rec, body := serveError(t, a, fmt.Errorf("sign leaf: %w", &ca.Error{Kind: ca.Conflict, Detail: "already"}))
		if rec.Code != http.StatusConflict || body.Error != "conflict" || body.Detail != "already" {
			t.Errorf("got %d %+v, want 409 conflict/already", rec.Code, body)
		}
	})

	t.Run("subproblems", func(t *testing.T) {
		rec, body := serveError(t, a, &ca.Error{Kind: ca.Rejected, Detail: "names refused", Sub: []ca.SubError{
			{Identifier: "a.example", Kind: ca.Rejected, Detail: "no a"},
			{Identifier: "b.example", Kind: ca.Rejected, Detail: "no b"},
		}})
		if rec.Code != http.StatusForbidden {
			t.Errorf("status = %d, want 403", rec.Code)
		}
		want := []Subproblem{
			{Identifier: "a.example", Error: "rejected", Detail: "no a"},
			{Identifier: "b.example", Error: "rejected", Detail: "no b"},
		}
		if len(body.Subproblems) != len(want) {
			t.Fatalf("subproblems = %+v, want %+v", body.Subproblems, want)
		}
		for i := range want {
			if body.Subproblems[i] != want[i] {
				t.Errorf("subproblem %d = %+v, want %+v", i, body.Subproblems[i], want[i])
			}
		}
	})

	t.Run("retry-after", func(t *testing.T) {
		rec, body := serveError(t, a, &ca.Error{Kind: ca.RateLimited, Detail: "slow down", RetryAfter: 90 * time.Second})
		if rec.Code != http.StatusTooManyRequests || body.Error != "rate_limited" {
			t.Errorf("got %d %+v, want 429 rate_limited", rec.Code, body)
		}
		if got := rec.Header().Get("Retry-After"); got != "90" {
			t.Errorf("Retry-After = %q, want 90", got)
		}
	})

	// Internal detail is logged, never sent: an untyped error, and a typed
	// Internal one whose Detail is meant for operators.
	for _, tc := range []struct {
		name   string
		err    error
		secret string
	}{
		{"untyped", errors.New("database exploded at /var/lib/sigil/sigil.db"), "database exploded"},
		{"typed internal", &ca.Error{Kind: ca.Internal, Detail: "store broke: disk full", Err: errors.New("ENOSPC")}, "disk full"},
		{"wrapped untyped", fmt.Errorf("record certificate: %w", errors.New("constraint failed: serial")), "constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, body := serveError(t, a, tc.err)
			if rec.Code != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500", rec.Code)
			}
			if body.Error != "internal" {
				t.Errorf("error = %q, want internal", body.Error)
			}
			id := rec.Header().Get("X-Request-Id")
			if want := "internal error (request " + id + ")"; body.Detail != want {
				t.Errorf("detail = %q, want %q", body.Detail, want)
			}
			if strings.Contains(rec.Body.String(), tc.secret) {
				t.Errorf("response leaks internal error text: %s", rec.Body.String())
			}
			if len(body.Subproblems) != 0 {
				t.Errorf("internal error has subproblems: %+v", body.Subproblems)
			}
			// The operator still gets the cause, tied to the request id.
			var found bool
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, id) && strings.Contains(line, tc.secret) && strings.Contains(line, `"level":"ERROR"`) {
					found = true
				}
			}
			if !found {
				t.Errorf("no ERROR log line with request id %s and %q:\n%s", id, tc.secret, logs.String())
			}
		})
	}
}
