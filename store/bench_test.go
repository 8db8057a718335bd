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

// BenchmarkLogAppend measures what the transparency log adds to recording a
// certificate: the same issuance transaction (certificate row of a 1 KiB
// DER and its audit event, durable group commit) on two stores, one with
// the log append and one without, alternating rounds of 500 transactions
// so both see the same machine state. It reports both rates and
// log-overhead-% = (time with log / time without - 1) * 100. This is the
// storage part of issuance only; signing and linting come on top (see
// ca.BenchmarkSign), so the overhead on whole issuance is smaller.
func BenchmarkLogAppend(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			with := openTest(b, Config{})
			without := openTest(b, Config{withoutLog: true})
			seedIssuers(b, with, "int")
			seedIssuers(b, without, "int")
			der := make([]byte, 1024)
			rand.Read(der)
			var serial atomic.Int64
			round := func(s *SQLite, n int) time.Duration {
				var next atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range writers {
					wg.Go(func() {
						for next.Add(1) <= int64(n) {
							c := testCert("int", fmt.Sprintf("%032x", serial.Add(1)))
							c.DER = der
							if err := s.WithTx(context.Background(), func(tx Tx) error { return issue(tx, &c) }); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				return time.Since(start)
			}
			const n = 500
			var tWith, tWithout time.Duration
			rounds := 0
			for b.Loop() {
				tWithout += round(without, n)
				tWith += round(with, n)
				rounds++
			}
			total := float64(rounds * n)
			b.ReportMetric(total/tWith.Seconds(), "tx/s-log")
			b.ReportMetric(total/tWithout.Seconds(), "tx/s-nolog")
			b.ReportMetric((tWith.Seconds()/tWithout.Seconds()-1)*100, "log-overhead-%")
		})
	}
}
