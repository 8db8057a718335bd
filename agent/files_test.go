package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// reader loads the pair in a tight loop, as a server that reloads on its
// own would, and counts what it saw.
type reader struct {
	stop     atomic.Bool
	wg       sync.WaitGroup
	loads    atomic.Int64
	mu       sync.Mutex
	errs     map[string]int
	mismatch atomic.Int64
}

// startReader runs load until stopped; an error whose text is
// "tls: private key does not match public key" counts as a mismatch, any
// other as an error.
func startReader(load func() error) *reader {
	r := &reader{errs: map[string]int{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for !r.stop.Load() {
			err := load()
			switch {
			case err == nil:
				r.loads.Add(1)
			case strings.Contains(err.Error(), "private key does not match public key"):
				r.mismatch.Add(1)
			default:
				r.mu.Lock()
				r.errs[err.Error()]++
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *reader) done() {
	r.stop.Store(true)
	r.wg.Wait()
}

func checkModes(t *testing.T, f pairFiles) {
	t.Helper()
	for path, want := range map[string]fs.FileMode{f.cert: certMode, f.key: keyMode} {
		if f.cert == f.key {
			want = keyMode
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", filepath.Base(path), got, want)
		}
	}
}

// checkClean fails if temporary or pending files were left behind.
func checkClean(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestSameKeyRenewalsNeverTearThePair: renewals that keep the key (the
// default over mTLS) replace only the chain, with one rename, so a reader
// loading the two files in a loop never sees a mismatched pair or a
// partial file.
func TestSameKeyRenewalsNeverTearThePair(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	e.install(t, f)
	a := e.agentFor(t, f, nil)
	r := startReader(func() error { _, err := tls.LoadX509KeyPair(f.cert, f.key); return err })
	for range 25 {
		if err := a.Once(context.Background(), true); err != nil {
			r.done()
			t.Fatal(err)
		}
	}
	r.done()
	if len(r.errs) > 0 || r.mismatch.Load() > 0 || r.loads.Load() == 0 {
		t.Errorf("reader: %d loads, %d mismatched pairs, errors %v", r.loads.Load(), r.mismatch.Load(), r.errs)
	}
	checkModes(t, f)
	checkClean(t, f.dir)
}

// TestCombinedFileKeyChanges: with --cert and --key the same path, a key
// change is one rename, so a reader that reads the file once never sees a
// mismatched pair, even when every renewal changes the key.
func TestCombinedFileKeyChanges(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	dir := t.TempDir()
	f := pairFiles{dir: dir, cert: filepath.Join(dir, "tls.pem"), key: filepath.Join(dir, "tls.pem")}
	first := e.install(t, f)
	a := e.agentFor(t, f, func(c *Config) { c.Rekey = true })
	r := startReader(func() error {
		data, err := os.ReadFile(f.cert)
		if err != nil {
			return err
		}
		_, err = tls.X509KeyPair(data, data)
		return err
	})
	for range 25 {
		if err := a.Once(context.Background(), true); err != nil {
			r.done()
			t.Fatal(err)
		}
	}
	r.done()
	if len(r.errs) > 0 || r.mismatch.Load() > 0 || r.loads.Load() == 0 {
		t.Errorf("reader: %d loads, %d mismatched pairs, errors %v", r.loads.Load(), r.mismatch.Load(), r.errs)
	}
	if last := onDisk(t, f).Leaf; samePublic(last.PublicKey, first.PublicKey) {
		t.Error("the key did not change")
	}
	checkModes(t, f)
	checkClean(t, f.dir)
}

// TestSeparateFilesKeyChanges: with two files, a key change can show a
// reader that opens them one after the other a mismatched pair between the
// two renames (which tls.LoadX509KeyPair refuses); never a partial file,
// and the pair on disk matches after every change.
func TestSeparateFilesKeyChanges(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	e.install(t, f)
	a := e.agentFor(t, f, func(c *Config) { c.Rekey = true })
	r := startReader(func() error { _, err := tls.LoadX509KeyPair(f.cert, f.key); return err })
	for range 25 {
		if err := a.Once(context.Background(), true); err != nil {
			r.done()
			t.Fatal(err)
		}
		onDisk(t, f)
	}
	r.done()
	if len(r.errs) > 0 || r.loads.Load() == 0 {
		t.Errorf("reader: %d loads, errors %v", r.loads.Load(), r.errs)
	}
	t.Logf("reader: %d loads, %d refused as mismatched during 25 key changes", r.loads.Load(), r.mismatch.Load())
	checkModes(t, f)
	checkClean(t, f.dir)
}

// TestRecoverPair puts the files in each state a crash during a key change
// can leave and checks that loading ends with one matching pair.
func TestRecoverPair(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	for _, tc := range []struct {
		name string
		// crash leaves the files as a crash would, given the old and the
		// new pair's PEM, and says which pair must be on disk after
		// recovery.
		crash   func(t *testing.T, f pairFiles, newChain, newKey []byte) (wantNew bool)
		wantErr string
	}{
		{"before any rename", func(t *testing.T, f pairFiles, chain, key []byte) bool {
			write(t, pendingPath(f.cert), chain)
			write(t, pendingPath(f.key), key)
			return false
		}, ""},
		{"while writing the pending key", func(t *testing.T, f pairFiles, chain, key []byte) bool {
			write(t, pendingPath(f.cert), chain)
			return false
		}, ""},
		{"after the key's rename only (reordered by the file system)", func(t *testing.T, f pairFiles, chain, key []byte) bool {
			write(t, pendingPath(f.cert), chain)
			write(t, f.key, key)
			return true
		}, ""},
		{"between the renames", func(t *testing.T, f pairFiles, chain, key []byte) bool {
			write(t, f.cert, chain)
			write(t, pendingPath(f.key), key)
			return true
		}, ""},
		{"a pending key that matches nothing", func(t *testing.T, f pairFiles, chain, key []byte) bool {
			other, _ := pkcs8PEM(newKey(t))
			write(t, f.cert, chain)
			write(t, pendingPath(f.key), other)
			return false
		}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPairFiles(t)
			old := e.install(t, f)
			key := newKey(t)
			chain, leaf := e.issue(t, key, shortProfile, "app.example.com")
			keyPEM, err := pkcs8PEM(key)
			if err != nil {
				t.Fatal(err)
			}
			wantNew := tc.crash(t, f, []byte(chain), keyPEM)
			a := e.agentFor(t, f, nil)
			cur, err := a.load(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("load: %v, want %q", err, tc.wantErr)
				}
				if !exists(pendingPath(f.key)) {
					t.Error("an unmatched pending key was removed; keep it for the operator")
				}
				return
			}
			if err != nil {
				t.Fatalf("load after a crash %s: %v", tc.name, err)
			}
			want := old
			if wantNew {
				want = leaf
			}
			if cur.Leaf.SerialNumber.Cmp(want.SerialNumber) != 0 {
				t.Errorf("serial %x on disk, want %x", cur.Leaf.SerialNumber, want.SerialNumber)
			}
			checkClean(t, f.dir)
		})
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFileFailure: a write that cannot happen leaves the old file.
func TestWriteFileFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "cert.pem")
	write(t, path, []byte("old"))
	if err := writeFile(filepath.Join(dir, "missing", "cert.pem"), []byte("new"), certMode); err == nil {
		t.Error("writeFile into a missing directory succeeded")
	}
	if err := writeFile(path, []byte("new"), certMode); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "new" {
		t.Errorf("content %q", data)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != certMode {
		t.Errorf("mode %v, want %v (replaced, not rewritten in place)", info.Mode().Perm(), certMode)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	checkClean(t, dir)
}
