package managed

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// KeyPurpose is the inventory purpose of managed-certificate keys.
const KeyPurpose = keystore.PurposeManaged

// Why a managed version was issued (store.ManagedVersion.Reason).
const (
	RenewCreated = "created" // the first version
	RenewDue     = "due"     // its predecessor reached its renewal point
	RenewRevoked = "revoked" // its predecessor was revoked
	RenewIssuer  = "issuer"  // its predecessor was issued by another intermediate
	RenewManual  = "manual"  // an operator asked
)

// Issuer is what managed certificates ask of the authority
// (ca.Authority.HeldKeys).
type Issuer interface {
	// Intermediate is the certificate issuing now.
	Intermediate() ca.Issuer
	CheckKeyType(profile, keyType string) (keystore.Algorithm, error)
	CheckKeyNotBlocked(ctx context.Context, pub crypto.PublicKey) error
	GenerateKey(ctx context.Context, purpose string, alg keystore.Algorithm) (crypto.Signer, store.KeyRecord, error)
	SignLeaf(ctx context.Context, req ca.LeafRequest) (store.CertRecord, error)
	Record(ctx context.Context, iss ca.Issuance) (store.CertRecord, error)
	RevokeRecords(ctx context.Context, r ca.Revocation) ([]store.CertRecord, error)
	ExportKey(ctx context.Context, keyID, actor string, detail map[string]string, inTx func(tx store.Tx) error) ([]byte, error)
	RetireKey(tx store.Tx, rec store.KeyRecord, actor string, at time.Time, detail map[string]string) error
	DestroyKey(tx store.Tx, rec store.KeyRecord, actor, reason string, at time.Time) error
	CreateManagedToken(ctx context.Context, actor, name string, ttl time.Duration, description string) (string, store.TokenRecord, error)
	RecordUnauthenticatedRefusal(ctx context.Context, r ca.UnauthenticatedRefusal)
	AuditRefusal(ctx context.Context, r ca.Refusal)
}

// Store is what managed certificates read; they write in transactions
// (WithTx), through their view of one (Tx).
type Store interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	Key(ctx context.Context, id string) (store.KeyRecord, error)
	Issuer(ctx context.Context, id string) (store.IssuerRecord, error)
	Managed(ctx context.Context, name string) (store.ManagedRecord, error)
	ManagedList(ctx context.Context, after string, limit int, deleted bool) ([]store.ManagedRecord, error)
	ManagedVersions(ctx context.Context, name string) ([]store.ManagedVersion, error)
	ManagedVersionBySerial(ctx context.Context, serial string) (store.ManagedVersion, error)
	ManagedKeys(ctx context.Context, name string) ([]store.ManagedKey, error)
	DueManaged(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedRecord, error)
	ManagedIssuedElsewhere(ctx context.Context, activeIssuer string) (bool, error)
	DueManagedRevocations(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedVersion, error)
	DueManagedKeys(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedKey, error)
}

// Config configures a Service.
type Config struct {
	Clock  clockwork.Clock
	Logger *slog.Logger
}

// Service creates, renews, deletes and delivers managed certificates.
type Service struct {
	ca  Issuer
	st  Store
	clk clockwork.Clock
	log *slog.Logger
}

// New checks cfg and returns a Service issuing through iss.
func New(cfg Config, iss Issuer, st Store) (*Service, error) {
	if cfg.Clock == nil || cfg.Logger == nil || iss == nil || st == nil {
		return nil, errors.New("managed: clock, logger, issuer and store are required")
	}
	return &Service{ca: iss, st: st, clk: cfg.Clock, log: cfg.Logger}, nil
}

// Spec asks for a new managed certificate.
type Spec struct {
	Name     string   // 1-64 of [A-Za-z0-9._-], starting with a letter or digit
	SANs     []string // DNS names, IP addresses, email addresses, URIs
	Profile  string
	KeyType  string        // keystore algorithm name; "" is ecdsa-p256
	Validity time.Duration // 0: the profile default
	// RenewAt is the fraction of each version's lifetime after which it is
	// renewed: "2/3", "0.5" or "75%"; "" is DefaultRenewAt.
	RenewAt string
	// RotateKey is "always" (a new key at every renewal; the default),
	// "never", or "every:N" (a new key at every Nth renewal).
	RotateKey string
	// RevokePreviousAfter, if set, revokes each superseded version (reason
	// superseded) that long after its successor was issued; nil: never.
	RevokePreviousAfter *time.Duration
	Actor               string // who asks, e.g. "token:ab12"
}

// Cert is a managed certificate as the API shows it.
type Cert struct {
	Name                string    `json:"name"`
	Profile             string    `json:"profile"`
	SANs                []string  `json:"sans"`
	KeyType             string    `json:"key_type"`
	Validity            string    `json:"validity,omitempty"`
	RenewAt             string    `json:"renew_at"`
	RotateKey           string    `json:"rotate_key"`
	RevokePreviousAfter string    `json:"revoke_previous_after,omitempty"`
	State               string    `json:"state"`
	Created             time.Time `json:"created"`
	CreatedBy           string    `json:"created_by"`
	Deleted             time.Time `json:"deleted,omitzero"`
	Version             int       `json:"version"`
	Serial              string    `json:"serial"`
	KeyID               string    `json:"key_id"`
	NotAfter            time.Time `json:"not_after"`
	RenewDue            time.Time `json:"renew_due"`
	LastError           string    `json:"last_error,omitempty"`
	LastAttempt         time.Time `json:"last_attempt,omitzero"`
	Versions            []Version `json:"versions,omitempty"`
}

// Version is one certificate of a managed name. State is "current",
// "previous" (the one before, still valid), "superseded", "revoked" or
// "expired".
type Version struct {
	Version      int       `json:"version"`
	Serial       string    `json:"serial"`
	KeyID        string    `json:"key_id"`
	IssuerID     string    `json:"issuer"`
	Created      time.Time `json:"created"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	State        string    `json:"state"`
	Reason       string    `json:"reason"`
	RevokeAt     time.Time `json:"revoke_at,omitzero"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

func errorf(k ca.Kind, format string, args ...any) *ca.Error {
	return &ca.Error{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

func internal(detail string, err error) *ca.Error {
	return &ca.Error{Kind: ca.Internal, Detail: detail, Err: err}
}

func actorOrSystem(s string) string {
	if s == "" {
		return "system"
	}
	return s
}

func requester(name string) string { return "managed:" + name }

// Get returns the managed certificate name, deleted or not, with every
// version, newest first.
func (s *Service) Get(ctx context.Context, name string) (Cert, error) {
	if err := ca.CheckManagedName(name); err != nil {
		return Cert{}, err
	}
	m, err := s.st.Managed(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Cert{}, errorf(ca.NotFound, "no managed certificate %q", name)
	}
	if err != nil {
		return Cert{}, internal("load managed certificate", err)
	}
	vs, err := s.st.ManagedVersions(ctx, name)
	if err != nil {
		return Cert{}, internal("load managed versions", err)
	}
	return s.view(m, vs), nil
}

// List returns up to limit managed certificates whose name sorts after
// cursor, by name, and the cursor of the next page ("": no more). Deleted
// ones are listed only if deleted is set.
func (s *Service) List(ctx context.Context, cursor string, limit int, deleted bool) ([]Cert, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ms, err := s.st.ManagedList(ctx, cursor, limit+1, deleted)
	if err != nil {
		return nil, "", internal("list managed certificates", err)
	}
	next := ""
	if len(ms) > limit {
		ms = ms[:limit]
		next = ms[limit-1].Name
	}
	out := make([]Cert, 0, len(ms))
	for _, m := range ms {
		out = append(out, s.view(m, nil))
	}
	return out, next, nil
}

// CreateToken stores a new token of role managed for the active managed
// certificate name and returns its secret, shown only once.
func (s *Service) CreateToken(ctx context.Context, actor, name string, ttl time.Duration, description string) (string, store.TokenRecord, error) {
	return s.ca.CreateManagedToken(ctx, actor, name, ttl, description)
}

func (s *Service) view(m store.ManagedRecord, vs []store.ManagedVersion) Cert {
	c := Cert{Name: m.Name, Profile: m.Profile, SANs: m.SANs, KeyType: m.KeyType, RenewAt: m.RenewAt,
		RotateKey: RotateKeyString(m.RotateEvery), State: m.State, Created: m.Created, CreatedBy: m.CreatedBy,
		Deleted: m.Deleted, Version: m.Version, Serial: m.Serial, KeyID: m.KeyID, NotAfter: m.NotAfter,
		RenewDue: m.RenewDue, LastError: m.LastError, LastAttempt: m.LastAttempt}
	if c.SANs == nil {
		c.SANs = []string{}
	}
	if m.Validity > 0 {
		c.Validity = m.Validity.String()
	}
	if m.RevokeAfter >= 0 {
		c.RevokePreviousAfter = m.RevokeAfter.String()
	}
	now := s.clk.Now()
	for _, v := range vs {
		mv := Version{Version: v.Version, Serial: v.Serial, KeyID: v.KeyID, IssuerID: v.IssuerID,
			Created: v.Created, NotBefore: v.NotBefore, NotAfter: v.NotAfter, Reason: v.Reason, RevokeAt: v.RevokeDue,
			RevokedAt: v.RevokedAt}
		switch {
		case !v.RevokedAt.IsZero():
			mv.State, mv.RevokeReason = "revoked", ca.ReasonName(v.RevokeReason)
		case !now.Before(v.NotAfter):
			mv.State = "expired"
		case v.Version == m.Version:
			mv.State = "current"
		case v.Version == m.Version-1:
			mv.State = "previous"
		default:
			mv.State = "superseded"
		}
		c.Versions = append(c.Versions, mv)
	}
	return c
}

func (s *Service) active(ctx context.Context, name string) (store.ManagedRecord, error) {
	if err := ca.CheckManagedName(name); err != nil {
		return store.ManagedRecord{}, err
	}
	m, err := s.st.Managed(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ManagedRecord{}, errorf(ca.NotFound, "no managed certificate %q", name)
	case err != nil:
		return store.ManagedRecord{}, internal("load managed certificate", err)
	case m.State != store.ManagedActive:
		return store.ManagedRecord{}, errorf(ca.NotFound, "managed certificate %q was deleted", name)
	}
	return m, nil
}

// refusalDetail is what the audit log says of a failure: its detail, or
// "internal error" (internal detail is logged, never recorded).
func refusalDetail(err error) string {
	if e, ok := ca.AsError(err); ok && ca.KindOf(err) != ca.Internal {
		return e.Detail
	}
	return "internal error"
}

// recordRefusal audits a refused managed-certificate request as
// request.refused (ca.Authority.AuditRefusal). Best effort.
func (s *Service) recordRefusal(ctx context.Context, op, name, actor string, err error) {
	target := name
	if ca.CheckManagedName(name) != nil {
		target = "" // never copy unchecked input into the target index
	}
	s.ca.AuditRefusal(ctx, ca.Refusal{Actor: actorOrSystem(actor), Target: target, Detail: map[string]string{"request": op},
		Err: err, Op: op, LogAttrs: []any{"managed", name, "actor", actor}})
}
