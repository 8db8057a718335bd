package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// testServer is an ACME endpoint on a real TLS listener over a real SQLite
// file, issuing from a real authority, validating challenges for real.
type testServer struct {
	srv  *httptest.Server
	st   *store.SQLite
	dir  string // directory URL
	auth *ca.Authority
	acme *Server
}

// testValidation lets tests point validation at their own listeners.
type testValidation struct {
	httpPort int
	tlsPort  int
	resolver string
	profiles map[string]ca.Profile // replace or add profiles of ca.DefaultProfiles
}

func newTestServer(t *testing.T, cfg Config, val ...testValidation) *testServer {
	t.Helper()
	profiles := ca.DefaultProfiles()
	if len(val) > 0 {
		for name, p := range val[0].profiles {
			profiles[name] = p
		}
	}
	// One fake clock for the store, the authority and the server.
	if cfg.Clock == nil {
		cfg.Clock = testclock.New()
	}
	st, auth := testAuthority(t, profiles, cfg.Clock)
	return newTestServerOn(t, cfg, st, auth, val...)
}

// newTestServerOn is newTestServer over an existing store and authority.
func newTestServerOn(t *testing.T, cfg Config, st *store.SQLite, auth *ca.Authority, val ...testValidation) *testServer {
	t.Helper()
	ctx := context.Background()
	clk := cfg.Clock
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := LoadNonceKey(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := NewNonces(key, 15*time.Minute, clk, st)
	if err != nil {
		t.Fatal(err)
	}
	vc := ValidationConfig{Timeout: 5 * time.Second}
	if len(val) > 0 {
		vc.HTTPPort, vc.TLSPort, vc.Resolver = val[0].httpPort, val[0].tlsPort, val[0].resolver
	}
	v, err := NewValidator(vc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	if cfg.Profile == "" {
		cfg.Profile = "tls-server"
	}
	if cfg.CAAVerifier == nil {
		cfg.CAA = CAAOff
	}
	s, err := New(cfg, st, auth, v, nonces)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return &testServer{srv: srv, st: st, dir: srv.URL + s.Prefix() + "/directory", auth: auth, acme: s}
}

// testAuthority is a real authority over a fresh store, with profiles,
// both on clk.
func testAuthority(tb testing.TB, profiles map[string]ca.Profile, clk clockwork.Clock) (*store.SQLite, *ca.Authority) {
	tb.Helper()
	return testAuthorityAt(tb, "", profiles, clk)
}

// testAuthorityAt is testAuthority with its database at path (empty: a
// temporary directory).
func testAuthorityAt(tb testing.TB, path string, profiles map[string]ca.Profile, clk clockwork.Clock) (*store.SQLite, *ca.Authority) {
	tb.Helper()
	c := testca.New(tb, testca.Options{Name: "ACME Test CA", Clock: clk, Path: path,
		Config: func(cfg *ca.Config) { cfg.Profiles = profiles }})
	return c.Store, c.Authority
}

// freshNonces returns a client for c's account that holds none of c's
// nonces: they expire after 15 minutes on the server's fake clock, and a
// test that advances it past that would otherwise send expired ones.
func freshNonces(c *xacme.Client) *xacme.Client {
	return &xacme.Client{Key: c.Key, KID: c.KID, DirectoryURL: c.DirectoryURL, HTTPClient: c.HTTPClient,
		RetryBackoff: c.RetryBackoff, UserAgent: c.UserAgent}
}

func (ts *testServer) client(t *testing.T) *xacme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &xacme.Client{Key: key, DirectoryURL: ts.dir, HTTPClient: ts.srv.Client()}
}

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{TermsOfService: "https://example.test/tos"})
	ctx := context.Background()
	c := ts.client(t)

	// Without an account, lookup by key says so.
	if _, err := c.GetReg(ctx, ""); !errors.Is(err, xacme.ErrNoAccount) {
		t.Fatalf("GetReg before Register = %v, want ErrNoAccount", err)
	}
	acct, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:ops@example.test"}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if acct.Status != xacme.StatusValid || acct.URI == "" {
		t.Fatalf("account = %+v", acct)
	}
	// Registering the same key again returns the same account.
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); !errors.Is(err, xacme.ErrAccountAlreadyExists) {
		t.Errorf("second Register = %v, want ErrAccountAlreadyExists", err)
	}
	got, err := c.GetReg(ctx, "")
	if err != nil || got.URI != acct.URI {
		t.Fatalf("GetReg = %+v, %v; want %s", got, err, acct.URI)
	}
	upd, err := c.UpdateReg(ctx, &xacme.Account{Contact: []string{"mailto:new@example.test"}})
	if err != nil || len(upd.Contact) != 1 || upd.Contact[0] != "mailto:new@example.test" {
		t.Fatalf("UpdateReg = %+v, %v", upd, err)
	}
	if _, err := c.UpdateReg(ctx, &xacme.Account{Contact: []string{"tel:+15555550100"}}); !isProblem(err, "unsupportedContact") {
		t.Errorf("tel: contact = %v, want unsupportedContact", err)
	}
	if err := c.DeactivateReg(ctx); err != nil {
		t.Fatalf("DeactivateReg: %v", err)
	}
	if _, err := c.GetReg(ctx, ""); !isProblem(err, "unauthorized") {
		t.Errorf("GetReg after deactivation = %v, want unauthorized", err)
	}

	// Every account action is in the audit chain with the account as actor.
	events, _, err := ts.st.AuditEvents(ctx, store.AuditFilter{Action: "acme.", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		if e.Actor != "acme:"+lastSegment(acct.URI) {
			t.Errorf("event %s by %q, want the account", e.Action, e.Actor)
		}
		actions = append(actions, e.Action)
	}
	want := []string{"acme.account.created", "acme.account.updated", "acme.account.deactivated"}
	if len(actions) != len(want) {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
	for i := range want {
		if actions[i] != want[i] {
			t.Errorf("audit actions %v, want %v", actions, want)
		}
	}
}

func TestNewNonceAndDirectory(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	hc := ts.srv.Client()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, ts.srv.URL+"/acme/new-nonce", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[string]int{http.MethodHead: 200, http.MethodGet: 204}[method]
		if resp.StatusCode != want || resp.Header.Get("Replay-Nonce") == "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s new-nonce: %d, nonce %q, cache %q", method, resp.StatusCode, resp.Header.Get("Replay-Nonce"), resp.Header.Get("Cache-Control"))
		}
	}
	c := ts.client(t)
	d, err := c.Discover(context.Background())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if d.RegURL == "" || d.NonceURL == "" {
		t.Errorf("directory %+v", d)
	}
}

// errPrefix is the ACME error namespace (RFC 8555 §6.7).
const errPrefix = "urn:ietf:params:acme:error:"

func isProblem(err error, typ string) bool {
	var e *xacme.Error
	return errors.As(err, &e) && e.ProblemType == errPrefix+typ
}

func lastSegment(u string) string {
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] == '/' {
			return u[i+1:]
		}
	}
	return u
}
