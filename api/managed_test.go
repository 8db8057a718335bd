package api_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testca"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

// newManagedEnv is newEnv with /v1/managed served and a listener that
// requests (never requires, never verifies) client certificates, as sigil
// serve's does.
func newManagedEnv(t *testing.T) (*testEnv, *ca.Authority) {
	t.Helper()
	clk := testclock.New()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tc := testca.New(t, testca.Options{Name: "API Test CA", Clock: clk, Config: func(cfg *ca.Config) { cfg.Logger = logger }})
	st, auth, res := tc.Store, tc.Authority, tc.Init
	svc, err := managed.New(managed.Config{Clock: clk, Logger: logger}, auth.HeldKeys(), st)
	if err != nil {
		t.Fatalf("managed.New: %v", err)
	}
	h, err := api.New(api.Config{MaxBodyBytes: testMaxBody, Logger: logger, Clock: clk, Managed: svc}, auth, auth.Access())
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testEnv{srv: srv, client: srv.Client(), clk: clk, root: res.Root, inter: res.Intermediate,
		admin: res.AdminToken, adminID: tokenID(t, res.AdminToken), logs: logs}, auth
}

// withClientCert is e's client presenting chain and key in the handshake.
func (e *testEnv) withClientCert(t *testing.T, b api.BundleResponse) *testEnv {
	t.Helper()
	cert, err := tls.X509KeyPair([]byte(b.ChainPEM), []byte(b.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	c := *e
	c.client = &http.Client{Transport: tr}
	return &c
}

func (e *testEnv) createManaged(t *testing.T, req api.ManagedRequest) managed.Cert {
	t.Helper()
	var m managed.Cert
	e.getJSON(t, "POST", "/v1/managed", e.admin, req, http.StatusCreated, &m)
	return m
}

func (e *testEnv) managedToken(t *testing.T, name string) (secret, id string) {
	t.Helper()
	var tok api.Token
	e.getJSON(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{Role: ca.RoleManaged, Managed: name}, http.StatusCreated, &tok)
	if tok.Role != ca.RoleManaged || tok.Managed != name || tok.Secret == "" {
		t.Fatalf("managed token %+v", tok)
	}
	return tok.Secret, tok.ID
}

// bundle fetches name's bundle with token (or none) and checks the
// response: its fields, no-store, a chain leaf first whose key is the key.
func (e *testEnv) bundle(t *testing.T, name, token string) api.BundleResponse {
	t.Helper()
	resp, data := e.do(t, "GET", "/v1/managed/"+name+"/bundle", token, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bundle of %s: %d %s", name, resp.StatusCode, data)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"name", "version", "serial", "not_before", "not_after", "chain_pem", "key_pem"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("bundle has no %q", f)
		}
	}
	if len(fields) != 7 {
		t.Errorf("bundle fields %d, want 7", len(fields))
	}
	var b api.BundleResponse
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatal(err)
	}
	chain := pemBlocks(t, b.ChainPEM)
	if len(chain) != 2 || !bytes.Equal(chain[1], e.inter.Raw) {
		t.Fatalf("chain of %d certificates, want leaf then the intermediate", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Text(16) != b.Serial || !leaf.NotAfter.Equal(b.NotAfter) || !leaf.NotBefore.Equal(b.NotBefore) {
		t.Errorf("bundle %s v%d does not describe its leaf %x", b.Serial, b.Version, leaf.SerialNumber)
	}
	blk, rest := pem.Decode([]byte(b.KeyPEM))
	if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("key_pem is not one PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.(crypto.Signer).Public()) {
		t.Error("key_pem is not the leaf's key")
	}
	return b
}

// TestManagedBundleAccess: the bundle goes to the identity it belongs to
// (its current or previous certificate over mTLS, or a token scoped to
// it) and to no one else, admin included; every refusal and every
// delivery is audited, and the key never reaches the logs.
func TestManagedBundleAccess(t *testing.T) {
	e, _ := newManagedEnv(t)
	e.createManaged(t, api.ManagedRequest{Name: "web", SANs: []string{"web.example.com"}, Profile: "tls-server", RenewAt: "1/10"})
	e.createManaged(t, api.ManagedRequest{Name: "db", SANs: []string{"db.example.com"}, Profile: "tls-server-client"})
	webTok, webTokID := e.managedToken(t, "web")

	v1 := e.bundle(t, "web", webTok)
	if v1.Name != "web" || v1.Version != 1 {
		t.Fatalf("bundle %s v%d", v1.Name, v1.Version)
	}
	if again := e.withClientCert(t, v1).bundle(t, "web", ""); again.Serial != v1.Serial || again.KeyPEM != v1.KeyPEM {
		t.Errorf("current certificate over mTLS: %s, want %s", again.Serial, v1.Serial)
	}
	var renewed managed.Cert
	e.getJSON(t, "POST", "/v1/managed/web/renew", e.admin, nil, http.StatusOK, &renewed)
	if renewed.Version != 2 {
		t.Fatalf("renewed to version %d", renewed.Version)
	}
	v2 := e.withClientCert(t, v1).bundle(t, "web", "") // the previous certificate fetches the renewal
	if v2.Version != 2 || v2.Serial == v1.Serial || v2.KeyPEM == v1.KeyPEM {
		t.Errorf("previous certificate got v%d %s (key rotated: %v)", v2.Version, v2.Serial, v2.KeyPEM != v1.KeyPEM)
	}
	dbBundle := e.bundle(t, "db", func() string { tok, _ := e.managedToken(t, "db"); return tok }())
	fetched := 4

	refusals := []struct {
		name   string
		env    *testEnv
		path   string
		token  string
		status int
		actor  string
		audit  bool
	}{
		{"other identity's certificate", e.withClientCert(t, dbBundle), "/v1/managed/web/bundle", "", http.StatusForbidden, "cert:" + dbBundle.Serial, true},
		{"certificate for another name", e.withClientCert(t, v2), "/v1/managed/db/bundle", "", http.StatusForbidden, "cert:" + v2.Serial, true},
		{"token for another name", e, "/v1/managed/db/bundle", webTok, http.StatusForbidden, "token:" + webTokID, true},
		{"admin token", e, "/v1/managed/web/bundle", e.admin, http.StatusForbidden, "token:" + e.adminID, true},
		{"auditor token", e, "/v1/managed/web/bundle", e.auditorToken(t), http.StatusForbidden, "", true},
		{"no credential", e, "/v1/managed/web/bundle", "", http.StatusUnauthorized, "", false},
		{"certificate of another CA", e.withClientCert(t, selfSigned(t)), "/v1/managed/web/bundle", "", http.StatusUnauthorized, "", false},
		{"our certificate of no managed name", e.withClientCert(t, e.plainCert(t)), "/v1/managed/web/bundle", "", http.StatusForbidden, "", true},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit(t, "action=managed.bundle.refused"))
			resp, data := tc.env.do(t, "GET", tc.path, tc.token, nil)
			kind := "forbidden"
			if tc.status == http.StatusUnauthorized {
				kind = "unauthorized"
			}
			checkError(t, resp, data, tc.status, kind)
			if bytes.Contains(data, []byte("PRIVATE KEY")) {
				t.Error("a refusal carries a key")
			}
			evs := e.audit(t, "action=managed.bundle.refused")
			if !tc.audit {
				if len(evs) != before {
					t.Errorf("a request without credentials was audited: %+v", evs[before:])
				}
				return
			}
			if len(evs) != before+1 {
				t.Fatalf("%d refusals audited, want 1 more than %d", len(evs), before)
			}
			if ev := evs[len(evs)-1]; tc.actor != "" && ev.Actor != tc.actor {
				t.Errorf("refusal audited as %s, want %s", ev.Actor, tc.actor)
			}
		})
	}

	// Version 1 is no longer current or previous after another renewal;
	// a revoked certificate fetches nothing either.
	e.getJSON(t, "POST", "/v1/managed/web/renew", e.admin, nil, http.StatusOK, &renewed)
	resp, data := e.withClientCert(t, v1).do(t, "GET", "/v1/managed/web/bundle", "", nil)
	checkError(t, resp, data, http.StatusForbidden, "forbidden")
	e.getJSON(t, "POST", "/v1/revoke", e.admin, api.RevokeRequest{Serial: v2.Serial, Reason: json.RawMessage(`"superseded"`)}, http.StatusOK, nil)
	resp, data = e.withClientCert(t, v2).do(t, "GET", "/v1/managed/web/bundle", "", nil)
	if a := checkError(t, resp, data, http.StatusForbidden, "forbidden"); !strings.Contains(a.Detail, "revoked") {
		t.Errorf("revoked certificate: %s", a.Detail)
	}
	// A managed token calls nothing else.
	resp, data = e.do(t, "GET", "/v1/certificates", webTok, nil)
	checkError(t, resp, data, http.StatusForbidden, "forbidden")

	evs := e.audit(t, "action=managed.bundle.fetched")
	if len(evs) != fetched {
		t.Fatalf("%d fetches audited, want %d", len(evs), fetched)
	}
	if ev := evs[0]; ev.Actor != "token:"+webTokID || ev.Target != "web" || ev.Detail["version"] != "1" ||
		ev.Detail["serial"] != v1.Serial || ev.Detail["via"] != "token" {
		t.Errorf("first fetch audited as %+v", ev)
	}
	if ev := evs[2]; ev.Actor != "cert:"+v1.Serial || ev.Detail["via"] != "mtls" || ev.Detail["version"] != "2" {
		t.Errorf("mTLS fetch audited as %+v", ev)
	}
	if n := len(e.audit(t, "action=key.exported")); n != fetched {
		t.Errorf("%d key.exported events, want %d", n, fetched)
	}
	var formatted bytes.Buffer
	slog.New(slog.NewJSONHandler(&formatted, nil)).Info("bundle", "b", v1)
	fmt.Fprintf(&formatted, "%v %+v %s", v1, v1, v1)
	if strings.Contains(formatted.String(), "PRIVATE KEY") {
		t.Error("a formatted or logged BundleResponse shows its key")
	}
	logs := e.logs.String()
	for _, b := range []api.BundleResponse{v1, v2, dbBundle} {
		blk, _ := pem.Decode([]byte(b.KeyPEM))
		if strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, strings.Split(b.KeyPEM, "\n")[1]) || bytes.Contains([]byte(logs), blk.Bytes) {
			t.Fatal("a private key reached the logs")
		}
	}
}

// selfSigned is a bundle whose certificate no CA of the test issued.
func selfSigned(t *testing.T) api.BundleResponse {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: testclock.Start().Add(-24 * time.Hour), NotAfter: testclock.Start().Add(365 * 24 * time.Hour),
		DNSNames: []string{"web.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBundle(t, der, key)
}

// plainCert issues a certificate through /v1/sign (not a managed one).
func (e *testEnv) plainCert(t *testing.T) api.BundleResponse {
	t.Helper()
	key := newKey(t)
	var out api.SignResponse
	e.getJSON(t, "POST", "/v1/sign", e.admin, api.SignRequest{CSR: csrPEM(t, key, "", "plain.example.com"), Profile: "tls-client"},
		http.StatusCreated, &out)
	return pemBundle(t, pemBlocks(t, out.Chain)[0], key)
}

func pemBundle(t *testing.T, der []byte, key crypto.Signer) api.BundleResponse {
	t.Helper()
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return api.BundleResponse{ChainPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}))}
}

// TestManagedAdminAPI: create, list, show, renew and delete through
// /v1/managed, with roles enforced and bad input changing nothing.
func TestManagedAdminAPI(t *testing.T) {
	e, _ := newManagedEnv(t)
	auditor := e.auditorToken(t)
	m := e.createManaged(t, api.ManagedRequest{Name: "app", SANs: []string{"app.example.com", "10.1.2.3"}, Profile: "tls-server",
		KeyType: "ecdsa-p384", Validity: "720h", RenewAt: "75%", RotateKey: "every:3", RevokePreviousAfter: "24h"})
	if m.KeyType != "ecdsa-p384" || m.RenewAt != "3/4" || m.RotateKey != "every:3" || m.RevokePreviousAfter != "24h0m0s" ||
		m.Validity != "720h0m0s" || m.CreatedBy != "token:"+e.adminID {
		t.Errorf("created %+v", m)
	}
	for _, bad := range []api.ManagedRequest{
		{Name: "bad/name", SANs: []string{"x.example.com"}, Profile: "tls-server"},
		{Name: "b", SANs: []string{"x.example.com"}, Profile: "tls-server", RenewAt: "2"},
		{Name: "c", SANs: []string{"x.example.com"}, Profile: "tls-server", Validity: "soon"},
		{Name: "d", SANs: []string{"x.example.com"}, Profile: "nope"},
		{Name: "app", SANs: []string{"x.example.com"}, Profile: "tls-server"},
	} {
		resp, data := e.do(t, "POST", "/v1/managed", e.admin, bad)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("create %+v: %d %s", bad, resp.StatusCode, data)
		}
	}
	resp, data := e.do(t, "POST", "/v1/managed", auditor, api.ManagedRequest{Name: "z", SANs: []string{"z.example.com"}, Profile: "tls-server"})
	checkError(t, resp, data, http.StatusForbidden, "forbidden")
	var list api.ManagedList
	e.getJSON(t, "GET", "/v1/managed", auditor, nil, http.StatusOK, &list)
	if len(list.Managed) != 1 || list.Managed[0].Name != "app" {
		t.Errorf("list %+v", list)
	}
	var shown managed.Cert
	e.getJSON(t, "GET", "/v1/managed/app", auditor, nil, http.StatusOK, &shown)
	if len(shown.Versions) != 1 || shown.Versions[0].State != "current" || shown.Versions[0].Serial != m.Serial {
		t.Errorf("show %+v", shown)
	}
	resp, data = e.do(t, "GET", "/v1/managed/nope", auditor, nil)
	checkError(t, resp, data, http.StatusNotFound, "not_found")
	resp, data = e.do(t, "DELETE", "/v1/managed/app?destroy_keys=yes", e.admin, nil)
	checkError(t, resp, data, http.StatusBadRequest, "malformed")
	var deleted managed.Cert
	e.getJSON(t, "DELETE", "/v1/managed/app?destroy_keys=true", e.admin, nil, http.StatusOK, &deleted)
	if deleted.State != "deleted" {
		t.Errorf("deleted %+v", deleted)
	}
	for _, k := range e.keys(t) {
		if k.Purpose == managed.KeyPurpose && k.State != store.KeyDestroyed {
			t.Errorf("key %s is %s after delete --destroy-keys", k.ID, k.State)
		}
	}
	e.getJSON(t, "GET", "/v1/managed", e.admin, nil, http.StatusOK, &list)
	if len(list.Managed) != 0 {
		t.Errorf("deleted listed: %+v", list)
	}
	e.getJSON(t, "GET", "/v1/managed?deleted=true", e.admin, nil, http.StatusOK, &list)
	if len(list.Managed) != 1 {
		t.Errorf("deleted=true: %+v", list)
	}
	resp, data = e.do(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{Role: ca.RoleManaged, Managed: "app"})
	checkError(t, resp, data, http.StatusNotFound, "not_found")
	resp, data = e.do(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{Role: ca.RoleAdmin, Managed: "app"})
	checkError(t, resp, data, http.StatusBadRequest, "malformed")
}
