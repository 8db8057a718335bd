package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/api/wire"
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

// principalFilter reads the certificate filters of r's query for p, as
// CertFilterFromQuery does, after taking out own, the endpoint's own
// parameter (returned; "" when own is ""), and refusing the paging
// parameters in noPaging. Issuers see only what they requested.
func (api *API) principalFilter(r *http.Request, p ca.Principal, own string, noPaging ...string) (string, store.CertFilter, error) {
	q := r.URL.Query()
	var v string
	if vs, ok := q[own]; ok && own != "" {
		if len(vs) != 1 {
			return "", store.CertFilter{}, &ca.Error{Kind: ca.Malformed, Detail: "query parameter " + own + " given more than once"}
		}
		v = vs[0]
		q.Del(own)
	}
	for _, k := range noPaging {
		if q.Has(k) {
			return "", store.CertFilter{}, &ca.Error{Kind: ca.Malformed, Detail: r.URL.Path + " takes filters only: no " + k}
		}
	}
	f, err := wire.CertFilterFromQuery(q)
	if err != nil {
		return "", store.CertFilter{}, err
	}
	if p.Role == ca.RoleIssuer {
		f.Requester = p.Actor()
	}
	f.Now = api.clk.Now()
	return v, f, nil
}

func (api *API) listCertificates(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	_, f, err := api.principalFilter(r, p, "")
	if err != nil {
		return err
	}
	now := f.Now
	recs, next, err := api.auditor.Certificates(r.Context(), f)
	if err != nil {
		return err
	}
	out := CertificateList{Certificates: make([]Certificate, 0, len(recs))}
	for _, c := range recs {
		out.Certificates = append(out.Certificates, toCertificate(c, now, false))
	}
	if !next.IsZero() {
		out.NextCursor = wire.EncodeCursor(f.Sort, next)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// CertificateSummary is a count of certificates by group.
type CertificateSummary struct {
	By     string         `json:"by"`
	Total  int64          `json:"total"`
	Groups []SummaryGroup `json:"groups"`
}

// SummaryGroup is one group of a summary: a profile, a requester, a day
// (2006-01-02, UTC), an issuer, a channel or a status.
type SummaryGroup struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

func (api *API) summarizeCertificates(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	by, f, err := api.principalFilter(r, p, "by", "cursor", "limit", "sort")
	if err != nil {
		return err
	}
	if by == "" {
		return &ca.Error{Kind: ca.Malformed, Detail: "by is required: profile, requester, issuer, channel, day or status"}
	}
	rows, total, err := api.auditor.CertificateSummary(r.Context(), f, store.CertGroup(by))
	if err != nil {
		return err
	}
	out := CertificateSummary{By: by, Total: total, Groups: make([]SummaryGroup, 0, len(rows))}
	for _, g := range rows {
		out.Groups = append(out.Groups, SummaryGroup{Key: g.Key, Count: g.Count})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (api *API) getCertificate(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	serial, err := ca.NormalizeSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	c, err := api.auditor.Certificate(r.Context(), serial)
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
