package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Blocked keys (issue 6): a key revoked for keyCompromise by someone who
// proved the compromise (the key itself, or an admin: RevokeRequest.BlockKey),
// or blocked by an operator, may never be certified again, nor hold an ACME
// account; every other unexpired certificate with it is revoked in the same
// transaction.

// KeyHash is the SHA-256 of pub's DER SubjectPublicKeyInfo, the form the
// blocklist keeps.
func KeyHash(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return store.SPKIHash(der), nil
}

// CheckKeyNotBlocked returns a Forbidden *Error naming why pub is blocked,
// or nil.
func (a *Authority) CheckKeyNotBlocked(ctx context.Context, pub crypto.PublicKey) error {
	h, err := KeyHash(pub)
	if err != nil {
		return errorf(Malformed, "%v", err)
	}
	return a.checkKeyHash(ctx, h)
}

// checkKeyHash is CheckKeyNotBlocked for a key already hashed.
func (a *Authority) checkKeyHash(ctx context.Context, h []byte) error {
	k, err := a.st.KeyBlocked(ctx, h)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return internal("check blocked keys", err)
	}
	return errorf(Forbidden, "public key is blocked (%s, %s, since %s); use a new key",
		k.Reason, k.Source, k.Created.UTC().Format(time.RFC3339))
}

// BlockKey puts pub on the blocklist and revokes every unexpired certificate
// with it (reason keyCompromise), in one transaction, audited; it returns
// the revoked records. A key already blocked is a Conflict.
func (a *Authority) BlockKey(ctx context.Context, actor string, pub crypto.PublicKey) ([]store.CertRecord, error) {
	h, err := KeyHash(pub)
	if err != nil {
		return nil, errorf(Malformed, "%v", err)
	}
	now := a.clk.Now().UTC().Truncate(time.Second)
	var revoked []store.CertRecord
	err = update(ctx, a.st, func(tx Tx) error {
		var err error
		revoked, err = a.blockKeyTx(tx, h, "manual", "", actor, ChannelAPI, now)
		return err
	})
	if errors.Is(err, store.ErrDuplicate) {
		return nil, errorf(Conflict, "public key %x is already blocked", h)
	}
	if err != nil {
		return nil, internal("block key", err)
	}
	for _, r := range revoked {
		a.metrics.observeRevoked(ReasonName(ReasonKeyCompromise))
		a.statusChanged(r)
	}
	return revoked, nil
}

// blockKeyTx blocks the key hash h (ErrDuplicate if it is blocked already)
// and revokes the unexpired certificates with it, except the one with serial
// except, auditing each step. It returns the records it revoked.
func (a *Authority) blockKeyTx(tx Tx, h []byte, source, except, actor, channel string, now time.Time) ([]store.CertRecord, error) {
	if err := tx.BlockKey(store.BlockedKey{SPKIHash: h, Reason: ReasonName(ReasonKeyCompromise), Source: source,
		Actor: actorOrSystem(actor), Created: now}); err != nil {
		return nil, err
	}
	if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(actor), Action: audit.ActionKeyBlocked,
		Target: fmt.Sprintf("%x", h), Detail: map[string]string{"source": source, "reason": ReasonName(ReasonKeyCompromise)}}); err != nil {
		return nil, err
	}
	siblings, err := tx.CertificatesToBlockWithKey(h, now)
	if err != nil {
		return nil, err
	}
	var revoked []store.CertRecord
	for _, c := range siblings {
		if c.Serial == except {
			continue
		}
		detail := map[string]string{"reason": ReasonName(ReasonKeyCompromise), "issuer": c.IssuerID, "channel": channel,
			"blocked_key": fmt.Sprintf("%x", h)}
		var err error
		if c.RevokedAt.IsZero() {
			err = tx.RevokeCertificate(c.IssuerID, c.Serial, now, ReasonKeyCompromise, time.Time{})
			c.RevokedAt = now
			if err == nil { // a managed certificate's current version is renewed at once
				_, err = tx.ManagedCertRevoked(c.Serial, now)
			}
		} else {
			// On hold: made final, keeping the hold's time (see Revoke).
			err = tx.FinalizeHold(c.IssuerID, c.Serial, ReasonKeyCompromise, time.Time{})
			detail["held_since"] = c.RevokedAt.UTC().Format(time.RFC3339)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actorOrSystem(actor), Action: audit.ActionCertRevoked, Target: c.Serial,
			Detail: detail}); err != nil {
			return nil, err
		}
		c.RevokeReason = ReasonKeyCompromise
		revoked = append(revoked, c)
	}
	return revoked, nil
}
