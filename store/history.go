package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// certQuery is a certificate filter compiled to SQL: a WHERE clause over
// certificates and its arguments.
type certQuery struct {
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

// compileFilter turns f, all but its sort and cursor, into SQL.
func compileFilter(f CertFilter) (*certQuery, error) {
	q := &certQuery{}
	if f.Serial != "" {
		q.add("serial = ?", strings.ToLower(f.Serial))
	}
	names := "lower(sans || '\n' || subject)"
	if f.Name != "" {
		q.add(names+` LIKE ? ESCAPE '\'`, "%"+likeEscape(strings.ToLower(f.Name))+"%")
	}
	if f.NameExact != "" {
		n := likeEscape(strings.ToLower(f.NameExact))
		q.add(`(lower(sans) LIKE ? ESCAPE '\' OR lower(subject) LIKE ? ESCAPE '\' OR lower(subject) LIKE ? ESCAPE '\')`,
			"%\n"+n+"\n%", "cn="+n, "cn="+n+",%")
	}
	if f.NameSuffix != "" {
		q.add(`lower(sans) LIKE ? ESCAPE '\'`, "%"+likeEscape(strings.ToLower(f.NameSuffix))+"\n%")
	}
	for _, eq := range [...]struct{ col, v string }{{"profile", f.Profile}, {"requester", f.Requester},
		{"issuer_id", f.IssuerID}, {"channel", f.Channel}, {"key_algorithm", f.KeyAlgorithm}} {
		if eq.v != "" {
			q.add(eq.col+" = ?", eq.v)
		}
	}
	if f.IssuerKeyID != "" {
		q.add("issuer_id IN (SELECT id FROM issuers WHERE key_id = ?)", f.IssuerKeyID)
	}
	if f.ACMEAccount != "" {
		q.add("serial IN (SELECT cert_serial FROM acme_orders WHERE account_id = ? AND cert_serial != '')", f.ACMEAccount)
	}
	timeRange(q, "created", f.IssuedAfter, f.IssuedBefore)
	timeRange(q, "not_after", f.ExpiringAfter, f.ExpiringBefore)
	if !f.RevokedAfter.IsZero() || !f.RevokedBefore.IsZero() {
		q.add("revoked_at != 0")
		timeRange(q, "revoked_at", f.RevokedAfter, f.RevokedBefore)
	}
	switch f.Status {
	case "":
	case "revoked":
		q.add("revoked_at != 0")
	case "valid":
		q.add("revoked_at = 0 AND not_after > ?", f.Now.UnixNano())
	case "expired":
		q.add("revoked_at = 0 AND not_after <= ?", f.Now.UnixNano())
	default:
		return nil, fmt.Errorf("unknown status %q (want valid, expired or revoked)", f.Status)
	}
	return q, nil
}

// order returns the sort column, the direction and whether s is known.
func (s CertSort) order() (col, dir string, ok bool) {
	switch s {
	case SortIssuedDesc:
		return "created", "DESC", true
	case SortIssuedAsc:
		return "created", "ASC", true
	case SortExpiryAsc:
		return "not_after", "ASC", true
	case SortExpiryDesc:
		return "not_after", "DESC", true
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
	q, err := compileFilter(f)
	if err != nil {
		return err
	}
	col, dir, ok := f.Sort.order()
	if !ok {
		return fmt.Errorf("unknown sort %d", f.Sort)
	}
	if !f.After.IsZero() {
		cmp := ">"
		if dir == "DESC" {
			cmp = "<"
		}
		q.add("("+col+", id) "+cmp+" (?, ?)", f.After.Key, f.After.ID)
	}
	sqlText := "SELECT " + certColumns + " FROM certificates" + q.clause() +
		" ORDER BY " + col + " " + dir + ", id " + dir + " LIMIT ?"
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
	q, err := compileFilter(f)
	if err != nil {
		return nil, 0, err
	}
	var key, order string
	switch by {
	case GroupProfile, GroupRequester, GroupChannel:
		key, order = string(by), "n DESC, k"
	case GroupIssuer:
		key, order = "issuer_id", "n DESC, k"
	case GroupDay:
		key, order = "strftime('%Y-%m-%d', created / 1000000000, 'unixepoch')", "k"
	case GroupStatus:
		key, order = "CASE WHEN revoked_at != 0 THEN 'revoked' WHEN not_after > ? THEN 'valid' ELSE 'expired' END", "n DESC, k"
		q.args = append([]any{f.Now.UnixNano()}, q.args...)
	default:
		return nil, 0, fmt.Errorf("unknown grouping %q (want profile, requester, issuer, channel, day or status)", by)
	}
	rows, err := s.read.QueryContext(ctx, "SELECT "+key+" AS k, COUNT(*) AS n FROM certificates"+q.clause()+
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
