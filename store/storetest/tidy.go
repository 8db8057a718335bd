package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// testArchiveCertificates: only live certificates expired before the cutoff
// are archived, in batches; the rows stay queryable by serial; the hot-path
// scans leave them out.
func testArchiveCertificates(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int")
	cutoff := testStart.Add(-90 * 24 * time.Hour)
	mustTx(t, s, func(tx store.Tx) error {
		for i := range 25 {
			c := testCert("int", fmt.Sprintf("old%02d", i))
			c.NotAfter = cutoff.Add(-time.Duration(i+1) * time.Hour)
			if i == 0 {
				c.NotAfter = cutoff.Add(-time.Nanosecond)
			}
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		for _, na := range []time.Time{cutoff, cutoff.Add(time.Hour), testStart.Add(-time.Hour), testStart.Add(time.Hour)} {
			c := testCert("int", fmt.Sprintf("young%d", na.Unix()))
			c.NotAfter = na
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		return tx.RevokeCertificate("int", "old03", cutoff.Add(-200*time.Hour), 1, time.Time{})
	})
	at := testStart.Add(time.Minute)
	var batches []int64
	for {
		var n int64
		mustTx(t, s, func(tx store.Tx) error {
			var err error
			n, err = tx.ArchiveCertificates(cutoff, at, 10)
			return err
		})
		batches = append(batches, n)
		if n < 10 {
			break
		}
	}
	if !slices.Equal(batches, []int64{10, 10, 5}) {
		t.Errorf("batches %v, want 10, 10, 5", batches)
	}
	all, _, err := s.Certificates(ctx, store.CertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		old := strings.HasPrefix(c.Serial, "old")
		if old != !c.Archived.IsZero() || (old && !c.Archived.Equal(at)) {
			t.Errorf("%s (not after %v): archived %v", c.Serial, c.NotAfter, c.Archived)
		}
	}
	got, err := s.Certificate(ctx, "old03")
	if err != nil || got.RevokedAt.IsZero() || got.Archived.IsZero() || len(got.DER) == 0 {
		t.Errorf("archived record by serial = %+v, %v; want it whole", got, err)
	}
	// A second pass finds nothing.
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.ArchiveCertificates(cutoff, at, 10)
		if n != 0 {
			t.Errorf("second pass archived %d", n)
		}
		return err
	})
	// Revoked archived certificates are left out of a first CRL (the
	// partial index), a late revocation of one is still listed once.
	var listed []string
	if err := s.RevokedCertificates(ctx, "int", 0, time.Time{}, func(e store.RevokedEntry) error {
		listed = append(listed, e.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Errorf("first CRL lists archived %v", listed)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeCertificate("int", "old05", testStart, 4, time.Time{}) })
	listed = nil
	if err := s.RevokedCertificates(ctx, "int", 0, testStart.Add(-time.Hour), func(e store.RevokedEntry) error {
		listed = append(listed, e.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []string{"old05"}) {
		t.Errorf("CRL after a late revocation lists %v, want old05", listed)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { _, err := tx.ArchiveCertificates(cutoff, time.Time{}, 10); return err }); err == nil {
		t.Error("archived at the zero time")
	}
}

// testPurgeExpired deletes each kind of dead record older than the cutoff,
// in batches, and nothing younger.
func testPurgeExpired(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int")
	seedACMEAccounts(t, s, "acct")
	cutoff := testStart
	old, young := cutoff.Add(-time.Nanosecond), cutoff
	mustTx(t, s, func(tx store.Tx) error {
		for i, exp := range []time.Time{old, old.Add(-time.Hour), old.Add(-2 * time.Hour), young} {
			if err := tx.UseNonce(fmt.Sprintf("n%d", i), exp); err != nil {
				return err
			}
			o := testACMEOrder(fmt.Sprintf("o%d", i), "acct", exp.Add(-7*24*time.Hour))
			if err := tx.InsertACMEOrder(o); err != nil {
				return err
			}
			a := testACMEAuthz(fmt.Sprintf("a%d", i), "acct", store.ACMEIdentifier{Type: "dns", Value: "x.example.com"}, false, "valid", exp)
			if err := tx.InsertACMEAuthz(a); err != nil {
				return err
			}
			if err := tx.PutOCSPResponses([]store.OCSPResponse{{IssuerID: "int", Serial: fmt.Sprintf("%x", i), Hash: "sha1", DER: []byte{1},
				ThisUpdate: exp.Add(-24 * time.Hour), NextUpdate: exp}}); err != nil {
				return err
			}
			if err := tx.RecordExpiryNotice(store.ExpiryNotice{IssuerID: "int", Serial: fmt.Sprintf("%x", i), Threshold: time.Hour,
				Event: "certificate.expiring", NotAfter: exp, Delivered: exp.Add(-time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, what := range []store.Expired{store.ExpiredNonces, store.ExpiredACMEOrders, store.ExpiredACMEAuthzs, store.ExpiredOCSPResponses, store.ExpiredNotices} {
		var batches []int64
		for {
			var n int64
			mustTx(t, s, func(tx store.Tx) error {
				var err error
				n, err = tx.PurgeExpired(what, cutoff, 2)
				return err
			})
			batches = append(batches, n)
			if n < 2 {
				break
			}
		}
		if !slices.Equal(batches, []int64{2, 1}) {
			t.Errorf("%s: batches %v, want 2, 1", what, batches)
		}
	}
	if _, err := s.ACMEOrder(ctx, "o3"); err != nil {
		t.Errorf("young order: %v", err)
	}
	if _, err := s.ACMEOrder(ctx, "o0"); err == nil {
		t.Error("old order kept")
	}
	if a, err := s.ACMEAuthz(ctx, "a3"); err != nil || len(a.Challenges) != 3 {
		t.Errorf("young authz: %+v, %v", a, err)
	}
	if _, err := s.ACMEChallenge(ctx, "a0-http-01"); err == nil {
		t.Error("challenge of a purged authorization kept")
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.UseNonce("n3", young) }); err == nil {
		t.Error("young nonce purged")
	}
	n := 0
	if err := s.OCSPResponses(ctx, "int", old.Add(-24*time.Hour), func(store.OCSPResponse) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("OCSP responses left: %d, %v; want the young one", n, err)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { _, err := tx.PurgeExpired(store.Expired(99), cutoff, 1); return err }); err == nil {
		t.Error("unknown kind purged")
	}
}

// testExpiringCertificates: the candidates for notices, page by page, with
// the smallest delivered threshold.
func testExpiringCertificates(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int")
	now := testStart
	day := 24 * time.Hour
	certs := map[string]time.Duration{ // serial: time left
		"a": 1 * day, "b": 2 * day, "c": 2 * day, "d": 10 * day, "e": 29 * day, "f": 31 * day, "gone": -time.Hour,
		"revoked": 3 * day, "held": 3 * day, "replaced": 4 * day, "renewal": 90 * day,
		"replaced-by-revoked": 5 * day, "revoked-renewal": 90 * day, "archived": day - time.Hour,
	}
	mustTx(t, s, func(tx store.Tx) error {
		for _, serial := range slices.Sorted(maps.Keys(certs)) {
			c := testCert("int", serial)
			c.NotAfter = now.Add(certs[serial])
			switch serial {
			case "renewal":
				c.Replaces = "replaced"
			case "revoked-renewal":
				c.Replaces = "replaced-by-revoked"
			}
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		for serial, reason := range map[string]int{"revoked": 1, "held": 6, "revoked-renewal": 4} {
			if err := tx.RevokeCertificate("int", serial, now, reason, time.Time{}); err != nil {
				return err
			}
		}
		for _, th := range []time.Duration{30 * day, 7 * day} {
			if err := tx.RecordExpiryNotice(store.ExpiryNotice{IssuerID: "int", Serial: "d", Threshold: th, Event: "certificate.expiring",
				NotAfter: now.Add(10 * day), Delivered: now}); err != nil {
				return err
			}
		}
		// Recording twice is a no-op.
		return tx.RecordExpiryNotice(store.ExpiryNotice{IssuerID: "int", Serial: "d", Threshold: 7 * day, Event: "certificate.expiring",
			NotAfter: now.Add(10 * day), Delivered: now.Add(time.Hour)})
	})
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.ArchiveCertificates(now.Add(day-time.Minute), now, 10)
		if n != 2 { // "gone" and "archived"
			return fmt.Errorf("archived %d, want 2", n)
		}
		return err
	})
	var got []string
	var cur store.ExpiryCursor
	for {
		page, err := s.ExpiringCertificates(ctx, now, now.Add(30*day), cur, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			got = append(got, c.Serial)
			if c.Serial == "d" && c.Notified != 7*day {
				t.Errorf("d notified %v, want 7 days", c.Notified)
			}
			if c.Serial != "d" && c.Notified != 0 {
				t.Errorf("%s notified %v", c.Serial, c.Notified)
			}
		}
		if len(page) < 2 {
			break
		}
		cur = store.ExpiryCursor{NotAfter: page[len(page)-1].NotAfter, ID: page[len(page)-1].ID}
	}
	want := []string{"a", "b", "c", "replaced-by-revoked", "d", "e"}
	if !slices.Equal(got, want) {
		t.Errorf("expiring certificates %v, want %v", got, want)
	}
}
