package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// certQuery is a certificate filter compiled to SQL: FROM and WHERE
// clauses over certificates (as c) and their arguments, and the columns
// that order it. Usually the planner picks the index; two cases are forced:
// a small candidate set (c.id IN ...) drives from a NOT INDEXED table, and
// an ACME account walks that account's rows of certificate_accounts (as a)
// in order, through a CROSS JOIN that keeps it the outer loop.
type certQuery struct {
	from  string
	where []string
	args  []any
	// The order columns: c's, or a's when walking an account (same values).
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

// driveLimit is the candidate count up to which a name filter drives a
// query (read its matches, then sort them); above it the query walks an
// order index and tests the name per row, where matches are dense enough
// that a page comes quickly.
const driveLimit = 5000

// candidates is a filter that can list what it selects.
type candidates struct {
	ids   string // lists up to ? matching certificate ids (names)
	count string // counts up to ? matches (an account)
	args  []any
	exact bool   // in selects exactly the filter's rows (no recheck)
	check string // the filter on one row, for walking an order index
	cargs []any
	walk  bool // an ACME account: walked in order, not read whole
}

// compileFilter turns f, all but its cursor, into SQL.
func (s *SQLite) compileFilter(ctx context.Context, f CertFilter) (*certQuery, error) {
	q := &certQuery{from: plainFrom, created: "c.created", notAfter: "c.not_after", id: "c.id"}
	byExpiry := f.Sort == SortExpiryAsc || f.Sort == SortExpiryDesc
	var cands []candidates
	if f.Serial != "" {
		q.add("c.serial = ?", strings.ToLower(f.Serial))
	}
	if f.NameExact != "" {
		n := strings.ToLower(f.NameExact)
		cands = append(cands, candidates{
			ids:  "SELECT cert_id FROM certificate_names WHERE rname = ? LIMIT ?",
			args: []any{reverseName(n)}, exact: true,
			check: "instr(c.names, ?) > 0", cargs: []any{"\n" + n + "\n"},
		})
	}
	if f.NameSuffix != "" {
		n := strings.ToLower(f.NameSuffix)
		lo := reverseName(n)
		cands = append(cands, candidates{
			ids:  "SELECT cert_id FROM certificate_names WHERE rname >= ? AND rname < ? LIMIT ?",
			args: []any{lo, prefixEnd(lo)}, exact: true,
			check: "instr(c.names, ?) > 0", cargs: []any{n + "\n"},
		})
	}
	if f.Name != "" {
		n := strings.ToLower(f.Name)
		c := candidates{check: "instr(c.names, ?) > 0", cargs: []any{n}}
		// Trigrams need three characters; % _ \ would be LIKE syntax there.
		// The index answers candidates (detail=none), rechecked by instr.
		if utf8.RuneCountInString(n) >= 3 && !strings.ContainsAny(n, "%_\\\n") {
			c.ids = "SELECT rowid FROM certificate_search WHERE names LIKE ? LIMIT ?"
			c.args = []any{"%" + n + "%"}
		}
		cands = append(cands, c)
	}
	if f.ACMEAccount != "" {
		cands = append(cands, candidates{
			count: "SELECT count(*) FROM (SELECT 1 FROM certificate_accounts WHERE account_id = ? LIMIT ?)",
			args:  []any{f.ACMEAccount}, exact: true, walk: true,
			check: "EXISTS (SELECT 1 FROM certificate_accounts a WHERE a.cert_id = c.id AND a.account_id = ?)",
			cargs: []any{f.ACMEAccount},
		})
	}
	// The smallest candidate set under the limit drives; an account walks
	// whatever its size unless a name has fewer candidates. Every other
	// name or account filter is a per-row test.
	// A name's candidate ids are read once, here, and handed to the query
	// as a JSON array: evaluating the trigram match twice costs more than
	// the rest of the query.
	best, bestN := -1, s.drive
	var bestIDs string
	if f.Serial == "" {
		for i, c := range cands {
			switch {
			case c.walk && best < 0 && s.drive >= 0: // tests set -1: no driving
				best = i // walked in order: its size does not matter
			case c.walk:
				var n int64
				if err := s.read.QueryRowContext(ctx, c.count, append(c.args, bestN+1)...).Scan(&n); err != nil {
					return nil, fmt.Errorf("count candidates: %w", err)
				}
				if n <= bestN {
					best, bestN = i, n
				}
			case c.ids != "":
				ids, err := s.candidateIDs(ctx, c.ids, append(c.args, bestN+1))
				if err != nil {
					return nil, err
				}
				if n := int64(len(ids)); n < bestN || n == bestN && best < 0 {
					best, bestN, bestIDs = i, n, "["+strings.Join(ids, ",")+"]"
				}
			}
		}
	}
	for i, c := range cands {
		switch {
		case i == best && c.walk:
			q.from = " FROM certificate_accounts a CROSS JOIN certificates c"
			q.add("a.account_id = ? AND c.id = a.cert_id", c.args...)
			q.created, q.notAfter, q.id = "a.created", "a.not_after", "a.cert_id"
		case i == best:
			q.from = " FROM certificates c NOT INDEXED"
			q.add("c.id IN (SELECT value FROM json_each(?))", bestIDs)
			if !c.exact {
				q.add(c.check, c.cargs...)
			}
		default:
			q.add(c.check, c.cargs...)
		}
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
		// No index range on revoked_at (unary +): the partial indexes of
		// revoked rows in either order, which hold revoked_at, are walked
		// instead; a page costs at most a scan of the revoked rows' index.
		q.add("c.revoked_at != 0")
		timeRange(q, "+c.revoked_at", f.RevokedAfter, f.RevokedBefore)
	}
	// Valid and expired select most of the table: their expiry term is no
	// index range unless the query is in expiry order (unary + stops the
	// planner). In issuance order they bound the issuance time instead, by
	// the longest or shortest lifetime, so the walk starts near the rows.
	exp := "+c.not_after"
	if byExpiry {
		exp = q.notAfter
	}
	now := f.Now.UnixNano()
	switch f.Status {
	case "":
	case "revoked":
		q.add("c.revoked_at != 0")
	case "valid":
		q.add("c.revoked_at = 0 AND "+exp+" > ?", now)
		if !byExpiry {
			q.add(q.created+" > ? - (SELECT max(not_after - created) FROM certificates)", now)
		}
	case "expired":
		q.add("c.revoked_at = 0 AND "+exp+" <= ?", now)
		if !byExpiry {
			q.add(q.created+" <= ? - (SELECT min(not_after - created) FROM certificates)", now)
		}
	default:
		return nil, fmt.Errorf("unknown status %q (want valid, expired or revoked)", f.Status)
	}
	return q, nil
}

// candidateIDs runs query, which lists certificate ids, and returns them.
func (s *SQLite) candidateIDs(ctx context.Context, query string, args []any) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list candidates: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list candidates: %w", err)
		}
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list candidates: %w", err)
	}
	return ids, nil
}

// order returns q's sort column for s, the direction and whether s is known.
func (q *certQuery) order(s CertSort) (col, dir string, ok bool) {
	switch s {
	case SortIssuedDesc:
		return q.created, "DESC", true
	case SortIssuedAsc:
		return q.created, "ASC", true
	case SortExpiryAsc:
		return q.notAfter, "ASC", true
	case SortExpiryDesc:
		return q.notAfter, "DESC", true
	}
	return "", "", false
}

// Certificates implements Store.
func (s *SQLite) Certificates(ctx context.Context, f CertFilter) ([]CertRecord, CertCursor, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var out []CertRecord
	err := s.scanPage(ctx, f, limit+1, func(c CertRecord) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, CertCursor{}, err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, f.Sort.CursorOf(out[limit-1]), nil
	}
	return out, CertCursor{}, nil
}

// scanPage calls fn with up to limit rows f selects after f.After.
func (s *SQLite) scanPage(ctx context.Context, f CertFilter, limit int, fn func(CertRecord) error) error {
	q, err := s.compileFilter(ctx, f)
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
	rows, err := s.read.QueryContext(ctx, sqlText, append(q.args, limit)...)
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
func (s *SQLite) ScanCertificates(ctx context.Context, f CertFilter, fn func(CertRecord) error) error {
	for {
		n := 0
		var last CertRecord
		err := s.scanPage(ctx, f, scanBatch, func(c CertRecord) error {
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
func (s *SQLite) CertificateSummary(ctx context.Context, f CertFilter, by CertGroup) ([]SummaryRow, int64, error) {
	if r, ok := s.rollupFor(f, by); ok {
		return s.rollupSummary(ctx, f, by, r)
	}
	if by == GroupStatus && !s.noRollup && (f == CertFilter{Now: f.Now, Sort: f.Sort, After: f.After, Limit: f.Limit}) {
		return s.statusSummary(ctx, f.Now)
	}
	return s.scanSummary(ctx, f, by)
}

// statusSummary counts every certificate by status at now without reading
// them all: the total from the daily rollup, the revoked from their partial
// index, the valid from the expiry range after now (certificates still
// valid are the recent few); the rest have expired.
func (s *SQLite) statusSummary(ctx context.Context, now time.Time) ([]SummaryRow, int64, error) {
	var total, revoked, valid int64
	for _, c := range []struct {
		dst   *int64
		query string
		args  []any
	}{
		{&total, "SELECT COALESCE(SUM(n), 0) FROM certificate_days", nil},
		{&revoked, "SELECT count(*) FROM certificates INDEXED BY certificates_revoked_created WHERE revoked_at != 0", nil},
		{&valid, "SELECT count(*) FROM certificates INDEXED BY certificates_not_after WHERE not_after > ? AND revoked_at = 0",
			[]any{now.UnixNano()}},
	} {
		if err := s.read.QueryRowContext(ctx, c.query, c.args...).Scan(c.dst); err != nil {
			return nil, 0, fmt.Errorf("summarize certificates by status: %w", err)
		}
	}
	var out []SummaryRow
	for _, r := range []SummaryRow{{"expired", total - valid - revoked}, {"revoked", revoked}, {"valid", valid}} {
		if r.Count > 0 {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b SummaryRow) int { return cmp.Compare(b.Count, a.Count) })
	return out, total, nil
}

// scanSummary is CertificateSummary counting from the certificate indexes.
func (s *SQLite) scanSummary(ctx context.Context, f CertFilter, by CertGroup) ([]SummaryRow, int64, error) {
	q, err := s.compileFilter(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	// Over an issuance range alone, count from the covering issuance
	// index: with few issuers (or profiles) the planner would rather
	// skip-scan (issuer_id, created) and read every row for the status.
	if q.from == plainFrom && (!f.IssuedAfter.IsZero() || !f.IssuedBefore.IsZero()) && f.Serial == "" && f.Profile == "" &&
		f.Requester == "" && f.IssuerID == "" && f.IssuerKeyID == "" && f.Channel == "" && f.KeyAlgorithm == "" {
		q.from = " FROM certificates c INDEXED BY certificates_created"
	}
	var key, order string
	switch by {
	case GroupProfile, GroupRequester, GroupChannel:
		key, order = "c."+string(by), "n DESC, k"
	case GroupIssuer:
		key, order = "c.issuer_id", "n DESC, k"
	case GroupDay:
		// Integer days (floored), formatted below: strftime per row
		// costs more than the rest of the scan.
		key, order = "c.created / 86400000000000 - (c.created < 0 AND c.created % 86400000000000 != 0)", "k"
	case GroupStatus:
		key, order = "CASE WHEN c.revoked_at != 0 THEN 'revoked' WHEN c.not_after > ? THEN 'valid' ELSE 'expired' END", "n DESC, k"
		q.args = append([]any{f.Now.UnixNano()}, q.args...)
	default:
		return nil, 0, fmt.Errorf("unknown grouping %q (want profile, requester, issuer, channel, day or status)", by)
	}
	rows, err := s.read.QueryContext(ctx, "SELECT "+key+" AS k, COUNT(*) AS n"+q.from+q.clause()+
		" GROUP BY k ORDER BY "+order, q.args...)
	if err != nil {
		return nil, 0, fmt.Errorf("summarize certificates: %w", err)
	}
	defer rows.Close()
	var out []SummaryRow
	var total int64
	for rows.Next() {
		var r SummaryRow
		if err := rows.Scan(&r.Key, &r.Count); err != nil {
			return nil, 0, fmt.Errorf("scan summary: %w", err)
		}
		if by == GroupDay {
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
func (s *SQLite) rollupFor(f CertFilter, by CertGroup) (rollup, bool) {
	g := f
	g.IssuedAfter, g.IssuedBefore = time.Time{}, time.Time{}
	g.Profile, g.Requester, g.Channel, g.IssuerID = "", "", "", ""
	g.Now, g.Sort, g.After, g.Limit = time.Time{}, 0, CertCursor{}, 0
	if s.noRollup || g != (CertFilter{}) {
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
	case by == GroupRequester && f.Profile == "" && f.Channel == "" && f.IssuerID == "":
		return rollup{table: "certificate_requester_spans", bucket: "span", key: "requester", unit: 32 * dayNanos}, true
	case f.Requester != "": // certificate_days has no requester
	case by == GroupDay:
		return days("day")
	case by == GroupProfile || by == GroupChannel:
		return days(string(by))
	case by == GroupIssuer:
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
func (s *SQLite) rollupSummary(ctx context.Context, f CertFilter, by CertGroup, r rollup) ([]SummaryRow, int64, error) {
	// Whole buckets are [first, last); a bound off a bucket's start leaves
	// a partial bucket, an edge, outside them.
	var where []string
	var args []any
	var edges []CertFilter
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
	query := "SELECT " + r.key + ", SUM(n) FROM " + r.table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.read.QueryContext(ctx, query+" GROUP BY "+r.key, args...)
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
		if by == GroupDay {
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
	out := make([]SummaryRow, 0, len(counts))
	var total int64
	for k, n := range counts {
		out = append(out, SummaryRow{Key: k, Count: n})
		total += n
	}
	// As scanSummary orders: days oldest first (their keys sort so, years
	// having four digits in nanosecond range), the rest largest first.
	slices.SortFunc(out, func(a, b SummaryRow) int {
		if by == GroupDay {
			return strings.Compare(a.Key, b.Key)
		}
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Key, b.Key))
	})
	return out, total, nil
}
