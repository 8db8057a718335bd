package store

import (
	"context"
	"fmt"
	"time"
)

// OCSPResponse is a pre-signed OCSP response for one certificate and CertID
// hash algorithm.
type OCSPResponse struct {
	IssuerID   string
	Serial     string // lower-case hex, as in CertRecord
	Hash       string // CertID hash algorithm: "sha1" or "sha256"
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
}

// CertStatus is what an OCSP response says about a certificate.
type CertStatus struct {
	ID           int64
	Serial       string
	NotAfter     time.Time
	RevokedAt    time.Time // zero: not revoked
	RevokeReason int
}

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

// PutOCSPResponses implements Tx.
func (t *sqliteTx) PutOCSPResponses(rs []OCSPResponse) error {
	if len(rs) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(t.ctx, qPutOCSPResponse)
	if err != nil {
		return fmt.Errorf("put ocsp responses: %w", err)
	}
	defer st.Close()
	for _, r := range rs {
		if r.IssuerID == "" || r.Serial == "" || r.Hash == "" || len(r.DER) == 0 {
			return fmt.Errorf("put ocsp response %s/%s/%s: incomplete", r.IssuerID, r.Serial, r.Hash)
		}
		if _, err := st.ExecContext(t.ctx, r.IssuerID, r.Serial, r.Hash, r.DER, nanos(r.ThisUpdate), nanos(r.NextUpdate)); err != nil {
			return fmt.Errorf("put ocsp response %s/%s/%s: %w", r.IssuerID, r.Serial, r.Hash, err)
		}
	}
	return nil
}

// PurgeOCSPResponses implements Tx.
func (t *sqliteTx) PurgeOCSPResponses(before time.Time) (int64, error) {
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
func (s *SQLite) OCSPResponses(ctx context.Context, issuerID string, now time.Time, fn func(OCSPResponse) error) error {
	rows, err := s.read.QueryContext(ctx, qOCSPResponses, issuerID, nanos(now))
	if err != nil {
		return fmt.Errorf("ocsp responses of %s: %w", issuerID, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := OCSPResponse{IssuerID: issuerID}
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
func (s *SQLite) CertStatuses(ctx context.Context, issuerID string, now time.Time, fn func(CertStatus) error) error {
	var after int64
	page := make([]CertStatus, 0, certStatusPage)
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

func (s *SQLite) certStatusPage(ctx context.Context, issuerID string, now time.Time, after int64, page *[]CertStatus) error {
	rows, err := s.read.QueryContext(ctx, qCertStatuses, issuerID, nanos(now), after, certStatusPage)
	if err != nil {
		return fmt.Errorf("certificate statuses of %s: %w", issuerID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c CertStatus
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
