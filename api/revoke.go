package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// RevokeRequest is the body of POST /v1/revoke.
type RevokeRequest struct {
	Serial string `json:"serial"` // hex, in any form ca.NormalizeSerial accepts
	// Reason is an RFC 5280 §5.3.1 reason as a JSON string, by name
	// ("keyCompromise", "key-compromise") or code ("1"), or as a JSON number
	// (1). Absent or null, the reason is unspecified (0).
	Reason json.RawMessage `json:"reason,omitempty"`
	// InvalidityDate is an RFC 3339 time: when the key is known or suspected
	// to have been compromised (RFC 5280 §5.3.2). Optional.
	InvalidityDate string `json:"invalidity_date,omitempty"`
}

// UnholdRequest is the body of POST /v1/unhold.
type UnholdRequest struct {
	Serial string `json:"serial"`
}

// ParseRevokeRequest decodes and checks a revoke request body. Every failure
// is a *ca.Error the caller can show; the request is returned with whatever
// serial it named even then, so that a refusal can be audited against it.
// Actor and Channel are left for the caller.
func ParseRevokeRequest(body io.Reader) (ca.RevokeRequest, error) {
	var req RevokeRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return ca.RevokeRequest{}, bodyError(err)
	}
	if err := checkEOF(dec); err != nil {
		return ca.RevokeRequest{}, err
	}
	out := ca.RevokeRequest{Serial: req.Serial}
	if strings.TrimSpace(req.Serial) == "" {
		return out, &ca.Error{Kind: ca.Malformed, Detail: "serial is required"}
	}
	var err error
	if out.Reason, err = parseReason(req.Reason); err != nil {
		return out, err
	}
	if req.InvalidityDate != "" {
		t, err := time.Parse(time.RFC3339, req.InvalidityDate)
		if err != nil {
			return out, &ca.Error{Kind: ca.Malformed, Detail: "invalidity_date must be an RFC 3339 time such as 2026-01-02T15:04:05Z"}
		}
		out.InvalidityDate = t
	}
	return out, nil
}

// parseReason reads the reason member: a string goes to
// ca.ParseRevocationReason, and so does a number's literal text, so that only
// a plain decimal integer is a code (no 1.0, 1e0 or -0).
func parseReason(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return ca.ReasonUnspecified, nil
	}
	if raw[0] != '"' {
		return ca.ParseRevocationReason(string(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, &ca.Error{Kind: ca.Malformed, Detail: "invalid JSON body: reason: " + err.Error()}
	}
	return ca.ParseRevocationReason(s)
}

func (api *API) revoke(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	ctx := r.Context()
	req, err := func() (ca.RevokeRequest, error) {
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			return ca.RevokeRequest{}, &ca.Error{Kind: ca.Malformed, Detail: "Content-Type must be application/json"}
		}
		return ParseRevokeRequest(r.Body)
	}()
	// An admin's keyCompromise blocks the key; an issuer's covers only its
	// own certificate, never another requester's with the same key.
	req.Actor, req.Channel, req.BlockKey = p.Actor(), ca.ChannelAPI, p.Role == ca.RoleAdmin
	if err == nil && p.Role == ca.RoleIssuer {
		err = api.checkRequester(r, p, req.Serial)
	}
	if err != nil {
		// Refusals are audited even when the body never became a request.
		api.issuer.RecordRevocationRefusal(ctx, req, err)
		return err
	}
	rec, err := api.issuer.Revoke(ctx, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toCertificate(rec, api.clk.Now(), true))
	return nil
}

// checkRequester lets an issuer token revoke only what it requested. A serial
// that is malformed or unknown passes: Revoke refuses and audits it as such.
func (api *API) checkRequester(r *http.Request, p ca.Principal, serial string) error {
	s, err := ca.NormalizeSerial(serial)
	if err != nil {
		return nil
	}
	c, err := api.issuer.Certificate(r.Context(), s)
	switch {
	case ca.KindOf(err) == ca.NotFound:
		return nil
	case err != nil:
		return err
	case c.Requester != p.Actor():
		return &ca.Error{Kind: ca.Forbidden, Detail: "an issuer token may revoke only the certificates it requested"}
	}
	return nil
}

func (api *API) unhold(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req UnholdRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	// A missing or malformed serial is refused, and audited, by Unhold.
	rec, err := api.admin.Unhold(r.Context(), req.Serial, p.Actor())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toCertificate(rec, api.clk.Now(), true))
	return nil
}
