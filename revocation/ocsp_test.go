package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testca"

	"github.com/jonboulle/clockwork"
	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

type env struct {
	t    testing.TB
	auth *ca.Authority
	st   *store.SQLite
	clk  *clockwork.FakeClock
	path string
	ks   *keystore.Keystore
}

func newEnv(t testing.TB) *env {
	t.Helper()
	clk := clockwork.NewFakeClockAt(testStart)
	tc := testca.New(t, testca.Options{Name: "Test CA", Clock: clk})
	st, path, res := tc.Store, tc.Path, tc.Init
	e := &env{t: t, st: st, clk: clk, path: path, ks: res.Keystore}
	e.auth = e.newAuthority()
	t.Cleanup(func() { e.st.Close() })
	return e
}

func (e *env) newAuthority() *ca.Authority {
	a, err := ca.New(context.Background(), ca.Config{Profiles: ca.DefaultProfiles(), BaseURL: "http://ca.test:8080",
		Clock: e.clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.st, e.ks)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// reopen simulates a restart: a new store handle, authority and responder.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{Path: e.path, Clock: e.clk})
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	e.ks, err = keystore.Unlock(context.Background(), st, e.clk, []byte(testca.Passphrase))
	if err != nil {
		e.t.Fatal(err)
	}
	e.auth = e.newAuthority()
}

func (e *env) issue(cn string) *x509.Certificate {
	e.t.Helper()
	c, err := issueCert(context.Background(), e.auth, cn)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) responder(cfg OCSPConfig) *Responder {
	e.t.Helper()
	cfg.Clock = e.clk
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := NewResponder(cfg, e.auth, e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.Close)
	return r
}

func request(t testing.TB, cert, issuer *x509.Certificate, h crypto.Hash) []byte {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func get(t testing.TB, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rr := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://ca.test"+path, nil)
	h.ServeHTTP(rr, req)
	return rr
}

func post(t testing.TB, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rr := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "http://ca.test/ocsp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/ocsp-request")
	h.ServeHTTP(rr, req)
	return rr
}

// parse checks the response verifies for cert and returns it.
func parse(t testing.TB, rr *httptest.ResponseRecorder, cert, issuer *x509.Certificate) *ocsp.Response {
	t.Helper()
	if rr.Code != http.StatusOK {
		t.Fatalf("HTTP %d", rr.Code)
	}
	resp, err := ocsp.ParseResponseForCert(rr.Body.Bytes(), cert, issuer)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	return resp
}

func TestOCSPStatuses(t *testing.T) {
	e := newEnv(t)
	good := e.issue("good.example.com")
	revoked := e.issue("revoked.example.com")
	r := e.responder(OCSPConfig{})
	inter := e.auth.Intermediate().Cert
	if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: ca.SerialString(revoked.SerialNumber), Reason: ca.ReasonKeyCompromise, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	// A serial nobody issued: a copy of good with another serial.
	unknown := *good
	unknown.SerialNumber = new(big.Int).Add(good.SerialNumber, big.NewInt(1))
	h := r.Handler()
	for _, hash := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, tc := range []struct {
			name   string
			cert   *x509.Certificate
			status int
		}{
			{"good", good, ocsp.Good},
			{"revoked", revoked, ocsp.Revoked},
			{"unknown", &unknown, ocsp.Unknown},
		} {
			t.Run(hash.String()+"/"+tc.name, func(t *testing.T) {
				der := request(t, tc.cert, inter, hash)
				for _, rr := range []*httptest.ResponseRecorder{
					get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(der)),
					post(t, h, der),
				} {
					resp := parse(t, rr, tc.cert, inter)
					if resp.Status != tc.status {
						t.Errorf("status %d, want %d", resp.Status, tc.status)
					}
					if resp.SerialNumber.Cmp(tc.cert.SerialNumber) != 0 {
						t.Errorf("serial %x, want %x", resp.SerialNumber, tc.cert.SerialNumber)
					}
					if resp.Certificate == nil || !resp.Certificate.Equal(r.Signer().Certificate()) {
						t.Error("response does not embed the responder certificate")
					}
					if tc.status == ocsp.Revoked && (resp.RevocationReason != ocsp.KeyCompromise || !resp.RevokedAt.Equal(e.clk.Now().Truncate(time.Second))) {
						t.Errorf("revoked at %v reason %d", resp.RevokedAt, resp.RevocationReason)
					}
					if got := rr.Header().Get("Content-Type"); got != "application/ocsp-response" {
						t.Errorf("Content-Type %q", got)
					}
				}
			})
		}
	}
}

func TestOCSPHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.issue("a.example.com")
	r := e.responder(OCSPConfig{Validity: 24 * time.Hour})
	e.clk.Advance(time.Hour)
	der := request(t, c, e.auth.Intermediate().Cert, crypto.SHA1)
	rr := get(t, r.Handler(), "/ocsp/"+base64.StdEncoding.EncodeToString(der))
	resp := parse(t, rr, c, e.auth.Intermediate().Cert)
	h := rr.Header()
	if got, want := h.Get("Cache-Control"), "max-age=82800, public, no-transform, must-revalidate"; got != want {
		t.Errorf("Cache-Control %q, want %q", got, want)
	}
	if got, want := h.Get("Last-Modified"), resp.ThisUpdate.UTC().Format(http.TimeFormat); got != want {
		t.Errorf("Last-Modified %q, want %q", got, want)
	}
	if got, want := h.Get("Expires"), resp.NextUpdate.UTC().Format(http.TimeFormat); got != want {
		t.Errorf("Expires %q, want %q", got, want)
	}
	if !resp.NextUpdate.Equal(resp.ThisUpdate.Add(24 * time.Hour)) {
		t.Errorf("thisUpdate %v nextUpdate %v", resp.ThisUpdate, resp.NextUpdate)
	}
	etag := h.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest(http.MethodGet, "http://ca.test/ocsp/"+base64.StdEncoding.EncodeToString(der), nil)
	req.Header.Set("If-None-Match", etag)
	rr2 := httptest.NewRecorder()
	r.Handler().ServeHTTP(rr2, req)
	if rr2.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: HTTP %d, want 304", rr2.Code)
	}
}

func TestOCSPGETEncodings(t *testing.T) {
	e := newEnv(t)
	// Issue until a request's base64 has "+" and "/" in it, so every
	// escaping matters.
	inter := e.auth.Intermediate().Cert
	var c *x509.Certificate
	var b64 string
	for i := 0; i < 200; i++ {
		c = e.issue("enc.example.com")
		b64 = base64.StdEncoding.EncodeToString(request(t, c, inter, crypto.SHA1))
		if strings.Contains(b64, "+") && strings.Contains(b64, "/") {
			break
		}
	}
	if !strings.Contains(b64, "+") || !strings.Contains(b64, "/") {
		t.Skip("no request with + and / in 200 tries")
	}
	r := e.responder(OCSPConfig{})
	raw := strings.TrimRight(b64, "=")
	urlsafe := base64.RawURLEncoding.EncodeToString(request(t, c, inter, crypto.SHA1))
	for name, path := range map[string]string{
		"standard":          b64,
		"unpadded":          raw,
		"path-escaped":      url.PathEscape(b64),
		"query-escaped":     url.QueryEscape(b64),
		"slash-escaped":     strings.ReplaceAll(b64, "/", "%2F"),
		"plus-escaped-only": strings.ReplaceAll(b64, "+", "%2B"),
		"plus-as-space":     strings.ReplaceAll(b64, "+", "%20"),
		"url-safe":          urlsafe,
	} {
		t.Run(name, func(t *testing.T) {
			resp := parse(t, get(t, r.Handler(), "/ocsp/"+path), c, inter)
			if resp.Status != ocsp.Good {
				t.Errorf("status %d", resp.Status)
			}
		})
	}
}

func TestOCSPMalformed(t *testing.T) {
	e := newEnv(t)
	c := e.issue("m.example.com")
	r := e.responder(OCSPConfig{MaxRequestBytes: 1024})
	inter := e.auth.Intermediate().Cert
	good := request(t, c, inter, crypto.SHA1)
	// TBSRequest with version [0] EXPLICIT INTEGER 1: RFC 6960 knows only v1(0).
	wrongVersion := withVersion(t, good, 1)
	sha384, err := ocsp.CreateRequest(c, inter, &ocsp.RequestOptions{Hash: crypto.SHA384})
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer := bytes.Clone(good)
	// Flip a byte of the issuerKeyHash (the 20 bytes before the serial).
	otherIssuer[len(otherIssuer)-len(c.SerialNumber.Bytes())-3-1] ^= 0xff
	for _, tc := range []struct {
		name string
		der  []byte
		want []byte
	}{
		{"empty", nil, ocsp.MalformedRequestErrorResponse},
		{"garbage", []byte("not an OCSP request at all"), ocsp.MalformedRequestErrorResponse},
		{"truncated", good[:len(good)-5], ocsp.MalformedRequestErrorResponse},
		{"trailing", append(bytes.Clone(good), 0), ocsp.MalformedRequestErrorResponse},
		{"wrong version", wrongVersion, ocsp.MalformedRequestErrorResponse},
		{"sha384 CertID", sha384, ocsp.MalformedRequestErrorResponse},
		{"oversized", append(bytes.Repeat([]byte{0x30}, 2048), good...), ocsp.MalformedRequestErrorResponse},
		{"other issuer", otherIssuer, ocsp.UnauthorizedErrorResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rr := range []*httptest.ResponseRecorder{post(t, r.Handler(), tc.der), get(t, r.Handler(), "/ocsp/"+base64.StdEncoding.EncodeToString(tc.der))} {
				if rr.Code != http.StatusOK || !bytes.Equal(rr.Body.Bytes(), tc.want) {
					t.Errorf("HTTP %d body %x, want %x", rr.Code, rr.Body.Bytes(), tc.want)
				}
			}
		})
	}
	if rr := get(t, r.Handler(), "/ocsp/!!!"); !bytes.Equal(rr.Body.Bytes(), ocsp.MalformedRequestErrorResponse) {
		t.Errorf("bad base64: %x", rr.Body.Bytes())
	}
	if _, err := parseOCSPRequest(withVersion(t, good, 0)); err != nil {
		t.Errorf("explicit v1: %v", err)
	}
}

// withVersion re-encodes req with an explicit TBSRequest version.
func withVersion(t testing.TB, req []byte, v int) []byte {
	t.Helper()
	// OCSPRequest SEQ { TBSRequest SEQ { requestList ... } }: both short or
	// long form lengths; rebuild with encoding/asn1 raw values.
	var outer struct{ TBS asnRaw }
	if _, err := asnUnmarshal(req, &outer); err != nil {
		t.Fatal(err)
	}
	tbsInner := outer.TBS.Bytes
	ver := []byte{0xa0, 0x03, 0x02, 0x01, byte(v)}
	return seq(seq(append(ver, tbsInner...)))
}

func TestOCSPRefreshAndRotation(t *testing.T) {
	e := newEnv(t)
	c := e.issue("r.example.com")
	r := e.responder(OCSPConfig{Validity: 24 * time.Hour, ResponderValidity: 72 * time.Hour})
	inter := e.auth.Intermediate().Cert
	h := r.Handler()
	der := request(t, c, inter, crypto.SHA256)
	first := parse(t, post(t, h, der), c, inter)
	firstResponder := r.Signer().Certificate()

	// Revocation: the next request sees it, without a refresh.
	if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: ca.SerialString(c.SerialNumber), Reason: ca.ReasonCertificateHold}); err != nil {
		t.Fatal(err)
	}
	if resp := parse(t, post(t, h, der), c, inter); resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.CertificateHold {
		t.Errorf("after revoke: status %d reason %d", resp.Status, resp.RevocationReason)
	}
	if _, err := e.auth.Unhold(context.Background(), ca.SerialString(c.SerialNumber), "test"); err != nil {
		t.Fatal(err)
	}
	if resp := parse(t, post(t, h, der), c, inter); resp.Status != ocsp.Good {
		t.Errorf("after unhold: status %d", resp.Status)
	}

	// Before half the validity has passed, a refresh re-signs.
	e.clk.Advance(9 * time.Hour)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := parse(t, post(t, h, der), c, inter); !resp.ThisUpdate.Equal(e.clk.Now().Truncate(time.Second)) {
		t.Errorf("after refresh: thisUpdate %v, want %v (first %v)", resp.ThisUpdate, e.clk.Now(), first.ThisUpdate)
	}
	// The responder certificate rotates at its half-life.
	e.clk.Advance(28 * time.Hour)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Signer().Certificate().Equal(firstResponder) {
		t.Fatal("responder certificate not rotated after its half-life")
	}
	resp := parse(t, post(t, h, der), c, inter)
	if !resp.Certificate.Equal(r.Signer().Certificate()) {
		t.Errorf("responses not signed by the new responder certificate: this %v cert serial %x new %x old %x", resp.ThisUpdate, resp.Certificate.SerialNumber, r.Signer().Certificate().SerialNumber, firstResponder.SerialNumber)
	}
	if resp.NextUpdate.After(r.Signer().Certificate().NotAfter) {
		t.Error("response outlives its responder certificate")
	}
}

// TestOCSPRefreshEveryInterval drives Refresh as the ocsp-refresh job does,
// every RefreshInterval of the fake clock: the responses are re-signed by
// the time they pass half their validity.
func TestOCSPRefreshEveryInterval(t *testing.T) {
	e := newEnv(t)
	c := e.issue("tick.example.com")
	r := e.responder(OCSPConfig{Validity: 8 * time.Hour, ResponderValidity: 16 * time.Hour})
	inter := e.auth.Intermediate().Cert
	der := request(t, c, inter, crypto.SHA1)
	before := parse(t, post(t, r.Handler(), der), c, inter).ThisUpdate
	// The job runs every validity/8 = 1h; at 4h the responses pass half-life.
	if got := r.RefreshInterval(); got != time.Hour {
		t.Fatalf("RefreshInterval = %s, want 1h", got)
	}
	for range 4 {
		e.clk.Advance(r.RefreshInterval())
		if _, err := r.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := parse(t, post(t, r.Handler(), der), c, inter).ThisUpdate; !got.After(before) {
		t.Error("refresh did not re-sign after the clock passed half the validity")
	}
}

func TestOCSPRestartServesStoredCopy(t *testing.T) {
	e := newEnv(t)
	c := e.issue("restart.example.com")
	r := e.responder(OCSPConfig{})
	inter := e.auth.Intermediate().Cert
	der := request(t, c, inter, crypto.SHA1)
	before := post(t, r.Handler(), der).Body.Bytes()
	r.Close()
	e.reopen()
	e.clk.Advance(time.Minute)
	r2, err := NewResponder(OCSPConfig{Clock: e.clk, Logger: slog.New(slog.DiscardHandler)}, e.auth, e.st)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if n := len(r2.idx.Load().byID[e.auth.Intermediate().ID].entries); n < 1 {
		t.Fatalf("loaded %d stored responses", n)
	}
	// Served from the store copy, before any signing.
	if after := post(t, r2.Handler(), der).Body.Bytes(); !bytes.Equal(after, before) {
		t.Error("after restart the response differs from the stored copy")
	}
	// Start signs nothing that is still fresh.
	signedBefore := counterValue(t, r2.metrics.signed)
	if err := r2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if after := post(t, r2.Handler(), der).Body.Bytes(); !bytes.Equal(after, before) {
		t.Error("Start re-signed a fresh stored response")
	}
	// Nothing is signed: the responder certificate is reused, and its own
	// responses were stored too.
	if got := counterValue(t, r2.metrics.signed) - signedBefore; got != 0 {
		t.Errorf("Start signed %v responses, want 0", got)
	}
	if !r2.Signer().Certificate().Equal(r.Signer().Certificate()) {
		t.Error("a new responder certificate after a restart")
	}
}

// TestOCSPResponderKeyLifecycle: restarts reuse the responder certificate
// and key; the refresh before its half-life rotates it, re-signs every
// response and retires the old key; the refresh after the old certificate
// expires destroys the old key. One active responder key throughout.
func TestOCSPResponderKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.issue("life.example.com")
	cfg := OCSPConfig{Validity: 24 * time.Hour, ResponderValidity: 72 * time.Hour}
	r := e.responder(cfg)
	first := r.Signer()
	for i := range 2 {
		r.Close()
		e.clk.Advance(time.Hour)
		e.reopen()
		r = e.responder(cfg)
		if r.Signer().KeyID() != first.KeyID() || !r.Signer().Certificate().Equal(first.Certificate()) {
			t.Fatalf("restart %d: responder %s, want %s reused", i+1, r.Signer().KeyID(), first.KeyID())
		}
	}
	e.checkOCSPKeys(map[string]int{store.KeyActive: 1})

	// The refresh interval is 3h: the refresh whose successor would come
	// after the half-life rotates.
	e.clk.Advance(first.RenewAt().Sub(e.clk.Now()) - 4*time.Hour)
	if _, err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Signer().KeyID() != first.KeyID() {
		t.Fatal("rotated more than a refresh interval before the half-life")
	}
	e.clk.Advance(2 * time.Hour)
	if _, err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := r.Signer()
	if second.KeyID() == first.KeyID() {
		t.Fatal("not rotated at the last refresh before the half-life")
	}
	if !e.clk.Now().Before(first.RenewAt()) {
		t.Fatal("test clock past the half-life")
	}
	inter := e.auth.Intermediate().Cert
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		resp := parse(t, get(t, r.Handler(), "/ocsp/"+base64.StdEncoding.EncodeToString(request(t, c, inter, h))), c, inter)
		if !resp.Certificate.Equal(second.Certificate()) {
			t.Errorf("%v: cached response not re-signed by the new responder", h)
		}
	}
	e.checkOCSPKeys(map[string]int{store.KeyActive: 1, store.KeyRetired: 1})
	e.checkAudit("key.retired", first.KeyID(), 1)

	// The refreshes up to the old certificate's notAfter neither destroy
	// the old key nor touch the new one.
	for e.clk.Now().Add(3 * time.Hour).Before(first.Certificate().NotAfter) {
		e.clk.Advance(3 * time.Hour)
		if _, err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if !r.rotationDue(second, e.clk.Now()) && r.Signer().KeyID() != second.KeyID() {
			t.Fatal("rotated again before the new responder's half-life")
		}
	}
	e.checkOCSPKeys(map[string]int{store.KeyActive: 1, store.KeyRetired: 1 + btoi(r.Signer() != second)})
	e.checkAudit("key.destroyed", first.KeyID(), 0)

	// Past the old certificate's notAfter, the next refresh destroys it.
	e.clk.Advance(first.Certificate().NotAfter.Sub(e.clk.Now()) + time.Minute)
	if _, err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkAudit("key.destroyed", first.KeyID(), 1)
	if k, err := e.st.Key(ctx, first.KeyID()); err != nil || k.State != store.KeyDestroyed || k.WrappedDEK != nil || k.Ciphertext != nil {
		t.Errorf("destroyed key %s: %v, state %s, still %d+%d bytes of key material", first.KeyID(), err, k.State, len(k.WrappedDEK), len(k.Ciphertext))
	}
	// By then the second responder has passed its own half-life: the third
	// is active, the second retired until its certificate expires.
	if r.Signer().KeyID() == second.KeyID() {
		t.Fatal("second responder not rotated by its half-life")
	}
	e.checkOCSPKeys(map[string]int{store.KeyActive: 1, store.KeyRetired: 1, store.KeyDestroyed: 1})
	e.checkAudit("key.retired", second.KeyID(), 1)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkOCSPKeys compares the responder keys' count by state.
func (e *env) checkOCSPKeys(want map[string]int) {
	e.t.Helper()
	keys, err := e.auth.KeyInventory(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	got := map[string]int{}
	for _, k := range keys {
		if k.Purpose == ca.KeyPurposeOCSP {
			got[k.State]++
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("ocsp keys by state: %v, want %v", got, want)
	}
}

func (e *env) checkAudit(action, target string, want int) {
	e.t.Helper()
	evs, _, err := e.auth.AuditEvents(context.Background(), store.AuditFilter{Action: action, Target: target})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(evs) != want {
		e.t.Errorf("%d %s events for %s, want %d", len(evs), action, target, want)
	}
}

func TestOCSPNewCertificateAfterStart(t *testing.T) {
	e := newEnv(t)
	r := e.responder(OCSPConfig{})
	c := e.issue("late.example.com")
	inter := e.auth.Intermediate().Cert
	der := request(t, c, inter, crypto.SHA1)
	if resp := parse(t, post(t, r.Handler(), der), c, inter); resp.Status != ocsp.Good {
		t.Errorf("certificate issued after start: status %d, want good", resp.Status)
	}
	if got := counterValue(t, r.metrics.misses); got != 1 {
		t.Errorf("misses %v, want 1", got)
	}
	post(t, r.Handler(), der)
	if got := counterValue(t, r.metrics.hits); got != 1 {
		t.Errorf("hits %v, want 1 (the second request)", got)
	}
}

// TestOCSPNewCertificateSmallSerial: a certificate issued after start whose
// serial's hex form would start with a zero nibble if printed from its bytes
// is still found in the store (one serial in sixteen; the e2e test flaked).
func TestOCSPNewCertificateSmallSerial(t *testing.T) {
	e := newEnv(t)
	r := e.responder(OCSPConfig{})
	inter := e.auth.Intermediate().Cert
	for i := 0; i < 200; i++ {
		c := e.issue(fmt.Sprintf("late%d.example.com", i))
		if c.SerialNumber.Bytes()[0] >= 0x10 {
			continue
		}
		if resp := parse(t, post(t, r.Handler(), request(t, c, inter, crypto.SHA256)), c, inter); resp.Status != ocsp.Good {
			t.Fatalf("serial %x issued after start: status %d, want good", c.SerialNumber, resp.Status)
		}
		return
	}
	t.Fatal("no serial with a small first byte in 200 certificates")
}

func TestOCSPSignWithIssuer(t *testing.T) {
	e := newEnv(t)
	c := e.issue("iss.example.com")
	r := e.responder(OCSPConfig{SignWithIssuer: true})
	inter := e.auth.Intermediate().Cert
	resp := parse(t, post(t, r.Handler(), request(t, c, inter, crypto.SHA1)), c, inter)
	if resp.Status != ocsp.Good || resp.Certificate != nil {
		t.Errorf("status %d, embedded certificate %v", resp.Status, resp.Certificate != nil)
	}
}

// TestOCSPRotateIfDue: with the refresh left to the scheduler, RotateIfDue
// rotates the responder certificate only once the next refresh would pass
// its half-life, and the new one signs what is served.
func TestOCSPRotateIfDue(t *testing.T) {
	e := newEnv(t)
	c := e.issue("rotate.example.com")
	r := e.responder(OCSPConfig{Validity: 24 * time.Hour, ResponderValidity: 72 * time.Hour})
	inter := e.auth.Intermediate().Cert
	first := r.Signer().Certificate()
	if r.RefreshInterval() != 3*time.Hour {
		t.Errorf("refresh interval %s, want an eighth of the validity", r.RefreshInterval())
	}
	// Half-life at 36h; the last refresh before it is due from 33h.
	e.clk.Advance(32 * time.Hour)
	if rotated, err := r.RotateIfDue(context.Background()); err != nil || rotated {
		t.Fatalf("at 32h: rotated %v, %v; want no rotation", rotated, err)
	}
	e.clk.Advance(time.Hour)
	if rotated, err := r.RotateIfDue(context.Background()); err != nil || !rotated {
		t.Fatalf("at 33h: rotated %v, %v; want a rotation", rotated, err)
	}
	next := r.Signer().Certificate()
	if next.Equal(first) {
		t.Fatal("signer unchanged after rotation")
	}
	resp := parse(t, post(t, r.Handler(), request(t, c, inter, crypto.SHA256)), c, inter)
	if resp.Certificate == nil || !resp.Certificate.Equal(next) {
		t.Error("response not signed by the new responder certificate")
	}
}
