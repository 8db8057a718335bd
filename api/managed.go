package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

// Managed is what /v1/managed needs from lifecycle/managed: managed
// certificates, whose keys the CA holds, their bundles, and tokens scoped
// to one of them.
type Managed interface {
	Create(ctx context.Context, spec managed.Spec) (managed.Cert, error)
	Get(ctx context.Context, name string) (managed.Cert, error)
	List(ctx context.Context, cursor string, limit int, deleted bool) ([]managed.Cert, string, error)
	Delete(ctx context.Context, name, actor string, destroyKeys bool) (managed.Cert, error)
	RenewNow(ctx context.Context, name, actor string) (managed.Cert, error)
	Bundle(ctx context.Context, req managed.BundleRequest) (*managed.Bundle, error)
	CreateToken(ctx context.Context, actor, name string, ttl time.Duration, description string) (string, store.TokenRecord, error)
}

// ManagedRequest is the body of POST /v1/managed. Durations are Go
// durations such as "720h"; renew_at is a fraction such as "2/3"; rotate_key
// is always, never or every:N.
type ManagedRequest struct {
	Name                string   `json:"name"`
	SANs                []string `json:"sans"`
	Profile             string   `json:"profile"`
	KeyType             string   `json:"key_type,omitempty"`
	Validity            string   `json:"validity,omitempty"`
	RenewAt             string   `json:"renew_at,omitempty"`
	RotateKey           string   `json:"rotate_key,omitempty"`
	RevokePreviousAfter string   `json:"revoke_previous_after,omitempty"`
}

// ManagedList is a page of managed certificates, by name.
type ManagedList struct {
	Managed    []managed.Cert `json:"managed"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// BundleResponse is GET /v1/managed/{name}/bundle: the current chain (leaf
// first) and the PKCS#8 PEM private key. Served with Cache-Control: no-store.
type BundleResponse struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	ChainPEM  string    `json:"chain_pem"`
	KeyPEM    string    `json:"key_pem"`
}

// String keeps the key out of anything that formats the response.
func (b BundleResponse) String() string { return "BundleResponse{" + b.Name + " key:REDACTED}" }

// LogValue keeps the key out of logs.
func (b BundleResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.String("managed", b.Name), slog.Int("version", b.Version), slog.String("serial", b.Serial),
		slog.String("key", "REDACTED"))
}

func (api *API) managedRoutes(route func(string, handlerFunc, ...string)) {
	route("POST /v1/managed", api.createManaged, ca.RoleAdmin)
	route("GET /v1/managed", api.listManaged, ca.RoleAdmin, ca.RoleAuditor)
	route("GET /v1/managed/{name}", api.getManaged, ca.RoleAdmin, ca.RoleAuditor)
	route("DELETE /v1/managed/{name}", api.deleteManaged, ca.RoleAdmin)
	route("POST /v1/managed/{name}/renew", api.renewManaged, ca.RoleAdmin)
	// No roles: the handler accepts the identity's own certificate (mTLS)
	// or a managed token, and lifecycle/managed decides.
	route("GET /v1/managed/{name}/bundle", api.managedBundle)
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, &ca.Error{Kind: ca.Malformed, Detail: field + " must be a duration such as \"720h\""}
	}
	return d, nil
}

func (api *API) createManaged(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req ManagedRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	validity, err := parseDuration("validity", req.Validity)
	if err != nil {
		return err
	}
	spec := managed.Spec{Name: req.Name, SANs: req.SANs, Profile: req.Profile, KeyType: req.KeyType, Validity: validity,
		RenewAt: req.RenewAt, RotateKey: req.RotateKey, Actor: p.Actor()}
	if req.RevokePreviousAfter != "" {
		d, err := parseDuration("revoke_previous_after", req.RevokePreviousAfter)
		if err != nil {
			return err
		}
		spec.RevokePreviousAfter = &d
	}
	m, err := api.cfg.Managed.Create(r.Context(), spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (api *API) listManaged(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return &ca.Error{Kind: ca.Malformed, Detail: "limit must be 1 to 1000"}
		}
		limit = n
	}
	deleted := q.Get("deleted") == "true"
	ms, next, err := api.cfg.Managed.List(r.Context(), q.Get("cursor"), limit, deleted)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ManagedList{Managed: ms, NextCursor: next})
	return nil
}

func (api *API) getManaged(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	m, err := api.cfg.Managed.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (api *API) deleteManaged(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	destroy := false
	switch v := r.URL.Query().Get("destroy_keys"); v {
	case "", "false":
	case "true":
		destroy = true
	default:
		return &ca.Error{Kind: ca.Malformed, Detail: "destroy_keys must be true or false"}
	}
	m, err := api.cfg.Managed.Delete(r.Context(), r.PathValue("name"), p.Actor(), destroy)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (api *API) renewManaged(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	m, err := api.cfg.Managed.RenewNow(r.Context(), r.PathValue("name"), p.Actor())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// managedBundle serves a managed certificate's bundle to its own identity.
// A bearer token, if sent, is the credential; otherwise the client
// certificate of the TLS connection (the listener requests one).
func (api *API) managedBundle(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	ctx := r.Context()
	req := managed.BundleRequest{Name: r.PathValue("name"), Source: clientAddr(r)}
	if tok, ok := bearer(r); ok {
		p, err := api.gate.Authenticate(ctx, tok)
		if err != nil {
			api.refuseUnauthenticated(r, tok, err)
			return err
		}
		req.Principal = &p
	} else if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCert = r.TLS.PeerCertificates[0].Raw
	}
	b, err := api.cfg.Managed.Bundle(ctx, req)
	if err != nil {
		return err
	}
	defer b.Zero()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, BundleResponse{Name: b.Name, Version: b.Version, Serial: b.Serial, NotBefore: b.NotBefore,
		NotAfter: b.NotAfter, ChainPEM: string(b.ChainPEM), KeyPEM: string(b.KeyPEM)})
	return nil
}
