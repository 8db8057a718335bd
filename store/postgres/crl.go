package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/store"
)

const (
	qPutCRL = `INSERT INTO crl_state (issuer_id, shard, number, this_update, next_update, der) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer_id, shard) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
		next_update = excluded.next_update, der = excluded.der WHERE excluded.number > crl_state.number`

	// qRevokedCertificates has two parts so that each is an index range: the
	// certificates that expire at or after since (certificates_crl, a
	// covering index), and the few that expired before it but were revoked
	// since (certificates_revoked), so that a late revocation of an expired
	// certificate still appears once. The unary plus keeps the planner off
	// certificates_crl for the second part, whose range there (every expired
	// revocation ever) only grows. archived = 0 matches the partial index:
	// an archived certificate expired more than tidy.retention before any
	// CRL's since but a first CRL's (which then leaves it out: RFC 5280 §3.3
	// lets an entry go once a CRL issued after the certificate's expiry has
	// listed it). The second part keeps archived rows: a late revocation of
	// one is still listed once.
	qRevokedCertificates = `SELECT serial, revoked_at, revoke_reason, invalidity_date FROM certificates
		WHERE issuer_id = ? AND crl_shard = ? AND revoked_at != 0 AND archived = 0 AND not_after >= ?
		UNION ALL
		SELECT serial, revoked_at, revoke_reason, invalidity_date FROM certificates
		WHERE issuer_id = ? AND revoked_at != 0 AND revoked_at >= ? AND +not_after < ? AND +crl_shard = ?`

	qCRLHead = "SELECT number, this_update, next_update, length(der) FROM crl_state WHERE issuer_id = ? AND shard = ?"

	crlColumns = "issuer_id, shard, number, this_update, next_update, der"
)

func (t *pgTx) PutCRL(c store.CRLRecord) error {
	what := "put crl " + c.IssuerID + "/" + strconv.Itoa(c.Shard)
	if c.Number <= 0 {
		return fmt.Errorf("%s: number %d is not positive", what, c.Number)
	}
	res, err := t.exec(what, qPutCRL, c.IssuerID, c.Shard, c.Number, nanos(c.ThisUpdate), nanos(c.NextUpdate), c.DER)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: number %d is not above the stored one: %w", what, c.Number, store.ErrDuplicate)
	}
	return nil
}

// RevokedCertificates implements Store.
func (s *Store) RevokedCertificates(ctx context.Context, issuerID string, shard int, notAfterSince time.Time, fn func(store.RevokedEntry) error) error {
	since := nanos(notAfterSince)
	rows, err := s.query(ctx, qRevokedCertificates, issuerID, shard, since, issuerID, since, since, shard)
	if err != nil {
		return fmt.Errorf("revoked certificates of %s/%d: %w", issuerID, shard, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.RevokedEntry
		var at, invalidity int64
		if err := rows.Scan(&e.Serial, &at, &e.Reason, &invalidity); err != nil {
			return fmt.Errorf("revoked certificates of %s/%d: %w", issuerID, shard, err)
		}
		e.RevokedAt, e.InvalidityDate = fromNanos(at), fromNanos(invalidity)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("revoked certificates of %s/%d: %w", issuerID, shard, err)
	}
	return nil
}

func scanCRL(sc interface{ Scan(...any) error }) (store.CRLRecord, error) {
	var c store.CRLRecord
	var this, next int64
	if err := sc.Scan(&c.IssuerID, &c.Shard, &c.Number, &this, &next, &c.DER); err != nil {
		return store.CRLRecord{}, err
	}
	c.ThisUpdate, c.NextUpdate = fromNanos(this), fromNanos(next)
	return c, nil
}

// CRL implements Store.
func (s *Store) CRL(ctx context.Context, issuerID string, shard int) (store.CRLRecord, error) {
	c, err := scanCRL(s.queryRow(ctx, "SELECT "+crlColumns+" FROM crl_state WHERE issuer_id = ? AND shard = ?", issuerID, shard))
	if err != nil {
		return store.CRLRecord{}, notFound(err, "crl "+issuerID+"/"+strconv.Itoa(shard))
	}
	return c, nil
}

// store.CRLHead implements Store.
func (s *Store) CRLHead(ctx context.Context, issuerID string, shard int) (store.CRLHead, error) {
	var h store.CRLHead
	var this, next int64
	err := s.queryRow(ctx, qCRLHead, issuerID, shard).Scan(&h.Number, &this, &next, &h.Size)
	if err != nil {
		return store.CRLHead{}, notFound(err, "crl "+issuerID+"/"+strconv.Itoa(shard))
	}
	h.ThisUpdate, h.NextUpdate = fromNanos(this), fromNanos(next)
	return h, nil
}

// CRLs implements Store.
func (s *Store) CRLs(ctx context.Context, issuerID string) ([]store.CRLRecord, error) {
	rows, err := s.query(ctx, "SELECT "+crlColumns+" FROM crl_state WHERE issuer_id = ? ORDER BY shard", issuerID)
	if err != nil {
		return nil, fmt.Errorf("list crls of %s: %w", issuerID, err)
	}
	defer rows.Close()
	var out []store.CRLRecord
	for rows.Next() {
		c, err := scanCRL(rows)
		if err != nil {
			return nil, fmt.Errorf("list crls of %s: %w", issuerID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
