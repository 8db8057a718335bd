package api_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-ca/sigil/internal/testca"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

const (
	initPassphrase = testca.Passphrase
	testMaxBody    = 64 << 10
)

// syncBuffer is a log sink safe for concurrent handlers.
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

// testEnv is an initialized CA on a fresh SQLite file, served by the /v1
// handler on a real TLS listener.
type testEnv struct {
	srv     *httptest.Server
	client  *http.Client
	auth    *ca.Authority
	clk     *clockwork.FakeClock
	root    *x509.Certificate
	inter   *x509.Certificate
	admin   string // the initial admin token
	adminID string
	logs    *syncBuffer
	api     *api.API
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with cfg adjusted by configure before the handler
// is built (nil: as newEnv).
func newEnvWith(t testing.TB, configure func(cfg *api.Config, auth *ca.Authority, svc *managed.Service)) *testEnv {
	t.Helper()
	clk := testclock.New()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tc := testca.New(t, testca.Options{Name: "API Test CA", Clock: clk, Config: func(cfg *ca.Config) {
		cfg.Logger = logger
		cfg.FastKDF = true // the re-wrap test derives a new KEK; keep it cheap
	}})
	st, auth, res := tc.Store, tc.Authority, tc.Init
	cfg := api.Config{MaxBodyBytes: testMaxBody, Logger: logger, Clock: clk, Log: auth.Log()}
	if configure != nil {
		svc, err := managed.New(managed.Config{Clock: clk, Logger: logger}, auth.HeldKeys(), st)
		if err != nil {
			t.Fatalf("managed.New: %v", err)
		}
		configure(&cfg, auth, svc)
	}
	h, err := api.New(cfg, auth, auth.Access())
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	// As cmd/sigil's listener: a client certificate is asked for, not
	// required (POST /v1/renew authenticates with it).
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close) // runs before st.Close: cleanups are LIFO
	return &testEnv{
		srv: srv, client: srv.Client(), auth: auth, clk: clk, root: res.Root, inter: res.Intermediate, api: h,
		admin: res.AdminToken, adminID: tokenID(t, res.AdminToken), logs: logs,
	}
}

// tokenID extracts the id from "sigil_<id>_<secret>".
func tokenID(t testing.TB, secret string) string {
	t.Helper()
	parts := strings.SplitN(secret, "_", 3)
	if len(parts) != 3 || parts[0] != "sigil" || parts[1] == "" {
		t.Fatalf("token %q is not sigil_<id>_<secret>", secret)
	}
	return parts[1]
}

type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// do sends a request and returns the response with its body read. body is
// nil, a string, []byte, or a value to marshal as JSON. Every response must
// carry Cache-Control: no-store and an X-Request-Id.
func (e *testEnv) do(t *testing.T, method, path, token string, body any, opts ...reqOpt) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s %s: Cache-Control = %q, want no-store", method, path, got)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	return resp, data
}

// getJSON does a request that must answer want and decodes its body
// strictly into v.
func (e *testEnv) getJSON(t *testing.T, method, path, token string, body any, want int, v any, opts ...reqOpt) []byte {
	t.Helper()
	resp, data := e.do(t, method, path, token, body, opts...)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if v != nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s %s: decode %T: %v\n%s", method, path, v, err, data)
		}
	}
	return data
}

type apiError struct {
	Error       string `json:"error"`
	Detail      string `json:"detail"`
	Subproblems []struct {
		Identifier string `json:"identifier"`
		Error      string `json:"error"`
		Detail     string `json:"detail"`
	} `json:"subproblems"`
}

// checkError checks that a response is the JSON error kind with status.
func checkError(t *testing.T, resp *http.Response, data []byte, status int, kind string) apiError {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d: %s", resp.StatusCode, status, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e apiError
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body is not {error, detail}: %v\n%s", err, data)
	}
	if e.Error != kind {
		t.Errorf("error = %q, want %q (detail %q)", e.Error, kind, e.Detail)
	}
	if e.Detail == "" {
		t.Error("empty detail")
	}
	return e
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrDER(t *testing.T, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCSR(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func csrPEM(t *testing.T, key crypto.Signer, cn string, dns ...string) string {
	t.Helper()
	return pemCSR(csrDER(t, key, cn, dns...))
}

// sign issues one certificate and returns the response.
func (e *testEnv) sign(t *testing.T, token, profile string, dns ...string) api.SignResponse {
	t.Helper()
	var out api.SignResponse
	e.getJSON(t, "POST", "/v1/sign", token, api.SignRequest{CSR: csrPEM(t, newKey(t), "", dns...), Profile: profile},
		http.StatusCreated, &out)
	return out
}

// certs lists every certificate the token may see.
func (e *testEnv) certs(t *testing.T, token string) []api.Certificate {
	t.Helper()
	var out api.CertificateList
	e.getJSON(t, "GET", "/v1/certificates?limit=1000", token, nil, http.StatusOK, &out)
	if out.NextCursor != "" {
		t.Fatal("more than 1000 certificates")
	}
	return out.Certificates
}

func (e *testEnv) createToken(t *testing.T, role string, profiles ...string) (secret, id string) {
	t.Helper()
	var tok api.Token
	e.getJSON(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{Role: role, Profiles: profiles, Description: "test " + role},
		http.StatusCreated, &tok)
	if tok.Secret == "" {
		t.Fatal("token creation returned no secret")
	}
	if got := tokenID(t, tok.Secret); got != tok.ID {
		t.Fatalf("secret names id %s, record is %s", got, tok.ID)
	}
	return tok.Secret, tok.ID
}

func (e *testEnv) keys(t *testing.T) []ca.KeyInfo {
	t.Helper()
	var out struct {
		Keys []ca.KeyInfo `json:"keys"`
	}
	e.getJSON(t, "GET", "/v1/keys", e.admin, nil, http.StatusOK, &out)
	if len(out.Keys) == 0 {
		t.Fatal("no keys")
	}
	return out.Keys
}

func (e *testEnv) audit(t *testing.T, query string) []api.AuditEvent {
	t.Helper()
	var out api.AuditList
	e.getJSON(t, "GET", "/v1/audit?limit=1000&"+query, e.admin, nil, http.StatusOK, &out)
	return out.Events
}

func pemBlocks(t *testing.T, s string) [][]byte {
	t.Helper()
	var out [][]byte
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block type %q, want CERTIFICATE", b.Type)
		}
		out = append(out, b.Bytes)
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("trailing data after PEM: %q", rest)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// auditorToken makes a fresh auditor token.
func (e *testEnv) auditorToken(t *testing.T) string {
	t.Helper()
	tok, _ := e.createToken(t, ca.RoleAuditor)
	return tok
}
