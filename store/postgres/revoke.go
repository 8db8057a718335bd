package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/store"
)

// Revocation statements. Each UPDATE carries its precondition in its WHERE
// clause, so that no other writer (another node sharing the database) can
// slip between a check and the change; only when no row changed is the row
// looked up, to tell a missing certificate from a refused transition.
const (
	qRevokeCertificate = `UPDATE certificates SET revoked_at = ?, revoke_reason = ?, invalidity_date = ?
		WHERE issuer_id = ? AND serial = ? AND revoked_at = 0`
	qUnholdCertificate = `UPDATE certificates SET revoked_at = 0, revoke_reason = 0, invalidity_date = 0
		WHERE issuer_id = ? AND serial = ? AND revoked_at != 0 AND revoke_reason = ?`
	qFinalizeHold = `UPDATE certificates SET revoke_reason = ?, invalidity_date = ?
		WHERE issuer_id = ? AND serial = ? AND revoked_at != 0 AND revoke_reason = ?`
	qCertificateExists = "SELECT 1 FROM certificates WHERE issuer_id = ? AND serial = ?"
)

// reasonCertificateHold is the RFC 5280 §5.3.1 CRLReason certificateHold,
// the only revocation that can be undone.
const reasonCertificateHold = 6

func (t *pgTx) RevokeCertificate(issuerID, serial string, at time.Time, reason int, invalidity time.Time) error {
	what := "revoke certificate " + issuerID + "/" + serial
	// revoked_at = 0 means "not revoked", and the column keeps Unix
	// nanoseconds: a time that does not survive that would store another
	// state than the one asked for.
	if at.IsZero() || at.UnixNano() == 0 || !fromNanos(at.UnixNano()).Equal(at) {
		return fmt.Errorf("%s: revocation time %v cannot be stored", what, at)
	}
	if !fromNanos(nanos(invalidity)).Equal(invalidity) {
		return fmt.Errorf("%s: invalidity date %v cannot be stored", what, invalidity)
	}
	res, err := t.exec(what, qRevokeCertificate, at.UnixNano(), reason, nanos(invalidity), issuerID, serial)
	if err != nil {
		return err
	}
	if err := t.changedOrWhy(res, what, issuerID, serial, store.ErrAlreadyRevoked); err != nil {
		return err
	}
	return t.notifyStatus(what, serial)
}

// notifyStatus tells the other nodes, when the transaction commits (a
// notification is part of it: a rollback sends none), that the status of
// the certificate with serial changed (WatchStatus).
func (t *pgTx) notifyStatus(what, serial string) error {
	_, err := t.exec(what+": notify", "SELECT pg_notify('"+statusChannel+"', $1)", t.g.instance+" "+serial)
	return err
}

func (t *pgTx) UnholdCertificate(issuerID, serial string) error {
	what := "unhold certificate " + issuerID + "/" + serial
	res, err := t.exec(what, qUnholdCertificate, issuerID, serial, reasonCertificateHold)
	if err != nil {
		return err
	}
	if err := t.changedOrWhy(res, what, issuerID, serial, store.ErrNotOnHold); err != nil {
		return err
	}
	return t.notifyStatus(what, serial)
}

func (t *pgTx) FinalizeHold(issuerID, serial string, reason int, invalidity time.Time) error {
	what := "finalize held certificate " + issuerID + "/" + serial
	if reason == reasonCertificateHold {
		return fmt.Errorf("%s: the final reason cannot be certificateHold", what)
	}
	if !fromNanos(nanos(invalidity)).Equal(invalidity) {
		return fmt.Errorf("%s: invalidity date %v cannot be stored", what, invalidity)
	}
	res, err := t.exec(what, qFinalizeHold, reason, nanos(invalidity), issuerID, serial, reasonCertificateHold)
	if err != nil {
		return err
	}
	if err := t.changedOrWhy(res, what, issuerID, serial, store.ErrNotOnHold); err != nil {
		return err
	}
	return t.notifyStatus(what, serial)
}

// changedOrWhy returns nil if res changed a row, store.ErrNotFound if the
// certificate does not exist, and refused (the precondition failed) if it does.
func (t *pgTx) changedOrWhy(res result, what, issuerID, serial string, refused error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	err = t.queryRow(qCertificateExists, issuerID, serial).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, refused)
}
