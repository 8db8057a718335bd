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
	"reflect"
	"slices"
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

func TestKEKRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	if _, err := s.ActiveKEK(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ActiveKEK before init: %v, want ErrNotFound", err)
	}
	old := KEKRecord{ID: "kek-1", Backend: "passphrase", Params: []byte(`{"kdf":"argon2id"}`), Check: []byte{1, 2, 3},
		State: KeyActive, Created: testStart}
	newer := KEKRecord{ID: "kek-2", Backend: "kms", Params: []byte(`{"uri":"awskms:x"}`), Check: []byte{4},
		State: KeyActive, Created: testStart.Add(time.Hour)}
	mustTx(t, s, func(tx Tx) error {
		if err := tx.InsertKEK(old); err != nil {
			return err
		}
		return tx.InsertKEK(newer)
	})
	for _, want := range []KEKRecord{old, newer} {
		got, err := s.KEK(ctx, want.ID)
		if err != nil {
			t.Fatalf("KEK(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("KEK(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	if got, err := s.ActiveKEK(ctx); err != nil || got.ID != "kek-2" {
		t.Errorf("ActiveKEK = %q, %v; want kek-2 (newest active)", got.ID, err)
	}
	mustTx(t, s, func(tx Tx) error { return tx.SetKEKState("kek-2", KeyRetired) })
	if got, err := s.ActiveKEK(ctx); err != nil || got.ID != "kek-1" {
		t.Errorf("ActiveKEK after retiring kek-2 = %q, %v; want kek-1", got.ID, err)
	}
	if got, _ := s.KEK(ctx, "kek-2"); got.State != KeyRetired {
		t.Errorf("kek-2 state = %q, want %q", got.State, KeyRetired)
	}
	err := s.WithTx(ctx, func(tx Tx) error { return tx.SetKEKState("kek-9", KeyRetired) })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("SetKEKState(missing) = %v, want ErrNotFound", err)
	}
}

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	a := testKey("key-a")
	b := testKey("key-b")
	b.Created = testStart.Add(time.Minute)
	b.KEKID, b.WrappedDEK, b.Rotated, b.LastUsed = "", nil, time.Time{}, time.Time{} // a backend-held key
	var inTx []KeyRecord
	mustTx(t, s, func(tx Tx) error {
		if err := tx.InsertKey(b); err != nil {
			return err
		}
		if err := tx.InsertKey(a); err != nil {
			return err
		}
		var err error
		inTx, err = tx.Keys() // sees the transaction's own writes
		return err
	})
	want := []KeyRecord{a, b} // ordered by created
	if !reflect.DeepEqual(inTx, want) {
		t.Errorf("Tx.Keys = %+v, want %+v", inTx, want)
	}
	got, err := s.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Keys = %+v, want %+v", got, want)
	}
	for _, w := range want {
		if got, err := s.Key(ctx, w.ID); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("Key(%s) = %+v, %v; want %+v", w.ID, got, err, w)
		}
	}

	t.Run("rewrap", func(t *testing.T) {
		rotated := testStart.Add(24 * time.Hour)
		mustTx(t, s, func(tx Tx) error { return tx.RewrapKey("key-a", "kek-2", []byte("dek2"), rotated) })
		got, err := s.Key(ctx, "key-a")
		if err != nil {
			t.Fatal(err)
		}
		want := a
		want.KEKID, want.WrappedDEK, want.Rotated = "kek-2", []byte("dek2"), rotated
		if !reflect.DeepEqual(got, want) {
			t.Errorf("after RewrapKey = %+v, want %+v (ciphertext untouched)", got, want)
		}
	})
	t.Run("touch", func(t *testing.T) {
		later := testStart.Add(48 * time.Hour)
		mustTx(t, s, func(tx Tx) error { return tx.TouchKey("key-a", later) })
		mustTx(t, s, func(tx Tx) error { return tx.TouchKey("key-a", testStart) }) // older: ignored
		if got, _ := s.Key(ctx, "key-a"); !got.LastUsed.Equal(later) {
			t.Errorf("LastUsed = %v, want %v (never moves back)", got.LastUsed, later)
		}
	})
	t.Run("rewrap missing or destroyed", func(t *testing.T) {
		d := testKey("key-destroyed")
		d.State, d.Destroyed = KeyDestroyed, testStart
		mustTx(t, s, func(tx Tx) error { return tx.InsertKey(d) })
		for _, id := range []string{"key-missing", "key-destroyed"} {
			err := s.WithTx(ctx, func(tx Tx) error { return tx.RewrapKey(id, "kek-2", []byte("x"), testStart) })
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("RewrapKey(%s) = %v, want ErrNotFound", id, err)
			}
		}
		if got, _ := s.Key(ctx, "key-destroyed"); !reflect.DeepEqual(got, d) {
			t.Errorf("destroyed key changed: %+v, want %+v", got, d)
		}
	})
}

func TestKeyRetireDestroy(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	k := testKey("key-ocsp")
	mustTx(t, s, func(tx Tx) error { return tx.InsertKey(k) })

	// Only a retired key is destroyed.
	if err := s.WithTx(ctx, func(tx Tx) error { return tx.DestroyKey("key-ocsp", testStart) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("DestroyKey(active) = %v, want ErrNotFound", err)
	}
	retired := testStart.Add(time.Hour)
	mustTx(t, s, func(tx Tx) error { return tx.RetireKey("key-ocsp", retired) })
	want := k
	want.State, want.Rotated = KeyRetired, retired
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("after RetireKey = %+v, want %+v", got, want)
	}
	if err := s.WithTx(ctx, func(tx Tx) error { return tx.RetireKey("key-ocsp", retired) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("RetireKey(retired) = %v, want ErrNotFound", err)
	}

	destroyed := testStart.Add(2 * time.Hour)
	mustTx(t, s, func(tx Tx) error { return tx.DestroyKey("key-ocsp", destroyed) })
	want.State, want.Destroyed, want.WrappedDEK, want.Ciphertext = KeyDestroyed, destroyed, nil, nil
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("after DestroyKey = %+v, want %+v (wrapped key and ciphertext erased, the rest kept)", got, want)
	}
	for name, fn := range map[string]func(Tx) error{
		"destroy again":  func(tx Tx) error { return tx.DestroyKey("key-ocsp", destroyed.Add(time.Hour)) },
		"retire":         func(tx Tx) error { return tx.RetireKey("key-ocsp", destroyed) },
		"destroy absent": func(tx Tx) error { return tx.DestroyKey("key-missing", destroyed) },
		"retire absent":  func(tx Tx) error { return tx.RetireKey("key-missing", destroyed) },
	} {
		if err := s.WithTx(ctx, fn); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("a destroyed key changed: %+v, want %+v", got, want)
	}
}

func TestIssuerRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	root := IssuerRecord{ID: "root", Kind: "root", KeyID: "key-root", CertDER: []byte{0x30, 1}, State: KeyActive, Created: testStart}
	inter := IssuerRecord{ID: "int", Kind: "intermediate", ParentID: "root", KeyID: "key-int", CertDER: []byte{0x30, 2},
		State: KeyRetired, Created: testStart.Add(time.Second)}
	mustTx(t, s, func(tx Tx) error {
		for _, k := range []string{"key-root", "key-int"} {
			if err := tx.InsertKey(testKey(k)); err != nil {
				return err
			}
		}
		if err := tx.InsertIssuer(inter); err != nil {
			return err
		}
		return tx.InsertIssuer(root)
	})
	for _, want := range []IssuerRecord{root, inter} {
		if got, err := s.Issuer(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Issuer(%s) = %+v, %v; want %+v", want.ID, got, err, want)
		}
	}
	got, err := s.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []IssuerRecord{root, inter}; !reflect.DeepEqual(got, want) {
		t.Errorf("Issuers = %+v, want %+v", got, want)
	}
}

func TestCertificateRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	full := testCert("int-a", "1f2e3d")
	full.SANs = []string{"www.example.com", "example.com", "192.0.2.1", "mail@example.com", "spiffe://example.com/x"}
	full.NotBefore = testStart.Add(-time.Minute)
	full.NotAfter = testStart.Add(2160 * time.Hour)
	full.DER = bytes.Repeat([]byte{0x30, 0x82, 0, 0xff}, 150)
	noSANs := testCert("int-a", "2a")
	noSANs.SANs = nil
	noSANs.Subject = "CN=client"
	noSANs.Profile, noSANs.Requester, noSANs.Channel = "client", "token:ab12", "api"
	oneSAN := testCert("int-b", "3b")

	recs := []*CertRecord{&full, &noSANs, &oneSAN}
	mustTx(t, s, func(tx Tx) error {
		for _, c := range recs {
			if err := tx.InsertCertificate(c); err != nil {
				return err
			}
		}
		return nil
	})
	for i, c := range recs {
		if c.ID == 0 || (i > 0 && c.ID <= recs[i-1].ID) {
			t.Errorf("cert %s ID = %d, want increasing and non-zero", c.Serial, c.ID)
		}
		got, err := s.Certificate(ctx, c.Serial)
		if err != nil {
			t.Fatalf("Certificate(%s): %v", c.Serial, err)
		}
		if !reflect.DeepEqual(got, *c) {
			t.Errorf("Certificate(%s) =\n%+v\nwant\n%+v", c.Serial, got, *c)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	admin := TokenRecord{ID: "tok-admin", SecretHash: bytes.Repeat([]byte{7}, 32), Role: "admin", Profiles: []string{},
		Description: "bootstrap", Created: testStart}
	issuer := TokenRecord{ID: "tok-issuer", SecretHash: []byte{1, 2}, Role: "issuer", Profiles: []string{"server", "client"},
		Description: "web fleet", Created: testStart.Add(time.Second), Expires: testStart.Add(720 * time.Hour)}
	nilProfiles := TokenRecord{ID: "tok-auditor", SecretHash: []byte{3}, Role: "auditor", Created: testStart.Add(2 * time.Second)}
	mustTx(t, s, func(tx Tx) error {
		for _, tok := range []TokenRecord{issuer, admin, nilProfiles} {
			if err := tx.InsertToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	nilProfiles.Profiles = []string{} // nil is stored as "no profiles"
	want := []TokenRecord{admin, issuer, nilProfiles}
	for _, w := range want {
		if got, err := s.Token(ctx, w.ID); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("Token(%s) = %+v, %v; want %+v", w.ID, got, err, w)
		}
	}
	if got, err := s.Tokens(ctx); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens = %+v, %v; want %+v", got, err, want)
	}

	revoked := testStart.Add(time.Hour)
	mustTx(t, s, func(tx Tx) error { return tx.RevokeToken("tok-issuer", revoked) })
	if got, _ := s.Token(ctx, "tok-issuer"); !got.Revoked.Equal(revoked) {
		t.Errorf("Revoked = %v, want %v", got.Revoked, revoked)
	}
	for _, id := range []string{"tok-issuer", "tok-missing"} {
		err := s.WithTx(ctx, func(tx Tx) error { return tx.RevokeToken(id, revoked.Add(time.Hour)) })
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeToken(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if got, _ := s.Token(ctx, "tok-issuer"); !got.Revoked.Equal(revoked) {
		t.Errorf("second revoke changed Revoked to %v, want %v", got.Revoked, revoked)
	}
}

func TestSettingRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values [][]byte // written in order; the last one is read back
		want   []byte
	}{
		{name: "value", values: [][]byte{[]byte("v1")}, want: []byte("v1")},
		{name: "overwrite", values: [][]byte{[]byte("v1"), []byte("v2")}, want: []byte("v2")},
		{name: "binary", values: [][]byte{{0, 0xff, 0}}, want: []byte{0, 0xff, 0}},
		{name: "empty", values: [][]byte{{}}, want: nil},
		{name: "nil", values: [][]byte{nil}, want: nil},
		{name: "overwrite with nil", values: [][]byte{[]byte("v1"), nil}, want: nil},
	}
	s := openTest(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, v := range tt.values {
				mustTx(t, s, func(tx Tx) error { return tx.PutSetting(tt.name, v) })
			}
			got, err := s.Setting(context.Background(), tt.name)
			if err != nil {
				t.Fatalf("Setting: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Setting = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAuditRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	inputs := []audit.Event{
		{Time: testStart, Actor: "system", Action: "ca.initialized", Target: "root",
			Detail: map[string]string{"algorithm": "ECDSA-P256", "empty": "", "unicode": "ünïcødé\n"}},
		{Time: testStart.Add(time.Nanosecond), Actor: "cli", Action: "key.generated", Target: "key-1", Detail: nil},
		{Time: testStart.Add(time.Second), Actor: "token:ab12", Action: "request.refused", Detail: map[string]string{}},
		// Not UTC: stored as the same instant in UTC.
		{Time: testStart.In(time.FixedZone("CET", 3600)).Add(time.Minute), Actor: "system", Action: "zone"},
	}
	var appended []audit.Event
	mustTx(t, s, func(tx Tx) error {
		for _, e := range inputs {
			got, err := tx.AppendAudit(e)
			if err != nil {
				return err
			}
			appended = append(appended, got)
		}
		return nil
	})
	prev := audit.GenesisHash()
	for i, e := range appended {
		if e.Seq != int64(i+1) || !bytes.Equal(e.PrevHash, prev) || len(e.Hash) != audit.HashSize {
			t.Errorf("appended[%d] = seq %d prev %x hash %x; want seq %d prev %x", i, e.Seq, e.PrevHash, e.Hash, i+1, prev)
		}
		if !e.Time.Equal(inputs[i].Time) || e.Time.Location() != time.UTC {
			t.Errorf("appended[%d].Time = %v, want %v in UTC", i, e.Time, inputs[i].Time)
		}
		prev = e.Hash
	}
	// Nil and empty Detail encode identically and read back as nil.
	for i := range appended {
		if len(appended[i].Detail) == 0 {
			appended[i].Detail = nil
		}
	}
	scanned := checkChain(t, s, nil)
	if !reflect.DeepEqual(scanned, appended) {
		t.Errorf("ScanAudit =\n%+v\nwant\n%+v", scanned, appended)
	}
	listed, next, err := s.AuditEvents(ctx, AuditFilter{})
	if err != nil || next != 0 {
		t.Fatalf("AuditEvents = next %d, %v", next, err)
	}
	if !reflect.DeepEqual(listed, appended) {
		t.Errorf("AuditEvents =\n%+v\nwant\n%+v", listed, appended)
	}

	// A time that cannot be stored as int64 Unix nanoseconds would be read
	// back as a different instant than the one hashed: refuse it rather than
	// write an event that can never verify.
	for _, tm := range []time.Time{{}, time.Unix(0, 0), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)} {
		err := s.WithTx(ctx, func(tx Tx) error {
			_, err := tx.AppendAudit(audit.Event{Time: tm, Actor: "system", Action: "bad.time"})
			return err
		})
		if err == nil {
			t.Errorf("AppendAudit with time %v succeeded, want an error", tm)
		}
	}
	if got := checkChain(t, s, nil); len(got) != len(appended) {
		t.Errorf("%d events after refused appends, want %d", len(got), len(appended))
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	mustTx(t, s, func(tx Tx) error {
		c := testCert("int", "aa")
		return tx.InsertCertificate(&c)
	})
	ctx := context.Background()
	tests := []struct {
		name string
		get  func() error
	}{
		{"key", func() error { _, err := s.Key(ctx, "nope"); return err }},
		{"kek", func() error { _, err := s.KEK(ctx, "nope"); return err }},
		{"active kek", func() error { _, err := s.ActiveKEK(ctx); return err }},
		{"issuer", func() error { _, err := s.Issuer(ctx, "nope"); return err }},
		{"certificate", func() error { _, err := s.Certificate(ctx, "ab"); return err }},
		{"token", func() error { _, err := s.Token(ctx, "nope"); return err }},
		{"setting", func() error { _, err := s.Setting(ctx, "nope"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.get(); !errors.Is(err, ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDuplicate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		first  func(Tx) error
		second func(Tx) error
	}{
		{
			name:  "serial under one issuer",
			first: func(tx Tx) error { c := testCert("int-a", "abc"); return tx.InsertCertificate(&c) },
			second: func(tx Tx) error {
				c := testCert("int-a", "abc")
				c.Subject = "CN=other"
				return tx.InsertCertificate(&c)
			},
		},
		{
			name:   "key id",
			first:  func(tx Tx) error { return tx.InsertKey(testKey("k")) },
			second: func(tx Tx) error { k := testKey("k"); k.Purpose = "audit"; return tx.InsertKey(k) },
		},
		{
			name:   "kek id",
			first:  func(tx Tx) error { return tx.InsertKEK(KEKRecord{ID: "e", Params: []byte{}, Check: []byte{}}) },
			second: func(tx Tx) error { return tx.InsertKEK(KEKRecord{ID: "e", Params: []byte{1}, Check: []byte{}}) },
		},
		{
			name: "issuer id",
			first: func(tx Tx) error {
				return tx.InsertIssuer(IssuerRecord{ID: "int-a", KeyID: "key-int-a", CertDER: []byte{1}})
			},
			second: nil, // int-a is seeded; first is already the duplicate
		},
		{
			name:   "token id",
			first:  func(tx Tx) error { return tx.InsertToken(TokenRecord{ID: "t", SecretHash: []byte{1}}) },
			second: func(tx Tx) error { return tx.InsertToken(TokenRecord{ID: "t", SecretHash: []byte{2}}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Config{})
			seedIssuers(t, s, "int-a", "int-b")
			dup := tt.second
			if dup == nil {
				dup = tt.first
			} else {
				mustTx(t, s, tt.first)
			}
			err := s.WithTx(context.Background(), func(tx Tx) error {
				if _, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "system", Action: "dup.attempt"}); err != nil {
					return err
				}
				return dup(tx)
			})
			if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("second insert = %v, want ErrDuplicate", err)
			}
			// The refused transaction left nothing behind, not even its audit event.
			if events := checkChain(t, s, nil); len(events) != 0 {
				t.Errorf("%d audit events after refused transaction, want 0", len(events))
			}
		})
	}

	t.Run("first row kept", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, Config{})
		seedIssuers(t, s, "int-a")
		first := testCert("int-a", "abc")
		mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&first) })
		err := s.WithTx(context.Background(), func(tx Tx) error {
			c := testCert("int-a", "abc")
			c.Subject = "CN=impostor"
			return tx.InsertCertificate(&c)
		})
		if !errors.Is(err, ErrDuplicate) {
			t.Fatalf("duplicate = %v, want ErrDuplicate", err)
		}
		got, err := s.Certificate(context.Background(), "abc")
		if err != nil || !reflect.DeepEqual(got, first) {
			t.Errorf("Certificate = %+v, %v; want the first %+v", got, err, first)
		}
	})
}

func TestSameSerialTwoIssuers(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	a, b := testCert("int-a", "5e1a1"), testCert("int-b", "5e1a1")
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&a) })
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&b) })

	got, err := s.Certificate(ctx, "5e1a1")
	if err != nil || got.ID != a.ID {
		t.Errorf("Certificate = id %d, %v; want the first recorded (%d)", got.ID, err, a.ID)
	}
	tests := []struct {
		issuer string
		want   []int64
	}{
		{"", []int64{b.ID, a.ID}},
		{"int-a", []int64{a.ID}},
		{"int-b", []int64{b.ID}},
	}
	for _, tt := range tests {
		certs, _, err := s.Certificates(ctx, CertFilter{Serial: "5E1A1", IssuerID: tt.issuer})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, c := range certs {
			ids = append(ids, c.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("Certificates(serial, issuer %q) = %v, want %v", tt.issuer, ids, tt.want)
		}
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

func TestCertificateReplacing(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a")
	old, renewed := testCert("int-a", "01d"), testCert("int-a", "2e3")
	renewed.Replaces = old.Serial
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&old) })
	if _, err := s.CertificateReplacing(ctx, old.Serial); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CertificateReplacing before renewal = %v, want ErrNotFound", err)
	}
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&renewed) })
	got, err := s.CertificateReplacing(ctx, old.Serial)
	if err != nil || !reflect.DeepEqual(got, renewed) {
		t.Fatalf("CertificateReplacing = %+v, %v; want %+v", got, err, renewed)
	}
	if got, err := s.Certificate(ctx, renewed.Serial); err != nil || got.Replaces != old.Serial {
		t.Errorf("Certificate(%s).Replaces = %q, %v; want %q", renewed.Serial, got.Replaces, err, old.Serial)
	}
}

func TestBlockedKeys(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a")
	hash := bytes.Repeat([]byte{7}, 32)
	if _, err := s.KeyBlocked(ctx, hash); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KeyBlocked before blocking = %v, want ErrNotFound", err)
	}
	// Three certificates with the key: valid, revoked, expired; one without.
	valid, revoked, expired, other := testCert("int-a", "a1"), testCert("int-a", "a2"), testCert("int-a", "a3"), testCert("int-a", "a4")
	valid.SPKIHash, revoked.SPKIHash, expired.SPKIHash = hash, hash, hash
	expired.NotAfter = testStart.Add(time.Hour)
	mustTx(t, s, func(tx Tx) error {
		for _, c := range []*CertRecord{&valid, &revoked, &expired, &other} {
			if err := tx.InsertCertificate(c); err != nil {
				return err
			}
		}
		return tx.RevokeCertificate("int-a", revoked.Serial, testStart.Add(time.Minute), 1, time.Time{})
	})
	if len(other.SPKIHash) != 1 {
		t.Errorf("a record whose DER does not parse got key hash %x, want the one-byte marker", other.SPKIHash)
	}
	k := BlockedKey{SPKIHash: hash, Reason: "keyCompromise", Source: "revocation:a2", Actor: "token:admin", Created: testStart}
	var siblings []CertRecord
	mustTx(t, s, func(tx Tx) error {
		if err := tx.BlockKey(k); err != nil {
			return err
		}
		var err error
		siblings, err = tx.CertificatesToBlockWithKey(hash, testStart.Add(2*time.Hour))
		return err
	})
	if len(siblings) != 1 || siblings[0].Serial != valid.Serial {
		t.Errorf("valid certificates with the key = %v, want only %s", siblings, valid.Serial)
	}
	if got, err := s.KeyBlocked(ctx, hash); err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("KeyBlocked = %+v, %v; want %+v", got, err, k)
	}
	if err := s.WithTx(ctx, func(tx Tx) error { return tx.BlockKey(k) }); !errors.Is(err, ErrDuplicate) {
		t.Errorf("blocking twice = %v, want ErrDuplicate", err)
	}
	if err := s.WithTx(ctx, func(tx Tx) error { return tx.BlockKey(BlockedKey{SPKIHash: []byte{1}}) }); err == nil {
		t.Errorf("a short hash was accepted")
	}
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
