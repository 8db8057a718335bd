package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// seedManaged records a managed certificate name at version 1 (its key,
// certificate and version) due at due, issued by issuer.
func seedManaged(t testing.TB, s store.Store, issuer, name string, due time.Time) store.ManagedRecord {
	t.Helper()
	m := store.ManagedRecord{
		Name: name, Profile: "server", SANs: []string{name + ".example.com"}, KeyType: "ecdsa-p256", RenewAt: "2/3",
		RotateEvery: 1, RevokeAfter: -1, State: store.ManagedActive, Created: testStart, CreatedBy: "token:admin",
		Version: 1, Serial: name + "01", NotAfter: testStart.Add(90 * 24 * time.Hour), IssuerID: issuer,
		KeyID: "mkey-" + name + "-1", KeyUses: 1, RenewDue: due,
	}
	mustTx(t, s, func(tx store.Tx) error {
		k := testKey(m.KeyID)
		k.Purpose = "managed"
		if err := tx.InsertKey(k); err != nil {
			return err
		}
		c := testCert(issuer, m.Serial)
		if err := issue(tx, &c); err != nil {
			return err
		}
		if err := tx.InsertManaged(m); err != nil {
			return err
		}
		if err := tx.InsertManagedVersion(store.ManagedVersion{Name: name, Version: 1, Serial: m.Serial, IssuerID: issuer,
			KeyID: m.KeyID, Created: testStart, NotBefore: c.NotBefore, NotAfter: c.NotAfter, State: store.VersionCurrent,
			Reason: "created"}); err != nil {
			return err
		}
		return tx.PutManagedKey(m.KeyID, name, c.NotAfter)
	})
	return m
}

func testManagedRecordRoundTrip(t *testing.T, open Opener) {
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	ctx := context.Background()
	m := seedManaged(t, s, "int", "web", testStart.Add(time.Hour))
	got, err := s.Managed(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Managed =\n%+v\nwant\n%+v", got, m)
	}
	if _, err := s.Managed(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown name: %v", err)
	}
	err = s.WithTx(ctx, func(tx store.Tx) error { return tx.InsertManaged(m) })
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("second insert: %v, want ErrDuplicate", err)
	}
	vs, err := s.ManagedVersions(ctx, "web")
	if err != nil || len(vs) != 1 || vs[0].Serial != "web01" || vs[0].State != store.VersionCurrent || !vs[0].RevokedAt.IsZero() {
		t.Fatalf("versions %+v, %v", vs, err)
	}
	v, err := s.ManagedVersionBySerial(ctx, "web01")
	if err != nil || v.Name != "web" || v.Version != 1 {
		t.Errorf("by serial %+v, %v", v, err)
	}
	if _, err := s.ManagedVersionBySerial(ctx, "ffff"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown serial: %v", err)
	}
	// A revoked certificate shows in its version.
	at := testStart.Add(time.Minute)
	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate("int", "web01", at, 4, time.Time{}) })
	v, _ = s.ManagedVersionBySerial(ctx, "web01")
	if !v.RevokedAt.Equal(at) || v.RevokeReason != 4 {
		t.Errorf("revoked version %+v", v)
	}
}

// testManagedAdvance: a version advances only from the version expected,
// so that two renewals of one name cannot both win; a failed transaction
// leaves nothing behind.
func testManagedAdvance(t *testing.T, open Opener) {
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	ctx := context.Background()
	m := seedManaged(t, s, "int", "api", testStart.Add(time.Hour))
	next := m
	next.Version, next.Serial, next.KeyID, next.KeyUses = 2, "api02", m.KeyID, 2
	next.RenewDue, next.LastAttempt = testStart.Add(3*time.Hour), testStart.Add(time.Hour)
	advance := func(from int, serial string) error {
		n := next
		n.Serial = serial
		n.Version = from + 1
		return s.WithTx(ctx, func(tx store.Tx) error {
			c := testCert("int", serial)
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
			if err := tx.SupersedeManagedVersion("api", from, testStart.Add(48*time.Hour)); err != nil {
				return err
			}
			if err := tx.InsertManagedVersion(store.ManagedVersion{Name: "api", Version: from + 1, Serial: serial, IssuerID: "int",
				KeyID: m.KeyID, Created: testStart, NotBefore: testStart, NotAfter: c.NotAfter, State: store.VersionCurrent, Reason: "due"}); err != nil {
				return err
			}
			return tx.AdvanceManaged(n, from)
		})
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.ManagedFailed("api", testStart, "boom") })
	if err := advance(1, "api02"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Managed(ctx, "api")
	if got.Version != 2 || got.Serial != "api02" || got.KeyUses != 2 || got.LastError != "" || !got.RenewDue.Equal(next.RenewDue) {
		t.Errorf("after advance %+v", got)
	}
	// A stale renewal from version 1 fails as a whole.
	if err := advance(1, "api03"); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("stale advance: %v", err)
	}
	if _, err := s.Certificate(ctx, "api03"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed advance left its certificate: %v", err)
	}
	vs, _ := s.ManagedVersions(ctx, "api")
	if len(vs) != 2 || vs[0].Version != 2 || vs[1].State != store.VersionSuperseded || !vs[1].RevokeDue.Equal(testStart.Add(48*time.Hour)) {
		t.Errorf("versions %+v", vs)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.ManagedVersionRevoked("api", 1) })
	err := s.WithTx(ctx, func(tx store.Tx) error { return tx.ManagedVersionRevoked("api", 1) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second ManagedVersionRevoked: %v", err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.DeleteManaged("api", testStart.Add(time.Hour)) })
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.DeleteManaged("api", testStart) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if err := advance(2, "api04"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("advance after delete: %v", err)
	}
}

// testManagedDue: due work is read in due order, page by page, and only
// active, due records come back.
func testManagedDue(t *testing.T, open Opener) {
	s := openTest(t, open)
	seedIssuers(t, s, "int", "old")
	ctx := context.Background()
	for i := range 10 {
		seedManaged(t, s, "int", fmt.Sprintf("n%02d", i), testStart.Add(time.Duration(i%5)*time.Hour))
	}
	seedManaged(t, s, "old", "gone", testStart)
	mustTx(t, s, func(tx store.Tx) error { return tx.DeleteManaged("gone", testStart) })
	var got []string
	var c store.DueCursor
	for {
		page, err := s.DueManaged(ctx, testStart.Add(2*time.Hour), c, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			got = append(got, m.Name)
		}
		last := page[len(page)-1]
		c = store.DueCursor{Due: last.RenewDue, Key: last.Name}
	}
	if want := "n00 n05 n01 n06 n02 n07"; strings.Join(got, " ") != want {
		t.Errorf("due order %v, want %s", got, want)
	}
	// A revoked current certificate makes its record due at once; a later
	// revocation time never postpones it.
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.ManagedCertRevoked("n04"+"01", testStart.Add(time.Minute))
		if err == nil && n != 1 {
			err = fmt.Errorf("%d rows", n)
		}
		return err
	})
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.ManagedCertRevoked("n04"+"01", testStart.Add(time.Hour))
		if err == nil && n != 0 {
			err = fmt.Errorf("%d rows for a later time", n)
		}
		return err
	})
	m, _ := s.Managed(ctx, "n04")
	if !m.RenewDue.Equal(testStart.Add(time.Minute)) {
		t.Errorf("after revocation due %v", m.RenewDue)
	}
	// Issuer change: only records of other issuers, and none deleted.
	if found, err := s.ManagedIssuedElsewhere(ctx, "int"); err != nil || found {
		t.Errorf("issued elsewhere with one active issuer: %v, %v", found, err)
	}
	seedManaged(t, s, "old", "legacy", testStart.Add(1000*time.Hour))
	if found, err := s.ManagedIssuedElsewhere(ctx, "int"); err != nil || !found {
		t.Errorf("issued elsewhere: %v, %v", found, err)
	}
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.ManagedIssuerDue("int", testStart)
		if err == nil && n != 1 {
			err = fmt.Errorf("%d marked, want 1", n)
		}
		return err
	})
	m, _ = s.Managed(ctx, "legacy")
	if !m.RenewDue.Equal(testStart) {
		t.Errorf("legacy due %v", m.RenewDue)
	}
}

func testManagedKeysAndRevocationsDue(t *testing.T, open Opener) {
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	ctx := context.Background()
	m := seedManaged(t, s, "int", "k", testStart)
	// PutManagedKey keeps the latest notAfter.
	mustTx(t, s, func(tx store.Tx) error { return tx.PutManagedKey(m.KeyID, "k", testStart.Add(time.Hour)) })
	mustTx(t, s, func(tx store.Tx) error { return tx.PutManagedKey(m.KeyID, "k", testStart.Add(200*24*time.Hour)) })
	var mk store.ManagedKey
	mustTx(t, s, func(tx store.Tx) (err error) { mk, err = tx.ManagedKeyOf(m.KeyID); return err })
	if !mk.NotAfter.Equal(testStart.Add(200*24*time.Hour)) || !mk.DestroyDue.IsZero() {
		t.Errorf("managed key %+v", mk)
	}
	if ks, err := s.DueManagedKeys(ctx, testStart.Add(1000*24*time.Hour), store.DueCursor{}, 10); err != nil || len(ks) != 0 {
		t.Errorf("keys in use due: %+v, %v", ks, err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.ScheduleManagedKeyDestroy(m.KeyID, testStart.Add(time.Hour)) })
	if ks, _ := s.DueManagedKeys(ctx, testStart, store.DueCursor{}, 10); len(ks) != 0 {
		t.Errorf("due early: %+v", ks)
	}
	if ks, _ := s.DueManagedKeys(ctx, testStart.Add(time.Hour), store.DueCursor{}, 10); len(ks) != 1 || ks[0].KeyID != m.KeyID {
		t.Errorf("due keys %+v", ks)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.ScheduleManagedKeyDestroy("nope", testStart) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	if ks, err := s.ManagedKeys(ctx, "k"); err != nil || len(ks) != 1 {
		t.Errorf("ManagedKeys %+v, %v", ks, err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.SupersedeManagedVersion("k", 1, testStart.Add(time.Hour)) })
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.SupersedeManagedVersion("k", 1, testStart) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("superseding twice: %v", err)
	}
	if vs, _ := s.DueManagedRevocations(ctx, testStart.Add(time.Hour-1), store.DueCursor{}, 10); len(vs) != 0 {
		t.Errorf("revocation due early: %+v", vs)
	}
	if vs, _ := s.DueManagedRevocations(ctx, testStart.Add(time.Hour), store.DueCursor{}, 10); len(vs) != 1 || vs[0].Serial != m.Serial {
		t.Errorf("due revocations %+v", vs)
	}
}
