package store

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// certQuery is a certificate filter compiled to SQL: a WHERE clause over
// certificates (as c) and its arguments. from is the FROM clause: plain, or
// NOT INDEXED when a small candidate set (c.id or c.serial IN ...) must
// drive the query rather than an order index the planner might prefer.
type certQuery struct {
	from  string
	where []string
	args  []any
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

// driveLimit is the candidate count up to which a name or ACME account
// filter drives a query (read its matches, then sort them); above it the
// query walks an order index and tests the filter per row, where matches
// are dense enough that a page comes quickly.
const driveLimit = 5000

// candidates is a filter that can list the ids (or serials) it selects.
type candidates struct {
	in    string // "c.id IN (...)" or "c.serial IN (...)"
	count string // counts up to ? matches
	args  []any
	check string // the same filter on one row, for walking an order index
	cargs []any
}

// compileFilter turns f, all but its sort and cursor, into SQL.
func (s *SQLite) compileFilter(ctx context.Context, f CertFilter) (*certQuery, error) {
	q := &certQuery{from: " FROM certificates c"}
	var cands []candidates
	if f.Serial != "" {
		q.add("c.serial = ?", strings.ToLower(f.Serial))
	}
	if f.NameExact != "" {
		n := strings.ToLower(f.NameExact)
		cands = append(cands, candidates{
			in:    "c.id IN (SELECT cert_id FROM certificate_names WHERE rname = ?)",
			count: "SELECT count(*) FROM (SELECT 1 FROM certificate_names WHERE rname = ? LIMIT ?)",
			args:  []any{reverseName(n)},
			check: "instr(c.names, ?) > 0", cargs: []any{"\n" + n + "\n"},
		})
	}
	if f.NameSuffix != "" {
		n := strings.ToLower(f.NameSuffix)
		lo := reverseName(n)
		cands = append(cands, candidates{
			in:    "c.id IN (SELECT cert_id FROM certificate_names WHERE rname >= ? AND rname < ?)",
			count: "SELECT count(*) FROM (SELECT 1 FROM certificate_names WHERE rname >= ? AND rname < ? LIMIT ?)",
			args:  []any{lo, prefixEnd(lo)},
			check: "instr(c.names, ?) > 0", cargs: []any{n + "\n"},
		})
	}
	if f.Name != "" {
		n := strings.ToLower(f.Name)
		c := candidates{check: "instr(c.names, ?) > 0", cargs: []any{n}}
		// Trigrams need three characters; % _ \ would be LIKE syntax there.
		if utf8.RuneCountInString(n) >= 3 && !strings.ContainsAny(n, "%_\\\n") {
			c.in = "c.id IN (SELECT rowid FROM certificate_search WHERE names LIKE ?)"
			c.count = "SELECT count(*) FROM (SELECT 1 FROM certificate_search WHERE names LIKE ? LIMIT ?)"
			c.args = []any{"%" + n + "%"}
		}
		cands = append(cands, c)
	}
	if f.ACMEAccount != "" {
		cands = append(cands, candidates{
			in:    "c.serial IN (SELECT cert_serial FROM acme_orders WHERE account_id = ? AND cert_serial != '')",
			count: "SELECT count(*) FROM (SELECT 1 FROM acme_orders WHERE account_id = ? AND cert_serial != '' LIMIT ?)",
			args:  []any{f.ACMEAccount},
			check: "EXISTS (SELECT 1 FROM acme_orders o WHERE o.cert_serial = c.serial AND o.cert_serial != '' AND o.account_id = ?)",
			cargs: []any{f.ACMEAccount},
		})
	}
	// The smallest candidate set under driveLimit drives; every other
	// name or account filter is a per-row test.
	best, bestN := -1, s.drive
	if f.Serial == "" {
		for i, c := range cands {
			if c.in == "" {
				continue
			}
			var n int64
			if err := s.read.QueryRowContext(ctx, c.count, append(c.args, bestN+1)...).Scan(&n); err != nil {
				return nil, fmt.Errorf("count candidates: %w", err)
			}
			if n <= bestN {
				best, bestN = i, n
			}
		}
	}
	for i, c := range cands {
		if i == best {
			q.from = " FROM certificates c NOT INDEXED"
			q.add(c.in, c.args...)
		}
		q.add(c.check, c.cargs...)
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
	timeRange(q, "c.created", f.IssuedAfter, f.IssuedBefore)
	timeRange(q, "c.not_after", f.ExpiringAfter, f.ExpiringBefore)
	if !f.RevokedAfter.IsZero() || !f.RevokedBefore.IsZero() {
		q.add("c.revoked_at != 0")
		timeRange(q, "c.revoked_at", f.RevokedAfter, f.RevokedBefore)
	}
	switch f.Status {
	case "":
	case "revoked":
		q.add("c.revoked_at != 0")
	case "valid":
		q.add("c.revoked_at = 0 AND c.not_after > ?", f.Now.UnixNano())
	case "expired":
		q.add("c.revoked_at = 0 AND c.not_after <= ?", f.Now.UnixNano())
	default:
		return nil, fmt.Errorf("unknown status %q (want valid, expired or revoked)", f.Status)
	}
	return q, nil
}

// order returns the sort column, the direction and whether s is known.
func (s CertSort) order() (col, dir string, ok bool) {
	switch s {
	case SortIssuedDesc:
		return "c.created", "DESC", true
	case SortIssuedAsc:
		return "c.created", "ASC", true
	case SortExpiryAsc:
		return "c.not_after", "ASC", true
	case SortExpiryDesc:
		return "c.not_after", "DESC", true
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
	col, dir, ok := f.Sort.order()
	if !ok {
		return fmt.Errorf("unknown sort %d", f.Sort)
	}
	q, err := s.compileFilter(ctx, f)
	if err != nil {
		return err
	}
	if !f.After.IsZero() {
		// Spelled out rather than as a row value, so that the sort
		// column's half is a range on whichever index leads with it.
		cmp := ">"
		if dir == "DESC" {
			cmp = "<"
		}
		q.add(col+" "+cmp+"= ? AND ("+col+" "+cmp+" ? OR c.id "+cmp+" ?)", f.After.Key, f.After.Key, f.After.ID)
	}
	sqlText := "SELECT " + certColumnsC + q.from + q.clause() +
		" ORDER BY " + col + " " + dir + ", c.id " + dir + " LIMIT ?"
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
	q, err := s.compileFilter(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	var key, order string
	switch by {
	case GroupProfile, GroupRequester, GroupChannel:
		key, order = "c."+string(by), "n DESC, k"
	case GroupIssuer:
		key, order = "c.issuer_id", "n DESC, k"
	case GroupDay:
		key, order = "strftime('%Y-%m-%d', c.created / 1000000000, 'unixepoch')", "k"
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
