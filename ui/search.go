package ui

import (
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// field is one input of a filter form.
type field struct {
	// Param is the query parameter the input sets. For certificates it is
	// the /v1/certificates parameter of the same name: the page hands its
	// query to wire.CertFilterFromQuery, so a filter the API learns is one
	// entry in certFields.
	Param string
	Label string
	// Kind is "text", "date" (a day, taken as 00:00 UTC) or "select".
	Kind    string
	Options []option // select: the values offered
	Hint    string   // placeholder text
}

// option is one choice of a select; Value "" leaves the filter unset.
type option struct{ Value, Label string }

// choices offers values under their own names, after "any".
func choices(values ...string) []option {
	out := []option{{"", "any"}}
	for _, v := range values {
		out = append(out, option{v, v})
	}
	return out
}

// certFields is the certificate search form, in display order.
func certFields() []field {
	return []field{
		{Param: "name", Label: "Subject or SAN contains", Kind: "text", Hint: "example"},
		{Param: "name_exact", Label: "Subject or SAN is", Kind: "text", Hint: "www.example.com"},
		{Param: "name_suffix", Label: "Subject or SAN ends in", Kind: "text", Hint: ".example.com"},
		{Param: "serial", Label: "Serial", Kind: "text", Hint: "hex, colons allowed"},
		{Param: "status", Label: "Status", Kind: "select", Options: choices("valid", "expired", "revoked")},
		{Param: "profile", Label: "Profile", Kind: "text", Hint: "tls-server"},
		{Param: "requester", Label: "Requester", Kind: "text", Hint: "token:… or acme:…"},
		{Param: "channel", Label: "Channel", Kind: "select", Options: choices(ca.ChannelAPI, ca.ChannelACME, ca.ChannelManaged,
			ca.ChannelRenew, ca.ChannelInternal, ca.ChannelInit)},
		{Param: "acme_account", Label: "ACME account", Kind: "text", Hint: "account id"},
		{Param: "key_algorithm", Label: "Key algorithm", Kind: "text", Hint: "ecdsa-p256, rsa-2048, ed25519"},
		{Param: "issuer", Label: "Issuer id", Kind: "text"},
		{Param: "issuer_key", Label: "Issuer key id", Kind: "text"},
		{Param: "issued_after", Label: "Issued after", Kind: "date"},
		{Param: "issued_before", Label: "Issued before", Kind: "date"},
		{Param: "expiring_after", Label: "Expiring after", Kind: "date"},
		{Param: "expiring_before", Label: "Expiring before", Kind: "date"},
		{Param: "revoked_after", Label: "Revoked after", Kind: "date"},
		{Param: "revoked_before", Label: "Revoked before", Kind: "date"},
		{Param: "sort", Label: "Order", Kind: "select", Options: []option{{"", "newest first"}, {"issued_asc", "oldest first"},
			{"expiry_asc", "expiring first"}, {"expiry_desc", "expiring last"}}},
	}
}

// auditFields is the audit timeline form, in display order. Their params
// are those of /v1/audit.
func auditFields() []field {
	return []field{
		{Param: "action", Label: "Action", Kind: "text", Hint: "cert.issued, or a prefix such as cert."},
		{Param: "actor", Label: "Actor", Kind: "text", Hint: "token:…, acme:…, system"},
		{Param: "target", Label: "Target", Kind: "text", Hint: "a serial, key id, token id…"},
		{Param: "after", Label: "After", Kind: "date"},
		{Param: "before", Label: "Before", Kind: "date"},
	}
}

// formField is a field with the value the request gave it.
type formField struct {
	field
	Value string
}

func fill(fields []field, q url.Values) []formField {
	out := make([]formField, 0, len(fields))
	for _, f := range fields {
		out = append(out, formField{field: f, Value: q.Get(f.Param)})
	}
	return out
}

var dayRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// apiQuery keeps only the parameters fields know (and the cursor), turning
// a day from a date input into the RFC 3339 time the API expects.
func apiQuery(fields []field, q url.Values) url.Values {
	out := url.Values{}
	for _, f := range fields {
		v := q.Get(f.Param)
		if v == "" {
			continue
		}
		if f.Kind == "date" && dayRE.MatchString(v) {
			v += "T00:00:00Z"
		}
		out.Set(f.Param, v)
	}
	if c := q.Get("cursor"); c != "" {
		out.Set("cursor", c)
	}
	return out
}

// certFilter reads the search form into a store filter, with the API's
// own parser and its errors.
func certFilter(q url.Values, limit int, now time.Time) (store.CertFilter, error) {
	aq := apiQuery(certFields(), q)
	aq.Set("limit", strconv.Itoa(limit))
	f, err := wire.CertFilterFromQuery(aq)
	if err != nil {
		return f, err
	}
	f.Now = now
	return f, nil
}

// auditFilter reads the timeline form.
func auditFilter(q url.Values, limit int) (store.AuditFilter, error) {
	aq := apiQuery(auditFields(), q)
	f := store.AuditFilter{Action: aq.Get("action"), Actor: aq.Get("actor"), Target: aq.Get("target"), Limit: limit}
	for _, t := range []struct {
		param string
		dst   *time.Time
	}{{"after", &f.After}, {"before", &f.Before}} {
		if v := aq.Get(t.param); v != "" {
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, &ca.Error{Kind: ca.Malformed, Detail: t.param + " must be a day (2026-01-02) or an RFC 3339 time"}
			}
			*t.dst = tm
		}
	}
	if v := aq.Get("cursor"); v != "" {
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil || c < 0 {
			return f, &ca.Error{Kind: ca.Malformed, Detail: "bad cursor"}
		}
		f.Cursor = c
	}
	return f, nil
}

// pageLink is the query for the page after cursor, the filters kept.
func pageLink(fields []field, q url.Values, cursor string) string {
	out := url.Values{}
	for _, f := range fields {
		if v := q.Get(f.Param); v != "" {
			out.Set(f.Param, v)
		}
	}
	out.Set("cursor", cursor)
	return "?" + out.Encode()
}

// filterQuery is the filters alone, for export links.
func filterQuery(fields []field, q url.Values) url.Values {
	out := url.Values{}
	for _, f := range fields {
		if v := q.Get(f.Param); v != "" {
			out.Set(f.Param, v)
		}
	}
	return out
}
