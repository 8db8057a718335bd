package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// revoke marks a certificate revoked, as the CA does.
func revoke(t testing.TB, s *SQLite, issuer, serial string, at time.Time, reason int) {
	t.Helper()
	mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate(issuer, serial, at, reason, time.Time{}) })
}

// serials lists the certificates' serials in the order given.
func serials(certs []CertRecord) []string {
	out := []string{}
	for _, c := range certs {
		out = append(out, c.Serial)
	}
	return out
}

func TestCertificatesFilter(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
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
	mustTx(t, s, func(tx Tx) error {
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
		f    CertFilter
		want []string
	}{
		{"all", CertFilter{}, []string{"0f", "0e", "04", "03", "02", "01"}},
		{"serial", CertFilter{Serial: "03"}, []string{"03"}},
		{"serial upper case", CertFilter{Serial: "0E"}, []string{"0e"}},
		{"serial unknown", CertFilter{Serial: "ff"}, []string{}},
		{"name in SAN and subject", CertFilter{Name: "example.com"}, []string{"0f", "01"}},
		{"name in SAN only", CertFilter{Name: "mail.example"}, []string{"0e"}},
		{"name in subject only", CertFilter{Name: "500 off"}, []string{"04"}},
		{"name ignores case", CertFilter{Name: "API.Example.ORG"}, []string{"02"}},
		{"name percent is literal", CertFilter{Name: "50%"}, []string{"03"}},
		{"name lone percent", CertFilter{Name: "%"}, []string{"03"}},
		{"name underscore is literal", CertFilter{Name: "under_score"}, []string{"03"}},
		{"name lone underscore", CertFilter{Name: "_"}, []string{"03"}},
		{"name backslash is literal", CertFilter{Name: `\`}, []string{"0e"}},
		{"name no match", CertFilter{Name: "nomatch"}, []string{}},
		{"profile", CertFilter{Profile: "client"}, []string{"04", "03"}},
		{"requester", CertFilter{Requester: "acme:1"}, []string{"0e", "01"}},
		{"issuer", CertFilter{IssuerID: "int-b"}, []string{"0f"}},
		{"valid", CertFilter{Status: "valid", Now: now}, []string{"03", "01"}},
		{"expired", CertFilter{Status: "expired", Now: now}, []string{"04", "02"}},
		{"revoked", CertFilter{Status: "revoked", Now: now}, []string{"0f", "0e"}},
		{"valid at an earlier now", CertFilter{Status: "valid", Now: testStart}, []string{"04", "03", "02", "01"}},
		{"expired at an earlier now", CertFilter{Status: "expired", Now: testStart}, []string{}},
		{"issued after (inclusive)", CertFilter{IssuedAfter: testStart.Add(2 * day)}, []string{"0f", "0e", "04", "03"}},
		{"issued before (exclusive)", CertFilter{IssuedBefore: testStart.Add(2 * day)}, []string{"02", "01"}},
		{"issued between", CertFilter{IssuedAfter: testStart.Add(day), IssuedBefore: testStart.Add(3 * day)}, []string{"03", "02"}},
		{"expiring before (exclusive)", CertFilter{ExpiringBefore: now.Add(day)}, []string{"0f", "04", "02"}},
		{"valid and expiring soon", CertFilter{Status: "valid", Now: now, ExpiringBefore: now.Add(30 * day)}, []string{"03"}},
		{"profile and name", CertFilter{Profile: "server", Name: "www."}, []string{"0f", "01"}},
		{"requester and issued after", CertFilter{Requester: "acme:1", IssuedAfter: testStart.Add(time.Nanosecond)}, []string{"0e"}},
		{"limit", CertFilter{Limit: 2}, []string{"0f", "0e"}},
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
		got, _, err := s.Certificates(ctx, CertFilter{Serial: "0e"})
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
		if _, _, err := s.Certificates(ctx, CertFilter{Status: "suspended", Now: now}); err == nil {
			t.Error("unknown status accepted")
		}
	})
}

// pageAll follows cursors from f until the last page, calling between after
// each page but the last, and returns everything in order.
func pageAll(t *testing.T, s *SQLite, f CertFilter, between func()) []CertRecord {
	t.Helper()
	var all []CertRecord
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
func checkDescending(t *testing.T, certs []CertRecord) {
	t.Helper()
	for i := 1; i < len(certs); i++ {
		if certs[i].ID >= certs[i-1].ID {
			t.Fatalf("record %d: id %d after %d, want strictly descending", i, certs[i].ID, certs[i-1].ID)
		}
	}
}

func TestCertificatesPagination(t *testing.T) {
	t.Parallel()
	const total = 250
	insert := func(t *testing.T, s *SQLite, from, n int) {
		t.Helper()
		mustTx(t, s, func(tx Tx) error {
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
	setup := func(t *testing.T) *SQLite {
		s := openTest(t, Config{})
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
			all := pageAll(t, s, CertFilter{Limit: tt.limit}, func() { pages++ })
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
		all := pageAll(t, s, CertFilter{Profile: "client", Limit: 10}, nil)
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
		all := pageAll(t, s, CertFilter{Limit: 100}, func() {
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
		fresh := pageAll(t, s, CertFilter{Limit: 100}, nil)
		if got, want := serials(fresh), wantSerials(0, total+added, nil); !slices.Equal(got, want) {
			t.Errorf("a new listing has %d records, want %d", len(got), len(want))
		}
	})
}

func TestAuditEventsFilter(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	type ev struct{ actor, action, target string }
	// Event i+1 happens at testStart + i minutes.
	input := []ev{
		{"system", "ca.initialized", "root"},           // 1
		{"acme:1", "cert.issued", "01"},                // 2
		{"acme:1", "cert.issued", "02"},                // 3
		{"token:ops", "cert.revoked", "01"},            // 4
		{"acme:1", "certificate.issued", "03"},         // 5: not under "cert."
		{"system", "key.generated", "key-1"},           // 6
		{"token:ops", "request.refused", ""},           // 7
		{"acme:2", "cert.issued", "04"},                // 8
		{"cli", "cert_x.issued", "05"},                 // 9
		{"cli", "certYx.issued", "06"},                 // 10: "cert_x." must not match it
		{"system", "cert.", "07"},                      // 11: the prefix itself
		{"acme:1", "cert.issued.retried", "02"},        // 12
		{"system", "kek.rotated", "kek-2"},             // 13
		{"token:ops", "cert.revoked", "02"},            // 14
		{"acme:1", "cert.issued", "08"},                // 15
		{"system", "config.loaded", "/etc/sigil.yaml"}, // 16
	}
	mustTx(t, s, func(tx Tx) error {
		for i, e := range input {
			if _, err := tx.AppendAudit(audit.Event{Time: testStart.Add(time.Duration(i) * time.Minute),
				Actor: e.actor, Action: e.action, Target: e.target}); err != nil {
				return err
			}
		}
		return nil
	})
	at := func(seq int) time.Time { return testStart.Add(time.Duration(seq-1) * time.Minute) }

	tests := []struct {
		name string
		f    AuditFilter
		want []int64
	}{
		{"all", AuditFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"action exact", AuditFilter{Action: "cert.issued"}, []int64{2, 3, 8, 15}},
		{"action exact has no prefix match", AuditFilter{Action: "cert"}, []int64{}},
		{"action prefix", AuditFilter{Action: "cert."}, []int64{2, 3, 4, 8, 11, 12, 14, 15}},
		{"action deeper prefix", AuditFilter{Action: "cert.issued."}, []int64{12}},
		{"action prefix underscore is literal", AuditFilter{Action: "cert_x."}, []int64{9}},
		{"action prefix unknown", AuditFilter{Action: "nope."}, []int64{}},
		{"actor", AuditFilter{Actor: "token:ops"}, []int64{4, 7, 14}},
		{"target", AuditFilter{Target: "02"}, []int64{3, 12, 14}},
		{"actor and action prefix", AuditFilter{Actor: "acme:1", Action: "cert."}, []int64{2, 3, 12, 15}},
		{"after (inclusive)", AuditFilter{After: at(14)}, []int64{14, 15, 16}},
		{"before (exclusive)", AuditFilter{Before: at(3)}, []int64{1, 2}},
		{"time range", AuditFilter{After: at(4), Before: at(7)}, []int64{4, 5, 6}},
		{"time range and action", AuditFilter{After: at(3), Before: at(15), Action: "cert.issued"}, []int64{3, 8}},
		{"cursor", AuditFilter{Cursor: 13}, []int64{14, 15, 16}},
		{"cursor and action", AuditFilter{Cursor: 3, Action: "cert.issued"}, []int64{8, 15}},
		{"cursor at end", AuditFilter{Cursor: 16}, []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, next, err := s.AuditEvents(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{}
			for _, e := range events {
				got = append(got, e.Seq)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("AuditEvents(%+v) = %v, want %v", tt.f, got, tt.want)
			}
			if next != 0 {
				t.Errorf("next = %d, want 0 (one page)", next)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			f    AuditFilter
			want []int64
		}{
			{AuditFilter{Limit: 5}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
			{AuditFilter{Limit: 4}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
			{AuditFilter{Limit: 3, Action: "cert."}, []int64{2, 3, 4, 8, 11, 12, 14, 15}},
			{AuditFilter{Limit: 1, Actor: "token:ops", After: at(5)}, []int64{7, 14}},
		}
		for _, tt := range tests {
			f := tt.f
			var got []int64
			for range 100 {
				events, next, err := s.AuditEvents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) > f.Limit {
					t.Errorf("page of %d events, limit %d", len(events), f.Limit)
				}
				for _, e := range events {
					got = append(got, e.Seq)
				}
				if next == 0 {
					break
				}
				if next != events[len(events)-1].Seq {
					t.Errorf("next = %d, want the last seq on the page, %d", next, events[len(events)-1].Seq)
				}
				f.Cursor = next
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("paging %+v: %v, want %v", tt.f, got, tt.want)
			}
		}
	})
}
