package ui_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/ui"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is an initialized CA on a fresh SQLite file with the web page served
// on a real TLS listener (Secure, __Host- cookies need HTTPS).
type env struct {
	srv   *httptest.Server
	ui    *ui.UI
	auth  *ca.Authority
	st    *store.SQLite
	clk   *clockwork.FakeClock
	admin string
	logs  *syncBuffer
}

type fakeJobs struct{}

func (fakeJobs) JobStatus(context.Context) ([]wire.JobStatus, error) {
	return []wire.JobStatus{{Name: "crl-publish", Schedule: "every 1h", Enabled: true,
		LastRun: &wire.JobRun{ID: 1, Trigger: "schedule", Result: "ok", Items: 2}}}, nil
}

func newEnv(t *testing.T, configure func(*ui.Config)) *env {
	t.Helper()
	ctx := context.Background()
	clk := testclock.New()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tc := testca.New(t, testca.Options{Name: "UI Test CA", Clock: clk, Config: func(cfg *ca.Config) { cfg.Logger = logger }})
	st, auth, res := tc.Store, tc.Authority, tc.Init
	if err := st.Checkpoint(ctx); err != nil { // as sigil serve does at start
		t.Fatal(err)
	}
	root := res.Root
	cfg := ui.Config{Logger: logger, Clock: clk, Issuers: st, Jobs: fakeJobs{},
		VerifyAudit: func(ctx context.Context) (ca.AuditReport, error) { return ca.VerifyAudit(ctx, st, root) }}
	if configure != nil {
		configure(&cfg)
	}
	u, err := ui.New(cfg, auth, auth.Access())
	if err != nil {
		t.Fatalf("ui.New: %v", err)
	}
	srv := httptest.NewTLSServer(u.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, ui: u, auth: auth, st: st, clk: clk, admin: res.AdminToken, logs: logs}
}

func (e *env) token(t *testing.T, role string, ttl time.Duration, profiles ...string) string {
	t.Helper()
	tok, _, err := e.auth.Access().CreateToken(context.Background(), "test", role, profiles, ttl, "ui test "+role)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tokenID(tok string) string {
	id, _ := ca.TokenID(tok)
	return id
}

func (e *env) issue(t *testing.T, sans ...string) store.CertRecord {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: sans[0]}, DNSNames: sans}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := e.auth.Sign(context.Background(), ca.SignRequest{CSR: csr, Profile: "tls-server", Requester: "token:" + tokenID(e.admin), Channel: ca.ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	return iss.Record
}

// browser is a client with a cookie jar that does not follow redirects,
// so tests see each 303.
type browser struct {
	t      *testing.T
	e      *env
	client *http.Client
}

func (e *env) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *e.srv.Client() // a copy: Client returns one shared value
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, e: e, client: &c}
}

type response struct {
	*http.Response
	body string
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{resp, string(data)}
}

func (b *browser) get(path string) response { b.t.Helper(); return b.do("GET", path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", html)
	}
	return m[1]
}

// login fetches the form and posts token; it returns the response to the POST.
func (b *browser) login(token string) response {
	b.t.Helper()
	form := b.get("/ui/login")
	if form.StatusCode != http.StatusOK {
		b.t.Fatalf("GET /ui/login: %d", form.StatusCode)
	}
	return b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(b.t, form.body)}, "token": {token}})
}

// mustLogin logs in and returns the session's CSRF token.
func (b *browser) mustLogin(token string) string {
	b.t.Helper()
	r := b.login(token)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("login: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	home := b.get("/ui/")
	if home.StatusCode != http.StatusOK {
		b.t.Fatalf("GET /ui/ after login: %d\n%s", home.StatusCode, home.body)
	}
	return csrfOf(b.t, home.body)
}

func (e *env) events(t *testing.T, action string) []eventT {
	t.Helper()
	evs, _, err := e.auth.AuditEvents(context.Background(), store.AuditFilter{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]eventT, 0, len(evs))
	for _, ev := range evs {
		out = append(out, eventT{Actor: ev.Actor, Action: ev.Action, Target: ev.Target, Detail: ev.Detail})
	}
	return out
}

type eventT struct {
	Actor, Action, Target string
	Detail                map[string]string
}

// reserve replaces e's page with one built from cfg (logger, clock and
// issuers filled in) over a, on a new listener.
func (e *env) reserve(t *testing.T, cfg ui.Config, a ui.Authority) {
	t.Helper()
	cfg.Logger, cfg.Clock, cfg.Issuers = slog.New(slog.DiscardHandler), e.clk, e.st
	u, err := ui.New(cfg, a, e.auth.Access())
	if err != nil {
		t.Fatal(err)
	}
	e.ui = u
	e.srv = httptest.NewTLSServer(u.Handler())
	t.Cleanup(e.srv.Close)
}
