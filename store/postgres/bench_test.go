package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// BenchmarkChainAppend measures what the chain lock costs: nodes stores on
// one database, 32 callers in all, each transaction one certificate (with
// its names and log leaf) and its audit event, as issuance writes them.
// It reports certs/s, lock-µs/cert (how long the chain lock was held per
// certificate: each batch's hold from acquiring it to the end of its
// commit, over the certificates it carried) and ceiling-certs/s, the
// cluster-wide rate that hold time allows (1 / lock-µs/cert).
//
// The store's clock is the real one here, and only here: it times the
// lock for OnLockHeld; the records carry the fake clock's times.
func BenchmarkChainAppend(b *testing.B) {
	for _, nodes := range []int{1, 2, 3} {
		b.Run("nodes="+string(rune('0'+nodes)), func(b *testing.B) { benchChainAppend(b, nodes) })
	}
}

func benchChainAppend(b *testing.B, nodes int) {
	const callers = 32
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b)
	fake := testclock.New()
	var held, certs atomic.Int64
	var stores []*postgres.Store
	for range nodes {
		s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Clock: clockwork.NewRealClock(), MaxConns: 4,
			OnLockHeld: func(d time.Duration, n int) {
				held.Add(int64(d))
				certs.Add(int64(n))
			}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		stores = append(stores, s)
	}
	if err := stores[0].WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(store.KeyRecord{ID: "k", Purpose: "intermediate", Algorithm: "a", Backend: "b",
			State: store.KeyActive, PublicKey: []byte("p"), Created: fake.Now()}); err != nil {
			return err
		}
		return tx.InsertIssuer(store.IssuerRecord{ID: "int", Kind: "intermediate", KeyID: "k", CertDER: []byte("d"),
			State: store.KeyActive, Created: fake.Now()})
	}); err != nil {
		b.Fatal(err)
	}
	der := make([]byte, 900) // about an ECDSA leaf's size
	held.Store(0)
	certs.Store(0)
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range callers {
		s := stores[c%nodes]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				var r [16]byte
				if _, err := rand.Read(r[:]); err != nil {
					b.Error(err)
					return
				}
				serial := hex.EncodeToString(r[:])
				rec := store.CertRecord{IssuerID: "int", Serial: serial, Subject: "CN=" + serial + ".example.com",
					SANs: []string{serial + ".example.com"}, NotBefore: fake.Now(), NotAfter: fake.Now().Add(24 * time.Hour),
					KeyAlgorithm: "ecdsa-p256", Profile: "server", Requester: "bench", Channel: "api",
					DER: append([]byte(serial), der...), Created: fake.Now()}
				if err := s.WithTx(ctx, func(tx store.Tx) error {
					if err := tx.InsertCertificate(&rec); err != nil {
						return err
					}
					_, err := tx.AppendAudit(audit.Event{Time: rec.Created, Actor: "bench", Action: "cert.issued", Target: serial})
					return err
				}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	if n := certs.Load(); n > 0 {
		per := float64(held.Load()) / float64(n) / 1e3
		b.ReportMetric(per, "lock-µs/cert")
		b.ReportMetric(1e6/per, "ceiling-certs/s")
	}
}
