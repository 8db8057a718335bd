package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// certQuery is a certificate filter compiled to SQL: FROM and WHERE
// clauses over certificates (as c) and their arguments, and the columns
// that order it. PostgreSQL's planner chooses between walking an order
// index and reading a name's or an account's candidates (semi-joins on
// certificate_names, certificate_accounts or the names trigram index) from
// its statistics, so the query is not forced the way SQLite's is.
type certQuery struct {
	from  string
	where []string
	args  []any
	// The order columns.
	created, notAfter, id string
}

func (q *certQuery) add(cond string, a ...any) {
	q.where = append(q.where, cond)
	q.args = append(q.args, a...)
}

func (q *certQuery) clause() string {
	if len(q.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.where, " AND ")
}

func timeRange(q *certQuery, col string, after, before time.Time) {
	if !after.IsZero() {
		q.add(col+" >= ?", after.UnixNano())
	}
	if !before.IsZero() {
		q.add(col+" < ?", before.UnixNano())
	}
}

const plainFrom = " FROM certificates c"

// compileFilter turns f, all but its cursor, into SQL.
func (s *Store) compileFilter(f store.CertFilter) (*certQuery, error) {
	q := &certQuery{from: plainFrom, created: "c.created", notAfter: "c.not_after", id: "c.id"}
	byExpiry := f.Sort == store.SortExpiryAsc || f.Sort == store.SortExpiryDesc
	if f.Serial != "" {
		q.add("c.serial = ?", strings.ToLower(f.Serial))
	}
	if f.NameExact != "" {
		q.add("c.id IN (SELECT cert_id FROM certificate_names WHERE rname = ?)", store.ReverseName(strings.ToLower(f.NameExact)))
	}
	if f.NameSuffix != "" {
		// A prefix of reversed names: a range of the C-collated key.
		q.add(`c.id IN (SELECT cert_id FROM certificate_names WHERE rname LIKE ? ESCAPE '\')`,
			likeEscape(store.ReverseName(strings.ToLower(f.NameSuffix)))+"%")
	}
	if f.Name != "" {
		// Answered from the pg_trgm index on names when the substring has
		// trigrams, by a scan otherwise; either way exact.
		q.add(`c.names LIKE ? ESCAPE '\'`, "%"+likeEscape(strings.ToLower(f.Name))+"%")
	}
	if f.ACMEAccount != "" {
		q.add("c.id IN (SELECT cert_id FROM certificate_accounts WHERE account_id = ?)", f.ACMEAccount)
	}
	for _, eq := range [...]struct{ col, v string }{{"profile", f.Profile}, {"requester", f.Requester},
		{"issuer_id", f.IssuerID}, {"channel", f.Channel}, {"key_algorithm", f.KeyAlgorithm}} {
		if eq.v != "" {
			q.add("c."+eq.col+" = ?", eq.v)
		}
	}
	if f.IssuerKeyID != "" {
		q.add("c.issuer_id IN (SELECT id FROM issuers WHERE key_id = ?)", f.IssuerKeyID)
	}
	timeRange(q, q.created, f.IssuedAfter, f.IssuedBefore)
	timeRange(q, q.notAfter, f.ExpiringAfter, f.ExpiringBefore)
	if !f.RevokedAfter.IsZero() || !f.RevokedBefore.IsZero() {
		q.add("c.revoked_at != 0")
		timeRange(q, "c.revoked_at", f.RevokedAfter, f.RevokedBefore)
	}
	// In issuance order, valid and expired also bound the issuance time by
	// the longest or shortest lifetime (certificates_lifetime), so the walk
	// starts near the rows.
	now := f.Now.UnixNano()
	switch f.Status {
	case "":
	case "revoked":
		q.add("c.revoked_at != 0")
	case "valid":
		q.add("c.revoked_at = 0 AND "+q.notAfter+" > ?", now)
		if !byExpiry {
			q.add(q.created+" > ? - (SELECT max(not_after - created) FROM certificates)", now)
		}
	case "expired":
		q.add("c.revoked_at = 0 AND "+q.notAfter+" <= ?", now)
		if !byExpiry {
			q.add(q.created+" <= ? - (SELECT min(not_after - created) FROM certificates)", now)
		}
	default:
		return nil, fmt.Errorf("unknown status %q (want valid, expired or revoked)", f.Status)
	}
	return q, nil
}

// order returns q's sort column for s, the direction and whether s is known.
func (q *certQuery) order(s store.CertSort) (col, dir string, ok bool) {
	switch s {
	case store.SortIssuedDesc:
		return q.created, "DESC", true
	case store.SortIssuedAsc:
		return q.created, "ASC", true
	case store.SortExpiryAsc:
		return q.notAfter, "ASC", true
	case store.SortExpiryDesc:
		return q.notAfter, "DESC", true
	}
	return "", "", false
}

// Certificates implements Store.
func (s *Store) Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var out []store.CertRecord
	err := s.scanPage(ctx, f, limit+1, func(c store.CertRecord) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, store.CertCursor{}, err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, f.Sort.CursorOf(out[limit-1]), nil
	}
	return out, store.CertCursor{}, nil
}

// scanPage calls fn with up to limit rows f selects after f.After.
func (s *Store) scanPage(ctx context.Context, f store.CertFilter, limit int, fn func(store.CertRecord) error) error {
	q, err := s.compileFilter(f)
	if err != nil {
		return err
	}
	col, dir, ok := q.order(f.Sort)
	if !ok {
		return fmt.Errorf("unknown sort %d", f.Sort)
	}
	if !f.After.IsZero() {
		// Spelled out rather than as a row value, so that the sort
		// column's half is a range on whichever index leads with it.
		cmp := ">"
		if dir == "DESC" {
			cmp = "<"
		}
		q.add(col+" "+cmp+"= ? AND ("+col+" "+cmp+" ? OR "+q.id+" "+cmp+" ?)", f.After.Key, f.After.Key, f.After.ID)
	}
	sqlText := "SELECT " + certColumnsC + q.from + q.clause() +
		" ORDER BY " + col + " " + dir + ", " + q.id + " " + dir + " LIMIT ?"
	rows, err := s.query(ctx, sqlText, append(q.args, limit)...)
	if err != nil {
		return fmt.Errorf("list certificates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return fmt.Errorf("scan certificate: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list certificates: %w", err)
	}
	return nil
}

// scanBatch is how many rows ScanCertificates reads per query: each page is
// its own short read, so a long export holds no snapshot open.
const scanBatch = 1000

// ScanCertificates implements Store.
func (s *Store) ScanCertificates(ctx context.Context, f store.CertFilter, fn func(store.CertRecord) error) error {
	for {
		n := 0
		var last store.CertRecord
		err := s.scanPage(ctx, f, scanBatch, func(c store.CertRecord) error {
			n++
			last = c
			return fn(c)
		})
		if err != nil || n < scanBatch {
			return err
		}
		f.After = f.Sort.CursorOf(last)
	}
}

// CertificateSummary implements Store.
func (s *Store) CertificateSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error) {
	if r, ok := s.rollupFor(f, by); ok {
		return s.rollupSummary(ctx, f, by, r)
	}
	if by == store.GroupStatus && !s.noRollup && (f == store.CertFilter{Now: f.Now, Sort: f.Sort, After: f.After, Limit: f.Limit}) {
		return s.statusSummary(ctx, f.Now)
	}
	return s.scanSummary(ctx, f, by)
}

// statusSummary counts every certificate by status at now without reading
// them all: the total from the daily rollup, the revoked from their partial
// index, the valid from the expiry range after now (certificates still
// valid are the recent few); the rest have expired.
func (s *Store) statusSummary(ctx context.Context, now time.Time) ([]store.SummaryRow, int64, error) {
	var total, revoked, valid int64
	for _, c := range []struct {
		dst   *int64
		query string
		args  []any
	}{
		{&total, "SELECT COALESCE(SUM(n), 0)::bigint FROM certificate_days", nil},
		{&revoked, "SELECT count(*) FROM certificates WHERE revoked_at != 0", nil},
		{&valid, "SELECT count(*) FROM certificates WHERE not_after > ? AND revoked_at = 0",
			[]any{now.UnixNano()}},
	} {
		if err := s.queryRow(ctx, c.query, c.args...).Scan(c.dst); err != nil {
			return nil, 0, fmt.Errorf("summarize certificates by status: %w", err)
		}
	}
	var out []store.SummaryRow
	for _, r := range []store.SummaryRow{{Key: "expired", Count: total - valid - revoked}, {Key: "revoked", Count: revoked}, {Key: "valid", Count: valid}} {
		if r.Count > 0 {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b store.SummaryRow) int { return cmp.Compare(b.Count, a.Count) })
	return out, total, nil
}

// scanSummary is CertificateSummary counting from the certificate indexes.
func (s *Store) scanSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error) {
	q, err := s.compileFilter(f)
	if err != nil {
		return nil, 0, err
	}
	var key, order string
	group := "1"
	switch by {
	case store.GroupProfile, store.GroupRequester, store.GroupChannel:
		key, order = "c."+string(by), "n DESC, k"
	case store.GroupIssuer:
		key, order = "c.issuer_id", "n DESC, k"
	case store.GroupDay:
		// Integer days (floored), formatted below: strftime per row
		// costs more than the rest of the scan.
		// Grouped and ordered as integers, read as text.
		group = "sigil_floor_div(c.created, 86400000000000)"
		key, order = group+"::text", group
	case store.GroupStatus:
		key, order = "CASE WHEN c.revoked_at != 0 THEN 'revoked' WHEN c.not_after > ? THEN 'valid' ELSE 'expired' END", "n DESC, k"
		q.args = append([]any{f.Now.UnixNano()}, q.args...)
	default:
		return nil, 0, fmt.Errorf("unknown grouping %q (want profile, requester, issuer, channel, day or status)", by)
	}
	rows, err := s.query(ctx, "SELECT "+key+" AS k, COUNT(*) AS n"+q.from+q.clause()+
		" GROUP BY "+group+" ORDER BY "+order, q.args...)
	if err != nil {
		return nil, 0, fmt.Errorf("summarize certificates: %w", err)
	}
	defer rows.Close()
	var out []store.SummaryRow
	var total int64
	for rows.Next() {
		var r store.SummaryRow
		if err := rows.Scan(&r.Key, &r.Count); err != nil {
			return nil, 0, fmt.Errorf("scan summary: %w", err)
		}
		if by == store.GroupDay {
			day, err := strconv.ParseInt(r.Key, 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("scan summary: day %q: %w", r.Key, err)
			}
			r.Key = time.Unix(day*86400, 0).UTC().Format(time.DateOnly)
		}
		total += r.Count
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("summarize certificates: %w", err)
	}
	return out, total, nil
}

// certColumnsC is certColumns qualified by the alias c.
var certColumnsC = "c." + strings.ReplaceAll(strings.Join(strings.Fields(certColumns), " "), ", ", ", c.")

// rollup is a table of migrations/0014_history_rollup.sql: counts per
// bucket (a Unix day or span, unit nanoseconds long) and key column.
type rollup struct {
	table, bucket, key string
	unit               int64
}

const dayNanos = int64(24 * time.Hour)

// rollupFor returns the rollup that answers f grouped by by, if one does:
// f may select only an issuance range, profile, requester, channel and
// issuer (Now, sort, cursor and limit do not change a summary).
func (s *Store) rollupFor(f store.CertFilter, by store.CertGroup) (rollup, bool) {
	g := f
	g.IssuedAfter, g.IssuedBefore = time.Time{}, time.Time{}
	g.Profile, g.Requester, g.Channel, g.IssuerID = "", "", "", ""
	g.Now, g.Sort, g.After, g.Limit = time.Time{}, 0, store.CertCursor{}, 0
	if s.noRollup || g != (store.CertFilter{}) {
		return rollup{}, false
	}
	// A bound that far out is no Unix nanosecond count a bucket can hold.
	for _, t := range []time.Time{f.IssuedAfter, f.IssuedBefore} {
		if !t.IsZero() && (t.Before(rollupMin) || t.After(rollupMax)) {
			return rollup{}, false
		}
	}
	days := func(key string) (rollup, bool) {
		return rollup{table: "certificate_days", bucket: "day", key: key, unit: dayNanos}, true
	}
	switch {
	case by == store.GroupRequester && f.Profile == "" && f.Channel == "" && f.IssuerID == "":
		return rollup{table: "certificate_requester_spans", bucket: "span", key: "requester", unit: 32 * dayNanos}, true
	case f.Requester != "": // certificate_days has no requester
	case by == store.GroupDay:
		return days("day")
	case by == store.GroupProfile || by == store.GroupChannel:
		return days(string(by))
	case by == store.GroupIssuer:
		return days("issuer_id")
	}
	return rollup{}, false
}

// The issuance bounds a rollup query takes: a year's margin inside what
// int64 nanoseconds hold, so that rounding to a bucket cannot overflow.
var (
	rollupMin = time.Unix(0, math.MinInt64).Add(365 * 24 * time.Hour)
	rollupMax = time.Unix(0, math.MaxInt64).Add(-365 * 24 * time.Hour)
)

// rollupSummary answers CertificateSummary from r: the buckets wholly
// inside the issuance range from r, the partial ones at its edges from the
// certificate indexes, added up by key.
func (s *Store) rollupSummary(ctx context.Context, f store.CertFilter, by store.CertGroup, r rollup) ([]store.SummaryRow, int64, error) {
	// Whole buckets are [first, last); a bound off a bucket's start leaves
	// a partial bucket, an edge, outside them.
	var where []string
	var args []any
	var edges []store.CertFilter
	first, last := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.IssuedAfter.IsZero() {
		a := f.IssuedAfter.UnixNano()
		if first = a / r.unit; first*r.unit < a {
			first++ // rounded up (Go's division truncates)
		}
		where, args = append(where, r.bucket+" >= ?"), append(args, first)
		if first*r.unit != a {
			e := f
			e.IssuedBefore = time.Unix(0, first*r.unit)
			edges = append(edges, e)
		}
	}
	if !f.IssuedBefore.IsZero() {
		b := f.IssuedBefore.UnixNano()
		if last = b / r.unit; last*r.unit > b {
			last-- // rounded down
		}
		where, args = append(where, r.bucket+" < ?"), append(args, last)
		if last*r.unit != b {
			e := f
			e.IssuedAfter = time.Unix(0, last*r.unit)
			edges = append(edges, e)
		}
	}
	if first >= last {
		return s.scanSummary(ctx, f, by) // no whole bucket: the edges overlap
	}
	for _, eq := range [...]struct{ col, v string }{{"profile", f.Profile}, {"requester", f.Requester},
		{"channel", f.Channel}, {"issuer_id", f.IssuerID}} {
		if eq.v != "" {
			where, args = append(where, eq.col+" = ?"), append(args, eq.v)
		}
	}
	query := "SELECT " + r.key + "::text, SUM(n)::bigint FROM " + r.table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.query(ctx, query+" GROUP BY "+r.key, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("summarize certificates: %w", err)
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, 0, fmt.Errorf("scan summary: %w", err)
		}
		if by == store.GroupDay {
			day, err := strconv.ParseInt(k, 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("scan summary: day %q: %w", k, err)
			}
			k = time.Unix(day*86400, 0).UTC().Format(time.DateOnly)
		}
		counts[k] += n
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("summarize certificates: %w", err)
	}
	for _, e := range edges {
		part, _, err := s.scanSummary(ctx, e, by)
		if err != nil {
			return nil, 0, err
		}
		for _, p := range part {
			counts[p.Key] += p.Count
		}
	}
	out := make([]store.SummaryRow, 0, len(counts))
	var total int64
	for k, n := range counts {
		out = append(out, store.SummaryRow{Key: k, Count: n})
		total += n
	}
	// As scanSummary orders: days oldest first (their keys sort so, years
	// having four digits in nanosecond range), the rest largest first.
	slices.SortFunc(out, func(a, b store.SummaryRow) int {
		if by == store.GroupDay {
			return strings.Compare(a.Key, b.Key)
		}
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Key, b.Key))
	})
	return out, total, nil
}
