package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// TestOCSPNonceFlood: a flood of POSTs with nonces against an RSA-3072
// responder (the intermediate signs) is signed live only within the
// client's own budget; every other request still gets a valid pre-signed
// answer. It logs the server CPU the flood cost.
func TestOCSPNonceFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: runs sigil serve")
	}
	t.Parallel()
	c := initCA(t, "--intermediate-key-type", "rsa-3072")
	e2eSetConfig(t, c, "  nonce: false\n", "  nonce: true\n")
	e2eSetConfig(t, c, "  sign_with_issuer: false\n", "  sign_with_issuer: true\n")
	p := startServe(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "flood.example")
	req, err := ocsp.CreateRequest(chain[0], chain[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	body := e2eWithNonce(t, req, 16)

	const workers, perSourceRate, perSourceBurst = 16, 5, 11 // the defaults: 5/s, burst 2×5+1
	cpuBefore := procCPU(t, p.cmd.Process.Pid)
	start := time.Now()
	var requests, answered atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 3*time.Second {
				resp, err := client.Post(p.httpURL+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				der, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				requests.Add(1)
				if r, err := ocsp.ParseResponseForCert(der, chain[0], chain[1]); err == nil && r.Status == ocsp.Good {
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := procCPU(t, p.cmd.Process.Pid) - cpuBefore
	signed := e2eMetric(t, p, c, `sigil_ocsp_nonce_responses_total{result="signed"}`)
	limited := e2eMetric(t, p, c, `sigil_ocsp_nonce_responses_total{result="rate_limited"}`)
	t.Logf("RSA-3072 responder, %d workers from one source, %v: %d requests (%.0f/s), %v signed live, %v answered pre-signed; server CPU %v (%.0f%% of one core)",
		workers, elapsed.Round(time.Millisecond), requests.Load(), float64(requests.Load())/elapsed.Seconds(), signed, limited,
		cpu.Round(time.Millisecond), 100*cpu.Seconds()/elapsed.Seconds())
	if answered.Load() != requests.Load() {
		t.Errorf("%d of %d requests got no valid good response", requests.Load()-answered.Load(), requests.Load())
	}
	// The client's own budget: the burst plus the rate over the flood (and
	// a second's slack for the time the metrics take to read).
	if bound := perSourceBurst + perSourceRate*(elapsed.Seconds()+1); signed > bound {
		t.Errorf("%v nonces signed live for one client in %v, over its budget of %.0f", signed, elapsed, bound)
	}
	if signed+limited != float64(requests.Load()) {
		t.Errorf("signed %v + rate-limited %v != %d requests", signed, limited, requests.Load())
	}
}

// procCPU is the user and system time process pid has used (Linux).
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("SKIPPING: no /proc to read server CPU from: %v", err)
	}
	// Fields after the command name (which may hold spaces), from ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}
