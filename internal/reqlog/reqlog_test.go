package reqlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"
)

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

func TestHandler(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 2*maxLoggedValue)
	tests := []struct {
		name     string
		idHeader string
		h        http.HandlerFunc
		want     []string // substrings of the one line
		notWant  []string
	}{
		{
			name:     "created, with actor and id header",
			idHeader: "X-Request-Id",
			h: func(w http.ResponseWriter, r *http.Request) {
				From(r.Context()).SetActor("token:ab")
				w.WriteHeader(http.StatusCreated)
			},
			want:    []string{"level=INFO", "msg=request", "surface=test", "method=POST", "path=/x", "status=201", "latency_ms=1500", "actor=token:ab"},
			notWant: []string{"reason="},
		},
		{
			name: "refused: the reason is logged, bounded",
			h: func(w http.ResponseWriter, r *http.Request) {
				From(r.Context()).Refused("reason", "not_found", "detail", long)
				w.WriteHeader(http.StatusNotFound)
			},
			want:    []string{"status=404", "reason=not_found", "detail=" + long[:maxLoggedValue] + "..."},
			notWant: []string{long},
		},
		{
			name: "a reason given for a success is not logged",
			h: func(w http.ResponseWriter, r *http.Request) {
				From(r.Context()).Refused("reason", "stale")
				_, _ = w.Write([]byte("ok"))
			},
			want:    []string{"status=200"},
			notWant: []string{"reason="},
		},
		{
			name: "internal failure: an error line with the cause",
			h: func(w http.ResponseWriter, r *http.Request) {
				From(r.Context()).Fail(errors.New("disk on fire"))
				w.WriteHeader(http.StatusInternalServerError)
			},
			want: []string{"level=ERROR", "status=500", `error="disk on fire"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf lockedBuffer
			clk := testclock.New()
			var seenID string
			h := Handler(Config{Surface: "test", Logger: slog.New(slog.NewTextHandler(&buf, nil)), Clock: clk, IDHeader: tt.idHeader},
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					seenID = ID(r.Context())
					clk.Advance(1500 * time.Millisecond)
					tt.h(w, r)
				}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/x", nil))
			line := strings.TrimSpace(buf.String())
			if strings.Count(line, "\n") != 0 || line == "" {
				t.Fatalf("log %q, want one line", line)
			}
			if len(seenID) != 16 || !strings.Contains(line, "request_id="+seenID) {
				t.Errorf("request id %q not in %q", seenID, line)
			}
			if got := rec.Header().Get("X-Request-Id"); (tt.idHeader != "") != (got == seenID) {
				t.Errorf("X-Request-Id = %q (id %q, header configured: %v)", got, seenID, tt.idHeader != "")
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q lacks %q", line, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(line, w) {
					t.Errorf("line %q has %q", line, w)
				}
			}
		})
	}
}

// TestNilEntry: a handler run without the middleware may call the Entry
// methods freely.
func TestNilEntry(t *testing.T) {
	t.Parallel()
	e := From(context.Background())
	if e != nil || ID(context.Background()) != "" {
		t.Fatalf("From = %v, ID = %q outside the middleware", e, ID(context.Background()))
	}
	e.SetActor("x")
	e.Refused("reason", "y")
	e.Fail(errors.New("z"))
}
