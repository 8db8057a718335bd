package revocation

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

const testBaseURL = "http://ca.test:8080"

var testStart = testclock.At(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))

// testEnv is a CA on a real SQLite file with a fake clock and a publisher.
type testEnv struct {
	auth *ca.Authority
	st   *store.SQLite
	clk  *clockwork.FakeClock
	pub  *Publisher
	path string
	ks   *keystore.Keystore
}

func newTestEnv(t testing.TB, shards int) *testEnv {
	t.Helper()
	clk := clockwork.NewFakeClockAt(testStart)
	tc := testca.New(t, testca.Options{Name: "CRL Test", Clock: clk})
	st, path, res := tc.Store, tc.Path, tc.Init
	e := &testEnv{st: st, clk: clk, path: path, ks: res.Keystore}
	e.auth = e.newAuthority(t, shards)
	e.pub = e.newPublisher(t)
	return e
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *testEnv) newAuthority(t testing.TB, shards int) *ca.Authority {
	t.Helper()
	a, err := ca.New(context.Background(), ca.Config{Profiles: ca.DefaultProfiles(), BaseURL: testBaseURL, Clock: e.clk,
		Logger: discard(), CRLShards: shards}, e.st, e.ks)
	if err != nil {
		t.Fatalf("ca.New: %v", err)
	}
	return a
}

func (e *testEnv) newPublisher(t testing.TB) *Publisher {
	t.Helper()
	p, err := NewPublisher(CRLConfig{Clock: e.clk, Logger: discard()}, e.auth.CRL(), e.st)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	return p
}

// issue signs a tls-server certificate for name, valid for validity (0: the profile default).
func (e *testEnv) issue(t testing.TB, name string, validity time.Duration) *x509.Certificate {
	t.Helper()
	key, err := keystore.Generate(keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := e.auth.Sign(context.Background(), ca.SignRequest{CSR: csr, Profile: "tls-server", Validity: validity, Channel: ca.ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	c, err := x509.ParseCertificate(iss.Record.DER)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *testEnv) revoke(t testing.TB, c *x509.Certificate, reason int, invalidity time.Time) {
	t.Helper()
	if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: ca.SerialString(c.SerialNumber), Reason: reason,
		InvalidityDate: invalidity, Actor: "test", Channel: ca.ChannelCLI}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

// parseCRL parses der, checks its signature against the intermediate and
// that zlint finds no error, and returns it.
func (e *testEnv) parseCRL(t testing.TB, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := crl.CheckSignatureFrom(e.auth.Intermediate().Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	lintCRL(t, der)
	return crl
}

// lintCRL runs every zlint CRL lint except the CA/Browser Forum's, which do
// not apply to an internal CA (they forbid certificateHold, for one).
func lintCRL(t testing.TB, der []byte) {
	t.Helper()
	zcrl, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("zcrypto ParseRevocationList: %v", err)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: lint.SourceList{lint.CABFBaselineRequirements}})
	if err != nil {
		t.Fatal(err)
	}
	rs := zlint.LintRevocationListEx(zcrl, reg)
	if len(rs.Results) == 0 {
		t.Fatalf("zlint ran no CRL lint")
	}
	for name, r := range rs.Results {
		if r.Status == lint.Error || r.Status == lint.Fatal || r.Status == lint.Warn {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
}

func serials(crl *x509.RevocationList) []string {
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, ca.SerialString(e.SerialNumber))
	}
	slices.Sort(out)
	return out
}

func sortedSerials(certs ...*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, ca.SerialString(c.SerialNumber))
	}
	slices.Sort(out)
	return out
}

var (
	oidIDP        = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidInvalidity = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidAKI        = asn1.ObjectIdentifier{2, 5, 29, 35}
)

func findExt(exts []pkix.Extension, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, x := range exts {
		if x.Id.Equal(oid) {
			return x, true
		}
	}
	return pkix.Extension{}, false
}

// idp decodes an IssuingDistributionPoint with one URI (RFC 5280 §5.2.5).
type idp struct {
	DistributionPoint struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	} `asn1:"optional,tag:0"`
	OnlyContainsUserCerts bool `asn1:"optional,tag:1"`
}

func idpURI(t testing.TB, crl *x509.RevocationList) (string, bool) {
	t.Helper()
	x, ok := findExt(crl.Extensions, oidIDP)
	if !ok {
		return "", false
	}
	if !x.Critical {
		t.Errorf("IDP is not critical")
	}
	var v idp
	if rest, err := asn1.Unmarshal(x.Value, &v); err != nil || len(rest) > 0 {
		t.Fatalf("IDP: %v", err)
	}
	if !v.OnlyContainsUserCerts || len(v.DistributionPoint.FullName) != 1 || v.DistributionPoint.FullName[0].Tag != 6 {
		t.Fatalf("IDP = %+v", v)
	}
	return string(v.DistributionPoint.FullName[0].Bytes), true
}

func TestCRLContents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	inter := e.auth.Intermediate()

	// An empty CRL first.
	rec, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	crl := e.parseCRL(t, rec.DER)
	if crl.Number.Int64() != 1 || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("first CRL: number %v, %d entries", crl.Number, len(crl.RevokedCertificateEntries))
	}

	kc, plain, held, valid := e.issue(t, "kc.example", 0), e.issue(t, "plain.example", 0), e.issue(t, "held.example", 0), e.issue(t, "valid.example", 0)
	e.clk.Advance(time.Hour)
	invalidity := testStart.Add(30 * time.Minute)
	e.revoke(t, kc, ca.ReasonKeyCompromise, invalidity)
	e.revoke(t, plain, ca.ReasonUnspecified, time.Time{})
	e.revoke(t, held, ca.ReasonCertificateHold, time.Time{})
	revokedAt := e.clk.Now().UTC().Truncate(time.Second)

	rec, err = e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	crl = e.parseCRL(t, rec.DER)
	if crl.Number.Int64() != 2 || rec.Number != 2 {
		t.Errorf("number %v (record %d), want 2", crl.Number, rec.Number)
	}
	if !crl.ThisUpdate.Equal(revokedAt) || !crl.NextUpdate.Equal(revokedAt.Add(24*time.Hour)) {
		t.Errorf("thisUpdate %v nextUpdate %v, want %v + 24h", crl.ThisUpdate, crl.NextUpdate, revokedAt)
	}
	if !bytes.Equal(crl.AuthorityKeyId, inter.Cert.SubjectKeyId) || len(crl.AuthorityKeyId) == 0 {
		t.Errorf("AKI %x, want %x", crl.AuthorityKeyId, inter.Cert.SubjectKeyId)
	}
	if x, ok := findExt(crl.Extensions, oidAKI); !ok || x.Critical {
		t.Errorf("AKI extension missing or critical")
	}
	if !bytes.Equal(crl.RawIssuer, inter.Cert.RawSubject) {
		t.Errorf("issuer %s, want %s", crl.Issuer, inter.Cert.Subject)
	}
	if uri, ok := idpURI(t, crl); ok {
		t.Errorf("an unpartitioned CRL has an IDP %q", uri)
	}
	if got, want := serials(crl), sortedSerials(kc, plain, held); !slices.Equal(got, want) {
		t.Errorf("entries %v, want %v (not %s)", got, want, ca.SerialString(valid.SerialNumber))
	}
	for _, ent := range crl.RevokedCertificateEntries {
		if !ent.RevocationTime.Equal(revokedAt) {
			t.Errorf("%x revoked at %v, want %v", ent.SerialNumber, ent.RevocationTime, revokedAt)
		}
		inv, hasInv := findExt(ent.Extensions, oidInvalidity)
		switch ent.SerialNumber.Cmp(kc.SerialNumber) {
		case 0:
			if ent.ReasonCode != ca.ReasonKeyCompromise {
				t.Errorf("keyCompromise entry reason %d", ent.ReasonCode)
			}
			var got time.Time
			if !hasInv || inv.Critical {
				t.Fatalf("keyCompromise entry has no non-critical invalidity date")
			}
			if _, err := asn1.UnmarshalWithParams(inv.Value, &got, "generalized"); err != nil || !got.Equal(invalidity) {
				t.Errorf("invalidity date %v (%v), want %v", got, err, invalidity)
			}
		default:
			if hasInv {
				t.Errorf("%x has an invalidity date", ent.SerialNumber)
			}
		}
		if ent.SerialNumber.Cmp(plain.SerialNumber) == 0 {
			// RFC 5280 §5.3.1: unspecified is expressed by no reason code.
			if _, ok := findExt(ent.Extensions, asn1.ObjectIdentifier{2, 5, 29, 21}); ok || ent.ReasonCode != 0 {
				t.Errorf("unspecified entry carries a reason code")
			}
		}
		if ent.SerialNumber.Cmp(held.SerialNumber) == 0 && ent.ReasonCode != ca.ReasonCertificateHold {
			t.Errorf("held entry reason %d", ent.ReasonCode)
		}
	}

	// Released from hold: gone from the next CRL, whose number grows.
	if _, err := e.auth.Unhold(ctx, ca.SerialString(held.SerialNumber), "test"); err != nil {
		t.Fatal(err)
	}
	rec, err = e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	crl = e.parseCRL(t, rec.DER)
	if crl.Number.Int64() != 3 || !slices.Equal(serials(crl), sortedSerials(kc, plain)) {
		t.Errorf("after unhold: number %v, entries %v", crl.Number, serials(crl))
	}
	if stored, err := e.st.CRL(ctx, inter.ID, 0); err != nil || stored.Number != 3 || !bytes.Equal(stored.DER, rec.DER) {
		t.Errorf("stored CRL number %d (%v), want 3 with the served DER", stored.Number, err)
	}

	// Every CRL is in the audit chain with its number, size and digest.
	events, _, err := e.st.AuditEvents(ctx, store.AuditFilter{Action: "crl.published", Target: inter.ID + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d crl.published events, want 3", len(events))
	}
	sum := sha256.Sum256(rec.DER)
	if d := events[2].Detail; d["number"] != "3" || d["entries"] != "2" || d["sha256"] != hex.EncodeToString(sum[:]) || events[2].Actor != "system:crl" {
		t.Errorf("last crl.published event %+v", events[2])
	}
}

// TestCRLExpiredDroppedOnce: a revoked certificate stays listed on the first
// CRL after it expires, and is dropped from the one after.
func TestCRLExpiredDroppedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	short, long := e.issue(t, "short.example", 2*time.Hour), e.issue(t, "long.example", 0)
	e.revoke(t, short, ca.ReasonSuperseded, time.Time{})
	e.revoke(t, long, ca.ReasonSuperseded, time.Time{})
	// An expired certificate revoked late still appears once.
	late := e.issue(t, "late.example", time.Hour)
	for _, step := range []struct {
		advance time.Duration
		want    []*x509.Certificate
	}{
		{0, []*x509.Certificate{short, long}},
		{3 * time.Hour, []*x509.Certificate{short, long}}, // short expired: listed once past expiry
		{time.Hour, []*x509.Certificate{long}},            // then dropped
		{0, []*x509.Certificate{long, late}},              // late: revoked after expiry
		// Revoked in the second of the previous CRL, so maybe after it was
		// built: listed again, to be sure.
		{time.Hour, []*x509.Certificate{long, late}},
		{time.Hour, []*x509.Certificate{long}},
	} {
		e.clk.Advance(step.advance)
		if step.advance == 0 && len(step.want) == 2 && step.want[1] == late {
			e.revoke(t, late, ca.ReasonSuperseded, time.Time{})
		}
		rec, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		crl := e.parseCRL(t, rec.DER)
		if got, want := serials(crl), sortedSerials(step.want...); !slices.Equal(got, want) {
			t.Errorf("CRL %d at %v: entries %v, want %v", rec.Number, e.clk.Now(), got, want)
		}
	}
}

// TestShardedCRL: with 4 shards each certificate's CDP leads to a shard CRL
// whose IDP is that URI and which lists it once revoked, and no other
// shard's certificates.
func TestShardedCRL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 4)
	srv := httptest.NewServer(e.pub.Handler())
	t.Cleanup(srv.Close)
	var certs []*x509.Certificate
	for i := range 16 {
		c := e.issue(t, "s"+strconv.Itoa(i)+".example", 0)
		e.revoke(t, c, ca.ReasonCessationOfOperation, time.Time{})
		certs = append(certs, c)
	}
	if _, err := e.pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	byURL := map[string][]*x509.Certificate{}
	for _, c := range certs {
		byURL[c.CRLDistributionPoints[0]] = append(byURL[c.CRLDistributionPoints[0]], c)
	}
	if len(byURL) < 2 {
		t.Errorf("16 certificates all in one shard: %v", byURL)
	}
	for cdp, want := range byURL {
		u := srv.URL + cdp[len(testBaseURL):]
		der := getURL(t, u, http.StatusOK)
		crl := e.parseCRL(t, der)
		if uri, ok := idpURI(t, crl); !ok || uri != cdp {
			t.Errorf("CRL at %s has IDP %q, want %q", cdp, uri, cdp)
		}
		if got := serials(crl); !slices.Equal(got, sortedSerials(want...)) {
			t.Errorf("CRL at %s lists %v, want %v", cdp, got, sortedSerials(want...))
		}
	}
	// The whole CRL (for certificates issued before partitioning) is
	// published too, empty here, and scoped by its own IDP.
	crl := e.parseCRL(t, getURL(t, srv.URL+"/crl/"+e.auth.Intermediate().ID+".crl", http.StatusOK))
	if uri, ok := idpURI(t, crl); !ok || uri != e.auth.CRL().CRLURL(e.auth.Intermediate().ID, 0) || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("whole CRL: IDP %q, %d entries", uri, len(crl.RevokedCertificateEntries))
	}
}

func getURL(t testing.TB, url string, want int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s, want %d", url, resp.Status, want)
	}
	return body
}

func TestCRLHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 2)
	srv := httptest.NewServer(e.pub.Handler())
	t.Cleanup(srv.Close)
	id := e.auth.Intermediate().ID
	getURL(t, srv.URL+"/crl/"+id+".crl", http.StatusNotFound) // nothing published yet
	if _, err := e.pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour)
	rec, _ := e.pub.Current(id, 1)

	resp, err := http.Get(srv.URL + "/crl/" + id + "/1.crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := resp.Header
	for k, want := range map[string]string{
		"Content-Type":  "application/pkix-crl",
		"Cache-Control": "public, max-age=" + strconv.Itoa(23*3600),
		"Last-Modified": rec.ThisUpdate.Format(http.TimeFormat),
		"Expires":       rec.NextUpdate.Format(http.TimeFormat),
		"ETag":          `"1-1"`,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, rec.DER) {
		t.Errorf("GET: %s, %d bytes", resp.Status, len(body))
	}

	for _, tc := range []struct {
		name   string
		path   string
		header [2]string
		want   int
	}{
		{"if-none-match", "/crl/" + id + "/1.crl", [2]string{"If-None-Match", `"1-1"`}, http.StatusNotModified},
		{"if-none-match stale", "/crl/" + id + "/1.crl", [2]string{"If-None-Match", `"1-0"`}, http.StatusOK},
		{"if-modified-since", "/crl/" + id + "/1.crl", [2]string{"If-Modified-Since", rec.ThisUpdate.Format(http.TimeFormat)}, http.StatusNotModified},
		{"modified since", "/crl/" + id + "/1.crl", [2]string{"If-Modified-Since", rec.ThisUpdate.Add(-time.Hour).Format(http.TimeFormat)}, http.StatusOK},
		{"whole", "/crl/" + id + ".crl", [2]string{}, http.StatusOK},
		{"shard 2", "/crl/" + id + "/2.crl", [2]string{}, http.StatusOK},
		{"shard beyond", "/crl/" + id + "/3.crl", [2]string{}, http.StatusNotFound},
		{"shard 0 spelled out", "/crl/" + id + "/0.crl", [2]string{}, http.StatusNotFound},
		{"leading zero", "/crl/" + id + "/01.crl", [2]string{}, http.StatusNotFound},
		{"no suffix", "/crl/" + id, [2]string{}, http.StatusNotFound},
		{"unknown issuer", "/crl/0123456789abcdef.crl", [2]string{}, http.StatusNotFound},
		{"root", "/crl/" + e.auth.Root().ID + ".crl", [2]string{}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if tc.header[0] != "" {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %s, want %d", tc.path, resp.Status, tc.want)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/crl/"+id+".crl", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.Status, err)
	}
}

// TestCRLSchedule drives the publisher with the fake clock: a revocation
// republishes its shard after the debounce, and Publish, called as the
// crl-publish job calls it an hour later, every CRL.
func TestCRLSchedule(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newTestEnv(t, 2)
	got := make(chan store.CRLRecord, 16)
	e.pub.afterPublish = func(r store.CRLRecord) { got <- r }
	if err := e.pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pub.Stop)
	numbers := map[int]int64{}
	for range 3 { // Start publishes shards 0, 1 and 2
		r := <-got
		numbers[r.Shard] = r.Number
	}
	if len(numbers) != 3 || numbers[0] != 1 || numbers[1] != 1 || numbers[2] != 1 {
		t.Fatalf("Start published %v", numbers)
	}
	c := e.issue(t, "debounce.example", 0)
	shard := ca.CRLShard(c.SerialNumber, 2)
	e.revoke(t, c, ca.ReasonKeyCompromise, time.Time{})
	if err := e.clk.BlockUntilContext(ctx, 1); err != nil { // the debounce timer
		t.Fatal(err)
	}
	e.clk.Advance(2 * time.Second)
	var r store.CRLRecord
	select {
	case r = <-got:
	case <-ctx.Done():
		t.Fatal("no CRL after the debounce")
	}
	if r.Shard != shard || r.Number != 2 {
		t.Errorf("debounced CRL: shard %d number %d, want shard %d number 2", r.Shard, r.Number, shard)
	}
	if crl := e.parseCRL(t, r.DER); !slices.Equal(serials(crl), sortedSerials(c)) {
		t.Errorf("debounced CRL lists %v", serials(crl))
	}

	e.clk.Advance(time.Hour - 2*time.Second)
	if n, err := e.pub.Publish(ctx); err != nil || n != 3 {
		t.Fatalf("Publish = %d, %v; want 3 CRLs", n, err)
	}
	seen := map[int]int64{}
	for range 3 {
		select {
		case r := <-got:
			seen[r.Shard] = r.Number
		case <-ctx.Done():
			t.Fatalf("Publish published only %v", seen)
		}
	}
	if seen[0] != 2 || seen[shard] != 3 || seen[3-shard] != 2 {
		t.Errorf("Publish published %v", seen)
	}
}

// TestCRLRestart: a new publisher on the same database serves the stored
// CRLs without generating, and continues their numbering.
func TestCRLRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	c := e.issue(t, "restart.example", 0)
	e.revoke(t, c, ca.ReasonKeyCompromise, time.Time{})
	first, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	p2 := e.newPublisher(t)
	published := 0
	p2.afterPublish = func(store.CRLRecord) { published++ }
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p2.Stop()
	if got, ok := p2.Current(e.auth.Intermediate().ID, 0); !ok || !bytes.Equal(got.DER, first.DER) || published != 0 {
		t.Errorf("restarted publisher serves number %d (%v), generated %d", got.Number, ok, published)
	}
	next, err := p2.PublishShard(ctx, e.auth.Intermediate().ID, 0)
	if err != nil || next.Number != 2 {
		t.Errorf("next number %d (%v), want 2", next.Number, err)
	}
	// The first publisher has not heard of number 2: it reads the store.
	if again, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0); err != nil || again.Number != 3 {
		t.Errorf("stale publisher number %d (%v), want 3", again.Number, err)
	}
}

func TestNewPublisherRefuses(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 0)
	for _, cfg := range []CRLConfig{
		{Logger: discard()},
		{Clock: e.clk},
		{Clock: e.clk, Logger: discard(), Refresh: 24 * time.Hour},
		{Clock: e.clk, Logger: discard(), Validity: time.Second},
	} {
		if _, err := NewPublisher(cfg, e.auth.CRL(), e.st); err == nil {
			t.Errorf("NewPublisher(%+v) succeeded", cfg)
		}
	}
}

// TestEntryEncoding checks serial encodings against encoding/asn1.
func TestEntryEncoding(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1", "7f", "80", "ff", "100", "0080", "123456789abcdef0123456789abcdef0", "ffffffffffffffffffffffffffffffffffffffff"} {
		enc := newTestTBSBuilder(t)
		if err := enc.add(store.RevokedEntry{Serial: s, RevokedAt: testStart}); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		der := enc.entries()
		var got struct {
			Serial *big.Int
			Time   time.Time
		}
		if _, err := asn1.Unmarshal(der, &got); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		want, _ := new(big.Int).SetString(s, 16)
		if got.Serial.Cmp(want) != 0 {
			t.Errorf("serial %s encoded as %x", s, got.Serial)
		}
	}
	for _, bad := range []string{"", "xyz", "ffffffffffffffffffffffffffffffffffffffffff"} {
		if err := newTestTBSBuilder(t).add(store.RevokedEntry{Serial: bad, RevokedAt: testStart}); err == nil {
			t.Errorf("serial %q encoded", bad)
		}
	}
}

func newTestTBSBuilder(t *testing.T) *tbsBuilder {
	t.Helper()
	enc, err := newTBSBuilder(tbsHead{sigAlg: []byte{0x30, 0}, issuer: []byte{0x30, 0}, thisUpdate: testStart, nextUpdate: testStart.Add(time.Hour), number: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
