package acme

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Tx is what ACME writes in one transaction: its own records and the audit
// events that say what changed. Every store.Tx implements it; the comments
// state what ACME relies on, the contract a backend keeps. A write that
// fails leaves nothing of itself once the transaction is rolled back.
type Tx interface {
	// AppendAudit appends e to the audit chain, assigning its sequence
	// number and hashes; the head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)
	// PutSetting inserts or replaces the value under name (idempotent).
	PutSetting(name string, value []byte) error

	// InsertACMEAccount inserts a; store.ErrDuplicate if the id exists, if
	// the endpoint has an account with that key thumbprint already, or if a
	// non-empty EABKeyID binds another account.
	InsertACMEAccount(a store.ACMEAccount) error
	// UpdateACMEAccount sets the status, contacts, terms agreement and key
	// (JWK and thumbprint) of account a.ID, nothing else;
	// store.ErrNotFound if there is none, store.ErrDuplicate (nothing
	// changed) if another account of the endpoint has the new thumbprint.
	UpdateACMEAccount(a store.ACMEAccount) error
	// InsertACMEOrder inserts o, whose account must exist;
	// store.ErrDuplicate if the id exists.
	InsertACMEOrder(o store.ACMEOrder) error
	// TransitionACMEOrder moves order o.ID to o's status, authorizations,
	// certificate serial, error and update time only if its stored status
	// and update time are still from's, checked in the write itself so
	// that of two racing transitions exactly one wins (RFC 8555 §7.1.6
	// state machine; the finalize race). store.ErrStateChanged if it moved,
	// store.ErrNotFound if there is no such order.
	TransitionACMEOrder(o, from store.ACMEOrder) error
	// InsertACMEAuthz inserts a and its challenges in order, whose account
	// must exist; store.ErrDuplicate if an id exists.
	InsertACMEAuthz(a store.ACMEAuthz) error
	// SetACMEAuthzCAAChecked records when CAA last allowed issuance for the
	// authorization's identifier; store.ErrNotFound if there is none.
	SetACMEAuthzCAAChecked(id string, at time.Time) error
	// TransitionACMEAuthz sets authorization id's status (and expiry, unless
	// zero) only if it is still in status from, in the write itself;
	// store.ErrStateChanged if it is in another, store.ErrNotFound if none.
	TransitionACMEAuthz(id, status string, expires time.Time, from string) error
	// TransitionACMEChallenge sets challenge c.ID's status, validation time
	// and error only if it is still in status from, in the write itself;
	// store.ErrStateChanged if it is in another, store.ErrNotFound if none.
	TransitionACMEChallenge(c store.ACMEChallenge, from string) error
	// UseNonce records nonce as spent until expires; store.ErrDuplicate if
	// it is recorded already, by this node or another sharing the store.
	UseNonce(nonce string, expires time.Time) error
	// InsertEABKey inserts k (its secret is a key, inserted apart);
	// store.ErrDuplicate if the id exists.
	InsertEABKey(k store.EABKey) error
	// MarkEABKeyUsed records that key id bound an account at at, once:
	// store.ErrDuplicate if it was used already, store.ErrNotFound if there
	// is no such key or it is revoked.
	MarkEABKeyUsed(id string, at time.Time) error
}

// update runs fn in one transaction of st and hands it ACME's view of the
// transaction; it returns after the commit, or fn's or the commit's error.
func update(ctx context.Context, st NonceStore, fn func(tx Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error { return fn(tx) })
}

// view narrows a transaction ca opened for ACME (the commit hooks of Sign
// and NewHMACSecret) to ACME's view.
func view(tx store.Tx) Tx { return tx }
