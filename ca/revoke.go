package ca

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Revocation reason codes: the CRLReason values of RFC 5280 §5.3.1. Value 7
// is not used.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	// ReasonRemoveFromCRL appears only in delta CRL entries for a
	// certificate released from hold; it is never a reason to revoke.
	ReasonRemoveFromCRL      = 8
	ReasonPrivilegeWithdrawn = 9
	ReasonAACompromise       = 10
)

// ReasonName returns the RFC 5280 name of a reason code, such as
// "keyCompromise", or "reason(N)" for a code RFC 5280 does not define.
func ReasonName(code int) string {
	switch code {
	case ReasonUnspecified:
		return "unspecified"
	case ReasonKeyCompromise:
		return "keyCompromise"
	case ReasonCACompromise:
		return "cACompromise"
	case ReasonAffiliationChanged:
		return "affiliationChanged"
	case ReasonSuperseded:
		return "superseded"
	case ReasonCessationOfOperation:
		return "cessationOfOperation"
	case ReasonCertificateHold:
		return "certificateHold"
	case ReasonRemoveFromCRL:
		return "removeFromCRL"
	case ReasonPrivilegeWithdrawn:
		return "privilegeWithdrawn"
	case ReasonAACompromise:
		return "aACompromise"
	}
	return fmt.Sprintf("reason(%d)", code)
}

// checkReason refuses codes that cannot be asked for: 7 is unassigned and
// removeFromCRL only records, in a CRL, a release from hold.
func checkReason(code int) error {
	switch code {
	case ReasonRemoveFromCRL:
		return errorf(Malformed, "removeFromCRL (8) is not a revocation reason; to release a certificate from hold, unhold it")
	case 7:
		return errorf(Malformed, "revocation reason 7 is not assigned (RFC 5280 §5.3.1)")
	}
	if code < ReasonUnspecified || code > ReasonAACompromise {
		return errorf(Malformed, "unknown revocation reason %d (RFC 5280 §5.3.1 defines 0-6 and 8-10)", code)
	}
	return nil
}

// ParseRevocationReason reads a revocation reason as an operator types it:
// an RFC 5280 §5.3.1 name in any case, with or without "-" or "_" between
// words ("keyCompromise", "key-compromise", "KEY_COMPROMISE"), or its decimal
// code ("1"). It returns the code of a reason one may revoke with, or a
// Malformed *Error naming the accepted reasons.
func ParseRevocationReason(s string) (int, error) {
	in := strings.TrimSpace(s)
	if in != "" && strings.Trim(in, "0123456789") == "" {
		code, err := strconv.Atoi(in)
		if err != nil {
			return 0, errorf(Malformed, "unknown revocation reason %q", s)
		}
		if err := checkReason(code); err != nil {
			return 0, err
		}
		return code, nil
	}
	key := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(in))
	for code := ReasonUnspecified; code <= ReasonAACompromise; code++ {
		if key != "" && key == strings.ToLower(ReasonName(code)) {
			if err := checkReason(code); err != nil {
				return 0, err
			}
			return code, nil
		}
	}
	return 0, errorf(Malformed, "unknown revocation reason %q (want one of %s, or its code)", s, strings.Join(revocationReasons(), ", "))
}

// revocationReasons lists the names one may revoke with.
func revocationReasons() []string {
	var out []string
	for code := ReasonUnspecified; code <= ReasonAACompromise; code++ {
		if checkReason(code) == nil {
			out = append(out, ReasonName(code))
		}
	}
	return out
}

// RevokeRequest asks for one certificate to be revoked.
type RevokeRequest struct {
	Serial string // in any form NormalizeSerial accepts
	Reason int    // RFC 5280 §5.3.1 code: 0-6, 9 or 10
	// InvalidityDate, if set, is when the key is known or suspected to have
	// been compromised (RFC 5280 §5.3.2): not before the certificate's
	// NotBefore and not after the revocation.
	InvalidityDate time.Time
	Actor          string // who asks, e.g. "token:ab12"; recorded in the audit event
	Channel        string // ChannelAPI, ChannelACME, ...
	// BlockKey says the caller has proof that the key is compromised: the
	// request was signed with the certificate's own key, or an admin asks.
	// Only then does a keyCompromise revocation block the key and revoke
	// every other certificate with it, whoever requested those; a
	// requester's word alone must not reach other requesters' certificates.
	BlockKey bool
}

// Revoke revokes the certificate with req.Serial at the authority's current
// time and returns its updated record. The revocation and its cert.revoked
// audit event are one transaction. A certificate on hold may be revoked for
// good with any other reason (RFC 5280 §3.3): it keeps the hold's
// revocation time, since it has been out of service from then, and takes the
// new reason and invalidity date. Any other certificate that is already
// revoked is a Conflict and stays as it was. Every refusal is audited.
//
// A keyCompromise revocation with req.BlockKey also blocks the
// certificate's key (see BlockKey) and revokes every other unexpired
// certificate with it, in the same transaction.
func (a *Authority) Revoke(ctx context.Context, req RevokeRequest) (store.CertRecord, error) {
	rec, siblings, err := a.revoke(ctx, req)
	if err != nil {
		a.RecordRevocationRefusal(ctx, req, err)
		return store.CertRecord{}, err
	}
	for _, r := range append([]store.CertRecord{rec}, siblings...) {
		a.metrics.observeRevoked(ReasonName(r.RevokeReason))
		a.statusChanged(r)
	}
	return rec, nil
}

func (a *Authority) revoke(ctx context.Context, req RevokeRequest) (rec store.CertRecord, siblings []store.CertRecord, err error) {
	serial, err := NormalizeSerial(req.Serial)
	if err != nil {
		return store.CertRecord{}, nil, err
	}
	if err := checkReason(req.Reason); err != nil {
		return store.CertRecord{}, nil, err
	}
	rec, err = a.Certificate(ctx, serial)
	if err != nil {
		return store.CertRecord{}, nil, err
	}
	held := !rec.RevokedAt.IsZero() && rec.RevokeReason == ReasonCertificateHold && req.Reason != ReasonCertificateHold
	if !rec.RevokedAt.IsZero() && !held {
		return store.CertRecord{}, nil, alreadyRevoked(rec)
	}
	// CRLs and OCSP carry whole seconds (RFC 5280 §5.1.2.6, §5.3.2); the
	// record keeps what they will say.
	now := a.clk.Now().UTC().Truncate(time.Second)
	revokedAt := now
	if held {
		revokedAt = rec.RevokedAt
	}
	invalidity := req.InvalidityDate.UTC().Truncate(time.Second)
	if !req.InvalidityDate.IsZero() {
		switch {
		case invalidity.After(now):
			return store.CertRecord{}, nil, errorf(Malformed, "invalidity date %s is in the future", invalidity.Format(time.RFC3339))
		case invalidity.Before(rec.NotBefore):
			return store.CertRecord{}, nil, errorf(Malformed, "invalidity date %s is before the certificate's notBefore %s",
				invalidity.Format(time.RFC3339), rec.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	detail := map[string]string{"reason": ReasonName(req.Reason), "issuer": rec.IssuerID, "channel": req.Channel}
	if !invalidity.IsZero() {
		detail["invalidity_date"] = invalidity.Format(time.RFC3339)
	}
	if held {
		detail["held_since"] = rec.RevokedAt.UTC().Format(time.RFC3339)
	}
	err = update(ctx, a.st, func(tx Tx) error {
		var err error
		if held {
			err = tx.FinalizeHold(rec.IssuerID, serial, req.Reason, invalidity)
		} else {
			err = tx.RevokeCertificate(rec.IssuerID, serial, now, req.Reason, invalidity)
		}
		if err != nil {
			return err
		}
		if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(req.Actor), Action: audit.ActionCertRevoked, Target: serial, Detail: detail}); err != nil {
			return err
		}
		// A managed certificate's current version, revoked, is renewed at once.
		if _, err := tx.ManagedCertRevoked(serial, now); err != nil {
			return err
		}
		siblings = nil // a retried batch runs this function again
		if req.Reason != ReasonKeyCompromise || !req.BlockKey || len(rec.SPKIHash) != sha256.Size {
			return nil
		}
		sibs, err := a.blockKeyTx(tx, rec.SPKIHash, "revocation:"+serial, serial, req.Actor, req.Channel, now)
		if errors.Is(err, store.ErrDuplicate) {
			return nil // blocked before: its certificates were revoked then
		}
		siblings = sibs
		return err
	})
	if err != nil {
		return store.CertRecord{}, nil, a.transitionError(ctx, serial, "revoke", err)
	}
	rec.RevokedAt, rec.RevokeReason, rec.InvalidityDate = revokedAt, req.Reason, invalidity
	return rec, siblings, nil
}

// Unhold releases the certificate with serial from certificateHold: it is
// valid again, as if never revoked, and returned updated. The release and
// its cert.unheld audit event are one transaction. A certificate that is not
// on hold (valid, or revoked for another reason) is a Conflict. Every
// refusal is audited.
func (a *Authority) Unhold(ctx context.Context, serial, actor string) (store.CertRecord, error) {
	rec, err := a.unhold(ctx, serial, actor)
	if err != nil {
		a.recordRefusal(ctx, "unhold", serial, actor, "", err)
		return store.CertRecord{}, err
	}
	a.statusChanged(rec)
	return rec, nil
}

func (a *Authority) unhold(ctx context.Context, serial, actor string) (store.CertRecord, error) {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return store.CertRecord{}, err
	}
	rec, err := a.Certificate(ctx, serial)
	if err != nil {
		return store.CertRecord{}, err
	}
	if err := checkOnHold(rec); err != nil {
		return store.CertRecord{}, err
	}
	now := a.clk.Now().UTC()
	err = update(ctx, a.st, func(tx Tx) error {
		if err := tx.UnholdCertificate(rec.IssuerID, serial); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(actor), Action: audit.ActionCertUnheld, Target: serial,
			Detail: map[string]string{"issuer": rec.IssuerID, "held_since": rec.RevokedAt.UTC().Format(time.RFC3339)}})
		return err
	})
	if err != nil {
		return store.CertRecord{}, a.transitionError(ctx, serial, "unhold", err)
	}
	rec.RevokedAt, rec.RevokeReason, rec.InvalidityDate = time.Time{}, 0, time.Time{}
	return rec, nil
}

func alreadyRevoked(rec store.CertRecord) *Error {
	return errorf(Conflict, "certificate %s is already revoked (%s) since %s",
		rec.Serial, ReasonName(rec.RevokeReason), rec.RevokedAt.UTC().Format(time.RFC3339))
}

func checkOnHold(rec store.CertRecord) error {
	switch {
	case rec.RevokedAt.IsZero():
		return errorf(Conflict, "certificate %s is not on hold: it is not revoked", rec.Serial)
	case rec.RevokeReason != ReasonCertificateHold:
		return errorf(Conflict, "certificate %s is not on hold: it is revoked (%s) since %s, which cannot be undone",
			rec.Serial, ReasonName(rec.RevokeReason), rec.RevokedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// transitionError classifies a failed revoke or unhold transaction. The
// record was checked before the transaction, so a refused transition means
// another request changed it in between: the error describes it as it is now.
func (a *Authority) transitionError(ctx context.Context, serial, op string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(NotFound, "no certificate with serial %s", serial)
	case errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrNotOnHold):
		rec, rerr := a.Certificate(ctx, serial)
		if rerr != nil {
			return rerr
		}
		if op == "revoke" {
			if !rec.RevokedAt.IsZero() {
				return alreadyRevoked(rec)
			}
		} else if cerr := checkOnHold(rec); cerr != nil {
			return cerr
		}
		return errorf(Conflict, "certificate %s changed during the request; try again", serial)
	}
	return internal(op+" certificate", err)
}

// RecordRevocationRefusal audits a revocation a surface refused before it
// reached Revoke, such as one with an unparseable reason.
func (a *Authority) RecordRevocationRefusal(ctx context.Context, req RevokeRequest, err error) {
	a.recordRefusal(ctx, "revoke", req.Serial, req.Actor, req.Channel, err)
}

// recordRefusal audits a refused revoke or unhold as request.refused, with
// the serial as target when it is one. The audit write is best effort: its
// failure is logged, and the caller still gets the refusal.
func (a *Authority) recordRefusal(ctx context.Context, op, serial, actor, channel string, err error) {
	target, serr := NormalizeSerial(serial)
	if serr != nil {
		target = "" // never copy unchecked input into the target index
	}
	d := map[string]string{"request": op}
	if channel != "" {
		d["channel"] = channel
	}
	a.AuditRefusal(ctx, Refusal{Actor: actorOrSystem(actor), Target: target, Detail: d, Err: err,
		Op: op, LogAttrs: []any{"serial", serial, "actor", actor}})
}

// Revocation revokes certificates already read, with the caller's rows, in
// one transaction (managed certificates: a superseded version; every
// version of one deleted with its keys).
type Revocation struct {
	// Certs are revoked as read: a valid one now, one on hold for good
	// (keeping its hold's time).
	Certs   []store.CertRecord
	Reason  int
	Actor   string
	Channel string
	// Detail, if set, adds keys to the cert.revoked event of Certs[i].
	Detail func(i int) map[string]string
	// InTx, if set, runs after the revocations, in their transaction.
	InTx func(tx store.Tx) error
	// Time is the revocation time, in whole seconds; zero is now.
	Time time.Time
}

// revokeRecords does r and returns the revoked records, updated. A
// certificate revoked or changed meanwhile fails the whole transaction
// with the store's error (store.ErrAlreadyRevoked, store.ErrNotOnHold,
// store.ErrNotFound), wrapped; InTx's error is returned as it is. Listeners
// (OnStatusChange) hear of each revocation after commit.
func (a *Authority) revokeRecords(ctx context.Context, r Revocation) ([]store.CertRecord, error) {
	now := r.Time
	if now.IsZero() {
		now = a.clk.Now().UTC().Truncate(time.Second)
	}
	// r.InTx gets the store.Tx, which the caller narrows; ca's own writes
	// go through Tx.
	err := a.st.WithTx(ctx, func(stx store.Tx) error {
		tx := Tx(stx)
		for i, rec := range r.Certs {
			var err error
			if rec.RevokedAt.IsZero() {
				err = tx.RevokeCertificate(rec.IssuerID, rec.Serial, now, r.Reason, time.Time{})
			} else {
				err = tx.FinalizeHold(rec.IssuerID, rec.Serial, r.Reason, time.Time{})
			}
			if err != nil {
				return fmt.Errorf("revoke %s: %w", rec.Serial, err)
			}
			detail := map[string]string{"reason": ReasonName(r.Reason), "issuer": rec.IssuerID, "channel": r.Channel}
			if r.Detail != nil {
				for k, v := range r.Detail(i) {
					detail[k] = v
				}
			}
			if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(r.Actor), Action: audit.ActionCertRevoked,
				Target: rec.Serial, Detail: detail}); err != nil {
				return fmt.Errorf("audit revocation: %w", err)
			}
		}
		if r.InTx != nil {
			if err := r.InTx(stx); err != nil {
				return &inTxError{err}
			}
		}
		return nil
	})
	var caller *inTxError
	if errors.As(err, &caller) {
		return nil, caller.err
	}
	if err != nil {
		return nil, err
	}
	out := make([]store.CertRecord, len(r.Certs))
	for i, rec := range r.Certs {
		if rec.RevokedAt.IsZero() {
			rec.RevokedAt = now
		}
		rec.RevokeReason, rec.InvalidityDate = r.Reason, time.Time{}
		out[i] = rec
		a.metrics.observeRevoked(ReasonName(r.Reason))
		a.statusChanged(rec)
	}
	return out, nil
}
