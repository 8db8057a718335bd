package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// fuzzSeeds returns CSR encodings that reach every branch of ParseCSR and
// csrNames: PEM and DER, names of every type, CN-only, truncated, wrong PEM
// type, trailing data. More seeds live in testdata/fuzz/<FuzzName>/.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	key := mustKey(tb, keystore.ECDSAP256)
	u, _ := url.Parse("spiffe://example.org/ns/prod/sa/web")
	full := csrTemplate(tb, key, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "Web.Example.com."},
		DNSNames:       []string{"web.example.com", "*.api.example.com"},
		IPAddresses:    []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")},
		EmailAddresses: []string{"ops@example.com"},
		URIs:           []*url.URL{u},
	})
	plain := newCSR(tb, key, "web.example.com", "web.example.com")
	cnOnly := newCSR(tb, key, "web.example.com")
	ed := newCSR(tb, mustKey(tb, keystore.Ed25519), "", "ed.example.com")
	toPEM := func(der []byte, typ string) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	return [][]byte{
		toPEM(full.Raw, "CERTIFICATE REQUEST"),
		full.Raw,
		plain.Raw,
		toPEM(cnOnly.Raw, "NEW CERTIFICATE REQUEST"),
		ed.Raw,
		plain.Raw[:len(plain.Raw)/2],
		toPEM(plain.Raw, "CERTIFICATE"),
		append(toPEM(plain.Raw, "CERTIFICATE REQUEST"), "trailing"...),
		[]byte("-----BEGIN CERTIFICATE REQUEST-----\n"),
		{0x30, 0x82, 0xff, 0xff},
		{},
	}
}

// FuzzParseCSR: parsing and name extraction never panic, refuse only with
// BadCSR, and keep their invariants on whatever they accept.
func FuzzParseCSR(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	profiles := DefaultProfiles()
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			if KindOf(err) != BadCSR {
				t.Fatalf("ParseCSR error of kind %s: %v", KindOf(err), err)
			}
			return
		}
		if csr == nil {
			t.Fatal("ParseCSR returned neither a CSR nor an error")
		}
		names, cn, err := csrNames(csr)
		if err != nil {
			if KindOf(err) != BadCSR {
				t.Fatalf("csrNames error of kind %s: %v", KindOf(err), err)
			}
		} else {
			if names.Count() == 0 {
				t.Fatal("csrNames accepted a CSR without names")
			}
			for _, d := range names.DNS {
				if err := validDNSName(d, true); err != nil {
					t.Fatalf("csrNames kept invalid DNS name %q: %v", d, err)
				}
			}
			for _, ip := range names.IPs {
				if ip.IsUnspecified() || (len(ip) != net.IPv4len && len(ip) != net.IPv6len) {
					t.Fatalf("csrNames kept IP %v", ip)
				}
			}
			if cn != "" && !cnIsSAN(cn, names) {
				t.Fatalf("common name %q is not among %q", cn, names.Strings())
			}
			if len(names.Strings()) != names.Count() {
				t.Fatalf("Strings has %d names, Count %d", len(names.Strings()), names.Count())
			}
			for _, p := range profiles {
				_ = p.Names.Check(names)
			}
		}
		if csr.CheckSignature() != nil {
			return
		}
		alg, err := keystore.AlgorithmOf(csr.PublicKey)
		if err != nil {
			return
		}
		if _, err := subjectKeyID(csr.PublicKey); err != nil {
			t.Fatalf("subjectKeyID of a %s key: %v", alg, err)
		}
		for _, p := range profiles {
			_ = p.checkKey(alg, keystore.RSABits(csr.PublicKey))
			_ = p.keyUsage(alg)
		}
	})
}

// FuzzSignCSR drives fuzzed CSRs through Sign. Each input is signed as is
// (which mostly exercises refusals: a mutation breaks the signature) and
// re-signed with a test key, so that mutated names and subjects reach the
// policy, the certificate builder and the lint gate. Sign must either
// refuse with a non-internal *Error or return a certificate that parses and
// chains to the intermediate.
func FuzzSignCSR(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	tc := newTestCA(f, keystore.ECDSAP256, keystore.ECDSAP256)
	wild := DefaultProfiles()["tls-server-client"]
	wild.Names.AllowWildcards = true
	a := withProfiles(f, tc, map[string]Profile{"wild": wild})
	key := mustKey(f, keystore.ECDSAP256)
	ctx := context.Background()

	sign := func(t *testing.T, csr *x509.CertificateRequest, profile string) {
		t.Helper()
		iss, err := a.Sign(ctx, SignRequest{CSR: csr, Profile: profile, Requester: "fuzz", Channel: ChannelAPI})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Sign returned %T %v, want *ca.Error", err, err)
			}
			if e.Kind == Internal {
				t.Fatalf("Sign failed internally: %v", err)
			}
			if e.Detail == "" {
				t.Fatalf("refusal without detail: %v", err)
			}
			return
		}
		leaf, err := x509.ParseCertificate(iss.Chain[0])
		if err != nil {
			t.Fatalf("issued certificate does not parse: %v", err)
		}
		if err := leaf.CheckSignatureFrom(tc.Intermediate().Cert); err != nil {
			t.Fatalf("issued certificate not signed by the intermediate: %v", err)
		}
		if leaf.IsCA || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses)+len(leaf.URIs) == 0 {
			t.Fatalf("issued CA=%v certificate with names %v %v %v %v", leaf.IsCA, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.URIs)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		sign(t, csr, "tls-server")
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: csr.Subject.CommonName},
			DNSNames:       csr.DNSNames,
			IPAddresses:    csr.IPAddresses,
			EmailAddresses: csr.EmailAddresses,
			URIs:           csr.URIs,
		}, key)
		if err != nil {
			return // names Go will not encode
		}
		resigned, err := ParseCSR(der)
		if err != nil {
			t.Fatalf("ParseCSR of a CSR made by crypto/x509: %v", err)
		}
		sign(t, resigned, "wild")
	})
}

// FuzzParseRevocationReason: the reason parser never panics, refuses only
// with Malformed, and returns only codes one may revoke with, whose names
// parse back to them.
func FuzzParseRevocationReason(f *testing.F) {
	for _, s := range []string{"keyCompromise", "key-compromise", "KEY_COMPROMISE", "1", "01", "7", "8", "10",
		"removeFromCRL", "certificateHold", "aa-compromise", "-1", "+1", "99999999999999999999", "", " ", "ключ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, err := ParseRevocationReason(s)
		if err != nil {
			if KindOf(err) != Malformed {
				t.Fatalf("ParseRevocationReason(%q) error kind %s, want malformed: %v", s, KindOf(err), err)
			}
			return
		}
		if err := checkReason(code); err != nil {
			t.Fatalf("ParseRevocationReason(%q) = %d, a code one may not revoke with: %v", s, code, err)
		}
		if back, err := ParseRevocationReason(ReasonName(code)); err != nil || back != code {
			t.Fatalf("ReasonName(%d) = %q parses to %d, %v", code, ReasonName(code), back, err)
		}
	})
}
