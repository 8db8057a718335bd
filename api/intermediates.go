package api

import (
	"context"
	"net/http"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// Intermediates is what /v1/ca/intermediates needs: the list, and a
// rotation that the server follows with the new issuer's CRLs and OCSP
// responses. ca.Intermediates (ca.Authority.Intermediates) implements it.
type Intermediates interface {
	IntermediateStatuses(ctx context.Context) ([]ca.IntermediateStatus, error)
	RotateIntermediate(ctx context.Context, actor, reason string) (*ca.IntermediateRotation, error)
}

// Intermediate is one intermediate in /v1/ca/intermediates.
type Intermediate struct {
	ID         string    `json:"id"`
	Subject    string    `json:"subject"`
	Serial     string    `json:"serial"`
	State      string    `json:"state"`
	KeyID      string    `json:"key_id"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	Created    time.Time `json:"created"`
	LastExpiry time.Time `json:"last_expiry,omitzero"`
}

// RotateRequest is the optional body of POST /v1/ca/intermediates/rotate.
type RotateRequest struct {
	Reason string `json:"reason"`
}

// Rotation is the answer to a rotation.
type Rotation struct {
	Previous   string `json:"previous"`
	Current    string `json:"current"`
	KeyID      string `json:"key_id"`
	ManagedDue int64  `json:"managed_due"`
}

func (api *API) listIntermediates(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	list, err := api.cfg.Intermediates.IntermediateStatuses(r.Context())
	if err != nil {
		return err
	}
	out := make([]Intermediate, 0, len(list))
	for _, s := range list {
		out = append(out, Intermediate(s))
	}
	writeJSON(w, http.StatusOK, IntermediateList{Intermediates: out})
	return nil
}

func (api *API) rotateIntermediate(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req RotateRequest
	if r.ContentLength != 0 { // the body is optional
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	if len(req.Reason) > 200 {
		return &ca.Error{Kind: ca.Malformed, Detail: "reason: at most 200 characters"}
	}
	if req.Reason == "" {
		req.Reason = "by hand"
	}
	rot, err := api.cfg.Intermediates.RotateIntermediate(r.Context(), p.Actor(), req.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Rotation{Previous: rot.Previous.ID, Current: rot.Current.ID, KeyID: rot.KeyID, ManagedDue: rot.ManagedDue})
	return nil
}
