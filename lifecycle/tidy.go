package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// DefaultRetention is how long tidy keeps what has expired: 90 days.
const DefaultRetention = 90 * 24 * time.Hour

// TidyConfig configures the tidy job.
type TidyConfig struct {
	// Retention is how long after its expiry a record is left alone
	// (default DefaultRetention).
	Retention time.Duration
	// Batch bounds the rows one transaction changes (default 1000), so the
	// store's single writer is never held long away from issuance.
	Batch  int
	Clock  clockwork.Clock
	Logger *slog.Logger
}

// WithDefaults returns c with every unset field at its default, as
// NewTidier uses it; callers that show the defaults read them here.
func (c TidyConfig) WithDefaults() TidyConfig {
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	return c
}

// TidyAuthority is what tidy asks of ca: certificates are ca's.
type TidyAuthority interface {
	ArchiveExpired(ctx context.Context, expiredBefore time.Time, batch int) (int64, error)
}

// TidyStore is where tidy purges the records of ACME, revocation and its
// own jobs, and audits what it did (its transactions see lifecycle's view,
// Tx).
type TidyStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// Tidier is the tidy job. It keeps the store's hot paths small without
// deleting anything an auditor needs:
//
//   - certificates expired for longer than the retention are archived: the
//     row stays whole and is found by serial and in every listing, but it
//     leaves the partial indexes the OCSP refresh, CRL generation and expiry
//     notices read;
//   - pre-signed OCSP responses whose nextUpdate is older than the retention
//     are deleted (no relying party accepts them, the responder never
//     loads them);
//   - ACME orders and authorizations (with their challenges) whose expiry is
//     older than the retention are deleted: protocol state, while what
//     they led to is in the certificate record and the audit log. An order
//     whose certificate is not yet archived stays: it says which account
//     and endpoint the certificate belongs to;
//   - delivered expiry notices of certificates expired longer than the
//     retention are deleted;
//   - spent ACME nonces are deleted as soon as they expire: they are a
//     replay guard, not a record, and an expired nonce is refused anyway.
//
// Certificate rows, keys and the audit log are never deleted. A run that
// tidied anything, or failed, appends one "tidy.completed" audit event with
// the counts.
type Tidier struct {
	cfg  TidyConfig
	auth TidyAuthority
	st   TidyStore
}

// NewTidier checks cfg and returns the tidy job.
func NewTidier(cfg TidyConfig, auth TidyAuthority, st TidyStore) (*Tidier, error) {
	if cfg.Clock == nil || cfg.Logger == nil || auth == nil || st == nil {
		return nil, errors.New("tidy: clock, logger, authority and store are required")
	}
	cfg = cfg.WithDefaults()
	if cfg.Retention < 24*time.Hour {
		return nil, fmt.Errorf("tidy: retention %s is under a day", cfg.Retention)
	}
	return &Tidier{cfg: cfg, auth: auth, st: st}, nil
}

// Run is the tidy job's Task: Items is the number of rows archived or
// deleted.
func (t *Tidier) Run(ctx context.Context) (Result, error) {
	now := t.cfg.Clock.Now().UTC()
	cutoff := now.Add(-t.cfg.Retention)
	detail := map[string]string{"retention": t.cfg.Retention.String(), "cutoff": cutoff.Format(time.RFC3339)}
	var total int64
	archived, err := t.auth.ArchiveExpired(ctx, cutoff, t.cfg.Batch)
	total += archived
	detail["certificates_archived"] = strconv.FormatInt(archived, 10)
	// The purges, each against the retention cutoff but spent nonces,
	// which go once expired.
	steps := []struct {
		what   store.Expired
		before time.Time
	}{
		{store.ExpiredOCSPResponses, cutoff},
		{store.ExpiredACMEOrders, cutoff},
		{store.ExpiredACMEAuthzs, cutoff},
		{store.ExpiredNotices, cutoff},
		{store.ExpiredNonces, now},
	}
	for _, s := range steps {
		if err != nil {
			break
		}
		var n int64
		n, err = t.purge(ctx, s.what, s.before)
		total += n
		detail[s.what.String()+"_deleted"] = strconv.FormatInt(n, 10)
	}
	if err != nil {
		detail["error"] = err.Error()
	}
	// As for state-changing jobs, a run that did something or failed is
	// audited (job_runs has every run), even when it stopped early.
	if total > 0 || err != nil {
		aerr := update(context.WithoutCancel(ctx), t.st, func(tx Tx) error {
			_, err := tx.AppendAudit(audit.Event{Time: t.cfg.Clock.Now().UTC(), Actor: "system:tidy", Action: audit.ActionTidyCompleted,
				Target: "store", Detail: detail})
			return err
		})
		if err == nil && aerr != nil {
			err = fmt.Errorf("tidy: audit: %w", aerr)
		}
	}
	args := []any{"rows", total, "cutoff", cutoff}
	for _, k := range []string{"certificates_archived", "ocsp_responses_deleted", "acme_orders_deleted", "acme_authzs_deleted",
		"expiry_notices_deleted", "acme_nonces_deleted"} {
		args = append(args, k, detail[k])
	}
	t.cfg.Logger.InfoContext(ctx, "tidy", args...)
	return Result{Items: total}, err
}

// purge deletes every record of one kind older than before, a batch per
// transaction.
func (t *Tidier) purge(ctx context.Context, what store.Expired, before time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("tidy %s: %w", what, err)
		}
		var n int64
		err := update(ctx, t.st, func(tx Tx) error {
			var err error
			n, err = tx.PurgeExpired(what, before, t.cfg.Batch)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("tidy %s: %w", what, err)
		}
		total += n
		if n < int64(t.cfg.Batch) {
			return total, nil
		}
	}
}
