package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/acme"
	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// The agent's tests run against the real thing: an initialized CA on a
// SQLite file, its /v1 API and its ACME endpoint (for renewal information)
// on a TLS listener that asks for client certificates, as sigil serve's
// does. The CA and the agent share one fake clock.

// shortProfile issues hour-long certificates; with the one-minute backdate
// their lifetime is 61 minutes.
const shortProfile = "short"

type caEnv struct {
	srv   *httptest.Server
	clk   *clockwork.FakeClock
	auth  *ca.Authority
	st    *store.SQLite
	roots *x509.CertPool
	logs  *syncBuffer
	// serving is the listener certificate, issued by the CA.
	serving tls.Certificate
}

// syncBuffer is a log sink safe for concurrent writers.
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

// newCAEnv starts a CA; with acmeOn its ACME endpoint (and so ARI) is
// served too.
func newCAEnv(t *testing.T, acmeOn bool) *caEnv {
	t.Helper()
	ctx := context.Background()
	clk := testclock.New()
	profiles := ca.DefaultProfiles()
	short := profiles["tls-server"]
	short.MaxValidity = ca.Duration(time.Hour)
	profiles[shortProfile] = short
	logger := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	tc := testca.New(t, testca.Options{Name: "Agent Test CA", Clock: clk,
		Config: func(cfg *ca.Config) { cfg.Profiles, cfg.Logger = profiles, logger }})
	st, auth := tc.Store, tc.Authority
	h, err := api.New(api.Config{Logger: logger, Clock: clk}, auth, auth.Access())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", h.Handler())
	if acmeOn {
		key, err := acme.LoadNonceKey(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		nonces, err := acme.NewNonces(key, 15*time.Minute, clk, st)
		if err != nil {
			t.Fatal(err)
		}
		v, err := acme.NewValidator(acme.ValidationConfig{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := acme.New(acme.Config{Profile: "tls-server", CAA: acme.CAAOff, Clock: clk, Logger: logger}, st, auth, v, nonces)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		mux.Handle("/acme/", s.Handler())
	}
	// The listener's certificate comes from the CA, as sigil serve's does
	// (no SNI for an IP address, so it is set rather than looked up).
	serving, err := auth.NewServingCert(ctx, []string{"127.0.0.1"}, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := serving.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tc.Init.Root)
	e := &caEnv{clk: clk, auth: auth, st: st, roots: roots, logs: &syncBuffer{}, serving: *cert}
	e.srv = e.listen(t, mux)
	return e
}

// listen serves h over TLS with the CA's serving certificate, asking for
// client certificates.
func (e *caEnv) listen(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, Certificates: []tls.Certificate{e.serving}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// pairFiles are the paths of a certificate and key in a fresh directory.
type pairFiles struct{ dir, cert, key string }

func newPairFiles(t *testing.T) pairFiles {
	dir := t.TempDir()
	return pairFiles{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue signs a certificate for key in profile and returns the chain PEM.
func (e *caEnv) issue(t *testing.T, key crypto.Signer, profile string, names ...string) (string, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := e.auth.Sign(context.Background(), ca.SignRequest{CSR: csr, Profile: profile, Requester: "token:test", Channel: ca.ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, c := range iss.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), leaf
}

// install issues a short certificate for a new key and writes the pair.
func (e *caEnv) install(t *testing.T, f pairFiles) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	chain, leaf := e.issue(t, key, shortProfile, "app.example.com")
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if f.cert == f.key {
		chain = string(keyPEM) + chain
	}
	if err := os.WriteFile(f.cert, []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// agentFor returns an agent on f against the CA, with the fake clock and
// a jitter that returns its maximum (so waits are exact).
func (e *caEnv) agentFor(t *testing.T, f pairFiles, mod func(*Config)) *Agent {
	t.Helper()
	cfg := Config{Server: e.srv.URL, RootCAs: e.roots, CertFile: f.cert, KeyFile: f.key, Clock: e.clk,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.jitter = func(d time.Duration) time.Duration { return d }
	return a
}

// onDisk loads the pair as a server would.
func onDisk(t *testing.T, f pairFiles) *tls.Certificate {
	t.Helper()
	c, err := files{cert: f.cert, key: f.key}.load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// record returns the CA's record of c.
func (e *caEnv) record(t *testing.T, c *x509.Certificate) store.CertRecord {
	t.Helper()
	rec, err := e.st.Certificate(context.Background(), c.SerialNumber.Text(16))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// snapshot is the content and mode of every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Mode().String() + " " + string(data)
	}
	return out
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
