package store

import (
	"context"
	"fmt"
	"time"
)

// ExpiringCert is a live certificate an expiry notice may be due for, with
// what has been sent about it already.
type ExpiringCert struct {
	ID        int64
	IssuerID  string
	Serial    string
	Subject   string
	SANs      []string
	NotBefore time.Time
	NotAfter  time.Time
	Profile   string
	Requester string
	Channel   string
	// Notified is the smallest threshold whose notice was delivered; 0 if
	// none was.
	Notified time.Duration
}

// ExpiryCursor is where a page of ExpiringCertificates ends: the next page
// starts after it. The zero cursor starts at the beginning.
type ExpiryCursor struct {
	NotAfter time.Time
	ID       int64
}

// ExpiryNotice records that a receiver accepted the notice sent for one
// certificate at one threshold.
type ExpiryNotice struct {
	IssuerID  string
	Serial    string
	Threshold time.Duration // how long before NotAfter the notice was due
	Event     string        // e.g. "certificate.expiring"
	NotAfter  time.Time
	Delivered time.Time
}

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
func (s *SQLite) ExpiringCertificates(ctx context.Context, from, until time.Time, after ExpiryCursor, limit int) ([]ExpiringCert, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	start := nanos(after.NotAfter)
	rows, err := s.read.QueryContext(ctx, qExpiringCertificates, nanos(from), nanos(until), start, start, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("expiring certificates: %w", err)
	}
	defer rows.Close()
	var out []ExpiringCert
	for rows.Next() {
		var c ExpiringCert
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

// RecordExpiryNotice implements Tx.
func (t *sqliteTx) RecordExpiryNotice(n ExpiryNotice) error {
	if n.IssuerID == "" || n.Serial == "" || n.Threshold <= 0 || n.Event == "" || n.Delivered.IsZero() {
		return fmt.Errorf("record expiry notice %s/%s: incomplete", n.IssuerID, n.Serial)
	}
	_, err := t.exec("record expiry notice "+n.IssuerID+"/"+n.Serial, qRecordExpiryNotice,
		n.IssuerID, n.Serial, int64(n.Threshold), n.Event, nanos(n.NotAfter), nanos(n.Delivered))
	return err
}
