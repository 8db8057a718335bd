package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-ca/sigil/store"
)

// TestNegativeOtherEndpoint: an account's kid, rewritten onto another
// endpoint of the same server (same store, same nonces), names no account
// there, whatever the request; nothing changes.
func TestNegativeOtherEndpoint(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	e := newNegEnv(t, ts)
	other, err := New(Config{Name: "partners", RequireEAB: true, Profile: "tls-server", CAA: CAAOff,
		Clock: ts.acme.clk, Logger: ts.acme.log}, ts.st, ts.auth, ts.acme.challenger, ts.acme.nonces)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(other.Handler())
	t.Cleanup(func() {
		srv.Close()
		other.Close()
	})
	base := srv.URL + other.Prefix()
	kid := base + "/acct/" + e.acctID
	for path, payload := range map[string]string{
		"/acct/" + e.acctID:             ``,
		"/acct/" + e.acctID + "/orders": ``,
		"/new-order":                    negOrderPayload,
		"/order/x":                      ``,
		"/authz/x":                      ``,
		"/chall/x":                      `{}`,
		"/cert/01":                      ``,
		"/key-change":                   `{}`,
		"/revoke-cert":                  `{"certificate":"AA"}`,
	} {
		t.Run(path, func(t *testing.T) {
			before := e.state(t)
			nonce := e.nonce(t)
			body := signed(t, jose.ES256, e.key, false, map[string]any{"kid": kid, "nonce": nonce, "url": base + path}, []byte(payload))
			resp, got := e.post(t, base+path, "application/jose+json", body)
			wantProblem(t, resp, got, nonce, http.StatusBadRequest, "accountDoesNotExist")
			e.unchanged(t, before)
		})
	}
}

// TestProvableIdentifiers: only certificates whose every name is a DNS name
// or an IP address (and whose common name is one of them) are within reach
// of authorizations.
func TestProvableIdentifiers(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://example.org/ns/admin")
	// rawSAN is a SAN extension with the given GeneralNames (tag, bytes).
	rawSAN := func(names ...any) pkix.Extension {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for i := 0; i < len(names); i += 2 {
				b.AddASN1(names[i].(cbasn1.Tag), func(b *cryptobyte.Builder) { b.AddBytes(names[i+1].([]byte)) })
			}
		})
		return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: b.BytesOrPanic()}
	}
	dnsTag := cbasn1.Tag(2).ContextSpecific()
	otherNameTag := cbasn1.Tag(0).ContextSpecific().Constructed()
	tests := []struct {
		name    string
		tmpl    x509.Certificate
		want    []store.ACMEIdentifier
		wantErr string
	}{
		{"dns and ip", x509.Certificate{Subject: pkix.Name{CommonName: "A.example"}, DNSNames: []string{"a.example", "*.b.example"},
			IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("2001:db8::1")}},
			[]store.ACMEIdentifier{{Type: "dns", Value: "a.example"}, {Type: "dns", Value: "*.b.example"},
				{Type: "ip", Value: "10.0.0.1"}, {Type: "ip", Value: "2001:db8::1"}}, ""},
		{"ip common name", x509.Certificate{Subject: pkix.Name{CommonName: "10.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}},
			[]store.ACMEIdentifier{{Type: "ip", Value: "10.0.0.1"}}, ""},
		{"uri", x509.Certificate{DNSNames: []string{"a.example"}, URIs: []*url.URL{spiffe}}, nil, "URI"},
		{"email", x509.Certificate{DNSNames: []string{"a.example"}, EmailAddresses: []string{"x@a.example"}}, nil, "email"},
		// crypto/x509 parses past an otherName and shows only the DNS name.
		{"other name", x509.Certificate{ExtraExtensions: []pkix.Extension{rawSAN(dnsTag, []byte("a.example"), otherNameTag, []byte{0x06, 0x01, 0x2a, 0xa0, 0x02, 0x0c, 0x00})}},
			nil, "otherName"},
		{"common name not a SAN", x509.Certificate{Subject: pkix.Name{CommonName: "admin"}, DNSNames: []string{"a.example"}}, nil, "common name"},
		{"no names", x509.Certificate{Subject: pkix.Name{CommonName: "a.example"}}, nil, "no DNS name"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := tt.tmpl
			tmpl.SerialNumber = big.NewInt(int64(i + 1))
			tmpl.NotBefore, tmpl.NotAfter = time.Unix(1e9, 0), time.Unix(1e9+3600, 0)
			der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			got, err := provableIdentifiers(cert)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("provableIdentifiers = %v, %v; want an error naming %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("provableIdentifiers = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
