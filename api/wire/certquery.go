package wire

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// ParseTime reads the RFC 3339 time in parameter name of q; zero when
// it is absent.
func ParseTime(q url.Values, name string) (time.Time, error) {
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

// MaxNameFilter bounds a name filter; no DNS name or common name is longer.
const MaxNameFilter = 1024

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

// ParseLimit reads a page size (1 to 1000, default 100).
func ParseLimit(q url.Values) (int, error) {
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

// CertFilterFromQuery reads the certificate query parameters of
// /v1/certificates (and the auditor page's search). Every refusal is a
// Malformed *ca.Error.
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
		if len(n) > MaxNameFilter {
			return f, &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("a name filter is at most %d bytes", MaxNameFilter)}
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
		if *t.dst, err = ParseTime(q, t.param); err != nil {
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
	if f.Limit, err = ParseLimit(q); err != nil {
		return f, err
	}
	return f, nil
}

// CertParamNames lists the certificate query parameters, sorted.
func CertParamNames() []string {
	var out []string
	for k := range certParams {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
