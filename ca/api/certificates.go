package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// Certificate is a certificate record as the API shows it.
type Certificate struct {
	Serial       string    `json:"serial"`
	Issuer       string    `json:"issuer"`
	Subject      string    `json:"subject"`
	SANs         []string  `json:"sans"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	KeyAlgorithm string    `json:"key_algorithm"`
	Profile      string    `json:"profile"`
	Requester    string    `json:"requester"`
	Channel      string    `json:"channel"`
	Issued       time.Time `json:"issued"`
	Status       string    `json:"status"` // valid, expired or revoked (on hold included)
	// Replaces is the serial of the certificate this one renewed (ACME
	// "replaces", RFC 9773), if any.
	Replaces string `json:"replaces,omitempty"`

	// Set only when Status is revoked: RFC 5280 §5.3.1 reason name, and the
	// invalidity date (§5.3.2) if the revocation gave one.
	RevokedAt        time.Time `json:"revoked_at,omitzero"`
	RevocationReason string    `json:"revocation_reason,omitempty"`
	InvalidityDate   time.Time `json:"invalidity_date,omitzero"`
	// Archived is when the tidy job took the certificate, expired past
	// tidy.retention, out of the hot-path indexes; the record is unchanged.
	Archived time.Time `json:"archived,omitzero"`

	PEM string `json:"pem,omitempty"`
}

// CertificateList is a page of certificates.
type CertificateList struct {
	Certificates []Certificate `json:"certificates"`
	NextCursor   string        `json:"next_cursor,omitempty"`
}

func toCertificate(c store.CertRecord, now time.Time, withPEM bool) Certificate {
	out := Certificate{
		Serial: c.Serial, Issuer: c.IssuerID, Subject: c.Subject, SANs: c.SANs, NotBefore: c.NotBefore,
		NotAfter: c.NotAfter, KeyAlgorithm: c.KeyAlgorithm, Profile: c.Profile, Requester: c.Requester,
		Channel: c.Channel, Issued: c.Created, RevokedAt: c.RevokedAt, Replaces: c.Replaces, Archived: c.Archived,
	}
	if out.SANs == nil {
		out.SANs = []string{}
	}
	switch {
	case !c.RevokedAt.IsZero():
		out.Status = "revoked"
		out.RevocationReason, out.InvalidityDate = ca.ReasonName(c.RevokeReason), c.InvalidityDate
	case !now.Before(c.NotAfter):
		out.Status = "expired"
	default:
		out.Status = "valid"
	}
	if withPEM {
		out.PEM = pemCert(c.DER)
	}
	return out
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, &ca.Error{Kind: ca.Malformed, Detail: name + " must be an RFC 3339 time such as 2026-01-02T15:04:05Z"}
	}
	return t, nil
}

func parseCursor(q url.Values) (int64, int, error) {
	var cursor int64
	if v := q.Get("cursor"); v != "" {
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil || c <= 0 {
			return 0, 0, &ca.Error{Kind: ca.Malformed, Detail: "bad cursor"}
		}
		cursor = c
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 1000 {
			return 0, 0, &ca.Error{Kind: ca.Malformed, Detail: "limit must be between 1 and 1000"}
		}
		limit = l
	}
	return cursor, limit, nil
}

// CertFilterFromQuery reads the /v1/certificates query parameters.
func CertFilterFromQuery(q url.Values) (store.CertFilter, error) {
	f := store.CertFilter{
		Name: q.Get("name"), Profile: q.Get("profile"),
		Requester: q.Get("requester"), IssuerID: q.Get("issuer"), IssuerKeyID: q.Get("issuer_key"), Status: q.Get("status"),
	}
	var err error
	if v := q.Get("serial"); v != "" {
		if f.Serial, err = ca.NormalizeSerial(v); err != nil {
			return f, err
		}
	}
	if f.IssuedAfter, err = parseTime(q, "issued_after"); err != nil {
		return f, err
	}
	if f.IssuedBefore, err = parseTime(q, "issued_before"); err != nil {
		return f, err
	}
	if f.ExpiringBefore, err = parseTime(q, "expiring_before"); err != nil {
		return f, err
	}
	if f.Cursor, f.Limit, err = parseCursor(q); err != nil {
		return f, err
	}
	return f, nil
}

func (api *API) listCertificates(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	f, err := CertFilterFromQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if p.Role == ca.RoleIssuer {
		f.Requester = p.Actor() // issuers see what they requested
	}
	now := api.clk.Now()
	f.Now = now
	recs, next, err := api.a.Certificates(r.Context(), f)
	if err != nil {
		return err
	}
	out := CertificateList{Certificates: make([]Certificate, 0, len(recs))}
	for _, c := range recs {
		out.Certificates = append(out.Certificates, toCertificate(c, now, false))
	}
	if next > 0 {
		out.NextCursor = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (api *API) getCertificate(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	serial, err := ca.NormalizeSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	c, err := api.a.Certificate(r.Context(), serial)
	if err != nil {
		return err
	}
	if p.Role == ca.RoleIssuer && c.Requester != p.Actor() {
		return &ca.Error{Kind: ca.NotFound, Detail: "no certificate with serial " + serial}
	}
	if strings.Contains(r.Header.Get("Accept"), "application/pem-certificate-chain") {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		_, _ = w.Write([]byte(pemCert(c.DER)))
		return nil
	}
	writeJSON(w, http.StatusOK, toCertificate(c, api.clk.Now(), true))
	return nil
}
