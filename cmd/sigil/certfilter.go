package main

import (
	"net/url"

	"github.com/spf13/cobra"
)

// certFilterFlags are the certificate filters of GET /v1/certificates (and
// its export and summary), as flags: every command that selects
// certificates registers the same set, so that a filter that works for one
// works for all.
type certFilterFlags struct {
	serial, name, nameExact, nameSuffix, issuer, issuerKey, profile, requester, channel, acmeAccount,
	keyAlgorithm, status, issuedAfter, issuedBefore, expiringAfter, expiringBefore, revokedAfter, revokedBefore, sort string
}

// register adds the filter flags to cmd.
func (c *certFilterFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.serial, "serial", "", "exact serial (hex)")
	f.StringVar(&c.name, "name", "", "the subject CN or a SAN contains this (any case)")
	f.StringVar(&c.nameExact, "name-exact", "", "the subject CN or a SAN equals this (any case)")
	f.StringVar(&c.nameSuffix, "name-suffix", "", "the subject CN or a SAN ends in this, e.g. .example.com")
	f.StringVar(&c.issuer, "issuer", "", "issuer id")
	f.StringVar(&c.issuerKey, "issuer-key", "", "key id of the issuer that signed them")
	f.StringVar(&c.profile, "profile", "", "issuance profile")
	f.StringVar(&c.requester, "requester", "", "requester, e.g. token:ID or acme:ID")
	f.StringVar(&c.channel, "channel", "", "how it was issued: api, acme, managed, renew, internal or init")
	f.StringVar(&c.acmeAccount, "acme-account", "", "ACME account id whose order it finalized")
	f.StringVar(&c.keyAlgorithm, "key-algorithm", "", "key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, ed25519, …")
	f.StringVar(&c.status, "status", "", "valid, expired or revoked")
	f.StringVar(&c.issuedAfter, "issued-after", "", "issued at or after (RFC 3339)")
	f.StringVar(&c.issuedBefore, "issued-before", "", "issued before (RFC 3339)")
	f.StringVar(&c.expiringAfter, "expiring-after", "", "expiring at or after (RFC 3339)")
	f.StringVar(&c.expiringBefore, "expiring-before", "", "expiring before (RFC 3339)")
	f.StringVar(&c.revokedAfter, "revoked-after", "", "revoked at or after (RFC 3339)")
	f.StringVar(&c.revokedBefore, "revoked-before", "", "revoked before (RFC 3339)")
	f.StringVar(&c.sort, "sort", "", "issued_desc (default), issued_asc, expiry_asc or expiry_desc")
}

// params returns the filters as API query parameters, empty ones left
// out. The server checks them: a bad value is its 400, in one line.
func (c *certFilterFlags) params() map[string]string {
	all := map[string]string{
		"serial": c.serial, "name": c.name, "name_exact": c.nameExact, "name_suffix": c.nameSuffix,
		"issuer": c.issuer, "issuer_key": c.issuerKey, "profile": c.profile, "requester": c.requester,
		"channel": c.channel, "acme_account": c.acmeAccount, "key_algorithm": c.keyAlgorithm, "status": c.status,
		"issued_after": c.issuedAfter, "issued_before": c.issuedBefore, "expiring_after": c.expiringAfter,
		"expiring_before": c.expiringBefore, "revoked_after": c.revokedAfter, "revoked_before": c.revokedBefore,
		"sort": c.sort,
	}
	out := map[string]string{}
	for k, v := range all {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// query is params as a URL query.
func (c *certFilterFlags) query() url.Values {
	q := url.Values{}
	for k, v := range c.params() {
		q.Set(k, v)
	}
	return q
}
