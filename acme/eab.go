package acme

import (
	"context"
	"errors"
	"fmt"
	"unicode"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// External account binding (RFC 8555 §7.3.4). An operator creates a key id
// and HMAC key for one endpoint and hands them to whoever runs the client;
// the first newAccount that proves the HMAC key binds the account to the
// key's requester identity, which every certificate of that account records.
// The HMAC key is a secret in the CA's key inventory, envelope-encrypted and
// re-wrapped like any private key.

// eabPurpose prefixes the ids of EAB keys in the key inventory.
const eabPurpose = "eab"

// maxRequester bounds a requester identity.
const maxRequester = 128

// EABKey is a newly created binding key. HMACKey is shown once: the CA
// keeps it only encrypted.
type EABKey struct {
	KeyID     string
	HMACKey   []byte
	Endpoint  string
	Requester string
}

// Endpoints are a server's ACME endpoints by name ("" is /acme/).
type Endpoints map[string]*Server

// CreateEABKey creates a binding key for the named endpoint. Errors are
// *ca.Error, for the /v1 API to render.
func (e Endpoints) CreateEABKey(ctx context.Context, actor, endpoint, requester string) (EABKey, error) {
	s, ok := e[endpoint]
	if !ok {
		return EABKey{}, &ca.Error{Kind: ca.NotFound, Detail: fmt.Sprintf("no ACME endpoint %q", endpoint)}
	}
	return s.CreateEABKey(ctx, actor, requester)
}

// CreateEABKey creates a binding key for this endpoint; requester "" means
// "eab:<key id>". The key, its inventory row and the acme.eab.created event
// commit together.
func (s *Server) CreateEABKey(ctx context.Context, actor, requester string) (EABKey, error) {
	if err := checkRequester(requester); err != nil {
		return EABKey{}, err
	}
	var out EABKey
	secret, _, err := s.ca.NewHMACSecret(ctx, eabPurpose, actor, func(stx store.Tx, rec store.KeyRecord) error {
		tx := view(stx)
		out = EABKey{KeyID: rec.ID, Endpoint: s.cfg.Name, Requester: requester}
		if out.Requester == "" {
			out.Requester = "eab:" + rec.ID
		}
		if err := tx.InsertEABKey(store.EABKey{ID: rec.ID, Endpoint: s.cfg.Name, Requester: out.Requester, Created: rec.Created}); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: rec.Created, Actor: actor, Action: audit.ActionACMEEABCreated, Target: rec.ID,
			Detail: map[string]string{"endpoint": s.cfg.Name, "requester": out.Requester}})
		return err
	})
	if err != nil {
		return EABKey{}, err
	}
	out.HMACKey = secret
	return out, nil
}

func checkRequester(r string) error {
	if len(r) > maxRequester {
		return &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("requester is longer than %d bytes", maxRequester)}
	}
	for _, c := range r {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) && c != ' ' {
			return &ca.Error{Kind: ca.Malformed, Detail: "requester must be printable text"}
		}
	}
	return nil
}

// eabBinding is a verified binding: the key it used and the identity it
// grants.
type eabBinding struct {
	keyID     string
	requester string
}

// verifyEAB checks a newAccount's externalAccountBinding against this
// endpoint's keys. A key may bind one account only, and only on the endpoint
// it was made for.
func (s *Server) verifyEAB(ctx context.Context, raw []byte, p *post, url string) (eabBinding, error) {
	var k store.EABKey
	var secret []byte
	defer func() { clear(secret) }()
	kid, err := VerifyEAB(raw, p.key, url, func(kid string) ([]byte, error) {
		var err error
		k, err = s.st.EABKey(ctx, kid)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, Unauthorized(fmt.Sprintf("external account key id %q is not known", kid))
		case err != nil:
			return nil, fmt.Errorf("load eab key: %w", err)
		case k.Endpoint != s.cfg.Name:
			return nil, Unauthorized(fmt.Sprintf("external account key id %q belongs to another ACME endpoint", kid))
		case !k.Revoked.IsZero():
			return nil, Unauthorized(fmt.Sprintf("external account key id %q is revoked", kid))
		case !k.Used.IsZero():
			return nil, Unauthorized(fmt.Sprintf("external account key id %q is already bound to an account", kid))
		}
		secret, err = s.ca.HMACSecret(ctx, kid, "acme:eab")
		return secret, err
	})
	if err != nil {
		return eabBinding{}, err
	}
	return eabBinding{keyID: kid, requester: k.Requester}, nil
}
