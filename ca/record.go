package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// Issuance is one signed certificate to record: every path that issues
// (Sign and Renew for every channel, managed certificates, the serving and
// OCSP responder certificates, intermediate rotation, Init) records through
// record, so that each certificate row has the same cert.issued event
// beside it, in the same transaction. lifecycle/managed reaches it as
// HeldKeyIssuer.Record.
type Issuance struct {
	// Cert is the signed certificate; its ID is set when it is recorded.
	Cert store.CertRecord
	// Actor is who the cert.issued event names; "" is "system".
	Actor string
	// KeyID is the inventory id of the certified key when Sigil holds it
	// (a managed, responder or intermediate key); "" when the requester
	// does. NewKey's id is used when KeyID is empty.
	KeyID string
	// NewKey, if set, is the certified key, generated for this certificate:
	// its inventory row and key.generated event are recorded first.
	NewKey *store.KeyRecord
	// Before, if set, runs after NewKey and before the certificate: rows
	// the certificate follows in the audit chain (a key it replaces retired).
	Before func(tx store.Tx) error
	// InTx, if set, runs after the certificate and its event, so that the
	// caller's own rows commit with the certificate or not at all. An error
	// from it undoes everything and is returned as it is. It may run more
	// than once (a retried group commit).
	InTx func(tx store.Tx, rec store.CertRecord) error
	// Time is when the event says it happened; zero is the authority's now.
	Time time.Time
	// Start, if set, is when the request began: the issuance latency is
	// observed on success.
	Start time.Time
}

// record records iss in one transaction (see Issuance) and returns the
// certificate as recorded. It also notes, at most once a minute, that the
// issuing intermediate's key was used. Store errors are wrapped (callers
// tell store.ErrDuplicate and store.ErrNotFound apart with errors.Is);
// InTx's error is returned as it is.
func (a *Authority) record(ctx context.Context, iss Issuance) (store.CertRecord, error) {
	at := iss.Time
	if at.IsZero() {
		at = a.clk.Now()
	}
	touchKey := ""
	if k := a.issuerKeyID(iss.Cert.IssuerID); k != "" && a.touchDue(iss.Cert.Created) {
		touchKey = k
	}
	var rec store.CertRecord
	err := a.st.WithTx(ctx, func(stx store.Tx) error {
		tx := Tx(stx) // ca's writes; the caller's hooks get the store.Tx
		var err error
		if rec, err = recordTx(stx, iss, at); err != nil {
			return err
		}
		if touchKey != "" {
			if err := tx.TouchKey(touchKey, iss.Cert.Created); err != nil {
				return fmt.Errorf("touch issuer key: %w", err)
			}
		}
		if iss.InTx != nil {
			if err := iss.InTx(stx, rec); err != nil {
				return &inTxError{err}
			}
		}
		return nil
	})
	var caller *inTxError
	if errors.As(err, &caller) {
		return store.CertRecord{}, caller.err
	}
	if err != nil {
		return store.CertRecord{}, err
	}
	if !iss.Start.IsZero() {
		a.metrics.observeIssued(rec.Profile, a.clk.Since(iss.Start))
	}
	return rec, nil
}

// recordTx is record's work inside tx, without the caller's InTx: Init,
// which has no Authority yet, records its certificates with it inside its
// one transaction.
func recordTx(stx store.Tx, iss Issuance, at time.Time) (store.CertRecord, error) {
	tx := Tx(stx) // ca's writes; iss.Before, the caller's, gets the store.Tx
	keyID := iss.KeyID
	if k := iss.NewKey; k != nil {
		if err := tx.InsertKey(*k); err != nil {
			return store.CertRecord{}, fmt.Errorf("record key: %w", err)
		}
		if _, err := tx.AppendAudit(keystore.GeneratedEvent(*k, actorOrSystem(iss.Actor))); err != nil {
			return store.CertRecord{}, fmt.Errorf("audit key: %w", err)
		}
		if keyID == "" {
			keyID = k.ID
		}
	}
	if iss.Before != nil {
		if err := iss.Before(stx); err != nil {
			return store.CertRecord{}, &inTxError{err}
		}
	}
	rec := iss.Cert // InsertCertificate sets the ID; a retried batch starts over
	if err := tx.InsertCertificate(&rec); err != nil {
		return store.CertRecord{}, fmt.Errorf("record certificate: %w", err)
	}
	if _, err := tx.AppendAudit(issuedEvent(rec, actorOrSystem(iss.Actor), keyID, at)); err != nil {
		return store.CertRecord{}, fmt.Errorf("audit certificate: %w", err)
	}
	return rec, nil
}

// issuedEvent is the cert.issued audit event of rec: one schema for every
// channel. VerifyState reads issuer and der_sha256; verifiers of older
// chains read the rest.
func issuedEvent(rec store.CertRecord, actor, keyID string, at time.Time) audit.Event {
	return audit.Event{
		Time:   at,
		Actor:  actor,
		Action: audit.ActionCertIssued,
		Target: rec.Serial,
		Detail: map[string]string{
			"issuer": rec.IssuerID, "profile": rec.Profile, "channel": rec.Channel,
			"subject": rec.Subject, "sans": strings.Join(rec.SANs, ","),
			"not_after": rec.NotAfter.Format(time.RFC3339), "replaces": rec.Replaces,
			"key":           keyID,
			detailDERSHA256: derDigest(rec.DER),
		},
	}
}
