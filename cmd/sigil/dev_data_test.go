package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevDataDir: sigil dev refuses a directory it did not make, reuses its
// own, and leaves nothing behind when it cannot start.
func TestDevDataDir(t *testing.T) {
	t.Parallel()
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "keep.txt"), []byte("operator data"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runSigil(t, nil, "dev", "--data", foreign, "--https-addr", freeAddr(t), "--http-addr", freeAddr(t))
	if err == nil || !strings.Contains(errOut, "not made by sigil dev") {
		t.Errorf("dev on a foreign directory: err %v, stderr %q", err, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "keep.txt")); err != nil || string(b) != "operator data" {
		t.Errorf("foreign directory was touched: %v %q", err, b)
	}

	// A port in use: the start fails after the CA was created, and the
	// unusable CA (its passphrase is gone) is removed.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "dev")
	_, errOut, err = runSigil(t, nil, "dev", "--data", data, "--https-addr", busy.Addr().String(), "--http-addr", freeAddr(t))
	if err == nil {
		t.Fatalf("dev on a busy port succeeded")
	}
	if !strings.Contains(errOut, "listen") {
		t.Errorf("stderr %q does not say which listen failed", errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "sigil.db")); err == nil {
		t.Errorf("a failed dev start left its database behind")
	}

	// The same --data twice more, now able to start: the earlier dev
	// directory is recognised and replaced each time.
	for run := range 2 {
		startDevOnce(t, data)
		if _, err := os.Stat(filepath.Join(data, devMarker)); err != nil {
			t.Errorf("run %d: no dev marker: %v", run, err)
		}
	}
}

// startDevOnce starts sigil dev on data, waits for its new admin token, and stops it.
func startDevOnce(t *testing.T, data string) {
	t.Helper()
	_, stop := startDev(t, data)
	stop()
}

// startDev starts sigil dev on data with extra flags, waits for its new
// admin token, and returns its HTTPS URL and a function that stops it.
func startDev(t *testing.T, data string, extra ...string) (httpsURL string, stop func()) {
	t.Helper()
	old, _ := os.ReadFile(filepath.Join(data, "admin.token")) // from an earlier run, if any
	httpsAddr := freeAddr(t)
	args := append([]string{"dev", "--data", data, "--https-addr", httpsAddr, "--http-addr", freeAddr(t)}, extra...)
	cmd := exec.Command(sigilBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-done
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if tok, err := os.ReadFile(filepath.Join(data, "admin.token")); err == nil && len(tok) > 0 && !bytes.Equal(tok, old) {
			return "https://" + httpsAddr, stop
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("sigil dev exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("sigil dev wrote no admin token within 30s\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a child process for readiness
	}
}
