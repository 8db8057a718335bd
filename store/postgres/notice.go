package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// qExpiringCertificates pages, by expiry then id, through the live
// certificates of certificates_live_expiry expiring in (from, until] that
// are neither revoked (on hold included) nor replaced by an unrevoked
// certificate (certificates_replaces, RFC 9773 renewals).
const qExpiringCertificates = `SELECT c.id, c.issuer_id, c.serial, c.subject, c.sans, c.not_before, c.not_after,
		c.profile, c.requester, c.channel,
		COALESCE((SELECT MIN(n.threshold) FROM expiry_notices n WHERE n.issuer_id = c.issuer_id AND n.serial = c.serial), 0)
	FROM certificates c
	WHERE c.archived = 0 AND c.not_after > ? AND c.not_after <= ? AND c.revoked_at = 0
		AND (c.not_after > ? OR (c.not_after = ? AND c.id > ?))
		AND NOT EXISTS (SELECT 1 FROM certificates r WHERE r.replaces != '' AND r.replaces = c.serial AND r.revoked_at = 0)
	ORDER BY c.not_after, c.id LIMIT ?`

const qRecordExpiryNotice = `INSERT INTO expiry_notices (issuer_id, serial, threshold, event, not_after, delivered)
	VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (issuer_id, serial, threshold) DO NOTHING`

// ExpiringCertificates implements Store.
func (s *Store) ExpiringCertificates(ctx context.Context, from, until time.Time, after store.ExpiryCursor, limit int) ([]store.ExpiringCert, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	start := nanos(after.NotAfter)
	rows, err := s.query(ctx, qExpiringCertificates, nanos(from), nanos(until), start, start, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("expiring certificates: %w", err)
	}
	defer rows.Close()
	var out []store.ExpiringCert
	for rows.Next() {
		var c store.ExpiringCert
		var sans string
		var nb, na, notified int64
		if err := rows.Scan(&c.ID, &c.IssuerID, &c.Serial, &c.Subject, &sans, &nb, &na, &c.Profile, &c.Requester,
			&c.Channel, &notified); err != nil {
			return nil, fmt.Errorf("expiring certificates: %w", err)
		}
		c.SANs, c.NotBefore, c.NotAfter, c.Notified = splitSANs(sans), fromNanos(nb), fromNanos(na), time.Duration(notified)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("expiring certificates: %w", err)
	}
	return out, nil
}

// RecordExpiryNotice implements store.Tx.
func (t *pgTx) RecordExpiryNotice(n store.ExpiryNotice) error {
	if n.IssuerID == "" || n.Serial == "" || n.Threshold <= 0 || n.Event == "" || n.Delivered.IsZero() {
		return fmt.Errorf("record expiry notice %s/%s: incomplete", n.IssuerID, n.Serial)
	}
	_, err := t.exec("record expiry notice "+n.IssuerID+"/"+n.Serial, qRecordExpiryNotice,
		n.IssuerID, n.Serial, int64(n.Threshold), n.Event, nanos(n.NotAfter), nanos(n.Delivered))
	return err
}
