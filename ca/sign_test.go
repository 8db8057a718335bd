package ca

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

func TestSignVerifies(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "web.example.com", "web.example.com", "api.example.com")
	iss, err := tc.Sign(ctx, SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tc.Root().Cert)
	inter := x509.NewCertPool()
	inter.AddCert(tc.Intermediate().Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "api.example.com",
		CurrentTime: tc.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	rec, err := tc.st.Certificate(ctx, iss.Record.Serial)
	if err != nil {
		t.Fatalf("stored certificate: %v", err)
	}
	if rec.Profile != "tls-server" || len(rec.SANs) != 2 {
		t.Errorf("record = %+v", rec)
	}
}
