package api

import (
	"encoding/base64"
	"net/http"

	"github.com/sigil-ca/sigil/ca"
)

// EABRequest asks for an ACME external account binding key.
type EABRequest struct {
	// Endpoint is the ACME endpoint name; "" is the one at /acme/.
	Endpoint string `json:"endpoint"`
	// Requester is the identity certificates of the bound account record;
	// "" lets the CA name it after the key.
	Requester string `json:"requester,omitempty"`
}

// EABKey is a created binding key. HMACKey (base64url, no padding, as ACME
// clients expect it) is returned only here, once.
type EABKey struct {
	KeyID     string `json:"key_id"`
	HMACKey   string `json:"hmac_key"`
	Endpoint  string `json:"endpoint"`
	Requester string `json:"requester"`
}

func (api *API) createEAB(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req EABRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	kid, key, requester, err := api.cfg.CreateEAB(r.Context(), p.Actor(), req.Endpoint, req.Requester)
	if err != nil {
		return err
	}
	defer clear(key)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, EABKey{KeyID: kid, HMACKey: base64.RawURLEncoding.EncodeToString(key),
		Endpoint: req.Endpoint, Requester: requester})
	return nil
}
