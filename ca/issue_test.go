package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

const testBaseURL = "http://ca.test:8080"

// subjectAlgs are the subject key types every default profile must issue for.
var subjectAlgs = []keystore.Algorithm{keystore.ECDSAP256, keystore.ECDSAP384, keystore.RSA2048, keystore.RSA3072, keystore.Ed25519}

// withProfiles returns a second Authority over tc's store and keys that
// serves profiles in addition to the default ones.
func withProfiles(t testing.TB, tc *testCA, extra map[string]Profile) *Authority {
	t.Helper()
	profiles := DefaultProfiles()
	for name, p := range extra {
		profiles[name] = p
	}
	a, err := New(context.Background(), Config{
		Profiles: profiles, BaseURL: testBaseURL, Clock: tc.clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// csrTemplate signs a CSR for tmpl with key and returns it parsed.
func csrTemplate(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// gateLintFailures runs the whole zlint registry on der and returns the
// failed lints (error, warning, fatal) whose source is one the issuance gate
// enforces, and separately every other failed lint.
func gateLintFailures(t testing.TB, der []byte) (gate, other []string) {
	t.Helper()
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto parse: %v", err)
	}
	rs := zlint.LintCertificate(zc)
	reg := lint.GlobalRegistry()
	for name, r := range rs.Results {
		if r.Status != lint.Error && r.Status != lint.Warn && r.Status != lint.Fatal {
			continue
		}
		desc := fmt.Sprintf("%s (%s)", name, r.Status)
		if r.Details != "" {
			desc += ": " + r.Details
		}
		l := reg.ByName(name)
		if l != nil && slices.Contains(gateSources(), l.Source) {
			gate = append(gate, desc)
		} else {
			other = append(other, desc)
		}
	}
	sort.Strings(gate)
	sort.Strings(other)
	return gate, other
}

func extKeyUsagesOf(p Profile) []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	for _, n := range p.ExtKeyUsage {
		eku, ok := extKeyUsageByName(n)
		if !ok {
			panic("unknown ext_key_usage " + n)
		}
		out = append(out, eku)
	}
	return out
}

// serialSet records serials across parallel subtests.
type serialSet struct {
	mu   sync.Mutex
	seen map[string]string
}

func (s *serialSet) add(serial, who string) (prev string, dup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]string{}
	}
	if prev, ok := s.seen[serial]; ok {
		return prev, true
	}
	s.seen[serial] = who
	return "", false
}

// TestIssueMatrix issues with every default profile, for every subject key
// type, from intermediates of several key types, and checks each leaf
// against RFC 5280 as x509.Verify, zlint and our own profile rules see it.
func TestIssueMatrix(t *testing.T) {
	t.Parallel()
	keys := map[keystore.Algorithm]crypto.Signer{}
	for _, alg := range subjectAlgs {
		keys[alg] = mustKey(t, alg)
	}
	setups := []struct{ root, inter keystore.Algorithm }{
		{keystore.ECDSAP384, keystore.ECDSAP256},
		{keystore.ECDSAP384, keystore.ECDSAP384},
		{keystore.RSA2048, keystore.RSA2048},
		{keystore.Ed25519, keystore.Ed25519},
		{keystore.ECDSAP256, keystore.RSA2048}, // mixed-algorithm chain
	}
	profileNames := make([]string, 0, len(DefaultProfiles()))
	for name := range DefaultProfiles() {
		profileNames = append(profileNames, name)
	}
	sort.Strings(profileNames)
	var serials serialSet
	for _, s := range setups {
		t.Run(fmt.Sprintf("root=%s/int=%s", s.root, s.inter), func(t *testing.T) {
			t.Parallel()
			tc := newTestCA(t, s.root, s.inter)
			for _, c := range []*x509.Certificate{tc.Root().Cert, tc.Intermediate().Cert} {
				if gate, _ := gateLintFailures(t, c.Raw); len(gate) > 0 {
					t.Errorf("%s: zlint: %s", c.Subject.CommonName, strings.Join(gate, "; "))
				}
			}
			for _, profName := range profileNames {
				for _, alg := range subjectAlgs {
					t.Run(profName+"/"+string(alg), func(t *testing.T) {
						t.Parallel()
						checkIssue(t, tc, profName, alg, keys[alg], &serials)
					})
				}
			}
		})
	}
}

func checkIssue(t *testing.T, tc *testCA, profName string, alg keystore.Algorithm, key crypto.Signer, serials *serialSet) {
	ctx := context.Background()
	prof := tc.cfg.Profiles[profName]
	spiffe, _ := url.Parse("spiffe://example.org/ns/prod/sa/web")
	csr := csrTemplate(t, key, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "Svc.Example.com."},
		DNSNames:    []string{"svc.example.com", "alt.example.com"},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::10")},
		URIs:        []*url.URL{spiffe},
	})
	iss, err := tc.Sign(ctx, SignRequest{CSR: csr, Profile: profName, Requester: "token:matrix", Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if len(iss.Chain) != 2 || !bytes.Equal(iss.Chain[1], tc.Intermediate().Cert.Raw) {
		t.Fatalf("chain has %d certificates, want leaf and the intermediate", len(iss.Chain))
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatalf("parse leaf: %v", err)
	}
	inter := tc.Intermediate().Cert

	// Path validation for every EKU the profile grants.
	roots := x509.NewCertPool()
	roots.AddCert(tc.Root().Cert)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	for _, eku := range extKeyUsagesOf(prof) {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "alt.example.com",
			CurrentTime: tc.clk.Now(), KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("Verify for EKU %v: %v", eku, err)
		}
	}
	if err := leaf.CheckSignatureFrom(inter); err != nil {
		t.Errorf("leaf not signed by the intermediate: %v", err)
	}

	// The full zlint registry; RFC sources must be clean.
	gate, other := gateLintFailures(t, leaf.Raw)
	if len(gate) > 0 {
		t.Errorf("zlint RFC lints failed: %s", strings.Join(gate, "; "))
	}
	if len(other) > 0 && testing.Verbose() {
		t.Logf("zlint non-gating findings: %s", strings.Join(other, "; "))
	}

	// Extensions.
	wantSKI, err := subjectKeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.SubjectKeyId) != 20 || !bytes.Equal(leaf.SubjectKeyId, wantSKI) {
		t.Errorf("SKI = %x, want %x (RFC 7093 method 1)", leaf.SubjectKeyId, wantSKI)
	}
	if len(inter.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
		t.Errorf("AKI = %x, want the intermediate SKI %x", leaf.AuthorityKeyId, inter.SubjectKeyId)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basic constraints valid=%v CA=%v, want present and CA=false", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	isRSA := strings.HasPrefix(string(alg), "rsa-")
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("key usage %b lacks digitalSignature", leaf.KeyUsage)
	}
	// keyEncipherment: RSA keys only (RFC 8813), and only where the profile
	// grants it (tls-client does not: RFC 5280 §4.2.1.12).
	wantKE := isRSA && slices.Contains(prof.KeyUsage, "key_encipherment")
	if got := leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != wantKE {
		t.Errorf("keyEncipherment = %v for a %s key, want %v", got, alg, wantKE)
	}
	if isRSA && profName != "tls-client" && !wantKE {
		t.Errorf("profile %s no longer grants keyEncipherment to RSA keys", profName)
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDataEncipherment) != 0 {
		t.Errorf("key usage %b has bits the profile does not grant", leaf.KeyUsage)
	}
	if alg == keystore.Ed25519 && leaf.KeyUsage&x509.KeyUsageKeyAgreement != 0 {
		t.Errorf("Ed25519 leaf has keyAgreement")
	}
	if !slices.Equal(leaf.ExtKeyUsage, extKeyUsagesOf(prof)) || len(leaf.UnknownExtKeyUsage) > 0 {
		t.Errorf("EKU = %v, want %v", leaf.ExtKeyUsage, extKeyUsagesOf(prof))
	}
	intID := tc.Intermediate().ID
	if intID != IssuerID(inter) {
		t.Errorf("intermediate ID %s, want %s", intID, IssuerID(inter))
	}
	if want := []string{testBaseURL + "/ocsp"}; !slices.Equal(leaf.OCSPServer, want) {
		t.Errorf("AIA OCSP = %q, want %q", leaf.OCSPServer, want)
	}
	if want := []string{testBaseURL + "/issuer/" + intID + ".crt"}; !slices.Equal(leaf.IssuingCertificateURL, want) {
		t.Errorf("AIA caIssuers = %q, want %q", leaf.IssuingCertificateURL, want)
	}
	if want := []string{testBaseURL + "/crl/" + intID + ".crl"}; !slices.Equal(leaf.CRLDistributionPoints, want) {
		t.Errorf("CRL DP = %q, want %q", leaf.CRLDistributionPoints, want)
	}

	// Serial: positive, at most 128 bits, unique.
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x: sign %d, %d bits", leaf.SerialNumber, leaf.SerialNumber.Sign(), leaf.SerialNumber.BitLen())
	}
	if prev, dup := serials.add(SerialString(leaf.SerialNumber), t.Name()); dup {
		t.Errorf("serial %x already issued in %s", leaf.SerialNumber, prev)
	}

	// Names: the CN (normalized to lower case) repeats a SAN.
	if cn := leaf.Subject.CommonName; cn != "svc.example.com" || !slices.Contains(leaf.DNSNames, cn) {
		t.Errorf("CN %q not among DNS SANs %q", cn, leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffe.String() {
		t.Errorf("SANs: IPs %v, URIs %v", leaf.IPAddresses, leaf.URIs)
	}

	// Validity: backdated 1m, 90 days by default.
	now := tc.clk.Now()
	if !leaf.NotBefore.Equal(now.Add(-time.Minute)) || !leaf.NotAfter.Equal(now.Add(90*24*time.Hour)) {
		t.Errorf("validity %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, now.Add(-time.Minute), now.Add(90*24*time.Hour))
	}

	// The record matches the certificate.
	rec, err := tc.st.Certificate(ctx, SerialString(leaf.SerialNumber))
	if err != nil {
		t.Fatalf("stored certificate: %v", err)
	}
	if !bytes.Equal(rec.DER, leaf.Raw) || rec.Profile != profName || rec.IssuerID != intID ||
		rec.KeyAlgorithm != string(alg) || rec.Requester != "token:matrix" || rec.Channel != ChannelAPI {
		t.Errorf("record = %+v", rec)
	}
	if want := []string{"svc.example.com", "alt.example.com", "192.0.2.10", "2001:db8::10", spiffe.String()}; !slices.Equal(rec.SANs, want) {
		t.Errorf("record SANs = %q, want %q", rec.SANs, want)
	}
}

// TestIssueOpenSSLVerify checks chains with an independent verifier.
func TestIssueOpenSSLVerify(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("SKIPPING OPENSSL INTEROP: openssl is not on PATH; chains are not checked by an independent verifier")
	}
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.RSA2048, keystore.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			tc := newTestCA(t, alg, alg)
			dir := t.TempDir()
			write := func(name string, der []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			root := write("root.pem", tc.Root().Cert.Raw)
			inter := write("inter.pem", tc.Intermediate().Cert.Raw)
			for _, subj := range []keystore.Algorithm{keystore.ECDSAP256, keystore.RSA2048, keystore.Ed25519} {
				for _, c := range []struct{ profile, purpose string }{
					{"tls-server", "sslserver"}, {"tls-client", "sslclient"}, {"tls-server-client", "sslserver"},
				} {
					csr := newCSR(t, mustKey(t, subj), "web.example.com", "web.example.com")
					iss, err := tc.Sign(context.Background(), SignRequest{CSR: csr, Profile: c.profile, Channel: ChannelAPI})
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					leaf := write(fmt.Sprintf("leaf-%s-%s.pem", subj, c.profile), iss.Chain[0])
					// The fake clock is not the wall clock: verify at its time.
					at := strconv.FormatInt(tc.clk.Now().Unix(), 10)
					cmd := exec.Command(openssl, "verify", "-x509_strict", "-attime", at, "-purpose", c.purpose,
						"-verify_hostname", "web.example.com", "-CAfile", root, "-untrusted", inter, leaf)
					out, err := cmd.CombinedOutput()
					if err != nil || !strings.Contains(string(out), ": OK") {
						t.Errorf("openssl verify (%s leaf, %s): %v\n%s", subj, c.profile, err, out)
					}
				}
			}
			// A leaf verified a year later is expired: -attime is honoured.
			csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "web.example.com", "web.example.com")
			iss, err := tc.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server", Channel: ChannelAPI})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			leaf := write("leaf-late.pem", iss.Chain[0])
			late := strconv.FormatInt(tc.clk.Now().Add(365*24*time.Hour).Unix(), 10)
			out, err := exec.Command(openssl, "verify", "-attime", late, "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
			if err == nil {
				t.Errorf("openssl verified an expired leaf:\n%s", out)
			}
		})
	}
}

// refusalCheck counts certificate rows and audit events around a Sign call
// that must be refused.
type refusalCheck struct {
	tc    *testCA
	certs int
	head  int64
}

func startRefusal(t *testing.T, tc *testCA) refusalCheck {
	t.Helper()
	ctx := context.Background()
	certs, _, err := tc.st.Certificates(ctx, store.CertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	head, err := tc.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return refusalCheck{tc: tc, certs: len(certs), head: head.Seq}
}

// done checks err is a refusal of kind with detail containing want, that no
// certificate row was added and that exactly one request.refused event was.
func (r refusalCheck) done(t *testing.T, req SignRequest, iss *Issued, err error, kind Kind, want string) *Error {
	t.Helper()
	ctx := context.Background()
	if err == nil {
		t.Fatalf("Sign issued serial %s, want a %s refusal", iss.Record.Serial, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Sign error %T %v, want *ca.Error", err, err)
	}
	if e.Kind != kind || !errors.Is(err, kind) {
		t.Errorf("kind = %s, want %s (%v)", e.Kind, kind, err)
	}
	if !strings.Contains(e.Detail, want) {
		t.Errorf("detail = %q, want it to contain %q", e.Detail, want)
	}
	if iss != nil {
		t.Errorf("Sign returned both a certificate and an error")
	}
	certs, _, lerr := r.tc.st.Certificates(ctx, store.CertFilter{Limit: 1000})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(certs) != r.certs {
		t.Errorf("certificate rows: %d after the refusal, %d before", len(certs), r.certs)
	}
	evs, _, lerr := r.tc.st.AuditEvents(ctx, store.AuditFilter{Cursor: r.head})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(evs) != 1 {
		t.Fatalf("%d audit events appended, want 1 (request.refused): %+v", len(evs), evs)
	}
	ev := evs[0]
	if ev.Action != "request.refused" || ev.Target != "" {
		t.Errorf("audit action %q target %q, want request.refused", ev.Action, ev.Target)
	}
	if ev.Detail["reason"] != kind.String() || ev.Detail["detail"] != e.Detail ||
		ev.Detail["profile"] != req.Profile || ev.Detail["channel"] != req.Channel {
		t.Errorf("audit detail = %v", ev.Detail)
	}
	if want := actorOrSystem(req.Requester); ev.Actor != want {
		t.Errorf("audit actor %q, want %q", ev.Actor, want)
	}
	return e
}

func TestSignRefusals(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	restricted := DefaultProfiles()["tls-server"]
	restricted.Names.DNS.Allow = []string{"example.com"}
	// RFC 5280 §4.2.1.12: clientAuth with keyEncipherment fails the lint
	// gate for RSA keys, which nothing before the gate checks.
	lintFails := DefaultProfiles()["tls-client"]
	lintFails.KeyUsage = []string{"digital_signature", "key_encipherment"}
	a := withProfiles(t, tc, map[string]Profile{"restricted": restricted, "lint-fails": lintFails})
	p256 := mustKey(t, keystore.ECDSAP256)
	rsa2048 := mustKey(t, keystore.RSA2048)

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := newCSR(t, p256, "web.example.com", "web.example.com")
	tampered := append([]byte(nil), good.Raw...)
	tampered[len(tampered)-1] ^= 0x01 // last byte of the signature value
	badSig, err := ParseCSR(tampered)
	if err != nil {
		t.Fatalf("ParseCSR of a CSR with a bad signature: %v (structure is intact, only Sign checks signatures)", err)
	}
	userURI, _ := url.Parse("spiffe://admin@example.org/x")
	long := strings.Repeat("a", 60) + ".example.com" // a 72-character DNS name

	tests := []struct {
		name   string
		req    SignRequest
		kind   Kind
		detail string
		subs   []string // identifiers of the expected subproblems
	}{
		{name: "no CSR", req: SignRequest{Profile: "tls-server"}, kind: BadCSR, detail: "no CSR"},
		{name: "CN only", req: SignRequest{CSR: newCSR(t, p256, "web.example.com"), Profile: "tls-server"},
			kind: BadCSR, detail: "CSR has no subject alternative names; a common name alone is not accepted"},
		{name: "CN not among SANs", req: SignRequest{CSR: newCSR(t, p256, "other.example.com", "web.example.com"), Profile: "tls-server"},
			kind: BadCSR, detail: `common name "other.example.com" is not among the subject alternative names`},
		{name: "disallowed name", req: SignRequest{CSR: newCSR(t, p256, "evil.test", "evil.test"), Profile: "restricted"},
			kind: Rejected, detail: "DNS name evil.test is not allowed by the name policy", subs: []string{"evil.test"}},
		{name: "several disallowed names", req: SignRequest{CSR: newCSR(t, p256, "", "ok.example.com", "evil.test", "evil.example"), Profile: "restricted"},
			kind: Rejected, detail: "DNS name evil.test is not allowed by the name policy (and 1 more refused names)", subs: []string{"evil.test", "evil.example"}},
		{name: "wildcard not allowed", req: SignRequest{CSR: newCSR(t, p256, "", "*.example.com"), Profile: "tls-server"},
			kind: Rejected, detail: "wildcard names are not allowed by this profile", subs: []string{"*.example.com"}},
		{name: "weak RSA-1024", req: SignRequest{CSR: newCSR(t, rsa1024, "web.example.com", "web.example.com"), Profile: "tls-server"},
			kind: BadCSR, detail: "RSA key of 1024 bits is too weak (minimum 2048)"},
		{name: "key type not in profile", req: SignRequest{CSR: newCSR(t, p521, "web.example.com", "web.example.com"), Profile: "tls-server"},
			kind: BadCSR, detail: "key type ecdsa-p521 is not allowed by this profile"},
		{name: "bad signature", req: SignRequest{CSR: badSig, Profile: "tls-server"},
			kind: BadCSR, detail: "CSR signature does not verify"},
		{name: "unknown profile", req: SignRequest{CSR: good, Profile: "no-such-profile"},
			kind: Rejected, detail: `unknown profile "no-such-profile"`},
		{name: "validity above max", req: SignRequest{CSR: good, Profile: "tls-server", Validity: 90*24*time.Hour + time.Second},
			kind: Rejected, detail: "requested validity 2160h0m1s exceeds the profile maximum 2160h0m0s"},
		{name: "negative validity", req: SignRequest{CSR: good, Profile: "tls-server", Validity: -time.Hour},
			kind: Malformed, detail: "negative validity"},
		{name: "token restricted to other profiles", req: SignRequest{CSR: good, Profile: "tls-server", AllowedProfiles: []string{"tls-client"}},
			kind: Forbidden, detail: `this token may not issue with profile "tls-server"`},
		{name: "token with no profiles", req: SignRequest{CSR: good, Profile: "tls-server", AllowedProfiles: []string{}},
			kind: Forbidden, detail: "may not issue"},
		{name: "invalid DNS name", req: SignRequest{CSR: newCSR(t, p256, "", "bad_name.example.com"), Profile: "tls-server"},
			kind: BadCSR, detail: `DNS name "bad_name.example.com"`},
		{name: "IP in a DNS SAN", req: SignRequest{CSR: newCSR(t, p256, "", "192.0.2.1"), Profile: "tls-server"},
			kind: BadCSR, detail: "an IP address is not a DNS name"},
		{name: "unspecified IP", req: SignRequest{CSR: csrTemplate(t, p256, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4zero}}), Profile: "tls-server"},
			kind: BadCSR, detail: "IP address 0.0.0.0 is unspecified"},
		{name: "URI with user info", req: SignRequest{CSR: csrTemplate(t, p256, &x509.CertificateRequest{URIs: []*url.URL{userURI}}), Profile: "tls-server"},
			kind: BadCSR, detail: "has user info"},
		{name: "email with display name", req: SignRequest{CSR: csrTemplate(t, p256, &x509.CertificateRequest{EmailAddresses: []string{"Alice <alice@example.com>"}}), Profile: "tls-server"},
			kind: BadCSR, detail: "is malformed"},
		// RFC 5280 ub-common-name is 64.
		{name: "long common name", req: SignRequest{CSR: newCSR(t, p256, long, long), Profile: "tls-server"},
			kind: BadCSR, detail: "common name is longer than 64 characters"},
		// The lint gate refuses before the real key signs.
		{name: "lint gate", req: SignRequest{CSR: newCSR(t, rsa2048, "client.example.com", "client.example.com"), Profile: "lint-fails"},
			kind: Rejected, detail: "certificate failed pre-issuance lint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sequential: each case counts rows and events.
			tt.req.Requester = "token:refusals"
			tt.req.Channel = ChannelAPI
			check := startRefusal(t, tc)
			iss, err := a.Sign(context.Background(), tt.req)
			e := check.done(t, tt.req, iss, err, tt.kind, tt.detail)
			var subs []string
			for _, s := range e.Sub {
				subs = append(subs, s.Identifier)
			}
			if !slices.Equal(subs, tt.subs) {
				t.Errorf("subproblems for %q, want %q", subs, tt.subs)
			}
		})
	}

	// The same Authority still issues afterwards.
	if _, err := a.Sign(context.Background(), SignRequest{CSR: good, Profile: "restricted", Channel: ChannelAPI}); err != nil {
		t.Errorf("Sign after refusals: %v", err)
	}
}

func TestParseCSR(t *testing.T) {
	t.Parallel()
	key := mustKey(t, keystore.ECDSAP256)
	csr := newCSR(t, key, "web.example.com", "web.example.com")
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})
	random := make([]byte, 2048)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0] = 0x42 // not a SEQUENCE, nor a PEM "-----BEGIN" by chance
	tests := []struct {
		name   string
		in     []byte
		detail string // substring of the BadCSR detail; empty: must parse
	}{
		{name: "PEM", in: pemCSR},
		{name: "DER", in: csr.Raw},
		{name: "legacy PEM type", in: pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: csr.Raw})},
		{name: "PEM with trailing whitespace", in: append(append([]byte(nil), pemCSR...), "\n\r\n\t "...)},
		{name: "PEM with CRLF", in: bytes.ReplaceAll(pemCSR, []byte("\n"), []byte("\r\n"))},
		{name: "empty", in: nil, detail: "empty CSR"},
		{name: "oversized", in: append(bytes.Repeat([]byte{' '}, MaxCSRBytes-len(pemCSR)+1), pemCSR...), detail: fmt.Sprintf("CSR larger than %d bytes", MaxCSRBytes)},
		{name: "oversized garbage", in: make([]byte, 1<<20), detail: "CSR larger than"},
		{name: "random bytes", in: random, detail: "cannot parse CSR"},
		{name: "text", in: []byte("hello, CA"), detail: "cannot parse CSR"},
		{name: "PEM certificate", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: csr.Raw}), detail: `PEM block is "CERTIFICATE", want CERTIFICATE REQUEST`},
		{name: "PEM private key", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), detail: `PEM block is "PRIVATE KEY"`},
		{name: "PEM trailing data", in: append(append([]byte(nil), pemCSR...), "extra"...), detail: "trailing data after the CSR PEM block"},
		{name: "two PEM blocks", in: append(append([]byte(nil), pemCSR...), pemCSR...), detail: "trailing data"},
		{name: "DER trailing data", in: append(append([]byte(nil), csr.Raw...), 0, 0), detail: "cannot parse CSR"},
		{name: "DER truncated", in: csr.Raw[:len(csr.Raw)/2], detail: "cannot parse CSR"},
		{name: "PEM truncated", in: pemCSR[:len(pemCSR)/2], detail: "malformed PEM"},
		{name: "PEM bad base64", in: []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n"), detail: "malformed PEM"},
		{name: "PEM of garbage", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("garbage")}), detail: "cannot parse CSR"},
		{name: "PEM of a certificate", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: selfSigned(t, key)}), detail: "cannot parse CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCSR(tt.in)
			if tt.detail == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				if !bytes.Equal(got.Raw, csr.Raw) {
					t.Errorf("parsed a different CSR")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseCSR accepted %q", truncate(tt.in))
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != BadCSR || !errors.Is(err, BadCSR) {
				t.Fatalf("ParseCSR error %T %v, want a BadCSR *ca.Error", err, err)
			}
			if !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", e.Detail, tt.detail)
			}
		})
	}
}

func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func TestCSRNames(t *testing.T) {
	t.Parallel()
	key := mustKey(t, keystore.ECDSAP256)
	u, _ := url.Parse("spiffe://example.org/web")
	tests := []struct {
		name    string
		tmpl    x509.CertificateRequest
		want    []string // Names.Strings()
		wantCN  string
		wantErr string
	}{
		{name: "normalizes case and trailing dot, dedups",
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "WEB.example.com."}, DNSNames: []string{"Web.Example.com.", "web.example.com", "api.example.com"}},
			want: []string{"web.example.com", "api.example.com"}, wantCN: "web.example.com"},
		{name: "no CN is fine",
			tmpl: x509.CertificateRequest{DNSNames: []string{"web.example.com"}}, want: []string{"web.example.com"}},
		{name: "IPv4 normalized and deduplicated",
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "192.0.2.1"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("::ffff:192.0.2.1"), net.ParseIP("2001:db8::1")}},
			want: []string{"192.0.2.1", "2001:db8::1"}, wantCN: "192.0.2.1"},
		{name: "email CN",
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}, EmailAddresses: []string{"alice@example.com"}},
			want: []string{"alice@example.com"}, wantCN: "alice@example.com"},
		{name: "URI CN",
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: u.String()}, URIs: []*url.URL{u}},
			want: []string{u.String()}, wantCN: u.String()},
		{name: "wildcard kept", tmpl: x509.CertificateRequest{DNSNames: []string{"*.example.com"}}, want: []string{"*.example.com"}},
		{name: "CN only", tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "web.example.com"}},
			wantErr: "no subject alternative names"},
		{name: "CN is not a SAN", tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.example.com"}, DNSNames: []string{"web.example.com"}},
			wantErr: "not among the subject alternative names"},
		{name: "email domain bad", tmpl: x509.CertificateRequest{EmailAddresses: []string{"a@exa_mple.com"}}, wantErr: "domain"},
		{name: "IPv6 unspecified", tmpl: x509.CertificateRequest{IPAddresses: []net.IP{net.IPv6unspecified}}, wantErr: "unspecified"},
		{name: "empty DNS name", tmpl: x509.CertificateRequest{DNSNames: []string{"."}}, wantErr: "empty DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl := tt.tmpl
			csr := csrTemplate(t, key, &tmpl)
			n, cn, err := csrNames(csr)
			if tt.wantErr != "" {
				if err == nil || KindOf(err) != BadCSR || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("csrNames = %v, want BadCSR containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("csrNames: %v", err)
			}
			if !slices.Equal(n.Strings(), tt.want) || cn != tt.wantCN {
				t.Errorf("csrNames = %q, CN %q; want %q, CN %q", n.Strings(), cn, tt.want, tt.wantCN)
			}
		})
	}
}

func TestSignValidity(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	short := DefaultProfiles()["tls-client"]
	short.MaxValidity = Duration(5 * time.Minute)
	withDefault := DefaultProfiles()["tls-client"]
	withDefault.MaxValidity = Duration(time.Hour)
	withDefault.DefaultValidity = Duration(10 * time.Minute)
	a := withProfiles(t, tc, map[string]Profile{"short": short, "default-10m": withDefault})
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "svc.example.com", "svc.example.com")
	tests := []struct {
		name     string
		profile  string
		validity time.Duration
		want     time.Duration // NotAfter - NotBefore
	}{
		{name: "max 5m by default", profile: "short", want: 5*time.Minute + time.Minute},
		{name: "explicit 2m", profile: "short", validity: 2 * time.Minute, want: 3 * time.Minute},
		{name: "explicit 5m", profile: "short", validity: 5 * time.Minute, want: 6 * time.Minute},
		{name: "default validity", profile: "default-10m", want: 11 * time.Minute},
		{name: "explicit within max", profile: "default-10m", validity: time.Hour, want: 61 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iss, err := a.Sign(context.Background(), SignRequest{CSR: csr, Profile: tt.profile, Validity: tt.validity})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			leaf, err := x509.ParseCertificate(iss.Chain[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tt.want {
				t.Errorf("NotAfter-NotBefore = %s, want %s", got, tt.want)
			}
			if want := tc.clk.Now().Add(-time.Minute); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s (1m backdate)", leaf.NotBefore, want)
			}
			if !iss.Record.NotAfter.Equal(leaf.NotAfter) || !iss.Record.NotBefore.Equal(leaf.NotBefore) {
				t.Errorf("record validity %s..%s, certificate %s..%s", iss.Record.NotBefore, iss.Record.NotAfter, leaf.NotBefore, leaf.NotAfter)
			}
		})
	}
	t.Run("short refused above max", func(t *testing.T) {
		t.Parallel()
		_, err := a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "short", Validity: 5*time.Minute + time.Second})
		if KindOf(err) != Rejected {
			t.Errorf("Sign = %v, want rejected", err)
		}
	})
}

// TestSignCappedAtIntermediate: a leaf never outlives its issuer.
func TestSignCappedAtIntermediate(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	inter := tc.Intermediate().Cert
	tc.clk.Advance(inter.NotAfter.Sub(tc.clk.Now()) - 24*time.Hour)
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "svc.example.com", "svc.example.com")
	iss, err := tc.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server"})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.Equal(inter.NotAfter) {
		t.Errorf("NotAfter = %s, want the intermediate's %s", leaf.NotAfter, inter.NotAfter)
	}
}
