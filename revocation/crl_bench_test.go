package revocation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// benchRevoked is how many revoked certificates the CRL benchmarks list.
const benchRevoked = 1_000_000

// fillRevoked records n revoked certificates of the intermediate in one
// transaction, through the store's write path, assigned to shards as the CA
// assigns them.
func fillRevoked(b *testing.B, e *testEnv, n, shards int) {
	b.Helper()
	issuer := e.auth.Intermediate().ID
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01} // the CRL never reads it
	at := testStart                             // not after the CRL's thisUpdate (zlint e_crl_revocation_time_after_this_update)
	start := time.Now()
	err := e.st.WithTx(context.Background(), func(tx store.Tx) error {
		raw := make([]byte, 16)
		for i := range n {
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			raw[0] |= 0x01 // 128 bits, non-zero
			serial := new(big.Int).SetBytes(raw)
			rec := store.CertRecord{IssuerID: issuer, Serial: ca.SerialString(serial), Subject: "CN=bench", NotBefore: testStart,
				NotAfter: testStart.Add(90 * 24 * time.Hour), KeyAlgorithm: "ecdsa-p256", Profile: "tls-server", Requester: "bench",
				Channel: ca.ChannelInternal, DER: der, Created: testStart, CRLShard: ca.CRLShard(serial, shards)}
			if err := tx.InsertCertificate(&rec); err != nil {
				return err
			}
			reason, invalidity := []int{ca.ReasonKeyCompromise, ca.ReasonSuperseded, ca.ReasonCessationOfOperation, ca.ReasonUnspecified}[i%4], time.Time{}
			if reason == ca.ReasonKeyCompromise {
				invalidity = testStart.Add(-30 * time.Minute)
			}
			if err := tx.RevokeCertificate(issuer, rec.Serial, at, reason, invalidity); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("fill: %v", err)
	}
	b.Logf("filled %d revoked certificates in %s", n, time.Since(start).Round(time.Millisecond))
}

// resetPeakRSS frees what the fill left and resets VmHWM (Linux clear_refs),
// so that the peak reported is the generation's.
func resetPeakRSS(b *testing.B) {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): it includes the fill", err)
	}
	b.Logf("RSS before generating: %.0f MiB", procStatusMiB(b, "VmRSS:"))
}

// peakRSSMiB reads VmHWM from /proc/self/status.
func peakRSSMiB(b *testing.B) float64 { return procStatusMiB(b, "VmHWM:") }

// procStatusMiB reads a kB field of /proc/self/status.
func procStatusMiB(b *testing.B, field string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkCRL generates, signs and stores a CRL of 1,000,000 revoked
// certificates (target: under 5 s, peak RSS under 512 MiB), and the 16 shard
// CRLs of the same number spread over 16 partitions (target: each under 1 s).
func BenchmarkCRL(b *testing.B) {
	ctx := context.Background()
	b.Run("whole/entries=1M", func(b *testing.B) {
		e := newTestEnv(b, 0)
		fillRevoked(b, e, benchRevoked, 0)
		resetPeakRSS(b)
		var rec store.CRLRecord
		for b.Loop() {
			var err error
			if rec, err = e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
		b.ReportMetric(float64(len(rec.DER))/(1<<20), "CRL-MiB")
		crl := e.parseCRL(b, rec.DER)
		if len(crl.RevokedCertificateEntries) != benchRevoked {
			b.Errorf("CRL lists %d entries, want %d", len(crl.RevokedCertificateEntries), benchRevoked)
		}
	})
	b.Run("shards=16/entries=1M", func(b *testing.B) {
		e := newTestEnv(b, 16)
		fillRevoked(b, e, benchRevoked, 16)
		resetPeakRSS(b)
		var slowest time.Duration
		for b.Loop() {
			for shard := 1; shard <= 16; shard++ {
				start := time.Now()
				if _, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, shard); err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(start))
			}
		}
		b.ReportMetric(float64(slowest.Milliseconds()), "slowest-shard-ms")
		b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
		total := 0
		for shard := 1; shard <= 16; shard++ {
			rec, _ := e.pub.Current(e.auth.Intermediate().ID, shard)
			crl, err := x509.ParseRevocationList(rec.DER)
			if err != nil {
				b.Fatal(err)
			}
			total += len(crl.RevokedCertificateEntries)
		}
		if total != benchRevoked {
			b.Errorf("16 shards list %d entries, want %d", total, benchRevoked)
		}
	})
}
