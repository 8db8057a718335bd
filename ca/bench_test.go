package ca

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// BenchmarkSign measures in-process issuance end to end: CSR checks, policy,
// the throwaway-key lint copy and zlint, the real signature, and the
// durable SQLite commit of the certificate and its audit event (the normal
// newTestCA path: WAL, synchronous=FULL, group commit). One parsed P-256
// CSR is reused; every issuance still draws a new serial. It reports
// certs/s and the p50/p99 latency of one Sign call.
func BenchmarkSign(b *testing.B) {
	tc := newTestCA(b, keystore.ECDSAP256, keystore.ECDSAP256)
	csr := newCSR(b, mustKey(b, keystore.ECDSAP256), "bench.example.com", "bench.example.com", "www.bench.example.com")
	req := SignRequest{CSR: csr, Profile: "tls-server", Requester: "bench", Channel: ChannelAPI}
	benchIssuance(b, tc.Authority, req)
}

// benchIssuance runs BenchmarkSign's measurement on a: Sign at 1 and 32
// concurrent callers.
func benchIssuance(b *testing.B, a *Authority, req SignRequest) {
	ctx := context.Background()
	if _, err := a.Sign(ctx, req); err != nil { // warm up and check once
		b.Fatalf("Sign: %v", err)
	}
	for _, callers := range []int{1, 32} {
		b.Run("callers="+strconv.Itoa(callers), func(b *testing.B) {
			b.ReportAllocs()
			var mu sync.Mutex
			var lat []time.Duration
			// RunParallel starts parallelism*GOMAXPROCS goroutines; one
			// caller runs on the benchmark goroutine itself.
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			run := func(pb interface{ Next() bool }) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					if _, err := a.Sign(ctx, req); err != nil {
						b.Errorf("Sign: %v", err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}
			if callers == 1 {
				run(loop{b})
			} else {
				b.RunParallel(func(pb *testing.PB) { run(pb) })
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// loop adapts b.Loop to the pb.Next shape.
type loop struct{ b *testing.B }

func (l loop) Next() bool { return l.b.Loop() }
