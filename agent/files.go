package agent

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes: the key is the server's secret, the chain is public.
const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// How the pair is replaced, and what a reader sees.
//
// A renewal that keeps the key (the default over mTLS) rewrites only the
// certificate file, with one atomic rename: a reader loading the pair at
// any moment gets the old chain or the new one, each matching the
// unchanged key.
//
// When the key changes (--rekey, or a managed bundle with a new key) two
// files change, and no order of two renames can stop a reader that opens
// them one after the other from pairing the old certificate with the new
// key (or the reverse) if a rename falls between its two reads;
// tls.LoadX509KeyPair then fails ("private key does not match public
// key") rather than using the pair, and the reader keeps its previous one
// or retries. Servers that reload from the --exec hook never see it. For
// readers that must never see it, give --cert and --key the same path:
// key and chain then live in one file (mode 0600) replaced by one rename,
// and a reader that reads that file once always gets a matching pair.
//
// The two-file change is crash-safe: both new files are first written in
// full next to their targets (".NAME.sigil-next"), then the certificate is
// renamed into place, then the key. After a crash, recoverPair finishes a
// change half done, or discards one that had not begun, so the agent
// always starts from one matching pair.

// pendingPath is where the next version of path waits during a key change.
func pendingPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".sigil-next")
}

// writeFile replaces path atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// rename moves from to to and makes the move durable.
func rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("replace %s: %w", to, err)
	}
	return syncDir(filepath.Dir(to))
}

// syncDir makes renames in dir durable (a rename is a change to the
// directory, which fsync of the file does not cover).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// files are the paths the agent keeps.
type files struct {
	cert, key string
}

// combined reports whether key and chain share one file.
func (f files) combined() bool { return filepath.Clean(f.cert) == filepath.Clean(f.key) }

// write replaces the chain, and the key if keyChanged (see the comment at
// the top for how).
func (f files) write(chainPEM, keyPEM []byte, keyChanged bool) error {
	switch {
	case f.combined():
		data := append(append([]byte{}, keyPEM...), chainPEM...)
		defer clear(data)
		return writeFile(f.cert, data, keyMode)
	case !keyChanged:
		return writeFile(f.cert, chainPEM, certMode)
	}
	pc, pk := pendingPath(f.cert), pendingPath(f.key)
	if err := writeFile(pc, chainPEM, certMode); err != nil {
		return err
	}
	if err := writeFile(pk, keyPEM, keyMode); err != nil {
		os.Remove(pc)
		return err
	}
	// The two renames follow each other at once, with no fsync between
	// them, to keep the moment a reader can see a mixed pair short;
	// recoverPair goes by content, so it does not matter which of the two a
	// crash leaves durable.
	if err := os.Rename(pc, f.cert); err != nil {
		os.Remove(pc)
		os.Remove(pk)
		return fmt.Errorf("replace %s: %w", f.cert, err)
	}
	// From here on the pending key is never removed: recoverPair finishes
	// the change if this does not.
	if err := os.Rename(pk, f.key); err != nil {
		return fmt.Errorf("replace %s: %w", f.key, err)
	}
	if err := syncDir(filepath.Dir(f.cert)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(f.key))
}

// recoverPair finishes or discards a key change a crash interrupted, and
// reports what it did ("" for nothing). It goes by content: a pending file
// that pairs with the other file in place is the half of the change still
// to do; one that does not is a change that never began.
func (f files) recoverPair() (string, error) {
	if f.combined() {
		return "", nil
	}
	pc, pk := pendingPath(f.cert), pendingPath(f.key)
	switch {
	case exists(pc) && exists(pk):
		// Neither rename happened: the files in place are the old pair.
		if err := errors.Join(removeIfExists(pc), removeIfExists(pk)); err != nil {
			return "", fmt.Errorf("discard an unfinished key change: %w", err)
		}
		return "discarded an unfinished key change", nil
	case exists(pc):
		if _, err := tls.LoadX509KeyPair(pc, f.key); err != nil {
			// The pending key was never written: the old pair is in place.
			if err := removeIfExists(pc); err != nil {
				return "", fmt.Errorf("discard an unfinished key change: %w", err)
			}
			return "discarded an unfinished key change", nil
		}
		if err := rename(pc, f.cert); err != nil {
			return "", err
		}
		return "finished a key change interrupted by a crash", nil
	case exists(pk):
		// The certificate was renamed, the key not: finish, if they match.
		if _, err := tls.LoadX509KeyPair(f.cert, pk); err != nil {
			return "", fmt.Errorf("unfinished key change: %s does not match %s: %w", pk, f.cert, err)
		}
		if err := rename(pk, f.key); err != nil {
			return "", err
		}
		return "finished a key change interrupted by a crash", nil
	}
	return "", nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// load reads the pair as a server would, with its leaf parsed.
func (f files) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("load %s and %s: %w", f.cert, f.key, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load %s: %w", f.cert, err)
		}
	}
	if _, ok := c.PrivateKey.(crypto.Signer); !ok {
		return nil, fmt.Errorf("load %s: the key cannot sign", f.key)
	}
	return &c, nil
}
