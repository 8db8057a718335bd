package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/reqlog"
	"github.com/sigil-ca/sigil/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Authority is the history the page shows, as it reads it in ca
// (*ca.Authority implements it).
type Authority interface {
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
	CertificateSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error)
	AuditEvents(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error)
}

// Access is the gate the page calls in ca (ca.Access, from
// ca.Authority.Access, implements it): who logs in and whether their
// token still holds, the token records a certificate page names, and the
// audit record of reads, sessions and refusals.
type Access interface {
	Authenticate(ctx context.Context, token string) (ca.Principal, error)
	TokenPrincipal(ctx context.Context, id string) (ca.Principal, error)
	Tokens(ctx context.Context) ([]store.TokenRecord, error)
	RecordRead(ctx context.Context, actor, method, path, query string) error
	RecordAccessRefusal(ctx context.Context, actor, method, path string, err error)
	RecordSession(ctx context.Context, action, actor, remote string, err error)
	RecordUnauthenticatedRefusal(ctx context.Context, r ca.UnauthenticatedRefusal)
}

// Issuers lists the CA's issuer certificates, to show a certificate's
// chain; *store.SQLite implements it.
type Issuers interface {
	Issuers(ctx context.Context) ([]store.IssuerRecord, error)
}

// Jobs is the scheduler status that /v1/jobs shows, for the dashboard.
type Jobs interface {
	JobStatus(ctx context.Context) ([]wire.JobStatus, error)
}

// CertExporter streams certificates as CSV or NDJSON, as
// GET /v1/certificates/export does (issue 8, part 2). It is an extension
// point: with Config.Export nil the page shows no export buttons.
type CertExporter interface {
	// ExportCertificates writes every certificate f selects (f.Limit is
	// zero and f.After the zero cursor) to w in format "csv" or "ndjson", in constant
	// memory. It must not write before it knows the query is valid: an
	// error before the first byte is shown to the user, one after it can
	// only cut the download short.
	ExportCertificates(ctx context.Context, w io.Writer, f store.CertFilter, format string) error
}

// TransparencyLog is the Merkle log of issued certificates (issue 8, part
// 3). It is an extension point: with Config.Log nil the detail page shows no
// inclusion proof status and the verify page no log verification.
type TransparencyLog interface {
	// InclusionStatus proves that the certificate with serial is in the
	// current signed tree head and verifies the proof.
	InclusionStatus(ctx context.Context, serial string) (LogInclusion, error)
	// VerifyLog checks the log as it stands: the latest signed tree head's
	// signature and that its root matches the stored leaves.
	VerifyLog(ctx context.Context) (LogVerification, error)
}

// LogInclusion is a certificate's place in the transparency log.
type LogInclusion struct {
	Included  bool   // a leaf for the certificate exists
	Verified  bool   // its inclusion proof verifies against the tree head
	LeafIndex int64  // meaningful when Included
	TreeSize  int64  // the tree head the proof is against
	RootHash  string // hex
	Detail    string // why not included or not verified
}

// LogVerification is the state of the transparency log.
type LogVerification struct {
	OK       bool
	TreeSize int64
	RootHash string // hex
	SignedAt time.Time
	Detail   string // what failed, when not OK
}

// Config configures the page.
type Config struct {
	Logger *slog.Logger
	Clock  clockwork.Clock
	// Issuers lists issuer certificates for chains (required).
	Issuers Issuers
	// VerifyAudit checks the whole audit chain, as `sigil audit verify`
	// does (required).
	VerifyAudit func(ctx context.Context) (ca.AuditReport, error)
	// Jobs, if set, shows job health on the dashboard.
	Jobs Jobs
	// Export, if set, offers CSV and NDJSON export of search results.
	Export CertExporter
	// Log, if set, shows transparency log status.
	Log TransparencyLog

	// SessionIdle ends a session unused this long (default 30m);
	// SessionMax ends any session this long after login (default 8h).
	SessionIdle, SessionMax time.Duration
	// MaxSessions bounds the sessions held in memory (default 1000); a
	// login beyond it is refused until one expires or logs out.
	MaxSessions int
	// LoginFailures is how many failed logins a client address may make
	// per minute (default 5); ten times as many are allowed from all
	// addresses together, so that token guessing stays slow.
	LoginFailures int
	// VerifyInterval is how long a verification of the audit chain is
	// shown before the next page view runs it again (default 10s): the
	// check reads the whole log, so concurrent views share one run.
	VerifyInterval time.Duration
}

// UI is the /ui/ handler.
type UI struct {
	a        Authority
	access   Access
	cfg      Config
	log      *slog.Logger
	clk      clockwork.Clock
	pages    map[string]*template.Template
	sessions *sessions
	limiter  *limiter
	verifier *verifier
}

// New checks cfg and parses the templates; the page reads the history
// through a and admits its users through access.
func New(cfg Config, a Authority, access Access) (*UI, error) {
	if a == nil || access == nil || cfg.Logger == nil || cfg.Clock == nil || cfg.Issuers == nil || cfg.VerifyAudit == nil {
		return nil, errors.New("ui: authority, access, logger, clock, issuers and audit verification are required")
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = 8 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = 5
	}
	if cfg.VerifyInterval <= 0 {
		cfg.VerifyInterval = 10 * time.Second
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	return &UI{
		a: a, access: access, cfg: cfg, log: cfg.Logger, clk: cfg.Clock, pages: pages,
		sessions: newSessions(cfg.Clock, cfg.SessionIdle, cfg.SessionMax, cfg.MaxSessions),
		limiter:  newLimiter(cfg.Clock, time.Minute, cfg.LoginFailures, 10*cfg.LoginFailures),
		verifier: &verifier{clk: cfg.Clock, every: cfg.VerifyInterval, run: cfg.VerifyAudit},
	}, nil
}

// Route is one /ui/ endpoint.
type Route struct {
	// Pattern is the http.ServeMux pattern, method included.
	Pattern string
	// Public routes answer without a session: the login form, login
	// itself and the stylesheet. Every other route requires one.
	Public bool
}

type pageFunc func(w http.ResponseWriter, r *http.Request, s session) error

type route struct {
	Route
	h       pageFunc // authenticated pages
	handler http.HandlerFunc
}

// Routes lists every endpoint Handler serves with this configuration.
// Requests matching none of them are answered by a catch-all: 404 for GET,
// and 403 for every other method, since the page changes nothing.
func (u *UI) Routes() []Route {
	var out []Route
	for _, rt := range u.routes() {
		out = append(out, rt.Route)
	}
	return out
}

func (u *UI) routes() []route {
	page := func(pattern string, h pageFunc) route { return route{Route: Route{Pattern: pattern}, h: h} }
	public := func(pattern string, h http.HandlerFunc) route {
		return route{Route: Route{Pattern: pattern, Public: true}, handler: h}
	}
	out := []route{
		public("GET /ui/static/{file}", u.static),
		public("GET /ui/login", u.loginForm),
		public("POST /ui/login", u.login),
		page("POST /ui/logout", u.logout),
		page("GET /ui/{$}", u.dashboard),
		page("GET /ui/certificates", u.certificates),
		page("GET /ui/certificates/{serial}", u.certificate),
		page("GET /ui/certificates/{serial}/pem", u.certificatePEM),
		page("GET /ui/audit", u.auditLog),
		page("GET /ui/verify", u.verify),
	}
	if u.cfg.Export != nil {
		out = append(out, page("GET /ui/export/certificates", u.exportCertificates))
	}
	return out
}

// Handler returns the /ui/ routes.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range u.routes() {
		if rt.Public {
			mux.Handle(rt.Pattern, u.wrap(rt.handler))
			continue
		}
		mux.Handle(rt.Pattern, u.wrap(u.authenticated(rt.h)))
	}
	mux.Handle("/ui/", u.wrap(u.fallback))
	return mux
}

// wrap sets the security headers every response carries and bounds the
// body, in the request-log middleware. Pages are documents without scripts:
// the policy allows only our own stylesheet, images inline in data: URLs,
// and forms posting back to us; nothing may frame them.
func (u *UI) wrap(h http.HandlerFunc) http.Handler {
	log := reqlog.Config{Surface: "ui", Logger: u.log, Clock: u.clk}
	return reqlog.Handler(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "+
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hdr.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, which sameOrigin must refuse.
		hdr.Set("Referrer-Policy", "same-origin")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
		hdr.Set("Cache-Control", "no-store")
		// Only login and logout read a body, and both are small forms.
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		h(w, r)
	}))
}

// authenticated requires a live session, re-checks its token, audits the
// view and runs h. Without a session a GET is sent to the login form and
// anything else refused.
func (u *UI) authenticated(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		s, err := u.session(ctx, r)
		if err != nil {
			if ca.KindOf(err) == ca.Internal {
				u.renderError(w, r, nil, err)
				return
			}
			u.clearSessionCookie(w)
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			u.renderError(w, r, nil, &ca.Error{Kind: ca.Forbidden, Detail: "no session: log in first"})
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// Who looked at what, recorded before it is shown.
			if err := u.access.RecordRead(ctx, s.actor(), r.Method, r.URL.Path, r.URL.RawQuery); err != nil {
				u.renderError(w, r, &s, err)
				return
			}
		}
		if err := h(w, r, s); err != nil {
			u.renderError(w, r, &s, err)
		}
	}
}

// fallback answers what no route matches: the page changes nothing, so
// every method but GET is refused, and audited when a session makes it.
func (u *UI) fallback(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s, err := u.session(r.Context(), r)
		var sp *session
		if err == nil {
			sp = &s
		}
		u.renderError(w, r, sp, &ca.Error{Kind: ca.NotFound, Detail: "no such page"})
		return
	}
	err := &ca.Error{Kind: ca.Forbidden, Detail: fmt.Sprintf("the auditor web page is read-only: %s %s changes nothing here", r.Method, r.URL.Path)}
	var sp *session
	if s, serr := u.session(r.Context(), r); serr == nil {
		sp = &s
		u.access.RecordAccessRefusal(r.Context(), s.actor(), r.Method, r.URL.Path, err)
	}
	u.renderError(w, r, sp, err)
}

func (u *UI) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := fs.ReadFile(assets, "static/"+name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(name, ".css") {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	// Public and identical for everyone: the one response that may be cached.
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(data)
}

// view is what every template receives.
type view struct {
	Title   string
	Session *session
	Nav     string // the section highlighted in the navigation
	Data    any
}

// render executes page into a buffer first, so that a template error is a
// clean 500 rather than half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := u.pages[name]
	if !ok {
		u.log.ErrorContext(r.Context(), "ui: no template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.ErrorContext(r.Context(), "ui: render", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorView struct {
	Status  int
	Kind    string
	Message string
}

// renderError shows err as a page. Internal detail is logged with a
// request reference, never shown.
func (u *UI) renderError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	ev := errorView{Kind: "internal", Message: "internal error"}
	ce, ok := ca.AsError(err)
	if ok && ce.Kind != ca.Internal {
		ev.Kind, ev.Message = ce.Kind.String(), ce.Detail
		reqlog.From(r.Context()).Refused("reason", ev.Kind, "detail", ev.Message)
	} else {
		// The reference is the request id: the request's log line, at
		// error level, carries the cause under it.
		ref := reqlog.ID(r.Context())
		if ref == "" {
			ref = newRef()
			u.log.ErrorContext(r.Context(), "ui: internal error", "path", r.URL.Path, "ref", ref, "error", err)
		}
		reqlog.From(r.Context()).Fail(err)
		ev.Message = "internal error (reference " + ref + ")"
	}
	ev.Status = wire.Status(ca.KindOf(err))
	if ev.Status == http.StatusTooManyRequests && ce != nil && ce.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(ce.RetryAfter.Seconds()+0.5)))
	}
	u.render(w, r, ev.Status, "error", view{Title: http.StatusText(ev.Status), Session: s, Data: ev})
}

func newRef() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// clientAddr is the connection's remote address, without the port. Headers
// such as X-Forwarded-For are not trusted: the listener faces clients.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
