package store

import (
	"context"
	"fmt"
)

// OpenWithoutLog opens a store as Open does, except that InsertCertificate
// does not append to the transparency log. It exists only in the test
// binary, for the external benchmark that prices the append on whole
// issuance (BenchmarkIssuanceLogOverhead); no production path can open a
// store that leaves certificates unlogged.
func OpenWithoutLog(ctx context.Context, cfg Config) (*SQLite, error) {
	cfg.withoutLog = true
	return Open(ctx, cfg)
}

// SetFull makes the store's database refuse to grow, as a full disk does
// (SQLITE_FULL), or lets it grow again. It exists only in the test binary,
// for the contract suite's ErrFull test (storetest.Filler).
func SetFull(ctx context.Context, s *SQLite, full bool) error {
	// max_page_count is per connection, and the writer has exactly one;
	// SQLite raises a limit below the current size to that size.
	limit := 1073741823 // SQLite's default
	if full {
		limit = 1
	}
	_, err := s.write.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", limit))
	return err
}
