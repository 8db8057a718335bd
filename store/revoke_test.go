package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certAt returns the certificate issuer recorded under serial.
func certAt(t testing.TB, s *SQLite, issuer, serial string) CertRecord {
	t.Helper()
	got, _, err := s.Certificates(context.Background(), CertFilter{IssuerID: issuer, Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Certificates(%s/%s) = %d records, want 1", issuer, serial, len(got))
	}
	return got[0]
}

// TestRevokedIndex checks that listing an issuer's revoked certificates, as
// CRL generation will, is served by the partial index.
func TestRevokedIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	if got := queryPlan(t, s, "SELECT serial, revoked_at FROM certificates WHERE issuer_id = ? AND revoked_at != 0 ORDER BY revoked_at", "int"); !strings.Contains(got, "certificates_revoked") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("query plan %q does not use certificates_revoked for both filter and order", got)
	}
}

// TestMigrateRevocation opens a database written before migration 0003,
// with a certificate revoked by hand, and checks the record survives.
func TestMigrateRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)"}
	for _, name := range []string{"migrations/0001_init.sql", "migrations/0002_acme.sql"} {
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, string(body))
	}
	stmts = append(stmts,
		"INSERT INTO schema_migrations (version, applied) VALUES (1, 1), (2, 2)",
		"INSERT INTO keys (id, purpose, algorithm, backend, state, public_key, created) VALUES ('k', 'intermediate', 'ECDSA-P256', 'passphrase', 'active', x'00', 1)",
		"INSERT INTO issuers (id, kind, key_id, cert_der, state, created) VALUES ('int', 'intermediate', 'k', x'00', 'active', 1)",
		`INSERT INTO certificates (issuer_id, serial, subject, sans, not_before, not_after, key_algorithm, profile,
			requester, channel, der, created, revoked_at, revoke_reason) VALUES
			('int', 'aa', 'CN=a', '', 1, 2, 'ECDSA-P256', 'p', 'cli', 'cli', x'00', 1, 5000000000, 1),
			('int', 'bb', 'CN=b', '', 1, 2, 'ECDSA-P256', 'p', 'cli', 'cli', x'00', 1, 0, 0)`,
	)
	for _, q := range stmts {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, Config{Path: path})
	aa := certAt(t, s, "int", "aa")
	if !aa.RevokedAt.Equal(time.Unix(5, 0)) || aa.RevokeReason != 1 || !aa.InvalidityDate.IsZero() {
		t.Errorf("migrated revoked record = %+v", aa)
	}
	at := testStart
	mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate("int", "bb", at, 3, at.Add(-time.Hour)) })
	bb := certAt(t, s, "int", "bb")
	if !bb.RevokedAt.Equal(at) || bb.RevokeReason != 3 || !bb.InvalidityDate.Equal(at.Add(-time.Hour)) {
		t.Errorf("revoked after migration = %+v", bb)
	}
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN details for q, joined by "; ".
func queryPlan(t *testing.T, s *SQLite, q string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}
