package revocation

import (
	"crypto"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkOCSPGetHTTP serves the handler with net/http on loopback and
// drives it with keep-alive clients (client and server share the machine):
// cached GETs, rotating over 1000 certificates. It reports responses/s and
// the p50/p99 latency seen by the clients.
//
//	go test ./revocation/ -run '^$' -bench OCSPGetHTTP -benchtime 200000x
func BenchmarkOCSPGetHTTP(b *testing.B) {
	e := newEnv(b)
	paths := benchOCSPPaths(b, e)
	r := e.responder(OCSPConfig{})
	benchOCSPGets(b, r, paths)
}

// benchOCSPPaths issues 1000 certificates and returns GET paths asking
// about them, SHA-1 and SHA-256 CertIDs alternating.
func benchOCSPPaths(b *testing.B, e *env) []string {
	inter := e.auth.Intermediate().Cert
	var paths []string
	for i := range 1000 {
		c := e.issue("bench.example.com")
		h := crypto.SHA1
		if i%2 == 1 {
			h = crypto.SHA256
		}
		paths = append(paths, "/ocsp/"+base64.StdEncoding.EncodeToString(request(b, c, inter, h)))
	}
	return paths
}

// benchOCSPGets sends b.N GETs over 8 keep-alive connections to r on a
// loopback listener and reports responses/s and client-side p50/p99.
func benchOCSPGets(b *testing.B, r *Responder, paths []string) {
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	const conns = 8
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	lat := make([][]time.Duration, conns)
	var next sync.Mutex
	n := 0
	hits0 := counterValue(b, r.metrics.hits)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				next.Lock()
				i := n
				n++
				next.Unlock()
				if i >= b.N {
					return
				}
				t0 := time.Now()
				resp, err := client.Get(srv.URL + paths[i%len(paths)])
				if err != nil {
					b.Error(err)
					return
				}
				for {
					if _, err := resp.Body.Read(buf); err == io.EOF {
						break
					} else if err != nil {
						b.Error(err)
						break
					}
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("HTTP %d", resp.StatusCode)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "responses/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	if hits := counterValue(b, r.metrics.hits) - hits0; hits < float64(len(all)) {
		b.Errorf("cache hits %v < responses %d: the hot path missed", hits, len(all))
	}
}
