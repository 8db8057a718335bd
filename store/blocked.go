package store

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"fmt"
	"time"
)

// BlockedKey is a public key no certificate or ACME account may use again.
type BlockedKey struct {
	SPKIHash []byte // SHA-256 of the DER SubjectPublicKeyInfo
	Reason   string // e.g. "keyCompromise"
	Source   string // what blocked it: "revocation:<serial>" or "manual"
	Actor    string
	Created  time.Time
}

const (
	qBlockKey = "INSERT INTO blocked_keys (spki_sha256, reason, source, actor, created) VALUES (?, ?, ?, ?, ?)"
	// Unexpired, unrevoked certificates with a key: the siblings a blocked
	// key revokes.
	qToBlockWithKey = "SELECT " + certColumns + " FROM certificates WHERE spki_sha256 = ? AND (revoked_at = 0 OR revoke_reason = 6) AND not_after > ? ORDER BY id"
)

// KeyBlocked implements Store.
func (s *SQLite) KeyBlocked(ctx context.Context, spkiHash []byte) (BlockedKey, error) {
	var k BlockedKey
	var created int64
	err := s.read.QueryRowContext(ctx, "SELECT spki_sha256, reason, source, actor, created FROM blocked_keys WHERE spki_sha256 = ?",
		spkiHash).Scan(&k.SPKIHash, &k.Reason, &k.Source, &k.Actor, &created)
	if err != nil {
		return BlockedKey{}, notFound(err, fmt.Sprintf("blocked key %x", spkiHash))
	}
	k.Created = fromNanos(created)
	return k, nil
}

func (t *sqliteTx) BlockKey(k BlockedKey) error {
	if len(k.SPKIHash) != sha256.Size {
		return fmt.Errorf("block key: hash is %d bytes, want %d", len(k.SPKIHash), sha256.Size)
	}
	_, err := t.exec("block key", qBlockKey, k.SPKIHash, k.Reason, k.Source, k.Actor, nanos(k.Created))
	return err
}

func (t *sqliteTx) CertificatesToBlockWithKey(spkiHash []byte, now time.Time) ([]CertRecord, error) {
	rows, err := t.tx.QueryContext(t.ctx, qToBlockWithKey, spkiHash, nanos(now))
	if err != nil {
		return nil, fmt.Errorf("certificates with key: %w", err)
	}
	defer rows.Close()
	var out []CertRecord
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

// SPKIHash is the SHA-256 of a DER SubjectPublicKeyInfo: the key hash the
// blocklist and certificate records keep.
func SPKIHash(spki []byte) []byte {
	sum := sha256.Sum256(spki)
	return sum[:]
}

// spkiHashVersion is the migration that added certificates.spki_sha256.
const spkiHashVersion = 5

// backfillSPKI fills the key hash of certificates recorded before the
// column existed, in batches, so a blocked key finds them too.
func backfillSPKI(ctx context.Context, db *sql.DB) error {
	const batch = 1000
	for {
		rows, err := db.QueryContext(ctx, "SELECT id, der FROM certificates WHERE length(spki_sha256) = 0 LIMIT ?", batch)
		if err != nil {
			return fmt.Errorf("backfill key hashes: %w", err)
		}
		type row struct {
			id   int64
			hash []byte
		}
		var todo []row
		for rows.Next() {
			var id int64
			var der []byte
			if err := rows.Scan(&id, &der); err != nil {
				rows.Close()
				return fmt.Errorf("backfill key hashes: %w", err)
			}
			// A record whose DER does not parse gets a one-byte marker:
			// never a key hash, and not looked at again.
			hash := []byte{0}
			if cert, err := x509.ParseCertificate(der); err == nil {
				hash = SPKIHash(cert.RawSubjectPublicKeyInfo)
			}
			todo = append(todo, row{id, hash})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("backfill key hashes: %w", err)
		}
		if len(todo) == 0 {
			return nil
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("backfill key hashes: %w", err)
		}
		for _, r := range todo {
			if _, err := tx.ExecContext(ctx, "UPDATE certificates SET spki_sha256 = ? WHERE id = ?", r.hash, r.id); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("backfill key hashes: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("backfill key hashes: %w", err)
		}
		if len(todo) < batch {
			return nil
		}
	}
}
