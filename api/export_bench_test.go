package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/store"
)

// BenchmarkCertExport exports a million-certificate SQLite store as NDJSON
// (PEM included) into io.Discard through WriteCertExport and the store's
// keyset scan, as GET /v1/certificates/export does, at two sizes: the
// first 100,000 certificates (an issued_before filter) and all 1,000,000.
// It reports rows/s, the peak live heap sampled during the export, and the
// process's peak RSS (VmHWM, reset before each size where the kernel
// allows): constant memory means the two sizes show the same peaks.
//
//	go test -run '^$' -bench CertExport -benchtime 1x -count 3 ./api
//
// The first run builds the fixture (minutes) and caches it under
// os.TempDir() (see exportFixture).
func BenchmarkCertExport(b *testing.B) {
	const total = 1_000_000
	path := exportFixture(b, total)
	ctx := context.Background()
	now := benchEpoch.Add(total*time.Second + 24*time.Hour) // early rows expired, later ones valid
	st, err := store.Open(ctx, store.Config{Path: path, Clock: clockwork.NewFakeClockAt(now)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for _, rows := range []int{100_000, total} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			f := store.CertFilter{Now: now, Sort: store.SortIssuedAsc, Channel: "api"} // not Init's own
			if rows < total {
				f.IssuedBefore = benchEpoch.Add(time.Duration(rows) * time.Second)
			}
			runtime.GC()
			resetPeakRSS()
			peak := sampleHeap()
			var n, bytes int64
			for b.Loop() {
				cw := &countingWriter{}
				err := api.WriteCertExport(cw, "ndjson", func(fn func(store.CertRecord) error) error {
					return st.ScanCertificates(ctx, f, func(c store.CertRecord) error {
						n++
						return fn(c)
					})
				}, now)
				if err != nil {
					b.Fatal(err)
				}
				bytes += cw.n
			}
			heap := peak()
			if n != int64(rows)*int64(b.N) {
				b.Fatalf("exported %d rows in %d runs, want %d each", n, b.N, rows)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(n)/secs, "rows/s")
			b.ReportMetric(float64(bytes)/secs/1e6, "MB/s")
			b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
			if rss, ok := peakRSS(); ok {
				b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
			}
		})
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return io.Discard.Write(p)
}

// sampleHeap samples the live heap (runtime/metrics, which does not stop
// the world) every 5 ms until the returned function is called,
// which returns the largest sample.
func sampleHeap() func() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	var (
		peak = read()
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done // the sampler has stopped writing peak
		return peak
	}
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs), so that the
// peak covers the export and not the fixture build before it.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS reads the process's peak resident set (VmHWM) on Linux.
func peakRSS() (uint64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
