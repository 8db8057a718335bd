package revocation

import (
	"context"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Tx is what revocation writes in one transaction: its own records (CRLs
// and the copy of pre-signed OCSP responses) and the audit events of what
// it published. Every store.Tx implements it; the comments state what
// revocation relies on, the contract a backend keeps.
type Tx interface {
	// AppendAudit appends e to the audit chain, assigning its sequence
	// number and hashes; the head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)
	// PutCRL stores c as the latest CRL of its issuer and shard only if
	// c.Number exceeds the stored one's (CRL numbers only grow, RFC 5280
	// §5.2.3), checked in the write itself so that two publishers cannot
	// both store one number; otherwise store.ErrDuplicate and nothing
	// changes.
	PutCRL(c store.CRLRecord) error
	// PutOCSPResponses inserts or replaces responses keyed by issuer,
	// serial and hash, keeping a stored one with a later ThisUpdate (a slow
	// writer never replaces a newer response); idempotent.
	PutOCSPResponses(rs []store.OCSPResponse) error
}

// txStore runs transactions; OCSPStore and CRLStore include it.
type txStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// update runs fn in one transaction of st and hands it revocation's view of
// the transaction; it returns after the commit, or fn's or the commit's
// error (store.ErrFull on a full disk, with nothing of fn written).
func update(ctx context.Context, st txStore, fn func(tx Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error { return fn(tx) })
}
