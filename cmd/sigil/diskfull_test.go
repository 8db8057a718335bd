package main

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/api"
)

// TestRestartAfterDiskFull fills the disk under a CA's database, frees a
// little room, and restarts: start-up must fit in that room. It used to
// re-sign and store every OCSP response before serving and fail on
// SQLITE_FULL, although the server that ran before needed no more room than
// it had (issue 15, item 8). Needs root for a small tmpfs.
func TestRestartAfterDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the disk-full test mounts a small tmpfs and needs root (run as root, or in CI)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs (%v: %s); the disk-full test needs CAP_SYS_ADMIN", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})

	c := initCA(t)
	c.sqlite(t) // the SQLite file is moved to a full disk
	// The database lives on the small disk.
	db := filepath.Join(mnt, "sigil.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(c.db + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(db+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(c.db + suffix)
	}
	e2eSetConfig(t, c, "database: sigil.db\n", "database: "+db+"\n")
	c.db = db
	// With a one-minute validity every stored response is due at every
	// start: what a restart after hours of a full disk finds.
	e2eSetConfig(t, c, "after a revocation.\n  validity: 24h0m0s\n", "after a revocation.\n  validity: 1m0s\n")

	p := startServe(t, c)
	client := c.httpClient(t)
	v1 := e2eV1(t, client, p, c.adminToken)
	const certs = 2500
	var (
		mu     sync.Mutex
		issued [][]byte
		wg     sync.WaitGroup
		next   = make(chan int)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				_, der, err := signOnce(v1, api.SignRequest{CSR: newCSR(t, fmt.Sprintf("full-%d.example.com", i)), Profile: "tls-server"})
				if err != nil {
					t.Errorf("issue %d: %v", i, err)
					return
				}
				mu.Lock()
				issued = append(issued, der)
				mu.Unlock()
			}
		}()
	}
	for i := range certs {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	p.stop(t)

	// Fill the disk, then free some room: enough for what a running server
	// writes between refreshes, less than re-signing every response.
	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	const room = 1 << 20
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler, max(fi.Size()-room, 0)); err != nil {
		t.Fatal(err)
	}
	t.Logf("database %d bytes; %d bytes free for the restart", fileSize(t, db), room)

	p = startServe(t, c)
	defer p.stop(t)
	for _, i := range []int{0, certs / 2, certs - 1} {
		leaf, err := x509.ParseCertificate(issued[i])
		if err != nil {
			t.Fatal(err)
		}
		iss := e2eIssuerOf(t, p, leaf)
		r, _ := e2eOCSPGet(t, client, p.httpURL, leaf, iss, crypto.SHA256)
		if r.Status != ocsp.Good {
			t.Errorf("certificate %d: OCSP status %d after the restart, want good", i, r.Status)
		}
	}
	p.stop(t) // before reading its stderr
	// Otherwise the room left was enough and this test proved nothing.
	if !strings.Contains(p.stderr.String(), "disk full") {
		t.Errorf("test setup: the restart never met the full disk; issue more certificates or leave less room")
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// e2eIssuerOf fetches leaf's issuer from the server's /issuer/ path, which
// its AIA names (under the configured external URL).
func e2eIssuerOf(t *testing.T, p *serverProc, leaf *x509.Certificate) *x509.Certificate {
	t.Helper()
	if len(leaf.IssuingCertificateURL) == 0 {
		t.Fatal("certificate has no issuer URL")
	}
	u, err := url.Parse(leaf.IssuingCertificateURL[0])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(p.httpURL + u.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u.Path, resp.StatusCode, err)
	}
	iss, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}
