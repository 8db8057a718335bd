package ca

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// BulkRevokeFilter selects the certificates of a bulk revocation: every
// valid (unexpired, unrevoked) one that matches all the fields set. At
// least one must be set.
type BulkRevokeFilter struct {
	IssuerKeyID string // the CA key that signed them
	Requester   string
	// IssuedAfter and IssuedBefore bound issuance, [After, Before).
	IssuedAfter  time.Time
	IssuedBefore time.Time
}

// Empty reports whether f selects nothing in particular, that is every
// valid certificate.
func (f BulkRevokeFilter) Empty() bool {
	return f.IssuerKeyID == "" && f.Requester == "" && f.IssuedAfter.IsZero() && f.IssuedBefore.IsZero()
}

// BulkRevokeRequest asks for every certificate Filter selects to be revoked
// as RevokeRequest revokes one.
type BulkRevokeRequest struct {
	Filter         BulkRevokeFilter
	Reason         int
	InvalidityDate time.Time
	Actor          string
	Channel        string
	// BlockKey is RevokeRequest.BlockKey, for every certificate.
	BlockKey bool
	// DryRun only counts: nothing is revoked and nothing audited.
	DryRun bool
}

// BulkRevocation is the outcome of a bulk revocation.
type BulkRevocation struct {
	Matched int // valid certificates the filter selected
	Revoked int
	// AlreadyRevoked counts those revoked meanwhile by someone else, such
	// as a sibling of a keyCompromise revoked with it.
	AlreadyRevoked int
	Failed         []BulkFailure
	DryRun         bool
}

// BulkFailure is one certificate a bulk revocation could not revoke, with
// the reason a client may be shown.
type BulkFailure struct {
	Serial string
	Err    error
}

// BulkRevoke revokes every valid certificate req.Filter selects, one
// Revoke each (its own transaction, cert.revoked event and refusal record),
// then appends one cert.bulk_revoked event with the filter and the counts.
// The selection is taken first, so certificates issued meanwhile are left
// alone. A certificate revoked meanwhile by another request counts as
// AlreadyRevoked, not as a failure. When ctx ends part way, the event still
// records what was done and ctx's error is returned with the counts.
func (a *Authority) BulkRevoke(ctx context.Context, req BulkRevokeRequest) (BulkRevocation, error) {
	f := req.Filter
	if f.Empty() {
		return BulkRevocation{}, errorf(Malformed, "a bulk revocation needs a filter: issuer key, requester or issuance time")
	}
	if err := checkReason(req.Reason); err != nil {
		return BulkRevocation{}, err
	}
	if !f.IssuedAfter.IsZero() && !f.IssuedBefore.IsZero() && !f.IssuedAfter.Before(f.IssuedBefore) {
		return BulkRevocation{}, errorf(Malformed, "issued_after %s is not before issued_before %s",
			f.IssuedAfter.UTC().Format(time.RFC3339), f.IssuedBefore.UTC().Format(time.RFC3339))
	}
	var serials []string
	sel := store.CertFilter{Status: "valid", IssuerKeyID: f.IssuerKeyID, Requester: f.Requester,
		IssuedAfter: f.IssuedAfter, IssuedBefore: f.IssuedBefore, Now: a.clk.Now()}
	if err := eachCertificate(ctx, a.st, sel, func(c store.CertRecord) { serials = append(serials, c.Serial) }); err != nil {
		return BulkRevocation{}, internal("select certificates to revoke", err)
	}
	res := BulkRevocation{Matched: len(serials), DryRun: req.DryRun}
	if req.DryRun {
		return res, nil
	}
	var stopped error
	for _, serial := range serials {
		if stopped = ctx.Err(); stopped != nil {
			break
		}
		_, err := a.Revoke(ctx, RevokeRequest{Serial: serial, Reason: req.Reason, InvalidityDate: req.InvalidityDate,
			Actor: req.Actor, Channel: req.Channel, BlockKey: req.BlockKey})
		switch {
		case err == nil:
			res.Revoked++
		case KindOf(err) == Conflict:
			res.AlreadyRevoked++
		default:
			res.Failed = append(res.Failed, BulkFailure{Serial: serial, Err: err})
		}
	}
	if err := a.auditBulkRevoke(context.WithoutCancel(ctx), req, res); err != nil {
		return res, errors.Join(stopped, err)
	}
	return res, stopped
}

func (a *Authority) auditBulkRevoke(ctx context.Context, req BulkRevokeRequest, res BulkRevocation) error {
	f := req.Filter
	detail := map[string]string{"reason": ReasonName(req.Reason), "channel": req.Channel,
		"matched": strconv.Itoa(res.Matched), "revoked": strconv.Itoa(res.Revoked),
		"already_revoked": strconv.Itoa(res.AlreadyRevoked), "failed": strconv.Itoa(len(res.Failed))}
	for k, v := range map[string]string{"issuer_key": f.IssuerKeyID, "requester": f.Requester} {
		if v != "" {
			detail[k] = v
		}
	}
	for k, t := range map[string]time.Time{"issued_after": f.IssuedAfter, "issued_before": f.IssuedBefore, "invalidity_date": req.InvalidityDate} {
		if !t.IsZero() {
			detail[k] = t.UTC().Format(time.RFC3339)
		}
	}
	now := a.clk.Now().UTC()
	err := update(ctx, a.st, func(tx Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(req.Actor), Action: audit.ActionCertBulkRevoked, Detail: detail})
		return err
	})
	if err != nil {
		return internal("audit the bulk revocation", err)
	}
	return nil
}
