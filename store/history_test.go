package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// undoHistoryMigration takes s back to schema 12: it reverses
// migrations/0013_history.sql and forgets it was applied.
func undoHistoryMigration(t testing.TB, s *SQLite) {
	t.Helper()
	for _, q := range []string{
		"DROP TABLE certificate_names", "DROP TABLE certificate_search",
		"DROP INDEX certificates_created", "CREATE INDEX certificates_created ON certificates (created)",
		"DROP INDEX certificates_not_after", "CREATE INDEX certificates_not_after ON certificates (not_after)",
		"DROP INDEX certificates_profile", "CREATE INDEX certificates_profile ON certificates (profile, id)",
		"DROP INDEX certificates_requester", "CREATE INDEX certificates_requester ON certificates (requester, id)",
		"DROP INDEX certificates_profile_expiry", "DROP INDEX certificates_requester_expiry",
		"DROP INDEX certificates_channel", "DROP INDEX certificates_key_algorithm", "DROP INDEX certificates_issuer",
		"DROP INDEX certificates_revoked_at", "DROP INDEX certificates_revoked_created", "DROP INDEX certificates_revoked_expiry",
		"DROP INDEX acme_orders_cert", "ALTER TABLE certificates DROP COLUMN names",
		"DELETE FROM schema_migrations WHERE version = 13",
	} {
		if _, err := s.write.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// historyNow is the reference time of generated histories.
var historyNow = testStart.Add(800 * 24 * time.Hour)

var allSorts = []CertSort{SortIssuedDesc, SortIssuedAsc, SortExpiryAsc, SortExpiryDesc}

// countBy counts h's records by key, most first.
func countBy(h *history, key func(CertRecord) string) map[string]int {
	m := map[string]int{}
	for _, c := range h.certs {
		m[key(c)]++
	}
	return m
}

// rarest and commonest return the keys with the fewest and most records.
func rarest(m map[string]int) string {
	best := ""
	for k, n := range m {
		if best == "" || n < m[best] || n == m[best] && k < best {
			best = k
		}
	}
	return best
}

func commonest(m map[string]int) string {
	best := ""
	for k, n := range m {
		if best == "" || n > m[best] || n == m[best] && k < best {
			best = k
		}
	}
	return best
}

// historyFilters returns filters that exercise every CertFilter field,
// with rare and common values, and some combinations, against h.
func historyFilters(h *history) map[string]CertFilter {
	now := historyNow
	day := 24 * time.Hour
	reqs := countBy(h, func(c CertRecord) string { return c.Requester })
	accts := map[string]int{}
	for _, a := range h.account {
		accts[a]++
	}
	some := h.certs[len(h.certs)/3]
	exact := some.SANs[len(some.SANs)-1]
	meta := ""
	for _, c := range h.certs {
		if i := slices.IndexFunc(c.SANs, func(n string) bool { return strings.Contains(n, "%") }); i >= 0 {
			meta = c.SANs[i]
			break
		}
	}
	return map[string]CertFilter{
		"none":                 {},
		"serial":               {Serial: strings.ToUpper(some.Serial)},
		"serial unknown":       {Serial: "ffff"},
		"name common":          {Name: "web-1"},
		"name rare":            {Name: "rare-zone"},
		"name upper case":      {Name: "RARE-Zone.EXAMPLE"},
		"name short":           {Name: "b-"},
		"name percent":         {Name: "%"},
		"name underscore":      {Name: "_"},
		"name backslash":       {Name: `\`},
		"name metacharacters":  {Name: `0%_off\.`},
		"name like none":       {Name: "web%1"},
		"name none":            {Name: "nomatch.invalid"},
		"name in common name":  {Name: "ops"},
		"exact":                {NameExact: exact},
		"exact upper case":     {NameExact: strings.ToUpper(exact)},
		"exact metacharacters": {NameExact: meta},
		"exact none":           {NameExact: "example.com"}, // only a suffix
		"exact common name":    {NameExact: strings.ToLower(commonName(h.certs[0].Subject))},
		"suffix common":        {NameSuffix: ".corp.internal"},
		"suffix rare":          {NameSuffix: ".rare-zone.example"},
		"suffix upper case":    {NameSuffix: "RARE-ZONE.example"},
		"suffix metachars":     {NameSuffix: `_off\.test`},
		"suffix partial label": {NameSuffix: "ample.org"},
		"profile common":       {Profile: "server"},
		"profile rare":         {Profile: "legacy"},
		"requester common":     {Requester: commonest(reqs)},
		"requester rare":       {Requester: rarest(reqs)},
		"issuer":               {IssuerID: "int-b"},
		"issuer key":           {IssuerKeyID: "key-int-b"},
		"channel":              {Channel: "renew"},
		"channel acme":         {Channel: "acme"},
		"acme account common":  {ACMEAccount: commonest(accts)},
		"acme account rare":    {ACMEAccount: rarest(accts)},
		"key algorithm rare":   {KeyAlgorithm: "RSA-4096"},
		"key algorithm":        {KeyAlgorithm: "ECDSA-P256"},
		"valid":                {Status: "valid", Now: now},
		"expired":              {Status: "expired", Now: now},
		"revoked":              {Status: "revoked", Now: now},
		"issued last 30 days":  {IssuedAfter: now.Add(-30 * day)},
		"issued between":       {IssuedAfter: now.Add(-400 * day), IssuedBefore: now.Add(-300 * day)},
		"expiring this week":   {ExpiringAfter: now, ExpiringBefore: now.Add(7 * day)},
		"expiring before":      {ExpiringBefore: now.Add(-600 * day)},
		"revoked between":      {RevokedAfter: now.Add(-200 * day), RevokedBefore: now.Add(-100 * day)},
		"revoked after":        {RevokedAfter: now.Add(-30 * day)},
		"profile valid":        {Profile: "mtls", Status: "valid", Now: now},
		"requester suffix":     {Requester: commonest(reqs), NameSuffix: ".example.com"},
		"account and name":     {ACMEAccount: commonest(accts), Name: "web"},
		"exact and suffix":     {NameExact: exact, NameSuffix: exact[len(exact)/2:]},
		"name and expired":     {Name: "api-", Status: "expired", Now: now, IssuedAfter: now.Add(-90 * day)},
		"channel key issuer":   {Channel: "api", KeyAlgorithm: "RSA-2048", IssuerID: "int-a", Status: "valid", Now: now},
	}
}

func ids(certs []CertRecord) []int64 {
	out := make([]int64, len(certs))
	for i, c := range certs {
		out[i] = c.ID
	}
	return out
}

// TestHistoryQueries checks every filter, alone and combined, in every
// sort, against a brute-force filter over the generated records: the first
// page, its cursor, and the whole result paged by ScanCertificates. It runs
// twice: with the default candidate limit, and with candidate sets never
// driving (each name and account filter tested per row).
func TestHistoryQueries(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 3000, 1, historyNow)
	ctx := context.Background()
	filters := historyFilters(h)
	for _, drive := range []int64{driveLimit, -1} {
		s.drive = drive
		for name, f := range filters {
			for _, sort := range allSorts {
				f := f
				f.Sort, f.Limit = sort, 40
				want := h.want(f)
				got, next, err := s.Certificates(ctx, f)
				if err != nil {
					t.Fatalf("%s, sort %d: %v", name, sort, err)
				}
				if first := want[:min(len(want), 40)]; !slices.Equal(ids(got), ids(first)) {
					t.Errorf("drive %d, %s, sort %d: first page %v, want %v", drive, name, sort, ids(got), ids(first))
					continue
				}
				if (len(want) > 40) != !next.IsZero() || len(want) > 40 && next != sort.CursorOf(want[39]) {
					t.Errorf("drive %d, %s, sort %d: next cursor %+v with %d matches", drive, name, sort, next, len(want))
				}
				var all []CertRecord
				if err := s.ScanCertificates(ctx, f, func(c CertRecord) error {
					all = append(all, c)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(all), ids(want)) {
					t.Errorf("drive %d, %s, sort %d: ScanCertificates gave %d rows, want %d", drive, name, sort, len(all), len(want))
				}
			}
			if drive == driveLimit && len(h.want(f)) == 0 && !strings.Contains(name, "unknown") && !strings.Contains(name, "none") {
				t.Errorf("%s selects nothing: the test shows little", name)
			}
		}
	}
}
