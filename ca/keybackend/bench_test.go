//go:build cgo && !nopkcs11

package keybackend

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
)

// The signing benchmarks compare one ECDSA P-256 signature in process, in
// SoftHSM through a session pool of each size, and in local-kms, at 1 and 32
// concurrent signers (b.SetParallelism(32) on GOMAXPROCS=2 gives 64; 16
// gives 32):
//
//	go test -run '^$' -bench Sign -benchtime 2s ./ca/keybackend
func BenchmarkSign(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	run := func(b *testing.B, s crypto.Signer) {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("signers=%d", par), func(b *testing.B) {
				if par == 1 {
					for b.Loop() {
						if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(par / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
	b.Run("in-process", func(b *testing.B) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		run(b, k)
	})
	for _, sessions := range []int{2, 3, 5, 9, 33} {
		b.Run(fmt.Sprintf("softhsm/max-sessions=%d", sessions), func(b *testing.B) {
			ctx := context.Background()
			_, be, conn := openToken(b, fmt.Sprintf("bench%d", sessions), fmt.Sprintf(";max-sessions=%d", sessions))
			conn.Object = "bench"
			k, err := be.Create(ctx, conn, "", "ecdsa-p256")
			if err != nil {
				b.Fatal(err)
			}
			run(b, k.Signer)
		})
	}
	b.Run("local-kms", func(b *testing.B) {
		ctx := context.Background()
		_, be, conn := openKMS(b)
		k, err := be.Create(ctx, conn, "bench", "ecdsa-p256")
		if err != nil {
			b.Fatal(err)
		}
		run(b, k.Signer)
	})
}
