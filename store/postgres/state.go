package postgres

import (
	"context"
	"fmt"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// ScanAuditFrom calls fn with every audit event whose Seq is at least from,
// in Seq order. Start-up verification reads only the tail after the newest
// checkpoint this way.
func (s *Store) ScanAuditFrom(ctx context.Context, from int64, fn func(audit.Event) error) error {
	rows, err := s.query(ctx, "SELECT "+auditColumns+" FROM audit_events WHERE seq >= ? ORDER BY seq", from)
	if err != nil {
		return fmt.Errorf("scan audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("scan audit: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanAllCertificates calls fn with every certificate record, archived ones
// included, in record id order. Offline verification compares each with
// what the audit chain says of it.
func (s *Store) ScanAllCertificates(ctx context.Context, fn func(store.CertRecord) error) error {
	return scanEach(ctx, s, "scan certificates", "SELECT "+certColumns+" FROM certificates ORDER BY id", scanCert, fn)
}

// BlockedKeys returns every blocked key, oldest first.
func (s *Store) BlockedKeys(ctx context.Context) ([]store.BlockedKey, error) {
	rows, err := s.query(ctx, "SELECT spki_sha256, reason, source, actor, created FROM blocked_keys ORDER BY created, spki_sha256")
	if err != nil {
		return nil, fmt.Errorf("list blocked keys: %w", err)
	}
	defer rows.Close()
	var out []store.BlockedKey
	for rows.Next() {
		var k store.BlockedKey
		var created int64
		if err := rows.Scan(&k.SPKIHash, &k.Reason, &k.Source, &k.Actor, &created); err != nil {
			return nil, fmt.Errorf("list blocked keys: %w", err)
		}
		k.Created = fromNanos(created)
		out = append(out, k)
	}
	return out, rows.Err()
}
