package reqlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/internal/httpstatus"
)

// maxLoggedValue bounds a reason value in the log: details can quote what
// the client sent.
const maxLoggedValue = 512

// Config is what one surface's middleware needs.
type Config struct {
	// Surface names the surface in every line ("v1", "acme", "ui").
	Surface string
	// Logger receives the lines; required.
	Logger *slog.Logger
	// Clock measures latency; required.
	Clock clockwork.Clock
	// IDHeader, if set, is the response header that carries the request
	// id (the /v1 API sends X-Request-Id).
	IDHeader string
}

// Entry is what the surface adds to its request's line. Its methods are
// safe on a nil Entry (a handler run without the middleware) and for
// concurrent use.
type Entry struct {
	id string

	mu     sync.Mutex
	actor  string
	reason []any
	err    error
}

type entryKey struct{}

// From returns the Entry of the request whose context is ctx, or nil.
func From(ctx context.Context) *Entry {
	e, _ := ctx.Value(entryKey{}).(*Entry)
	return e
}

// ID returns the request id of ctx's request, or "" outside the middleware.
func ID(ctx context.Context) string {
	if e := From(ctx); e != nil {
		return e.id
	}
	return ""
}

// SetActor names who made the request (a principal, an ACME account).
func (e *Entry) SetActor(actor string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.actor = actor
	e.mu.Unlock()
}

// Refused records why the request was refused, as key-value pairs the
// client may see (such as the problem type and detail it got); string
// values are cut to a bounded length.
func (e *Entry) Refused(attrs ...any) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, a := range attrs {
		if s, ok := a.(string); ok && i%2 == 1 && len(s) > maxLoggedValue {
			a = s[:maxLoggedValue] + "..."
		}
		e.reason = append(e.reason, a)
	}
}

// Fail records an internal failure: the line is logged at error level
// with err, which the client never sees.
func (e *Entry) Fail(err error) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

// Handler wraps h: it gives each request an id and an Entry, records the
// status h sends, and writes the request's line once h returns.
func Handler(cfg Config, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := cfg.Clock.Now()
		e := &Entry{id: newID()}
		r = r.WithContext(context.WithValue(r.Context(), entryKey{}, e))
		if cfg.IDHeader != "" {
			w.Header().Set(cfg.IDHeader, e.id)
		}
		sw := &httpstatus.Writer{ResponseWriter: w}
		h.ServeHTTP(sw, r)

		status := sw.Code()
		attrs := []any{"request_id", e.id, "surface", cfg.Surface, "method", r.Method, "path", r.URL.Path,
			"status", status, "latency_ms", float64(cfg.Clock.Since(start).Microseconds()) / 1000}
		e.mu.Lock()
		if e.actor != "" {
			attrs = append(attrs, "actor", e.actor)
		}
		if status >= 400 && status < 500 {
			attrs = append(attrs, e.reason...)
		}
		err := e.err
		e.mu.Unlock()
		if err != nil {
			cfg.Logger.ErrorContext(r.Context(), "request", append(attrs, "error", err.Error())...)
			return
		}
		cfg.Logger.InfoContext(r.Context(), "request", attrs...)
	})
}

// newID returns 16 hex digits from crypto/rand.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
