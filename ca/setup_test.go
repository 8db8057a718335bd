package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// testCA is a freshly initialized authority on a real SQLite file.
type testCA struct {
	*Authority
	st     *store.SQLite
	clk    *clockwork.FakeClock
	init   *InitResult
	dbPath string
}

func newTestCA(t testing.TB, rootAlg, intAlg keystore.Algorithm) *testCA {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "sigil.db")
	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Init(ctx, st, InitConfig{
		Name: "Test CA", RootAlgorithm: rootAlg, IntermediateAlgorithm: intAlg,
		BaseURL: "http://ca.test:8080", Passphrase: []byte("correct horse"), KDF: params, Clock: clk,
	})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	a, err := New(ctx, Config{
		Profiles: DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st, res.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testCA{Authority: a, st: st, clk: clk, init: res, dbPath: path}
}

func newCSR(t testing.TB, key crypto.Signer, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func mustKey(t testing.TB, alg keystore.Algorithm) crypto.Signer {
	t.Helper()
	k, err := keystore.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
