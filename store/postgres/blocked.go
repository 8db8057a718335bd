package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/store"
)

const (
	qBlockKey = "INSERT INTO blocked_keys (spki_sha256, reason, source, actor, created) VALUES (?, ?, ?, ?, ?)"
	// Unexpired, unrevoked certificates with a key: the siblings a blocked
	// key revokes.
	qToBlockWithKey = "SELECT " + certColumns + " FROM certificates WHERE spki_sha256 = ? AND (revoked_at = 0 OR revoke_reason = 6) AND not_after > ? ORDER BY id"
)

// KeyBlocked implements Store.
func (s *Store) KeyBlocked(ctx context.Context, spkiHash []byte) (store.BlockedKey, error) {
	var k store.BlockedKey
	var created int64
	err := s.queryRow(ctx, "SELECT spki_sha256, reason, source, actor, created FROM blocked_keys WHERE spki_sha256 = ?",
		spkiHash).Scan(&k.SPKIHash, &k.Reason, &k.Source, &k.Actor, &created)
	if err != nil {
		return store.BlockedKey{}, notFound(err, fmt.Sprintf("blocked key %x", spkiHash))
	}
	k.Created = fromNanos(created)
	return k, nil
}

func (t *pgTx) BlockKey(k store.BlockedKey) error {
	if len(k.SPKIHash) != sha256.Size {
		return fmt.Errorf("block key: hash is %d bytes, want %d", len(k.SPKIHash), sha256.Size)
	}
	_, err := t.exec("block key", qBlockKey, k.SPKIHash, k.Reason, k.Source, k.Actor, nanos(k.Created))
	return err
}

func (t *pgTx) CertificatesToBlockWithKey(spkiHash []byte, now time.Time) ([]store.CertRecord, error) {
	rows, err := t.query(qToBlockWithKey, spkiHash, nanos(now))
	if err != nil {
		return nil, fmt.Errorf("certificates with key: %w", err)
	}
	defer rows.Close()
	var out []store.CertRecord
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, fmt.Errorf("certificates with key: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificates with key: %w", err)
	}
	return out, nil
}
