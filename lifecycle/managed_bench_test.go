package lifecycle

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

// BenchmarkManagedRenew is issue 7's acceptance benchmark: one run of the
// managed-renew task renews N due managed certificates (default 10,000;
// SIGIL_BENCH_MANAGED overrides), each with a new key (rotate-key always),
// on a SQLite file with synchronous=FULL, while a goroutine issues
// certificates through ca.Sign as the API does (SIGIL_BENCH_API_CALLERS
// goroutines; SIGIL_BENCH_SIGNERS and SIGIL_BENCH_WORKERS override the
// job's defaults). Creation is not timed. It reports renewals/s and the
// run's seconds, and the issuers' throughput and p50/p99 latency alone
// (3,000 certificates before the run) and during it.
//
//	go test ./lifecycle -run '^$' -bench ManagedRenew -benchtime 1x
func BenchmarkManagedRenew(b *testing.B) {
	n := 10000
	if s := os.Getenv("SIGIL_BENCH_MANAGED"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("SIGIL_BENCH_MANAGED=%q", s)
		}
		n = v
	}
	ctx := context.Background()
	clk := clockwork.NewFakeClockAt(testStart)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(b.TempDir(), "sigil.db"), Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ta := newTestAuthority(b, clk, st, nil)
	svc := ta.service(b, clk, ta.Authority)

	// Create N managed certificates through the real path, concurrently.
	created := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				name := fmt.Sprintf("svc-%05d", i)
				if _, err := svc.Create(ctx, managed.Spec{Name: name, SANs: []string{name + ".example.com"},
					Profile: "tls-server", RotateKey: "always", Actor: "bench"}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("create: %v", err)
	}
	b.Logf("created %d managed certificates in %s (not timed)", n, time.Since(created).Round(time.Millisecond))

	cfg := ManagedRenewConfig{Logger: slog.New(slog.DiscardHandler)}
	for env, v := range map[string]*int{"SIGIL_BENCH_SIGNERS": &cfg.Signers, "SIGIL_BENCH_WORKERS": &cfg.Workers} {
		if s := os.Getenv(env); s != "" {
			if *v, err = strconv.Atoi(s); err != nil {
				b.Fatalf("%s=%q", env, s)
			}
		}
	}
	callers := 1 // API-style issuers running alongside; SIGIL_BENCH_API_CALLERS overrides
	if s := os.Getenv("SIGIL_BENCH_API_CALLERS"); s != "" {
		if callers, err = strconv.Atoi(s); err != nil || callers < 1 {
			b.Fatalf("SIGIL_BENCH_API_CALLERS=%q", s)
		}
	}
	task, err := ManagedRenewTask(cfg, svc)
	if err != nil {
		b.Fatal(err)
	}
	csr := benchCSR(b)
	sign := func() error {
		_, err := ta.Sign(ctx, ca.SignRequest{CSR: csr, Profile: "tls-server", Requester: "bench-api", Channel: ca.ChannelAPI})
		return err
	}
	var renewSecs, apiAloneRate, apiAloneP50, apiAloneP99, apiDuringRate, apiDuringP50, apiDuringP99, apiDuringMax float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clk.Advance(61 * 24 * time.Hour) // past two thirds of every version's 90 days
		alone := issueFor(b, callers, sign, func(stop chan struct{}) { <-stop }, 3000)
		b.StartTimer()
		var res Result
		var runErr error
		var took time.Duration
		during := issueFor(b, callers, sign, func(stop chan struct{}) {
			t0 := time.Now()
			res, runErr = task(ctx)
			took = time.Since(t0)
			close(stop)
		}, 0)
		b.StopTimer()
		if runErr != nil || res.Items != int64(n) {
			b.Fatalf("run: %d items, %v; want %d renewals", res.Items, runErr, n)
		}
		renewSecs += took.Seconds()
		apiAloneRate += alone.rate
		apiAloneP50 += alone.p50
		apiAloneP99 += alone.p99
		apiDuringRate += during.rate
		apiDuringP50 += during.p50
		apiDuringP99 += during.p99
		apiDuringMax = max(apiDuringMax, during.max)
		b.StartTimer()
	}
	b.StopTimer()
	k := float64(b.N)
	b.ReportMetric(float64(n)*k/renewSecs, "renewals/s")
	b.ReportMetric(renewSecs/k, "run-s")
	b.ReportMetric(apiAloneRate/k, "api-alone-certs/s")
	b.ReportMetric(apiAloneP50/k, "api-alone-p50-ms")
	b.ReportMetric(apiAloneP99/k, "api-alone-p99-ms")
	b.ReportMetric(apiDuringRate/k, "api-during-certs/s")
	b.ReportMetric(apiDuringP50/k, "api-during-p50-ms")
	b.ReportMetric(apiDuringP99/k, "api-during-p99-ms")
	b.ReportMetric(apiDuringMax, "api-during-max-ms")
	// Every version was kept and every replaced key retired.
	m, err := st.Managed(ctx, "svc-00000")
	if err != nil || m.Version != b.N+1 {
		b.Errorf("svc-00000 at version %d (%v), want %d", m.Version, err, b.N+1)
	}
}

type issueStats struct{ rate, p50, p99, max float64 }

// issueFor calls sign in a loop on callers goroutines while during runs,
// until during closes stop (or, if count > 0, count calls are done and stop
// is closed for it), and returns their throughput and latencies (ms).
func issueFor(b *testing.B, callers int, sign func() error, during func(stop chan struct{}), count int) issueStats {
	stop := make(chan struct{})
	var stopOnce sync.Once
	var calls atomic.Int64
	done := make(chan []time.Duration, callers)
	start := time.Now()
	for range callers {
		go func() {
			var lat []time.Duration
			defer func() { done <- lat }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				if err := sign(); err != nil {
					b.Errorf("Sign: %v", err)
					return
				}
				lat = append(lat, time.Since(t0))
				if count > 0 && calls.Add(1) == int64(count) {
					stopOnce.Do(func() { close(stop) })
					return
				}
			}
		}()
	}
	during(stop)
	var lat []time.Duration
	for range callers {
		lat = append(lat, <-done...)
	}
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return issueStats{}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return issueStats{rate: float64(len(lat)) / elapsed.Seconds(), p50: ms(lat[len(lat)/2]),
		p99: ms(lat[len(lat)*99/100]), max: ms(lat[len(lat)-1])}
}

func benchCSR(b *testing.B) *x509.CertificateRequest {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"api.example.com"}}, key)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		b.Fatal(err)
	}
	return csr
}
