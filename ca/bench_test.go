package ca

import (
	"context"
	"runtime"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// BenchmarkSign measures in-process issuance end to end: CSR checks, policy,
// the throwaway-key lint copy and zlint, the real signature, and the
// durable SQLite commit of the certificate and its audit event (the normal
// newTestCA path: WAL, synchronous=FULL, group commit). One parsed P-256
// CSR is reused; every issuance still draws a new serial.
func BenchmarkSign(b *testing.B) {
	tc := newTestCA(b, keystore.ECDSAP256, keystore.ECDSAP256)
	csr := newCSR(b, mustKey(b, keystore.ECDSAP256), "bench.example.com", "bench.example.com", "www.bench.example.com")
	req := SignRequest{CSR: csr, Profile: "tls-server", Requester: "bench", Channel: ChannelAPI}
	ctx := context.Background()
	if _, err := tc.Sign(ctx, req); err != nil { // warm up and check once
		b.Fatalf("Sign: %v", err)
	}

	b.Run("callers=1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tc.Sign(ctx, req); err != nil {
				b.Fatalf("Sign: %v", err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	})

	b.Run("callers=32", func(b *testing.B) {
		b.ReportAllocs()
		// RunParallel starts parallelism*GOMAXPROCS goroutines: 32 callers
		// on whatever CPUs the run has (16 × 2 on the reference machine).
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := tc.Sign(ctx, req); err != nil {
					b.Errorf("Sign: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	})
}
