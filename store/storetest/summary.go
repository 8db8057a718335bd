package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// testHistorySummary checks the counts auditors read: CertificateSummary
// by every grouping, largest group first (days oldest first), with the
// total, under a filter too; and ScanCertificates, which streams every
// match in sort order whatever the page limit.
func testHistorySummary(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	day := 24 * time.Hour
	now := testStart.Add(3 * day)
	type cert struct {
		issuer, serial, profile, requester, channel string
		created, notAfter                           time.Time
	}
	// Group sizes differ everywhere, so that every order is total.
	certs := []cert{
		{"int-a", "01", "server", "r1", "acme", testStart, now.Add(90 * day)},
		{"int-a", "02", "server", "r1", "acme", testStart.Add(day), now.Add(90 * day)},
		{"int-a", "03", "server", "r1", "api", testStart.Add(day), now.Add(90 * day)},
		{"int-b", "04", "client", "r2", "api", testStart.Add(2 * day), now.Add(-time.Hour)},
		{"int-b", "05", "client", "r1", "acme", testStart.Add(2 * day), now.Add(-day)},
		{"int-a", "06", "code", "r2", "managed", testStart.Add(2 * day), now.Add(90 * day)},
	}
	mustTx(t, s, func(tx store.Tx) error {
		for _, c := range certs {
			r := testCert(c.issuer, c.serial)
			r.Profile, r.Requester, r.Channel, r.Created, r.NotAfter = c.profile, c.requester, c.channel, c.created, c.notAfter
			if err := tx.InsertCertificate(&r); err != nil {
				return err
			}
		}
		return tx.RevokeCertificate("int-a", "06", now.Add(-time.Hour), 1, time.Time{})
	})
	date := func(d int) string { return testStart.Add(time.Duration(d) * day).UTC().Format("2006-01-02") }
	tests := []struct {
		by        store.CertGroup
		f         store.CertFilter
		want      []store.SummaryRow
		wantTotal int64
	}{
		{store.GroupProfile, store.CertFilter{}, []store.SummaryRow{{Key: "server", Count: 3}, {Key: "client", Count: 2}, {Key: "code", Count: 1}}, 6},
		{store.GroupRequester, store.CertFilter{}, []store.SummaryRow{{Key: "r1", Count: 4}, {Key: "r2", Count: 2}}, 6},
		{store.GroupIssuer, store.CertFilter{}, []store.SummaryRow{{Key: "int-a", Count: 4}, {Key: "int-b", Count: 2}}, 6},
		{store.GroupChannel, store.CertFilter{}, []store.SummaryRow{{Key: "acme", Count: 3}, {Key: "api", Count: 2}, {Key: "managed", Count: 1}}, 6},
		{store.GroupDay, store.CertFilter{}, []store.SummaryRow{{Key: date(0), Count: 1}, {Key: date(1), Count: 2}, {Key: date(2), Count: 3}}, 6},
		{store.GroupStatus, store.CertFilter{Now: now}, []store.SummaryRow{{Key: "valid", Count: 3}, {Key: "expired", Count: 2}, {Key: "revoked", Count: 1}}, 6},
		{store.GroupChannel, store.CertFilter{Profile: "server"}, []store.SummaryRow{{Key: "acme", Count: 2}, {Key: "api", Count: 1}}, 3},
		{store.GroupProfile, store.CertFilter{Requester: "nobody"}, nil, 0},
	}
	for _, tt := range tests {
		rows, total, err := s.CertificateSummary(ctx, tt.f, tt.by)
		if err != nil {
			t.Fatalf("CertificateSummary(%+v, %s): %v", tt.f, tt.by, err)
		}
		if len(rows) == 0 {
			rows = nil
		}
		if !reflect.DeepEqual(rows, tt.want) || total != tt.wantTotal {
			t.Errorf("CertificateSummary(%+v, %s) = %v, %d; want %v, %d", tt.f, tt.by, rows, total, tt.want, tt.wantTotal)
		}
	}

	var got []string
	f := store.CertFilter{IssuerID: "int-a", Sort: store.SortIssuedAsc, Limit: 1}
	if err := s.ScanCertificates(ctx, f, func(c store.CertRecord) error {
		got = append(got, c.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"01", "02", "03", "06"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ScanCertificates(int-a, issued asc, limit 1) = %v, want %v", got, want)
	}
}
