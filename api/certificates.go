package api

import (
	"encoding/base64"
	"fmt"
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

// maxNameFilter bounds a name filter; no DNS name or common name is longer.
const maxNameFilter = 1024

// certParams are the query parameters of /v1/certificates, its summary and
// its export; any other parameter is refused, so a misspelt filter cannot
// silently select everything.
var certParams = map[string]bool{
	"serial": true, "name": true, "name_exact": true, "name_suffix": true, "issuer": true, "issuer_key": true,
	"profile": true, "requester": true, "channel": true, "acme_account": true, "key_algorithm": true, "status": true,
	"issued_after": true, "issued_before": true, "expiring_after": true, "expiring_before": true,
	"revoked_after": true, "revoked_before": true, "sort": true, "cursor": true, "limit": true,
}

// EncodeCursor renders the position c of a query sorted by s as an opaque
// next_cursor value.
func EncodeCursor(s store.CertSort, c store.CertCursor) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d.%d", s, c.Key, c.ID))
}

// DecodeCursor parses a cursor made by EncodeCursor for a query sorted by s.
func DecodeCursor(v string, s store.CertSort) (store.CertCursor, error) {
	bad := &ca.Error{Kind: ca.Malformed, Detail: "bad cursor: pass next_cursor from the previous page unchanged, with the same sort"}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) > 64 {
		return store.CertCursor{}, bad
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 {
		return store.CertCursor{}, bad
	}
	var n [3]int64
	for i, p := range parts {
		if n[i], err = strconv.ParseInt(p, 10, 64); err != nil {
			return store.CertCursor{}, bad
		}
	}
	if store.CertSort(n[0]) != s || n[2] <= 0 {
		return store.CertCursor{}, bad
	}
	return store.CertCursor{Key: n[1], ID: n[2]}, nil
}

func parseLimit(q url.Values) (int, error) {
	limit := 100
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 1000 {
			return 0, &ca.Error{Kind: ca.Malformed, Detail: "limit must be between 1 and 1000"}
		}
		limit = l
	}
	return limit, nil
}

// CertFilterFromQuery reads the /v1/certificates query parameters.
func CertFilterFromQuery(q url.Values) (store.CertFilter, error) {
	for k, vs := range q {
		if !certParams[k] {
			return store.CertFilter{}, &ca.Error{Kind: ca.Malformed, Detail: "unknown query parameter " + strconv.Quote(k)}
		}
		if len(vs) > 1 {
			return store.CertFilter{}, &ca.Error{Kind: ca.Malformed, Detail: "query parameter " + k + " given more than once"}
		}
	}
	f := store.CertFilter{
		Name: q.Get("name"), NameExact: q.Get("name_exact"), NameSuffix: q.Get("name_suffix"),
		Profile: q.Get("profile"), Requester: q.Get("requester"), IssuerID: q.Get("issuer"), IssuerKeyID: q.Get("issuer_key"),
		Channel: q.Get("channel"), ACMEAccount: q.Get("acme_account"), KeyAlgorithm: q.Get("key_algorithm"),
		Status: q.Get("status"),
	}
	for _, n := range []string{f.Name, f.NameExact, f.NameSuffix} {
		if len(n) > maxNameFilter {
			return f, &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("a name filter is at most %d bytes", maxNameFilter)}
		}
	}
	switch f.Status {
	case "", "valid", "expired", "revoked":
	default:
		return f, &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("unknown status %q (want valid, expired or revoked)", f.Status)}
	}
	var err error
	if v := q.Get("serial"); v != "" {
		if f.Serial, err = ca.NormalizeSerial(v); err != nil {
			return f, err
		}
	}
	for _, t := range []struct {
		param string
		dst   *time.Time
	}{{"issued_after", &f.IssuedAfter}, {"issued_before", &f.IssuedBefore}, {"expiring_after", &f.ExpiringAfter},
		{"expiring_before", &f.ExpiringBefore}, {"revoked_after", &f.RevokedAfter}, {"revoked_before", &f.RevokedBefore}} {
		if *t.dst, err = parseTime(q, t.param); err != nil {
			return f, err
		}
	}
	if v := q.Get("sort"); v != "" {
		s, ok := store.CertSorts[v]
		if !ok {
			return f, &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("unknown sort %q (want issued_desc, issued_asc, expiry_asc or expiry_desc)", v)}
		}
		f.Sort = s
	}
	if v := q.Get("cursor"); v != "" {
		if f.After, err = DecodeCursor(v, f.Sort); err != nil {
			return f, err
		}
	}
	if f.Limit, err = parseLimit(q); err != nil {
		return f, err
	}
	return f, nil
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
	f, err := CertFilterFromQuery(q)
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
	recs, next, err := api.a.Certificates(r.Context(), f)
	if err != nil {
		return err
	}
	out := CertificateList{Certificates: make([]Certificate, 0, len(recs))}
	for _, c := range recs {
		out.Certificates = append(out.Certificates, toCertificate(c, now, false))
	}
	if !next.IsZero() {
		out.NextCursor = EncodeCursor(f.Sort, next)
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
	rows, total, err := api.a.CertificateSummary(r.Context(), f, store.CertGroup(by))
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
