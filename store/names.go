package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// Name index statements; see migrations/0013_history.sql.
const (
	qInsertCertName   = "INSERT OR IGNORE INTO certificate_names (rname, cert_id) VALUES (?, ?)"
	qInsertCertSearch = "INSERT INTO certificate_search (rowid, names) VALUES (?, ?)"
)

func nameWriteQueries() []string { return []string{qInsertCertName, qInsertCertSearch} }

// historyVersion is the migration that added the name indexes.
const historyVersion = 13

// certNames returns the distinct lower-cased names of a certificate: its
// subject common name and SANs.
func certNames(subject string, sans []string) []string {
	out := make([]string, 0, len(sans)+1)
	if cn := commonName(subject); cn != "" {
		out = append(out, strings.ToLower(cn))
	}
	for _, s := range sans {
		if s != "" {
			out = append(out, strings.ToLower(s))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// namesText is the names column: each name followed by a newline, the
// whole preceded by one.
func namesText(names []string) string {
	return "\n" + strings.Join(names, "\n") + "\n"
}

// commonName returns the first CN attribute of a subject as
// pkix.Name.String spells it ("CN=a\,b,O=x"), unescaped; "" if none.
func commonName(dn string) string {
	for i := 0; i < len(dn); {
		// One attribute: up to an unescaped ',' or '+'.
		var val strings.Builder
		j, eq := i, -1
		for ; j < len(dn) && dn[j] != ',' && dn[j] != '+'; j++ {
			if dn[j] == '\\' && j+1 < len(dn) && strings.IndexByte(`,+"\<>;=# `, dn[j+1]) >= 0 {
				j++
			} else if dn[j] == '=' && eq < 0 {
				eq = j
			}
		}
		if eq > i && strings.EqualFold(strings.TrimSpace(dn[i:eq]), "CN") {
			raw := dn[eq+1 : j]
			for k := 0; k < len(raw); k++ {
				// RFC 4514 escapes; any other backslash is literal.
				if raw[k] == '\\' && k+1 < len(raw) && strings.IndexByte(`,+"\<>;=# `, raw[k+1]) >= 0 {
					k++
				}
				val.WriteByte(raw[k])
			}
			return val.String()
		}
		i = j + 1
	}
	return ""
}

// reverseName reverses s by character, so that a suffix of names is a
// prefix of reversed names, and stays valid UTF-8.
func reverseName(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// prefixEnd returns the least string greater than every string with
// prefix p ("" if none: p is all 0xff bytes).
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// insertNames indexes the names of certificate id in the current savepoint.
func (t *sqliteTx) insertNames(id int64, names []string, text string) error {
	for _, n := range names {
		if _, err := t.exec("index certificate name", qInsertCertName, reverseName(n), id); err != nil {
			return err
		}
	}
	_, err := t.exec("index certificate names", qInsertCertSearch, id, text)
	return err
}

// backfillNames fills names, certificate_names and certificate_search for
// the certificates recorded before migration 0013, in one transaction so an
// interrupted open starts over.
func backfillNames(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("backfill names: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	const batch = 1000
	for last := int64(0); ; {
		rows, err := tx.QueryContext(ctx, "SELECT id, subject, sans FROM certificates WHERE id > ? ORDER BY id LIMIT ?", last, batch)
		if err != nil {
			return fmt.Errorf("backfill names: %w", err)
		}
		type row struct {
			id    int64
			names []string
		}
		var todo []row
		for rows.Next() {
			var r row
			var subject, sans string
			if err := rows.Scan(&r.id, &subject, &sans); err != nil {
				rows.Close()
				return fmt.Errorf("backfill names: %w", err)
			}
			r.names = certNames(subject, splitSANs(sans))
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("backfill names: %w", err)
		}
		for _, r := range todo {
			if _, err := tx.ExecContext(ctx, "UPDATE certificates SET names = ? WHERE id = ?", namesText(r.names), r.id); err != nil {
				return fmt.Errorf("backfill names: %w", err)
			}
			for _, n := range r.names {
				if _, err := tx.ExecContext(ctx, qInsertCertName, reverseName(n), r.id); err != nil {
					return fmt.Errorf("backfill names: %w", err)
				}
			}
			last = r.id
		}
		if len(todo) < batch {
			break
		}
	}
	// The search index reads names from certificates (external content).
	if _, err := tx.ExecContext(ctx, "INSERT INTO certificate_search (certificate_search) VALUES ('rebuild')"); err != nil {
		return fmt.Errorf("backfill names: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("backfill names: %w", err)
	}
	return nil
}

// CertNames returns the distinct lower-cased names a certificate is found by
// (its subject common name and SANs): every backend indexes these.
func CertNames(subject string, sans []string) []string { return certNames(subject, sans) }

// ReverseName reverses a name by character, as the backends' name indexes
// store it so that a suffix filter is a prefix range.
func ReverseName(s string) string { return reverseName(s) }
