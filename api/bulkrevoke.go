package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// BulkRevokeRequest is the body of POST /v1/certificates/revoke: revoke
// every valid certificate Filter selects, with one reason.
type BulkRevokeRequest struct {
	Filter BulkRevokeFilter `json:"filter"`
	// Reason and InvalidityDate are as in RevokeRequest.
	Reason         json.RawMessage `json:"reason,omitempty"`
	InvalidityDate string          `json:"invalidity_date,omitempty"`
	// DryRun only counts what would be revoked; nothing changes.
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkRevokeFilter selects certificates: all the members given must match,
// and at least one must be given.
type BulkRevokeFilter struct {
	IssuerKey    string `json:"issuer_key,omitempty"`    // the CA key that signed them (GET /v1/keys)
	Requester    string `json:"requester,omitempty"`     // e.g. token:ID or acme:ID
	IssuedAfter  string `json:"issued_after,omitempty"`  // RFC 3339, inclusive
	IssuedBefore string `json:"issued_before,omitempty"` // RFC 3339, exclusive
}

// BulkRevokeResult is the answer of POST /v1/certificates/revoke.
type BulkRevokeResult struct {
	DryRun  bool `json:"dry_run"`
	Matched int  `json:"matched"`
	Revoked int  `json:"revoked"`
	// AlreadyRevoked counts certificates revoked meanwhile by another
	// request (a sibling of a keyCompromise, say): not failures.
	AlreadyRevoked int `json:"already_revoked"`
	Failed         int `json:"failed"`
	// Failures lists the first 100 failures.
	Failures []BulkRevokeFailure `json:"failures,omitempty"`
}

// maxBulkFailures bounds the failures an answer lists; Failed counts all.
const maxBulkFailures = 100

// BulkRevokeFailure is one certificate that could not be revoked.
type BulkRevokeFailure struct {
	Serial string `json:"serial"`
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

func (api *API) bulkRevoke(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var body BulkRevokeRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	req := ca.BulkRevokeRequest{Actor: p.Actor(), Channel: ca.ChannelAPI, BlockKey: p.Role == ca.RoleAdmin, DryRun: body.DryRun,
		Filter: ca.BulkRevokeFilter{IssuerKeyID: body.Filter.IssuerKey, Requester: body.Filter.Requester}}
	var err error
	if req.Reason, err = parseReason(body.Reason); err != nil {
		return err
	}
	for _, t := range []struct {
		name string
		in   string
		out  *time.Time
	}{
		{"invalidity_date", body.InvalidityDate, &req.InvalidityDate},
		{"filter.issued_after", body.Filter.IssuedAfter, &req.Filter.IssuedAfter},
		{"filter.issued_before", body.Filter.IssuedBefore, &req.Filter.IssuedBefore},
	} {
		if t.in == "" {
			continue
		}
		if *t.out, err = time.Parse(time.RFC3339, t.in); err != nil {
			return &ca.Error{Kind: ca.Malformed, Detail: t.name + " must be an RFC 3339 time such as 2026-01-02T15:04:05Z"}
		}
	}
	if !req.DryRun {
		// One revocation per certificate can outlast the listener's write
		// timeout; the caller waiting (or hanging up, which stops it) bounds it.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
	res, err := api.admin.BulkRevoke(r.Context(), req)
	if err != nil {
		return err
	}
	out := BulkRevokeResult{DryRun: res.DryRun, Matched: res.Matched, Revoked: res.Revoked,
		AlreadyRevoked: res.AlreadyRevoked, Failed: len(res.Failed)}
	for _, f := range res.Failed[:min(len(res.Failed), maxBulkFailures)] {
		// As renderError: an internal cause is logged by ca, never sent.
		fail := BulkRevokeFailure{Serial: f.Serial, Error: ca.Internal.String(), Detail: "internal error"}
		var ce *ca.Error
		if errors.As(f.Err, &ce) && ce.Kind != ca.Internal {
			fail.Error, fail.Detail = ce.Kind.String(), ce.Detail
		}
		out.Failures = append(out.Failures, fail)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
