package store

import (
	"fmt"
	"time"
)

// Expired names a kind of record that PurgeExpired deletes once it has been
// dead for long enough. Certificates and audit events are not among them:
// they are never deleted (certificates are archived instead).
type Expired int

// The records PurgeExpired deletes, and the time each is compared with.
const (
	// ExpiredNonces are spent ACME nonces whose expiry is before.
	ExpiredNonces Expired = iota + 1
	// ExpiredOCSPResponses are pre-signed OCSP responses whose nextUpdate
	// is before.
	ExpiredOCSPResponses
	// ExpiredACMEOrders are ACME orders whose expiry is before, but for
	// those whose certificate is not yet archived. Their certificates stay
	// in the record.
	ExpiredACMEOrders
	// ExpiredACMEAuthzs are ACME authorizations whose expiry is before,
	// deleted with their challenges.
	ExpiredACMEAuthzs
	// ExpiredNotices are the delivered expiry notices of certificates whose
	// notAfter is before.
	ExpiredNotices
)

// String names the records as logs and audit events do.
func (e Expired) String() string {
	switch e {
	case ExpiredNonces:
		return "acme_nonces"
	case ExpiredOCSPResponses:
		return "ocsp_responses"
	case ExpiredACMEOrders:
		return "acme_orders"
	case ExpiredACMEAuthzs:
		return "acme_authzs"
	case ExpiredNotices:
		return "expiry_notices"
	}
	return fmt.Sprintf("Expired(%d)", int(e))
}

// Each purge deletes at most limit rows chosen through an index on the
// compared time, so a batch costs the same however much history there is.
var purgeQueries = map[Expired][]string{
	ExpiredNonces: {"DELETE FROM acme_nonces WHERE nonce IN (SELECT nonce FROM acme_nonces WHERE expires < ? ORDER BY expires LIMIT ?)"},
	ExpiredOCSPResponses: {`DELETE FROM ocsp_responses WHERE rowid IN
		(SELECT rowid FROM ocsp_responses WHERE next_update < ? ORDER BY next_update LIMIT ?)`},
	// An order whose certificate is live stays: it says which account and
	// endpoint the certificate belongs to (ACMECertOrder).
	ExpiredACMEOrders: {`DELETE FROM acme_orders WHERE id IN (SELECT id FROM acme_orders o WHERE expires < ?
		AND NOT EXISTS (SELECT 1 FROM certificates c WHERE o.cert_serial != '' AND c.serial = o.cert_serial AND c.archived = 0)
		ORDER BY expires, id LIMIT ?)`},
	// The same ordered selection twice in one transaction picks the same
	// authorizations: their challenges first (a foreign key), then them.
	ExpiredACMEAuthzs: {
		`DELETE FROM acme_challenges WHERE authz_id IN
			(SELECT id FROM acme_authzs WHERE expires < ? ORDER BY expires, id LIMIT ?)`,
		"DELETE FROM acme_authzs WHERE id IN (SELECT id FROM acme_authzs WHERE expires < ? ORDER BY expires, id LIMIT ?)",
	},
	ExpiredNotices: {`DELETE FROM expiry_notices WHERE rowid IN
		(SELECT rowid FROM expiry_notices WHERE not_after < ? ORDER BY not_after LIMIT ?)`},
}

// qArchiveCertificates marks up to limit live certificates expired before a
// time as archived, oldest expiry first, found through certificates_live_expiry.
const qArchiveCertificates = `UPDATE certificates SET archived = ? WHERE id IN
	(SELECT id FROM certificates WHERE archived = 0 AND not_after < ? ORDER BY not_after LIMIT ?)`

// ArchiveCertificates implements Tx.
func (t *sqliteTx) ArchiveCertificates(expiredBefore, at time.Time, limit int) (int64, error) {
	if at.IsZero() || limit <= 0 {
		return 0, fmt.Errorf("archive certificates: zero time or limit %d", limit)
	}
	res, err := t.exec("archive certificates", qArchiveCertificates, nanos(at), nanos(expiredBefore), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("archive certificates: %w", err)
	}
	return n, nil
}

// PurgeExpired implements Tx.
func (t *sqliteTx) PurgeExpired(what Expired, before time.Time, limit int) (int64, error) {
	qs, ok := purgeQueries[what]
	if !ok || limit <= 0 {
		return 0, fmt.Errorf("purge %s: unknown records or limit %d", what, limit)
	}
	// The count is that of the last statement: the records themselves, not
	// the challenges deleted with authorizations.
	var n int64
	for _, q := range qs {
		res, err := t.exec("purge "+what.String(), q, nanos(before), limit)
		if err != nil {
			return 0, err
		}
		if n, err = res.RowsAffected(); err != nil {
			return 0, fmt.Errorf("purge %s: %w", what, err)
		}
	}
	return n, nil
}
