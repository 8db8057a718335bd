package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca/keystore"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load-test a running server"}
	cmd.AddCommand(benchSignCmd(), benchACMECmd())
	return cmd
}

// benchResult summarizes one run.
type benchResult struct {
	Count       int           `json:"count"`
	Errors      int64         `json:"errors"`
	Concurrency int           `json:"concurrency"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"certs_per_second"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
}

func benchSignCmd() *cobra.Command {
	var cf clientFlags
	var concurrency, count, csrs int
	var profile, format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "sign --server URL --concurrency C --count N",
		Short: "Issue N certificates over HTTPS with C concurrent clients; print certificates/s and latency percentiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if concurrency < 1 || count < 1 || csrs < 1 {
				return fmt.Errorf("--concurrency, --count and --csrs must be positive")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			// CSRs are made before the clock starts so the client's own
			// signing does not compete with the server being measured.
			pool := make([]string, csrs)
			for i := range pool {
				key, err := keystore.Generate(keystore.ECDSAP256)
				if err != nil {
					return err
				}
				b, err := buildCSR(key, "", []string{fmt.Sprintf("bench-%d.sigil.test", i)})
				if err != nil {
					return err
				}
				pool[i] = string(b)
			}
			// One warm-up request opens a connection and checks the token.
			if _, err := c.Sign(cmd.Context(), api.SignRequest{CSR: pool[0], Profile: profile}); err != nil {
				return fmt.Errorf("warm-up request: %w", err)
			}
			bar := progressbar.NewOptions(count, progressbar.OptionSetWriter(cmd.ErrOrStderr()),
				progressbar.OptionSetDescription("signing"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("certs"), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetVisibility(!quiet))
			res, err := runSignBench(cmd.Context(), c, pool, profile, concurrency, count, func() { _ = bar.Add(1) })
			_ = bar.Finish()
			fmt.Fprintln(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if format == "json" {
				return render(cmd.OutOrStdout(), "json", table{}, res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d certificates in %s with %d clients: %.0f certificates/s, p50 %s, p99 %s, max %s, errors %d\n",
				res.Count, res.Elapsed.Round(time.Millisecond), res.Concurrency, res.PerSecond,
				res.P50.Round(10*time.Microsecond), res.P99.Round(10*time.Microsecond), res.Max.Round(10*time.Microsecond), res.Errors)
			if res.Errors > 0 {
				return fmt.Errorf("%d requests failed", res.Errors)
			}
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.IntVar(&concurrency, "concurrency", 32, "concurrent clients")
	f.IntVar(&count, "count", 10000, "certificates to issue")
	f.IntVar(&csrs, "csrs", 64, "distinct CSRs (keys) to rotate through")
	f.StringVar(&profile, "profile", "tls-server", "issuance profile")
	f.StringVar(&format, "format", "text", "text or json")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

func runSignBench(ctx context.Context, c *client.Client, csrs []string, profile string, concurrency, count int, tick func()) (benchResult, error) {
	lat := make([]time.Duration, count)
	var next, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				_, err := c.Sign(ctx, api.SignRequest{CSR: csrs[i%len(csrs)], Profile: profile})
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				tick()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil && errs.Load() == int64(count) {
		return benchResult{}, fmt.Errorf("every request failed: %w", e.(error))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return benchResult{Count: count, Errors: errs.Load(), Concurrency: concurrency, Elapsed: elapsed,
		PerSecond: float64(count) / elapsed.Seconds(), P50: pct(0.50), P99: pct(0.99), Max: lat[len(lat)-1]}, nil
}
