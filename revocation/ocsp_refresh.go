package revocation

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// refreshInterval is how often the jobs must check for responses and responder
// certificates due for renewal.
func (r *Responder) refreshInterval() time.Duration {
	return max(r.cfg.Validity/8, time.Minute)
}

// Refresh first takes up the issuers an intermediate rotation added and
// drops those whose key was destroyed; then, for each served issuer, it
// rotates the responder certificate at the last refresh before half its
// life has passed (ca retires the old key) and re-signs every response with
// the new one; otherwise it signs a response for every unexpired
// certificate whose cached one is missing, says another status, or would
// pass half its validity before the next refresh. Expired entries are
// dropped. New responses are served at once and copied to the store in
// batches. Last, responder keys no longer needed are retired or destroyed
// (ca.TidyOCSPKeys); a failure there is logged, not returned. It returns
// how many responses it signed.
func (r *Responder) Refresh(ctx context.Context) (int, error) {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if err := r.sync(ctx); err != nil {
		return 0, err
	}
	signed := 0
	for _, iss := range r.idx.Load().order {
		n, err := r.refreshIssuer(ctx, iss)
		signed += n
		if err != nil {
			return signed, err
		}
	}
	r.updateCached()
	return signed, nil
}

func (r *Responder) refreshIssuer(ctx context.Context, iss *issuerState) (int, error) {
	now := r.clk.Now()
	rotated := false
	if s := iss.Signer(); r.rotationDue(s, now) {
		next, err := r.auth.NewOCSPSigner(ctx, iss.id, r.signerConfig())
		if err != nil {
			return 0, fmt.Errorf("ocsp: rotate responder certificate of %s: %w", iss.id, err)
		}
		iss.setSigner(next)
		rotated = true
		r.log.InfoContext(ctx, "ocsp responder certificate rotated", "issuer", iss.id,
			"serial", ca.SerialString(next.Certificate().SerialNumber), "previous", ca.SerialString(s.Certificate().SerialNumber))
	}
	dueBy := now.Add(r.refreshInterval())
	var batch []store.OCSPResponse
	signed := 0
	// A full disk stops the store copy, not the refresh: what is signed is
	// served from memory, and the copy is retried at the next refresh, one
	// bounded batch at a time, so a restart needs no more room than the
	// running server did.
	full := false
	persist := func(rows []store.OCSPResponse) error {
		if full {
			r.metrics.persistFull.Add(float64(len(rows)))
			return nil
		}
		err := r.persist(ctx, rows)
		if errors.Is(err, store.ErrFull) {
			full = true
			r.metrics.persistFull.Add(float64(len(rows)))
			r.log.WarnContext(ctx, "ocsp: database or disk full; responses are served from memory and stored at a later refresh",
				"issuer", iss.id, "error", err)
			return nil
		}
		return err
	}
	err := r.st.CertStatuses(ctx, iss.id, now, func(c store.CertStatus) error {
		key, err := serialKey(c.Serial)
		if err != nil {
			return nil // not a serial we could be asked about
		}
		iss.mu.RLock()
		cur := iss.entries[key]
		iss.mu.RUnlock()
		// After a rotation every response is re-signed: relying parties see
		// the new responder certificate from now on, not the retired one.
		if !rotated && cur != nil && sameStatus(cur, c.RevokedAt, c.RevokeReason) &&
			dueBy.Before(cur.thisUpdate.Add(r.cfg.Validity/2)) {
			return nil
		}
		e, rows, err := r.sign(iss, c.Serial, c.RevokedAt, c.RevokeReason, now, r.cfg.Validity)
		if err != nil {
			return err
		}
		r.put(iss, key, e)
		signed++
		batch = append(batch, rows...)
		if len(batch) >= persistBatch {
			if err := persist(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		return nil
	})
	if err != nil {
		return signed, fmt.Errorf("ocsp: refresh %s: %w", iss.id, err)
	}
	if err := persist(batch); err != nil {
		return signed, fmt.Errorf("ocsp: refresh %s: %w", iss.id, err)
	}
	iss.dropExpired(now)
	if signed > 0 {
		r.log.InfoContext(ctx, "ocsp responses signed", "issuer", iss.id, "count", signed)
	}
	if err := r.auth.TidyOCSPKeys(ctx, iss.Signer()); err != nil {
		r.log.ErrorContext(ctx, "ocsp responder keys not tidied", "issuer", iss.id, "error", err)
	}
	return signed, nil
}

func sameStatus(e *entry, revokedAt time.Time, reason int) bool {
	if revokedAt.IsZero() {
		return e.status == ocsp.Good
	}
	return e.status == ocsp.Revoked && e.revokedAt.Equal(revokedAt.UTC().Truncate(time.Second)) && e.reason == reason
}

// dropExpired forgets responses past their nextUpdate: their certificates
// expired (unexpired ones were just refreshed), or they answered "unknown".
func (s *issuerState) dropExpired(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if !now.Before(e.nextUpdate) {
			delete(s.entries, k)
		}
	}
	for k, e := range s.unknown {
		if !now.Before(e.nextUpdate) {
			delete(s.unknown, k)
		}
	}
}

func (r *Responder) put(iss *issuerState, key string, e *entry) {
	iss.mu.Lock()
	iss.entries[key] = e
	delete(iss.unknown, key)
	iss.mu.Unlock()
	r.updateCached()
}

// sign signs the responses (one per CertID hash) saying status for serial.
// status is good if revokedAt is zero, revoked otherwise, unknown if
// unknown is set by the caller through signUnknown.
func (r *Responder) sign(iss *issuerState, serial string, revokedAt time.Time, reason int, now time.Time, validity time.Duration) (*entry, []store.OCSPResponse, error) {
	status := ocsp.Good
	if !revokedAt.IsZero() {
		status = ocsp.Revoked
	}
	return r.signStatus(iss, serial, status, revokedAt, reason, now, validity)
}

func (r *Responder) signStatus(iss *issuerState, serial string, status int, revokedAt time.Time, reason int, now time.Time, validity time.Duration) (*entry, []store.OCSPResponse, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return nil, nil, fmt.Errorf("ocsp: bad serial %q", serial)
	}
	signer := iss.Signer()
	// RFC 5019 §4: thisUpdate is when the status was known correct; whole
	// seconds as in the record. A response never outlives its signer.
	this := now.UTC().Truncate(time.Second)
	next := this.Add(validity)
	if na := signer.NotAfter(); next.After(na) {
		next = na
	}
	e := &entry{status: status, thisUpdate: this, nextUpdate: next,
		lastModified: this.Format(http.TimeFormat), expires: next.Format(http.TimeFormat)}
	tmpl := ocsp.Response{Status: status, SerialNumber: n, ThisUpdate: this, NextUpdate: next}
	if status == ocsp.Revoked {
		e.revokedAt, e.reason = revokedAt.UTC().Truncate(time.Second), reason
		tmpl.RevokedAt, tmpl.RevocationReason = e.revokedAt, reason
	}
	rows := make([]store.OCSPResponse, 0, numHashes)
	for h := range numHashes {
		tmpl.IssuerHash = h.crypto()
		der, err := signer.Sign(tmpl)
		if err != nil {
			return nil, nil, fmt.Errorf("ocsp: serial %s: %w", serial, err)
		}
		r.metrics.signed.Inc()
		e.der[h], e.etag[h] = der, etag(der)
		rows = append(rows, store.OCSPResponse{IssuerID: iss.id, Serial: serial, Hash: h.String(), DER: der, ThisUpdate: this, NextUpdate: next})
	}
	return e, rows, nil
}

func (r *Responder) persist(ctx context.Context, rows []store.OCSPResponse) error {
	if len(rows) == 0 {
		return nil
	}
	if err := update(ctx, r.st, func(tx Tx) error { return tx.PutOCSPResponses(rows) }); err != nil {
		return fmt.Errorf("store ocsp responses: %w", err)
	}
	return nil
}

// persistLoop writes responses signed outside Refresh (after a revocation,
// or on a cache miss) without holding up the caller.
func (r *Responder) persistLoop() {
	defer r.done.Done()
	for {
		select {
		case rows := <-r.persistCh:
			if err := r.persist(context.Background(), rows); err != nil {
				r.log.Error("ocsp persist", "error", err)
			}
		case <-r.stop:
			for {
				select {
				case rows := <-r.persistCh:
					if err := r.persist(context.Background(), rows); err != nil {
						r.log.Error("ocsp persist", "error", err)
					}
				default:
					return
				}
			}
		}
	}
}

// persistLater queues rows for the store; if the queue is full they are
// dropped: the store copy is then stale until the next refresh, which
// compares it with the certificate's status after a restart.
func (r *Responder) persistLater(rows []store.OCSPResponse) {
	select {
	case r.persistCh <- rows:
	default:
		r.log.Warn("ocsp persist queue full; store copy refreshed later")
	}
}

// issuersChanged refreshes at once for the issuers auth serves now: a new
// intermediate's responses are signed before its first certificate is asked
// about, a destroyed one's are dropped. A failure is logged: the next
// Refresh tries again.
func (r *Responder) issuersChanged(ctx context.Context) {
	if _, err := r.Refresh(ctx); err != nil {
		r.log.ErrorContext(ctx, "OCSP responses after an issuer change", "error", err)
	}
}

// StatusChangedElsewhere re-signs the responses of the certificate with
// serial from its stored record: another node sharing the database revoked
// it (or released it from hold) and this node heard of it after the commit.
// An unknown serial is ignored.
func (r *Responder) StatusChangedElsewhere(ctx context.Context, serial string) error {
	rec, err := r.st.Certificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ocsp: status change of %s: %w", serial, err)
	}
	r.statusChanged(rec)
	return nil
}

// statusChanged re-signs a certificate's responses as soon as its
// revocation (or release from hold) is committed, so that the next request
// sees it: two signatures, in memory; the store copy follows asynchronously.
func (r *Responder) statusChanged(rec store.CertRecord) {
	iss := r.idx.Load().byID[rec.IssuerID]
	if iss == nil {
		return
	}
	key, err := serialKey(rec.Serial)
	if err != nil {
		return
	}
	now := r.clk.Now()
	if !now.Before(rec.NotAfter) {
		return
	}
	e, rows, err := r.sign(iss, rec.Serial, rec.RevokedAt, rec.RevokeReason, now, r.cfg.Validity)
	if err != nil {
		r.log.Error("ocsp re-sign after status change", "serial", rec.Serial, "error", err)
		// Serve nothing stale: a miss looks the certificate up again.
		iss.mu.Lock()
		delete(iss.entries, key)
		iss.mu.Unlock()
		return
	}
	r.put(iss, key, e)
	r.persistLater(rows)
}
