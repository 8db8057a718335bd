package api

import (
	"context"
	"crypto"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Gate is what the adapter calls around every request, whatever its role:
// who is asking, and the record of what was refused or read.
// ca.Access (ca.Authority.Access) implements it.
type Gate interface {
	Authenticate(ctx context.Context, token string) (ca.Principal, error)
	RecordAccessRefusal(ctx context.Context, actor, method, path string, err error)
	RecordUnauthenticatedRefusal(ctx context.Context, r ca.UnauthenticatedRefusal)
	RecordRead(ctx context.Context, actor, method, path, query string) error
}

// Issuer is what issuance and revocation call (admin and issuer tokens).
// Certificate lets an issuer token's revocation be checked against its own
// requests.
type Issuer interface {
	Sign(ctx context.Context, req ca.SignRequest) (*ca.Issued, error)
	RecordRefusal(ctx context.Context, req ca.SignRequest, err error)
	Revoke(ctx context.Context, req ca.RevokeRequest) (store.CertRecord, error)
	RecordRevocationRefusal(ctx context.Context, req ca.RevokeRequest, err error)
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
}

// Renewal is what POST /v1/renew calls: the presented certificate is the
// credential.
type Renewal interface {
	Renew(ctx context.Context, req ca.RenewRequest) (*ca.Issued, error)
	RecordRenewalRefusal(ctx context.Context, req ca.RenewRequest, err error)
}

// Auditor is what the history queries call: certificates, their summary
// and export, audit events and the audit export.
type Auditor interface {
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
	ScanCertificates(ctx context.Context, f store.CertFilter, fn func(store.CertRecord) error) error
	CertificateSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error)
	AuditEvents(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error)
	PrepareAuditExport(ctx context.Context, since time.Time) (*ca.AuditExport, error)
}

// Admin is what key and hold management and bulk revocation call (admin
// tokens; the key inventory is listed to auditors too).
type Admin interface {
	KeyInventory(ctx context.Context) ([]ca.KeyInfo, error)
	ShowKey(ctx context.Context, id string) (ca.KeyDetail, error)
	RewrapKEK(ctx context.Context, actor string, current, next []byte) (string, int, error)
	RewrapKEKTo(ctx context.Context, actor, to string, current, next []byte) (string, int, error)
	BlockKey(ctx context.Context, actor string, pub crypto.PublicKey) ([]store.CertRecord, error)
	Unhold(ctx context.Context, serial, actor string) (store.CertRecord, error)
	BulkRevoke(ctx context.Context, req ca.BulkRevokeRequest) (ca.BulkRevocation, error)
}

// TokenAdmin is what token management calls (admin tokens).
type TokenAdmin interface {
	CreateToken(ctx context.Context, actor, role string, profiles []string, ttl time.Duration, description string) (string, store.TokenRecord, error)
	RevokeToken(ctx context.Context, actor, id string) error
	Tokens(ctx context.Context) ([]store.TokenRecord, error)
}

// Authority is every view of the authority itself at once: what New takes
// first (a *ca.Authority is one). Handlers never hold it, only their view.
type Authority interface {
	Issuer
	Renewal
	Auditor
	Admin
}

// Access is the gate and token management at once: what New takes second
// (ca.Access, from ca.Authority.Access, is one).
type Access interface {
	Gate
	TokenAdmin
}
