//go:build cgo && !nopkcs11

package ca

import (
	"testing"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testhsm"
	"github.com/sigil-ca/sigil/internal/testkms"
)

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
		benchIssuance(b, newBackendCA(b, keys, tk.URI("sigil-intermediate")).Authority, req)
	})
	b.Run("local-kms", func(b *testing.B) {
		srv := testkms.Start(b)
		keys := keybackend.NewKeys(keybackend.Config{})
		b.Cleanup(func() { _ = keys.Close() })
		benchIssuance(b, newBackendCA(b, keys, "awskms:profile="+testkms.Profile+";credentials-file="+srv.ConfigFile(b)).Authority, req)
	})
}
