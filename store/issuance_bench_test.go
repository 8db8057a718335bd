package store_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// issuancesPerRound is how many Sign calls one timed round makes: enough
// that a round lasts about a second on a loaded two-core machine, so timer
// and scheduling noise stay small against it.
const issuancesPerRound = 400

// BenchmarkIssuanceLogOverhead measures what the transparency log append
// adds to whole issuance (issue 8: under 10%). Two real authorities, each
// initialized on its own SQLite file, sign the same tls-server CSR through
// ca.Authority.Sign: CSR checks, policy, zlint, the signature, and the
// durable group commit of the certificate and its audit event, with the
// log append on one store and without it on the other. Each iteration is
// one pair of rounds of issuancesPerRound issuances, one per authority,
// in alternating order, so machine noise and drift fall on both sides
// alike; run it with -benchtime Nx for N pairs.
//
// It reports certs/s, p50 and p99 latency of one Sign call per side,
// overhead-% = (wall time with log / time without - 1) * 100 over all
// rounds, overhead-med-%, the median of that ratio per pair, and the same
// ratio of process CPU time per certificate, cpu-overhead-%, which other
// load on a shared machine disturbs far less than wall time.
func BenchmarkIssuanceLogOverhead(b *testing.B) {
	for _, callers := range []int{1, 8, 32} {
		b.Run("callers="+strconv.Itoa(callers), func(b *testing.B) {
			benchIssuanceLogOverhead(b, callers)
		})
	}
}

// side is one authority under test and what its rounds measured.
type side struct {
	a   *ca.Authority
	st  *store.SQLite
	lat []time.Duration
	dur time.Duration // wall time of its rounds
	cpu time.Duration // process CPU time of its rounds
}

func benchIssuanceLogOverhead(b *testing.B, callers int) {
	ctx := context.Background()
	withLog := newBenchAuthority(b, store.Open)
	without := newBenchAuthority(b, store.OpenWithoutLog)
	key, err := keystore.Generate(keystore.ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "bench.example.com"},
		DNSNames: []string{"bench.example.com", "www.bench.example.com"},
	}, key)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		b.Fatal(err)
	}
	req := ca.SignRequest{CSR: csr, Profile: "tls-server", Requester: "bench", Channel: ca.ChannelAPI}

	// round makes n Sign calls on s from callers goroutines and returns
	// their latencies, the round's wall time and the process CPU time it
	// took. Rounds never overlap, so that CPU time is this side's alone
	// (but for stray GC of the other's garbage), and unlike wall time it
	// does not grow when other processes take the cores.
	round := func(s *side, n int) ([]time.Duration, time.Duration, time.Duration) {
		var next atomic.Int64
		var mu sync.Mutex
		var wg sync.WaitGroup
		lat := make([]time.Duration, 0, n)
		cpu0 := cpuTime(b)
		start := time.Now()
		for range callers {
			wg.Go(func() {
				var mine []time.Duration
				for next.Add(1) <= int64(n) {
					t0 := time.Now()
					if _, err := s.a.Sign(ctx, req); err != nil {
						b.Errorf("Sign: %v", err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		return lat, time.Since(start), cpuTime(b) - cpu0
	}
	// Warm both sides up (linter, prepared statements, page cache) untimed.
	round(without, issuancesPerRound/4)
	round(withLog, issuancesPerRound/4)

	var ratios []float64 // with/without wall time, per pair
	pair := 0
	for b.Loop() {
		order := []*side{without, withLog}
		if pair%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		var d [2]time.Duration
		for i, s := range order {
			lat, dur, cpu := round(s, issuancesPerRound)
			s.lat = append(s.lat, lat...)
			s.dur += dur
			s.cpu += cpu
			d[i] = dur
		}
		if order[0] == withLog {
			d[0], d[1] = d[1], d[0]
		}
		ratios = append(ratios, d[1].Seconds()/d[0].Seconds())
		pair++
	}
	b.StopTimer()
	if b.Failed() {
		return
	}
	checkLogged(b, withLog.st, without.st)

	total := float64(pair * issuancesPerRound)
	b.ReportMetric(total/withLog.dur.Seconds(), "certs/s-log")
	b.ReportMetric(total/without.dur.Seconds(), "certs/s-nolog")
	b.ReportMetric((withLog.dur.Seconds()/without.dur.Seconds()-1)*100, "overhead-%")
	b.ReportMetric(float64(withLog.cpu.Microseconds())/total, "cpu-us/cert-log")
	b.ReportMetric(float64(without.cpu.Microseconds())/total, "cpu-us/cert-nolog")
	b.ReportMetric((withLog.cpu.Seconds()/without.cpu.Seconds()-1)*100, "cpu-overhead-%")
	slices.Sort(ratios)
	b.ReportMetric((ratios[len(ratios)/2]-1)*100, "overhead-med-%")
	for _, s := range []struct {
		name string
		lat  []time.Duration
	}{{"log", withLog.lat}, {"nolog", without.lat}} {
		slices.Sort(s.lat)
		b.ReportMetric(ms(s.lat[len(s.lat)/2]), "p50-ms-"+s.name)
		b.ReportMetric(ms(s.lat[len(s.lat)*99/100]), "p99-ms-"+s.name)
	}
	b.ReportMetric(0, "ns/op") // one op is a pair of rounds: the rates say more
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newBenchAuthority initializes an authority on a fresh SQLite file opened
// by open, as ca's newTestCA does: real keys (cheap KDF), fake clock,
// audit checkpoints, default profiles.
func newBenchAuthority(b *testing.B, open func(context.Context, store.Config) (*store.SQLite, error)) *side {
	b.Helper()
	ctx := context.Background()
	st, err := open(ctx, store.Config{Path: filepath.Join(b.TempDir(), "sigil.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := st.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	clk := testclock.New()
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	res, err := ca.Init(ctx, st, ca.InitConfig{
		Name: "Bench CA", RootAlgorithm: keystore.ECDSAP256, IntermediateAlgorithm: keystore.ECDSAP256,
		BaseURL: "http://ca.test:8080", Passphrase: []byte("correct horse"), KDF: params, Clock: clk,
	})
	if err != nil {
		b.Fatalf("Init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	a, err := ca.New(ctx, ca.Config{
		Profiles: ca.DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st, res.Keystore)
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	return &side{a: a, st: st}
}

// checkLogged fails unless the store with the log logged every certificate
// it holds and the one without logged none, so the figures compare what
// they claim to.
func checkLogged(b *testing.B, withLog, without *store.SQLite) {
	b.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		st   *store.SQLite
		want func(certs int64) uint64
	}{
		{"with log", withLog, func(n int64) uint64 { return uint64(n) }},
		{"without log", without, func(int64) uint64 { return 0 }},
	} {
		n, err := c.st.CertificateCount(ctx)
		if err != nil {
			b.Fatal(err)
		}
		size, err := c.st.LogSize(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if want := c.want(n); size != want {
			b.Errorf("%s: log size = %d for %d certificates, want %d", c.name, size, n, want)
		}
	}
}
