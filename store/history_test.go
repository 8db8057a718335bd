package store

import (
	"context"
	"testing"
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
