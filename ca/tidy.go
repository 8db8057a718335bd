package ca

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// ArchiveExpired marks every live certificate whose notAfter is before
// expiredBefore as archived, batch rows per transaction so that issuance
// waits for the writer at most one short batch at a time (the tidy job).
// Archived certificates stay in the record, found by serial and in every
// listing; they leave the partial indexes of hot paths (OCSP refresh, CRL
// generation, expiry notices), which only ever describe unexpired or
// recently expired certificates. It returns how many it archived.
func (a *Authority) ArchiveExpired(ctx context.Context, expiredBefore time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = 1000
	}
	now := a.clk.Now().UTC()
	if !expiredBefore.Before(now) {
		return 0, errorf(Malformed, "archive: %s is not in the past", expiredBefore.Format(time.RFC3339))
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int64
		err := update(ctx, a.st, func(tx Tx) error {
			var err error
			n, err = tx.ArchiveCertificates(expiredBefore, now, batch)
			return err
		})
		if err != nil {
			return total, internal("archive expired certificates", err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// ExpiringCertificates returns a page of the live, unrevoked certificates
// expiring in (from, until] that no unrevoked certificate replaces, in
// expiry order after the cursor, with the thresholds already notified
// (store.Store.ExpiringCertificates).
func (a *Authority) ExpiringCertificates(ctx context.Context, from, until time.Time, after store.ExpiryCursor, limit int) ([]store.ExpiringCert, error) {
	out, err := a.st.ExpiringCertificates(ctx, from, until, after, limit)
	if err != nil {
		return nil, internal("expiring certificates", err)
	}
	return out, nil
}
