package main

import (
	"encoding/json"
	"net"
	"testing"
)

// TestBenchACME runs `sigil bench acme` against a real `sigil serve` that
// validates http-01 on the port the bench serves (issue 5, item 10).
func TestBenchACME(t *testing.T) {
	skipLoadTestInShort(t)
	inProcess(t)
	_, httpPort, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	c := initCA(t)
	p := startServe(t, c, "--acme-http-port", httpPort)

	stdout, stderr, err := runSigil(t, nil, "bench", "acme",
		"--directory", p.httpsURL+"/acme/directory", "--ca-file", c.root,
		"--concurrency", "4", "--count", "20", "--http-port", httpPort,
		"--format", "json", "--quiet")
	if err != nil {
		p.stop(t)
		t.Fatalf("sigil bench acme: %v\nstdout:\n%s\nstderr:\n%s\nsigil serve stderr:\n%s", err, stdout, stderr, p.stderr)
	}
	var res benchACMEResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("decode bench output: %v\n%s", err, stdout)
	}
	if res.Count != 20 {
		t.Errorf("count = %d, want 20", res.Count)
	}
	if res.Errors != 0 {
		t.Errorf("errors = %d, want 0 (first: %s)", res.Errors, res.FirstError)
	}
	if res.PerSecond <= 0 {
		t.Errorf("orders_per_second = %v, want > 0", res.PerSecond)
	}
	if res.Validated < 1 {
		t.Errorf("validated = %d, want at least 1 http-01 validation", res.Validated)
	}
	if res.Validated+res.Reused != 20 {
		t.Errorf("validated %d + reused %d != 20", res.Validated, res.Reused)
	}
	if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
		t.Errorf("percentiles out of order: p50 %v p99 %v max %v", res.P50, res.P99, res.Max)
	}
	t.Logf("bench acme: %.1f orders/s, p50 %v, p95 %v, p99 %v, validated %d, reused %d",
		res.PerSecond, res.P50, res.P95, res.P99, res.Validated, res.Reused)
}
