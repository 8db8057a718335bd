package store

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
)

// testStart is the fixed time tests stamp records with; tests never read the clock.
var testStart = testclock.At(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))

// openTest opens a store on a fresh file in t's temporary directory (unless
// cfg.Path is set) with a fake clock, and closes it when the test ends.
func openTest(t testing.TB, cfg Config) *SQLite {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "sigil.db")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewFakeClockAt(testStart)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// mustTx runs fn in its own transaction and fails the test if it fails.
// fn runs on the writer goroutine, so it reports failure by returning an
// error, never by calling t.Fatal.
func mustTx(t testing.TB, s *SQLite, fn func(Tx) error) {
	t.Helper()
	if err := s.WithTx(context.Background(), fn); err != nil {
		t.Fatalf("WithTx: %v", err)
	}
}

// testKey returns a key record whose fields are all set.
func testKey(id string) KeyRecord {
	return KeyRecord{
		ID:         id,
		Purpose:    "intermediate",
		Algorithm:  "ECDSA-P256",
		Backend:    "passphrase",
		State:      KeyActive,
		PublicKey:  []byte("pub-" + id),
		KEKID:      "kek-1",
		WrappedDEK: []byte("dek-" + id),
		Ciphertext: []byte("ct-" + id),
		Created:    testStart,
		Rotated:    testStart.Add(time.Hour),
		LastUsed:   testStart.Add(2 * time.Hour),
	}
}

// seedIssuers records a key and an intermediate issuer for each id.
func seedIssuers(t testing.TB, s *SQLite, ids ...string) {
	t.Helper()
	mustTx(t, s, func(tx Tx) error {
		for _, id := range ids {
			if err := tx.InsertKey(testKey("key-" + id)); err != nil {
				return err
			}
			if err := tx.InsertIssuer(IssuerRecord{ID: id, Kind: "intermediate", ParentID: "root", KeyID: "key-" + id,
				CertDER: []byte("der-" + id), State: KeyActive, Created: testStart}); err != nil {
				return err
			}
		}
		return nil
	})
}

// testCert returns a certificate record for issuer and serial with every
// field the caller supplies set.
func testCert(issuer, serial string) CertRecord {
	return CertRecord{
		IssuerID:     issuer,
		Serial:       serial,
		Subject:      "CN=" + serial + ".example.com",
		SANs:         []string{serial + ".example.com"},
		NotBefore:    testStart,
		NotAfter:     testStart.Add(90 * 24 * time.Hour),
		KeyAlgorithm: "ECDSA-P256",
		Profile:      "server",
		Requester:    "acme:1",
		Channel:      "acme",
		DER:          []byte("der-" + serial),
		Created:      testStart,
	}
}

// issueEvent is the audit event recorded with a certificate.
func issueEvent(c *CertRecord) audit.Event {
	return audit.Event{Time: c.Created, Actor: c.Requester, Action: "cert.issued", Target: c.Serial,
		Detail: map[string]string{"issuer": c.IssuerID, "profile": c.Profile}}
}

// issue inserts c and appends its audit event, as the CA does.
func issue(tx Tx, c *CertRecord) error {
	if err := tx.InsertCertificate(c); err != nil {
		return err
	}
	_, err := tx.AppendAudit(issueEvent(c))
	return err
}

// auditLog returns every stored event in ScanAudit order.
func auditLog(t testing.TB, s *SQLite) []audit.Event {
	t.Helper()
	var events []audit.Event
	if err := s.ScanAudit(context.Background(), func(e audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	return events
}

// checkChain verifies the stored chain and its checkpoints, checks that
// sequence numbers run 1..n and that AuditHead names the last event, and
// returns the events.
func checkChain(t testing.TB, s *SQLite, keys map[string]crypto.PublicKey) []audit.Event {
	t.Helper()
	events := auditLog(t, s)
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, i+1)
		}
	}
	cps, err := s.Checkpoints(context.Background())
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	head, err := audit.VerifyAll(events, cps, keys)
	if err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	stored, err := s.AuditHead(context.Background())
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if stored.Seq != head.Seq || !bytes.Equal(stored.Hash, head.Hash) {
		t.Fatalf("AuditHead = %d/%x, verified head %d/%x", stored.Seq, stored.Hash, head.Seq, head.Hash)
	}
	return events
}

func TestOpen(t *testing.T) {
	t.Parallel()
	t.Run("empty path", func(t *testing.T) {
		t.Parallel()
		if s, err := Open(context.Background(), Config{}); err == nil {
			s.Close()
			t.Fatal("Open with empty path succeeded")
		}
	})
	t.Run("no clock", func(t *testing.T) {
		t.Parallel()
		s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "sigil.db")})
		if err == nil {
			s.Close()
			t.Fatal("Open without a clock succeeded; a store must not fall back to the wall clock")
		}
	})
	t.Run("empty head", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, Config{})
		head, err := s.AuditHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if head.Seq != 0 || !bytes.Equal(head.Hash, audit.GenesisHash()) {
			t.Errorf("AuditHead = %d/%x, want 0/genesis", head.Seq, head.Hash)
		}
		if got, err := s.IntegrityCheck(context.Background()); err != nil || got != "ok" {
			t.Errorf("IntegrityCheck = %q, %v; want ok", got, err)
		}
	})
	// SQLite reads "file:" names as URIs, where %XX is decoded and ? and #
	// end the path: the store must still open exactly the configured file.
	for _, name := range []string{"a%41b", "hash#frag", "what?x=1", "sp ace"} {
		t.Run("path "+name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "sigil.db")
			s := openTest(t, Config{Path: path})
			mustTx(t, s, func(tx Tx) error { return tx.PutSetting("k", []byte("v")) })
			if _, err := os.Stat(path); err != nil {
				t.Errorf("database not at configured path: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
				t.Errorf("files beside %s: %v, want only it", name, entries)
			}
		})
	}
}

func TestOpenReadOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dir      string // created under the temporary directory
		keepOpen bool   // the writer still has the database open
	}{
		{name: "closed", dir: "data"},
		{name: "open by writer", dir: "data", keepOpen: true},
		{name: "escaped path", dir: "a%41b#c?d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), tt.dir)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "sigil.db")
			w, err := Open(ctx, Config{Path: path, Clock: clockwork.NewFakeClockAt(testStart)})
			if err != nil {
				t.Fatal(err)
			}
			mustTx(t, w, func(tx Tx) error {
				if err := tx.PutSetting("k", []byte("v")); err != nil {
					return err
				}
				_, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "system", Action: "x"})
				return err
			})
			if tt.keepOpen {
				defer w.Close()
			} else if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			r, err := OpenReadOnly(ctx, path)
			if err != nil {
				t.Fatalf("OpenReadOnly: %v", err)
			}
			defer func() {
				if err := r.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			if v, err := r.Setting(ctx, "k"); err != nil || string(v) != "v" {
				t.Errorf("Setting = %q, %v; want v", v, err)
			}
			if events := checkChain(t, r, nil); len(events) != 1 {
				t.Errorf("%d events, want 1", len(events))
			}
			if err := r.WithTx(ctx, func(Tx) error { return nil }); err == nil {
				t.Error("WithTx on a read-only store succeeded")
			}
			if err := r.Checkpoint(ctx); err == nil {
				t.Error("Checkpoint on a read-only store succeeded")
			}
		})
	}
	t.Run("not a database", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "missing.db")
		if r, err := OpenReadOnly(context.Background(), path); err == nil {
			r.Close()
			t.Error("OpenReadOnly of a missing file succeeded")
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("OpenReadOnly created %s: %v", path, err)
		}
	})
}

// TestBackfillSPKI: certificates recorded before key hashes existed get
// theirs when the store opens.
func TestBackfillSPKI(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xb1), NotBefore: testStart, NotAfter: testStart.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	c := testCert("int-a", "b1")
	c.DER = der
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&c) })
	if _, err := s.write.ExecContext(ctx, "UPDATE certificates SET spki_sha256 = X''"); err != nil {
		t.Fatal(err)
	}
	if err := backfillSPKI(ctx, s.write); err != nil {
		t.Fatal(err)
	}
	got, err := s.Certificate(ctx, "b1")
	if err != nil || !bytes.Equal(got.SPKIHash, SPKIHash(cert.RawSubjectPublicKeyInfo)) {
		t.Errorf("backfilled hash %x (%v), want %x", got.SPKIHash, err, SPKIHash(cert.RawSubjectPublicKeyInfo))
	}
}

// TestHealthClosed: a store whose database does not answer says so.
func TestHealthClosed(t *testing.T) {
	s := openTest(t, Config{})
	if h, err := s.Health(context.Background()); err != nil || h.Role != RoleEmbedded {
		t.Fatalf("open store: %+v, %v", h, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err := s.Health(context.Background()); err == nil || h.Role != RoleUnreachable {
		t.Errorf("closed store: %+v, %v; want unreachable with an error", h, err)
	}
}
