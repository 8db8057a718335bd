package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// TestURIDotSegmentsRefused: a prefix rule must not be escaped with "..".
func TestURIDotSegmentsRefused(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	prof := DefaultProfiles()["tls-client"]
	prof.Names.URI.Allow = []string{"spiffe://example.org/ns/prod/"}
	a := withProfiles(t, tc, map[string]Profile{"spiffe": prof})
	key := mustKey(t, keystore.ECDSAP256)
	for _, raw := range []string{
		"spiffe://example.org/ns/prod/../admin",
		"spiffe://example.org/ns/prod/%2e%2e/admin",
		"spiffe://example.org/ns/prod/./sa/web",
	} {
		t.Run(raw, func(t *testing.T) {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "spiffe", Requester: "test", Channel: ChannelAPI})
			if KindOf(err) != BadCSR {
				t.Errorf("Sign(%s) = %v, want bad_csr", raw, err)
			}
		})
	}
	u, _ := url.Parse("spiffe://example.org/ns/prod/sa/web")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	if _, err := a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "spiffe", Requester: "test", Channel: ChannelAPI}); err != nil {
		t.Errorf("a SPIFFE ID under the allowed prefix was refused: %v", err)
	}
}
