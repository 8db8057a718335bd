package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// pageAll follows cursors from f until the last page, calling between after
// each page but the last, and returns everything in order.
func pageAll(t *testing.T, s store.Store, f store.CertFilter, between func()) []store.CertRecord {
	t.Helper()
	var all []store.CertRecord
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		certs, next, err := s.Certificates(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, certs...)
		if next.IsZero() {
			return all
		}
		if len(certs) == 0 || next != f.Sort.CursorOf(certs[len(certs)-1]) {
			t.Fatalf("page of %d does not end at the next cursor %+v", len(certs), next)
		}
		f.After = next
		if between != nil {
			between()
		}
	}
}

// checkDescending checks that certs have unique, strictly descending IDs.
func checkDescending(t *testing.T, certs []store.CertRecord) {
	t.Helper()
	for i := 1; i < len(certs); i++ {
		if certs[i].ID >= certs[i-1].ID {
			t.Fatalf("record %d: id %d after %d, want strictly descending", i, certs[i].ID, certs[i-1].ID)
		}
	}
}

func testCertificatesFilter(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	day := 24 * time.Hour
	now := testStart.Add(30 * day) // the reference time for Status
	type cert struct {
		issuer, serial, subject string
		sans                    []string
		profile, requester      string
		created, notAfter       time.Time
	}
	// Inserted in this order, so IDs ascend in it and results list it backwards.
	certs := []cert{
		{"int-a", "01", "CN=www.example.com", []string{"www.example.com", "example.com"}, "server", "acme:1", testStart, now.Add(60 * day)},
		{"int-a", "02", "CN=api.example.org", []string{"api.example.org"}, "server", "token:ops", testStart.Add(day), now.Add(-time.Hour)},
		{"int-a", "03", "CN=50% off", []string{"under_score.test"}, "client", "cli", testStart.Add(2 * day), now.Add(day)},
		{"int-a", "04", "CN=500 off", []string{"underXscore.test"}, "client", "cli", testStart.Add(3 * day), now}, // expires exactly at now
		{"int-a", "0e", `CN=back\slash`, []string{"mail.example.net"}, "server", "acme:1", testStart.Add(4 * day), now.Add(90 * day)},
		{"int-b", "0f", "CN=www.example.com", nil, "server", "acme:2", testStart.Add(5 * day), now.Add(-day)},
	}
	mustTx(t, s, func(tx store.Tx) error {
		for _, c := range certs {
			r := testCert(c.issuer, c.serial)
			r.Subject, r.SANs, r.Profile, r.Requester, r.Created, r.NotAfter = c.subject, c.sans, c.profile, c.requester, c.created, c.notAfter
			if err := tx.InsertCertificate(&r); err != nil {
				return err
			}
		}
		return nil
	})
	revoke(t, s, "int-a", "0e", now.Add(-day), 1)
	revoke(t, s, "int-b", "0f", now.Add(-2*day), 4) // revoked, and expired since: reported as revoked

	tests := []struct {
		name string
		f    store.CertFilter
		want []string
	}{
		{"all", store.CertFilter{}, []string{"0f", "0e", "04", "03", "02", "01"}},
		{"serial", store.CertFilter{Serial: "03"}, []string{"03"}},
		{"serial upper case", store.CertFilter{Serial: "0E"}, []string{"0e"}},
		{"serial unknown", store.CertFilter{Serial: "ff"}, []string{}},
		{"name in SAN and subject", store.CertFilter{Name: "example.com"}, []string{"0f", "01"}},
		{"name in SAN only", store.CertFilter{Name: "mail.example"}, []string{"0e"}},
		{"name in subject only", store.CertFilter{Name: "500 off"}, []string{"04"}},
		{"name ignores case", store.CertFilter{Name: "API.Example.ORG"}, []string{"02"}},
		{"name percent is literal", store.CertFilter{Name: "50%"}, []string{"03"}},
		{"name lone percent", store.CertFilter{Name: "%"}, []string{"03"}},
		{"name underscore is literal", store.CertFilter{Name: "under_score"}, []string{"03"}},
		{"name lone underscore", store.CertFilter{Name: "_"}, []string{"03"}},
		{"name backslash is literal", store.CertFilter{Name: `\`}, []string{"0e"}},
		{"name no match", store.CertFilter{Name: "nomatch"}, []string{}},
		{"profile", store.CertFilter{Profile: "client"}, []string{"04", "03"}},
		{"requester", store.CertFilter{Requester: "acme:1"}, []string{"0e", "01"}},
		{"issuer", store.CertFilter{IssuerID: "int-b"}, []string{"0f"}},
		{"valid", store.CertFilter{Status: "valid", Now: now}, []string{"03", "01"}},
		{"expired", store.CertFilter{Status: "expired", Now: now}, []string{"04", "02"}},
		{"revoked", store.CertFilter{Status: "revoked", Now: now}, []string{"0f", "0e"}},
		{"valid at an earlier now", store.CertFilter{Status: "valid", Now: testStart}, []string{"04", "03", "02", "01"}},
		{"expired at an earlier now", store.CertFilter{Status: "expired", Now: testStart}, []string{}},
		{"issued after (inclusive)", store.CertFilter{IssuedAfter: testStart.Add(2 * day)}, []string{"0f", "0e", "04", "03"}},
		{"issued before (exclusive)", store.CertFilter{IssuedBefore: testStart.Add(2 * day)}, []string{"02", "01"}},
		{"issued between", store.CertFilter{IssuedAfter: testStart.Add(day), IssuedBefore: testStart.Add(3 * day)}, []string{"03", "02"}},
		{"expiring before (exclusive)", store.CertFilter{ExpiringBefore: now.Add(day)}, []string{"0f", "04", "02"}},
		{"valid and expiring soon", store.CertFilter{Status: "valid", Now: now, ExpiringBefore: now.Add(30 * day)}, []string{"03"}},
		{"profile and name", store.CertFilter{Profile: "server", Name: "www."}, []string{"0f", "01"}},
		{"requester and issued after", store.CertFilter{Requester: "acme:1", IssuedAfter: testStart.Add(time.Nanosecond)}, []string{"0e"}},
		{"limit", store.CertFilter{Limit: 2}, []string{"0f", "0e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, next, err := s.Certificates(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(serials(got), tt.want) {
				t.Errorf("Certificates(%+v) = %v, want %v", tt.f, serials(got), tt.want)
			}
			if wantMore := tt.f.Limit > 0 && len(tt.want) == tt.f.Limit; !next.IsZero() != wantMore {
				t.Errorf("next cursor = %+v, want more pages: %v", next, wantMore)
			}
		})
	}

	t.Run("record fields", func(t *testing.T) {
		t.Parallel()
		got, _, err := s.Certificates(ctx, store.CertFilter{Serial: "0e"})
		if err != nil || len(got) != 1 {
			t.Fatalf("Certificates = %v, %v", serials(got), err)
		}
		c := got[0]
		if !c.RevokedAt.Equal(now.Add(-day)) || c.RevokeReason != 1 || !slices.Equal(c.SANs, []string{"mail.example.net"}) {
			t.Errorf("record = %+v", c)
		}
	})
	t.Run("unknown status", func(t *testing.T) {
		t.Parallel()
		if _, _, err := s.Certificates(ctx, store.CertFilter{Status: "suspended", Now: now}); err == nil {
			t.Error("unknown status accepted")
		}
	})
}

func testCertificatesPagination(t *testing.T, open Opener) {
	t.Parallel()
	const total = 250
	insert := func(t *testing.T, s store.Store, from, n int) {
		t.Helper()
		mustTx(t, s, func(tx store.Tx) error {
			for i := from; i < from+n; i++ {
				c := testCert("int", fmt.Sprintf("%x", i+1))
				if i%3 == 0 {
					c.Profile = "client"
				}
				if err := tx.InsertCertificate(&c); err != nil {
					return err
				}
			}
			return nil
		})
	}
	setup := func(t *testing.T) store.Store {
		s := openTest(t, open)
		seedIssuers(t, s, "int")
		insert(t, s, 0, total)
		return s
	}
	wantSerials := func(from, to int, keep func(int) bool) []string {
		var out []string
		for i := to - 1; i >= from; i-- {
			if keep == nil || keep(i) {
				out = append(out, fmt.Sprintf("%x", i+1))
			}
		}
		return out
	}

	tests := []struct {
		name  string
		limit int
		pages int
	}{
		{"limit 100", 100, 3},
		{"limit divides total", 125, 2},
		{"limit 1", 1, total},
		{"limit above total", 1000, 1},
		{"default limit", 0, 3}, // 100
		{"limit above maximum", 5000, 3},
	}
	s := setup(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pages := 1
			all := pageAll(t, s, store.CertFilter{Limit: tt.limit}, func() { pages++ })
			if pages != tt.pages {
				t.Errorf("%d pages, want %d", pages, tt.pages)
			}
			checkDescending(t, all)
			if got, want := serials(all), wantSerials(0, total, nil); !slices.Equal(got, want) {
				t.Errorf("paged %d records, want all %d in descending order", len(got), len(want))
			}
		})
	}
	t.Run("with filter", func(t *testing.T) {
		t.Parallel()
		all := pageAll(t, s, store.CertFilter{Profile: "client", Limit: 10}, nil)
		checkDescending(t, all)
		want := wantSerials(0, total, func(i int) bool { return i%3 == 0 })
		if got := serials(all); !slices.Equal(got, want) {
			t.Errorf("paged %v, want %v", got, want)
		}
	})
	t.Run("inserts between pages", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		added := 0
		all := pageAll(t, s, store.CertFilter{Limit: 100}, func() {
			insert(t, s, total+added, 40)
			added += 40
		})
		if added == 0 {
			t.Fatal("no page boundary")
		}
		checkDescending(t, all)
		if got, want := serials(all), wantSerials(0, total, nil); !slices.Equal(got, want) {
			t.Errorf("paged %d records, want the %d present when paging began and no later ones", len(got), len(want))
		}
		fresh := pageAll(t, s, store.CertFilter{Limit: 100}, nil)
		if got, want := serials(fresh), wantSerials(0, total+added, nil); !slices.Equal(got, want) {
			t.Errorf("a new listing has %d records, want %d", len(got), len(want))
		}
	})
}

// allSorts is every certificate order.
var allSorts = []store.CertSort{store.SortIssuedDesc, store.SortIssuedAsc, store.SortExpiryAsc, store.SortExpiryDesc}

// testHistoryACMEAccount checks that the account filter follows the
// orders, whichever of order and certificate is written first, and that
// a purged order no longer links its certificate, as a join would say.
func testHistoryACMEAccount(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	ctx := context.Background()
	mustTx(t, s, func(tx store.Tx) error {
		for _, id := range []string{"acct-000", "acct-001"} {
			if err := tx.InsertACMEAccount(store.ACMEAccount{ID: id, KeyThumbprint: "tp-" + id, KeyJWK: []byte("{}"),
				Status: "valid", Requester: "acme:" + id, Created: testStart.Add(-730 * 24 * time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	order := func(id, serial string, expires time.Time) store.ACMEOrder {
		return store.ACMEOrder{ID: id, AccountID: "acct-000", Status: "valid", Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "a.test"}},
			AuthzIDs: []string{}, CertSerial: serial, Expires: expires, Created: testStart, Updated: testStart}
	}
	has := func(want ...string) {
		t.Helper()
		for _, sort := range allSorts {
			got, _, err := s.Certificates(ctx, store.CertFilter{ACMEAccount: "acct-000", Sort: sort})
			if err != nil {
				t.Fatal(err)
			}
			if gs := serials(got); !slices.Equal(slices.Sorted(slices.Values(gs)), want) {
				t.Fatalf("account's certificates (sort %d) = %v, want %v", sort, gs, want)
			}
		}
	}
	a, b, c := testCert("int", "0a"), testCert("int", "0b"), testCert("int", "0c")
	mustTx(t, s, func(tx store.Tx) error {
		// a: the order first, finalized after; b: the certificate first.
		if err := tx.InsertACMEOrder(order("o-a", "", testStart.Add(time.Hour))); err != nil {
			return err
		}
		if err := tx.InsertCertificate(&a); err != nil {
			return err
		}
		if err := tx.InsertCertificate(&b); err != nil {
			return err
		}
		return tx.InsertACMEOrder(order("o-b", "0b", testStart.Add(time.Hour)))
	})
	has("0b")
	mustTx(t, s, func(tx store.Tx) error {
		return tx.TransitionACMEOrder(order("o-a", "0a", time.Time{}), order("o-a", "", testStart.Add(time.Hour)))
	})
	has("0a", "0b")
	// c: two orders name it; purging one keeps it.
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertACMEOrder(order("o-c1", "0c", testStart.Add(time.Hour))); err != nil {
			return err
		}
		if err := tx.InsertACMEOrder(order("o-c2", "0c", testStart.Add(3*time.Hour))); err != nil {
			return err
		}
		return tx.InsertCertificate(&c)
	})
	has("0a", "0b", "0c")
	mustTx(t, s, func(tx store.Tx) error {
		// Tidy purges the order of a certificate only once it is archived.
		if _, err := tx.ArchiveCertificates(testStart.Add(91*24*time.Hour), testStart.Add(91*24*time.Hour), 100); err != nil {
			return err
		}
		_, err := tx.PurgeExpired(store.ExpiredACMEOrders, testStart.Add(2*time.Hour), 100)
		return err
	})
	has("0c")
}
