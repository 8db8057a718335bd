package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit measures durable issuance throughput: each operation is one
// WithTx that records a certificate (a ~600-byte DER blob) and appends its
// audit event, with 1 or 32 concurrent writers sharing group commits.
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchCommit(b, writers) })
	}
}

func benchCommit(b *testing.B, writers int) {
	var commits, committed atomic.Int64
	s := openTest(b, Config{OnCommit: func(_ time.Duration, batch int) {
		commits.Add(1)
		committed.Add(int64(batch))
	}})
	seedIssuers(b, s, "int")
	der := make([]byte, 600)
	rand.Read(der)
	commits.Store(0)
	committed.Store(0)

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				c := testCert("int", fmt.Sprintf("%032x", i))
				c.DER = der
				if err := s.WithTx(context.Background(), func(tx Tx) error { return issue(tx, &c) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	if n := commits.Load(); n > 0 {
		b.ReportMetric(float64(committed.Load())/float64(n), "tx/commit")
	}
}
