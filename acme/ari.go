package acme

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// ARI (RFC 9773): clients ask when to renew; the server answers with a
// window, pulled forward when the certificate is revoked or its issuer is no
// longer the one issuing.

// ariRetryAfter is how often clients should ask again (RFC 9773 §4.3).
const ariRetryAfter = 6 * time.Hour

// parseCertID splits an ARI certificate identifier (RFC 9773 §4.1):
// base64url(AKI keyIdentifier) "." base64url(serial INTEGER contents).
func parseCertID(id string) (aki []byte, serial string, err error) {
	a, s, ok := strings.Cut(id, ".")
	if !ok {
		return nil, "", Malformed("certificate identifier must be AKI.serial")
	}
	aki, err1 := base64.RawURLEncoding.DecodeString(a)
	sb, err2 := base64.RawURLEncoding.DecodeString(s)
	if err1 != nil || err2 != nil || len(aki) == 0 || len(sb) == 0 || len(sb) > 21 {
		return nil, "", Malformed("certificate identifier is not two base64url parts")
	}
	n := new(big.Int).SetBytes(sb)
	if n.Sign() <= 0 || sb[0]&0x80 != 0 {
		return nil, "", Malformed("certificate identifier names a non-positive serial")
	}
	return aki, ca.SerialString(n), nil
}

// lookupCertID finds the certificate an ARI identifier names. The AKI is
// checked against the certificate itself, so certificates of an issuer that
// has since been rotated out are still found. A certificate issued through
// ACME is found only on the endpoint its order was placed on; one issued
// otherwise (the API, mTLS renewal), whose renewal the agent schedules by
// ARI, on every endpoint.
func (s *Server) lookupCertID(r *http.Request, id string) (store.CertRecord, error) {
	aki, serial, err := parseCertID(id)
	if err != nil {
		return store.CertRecord{}, err
	}
	notFound := Malformed("no certificate with that identifier").WithStatus(http.StatusNotFound)
	rec, err := s.ca.Certificate(r.Context(), serial)
	if err != nil {
		if ca.KindOf(err) == ca.NotFound {
			return store.CertRecord{}, notFound
		}
		return store.CertRecord{}, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return store.CertRecord{}, fmt.Errorf("parse recorded certificate %s: %w", serial, err)
	}
	if !bytes.Equal(aki, cert.AuthorityKeyId) {
		return store.CertRecord{}, notFound
	}
	if rec.Channel == ca.ChannelACME {
		o, err := s.st.ACMECertOrder(r.Context(), rec.Serial)
		if errors.Is(err, store.ErrNotFound) || err == nil && o.Endpoint != s.cfg.Name {
			return store.CertRecord{}, notFound
		}
		if err != nil {
			return store.CertRecord{}, fmt.Errorf("find the order of certificate %s: %w", rec.Serial, err)
		}
	}
	return rec, nil
}

// renewalWindow suggests renewing in the last third of the lifetime, in a
// window a sixth of it wide. A revoked certificate should be renewed now
// (a window already past); one whose issuer has been rotated out, soon (a
// window starting now, a twelfth of the lifetime wide, ending before expiry).
func renewalWindow(rec store.CertRecord, currentIssuer string, now time.Time) (time.Time, time.Time) {
	if !rec.RevokedAt.IsZero() {
		return now.Add(-time.Hour), now
	}
	life := rec.NotAfter.Sub(rec.NotBefore)
	start := rec.NotAfter.Add(-life / 3)
	end := start.Add(life / 6)
	if rec.IssuerID != currentIssuer && now.Before(start) {
		if soon := now.Add(life / 12); soon.Before(end) {
			end = soon
		}
		start = now
	}
	return start, end
}

func (s *Server) renewalInfo(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.lookupCertID(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	start, end := renewalWindow(rec, s.ca.Intermediate().ID, s.clk.Now().UTC())
	w.Header().Set("Retry-After", fmt.Sprint(int(ariRetryAfter.Seconds())))
	return writeJSON(w, http.StatusOK, map[string]any{
		"suggestedWindow": map[string]string{"start": start.Format(time.RFC3339), "end": end.Format(time.RFC3339)},
	})
}
