package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
)

// solve proves one authorization with the named challenge type, then waits for it.
func solve(t *testing.T, c *xacme.Client, authzURL, typ string, publish func(ch *xacme.Challenge)) {
	t.Helper()
	ctx := context.Background()
	az, err := c.GetAuthorization(ctx, authzURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type != typ {
			continue
		}
		publish(ch)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatalf("Accept %s: %v", typ, err)
		}
		if _, err := c.WaitAuthorization(ctx, authzURL); err != nil {
			t.Fatalf("WaitAuthorization %s: %v", typ, err)
		}
		return
	}
	t.Fatalf("no %s challenge offered for %s", typ, az.Identifier.Value)
}

func finalizeDNS(t *testing.T, c *xacme.Client, o *xacme.Order, names ...string) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	o, err := c.WaitOrder(ctx, o.URI)
	if err != nil {
		t.Fatalf("WaitOrder: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		t.Fatalf("CreateOrderCert: %v", err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestWildcardDNS01: a wildcard order is offered only dns-01, and proving it
// through the configured resolver issues *.name.
func TestWildcardDNS01(t *testing.T) {
	t.Parallel()
	d := startTestDNS(t)
	wild := ca.DefaultProfiles()["tls-server"]
	wild.Names.AllowWildcards = true
	ts := newTestServer(t, Config{Profile: "wildcard"}, testValidation{resolver: d.Addr(), profiles: map[string]ca.Profile{"wildcard": wild}})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("*.wild.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !az.Wildcard || az.Identifier.Value != "wild.example.test" || len(az.Challenges) != 1 || az.Challenges[0].Type != "dns-01" {
		t.Fatalf("wildcard authorization %+v: want identifier without *., wildcard, dns-01 only", az)
	}
	solve(t, c, o.AuthzURLs[0], "dns-01", func(ch *xacme.Challenge) {
		rec, err := c.DNS01ChallengeRecord(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		d.SetTXT("_acme-challenge.wild.example.test", rec)
	})
	leaf := finalizeDNS(t, c, o, "*.wild.example.test")
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "*.wild.example.test" {
		t.Errorf("leaf names %v", leaf.DNSNames)
	}
}

// TestOrderTLSALPN01: RFC 8737 validation against a TLS listener presenting the
// client's challenge certificate, with the name resolved by the test DNS.
func TestOrderTLSALPN01(t *testing.T) {
	t.Parallel()
	d := startTestDNS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ts := newTestServer(t, Config{}, testValidation{resolver: d.Addr(), tlsPort: ln.Addr().(*net.TCPAddr).Port})
	d.SetA("alpn.example.test", "127.0.0.1")
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("alpn.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	solve(t, c, o.AuthzURLs[0], "tls-alpn-01", func(ch *xacme.Challenge) {
		cert, err := c.TLSALPN01ChallengeCert(ch.Token, "alpn.example.test")
		if err != nil {
			t.Fatal(err)
		}
		tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"acme-tls/1"}})
		go func() {
			for {
				conn, err := tl.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					_ = conn.(*tls.Conn).Handshake()
				}()
			}
		}()
	})
	leaf := finalizeDNS(t, c, o, "alpn.example.test")
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "alpn.example.test" {
		t.Errorf("leaf names %v", leaf.DNSNames)
	}
}
