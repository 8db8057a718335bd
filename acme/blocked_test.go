package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/http"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
)

// TestBlockedKeys: after a keyCompromise revocation signed by the
// certificate's key, a CSR with the same key is badCSR at finalize, and a
// blocked key cannot open an account or be rolled over to; the ordering
// account's keyCompromise blocks nothing.
func TestBlockedKeys(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	issueIP(t, h, c, "127.0.0.1") // proves 127.0.0.1: later orders are ready at once
	finalize := func() ([][]byte, error) {
		o, err := c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if o, err = c.WaitOrder(ctx, o.URI); err != nil {
			t.Fatal(err)
		}
		chain, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, false)
		return chain, err
	}
	chain, err := finalize()
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := finalize() // more certificates for the same key
	if err != nil {
		t.Fatal(err)
	}
	third, err := finalize()
	if err != nil {
		t.Fatal(err)
	}
	revoked := func(der []byte) bool {
		t.Helper()
		cert, _ := x509.ParseCertificate(der)
		rec, err := ts.st.Certificate(ctx, ca.SerialString(cert.SerialNumber))
		if err != nil {
			t.Fatal(err)
		}
		return !rec.RevokedAt.IsZero()
	}
	// The account's word (signed with the account key) proves nothing about
	// the certificate's key: that certificate alone is revoked.
	if err := c.RevokeCert(ctx, nil, chain[0], xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if !revoked(chain[0]) || revoked(sibling[0]) || revoked(third[0]) {
		t.Errorf("account keyCompromise: revoked %v, %v, %v; want the first certificate only", revoked(chain[0]), revoked(sibling[0]), revoked(third[0]))
	}
	if err := ts.auth.CheckKeyNotBlocked(ctx, leafKey.Public()); err != nil {
		t.Errorf("the account's keyCompromise blocked the key: %v", err)
	}
	// Signed by the certificate's key, it does.
	if err := c.RevokeCert(ctx, leafKey, sibling[0], xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if !revoked(third[0]) {
		t.Errorf("the other certificate with the compromised key is not revoked")
	}
	_, err = finalize()
	wantACMEError(t, err, http.StatusBadRequest, "badCSR")

	// An account key that is blocked.
	acctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.auth.BlockKey(ctx, "token:admin", acctKey.Public()); err != nil {
		t.Fatal(err)
	}
	blocked := &xacme.Client{Key: acctKey, DirectoryURL: ts.dir, HTTPClient: ts.srv.Client()}
	_, err = blocked.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusBadRequest, "badPublicKey")
	err = c.AccountKeyRollover(ctx, acctKey)
	wantACMEError(t, err, http.StatusBadRequest, "badPublicKey")
	if err := ts.auth.CheckKeyNotBlocked(ctx, c.Key.Public()); err != nil {
		t.Errorf("the account's own key: %v", err)
	}
}
