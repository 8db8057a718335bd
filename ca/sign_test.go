package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
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

// TestSignInTx: the caller's rows commit in the certificate's transaction;
// an error from them undoes the issuance, whole: no certificate, no event,
// and the caller gets its own error back.
func TestSignInTx(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "tx.example.com", "tx.example.com")
	var seen string
	iss, err := tc.Sign(ctx, SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ChannelAPI,
		InTx: func(tx store.Tx, rec store.CertRecord) error {
			seen = rec.Serial
			return tx.PutSetting("test.in-tx", []byte(rec.Serial))
		}})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got, err := tc.st.Setting(ctx, "test.in-tx"); err != nil || string(got) != iss.Record.Serial || seen != iss.Record.Serial {
		t.Errorf("the caller's row %q (%v), serial seen %q; want %s", got, err, seen, iss.Record.Serial)
	}

	before, err := tc.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		certs, _, err := tc.st.Certificates(ctx, store.CertFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(certs)
	}
	n := count()
	refusal := errors.New("the order moved meanwhile")
	_, err = tc.Sign(ctx, SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ChannelAPI,
		InTx: func(tx store.Tx, rec store.CertRecord) error {
			if err := tx.PutSetting("test.in-tx", []byte("undone")); err != nil {
				return err
			}
			return refusal
		}})
	if !errors.Is(err, refusal) {
		t.Errorf("Sign with a failing InTx = %v, want the caller's error", err)
	}
	if got := count(); got != n {
		t.Errorf("%d certificates after the undone issuance, want %d", got, n)
	}
	if got, _ := tc.st.Setting(ctx, "test.in-tx"); string(got) == "undone" {
		t.Error("the caller's row of the undone issuance was kept")
	}
	after, err := tc.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Only the refusal itself is audited, never a cert.issued.
	if after.Seq > before.Seq+1 {
		t.Errorf("audit advanced %d -> %d for an undone issuance, want at most the refusal", before.Seq, after.Seq)
	}
}
