//go:build cgo && !nopkcs11

package ca

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/internal/testhsm"
	"github.com/sigil-ca/sigil/internal/testkms"
	"github.com/sigil-ca/sigil/store"
)

// newBackendCA initialises a CA on a real SQLite file whose intermediate key
// is created at uri (an HSM or KMS) through keys.
func newBackendCA(t testing.TB, keys *keybackend.Keys, uri string) *Authority {
	t.Helper()
	ctx := context.Background()
	k, err := keys.CreateOrLoad(ctx, uri, "sigil-intermediate", "ecdsa-p256")
	if err != nil {
		t.Fatalf("create the intermediate key: %v", err)
	}
	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Init(ctx, st, InitConfig{
		Name: "Backend CA", RootAlgorithm: keystore.ECDSAP256, BaseURL: "http://ca.test:8080",
		Passphrase: []byte("correct horse"), KDF: params, Clock: clk,
		IntermediateKey: &BackendKey{Backend: string(k.URI.Kind), URI: k.URI.String(), Signer: k.Signer},
		Backends:        keys,
	})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, res.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// BenchmarkSignBackend is BenchmarkSign with the intermediate key in
// process, in SoftHSM and in local-kms, in one run so that the ratios hold
// on one machine at one moment:
//
//	go test -run '^$' -bench SignBackend -benchtime 3s ./ca
func BenchmarkSignBackend(b *testing.B) {
	csr := newCSR(b, mustKey(b, keystore.ECDSAP256), "bench.example.com", "bench.example.com")
	req := SignRequest{CSR: csr, Profile: "tls-server", Requester: "bench", Channel: ChannelAPI}
	b.Run("in-process", func(b *testing.B) {
		benchIssuance(b, newTestCA(b, keystore.ECDSAP256, keystore.ECDSAP256).Authority, req)
	})
	b.Run("softhsm", func(b *testing.B) {
		tk := testhsm.New(b, "bench-int")
		keys := keybackend.NewKeys(keybackend.Config{})
		b.Cleanup(func() { _ = keys.Close() })
		benchIssuance(b, newBackendCA(b, keys, tk.URI("sigil-intermediate")), req)
	})
	b.Run("local-kms", func(b *testing.B) {
		srv := testkms.Start(b)
		keys := keybackend.NewKeys(keybackend.Config{})
		b.Cleanup(func() { _ = keys.Close() })
		benchIssuance(b, newBackendCA(b, keys, "awskms:profile="+testkms.Profile+";credentials-file="+srv.ConfigFile(b)), req)
	})
}
