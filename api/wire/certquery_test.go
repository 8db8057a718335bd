package wire_test

import (
	"net/url"
	"slices"
	"testing"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// FuzzCertFilterFromQuery: the certificate query parser never panics,
// refuses only with a Malformed *ca.Error, accepts only what the store can
// run, and a cursor it accepts round-trips through EncodeCursor.
func FuzzCertFilterFromQuery(f *testing.F) {
	for _, s := range []string{
		"name=a&status=valid", "sort=expiry_asc&cursor=Mi4xLjE", "cursor=MC4wLjA", "cursor=%00", "limit=1001",
		"name_suffix=.example.com&sort=issued_asc&limit=5", "issued_after=2026-01-02T15:04:05Z", "serial=0A:1b",
		"acme_account=x&key_algorithm=ed25519&channel=acme", "revoked_before=2026-01-02T15:04:05+02:00", "sort=",
	} {
		f.Add(s)
	}
	f.Add("cursor=" + wire.EncodeCursor(2, store.CertCursor{Key: -5, ID: 9}) + "&sort=expiry_asc")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := wire.CertFilterFromQuery(q)
		if err != nil {
			if ca.KindOf(err) != ca.Malformed {
				t.Fatalf("%q: %v is not Malformed", raw, err)
			}
			return
		}
		if flt.Limit < 1 || flt.Limit > 1000 || len(flt.Name) > 1024 || len(flt.NameExact) > 1024 || len(flt.NameSuffix) > 1024 {
			t.Fatalf("%q: accepted %+v", raw, flt)
		}
		if !slices.Contains([]string{"", "valid", "expired", "revoked"}, flt.Status) {
			t.Fatalf("%q: status %q accepted", raw, flt.Status)
		}
		if c := q.Get("cursor"); c != "" {
			if flt.After.ID <= 0 || wire.EncodeCursor(flt.Sort, flt.After) == "" {
				t.Fatalf("%q: cursor %+v accepted", raw, flt.After)
			}
			back, err := wire.DecodeCursor(wire.EncodeCursor(flt.Sort, flt.After), flt.Sort)
			if err != nil || back != flt.After {
				t.Fatalf("%q: cursor %+v does not round-trip: %+v, %v", raw, flt.After, back, err)
			}
		}
	})
}
