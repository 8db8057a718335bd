package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// certAt returns the certificate issuer recorded under serial.
func certAt(t testing.TB, s store.Store, issuer, serial string) store.CertRecord {
	t.Helper()
	got, _, err := s.Certificates(context.Background(), store.CertFilter{IssuerID: issuer, Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Certificates(%s/%s) = %d records, want 1", issuer, serial, len(got))
	}
	return got[0]
}

// seedCerts records a certificate for each issuer/serial pair and returns
// the records as stored.
func seedCerts(t testing.TB, s store.Store, pairs ...[2]string) []store.CertRecord {
	t.Helper()
	out := make([]store.CertRecord, len(pairs))
	mustTx(t, s, func(tx store.Tx) error {
		for i, p := range pairs {
			out[i] = testCert(p[0], p[1])
			if err := tx.InsertCertificate(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

// revoke marks a certificate revoked, as the CA does.
func revoke(t testing.TB, s store.Store, issuer, serial string, at time.Time, reason int) {
	t.Helper()
	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate(issuer, serial, at, reason, time.Time{}) })
}

func testCertificateRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
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

	recs := []*store.CertRecord{&full, &noSANs, &oneSAN}
	mustTx(t, s, func(tx store.Tx) error {
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

func testNotFound(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	mustTx(t, s, func(tx store.Tx) error {
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
			if err := tt.get(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func testDuplicate(t *testing.T, open Opener) {
	t.Parallel()
	tests := []struct {
		name   string
		first  func(store.Tx) error
		second func(store.Tx) error
	}{
		{
			name:  "serial under one issuer",
			first: func(tx store.Tx) error { c := testCert("int-a", "abc"); return tx.InsertCertificate(&c) },
			second: func(tx store.Tx) error {
				c := testCert("int-a", "abc")
				c.Subject = "CN=other"
				return tx.InsertCertificate(&c)
			},
		},
		{
			name:   "key id",
			first:  func(tx store.Tx) error { return tx.InsertKey(testKey("k")) },
			second: func(tx store.Tx) error { k := testKey("k"); k.Purpose = "audit"; return tx.InsertKey(k) },
		},
		{
			name: "kek id",
			first: func(tx store.Tx) error {
				return tx.InsertKEK(store.KEKRecord{ID: "e", Params: []byte{}, Check: []byte{}})
			},
			second: func(tx store.Tx) error {
				return tx.InsertKEK(store.KEKRecord{ID: "e", Params: []byte{1}, Check: []byte{}})
			},
		},
		{
			name: "issuer id",
			first: func(tx store.Tx) error {
				return tx.InsertIssuer(store.IssuerRecord{ID: "int-a", KeyID: "key-int-a", CertDER: []byte{1}})
			},
			second: nil, // int-a is seeded; first is already the duplicate
		},
		{
			name:   "token id",
			first:  func(tx store.Tx) error { return tx.InsertToken(store.TokenRecord{ID: "t", SecretHash: []byte{1}}) },
			second: func(tx store.Tx) error { return tx.InsertToken(store.TokenRecord{ID: "t", SecretHash: []byte{2}}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, open)
			seedIssuers(t, s, "int-a", "int-b")
			dup := tt.second
			if dup == nil {
				dup = tt.first
			} else {
				mustTx(t, s, tt.first)
			}
			err := s.WithTx(context.Background(), func(tx store.Tx) error {
				if _, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "system", Action: "dup.attempt"}); err != nil {
					return err
				}
				return dup(tx)
			})
			if !errors.Is(err, store.ErrDuplicate) {
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
		s := openTest(t, open)
		seedIssuers(t, s, "int-a")
		first := testCert("int-a", "abc")
		mustTx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(&first) })
		err := s.WithTx(context.Background(), func(tx store.Tx) error {
			c := testCert("int-a", "abc")
			c.Subject = "CN=impostor"
			return tx.InsertCertificate(&c)
		})
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("duplicate = %v, want ErrDuplicate", err)
		}
		got, err := s.Certificate(context.Background(), "abc")
		if err != nil || !reflect.DeepEqual(got, first) {
			t.Errorf("Certificate = %+v, %v; want the first %+v", got, err, first)
		}
	})
}

func testSameSerialTwoIssuers(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	a, b := testCert("int-a", "5e1a1"), testCert("int-b", "5e1a1")
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(&a) })
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(&b) })

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
		certs, _, err := s.Certificates(ctx, store.CertFilter{Serial: "5E1A1", IssuerID: tt.issuer})
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

func testCertificateReplacing(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a")
	old, renewed := testCert("int-a", "01d"), testCert("int-a", "2e3")
	renewed.Replaces = old.Serial
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(&old) })
	if _, err := s.CertificateReplacing(ctx, old.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CertificateReplacing before renewal = %v, want ErrNotFound", err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(&renewed) })
	got, err := s.CertificateReplacing(ctx, old.Serial)
	if err != nil || !reflect.DeepEqual(got, renewed) {
		t.Fatalf("CertificateReplacing = %+v, %v; want %+v", got, err, renewed)
	}
	if got, err := s.Certificate(ctx, renewed.Serial); err != nil || got.Replaces != old.Serial {
		t.Errorf("Certificate(%s).Replaces = %q, %v; want %q", renewed.Serial, got.Replaces, err, old.Serial)
	}
}

func testBlockedKeys(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a")
	hash := bytes.Repeat([]byte{7}, 32)
	if _, err := s.KeyBlocked(ctx, hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("KeyBlocked before blocking = %v, want ErrNotFound", err)
	}
	// Three certificates with the key: valid, revoked, expired; one without.
	valid, revoked, expired, other := testCert("int-a", "a1"), testCert("int-a", "a2"), testCert("int-a", "a3"), testCert("int-a", "a4")
	valid.SPKIHash, revoked.SPKIHash, expired.SPKIHash = hash, hash, hash
	expired.NotAfter = testStart.Add(time.Hour)
	mustTx(t, s, func(tx store.Tx) error {
		for _, c := range []*store.CertRecord{&valid, &revoked, &expired, &other} {
			if err := tx.InsertCertificate(c); err != nil {
				return err
			}
		}
		return tx.RevokeCertificate("int-a", revoked.Serial, testStart.Add(time.Minute), 1, time.Time{})
	})
	if len(other.SPKIHash) != 1 {
		t.Errorf("a record whose DER does not parse got key hash %x, want the one-byte marker", other.SPKIHash)
	}
	k := store.BlockedKey{SPKIHash: hash, Reason: "keyCompromise", Source: "revocation:a2", Actor: "token:admin", Created: testStart}
	var siblings []store.CertRecord
	mustTx(t, s, func(tx store.Tx) error {
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
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.BlockKey(k) }); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("blocking twice = %v, want ErrDuplicate", err)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.BlockKey(store.BlockedKey{SPKIHash: []byte{1}}) }); err == nil {
		t.Errorf("a short hash was accepted")
	}
}

func testRevokeCertificate(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	recs := seedCerts(t, s, [2]string{"int-a", "ab"}, [2]string{"int-b", "ab"}, [2]string{"int-a", "cd"})
	at := testStart.Add(time.Hour)
	invalid := testStart.Add(30 * time.Minute)

	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate("int-a", "ab", at, 1, invalid) })
	want := recs[0]
	want.RevokedAt, want.RevokeReason, want.InvalidityDate = at, 1, invalid
	if got := certAt(t, s, "int-a", "ab"); !reflect.DeepEqual(got, want) {
		t.Errorf("revoked record =\n%+v\nwant\n%+v", got, want)
	}
	if got, err := s.Certificate(ctx, "ab"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Certificate(ab) = %+v, %v; want the revoked record", got, err)
	}
	// The same serial under another issuer is another certificate.
	if got := certAt(t, s, "int-b", "ab"); !reflect.DeepEqual(got, recs[1]) {
		t.Errorf("int-b/ab changed: %+v", got)
	}
	revoked, _, err := s.Certificates(ctx, store.CertFilter{Status: "revoked", Now: at})
	if err != nil || len(revoked) != 1 || revoked[0].ID != recs[0].ID {
		t.Errorf("Certificates(revoked) = %v, %v; want int-a/ab only", serials(revoked), err)
	}

	t.Run("no invalidity date", func(t *testing.T) {
		t.Parallel()
		mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate("int-a", "cd", at, 0, time.Time{}) })
		got := certAt(t, s, "int-a", "cd")
		if !got.RevokedAt.Equal(at) || got.RevokeReason != 0 || !got.InvalidityDate.IsZero() {
			t.Errorf("record = %+v, want revoked at %v, reason 0, no invalidity date", got, at)
		}
	})

	refusals := []struct {
		name    string
		issuer  string
		serial  string
		at      time.Time
		wantErr error // nil: any error that is neither sentinel
	}{
		{"again, another reason", "int-a", "ab", at.Add(time.Hour), store.ErrAlreadyRevoked},
		{"unknown serial", "int-a", "ef", at, store.ErrNotFound},
		{"serial of another issuer", "int-b", "cd", at, store.ErrNotFound},
		{"unknown issuer", "int-c", "ab", at, store.ErrNotFound},
		{"zero time", "int-b", "ab", time.Time{}, nil},
		{"the epoch", "int-b", "ab", time.Unix(0, 0), nil},
		{"unstorable time", "int-b", "ab", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), nil},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.WithTx(ctx, func(tx store.Tx) error {
				// The refusal must roll back the whole transaction, audit event included.
				if _, err := tx.AppendAudit(audit.Event{Time: at, Actor: "test", Action: "cert.revoked", Target: tt.serial}); err != nil {
					return err
				}
				return tx.RevokeCertificate(tt.issuer, tt.serial, tt.at, 4, time.Time{})
			})
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("RevokeCertificate = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && (err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAlreadyRevoked)):
				t.Errorf("RevokeCertificate = %v, want a plain error", err)
			}
			if err != nil && !strings.Contains(err.Error(), tt.issuer+"/"+tt.serial) {
				t.Errorf("error %q does not name the certificate", err)
			}
			if evs, _, _ := s.AuditEvents(ctx, store.AuditFilter{Target: tt.serial}); len(evs) != 0 {
				t.Errorf("refused transaction left %d audit events", len(evs))
			}
		})
	}
	t.Cleanup(func() {
		// After every refusal: int-a/ab keeps its first revocation and
		// int-b/ab is still not revoked.
		if got := certAt(t, s, "int-a", "ab"); !reflect.DeepEqual(got, want) {
			t.Errorf("int-a/ab after refusals =\n%+v\nwant\n%+v", got, want)
		}
		if got := certAt(t, s, "int-b", "ab"); !reflect.DeepEqual(got, recs[1]) {
			t.Errorf("int-b/ab after refusals = %+v", got)
		}
	})
}

func testUnholdCertificate(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int")
	recs := seedCerts(t, s, [2]string{"int", "01"}, [2]string{"int", "02"}, [2]string{"int", "03"})
	held, compromised, valid := recs[0], recs[1], recs[2]
	at := testStart.Add(time.Hour)
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.RevokeCertificate("int", held.Serial, at, reasonCertificateHold, at.Add(-time.Minute)); err != nil {
			return err
		}
		return tx.RevokeCertificate("int", compromised.Serial, at, 1, time.Time{})
	})
	compromisedRec := certAt(t, s, "int", compromised.Serial)

	mustTx(t, s, func(tx store.Tx) error { return tx.UnholdCertificate("int", held.Serial) })
	if got := certAt(t, s, "int", held.Serial); !reflect.DeepEqual(got, held) {
		t.Errorf("after unhold =\n%+v\nwant the unrevoked record\n%+v", got, held)
	}

	for _, tt := range []struct {
		name, serial string
		want         error
	}{
		{"no longer on hold", held.Serial, store.ErrNotOnHold},
		{"revoked for another reason", compromised.Serial, store.ErrNotOnHold},
		{"never revoked", valid.Serial, store.ErrNotOnHold},
		{"unknown", "ff", store.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.WithTx(ctx, func(tx store.Tx) error { return tx.UnholdCertificate("int", tt.serial) })
			if !errors.Is(err, tt.want) {
				t.Errorf("UnholdCertificate = %v, want %v", err, tt.want)
			}
		})
	}
	if got := certAt(t, s, "int", compromised.Serial); !reflect.DeepEqual(got, compromisedRec) {
		t.Errorf("refused unhold changed a revoked record: %+v", got)
	}
	if got := certAt(t, s, "int", valid.Serial); !reflect.DeepEqual(got, valid) {
		t.Errorf("refused unhold changed a valid record: %+v", got)
	}

	// Released from hold, the certificate can be revoked again.
	later := at.Add(time.Hour)
	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate("int", held.Serial, later, 4, time.Time{}) })
	if got := certAt(t, s, "int", held.Serial); !got.RevokedAt.Equal(later) || got.RevokeReason != 4 || !got.InvalidityDate.IsZero() {
		t.Errorf("revoked after unhold: %+v", got)
	}
}

// reasonCertificateHold is the RFC 5280 §5.3.1 CRLReason certificateHold,
// the one revocation UnholdCertificate and FinalizeHold undo or finalize.
const reasonCertificateHold = 6
