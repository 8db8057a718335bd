package store

import "context"

// OpenWithoutLog opens a store as Open does, except that InsertCertificate
// does not append to the transparency log. It exists only in the test
// binary, for the external benchmark that prices the append on whole
// issuance (BenchmarkIssuanceLogOverhead); no production path can open a
// store that leaves certificates unlogged.
func OpenWithoutLog(ctx context.Context, cfg Config) (*SQLite, error) {
	cfg.withoutLog = true
	return Open(ctx, cfg)
}
