package main

// The key-at-rest test: after a CA has been initialized, served, used and
// re-keyed, no file under its directory and no cell of its database holds a
// private key in plaintext (DESIGN.md, Keys). The scanner looks for PEM
// private-key blocks, DER PKCS#8 / SEC1 / PKCS#1 private keys at any offset,
// and the raw private bytes (plus hex and base64 spellings) of every key the
// test can learn: the CA's own keys, unwrapped from a copy of the database,
// and the key `cert issue --key-out` generated.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	_ "modernc.org/sqlite"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// keyScanner finds private keys in bytes.
type keyScanner struct {
	needles  map[string][]byte // what it is -> bytes that must not appear
	findings []string
	scanned  int // byte slices scanned
	derTries int // candidate DER structures parsed
}

func newKeyScanner() *keyScanner { return &keyScanner{needles: map[string][]byte{}} }

// addSecret registers secret bytes: raw, hex (both cases) and base64 (std
// and URL alphabets, at each of the three alignments a buffer holding them
// could have).
func (s *keyScanner) addSecret(name string, raw []byte) {
	if len(raw) < 16 {
		panic(fmt.Sprintf("secret %s is too short to search for", name))
	}
	s.needles[name+" (raw)"] = bytes.Clone(raw)
	s.needles[name+" (hex)"] = []byte(hex.EncodeToString(raw))
	s.needles[name+" (HEX)"] = []byte(strings.ToUpper(hex.EncodeToString(raw)))
	for k := range 3 {
		sub := raw[k:]
		sub = sub[:len(sub)/3*3]
		s.needles[fmt.Sprintf("%s (base64@%d)", name, k)] = []byte(base64.StdEncoding.EncodeToString(sub))
		s.needles[fmt.Sprintf("%s (base64url@%d)", name, k)] = []byte(base64.URLEncoding.EncodeToString(sub))
	}
}

// addKey registers the private material of key: its scalar(s) and its
// PKCS#8 encoding.
func (s *keyScanner) addKey(name string, key crypto.Signer) error {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			return err
		}
		s.addSecret(name+" ECDSA scalar", d)
	case ed25519.PrivateKey:
		s.addSecret(name+" Ed25519 seed", k.Seed())
	case *rsa.PrivateKey:
		s.addSecret(name+" RSA d", k.D.Bytes())
		for i, p := range k.Primes {
			s.addSecret(fmt.Sprintf("%s RSA prime %d", name, i), p.Bytes())
		}
	default:
		return fmt.Errorf("%s: unexpected key type %T", name, key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.needles[name+" PKCS#8 DER"] = der
	return nil
}

// scan records every private key found in data.
func (s *keyScanner) scan(where string, data []byte) {
	s.scanned++
	if i := bytes.Index(data, []byte("PRIVATE KEY-----")); i >= 0 {
		s.findings = append(s.findings, fmt.Sprintf("%s: PEM private key header at offset %d", where, i))
	}
	for what, n := range s.needles {
		if i := bytes.Index(data, n); i >= 0 {
			s.findings = append(s.findings, fmt.Sprintf("%s: %s at offset %d", where, what, i))
		}
	}
	s.scanDER(where, data)
}

// scanDER tries the private-key parsers on every plausible DER SEQUENCE:
// 0x30, a definite length that fits, and an INTEGER (the version, or
// PKCS#1's) first, as PKCS#8, SEC1 and PKCS#1 all begin. The filter keeps
// the effort linear in the data with a small constant.
func (s *keyScanner) scanDER(where string, data []byte) {
	for i := 0; i+2 < len(data); i++ {
		if data[i] != 0x30 {
			continue
		}
		l, hdr := int(data[i+1]), 2
		switch {
		case l < 0x80:
		case l >= 0x81 && l <= 0x83:
			n := l - 0x80
			if i+2+n > len(data) {
				continue
			}
			l = 0
			for _, b := range data[i+2 : i+2+n] {
				l = l<<8 | int(b)
			}
			hdr += n
		default:
			continue
		}
		total := hdr + l
		if total < 34 || total > 16<<10 || i+total > len(data) || data[i+hdr] != 0x02 {
			continue
		}
		der := data[i : i+total]
		s.derTries++
		if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
			s.findings = append(s.findings, fmt.Sprintf("%s: PKCS#8 private key at offset %d", where, i))
		}
		if _, err := x509.ParseECPrivateKey(der); err == nil {
			s.findings = append(s.findings, fmt.Sprintf("%s: SEC1 EC private key at offset %d", where, i))
		}
		if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
			s.findings = append(s.findings, fmt.Sprintf("%s: PKCS#1 RSA private key at offset %d", where, i))
		}
	}
}

// scanTree scans every regular file under dir and returns how many.
func (s *keyScanner) scanTree(t testing.TB, dir string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		s.scan(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// scanDatabase scans every BLOB and TEXT cell of every table of the SQLite
// database at path, opened read-only; TEXT that decodes as hex or base64 is
// scanned decoded as well. It returns the number of cells scanned per table.
func (s *keyScanner) scanDatabase(t testing.TB, path string) map[string]int {
	t.Helper()
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatalf("list tables of %s: %v", path, err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	cells := map[string]int{}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		cells[table] += 0
		for r := 0; rows.Next(); r++ {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				where := fmt.Sprintf("%s: %s.%s row %d", path, table, cols[i], r)
				switch v := v.(type) {
				case []byte:
					cells[table]++
					s.scan(where, v)
				case string:
					cells[table]++
					s.scan(where, []byte(v))
					trimmed := strings.TrimSpace(v)
					if b, err := hex.DecodeString(trimmed); err == nil && len(b) > 0 {
						s.scan(where+" (hex-decoded)", b)
					}
					for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
						if b, err := enc.DecodeString(trimmed); err == nil && len(b) > 0 {
							s.scan(where+" (base64-decoded)", b)
							break
						}
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return cells
}

// caPrivateKeys unwraps every key of the CA from a copy of its database
// (Unwrap appends audit events, which must not touch the original).
func caPrivateKeys(t testing.TB, dbPath string, passphrase []byte) map[string]crypto.Signer {
	t.Helper()
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		src, err := os.Open(dbPath + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(cp + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	// The copy is of a real server's database, written on the wall clock.
	clk := clockwork.NewRealClock()
	st, err := store.Open(ctx, store.Config{Path: cp, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := keystore.Unlock(ctx, st, clk, passphrase)
	if err != nil {
		t.Fatalf("unlock the copy: %v", err)
	}
	recs, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]crypto.Signer{}
	for _, r := range recs {
		signer, err := ks.Unwrap(ctx, r.ID, "keyscan-test")
		if err != nil {
			t.Fatalf("unwrap %s: %v", r.ID, err)
		}
		pub, err := x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil || !bytes.Equal(pub, r.PublicKey) {
			t.Fatalf("unwrapped %s does not match its recorded public key", r.ID)
		}
		out[r.Purpose+" key "+r.ID] = signer
	}
	return out
}

// keyscanCopyTree copies every regular file under dir to a new temporary
// directory and returns it.
func keyscanCopyTree(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestNoPlaintextKeysAtRest(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	outside := t.TempDir() // keys the CLI generates live outside the CA directory
	var issuedKeys []string
	for i, kt := range []string{"ecdsa-p256", "ed25519", "rsa-2048", "ecdsa-p384"} {
		keyOut := filepath.Join(outside, fmt.Sprintf("leaf%d.key", i))
		e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", fmt.Sprintf("leaf%d.example", i), "--profile", "tls-server",
			"--key-type", kt, "--key-out", keyOut, "--out", filepath.Join(outside, fmt.Sprintf("leaf%d.pem", i)))...)
		issuedKeys = append(issuedKeys, keyOut)
	}
	csrPath, _ := e2eCSRFile(t, outside, "csr.example")
	e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--csr", csrPath, "--profile", "tls-server", "--out", filepath.Join(outside, "csr.pem"))...)
	issuedKeys = append(issuedKeys, filepath.Join(outside, "csr.example.key"))
	if _, err := os.Stat(issuedKeys[len(issuedKeys)-1]); err != nil {
		issuedKeys = issuedKeys[:len(issuedKeys)-1] // the CSR was made by Go: no key file
	}
	tokOut, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
	issuerToken := strings.TrimSpace(tokOut)

	const newPassphrase = "keyscan-new-passphrase-0123"
	newPF := e2eWriteFile(t, outside, "new-passphrase", []byte(newPassphrase+"\n"))
	e2eRun(t, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", c.passphraseFile, "--new-passphrase-file", newPF)...)
	e2eIssueSAN(t, p, c, "tls-server", "after-rewrap.example")
	// A copy taken while the server runs holds the write-ahead log and the
	// shared-memory index too; a clean stop folds them into the database.
	live := keyscanCopyTree(t, c.dir)
	p.stop(t)

	s := newKeyScanner()
	caKeys := caPrivateKeys(t, c.sqlite(t), []byte(newPassphrase))
	purposes := map[string]bool{}
	for name, k := range caKeys {
		if err := s.addKey(name, k); err != nil {
			t.Fatal(err)
		}
		purposes[strings.Fields(name)[0]] = true
	}
	for _, want := range []string{"root", "intermediate", "audit"} {
		if !purposes[want] {
			t.Errorf("no %s key was unwrapped; the scan would not look for it", want)
		}
	}
	for _, path := range issuedKeys {
		if err := s.addKey("issued "+filepath.Base(path), e2eKeyFile(t, path)); err != nil {
			t.Fatal(err)
		}
	}
	// Other secrets that must never be at rest in plaintext either.
	s.addSecret("old passphrase", []byte(testPassphrase))
	s.addSecret("new passphrase", []byte(newPassphrase))
	s.addSecret("admin token", []byte(c.adminToken))
	s.addSecret("issuer token", []byte(issuerToken))

	files := s.scanTree(t, c.dir)
	if files < 3 {
		t.Errorf("scanned only %d files under %s", files, c.dir)
	}
	liveFiles := s.scanTree(t, live)
	if _, err := os.Stat(filepath.Join(live, "sigil.db-wal")); err != nil {
		t.Errorf("the copy of the running CA has no WAL to scan: %v", err)
	}
	files += liveFiles
	cells := s.scanDatabase(t, c.sqlite(t))
	for _, table := range []string{"keys", "certificates", "audit_events"} {
		if cells[table] == 0 {
			t.Errorf("scanned no cells of table %s (tables: %v)", table, cells)
		}
	}
	for _, f := range s.findings {
		t.Errorf("private key material at rest: %s", f)
	}
	t.Logf("scanned %d files and the cells of %d tables (%v) for %d needles; %d DER candidates parsed; %d known keys",
		files, len(cells), cells, len(s.needles), s.derTries, len(caKeys)+len(issuedKeys))
}

// TestKeyScannerFindsPlantedKeys proves the scanner is not blind: every kind
// of plaintext key it looks for, planted in a file or a database cell, is
// found, and random bytes give no false alarm.
func TestKeyScannerFindsPlantedKeys(t *testing.T) {
	t.Parallel()
	ecKey, err := keystore.Generate(keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := keystore.Generate(keystore.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) // small: only a test fixture
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	noise := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		for i := range b { // no accidental SEQUENCE tags in the padding
			if b[i] == 0x30 {
				b[i] = 0x31
			}
		}
		return b
	}
	embed := func(payload []byte) []byte {
		return append(append(noise(1013), payload...), noise(777)...)
	}
	d, _ := ecKey.(*ecdsa.PrivateKey).Bytes()
	unknownEC, _ := keystore.Generate(keystore.ECDSAP256) // not registered: found only structurally

	for _, tc := range []struct {
		name string
		data []byte
		want string // a substring of the expected finding
	}{
		{"pem pkcs8", embed(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(unknownEC)})), "PEM private key header"},
		{"pem sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), "PEM private key header"},
		{"der pkcs8 ecdsa", embed(pkcs8(unknownEC)), "PKCS#8 private key"},
		{"der pkcs8 ed25519", embed(pkcs8(edKey)), "PKCS#8 private key"},
		{"der pkcs8 rsa", embed(pkcs8(rsaKey)), "PKCS#8 private key"},
		{"der sec1", embed(sec1), "SEC1 EC private key"},
		{"der pkcs1", embed(x509.MarshalPKCS1PrivateKey(rsaKey)), "PKCS#1 RSA private key"},
		{"raw ecdsa scalar", embed(d), "ECDSA scalar (raw)"},
		{"raw ed25519 seed", embed(edKey.(ed25519.PrivateKey).Seed()), "Ed25519 seed (raw)"},
		{"raw rsa prime", embed(rsaKey.Primes[1].Bytes()), "RSA prime 1 (raw)"},
		{"hex scalar", embed([]byte(hex.EncodeToString(d))), "ECDSA scalar (hex)"},
		{"base64 of a buffer holding the scalar", []byte(base64.StdEncoding.EncodeToString(append([]byte{7}, d...))), "ECDSA scalar (base64@"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newKeyScanner()
			for name, k := range map[string]crypto.Signer{"planted": ecKey, "planted-ed": edKey, "planted-rsa": rsaKey} {
				if err := s.addKey(name, k); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			e2eWriteFile(t, dir, "clean.bin", noise(4096))
			e2eWriteFile(t, dir, "planted.bin", tc.data)
			s.scanTree(t, dir)
			if !keyscanAnyContains(s.findings, tc.want) {
				t.Errorf("scanner missed a planted %s; findings: %v", tc.name, s.findings)
			}
			for _, f := range s.findings {
				if strings.Contains(f, "clean.bin") {
					t.Errorf("false alarm in random bytes: %s", f)
				}
			}
		})
	}

	t.Run("database cells", func(t *testing.T) {
		s := newKeyScanner()
		if err := s.addKey("planted", ecKey); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "planted.db")
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"CREATE TABLE a (id INTEGER PRIMARY KEY, blob BLOB, note TEXT)",
			"CREATE TABLE b (id INTEGER PRIMARY KEY, enc TEXT)",
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Exec("INSERT INTO a (blob, note) VALUES (?, ?), (?, ?)", noise(300), "clean", embed(sec1), "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("INSERT INTO b (enc) VALUES (?), (?)", hex.EncodeToString(pkcs8(unknownEC)), base64.StdEncoding.EncodeToString(pkcs8(edKey))); err != nil {
			t.Fatal(err)
		}
		db.Close()
		cells := s.scanDatabase(t, path)
		if cells["a"] != 4 || cells["b"] != 2 {
			t.Errorf("cells scanned %v, want a:4 b:2", cells)
		}
		for _, want := range []string{"a.blob row 1: SEC1 EC private key", "b.enc row 0 (hex-decoded): PKCS#8", "b.enc row 1 (base64-decoded): PKCS#8"} {
			if !keyscanAnyContains(s.findings, want) {
				t.Errorf("scanner missed %q; findings: %v", want, s.findings)
			}
		}
		for _, f := range s.findings {
			if strings.Contains(f, "row 0: ") && strings.Contains(f, "a.blob") {
				t.Errorf("false alarm: %s", f)
			}
		}
	})
}

func keyscanAnyContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
