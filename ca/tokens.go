package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Token roles.
const (
	RoleAdmin   = "admin"
	RoleIssuer  = "issuer"
	RoleAuditor = "auditor"
	// RoleManaged tokens may fetch the bundle of one managed certificate
	// (Principal.Managed) and call nothing else.
	RoleManaged = "managed"
)

// tokenPrefix marks Sigil tokens so secret scanners can find leaked ones.
const tokenPrefix = "sigil_"

// Principal is an authenticated caller.
type Principal struct {
	TokenID  string
	Role     string
	Profiles []string  // issuer tokens: the profiles they may use; empty means none
	Managed  string    // managed tokens: the managed certificate they may fetch
	Expires  time.Time // when the token expires; zero: never
}

// Actor is how the principal appears in audit events and records.
func (p Principal) Actor() string { return "token:" + p.TokenID }

// NewToken makes a token secret and the record that stores only its hash.
// The secret reads "sigil_<id>_<secret>": the id locates the record, the
// secret is compared in constant time against its SHA-256.
func NewToken(role string, profiles []string, ttl time.Duration, description string, now time.Time) (string, store.TokenRecord, error) {
	switch role {
	case RoleAdmin, RoleAuditor:
		if len(profiles) > 0 {
			return "", store.TokenRecord{}, errorf(Malformed, "profiles apply only to issuer tokens")
		}
	case RoleIssuer:
		if len(profiles) == 0 {
			return "", store.TokenRecord{}, errorf(Malformed, "an issuer token needs at least one profile")
		}
	case RoleManaged:
		return "", store.TokenRecord{}, errorf(Malformed, "a managed token names its managed certificate (--managed NAME)")
	default:
		return "", store.TokenRecord{}, errorf(Malformed, "unknown role %q (want admin, issuer, auditor or managed)", role)
	}
	return newToken(role, profiles, "", ttl, description, now)
}

// NewManagedToken makes a token of role managed that may fetch the bundle
// of the managed certificate name only; see NewToken.
func NewManagedToken(name string, ttl time.Duration, description string, now time.Time) (string, store.TokenRecord, error) {
	if err := CheckManagedName(name); err != nil {
		return "", store.TokenRecord{}, err
	}
	return newToken(RoleManaged, nil, name, ttl, description, now)
}

func newToken(role string, profiles []string, managed string, ttl time.Duration, description string, now time.Time) (string, store.TokenRecord, error) {
	if ttl < 0 {
		return "", store.TokenRecord{}, errorf(Malformed, "negative ttl")
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", store.TokenRecord{}, internal("token id", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", store.TokenRecord{}, internal("token secret", err)
	}
	id := hex.EncodeToString(idb)
	enc := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(enc))
	rec := store.TokenRecord{
		ID: id, SecretHash: sum[:], Role: role, Profiles: profiles,
		Description: description, Created: now, Managed: managed,
	}
	if ttl > 0 {
		rec.Expires = now.Add(ttl)
	}
	return tokenPrefix + id + "_" + enc, rec, nil
}

// TokenAudit is the audit event recording a token's creation.
func TokenAudit(rec store.TokenRecord, actor string, now time.Time) audit.Event {
	d := map[string]string{"role": rec.Role, "description": rec.Description}
	if len(rec.Profiles) > 0 {
		d["profiles"] = strings.Join(rec.Profiles, ",")
	}
	if rec.Managed != "" {
		d["managed"] = rec.Managed
	}
	if !rec.Expires.IsZero() {
		d["expires"] = rec.Expires.Format(time.RFC3339)
	}
	// A digest of the stored secret hash, so that verification notices a
	// secret swapped in the database; the secret's entropy keeps it useless
	// for guessing.
	d[detailSecretDigest] = derDigest(rec.SecretHash)
	return audit.Event{Time: now, Actor: actor, Action: audit.ActionTokenCreated, Target: rec.ID, Detail: d}
}

// CreateToken stores a new token and returns its secret, shown only once.
func (x *Access) CreateToken(ctx context.Context, actor, role string, profiles []string, ttl time.Duration, description string) (string, store.TokenRecord, error) {
	a := x.a
	now := a.clk.Now().UTC()
	for _, p := range profiles {
		if _, ok := a.cfg.Profiles[p]; !ok {
			return "", store.TokenRecord{}, errorf(Malformed, "unknown profile %q", p)
		}
	}
	secret, rec, err := NewToken(role, profiles, ttl, description, now)
	if err != nil {
		return "", store.TokenRecord{}, err
	}
	return a.storeToken(ctx, secret, rec, actor, now)
}

// CreateManagedToken stores a new token of role managed for the active
// managed certificate name and returns its secret, shown only once.
func (h *HeldKeyIssuer) CreateManagedToken(ctx context.Context, actor, name string, ttl time.Duration, description string) (string, store.TokenRecord, error) {
	a := h.a
	now := a.clk.Now().UTC()
	if err := CheckManagedName(name); err != nil {
		return "", store.TokenRecord{}, err
	}
	switch m, err := a.st.Managed(ctx, name); {
	case errors.Is(err, store.ErrNotFound):
		return "", store.TokenRecord{}, errorf(NotFound, "no managed certificate %q", name)
	case err != nil:
		return "", store.TokenRecord{}, internal("load managed certificate", err)
	case m.State != store.ManagedActive:
		return "", store.TokenRecord{}, errorf(NotFound, "managed certificate %q was deleted", name)
	}
	secret, rec, err := NewManagedToken(name, ttl, description, now)
	if err != nil {
		return "", store.TokenRecord{}, err
	}
	return a.storeToken(ctx, secret, rec, actor, now)
}

func (a *Authority) storeToken(ctx context.Context, secret string, rec store.TokenRecord, actor string, now time.Time) (string, store.TokenRecord, error) {
	err := update(ctx, a.st, func(tx Tx) error {
		if err := tx.InsertToken(rec); err != nil {
			return err
		}
		_, err := tx.AppendAudit(TokenAudit(rec, actor, now))
		return err
	})
	if err != nil {
		return "", store.TokenRecord{}, internal("store token", err)
	}
	return secret, rec, nil
}

// RevokeToken revokes a token by id.
func (x *Access) RevokeToken(ctx context.Context, actor, id string) error {
	a := x.a
	now := a.clk.Now().UTC()
	err := update(ctx, a.st, func(tx Tx) error {
		if err := tx.RevokeToken(id, now); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionTokenRevoked, Target: id})
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "no active token %q", id)
	}
	if err != nil {
		return internal("revoke token", err)
	}
	return nil
}

// Tokens lists token records (never secrets).
func (x *Access) Tokens(ctx context.Context) ([]store.TokenRecord, error) {
	a := x.a
	t, err := a.st.Tokens(ctx)
	if err != nil {
		return nil, internal("list tokens", err)
	}
	return t, nil
}

// Authenticate checks a presented token. Every failure is the same
// Unauthorized error so that callers learn nothing about which part failed.
func (x *Access) Authenticate(ctx context.Context, presented string) (Principal, error) {
	a := x.a
	deny := errorf(Unauthorized, "invalid or expired token")
	id, secret, ok := splitToken(presented)
	var want []byte
	var rec store.TokenRecord
	if ok {
		r, err := a.st.Token(ctx, id)
		switch {
		case err == nil:
			rec, want = r, r.SecretHash
		case !errors.Is(err, store.ErrNotFound):
			return Principal{}, internal("load token", err)
		}
	}
	if want == nil {
		want = make([]byte, sha256.Size) // compare anyway to keep timing uniform
	}
	sum := sha256.Sum256([]byte(secret))
	match := subtle.ConstantTimeCompare(sum[:], want) == 1
	if !ok || !match || rec.ID == "" {
		return Principal{}, deny
	}
	now := a.clk.Now()
	if !rec.Revoked.IsZero() || (!rec.Expires.IsZero() && !now.Before(rec.Expires)) {
		return Principal{}, deny
	}
	return Principal{TokenID: rec.ID, Role: rec.Role, Profiles: rec.Profiles, Managed: rec.Managed, Expires: rec.Expires}, nil
}

func splitToken(s string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(s, tokenPrefix)
	if !found {
		return "", "", false
	}
	id, secret, found = strings.Cut(rest, "_")
	if !found || len(id) != 16 || secret == "" {
		return "", "", false
	}
	return id, secret, true
}

// String for a token never prints the secret.
var _ fmt.Stringer = Principal{}

// String identifies the principal without secrets.
func (p Principal) String() string { return fmt.Sprintf("%s(%s)", p.Actor(), p.Role) }

// TokenID returns the public id part of a presented token, if it has the
// Sigil token shape; it says nothing about validity.
func TokenID(presented string) (string, bool) {
	id, _, ok := splitToken(presented)
	return id, ok
}

// RecordAccessRefusal audits a request of an authenticated caller refused
// for its credentials, such as a valid token whose role may not call the
// endpoint. A caller that did not authenticate (no token, or one that does
// not authenticate, whatever its shape) goes to
// RecordUnauthenticatedRefusal instead, so that anonymous traffic cannot
// grow the audit log.
func (x *Access) RecordAccessRefusal(ctx context.Context, actor, method, path string, err error) {
	a := x.a
	a.AuditRefusal(ctx, Refusal{Action: audit.ActionAccessRefused, Actor: actor, ReasonOnly: true,
		Detail: map[string]string{"method": method, "path": path}, Err: err, Op: "access", LogAttrs: []any{"method", method, "path", path}})
}
