package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// undoHistoryMigration takes s back to schema 12: it reverses
// migrations/0013_history.sql and forgets it was applied.
func undoHistoryMigration(t testing.TB, s *SQLite) {
	t.Helper()
	undoRollupMigration(t, s)
	for _, q := range []string{
		"DROP TABLE certificate_names", "DROP TABLE certificate_search",
		"DROP INDEX certificates_created", "CREATE INDEX certificates_created ON certificates (created)",
		"DROP INDEX certificates_not_after", "CREATE INDEX certificates_not_after ON certificates (not_after)",
		"DROP INDEX certificates_profile", "CREATE INDEX certificates_profile ON certificates (profile, id)",
		"DROP INDEX certificates_requester", "CREATE INDEX certificates_requester ON certificates (requester, id)",
		"DROP INDEX certificates_profile_expiry", "DROP INDEX certificates_requester_expiry",
		"DROP INDEX certificates_channel", "DROP INDEX certificates_key_algorithm", "DROP INDEX certificates_issuer",
		"DROP INDEX certificates_revoked_created", "DROP INDEX certificates_revoked_expiry",
		"DROP TRIGGER certificate_accounts_cert", "DROP TRIGGER certificate_accounts_order",
		"DROP TRIGGER certificate_accounts_order_serial", "DROP TRIGGER certificate_accounts_order_gone",
		"DROP TABLE certificate_accounts", "DROP INDEX acme_orders_cert", "DROP INDEX certificates_lifetime",
		"ALTER TABLE certificates DROP COLUMN names",
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
	drives := []int64{driveLimit, -1}
	if testing.Short() {
		drives = drives[:1] // the quick loop; make test also runs the per-row pass
	}
	for _, drive := range drives {
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

// TestHistorySummary checks every grouping, with and without filters,
// against brute-force counts.
func TestHistorySummary(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 2000, 2, historyNow)
	ctx := context.Background()
	filters := historyFilters(h)
	for _, name := range []string{"none", "issued last 30 days", "profile valid", "suffix common", "name common",
		"acme account common", "revoked between", "exact", "channel key issuer"} {
		f := filters[name]
		f.Now = historyNow
		for by := range summaryKeys {
			want, total := wantSummary(h, f, by)
			got, gotTotal, err := s.CertificateSummary(ctx, f, by)
			if err != nil {
				t.Fatalf("%s by %s: %v", name, by, err)
			}
			if gotTotal != total || !slices.Equal(got, want) {
				t.Errorf("%s by %s: %v (total %d), want %v (total %d)", name, by, got, gotTotal, want, total)
			}
		}
	}
}

// TestHistoryPagingWhileIssuing pages through every sort in small pages
// while another goroutine keeps recording certificates, some issued before
// and some after the rows already read: every row that existed at the
// start appears exactly once, and pages follow the sort order.
func TestHistoryPagingWhileIssuing(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 800, 3, historyNow)
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		g := newHistoryGen(4, historyNow, 1, 30, 12) // same accounts, other serials
		for range 300 {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := s.WithTx(ctx, func(tx Tx) error {
				for range 5 {
					c, account := g.cert()
					if err := g.insert(tx, &c, account); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// Besides the goroutine, rows land between every two pages for sure.
	between := newHistoryGen(6, historyNow, 1, 30, 12)
	filters := historyFilters(h)
	names := []string{"none", "profile common", "valid", "suffix common", "name common", "acme account common"}
	if testing.Short() {
		names = []string{"none", "valid", "acme account common"} // the quick loop; make test pages all six
	}
	for _, name := range names {
		for _, sort := range allSorts {
			f := filters[name]
			f.Sort, f.Limit = sort, 25
			want := h.want(f)
			seen := map[int64]bool{}
			var prev *CertRecord
			for page := 0; ; page++ {
				got, next, err := s.Certificates(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range got {
					if seen[c.ID] {
						t.Fatalf("%s, sort %d: certificate %d twice", name, sort, c.ID)
					}
					seen[c.ID] = true
					if prev != nil && compareIn(sort, *prev, c) >= 0 {
						t.Fatalf("%s, sort %d: %d after %d out of order", name, sort, c.ID, prev.ID)
					}
					prev = &c
				}
				if next.IsZero() {
					break
				}
				f.After = next
				mustTx(t, s, func(tx Tx) error {
					for range 2 {
						c, account := between.cert()
						if err := between.insert(tx, &c, account); err != nil {
							return err
						}
					}
					return nil
				})
			}
			for _, c := range want {
				if !seen[c.ID] {
					t.Fatalf("%s, sort %d: certificate %d (of %d at the start) missing", name, sort, c.ID, len(want))
				}
			}
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHistoryRollback checks that a refused insert leaves no name or
// search rows, and that a committed one is found at once.
func TestHistoryRollback(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	ctx := context.Background()
	sideRows := func() (n int64) {
		for _, q := range []string{"SELECT count(*) FROM certificate_names", "SELECT count(*) FROM certificate_search_docsize",
			"SELECT count(*) FROM certificate_search WHERE names LIKE '%rollback%'"} {
			var k int64
			if err := s.read.QueryRowContext(ctx, q).Scan(&k); err != nil {
				t.Fatal(err)
			}
			n += k
		}
		return n
	}
	c := testCert("int", "0a")
	c.SANs = []string{"rollback.example.com", "Other.Example.com"}
	c.Subject = "CN=Rollback.example.com"
	refused := errors.New("refused")
	if err := s.WithTx(ctx, func(tx Tx) error {
		if err := tx.InsertCertificate(&c); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("WithTx = %v, want %v", err, refused)
	}
	if n := sideRows(); n != 0 {
		t.Fatalf("%d name or search rows after a rolled-back insert", n)
	}
	for _, f := range []CertFilter{{Name: "rollback"}, {NameExact: "rollback.example.com"}, {NameSuffix: ".example.com"}} {
		if got, _, err := s.Certificates(ctx, f); err != nil || len(got) != 0 {
			t.Fatalf("Certificates(%+v) = %d rows, %v after rollback", f, len(got), err)
		}
	}
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&c) })
	for _, f := range []CertFilter{{Name: "ROLLBACK"}, {NameExact: "other.example.COM"}, {NameSuffix: "LLBACK.example.com"}, {Name: "k.e"}} {
		if got, _, err := s.Certificates(ctx, f); err != nil || len(got) != 1 {
			t.Errorf("Certificates(%+v) = %d rows, %v, want the committed one", f, len(got), err)
		}
	}
}

// TestHistoryBackfill checks that a database from before migration 0013
// gets its name indexes when it opens, and answers as a new one.
func TestHistoryBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 600, 5, historyNow)
	undoHistoryMigration(t, s)
	dbPath := dbFile(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, Config{Path: dbPath})
	for name, f := range historyFilters(h) {
		f.Limit = 1000
		got, _, err := s2.Certificates(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := h.want(f); !slices.Equal(ids(got), ids(want)) {
			t.Errorf("%s after backfill: %d rows, want %d", name, len(got), len(want))
		}
	}
}

func TestCommonName(t *testing.T) {
	for dn, want := range map[string]string{
		"CN=foo":                          "foo",
		"CN=foo,O=bar":                    "foo",
		"SERIALNUMBER=1,CN=a\\,b\\+c,O=x": "a,b+c",
		`CN=back\slash`:                   `back\slash`,
		`CN=esc\\aped`:                    `esc\aped`,
		"O=only":                          "",
		"cn=Lower+OU=x":                   "Lower",
	} {
		if got := commonName(dn); got != want {
			t.Errorf("commonName(%q) = %q, want %q", dn, got, want)
		}
	}
}
