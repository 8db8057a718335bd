package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// sanCSR builds a signed CSR carrying the given SANs exactly as url.Parse
// and the x509 package pass them on.
func sanCSR(t testing.TB, key crypto.Signer, dns []string, uris []string) *x509.CertificateRequest {
	t.Helper()
	csr, err := csrWith(key, dns, uris)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func csrWith(key crypto.Signer, dns []string, uris []string) (*x509.CertificateRequest, error) {
	tmpl := &x509.CertificateRequest{DNSNames: dns}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}

// TestURIPolicyBypassRefused (issue 15 item 5): every spelling the review
// used to get around a deny rule, and the others a SPIFFE ID may not have,
// is refused; the canonical names beside the rule are still issued.
func TestURIPolicyBypassRefused(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	prof := DefaultProfiles()["tls-client"]
	prof.Names.URI.Deny = []string{"spiffe://example.org/ns/admin", "https://svc.example.org/admin"}
	a := withProfiles(t, tc, map[string]Profile{"spiffe": prof})
	key := mustKey(t, keystore.ECDSAP256)
	sign := func(uri string) error {
		_, err := a.Sign(context.Background(), SignRequest{CSR: sanCSR(t, key, nil, []string{uri}), Profile: "spiffe", Requester: "test", Channel: ChannelAPI})
		return err
	}
	for _, raw := range []string{
		// The review's requests.
		"spiffe://example.org/ns/%61dmin/sa/x",
		"spiffe://example.org//ns/admin/sa/x",
		"spiffe://example.org/ns/admin?x",
		"spiffe://example.org/ns/admin#x",
		"spiffe://example.org/ns%2Fadmin/sa/x",
		// What else the SPIFFE ID specification forbids.
		"spiffe://example.org/ns/admin/",
		"spiffe://example.org/ns/./admin",
		"spiffe://example.org/ns/x/../admin",
		"spiffe://example.org:8443/ns/admin",
		"spiffe://user@example.org/ns/admin",
		"spiffe://EXAMPLE.org/ns/admin",
		"spiffe://Example.Org/ns/admin",
		"SPIFFE://EXAMPLE.ORG/ns/admin",
		"spiffe://example.org/ns/adm%69n",
		"spiffe://example.org/ns/admin%2Fx",
		"spiffe://example.org/ns/admin?",
		"spiffe://example.org/ns/adm+in",
		"spiffe:///ns/admin",
		"spiffe://example.org/" + strings.Repeat("a", 2048),
		// Other URIs: encoded unreserved characters, dot and empty segments,
		// the default port, case, a query or fragment after a denied path.
		"https://svc.example.org/%61dmin",
		"https://svc.example.org/adm%69n/x",
		"https://svc.example.org/x/../admin",
		"https://svc.example.org/./admin",
		"https://svc.example.org/%2e%2e/admin",
		"https://svc.example.org:443/admin",
		"https://SVC.example.org/admin",
		"https://svc.example.org/admin?x=1",
		"https://svc.example.org/admin#top",
		"https://user@svc.example.org/admin",
		"https://svc.example.org/admin%2Fx",
		"https://svc.example.org/x%2F..%2Fadmin",
		"https://svc.example.org/admin%5Cx",
		"https://2130706433/admin",
		"urn:UUID:6e8bc430-9c3a-11d9-9669-0800200c9a66",
	} {
		if err := sign(raw); err == nil {
			t.Errorf("Sign(%s) issued a certificate past the deny rule", raw)
		} else if k := KindOf(err); k != BadCSR && k != Rejected {
			t.Errorf("Sign(%s) = %v, want bad_csr or rejected", raw, err)
		}
	}
	for _, raw := range []string{
		"spiffe://example.org/ns/prod/sa/web",
		"spiffe://example.org/ns/administrator",
		"spiffe://example.org",
		"spiffe://example.org/ns/Admin",
		"https://svc.example.org/",
		"https://svc.example.org/public/",
		"https://svc.example.org:8443/admin",
		"https://svc.example.org/a%20b",
		"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
	} {
		if err := sign(raw); err != nil {
			t.Errorf("Sign(%s) = %v, want it issued", raw, err)
		}
	}
}

// TestNamePolicyCheckRefusesNonCanonicalURI: Check itself, which every
// channel reaches, judges only canonical URIs, whatever built the Names.
func TestNamePolicyCheckRefusesNonCanonicalURI(t *testing.T) {
	t.Parallel()
	p := NamePolicy{URI: NameRules{Deny: []string{"spiffe://example.org/ns/admin"}}}
	for _, raw := range []string{"spiffe://example.org/ns/%61dmin", "spiffe://example.org//ns/admin", "spiffe://example.org/ns/admin#x"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if subs := p.Check(Names{URIs: []*url.URL{u}}); len(subs) != 1 {
			t.Errorf("Check(%s) = %v, want one refusal", raw, subs)
		}
	}
	// A rule's scheme and host match without case.
	p = NamePolicy{URI: NameRules{Deny: []string{"SPIFFE://Example.ORG/ns/admin"}}}
	u, _ := url.Parse("spiffe://example.org/ns/admin/sa/x")
	if subs := p.Check(Names{URIs: []*url.URL{u}}); len(subs) != 1 {
		t.Errorf("an upper-case deny rule did not match: %v", subs)
	}
}

// TestNumericDNSNamesRefused (issue 15 item 9): names an IPv4 parser reads
// as an address are refused as DNS names, through a CSR and through the
// ACME name check, while names with digits elsewhere pass.
func TestNumericDNSNamesRefused(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	key := mustKey(t, keystore.ECDSAP256)
	for _, name := range []string{
		"134744072", "8.8.2056", "08.8.8.8", "2130706433", "0x7f.1", "0x7f000001", "0x7f.0x0.0x0.0x1",
		"127.1", "0177.0.0.1", "0x", "a.0x1f", "foo.123", "*.8.8.8", "host.example.42", "1.2.3.4.5",
	} {
		if _, err := tc.Sign(context.Background(), SignRequest{CSR: sanCSR(t, key, []string{name}, nil), Profile: "tls-server", Requester: "test", Channel: ChannelAPI}); KindOf(err) != BadCSR {
			t.Errorf("Sign(DNS %s) = %v, want bad_csr", name, err)
		}
		if err := tc.CheckNames("tls-server", []string{name}, nil); KindOf(err) != Malformed {
			t.Errorf("CheckNames(%s) = %v, want malformed", name, err)
		}
	}
	for _, name := range []string{"1.example.com", "123.example", "www1.example", "0x7f.example", "a1", "example.c0m", "xn--bcher-kva.example"} {
		if err := tc.CheckNames("tls-server", []string{name}, nil); err != nil {
			t.Errorf("CheckNames(%s) = %v, want accepted", name, err)
		}
	}
}

// TestInvalidALabelsRefused (issue 15 item 10): an "xn--" label must be
// what IDNA's registration profile encodes its own decoding to.
func TestInvalidALabelsRefused(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	key := mustKey(t, keystore.ECDSAP256)
	for _, name := range []string{"xn--a.example", "www.xn--a", "xn--.example", "xn--zz.example", "xn--abc-.example", "*.xn--a.example"} {
		if _, err := tc.Sign(context.Background(), SignRequest{CSR: sanCSR(t, key, []string{name}, nil), Profile: "tls-server", Requester: "test", Channel: ChannelAPI}); KindOf(err) != BadCSR {
			t.Errorf("Sign(DNS %s) = %v, want bad_csr", name, err)
		}
		if err := tc.CheckNames("tls-server", []string{name}, nil); KindOf(err) != Malformed {
			t.Errorf("CheckNames(%s) = %v, want malformed", name, err)
		}
	}
	for _, name := range []string{"xn--bcher-kva.example", "xn--nxasmq6b.example"} {
		if _, err := tc.Sign(context.Background(), SignRequest{CSR: sanCSR(t, key, []string{name}, nil), Profile: "tls-server", Requester: "test", Channel: ChannelAPI}); err != nil {
			t.Errorf("Sign(DNS %s) = %v, want issued", name, err)
		}
	}
}

// TestNamePolicyValidateURIRules: a URI rule that is not canonical could
// never match a canonical name, so a deny rule would silently deny nothing.
func TestNamePolicyValidateURIRules(t *testing.T) {
	t.Parallel()
	for _, rule := range []string{"spiffe://example.org/ns/%61dmin", "spiffe://example.org//ns", "https://x.example/a/../b", "spiffe://example.org/ns/%2e%2e/x"} {
		if err := (NamePolicy{URI: NameRules{Deny: []string{rule}}}).Validate(); err == nil {
			t.Errorf("Validate accepted the URI rule %q", rule)
		}
	}
	for _, rule := range []string{"spiffe://example.org/", "spiffe://example.org/ns/admin", "https://x.example/a/", "urn:uuid:"} {
		if err := (NamePolicy{URI: NameRules{Allow: []string{rule}}}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v", rule, err)
		}
	}
}

// TestIPPolicyNotBypassedByNumericDNS: the review's request, as it came:
// with 8.8.8.8 denied as an IP, no numeric spelling of it is issued as a
// DNS name.
func TestIPPolicyNotBypassedByNumericDNS(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	prof := DefaultProfiles()["tls-server"]
	prof.Names.IP.Deny = []string{"8.8.8.8"}
	a := withProfiles(t, tc, map[string]Profile{"noip": prof})
	key := mustKey(t, keystore.ECDSAP256)
	if subs := prof.Names.Check(Names{IPs: []net.IP{net.ParseIP("8.8.8.8")}}); len(subs) != 1 {
		t.Fatalf("the IP rule itself does not refuse 8.8.8.8: %v", subs)
	}
	for _, name := range []string{"134744072", "8.8.2056", "08.8.8.8", "0x8080808", "8.0x80808", "010.010.010.010"} {
		if _, err := a.Sign(context.Background(), SignRequest{CSR: sanCSR(t, key, []string{name}, nil), Profile: "noip", Requester: "test", Channel: ChannelAPI}); err == nil {
			t.Errorf("DNS name %s (8.8.8.8 to inet_aton) was issued", name)
		}
	}
}

// rsaKeyWithExponent makes an RSA key with public exponent e, which
// crypto/rsa.GenerateKey cannot (it always uses 65537).
func rsaKeyWithExponent(t testing.TB, bits, e int) *rsa.PrivateKey {
	t.Helper()
	E := big.NewInt(int64(e))
	one := big.NewInt(1)
	for {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(E, phi)
		n := new(big.Int).Mul(p, q)
		if p.Cmp(q) == 0 || d == nil || n.BitLen() != bits {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			t.Fatal(err)
		}
		return k
	}
}

// TestRSAExponentRefused (issue 15 item 10): a CSR whose RSA key has an
// exponent other than 65537 is refused, whatever else is right with it.
func TestRSAExponentRefused(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	for _, e := range []int{3, 17, 65539} {
		key := rsaKeyWithExponent(t, 2048, e)
		csr := sanCSR(t, key, []string{"rsa.example"}, nil)
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("exponent %d: the test CSR does not verify: %v", e, err)
		}
		_, err := tc.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ChannelAPI})
		if KindOf(err) != BadCSR || !strings.Contains(err.Error(), "exponent") {
			t.Errorf("exponent %d: Sign = %v, want bad_csr naming the exponent", e, err)
		}
	}
	csr := sanCSR(t, mustKey(t, keystore.RSA2048), []string{"rsa.example"}, nil)
	if _, err := tc.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ChannelAPI}); err != nil {
		t.Errorf("exponent 65537: Sign = %v", err)
	}
}
