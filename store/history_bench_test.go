package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// benchHistorySize is how many certificates the history benchmarks query.
const benchHistorySize = 1_000_000

// benchGenVersion changes whenever historyGen or the fixture's build
// changes what it records, so a cached fixture is never stale.
const benchGenVersion = "1"

// historyFixture returns the path of a database holding benchHistorySize
// generated certificates, built once through the bulk path (big
// transactions of InsertCertificate) and cached under os.TempDir() by a
// hash of the migrations and the generator version. A fixture cached
// before the newest migrations is upgraded instead (a copy opened, so its
// migrations and backfills run): minutes faster than a rebuild.
func historyFixture(b *testing.B) string {
	b.Helper()
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(names)
	fixture := func(migrations []string) string {
		h := sha256.New()
		fmt.Fprintf(h, "%s/%d\n", benchGenVersion, benchHistorySize)
		for _, path := range migrations {
			body, err := migrationFS.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(h, "%s %d\n", path, len(body))
			h.Write(body)
		}
		return filepath.Join(os.TempDir(), "sigil-history-"+hex.EncodeToString(h.Sum(nil))[:16]+".db")
	}
	path := fixture(names)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	for k := len(names) - 1; k > 0; k-- {
		if old := fixture(names[:k]); upgradeFixture(b, old, path) {
			return path
		}
	}
	tmp := path + ".building"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(p)
	}
	start := time.Now()
	s, err := Open(context.Background(), Config{Path: tmp, Clock: clockwork.NewFakeClockAt(historyNow)})
	if err != nil {
		b.Fatal(err)
	}
	seedIssuers(b, s, "int-a", "int-b")
	g := newHistoryGen(42, historyNow, benchHistorySize, 2000, 500)
	g.ordered, g.derSize = true, 800
	mustTx(b, s, g.accountsTx)
	for done := 0; done < benchHistorySize; {
		batch := min(benchHistorySize-done, 20000)
		mustTx(b, s, func(tx Tx) error {
			for range batch {
				c, account := g.cert()
				if err := g.insert(tx, &c, account); err != nil {
					return err
				}
			}
			return nil
		})
		done += batch
	}
	finishFixture(b, s, tmp, path)
	b.Logf("built %s (%d certificates) in %v", path, benchHistorySize, time.Since(start).Round(time.Second))
	return path
}

// finishFixture gives the planner statistics of the built store s at tmp,
// closes it and moves it to path.
func finishFixture(b *testing.B, s *SQLite, tmp, path string) {
	if _, err := s.write.Exec("ANALYZE"); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
}

// upgradeFixture copies the fixture at old, if there is one, and opens the
// copy, which applies the newer migrations, into path.
func upgradeFixture(b *testing.B, old, path string) bool {
	src, err := os.Open(old)
	if err != nil {
		return false
	}
	defer src.Close()
	start := time.Now()
	tmp := path + ".building"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(p)
	}
	dst, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
	s, err := Open(context.Background(), Config{Path: tmp, Clock: clockwork.NewFakeClockAt(historyNow)})
	if err != nil {
		b.Fatal(err)
	}
	finishFixture(b, s, tmp, path)
	b.Logf("upgraded %s to %s in %v", old, path, time.Since(start).Round(time.Second))
	return true
}

// latencies reports the median and 99th percentile of d in milliseconds.
func latencies(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // latency percentiles say it better
}

// benchHistoryQueries are the queries BenchmarkHistoryQuery times: each
// filter alone in the default order, each order unfiltered, and
// combinations, with rare and common values.
func benchHistoryQueries() []struct {
	name string
	f    CertFilter
} {
	now := historyNow
	day := 24 * time.Hour
	return []struct {
		name string
		f    CertFilter
	}{
		{"all/issued_desc", CertFilter{}},
		{"all/issued_asc", CertFilter{Sort: SortIssuedAsc}},
		{"all/expiry_asc", CertFilter{Sort: SortExpiryAsc}},
		{"all/expiry_desc", CertFilter{Sort: SortExpiryDesc}},
		{"serial", CertFilter{Serial: "2a00012345"}},
		{"name/common", CertFilter{Name: "web-1"}},
		{"name/mid", CertFilter{Name: "cache-12"}},
		{"name/rare", CertFilter{Name: "rare-zone"}},
		{"name/rarest", CertFilter{Name: "vpn-4711."}},
		{"name/none", CertFilter{Name: "nomatch.invalid"}},
		{"name/short", CertFilter{Name: "b-"}},
		{"exact/common", CertFilter{NameExact: "web-0.example.com"}},
		{"exact/rare", CertFilter{NameExact: "vpn-4711.corp.internal"}},
		{"suffix/common", CertFilter{NameSuffix: ".corp.internal"}},
		{"suffix/rare", CertFilter{NameSuffix: ".rare-zone.example"}},
		{"profile/common", CertFilter{Profile: "server"}},
		{"profile/rare", CertFilter{Profile: "legacy"}},
		{"requester/common", CertFilter{Requester: "team-000"}},
		{"requester/rare", CertFilter{Requester: "team-1500"}},
		{"issuer", CertFilter{IssuerID: "int-b"}},
		{"issuer_key", CertFilter{IssuerKeyID: "key-int-b"}},
		{"channel/common", CertFilter{Channel: "acme"}},
		{"channel/rare", CertFilter{Channel: "renew"}},
		{"acme_account/common", CertFilter{ACMEAccount: "acct-000"}},
		{"acme_account/rare", CertFilter{ACMEAccount: "acct-400"}},
		{"key_algorithm/common", CertFilter{KeyAlgorithm: "ECDSA-P256"}},
		{"key_algorithm/rare", CertFilter{KeyAlgorithm: "RSA-4096"}},
		{"status/valid", CertFilter{Status: "valid", Now: now}},
		{"status/expired", CertFilter{Status: "expired", Now: now}},
		{"status/revoked", CertFilter{Status: "revoked", Now: now}},
		{"issued/last_day", CertFilter{IssuedAfter: now.Add(-day)}},
		{"issued/between", CertFilter{IssuedAfter: now.Add(-400 * day), IssuedBefore: now.Add(-300 * day)}},
		{"expiring/within_week", CertFilter{ExpiringAfter: now, ExpiringBefore: now.Add(7 * day)}},
		{"revoked/between", CertFilter{RevokedAfter: now.Add(-200 * day), RevokedBefore: now.Add(-100 * day)}},
		{"combo/profile_valid_expiry_asc", CertFilter{Profile: "mtls", Status: "valid", Now: now, Sort: SortExpiryAsc}},
		{"combo/requester_valid_expiry_asc", CertFilter{Requester: "team-003", Status: "valid", Now: now, Sort: SortExpiryAsc}},
		{"combo/suffix_expiring_week", CertFilter{NameSuffix: ".example.com", ExpiringAfter: now, ExpiringBefore: now.Add(7 * day), Sort: SortExpiryAsc}},
		{"combo/account_name", CertFilter{ACMEAccount: "acct-001", Name: "api-"}},
		{"combo/channel_key_valid", CertFilter{Channel: "api", KeyAlgorithm: "RSA-2048", Status: "valid", Now: now}},
		{"combo/valid_issued_asc", CertFilter{Status: "valid", Now: now, Sort: SortIssuedAsc}},
		{"combo/expired_expiry_desc", CertFilter{Status: "expired", Now: now, Sort: SortExpiryDesc}},
		{"combo/revoked_expiry_asc", CertFilter{Status: "revoked", Now: now, Sort: SortExpiryAsc}},
	}
}

// BenchmarkHistoryQuery times the first page (100 rows) of history
// queries on benchHistorySize certificates and reports p50 and p99.
func BenchmarkHistoryQuery(b *testing.B) {
	s := openTest(b, Config{Path: historyFixture(b)})
	ctx := context.Background()
	for _, q := range benchHistoryQueries() {
		b.Run(q.name, func(b *testing.B) {
			d := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, _, err := s.Certificates(ctx, q.f); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(start))
			}
			latencies(b, d)
		})
	}
}

// BenchmarkHistorySummary times summaries over recent and long ranges and
// reports p50 and p99, each answered as CertificateSummary does (rollup)
// and from the certificate indexes alone (index).
func BenchmarkHistorySummary(b *testing.B) {
	s := openTest(b, Config{Path: historyFixture(b)})
	ctx := context.Background()
	day := 24 * time.Hour
	last := func(d time.Duration) CertFilter { return CertFilter{IssuedAfter: historyNow.Add(-d), Now: historyNow} }
	for _, q := range []struct {
		name string
		by   CertGroup
		f    CertFilter
	}{
		{"day/30d", GroupDay, last(30 * day)},
		{"profile/30d", GroupProfile, last(30 * day)},
		{"requester/30d", GroupRequester, last(30 * day)},
		{"channel/30d", GroupChannel, last(30 * day)},
		{"issuer/30d", GroupIssuer, last(30 * day)},
		{"status/30d", GroupStatus, last(30 * day)},
		{"day/30d_profile", GroupDay, CertFilter{IssuedAfter: historyNow.Add(-30 * day), Profile: "mtls"}},
		{"day/365d", GroupDay, last(365 * day)},
		{"profile/all", GroupProfile, CertFilter{}},
		{"requester/all", GroupRequester, CertFilter{}},
		{"channel/365d", GroupChannel, last(365 * day)},
		{"issuer/365d_profile", GroupIssuer, CertFilter{IssuedAfter: historyNow.Add(-365 * day), Profile: "server"}},
		{"requester/365d", GroupRequester, last(365 * day)},
		{"status/all", GroupStatus, CertFilter{Now: historyNow}},
	} {
		for _, path := range []string{"rollup", "index"} {
			b.Run(q.name+"/"+path, func(b *testing.B) {
				s.noRollup = path == "index"
				defer func() { s.noRollup = false }()
				d := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if _, _, err := s.CertificateSummary(ctx, q.f, q.by); err != nil {
						b.Fatal(err)
					}
					d = append(d, time.Since(start))
				}
				latencies(b, d)
			})
		}
	}
}
