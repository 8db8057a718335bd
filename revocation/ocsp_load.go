package revocation

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/store"
)

// load fills iss's cache from the store copy, keeping only responses that
// are still valid, verify under the issuer (signed by it, or by a responder
// certificate it issued for OCSP signing), answer for the serial and CertID
// hash their row names, agree with their sibling row, and say what the
// certificate's record says. Anything else (a corrupted, forged, swapped or
// stale row) is dropped with a warning and re-signed by the next refresh:
// the store is a copy, never an authority.
func (r *Responder) load(ctx context.Context, iss *issuerState) (int, error) {
	now := r.clk.Now()
	byserial := map[string]*entry{}
	var rejected int
	reject := func(serial, why string, err error) {
		rejected++
		r.log.WarnContext(ctx, "stored ocsp response rejected; it will be re-signed", "issuer", iss.id, "serial", serial,
			"reason", why, "error", err)
	}
	responders := verifiedResponders{issuer: iss.cert, ok: map[string]bool{}}
	err := r.st.OCSPResponses(ctx, iss.id, now, func(o store.OCSPResponse) error {
		h, ok := hashByName(o.Hash)
		if !ok {
			return nil
		}
		key, err := serialKey(o.Serial)
		if err != nil {
			return nil // a row we cannot use is re-signed by the sweep
		}
		resp, err := responders.parse(o.DER)
		if err != nil {
			reject(o.Serial, "signature or encoding", err)
			return nil
		}
		if why := checkStored(resp, o, h, now); why != "" {
			reject(o.Serial, why, nil)
			return nil
		}
		e := byserial[key]
		switch {
		case e == nil:
		case e.bad:
			return nil
		case e.thisUpdate.After(resp.ThisUpdate):
			return nil
		case e.thisUpdate.Before(resp.ThisUpdate):
			e = nil // a newer pair replaces an older one
		case e.status != resp.Status || !e.revokedAt.Equal(resp.RevokedAt) || e.reason != resp.RevocationReason:
			reject(o.Serial, "its sibling response says another status", nil)
			e.bad = true
			return nil
		}
		if e == nil {
			e = &entry{status: resp.Status, revokedAt: resp.RevokedAt, reason: resp.RevocationReason,
				thisUpdate: resp.ThisUpdate, nextUpdate: resp.NextUpdate}
			e.lastModified = e.thisUpdate.UTC().Format(http.TimeFormat)
			e.expires = e.nextUpdate.UTC().Format(http.TimeFormat)
			byserial[key] = e
		}
		e.der[h] = o.DER
		e.etag[h] = etag(o.DER)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ocsp: load stored responses: %w", err)
	}
	// Served only what the certificate's record says now: a response for a
	// serial with no unexpired certificate, or for another status, is not.
	keep := map[string]*entry{}
	err = r.st.CertStatuses(ctx, iss.id, now, func(c store.CertStatus) error {
		key, err := serialKey(c.Serial)
		if err != nil {
			return nil
		}
		e := byserial[key]
		if e == nil || e.bad || e.der[hashSHA1] == nil || e.der[hashSHA256] == nil {
			return nil
		}
		if !sameStatus(e, c.RevokedAt, c.RevokeReason) {
			reject(c.Serial, "says another status than the certificate's record", nil)
			return nil
		}
		keep[key] = e
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ocsp: load stored responses: %w", err)
	}
	iss.mu.Lock()
	maps.Copy(iss.entries, keep)
	iss.mu.Unlock()
	if rejected > 0 {
		r.metrics.storedRejected.Add(float64(rejected))
	}
	return len(keep), nil
}

// verifiedResponders parses stored responses and checks each under its
// issuer. ParseResponse already checks a response against the responder
// certificate it embeds; that certificate is checked against the issuer
// once per load, not once per row (every row of a load shares one or two).
type verifiedResponders struct {
	issuer *x509.Certificate
	ok     map[string]bool // raw responder certificates issued by issuer
}

func (v verifiedResponders) parse(der []byte) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponse(der, nil)
	if err != nil {
		return nil, err
	}
	if resp.Certificate == nil {
		// Signed by the issuer itself: nothing embedded vouched for it.
		if err := resp.CheckSignatureFrom(v.issuer); err != nil {
			return nil, fmt.Errorf("bad OCSP signature: %w", err)
		}
		return resp, nil
	}
	raw := string(resp.Certificate.Raw)
	if !v.ok[raw] {
		if err := resp.Certificate.CheckSignatureFrom(v.issuer); err != nil {
			return nil, fmt.Errorf("responder certificate not issued by the issuer: %w", err)
		}
		v.ok[raw] = true
	}
	return resp, nil
}

// checkStored says why a parsed stored response cannot be served for the
// row o (CertID hash h), or "" if it can.
func checkStored(resp *ocsp.Response, o store.OCSPResponse, h hashIndex, now time.Time) string {
	n, ok := new(big.Int).SetString(o.Serial, 16)
	switch {
	case !ok || resp.SerialNumber == nil || resp.SerialNumber.Cmp(n) != 0:
		return "answers for another serial"
	case resp.IssuerHash != h.crypto():
		return "uses another CertID hash than its row"
	case resp.Certificate != nil && !slices.Contains(resp.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning):
		return "signed by a certificate not issued for OCSP signing"
	case !now.Before(resp.NextUpdate) || resp.ThisUpdate.After(now):
		return "outside its validity"
	case resp.Status != ocsp.Good && resp.Status != ocsp.Revoked:
		return "status neither good nor revoked"
	}
	return ""
}
