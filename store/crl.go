package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// RevokedEntry is one revoked certificate as a CRL lists it.
type RevokedEntry struct {
	Serial    string // lower-case hex, as CertRecord.Serial
	RevokedAt time.Time
	Reason    int // RFC 5280 §5.3.1 CRLReason code
	// InvalidityDate is zero when none was given (RFC 5280 §5.3.2).
	InvalidityDate time.Time
}

// CRLRecord is the latest CRL of one issuer and shard.
type CRLRecord struct {
	IssuerID   string
	Shard      int // 0: the issuer's whole CRL; 1..N: a partition
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
}

// CRLHead describes the latest CRL of one issuer and shard without its DER,
// which may be tens of MiB.
type CRLHead struct {
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	Size       int // length of the DER
}

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

func (t *sqliteTx) PutCRL(c CRLRecord) error {
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
		return fmt.Errorf("%s: number %d is not above the stored one: %w", what, c.Number, ErrDuplicate)
	}
	return nil
}

// RevokedCertificates implements Store.
func (s *SQLite) RevokedCertificates(ctx context.Context, issuerID string, shard int, notAfterSince time.Time, fn func(RevokedEntry) error) error {
	since := nanos(notAfterSince)
	rows, err := s.read.QueryContext(ctx, qRevokedCertificates, issuerID, shard, since, issuerID, since, since, shard)
	if err != nil {
		return fmt.Errorf("revoked certificates of %s/%d: %w", issuerID, shard, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e RevokedEntry
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

func scanCRL(sc interface{ Scan(...any) error }) (CRLRecord, error) {
	var c CRLRecord
	var this, next int64
	if err := sc.Scan(&c.IssuerID, &c.Shard, &c.Number, &this, &next, &c.DER); err != nil {
		return CRLRecord{}, err
	}
	c.ThisUpdate, c.NextUpdate = fromNanos(this), fromNanos(next)
	return c, nil
}

// CRL implements Store.
func (s *SQLite) CRL(ctx context.Context, issuerID string, shard int) (CRLRecord, error) {
	c, err := scanCRL(s.read.QueryRowContext(ctx, "SELECT "+crlColumns+" FROM crl_state WHERE issuer_id = ? AND shard = ?", issuerID, shard))
	if err != nil {
		return CRLRecord{}, notFound(err, "crl "+issuerID+"/"+strconv.Itoa(shard))
	}
	return c, nil
}

// CRLHead implements Store.
func (s *SQLite) CRLHead(ctx context.Context, issuerID string, shard int) (CRLHead, error) {
	var h CRLHead
	var this, next int64
	err := s.read.QueryRowContext(ctx, qCRLHead, issuerID, shard).Scan(&h.Number, &this, &next, &h.Size)
	if err != nil {
		return CRLHead{}, notFound(err, "crl "+issuerID+"/"+strconv.Itoa(shard))
	}
	h.ThisUpdate, h.NextUpdate = fromNanos(this), fromNanos(next)
	return h, nil
}

// CRLs implements Store.
func (s *SQLite) CRLs(ctx context.Context, issuerID string) ([]CRLRecord, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT "+crlColumns+" FROM crl_state WHERE issuer_id = ? ORDER BY shard", issuerID)
	if err != nil {
		return nil, fmt.Errorf("list crls of %s: %w", issuerID, err)
	}
	defer rows.Close()
	var out []CRLRecord
	for rows.Next() {
		c, err := scanCRL(rows)
		if err != nil {
			return nil, fmt.Errorf("list crls of %s: %w", issuerID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
