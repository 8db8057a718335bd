package api

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// AuditEvent is an audit record as the API shows it.
type AuditEvent struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Target   string            `json:"target,omitempty"`
	Detail   map[string]string `json:"detail,omitempty"`
	PrevHash []byte            `json:"prev_hash"`
	Hash     []byte            `json:"hash"`
}

// AuditList is a page of audit events.
type AuditList struct {
	Events     []AuditEvent `json:"events"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

func (api *API) listAudit(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	q := r.URL.Query()
	f := store.AuditFilter{Action: q.Get("action"), Actor: q.Get("actor"), Target: q.Get("target")}
	var err error
	if f.After, err = wire.ParseTime(q, "after"); err != nil {
		return err
	}
	if f.Before, err = wire.ParseTime(q, "before"); err != nil {
		return err
	}
	if v := q.Get("cursor"); v != "" {
		if f.Cursor, err = strconv.ParseInt(v, 10, 64); err != nil || f.Cursor <= 0 {
			return &ca.Error{Kind: ca.Malformed, Detail: "bad cursor"}
		}
	}
	if f.Limit, err = wire.ParseLimit(q); err != nil {
		return err
	}
	events, next, err := api.auditor.AuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := AuditList{Events: make([]AuditEvent, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, toAuditEvent(e))
	}
	if next > 0 {
		out.NextCursor = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func toAuditEvent(e audit.Event) AuditEvent {
	return AuditEvent{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash}
}

func (api *API) showKey(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	d, err := api.admin.ShowKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (api *API) listKeys(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	keys, err := api.admin.KeyInventory(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, KeyList{Keys: keys})
	return nil
}

// RewrapRequest is the body of POST /v1/keys/rewrap. Passphrases travel only
// inside the TLS connection and are never logged.
type RewrapRequest struct {
	CurrentPassphrase string `json:"current_passphrase"`
	NewPassphrase     string `json:"new_passphrase"`
	// To, when set, moves the data keys to another kind of KEK: an awskms:
	// key URI (a new KMS key when it names none), or "passphrase" (derived
	// from NewPassphrase). CurrentPassphrase is then needed only while the
	// active KEK is derived from a passphrase.
	To string `json:"to,omitempty"`
}

// String keeps passphrases out of anything that formats the request.
func (RewrapRequest) String() string { return "RewrapRequest{REDACTED}" }

// LogValue keeps passphrases out of logs.
func (RewrapRequest) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// RewrapResponse reports a completed re-wrap.
type RewrapResponse struct {
	KEK  string `json:"kek"`
	Keys int    `json:"keys"`
}

func (api *API) rewrap(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req RewrapRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	var id string
	var n int
	var err error
	if req.To != "" {
		id, n, err = api.admin.RewrapKEKTo(r.Context(), p.Actor(), req.To, []byte(req.CurrentPassphrase), []byte(req.NewPassphrase))
	} else {
		id, n, err = api.admin.RewrapKEK(r.Context(), p.Actor(), []byte(req.CurrentPassphrase), []byte(req.NewPassphrase))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RewrapResponse{KEK: id, Keys: n})
	return nil
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role        string   `json:"role"`
	Profiles    []string `json:"profiles,omitempty"`
	TTL         string   `json:"ttl,omitempty"`
	Description string   `json:"description,omitempty"`
	// Managed names the managed certificate a token of role managed may
	// fetch the bundle of.
	Managed string `json:"managed,omitempty"`
}

// Token describes a token; Secret is set only in the creation response.
type Token struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	Profiles    []string  `json:"profiles,omitempty"`
	Managed     string    `json:"managed,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	Revoked     time.Time `json:"revoked,omitzero"`
	Secret      string    `json:"token,omitempty"`
}

func toToken(t store.TokenRecord) Token {
	return Token{ID: t.ID, Role: t.Role, Profiles: t.Profiles, Managed: t.Managed, Description: t.Description,
		Created: t.Created, Expires: t.Expires, Revoked: t.Revoked}
}

func (api *API) createToken(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req TokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.TTL != "" {
		v, err := time.ParseDuration(req.TTL)
		if err != nil || v <= 0 {
			return &ca.Error{Kind: ca.Malformed, Detail: "ttl must be a positive duration such as \"720h\""}
		}
		ttl = v
	}
	var secret string
	var rec store.TokenRecord
	var err error
	switch {
	case req.Role == ca.RoleManaged && api.cfg.Managed == nil:
		return &ca.Error{Kind: ca.Malformed, Detail: "this server has no managed certificates"}
	case req.Role == ca.RoleManaged && len(req.Profiles) > 0:
		return &ca.Error{Kind: ca.Malformed, Detail: "profiles apply only to issuer tokens"}
	case req.Role == ca.RoleManaged:
		secret, rec, err = api.cfg.Managed.CreateToken(r.Context(), p.Actor(), req.Managed, ttl, req.Description)
	case req.Managed != "":
		return &ca.Error{Kind: ca.Malformed, Detail: "managed applies only to tokens of role managed"}
	default:
		secret, rec, err = api.tokens.CreateToken(r.Context(), p.Actor(), req.Role, req.Profiles, ttl, req.Description)
	}
	if err != nil {
		return err
	}
	t := toToken(rec)
	t.Secret = secret
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (api *API) listTokens(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	recs, err := api.tokens.Tokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]Token, 0, len(recs))
	for _, t := range recs {
		out = append(out, toToken(t))
	}
	writeJSON(w, http.StatusOK, TokenList{Tokens: out})
	return nil
}

func (api *API) revokeToken(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	if err := api.tokens.RevokeToken(r.Context(), p.Actor(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
