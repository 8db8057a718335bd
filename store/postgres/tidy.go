package postgres

import (
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// Each purge deletes at most limit rows chosen through an index on the
// compared time, so a batch costs the same however much history there is.
var purgeQueries = map[store.Expired][]string{
	store.ExpiredNonces: {"DELETE FROM acme_nonces WHERE nonce IN (SELECT nonce FROM acme_nonces WHERE expires < ? ORDER BY expires LIMIT ?)"},
	store.ExpiredOCSPResponses: {`DELETE FROM ocsp_responses WHERE (issuer_id, serial, hash) IN
		(SELECT issuer_id, serial, hash FROM ocsp_responses WHERE next_update < ? ORDER BY next_update LIMIT ?)`},
	// An order whose certificate is live stays: it says which account and
	// endpoint the certificate belongs to (ACMECertOrder).
	store.ExpiredACMEOrders: {`DELETE FROM acme_orders WHERE id IN (SELECT id FROM acme_orders o WHERE expires < ?
		AND NOT EXISTS (SELECT 1 FROM certificates c WHERE o.cert_serial != '' AND c.serial = o.cert_serial AND c.archived = 0)
		ORDER BY expires, id LIMIT ?)`},
	// The same ordered selection twice in one transaction picks the same
	// authorizations: their challenges first (a foreign key), then them.
	store.ExpiredACMEAuthzs: {
		`DELETE FROM acme_challenges WHERE authz_id IN
			(SELECT id FROM acme_authzs WHERE expires < ? ORDER BY expires, id LIMIT ?)`,
		"DELETE FROM acme_authzs WHERE id IN (SELECT id FROM acme_authzs WHERE expires < ? ORDER BY expires, id LIMIT ?)",
	},
	store.ExpiredNotices: {`DELETE FROM expiry_notices WHERE (issuer_id, serial, threshold) IN
		(SELECT issuer_id, serial, threshold FROM expiry_notices WHERE not_after < ? ORDER BY not_after LIMIT ?)`},
}

// qArchiveCertificates marks up to limit live certificates expired before a
// time as archived, oldest expiry first, found through certificates_live_expiry.
const qArchiveCertificates = `UPDATE certificates SET archived = ? WHERE id IN
	(SELECT id FROM certificates WHERE archived = 0 AND not_after < ? ORDER BY not_after LIMIT ?)`

// ArchiveCertificates implements store.Tx.
func (t *pgTx) ArchiveCertificates(expiredBefore, at time.Time, limit int) (int64, error) {
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

// PurgeExpired implements store.Tx.
func (t *pgTx) PurgeExpired(what store.Expired, before time.Time, limit int) (int64, error) {
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
