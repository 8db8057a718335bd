package ca

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Tx is what the authority writes in one transaction: certificates, their
// revocation and the keys blocked with them, keys and KEKs, issuers,
// tokens, the root's CRL and settings, the managed certificates an
// issuance or revocation makes due, and the audit events of all of it.
// Every store.Tx implements it; the comments state what ca relies on, the
// contract a backend keeps. A caller's commit hook (SignRequest.InTx,
// Issuance.Before and InTx, RevokeRecords' InTx, NewHMACSecret's inTx,
// ExportKey's inTx) still receives the store.Tx, which the caller narrows
// to its own view; ca's own work in that transaction goes through Tx.
type Tx interface {
	// AppendAudit appends e to the audit chain, assigning its sequence
	// number and hashes; the head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)

	// InsertKEK inserts a new KEK; store.ErrDuplicate if the id exists.
	InsertKEK(k store.KEKRecord) error
	// InsertKey inserts a new key; store.ErrDuplicate if the id exists.
	InsertKey(k store.KeyRecord) error
	// TouchKey sets the key's last use to at if that is later (it never
	// moves back); a missing key is not an error.
	TouchKey(id string, at time.Time) error
	// RetireKey moves an active key to retired; store.ErrNotFound if no
	// active key has that id (retiring twice is an error).
	RetireKey(id string, at time.Time) error
	// DestroyKey crypto-shreds a retired key (wrapped data key and
	// ciphertext erased, the row kept); store.ErrNotFound if no retired key
	// has that id.
	DestroyKey(id string, at time.Time) error
	// Keys returns every key as this transaction sees it (its own writes
	// included), oldest first.
	Keys() ([]store.KeyRecord, error)

	// InsertIssuer inserts a new issuer whose key exists;
	// store.ErrDuplicate if the id exists.
	InsertIssuer(i store.IssuerRecord) error
	// SetIssuerState moves issuer id from state from to state to, in the
	// UPDATE itself; store.ErrNotFound if it is not in state from, which is
	// how two rotations or destructions cannot both commit.
	SetIssuerState(id, from, to string) error

	// InsertCertificate inserts c and sets c.ID; store.ErrDuplicate if the
	// issuer already used the serial (serials are unique per issuer).
	InsertCertificate(c *store.CertRecord) error
	// RevokeCertificate marks a certificate revoked; store.ErrNotFound if
	// the issuer has no such certificate, store.ErrAlreadyRevoked, changing
	// nothing, if it is revoked already (never silently re-dated).
	RevokeCertificate(issuerID, serial string, at time.Time, reason int, invalidity time.Time) error
	// UnholdCertificate releases a certificateHold revocation;
	// store.ErrNotFound if there is no such certificate, store.ErrNotOnHold,
	// changing nothing, if it is not on hold.
	UnholdCertificate(issuerID, serial string) error
	// FinalizeHold turns a certificateHold revocation into a final one,
	// keeping its time; store.ErrNotFound or store.ErrNotOnHold as for
	// UnholdCertificate.
	FinalizeHold(issuerID, serial string, reason int, invalidity time.Time) error
	// ArchiveCertificates marks up to limit live certificates expired before
	// expiredBefore archived, oldest expiry first, and says how many (fewer
	// than limit: none is left).
	ArchiveCertificates(expiredBefore, at time.Time, limit int) (int64, error)

	// BlockKey adds a key to the blocklist; store.ErrDuplicate if it is there.
	BlockKey(k store.BlockedKey) error
	// CertificatesToBlockWithKey lists the unexpired certificates with key
	// hash spkiHash that are unrevoked or on hold, oldest first, as this
	// transaction sees them.
	CertificatesToBlockWithKey(spkiHash []byte, now time.Time) ([]store.CertRecord, error)

	// InsertToken inserts a new token; store.ErrDuplicate if the id exists.
	InsertToken(t store.TokenRecord) error
	// RevokeToken revokes a token; store.ErrNotFound if no such unrevoked
	// token exists.
	RevokeToken(id string, at time.Time) error

	// PutCRL stores c as the latest CRL of its issuer and shard only if its
	// number exceeds the stored one's; otherwise store.ErrDuplicate and
	// nothing changes.
	PutCRL(c store.CRLRecord) error
	// PutSetting inserts or replaces the value under name (idempotent).
	PutSetting(name string, value []byte) error

	// ManagedCertRevoked makes the active managed certificate whose current
	// version has serial due at at, unless due earlier; it says how many
	// it changed (0 or 1).
	ManagedCertRevoked(serial string, at time.Time) (int64, error)
	// ManagedIssuerDue makes every active managed certificate that another
	// issuer than activeIssuer issued due at at, unless due earlier, and
	// says how many it changed.
	ManagedIssuerDue(activeIssuer string, at time.Time) (int64, error)
}

// txStore runs transactions; Store and RootCRLStore include it.
type txStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// update runs fn in one transaction of st and hands it the authority's
// view of the transaction; it returns after the commit, or fn's or the
// commit's error. A transaction that runs a caller's hook opens it with
// WithTx instead, hands the hook the store.Tx and does its own work
// through Tx.
func update(ctx context.Context, st txStore, fn func(tx Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error { return fn(tx) })
}
