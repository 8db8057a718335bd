package managed

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Tx is what managed certificates write in one transaction: their records
// (the managed certificate, its versions, the keys it holds and when they
// are destroyed) and the audit events of what was done. Every store.Tx
// implements it; the comments state what this package relies on, the
// contract a backend keeps. Certificates, keys and their events are the
// authority's to write (Issuer).
type Tx interface {
	// AppendAudit appends e to the audit chain, assigning its sequence
	// number and hashes; the head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)
	// InsertManaged inserts a new managed certificate; store.ErrDuplicate
	// if the name exists, deleted or not (names are never reused).
	InsertManaged(m store.ManagedRecord) error
	// AdvanceManaged makes m's version (from+1) current, clears LastError
	// and sets LastAttempt; store.ErrNotFound, changing nothing, if the
	// name is not active at version from: a concurrent renewal or deletion
	// won, which is how two renewals of one name cannot both commit.
	AdvanceManaged(m store.ManagedRecord, from int) error
	// ManagedFailed records a failed renewal attempt; store.ErrNotFound if
	// there is no such managed certificate.
	ManagedFailed(name string, at time.Time, msg string) error
	// DeleteManaged marks the active managed certificate name deleted;
	// store.ErrNotFound if none is active by that name.
	DeleteManaged(name string, at time.Time) error
	// ManagedIssuerDue makes every active managed certificate whose
	// current version another issuer than activeIssuer issued due at at,
	// unless due earlier, and says how many it changed.
	ManagedIssuerDue(activeIssuer string, at time.Time) (int64, error)
	// InsertManagedVersion inserts a version; store.ErrDuplicate if the
	// name has that version or its serial is another version's.
	InsertManagedVersion(v store.ManagedVersion) error
	// SupersedeManagedVersion marks the current version superseded, to be
	// revoked at revokeDue (zero: never); store.ErrNotFound if it is not
	// current.
	SupersedeManagedVersion(name string, version int, revokeDue time.Time) error
	// ManagedVersionRevoked clears a superseded version's pending
	// revocation; store.ErrNotFound if none is pending.
	ManagedVersionRevoked(name string, version int) error
	// PutManagedKey records that name holds keyID with a certificate valid
	// until notAfter, keeping the latest notAfter (idempotent).
	PutManagedKey(keyID, name string, notAfter time.Time) error
	// ScheduleManagedKeyDestroy sets when keyID is destroyed (zero: not);
	// store.ErrNotFound if it is not a managed key.
	ScheduleManagedKeyDestroy(keyID string, at time.Time) error
	// ManagedKeyOf returns the managed key keyID as this transaction sees
	// it; store.ErrNotFound if none.
	ManagedKeyOf(keyID string) (store.ManagedKey, error)
}

// update runs fn in one transaction of st with this package's view of it;
// it returns after the commit, or fn's or the commit's error.
func update(ctx context.Context, st Store, fn func(tx Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error { return fn(tx) })
}
