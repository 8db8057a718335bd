package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// undoCAACheckedMigration takes s back to schema 14: the migrator applies
// what is above the highest recorded version, so undoing an older one
// undoes the newer first.
func undoCAACheckedMigration(t testing.TB, s *SQLite) {
	t.Helper()
	undoJobRunsNodeMigration(t, s)
	for _, q := range []string{
		"ALTER TABLE acme_authzs DROP COLUMN caa_checked",
		"DELETE FROM schema_migrations WHERE version = 15",
	} {
		if _, err := s.write.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// undoJobRunsNodeMigration takes s back to schema 15: it reverses
// migrations/0016_job_runs_node.sql.
func undoJobRunsNodeMigration(t testing.TB, s *SQLite) {
	t.Helper()
	for _, q := range []string{
		"ALTER TABLE job_runs DROP COLUMN node",
		"DELETE FROM schema_migrations WHERE version = 16",
	} {
		if _, err := s.write.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// undoRollupMigration takes s back to schema 13: it reverses
// migrations/0014_history_rollup.sql and forgets it was applied.
func undoRollupMigration(t testing.TB, s *SQLite) {
	t.Helper()
	undoCAACheckedMigration(t, s)
	for _, q := range []string{
		"DROP TRIGGER certificate_rollup_insert", "DROP TRIGGER certificate_rollup_delete",
		"DROP TRIGGER certificate_rollup_update",
		"DROP TABLE certificate_days", "DROP TABLE certificate_requester_spans",
		"DELETE FROM schema_migrations WHERE version = 14",
	} {
		if _, err := s.write.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rollupRows dumps both rollup tables, and the same counts recomputed from
// certificates; a kept rollup has the two equal.
func rollupRows(t testing.TB, s *SQLite) (kept, recount string) {
	t.Helper()
	dump := func(q string) string {
		rows, err := s.write.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var a, c, d, e, n any
			if err := rows.Scan(&a, &c, &d, &e, &n); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, a, c, d, e, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	const day = "created / 86400000000000 - (created < 0 AND created % 86400000000000 != 0)"
	const span = "created / 2764800000000000 - (created < 0 AND created % 2764800000000000 != 0)"
	kept = dump("SELECT day, profile, channel, issuer_id, n FROM certificate_days ORDER BY 1, 2, 3, 4") +
		dump("SELECT span, requester, '', '', n FROM certificate_requester_spans ORDER BY 1, 2")
	recount = dump("SELECT "+day+" AS d, profile, channel, issuer_id, count(*) FROM certificates GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4") +
		dump("SELECT "+span+" AS s, requester, '', '', count(*) FROM certificates GROUP BY 1, 2 ORDER BY 1, 2")
	return kept, recount
}

var summaryKeys = map[CertGroup]func(CertRecord) string{
	GroupProfile:   func(c CertRecord) string { return c.Profile },
	GroupRequester: func(c CertRecord) string { return c.Requester },
	GroupIssuer:    func(c CertRecord) string { return c.IssuerID },
	GroupChannel:   func(c CertRecord) string { return c.Channel },
	GroupDay:       func(c CertRecord) string { return c.Created.UTC().Format(time.DateOnly) },
	GroupStatus:    func(c CertRecord) string { return statusAt(c, historyNow) },
}

// statusAt is c's status at now, as the store counts it.
func statusAt(c CertRecord, now time.Time) string {
	switch {
	case !c.RevokedAt.IsZero():
		return "revoked"
	case c.NotAfter.After(now):
		return "valid"
	}
	return "expired"
}

// wantSummary is CertificateSummary's contract, counted by brute force.
func wantSummary(h *history, f CertFilter, by CertGroup) ([]SummaryRow, int64) {
	counts := map[string]int64{}
	var total int64
	for _, c := range h.want(f) {
		counts[summaryKeys[by](c)]++
		total++
	}
	var want []SummaryRow
	for k, n := range counts {
		want = append(want, SummaryRow{Key: k, Count: n})
	}
	slices.SortFunc(want, func(a, b SummaryRow) int {
		if by == GroupDay {
			return strings.Compare(a.Key, b.Key)
		}
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Key, b.Key))
	})
	return want, total
}

// randomSummaryFilter picks a filter of the kinds the rollups answer: an
// issuance range with bounds at midnight, at a 32-day span's start, mid-day,
// beyond the history or none, sometimes empty or reversed, and any subset
// of profile, requester, channel and issuer (sometimes a value no
// certificate has).
func randomSummaryFilter(rng *rand.Rand, h *history) CertFilter {
	day := 24 * time.Hour
	bound := func() time.Time {
		t := historyNow.Add(-time.Duration(rng.Int64N(int64(760 * day))))
		switch rng.IntN(7) {
		case 0:
			return time.Time{}
		case 1:
			return t.UTC().Truncate(day)
		case 2:
			return time.Unix(0, t.UnixNano()/(32*int64(day))*(32*int64(day)))
		case 3:
			return historyNow.Add(time.Duration(rng.IntN(400)) * day) // after the history
		case 4:
			return historyNow.Add(-time.Duration(800+rng.IntN(400)) * day) // before it
		}
		return t
	}
	f := CertFilter{IssuedAfter: bound(), IssuedBefore: bound(), Now: historyNow}
	if rng.IntN(4) == 0 && !f.IssuedAfter.IsZero() {
		f.IssuedBefore = f.IssuedAfter.Add(time.Duration(rng.Int64N(int64(3 * day)))) // short, maybe empty
	}
	c := h.certs[rng.IntN(len(h.certs))]
	if rng.IntN(3) == 0 {
		f.Profile = c.Profile
	}
	if rng.IntN(4) == 0 {
		f.Requester = c.Requester
	}
	if rng.IntN(3) == 0 {
		f.Channel = c.Channel
	}
	if rng.IntN(3) == 0 {
		f.IssuerID = c.IssuerID
	}
	if rng.IntN(15) == 0 {
		f.Profile = "no-such-profile"
	}
	return f
}

// TestHistorySummaryRollup checks summaries answered from the rollups
// against brute-force counts and against the certificate indexes alone,
// for random filters and ranges and every grouping.
func TestHistorySummaryRollup(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 3000, 7, historyNow)
	if kept, recount := rollupRows(t, s); kept != recount {
		t.Fatalf("rollup after filling differs from a recount:\n%s\nwant\n%s", kept, recount)
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	groups := []CertGroup{GroupDay, GroupProfile, GroupRequester, GroupChannel, GroupIssuer, GroupStatus}
	used := map[CertGroup]int{}
	rounds := 300
	if testing.Short() {
		rounds = 60 // the quick loop; make test runs all 300
	}
	for i := range rounds {
		f := randomSummaryFilter(rng, h)
		if i == 0 {
			f = CertFilter{Now: historyNow} // all time
		}
		for _, by := range groups {
			want, wantTotal := wantSummary(h, f, by)
			if _, ok := s.rollupFor(f, by); ok {
				used[by]++
			}
			for _, noRollup := range []bool{false, true} {
				s.noRollup = noRollup
				got, total, err := s.CertificateSummary(ctx, f, by)
				if err != nil {
					t.Fatalf("%+v by %s: %v", f, by, err)
				}
				if total != wantTotal || !slices.Equal(got, want) {
					t.Fatalf("noRollup %v, [%v, %v) %q %q %q %q by %s:\n%v (total %d)\nwant\n%v (total %d)", noRollup,
						f.IssuedAfter, f.IssuedBefore, f.Profile, f.Requester, f.Channel, f.IssuerID, by, got, total, want, wantTotal)
				}
			}
			s.noRollup = false
		}
	}
	for _, by := range groups[:5] {
		if used[by] < rounds/6 {
			t.Errorf("the rollup answered only %d summaries by %s", used[by], by)
		}
	}
}

// TestHistoryRollupRollback checks that a refused insert leaves the rollups
// as they were and a committed one counts at once; and that the triggers
// kept for deletes and updates keep the counts.
func TestHistoryRollupRollback(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	ctx := context.Background()
	mustTx(t, s, func(tx Tx) error {
		c := testCert("int", "01")
		return tx.InsertCertificate(&c)
	})
	before, _ := rollupRows(t, s)
	c := testCert("int", "0a")
	c.Profile, c.Requester = "rollback", "team-rollback"
	refused := errors.New("refused")
	if err := s.WithTx(ctx, func(tx Tx) error {
		if err := tx.InsertCertificate(&c); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("WithTx = %v, want %v", err, refused)
	}
	if after, _ := rollupRows(t, s); after != before {
		t.Fatalf("rollup after a rolled-back insert:\n%s\nwant\n%s", after, before)
	}
	mustTx(t, s, func(tx Tx) error { return tx.InsertCertificate(&c) })
	for _, by := range []CertGroup{GroupProfile, GroupRequester} {
		got, total, err := s.CertificateSummary(ctx, CertFilter{}, by)
		if err != nil || total != 2 || len(got) != 2 {
			t.Errorf("summary by %s after commit: %v, %d, %v; want two groups", by, got, total, err)
		}
	}
	for _, q := range []string{
		"UPDATE certificates SET profile = 'moved', created = created - 86400000000000 WHERE serial = '0a'",
		"UPDATE certificates SET archived = 1", // no counted column: no trigger
		"DELETE FROM certificates WHERE serial = '01'",
	} {
		if _, err := s.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if kept, recount := rollupRows(t, s); kept != recount {
			t.Fatalf("after %s:\n%s\nwant\n%s", q, kept, recount)
		}
	}
}

// TestHistoryRollupBackfill checks that a database from before migration
// 0014 gets its rollups when it opens, and summarizes as a new one.
func TestHistoryRollupBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 1500, 9, historyNow)
	undoRollupMigration(t, s)
	// Recorded at schema 13, with no trigger to count them.
	g := newHistoryGen(10, historyNow, 1, 30, 12)
	mustTx(t, s, func(tx Tx) error {
		for range 200 {
			c, _ := g.cert()
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
			h.certs = append(h.certs, c)
		}
		return nil
	})
	dbPath := dbFile(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, Config{Path: dbPath})
	if kept, recount := rollupRows(t, s2); kept != recount {
		t.Fatalf("backfilled rollup differs from a recount:\n%s\nwant\n%s", kept, recount)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 40 {
		f := randomSummaryFilter(rng, h)
		for _, by := range []CertGroup{GroupDay, GroupProfile, GroupRequester, GroupChannel, GroupIssuer} {
			want, wantTotal := wantSummary(h, f, by)
			got, total, err := s2.CertificateSummary(ctx, f, by)
			if err != nil || total != wantTotal || !slices.Equal(got, want) {
				t.Fatalf("%+v by %s after backfill: %v (total %d, %v), want %v (total %d)", f, by, got, total, err, want, wantTotal)
			}
		}
	}
}

// TestHistoryStatusSummaryAllTime: the status of every certificate, counted
// from the rollup and two small index ranges, equals a brute-force count at
// any reference time, before, inside and after the history.
func TestHistoryStatusSummaryAllTime(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	h := fillHistory(t, s, 2000, 11, historyNow)
	ctx := context.Background()
	for _, now := range []time.Time{historyNow.AddDate(-5, 0, 0), historyNow.AddDate(0, -6, 0), historyNow,
		historyNow.AddDate(1, 0, 0), historyNow.AddDate(5, 0, 0)} {
		want := map[string]int64{}
		for _, c := range h.certs {
			want[statusAt(c, now)]++
		}
		for _, noRollup := range []bool{false, true} {
			s.noRollup = noRollup
			got, total, err := s.CertificateSummary(ctx, CertFilter{Now: now}, GroupStatus)
			if err != nil {
				t.Fatal(err)
			}
			gotMap := map[string]int64{}
			for i, r := range got {
				gotMap[r.Key] = r.Count
				if i > 0 && (got[i-1].Count < r.Count || got[i-1].Count == r.Count && got[i-1].Key > r.Key) {
					t.Errorf("at %v: %v not largest first, then by key", now, got)
				}
			}
			if total != int64(len(h.certs)) || !maps.Equal(gotMap, want) {
				t.Errorf("at %v (noRollup %v): %v total %d, want %v total %d", now, noRollup, got, total, want, len(h.certs))
			}
		}
		s.noRollup = false
	}
}
