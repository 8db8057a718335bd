package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/store"
)

// certStatusPage bounds the rows one CertStatuses query reads: each page is
// its own short read, so no read transaction is held open while the caller
// signs, and memory stays bounded whatever the number of certificates.
const certStatusPage = 1000

const (
	qPutOCSPResponse = `INSERT INTO ocsp_responses (issuer_id, serial, hash, der, this_update, next_update)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer_id, serial, hash) DO UPDATE SET der = excluded.der,
			this_update = excluded.this_update, next_update = excluded.next_update
		WHERE excluded.this_update >= ocsp_responses.this_update`
	qPurgeOCSPResponses = "DELETE FROM ocsp_responses WHERE next_update < ?"
	qOCSPResponses      = `SELECT serial, hash, der, this_update, next_update FROM ocsp_responses
		WHERE issuer_id = ? AND next_update > ?`
	// archived = 0 changes no answer (archived certificates expired long
	// ago) but lets the scan use certificates_live, an id-ordered index of
	// the issuer's live certificates, instead of sorting all of them.
	qCertStatuses = `SELECT id, serial, not_after, revoked_at, revoke_reason FROM certificates
		WHERE issuer_id = ? AND archived = 0 AND not_after > ? AND id > ? ORDER BY id LIMIT ?`
)

// PutOCSPResponses implements store.Tx.
func (t *pgTx) PutOCSPResponses(rs []store.OCSPResponse) error {
	if len(rs) == 0 {
		return nil
	}
	// One round trip for the lot: the responder refreshes thousands at a time.
	var b pgx.Batch
	q := rebind(qPutOCSPResponse)
	for _, r := range rs {
		if r.IssuerID == "" || r.Serial == "" || r.Hash == "" || len(r.DER) == 0 {
			return fmt.Errorf("put ocsp response %s/%s/%s: incomplete", r.IssuerID, r.Serial, r.Hash)
		}
		b.Queue(q, r.IssuerID, r.Serial, r.Hash, r.DER, nanos(r.ThisUpdate), nanos(r.NextUpdate))
	}
	if err := t.g.flush(t.ctx, t.tx); err != nil { // the savepoint first
		return fmt.Errorf("put ocsp responses: %w", err)
	}
	if err := t.tx.SendBatch(t.ctx, &b).Close(); err != nil {
		return fmt.Errorf("put ocsp responses: %w", err)
	}
	return nil
}

// PurgeOCSPResponses implements store.Tx.
func (t *pgTx) PurgeOCSPResponses(before time.Time) (int64, error) {
	res, err := t.exec("purge ocsp responses", qPurgeOCSPResponses, nanos(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge ocsp responses: %w", err)
	}
	return n, nil
}

// OCSPResponses implements Store.
func (s *Store) OCSPResponses(ctx context.Context, issuerID string, now time.Time, fn func(store.OCSPResponse) error) error {
	rows, err := s.query(ctx, qOCSPResponses, issuerID, nanos(now))
	if err != nil {
		return fmt.Errorf("ocsp responses of %s: %w", issuerID, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := store.OCSPResponse{IssuerID: issuerID}
		var this, next int64
		if err := rows.Scan(&r.Serial, &r.Hash, &r.DER, &this, &next); err != nil {
			return fmt.Errorf("ocsp responses of %s: %w", issuerID, err)
		}
		r.ThisUpdate, r.NextUpdate = fromNanos(this), fromNanos(next)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ocsp responses of %s: %w", issuerID, err)
	}
	return nil
}

// CertStatuses implements Store.
func (s *Store) CertStatuses(ctx context.Context, issuerID string, now time.Time, fn func(store.CertStatus) error) error {
	var after int64
	page := make([]store.CertStatus, 0, certStatusPage)
	for {
		page = page[:0]
		if err := s.certStatusPage(ctx, issuerID, now, after, &page); err != nil {
			return err
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(page) < certStatusPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

func (s *Store) certStatusPage(ctx context.Context, issuerID string, now time.Time, after int64, page *[]store.CertStatus) error {
	rows, err := s.query(ctx, qCertStatuses, issuerID, nanos(now), after, certStatusPage)
	if err != nil {
		return fmt.Errorf("certificate statuses of %s: %w", issuerID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c store.CertStatus
		var na, revoked int64
		if err := rows.Scan(&c.ID, &c.Serial, &na, &revoked, &c.RevokeReason); err != nil {
			return fmt.Errorf("certificate statuses of %s: %w", issuerID, err)
		}
		c.NotAfter, c.RevokedAt = fromNanos(na), fromNanos(revoked)
		*page = append(*page, c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("certificate statuses of %s: %w", issuerID, err)
	}
	return nil
}
