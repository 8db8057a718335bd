package main

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSlowClientCut: a client that never finishes its request headers is
// disconnected after limits.read_header_timeout (slow-loris guard).
func TestSlowClientCut(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "read_header_timeout: 10s", "read_header_timeout: 300ms", 1)
	if edited == string(cfg) {
		t.Fatalf("sigil.yaml has no read_header_timeout: 10s line to edit:\n%s", cfg)
	}
	if err := os.WriteFile(c.config, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, c)
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.httpURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /roots.pem HTTP/1.1\r\nHost: sigil.test\r\n"); err != nil {
		t.Fatal(err)
	}
	// The default timeout is 10s; 5s proves the configured 300ms applies.
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s with read_header_timeout 300ms")
	}
	t.Logf("server closed the half-sent request after %s", time.Since(start).Round(time.Millisecond))
}
