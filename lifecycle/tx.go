package lifecycle

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Tx is what lifecycle writes in one transaction: job runs, delivered
// expiry notices, the purge of dead protocol records, and the audit events
// of what its jobs did. Every store.Tx implements it; the comments state
// what lifecycle relies on, the contract a backend keeps.
type Tx interface {
	// AppendAudit appends e to the audit chain, assigning its sequence
	// number and hashes; the head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)
	// StartJobRun records r (Job, Trigger, Started) as running and sets
	// r.ID, which increases with every run.
	StartJobRun(r *store.JobRun) error
	// FinishJobRun records the end of the running run r.ID (Ended, Result,
	// Error, Items); store.ErrNotFound if it is not running.
	FinishJobRun(r store.JobRun) error
	// InterruptJobRuns marks every run still running as interrupted at at,
	// with why, and says how many; called at start, when none can be.
	InterruptJobRuns(at time.Time, why string) (int64, error)
	// RecordExpiryNotice records a delivered notice; the same certificate
	// and threshold again changes nothing (idempotent), so a redelivery
	// records once.
	RecordExpiryNotice(n store.ExpiryNotice) error
	// PurgeExpired deletes up to limit records of kind what whose time is
	// before before and says how many (fewer than limit: none is left), so
	// that one call holds the writer briefly. Certificates and audit events
	// are never among them.
	PurgeExpired(what store.Expired, before time.Time, limit int) (int64, error)
}

// txStore runs transactions; Store, TidyStore and NotifyStore include it.
type txStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// update runs fn in one transaction of st and hands it lifecycle's view of
// the transaction; it returns after the commit, or fn's or the commit's
// error.
func update(ctx context.Context, st txStore, fn func(tx Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error { return fn(tx) })
}
