package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/store"
)

const (
	managedColumns = `name, profile, sans, key_type, validity, renew_at, rotate_every, revoke_after, state, created,
		created_by, deleted, version, serial, not_after, issuer_id, key_id, key_uses, renew_due, last_error, last_attempt`
	versionColumns = "name, version, serial, issuer_id, key_id, created, not_before, not_after, state, reason, revoke_due"
	// versionRead joins each version to its certificate's revocation status.
	versionRead = `SELECT v.name, v.version, v.serial, v.issuer_id, v.key_id, v.created, v.not_before, v.not_after, v.state,
		v.reason, v.revoke_due, COALESCE(c.revoked_at, 0), COALESCE(c.revoke_reason, 0)
		FROM managed_versions v LEFT JOIN certificates c ON c.issuer_id = v.issuer_id AND c.serial = v.serial`
	managedKeyColumns = "key_id, name, not_after, destroy_due"

	qInsertManaged  = "INSERT INTO managed (" + managedColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qAdvanceManaged = `UPDATE managed SET version = ?, serial = ?, not_after = ?, issuer_id = ?, key_id = ?, key_uses = ?, renew_due = ?,
		last_error = '', last_attempt = ? WHERE name = ? AND version = ? AND state = 'active'`
	qManagedFailed  = "UPDATE managed SET last_error = ?, last_attempt = ? WHERE name = ?"
	qDeleteManaged  = "UPDATE managed SET state = 'deleted', deleted = ? WHERE name = ? AND state = 'active'"
	qManagedRevoked = "UPDATE managed SET renew_due = ? WHERE serial = ? AND state = 'active' AND renew_due > ?"
	// Two ranges rather than issuer_id != ?, which no index serves.
	qIssuerDueBelow = `UPDATE managed SET renew_due = ? WHERE state = 'active' AND issuer_id < ? AND renew_due > ?`
	qIssuerDueAbove = `UPDATE managed SET renew_due = ? WHERE state = 'active' AND issuer_id > ? AND renew_due > ?`

	qInsertVersion    = "INSERT INTO managed_versions (" + versionColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	qSupersedeVersion = `UPDATE managed_versions SET state = 'superseded', revoke_due = ?
		WHERE name = ? AND version = ? AND state = 'current'`
	qVersionRevoked = "UPDATE managed_versions SET revoke_due = 0 WHERE name = ? AND version = ? AND revoke_due > 0"

	qPutManagedKey = `INSERT INTO managed_keys (key_id, name, not_after, destroy_due) VALUES (?, ?, ?, 0)
		ON CONFLICT (key_id) DO UPDATE SET not_after = CASE WHEN excluded.not_after > managed_keys.not_after
		THEN excluded.not_after ELSE managed_keys.not_after END`
	qScheduleKeyDestroy = "UPDATE managed_keys SET destroy_due = ? WHERE key_id = ?"

	qDueManaged = "SELECT " + managedColumns + ` FROM managed
		WHERE state = 'active' AND renew_due <= ? AND (renew_due, name) > (?, ?) ORDER BY renew_due, name LIMIT ?`
	qIssuedElsewhere = `SELECT 1 FROM (SELECT 1 FROM managed WHERE state = 'active' AND issuer_id < ?
		UNION ALL SELECT 1 FROM managed WHERE state = 'active' AND issuer_id > ?) AS other LIMIT 1`
	qDueRevocations = versionRead + `
		WHERE v.revoke_due > 0 AND v.revoke_due <= ? AND (v.revoke_due, v.serial) > (?, ?) ORDER BY v.revoke_due, v.serial LIMIT ?`
	qDueKeys = "SELECT " + managedKeyColumns + ` FROM managed_keys
		WHERE destroy_due > 0 AND destroy_due <= ? AND (destroy_due, key_id) > (?, ?) ORDER BY destroy_due, key_id LIMIT ?`
)

// InsertManaged implements store.Tx.
func (t *pgTx) InsertManaged(m store.ManagedRecord) error {
	what := "insert managed " + m.Name
	if m.Name == "" || m.Version < 1 || m.Serial == "" || m.KeyID == "" || m.RenewDue.IsZero() {
		return fmt.Errorf("%s: incomplete record", what)
	}
	_, err := t.exec(what, qInsertManaged, m.Name, m.Profile, joinSANs(m.SANs), m.KeyType, int64(m.Validity), m.RenewAt,
		m.RotateEvery, revokeAfter(m.RevokeAfter), m.State, nanos(m.Created), m.CreatedBy, nanos(m.Deleted), m.Version,
		m.Serial, nanos(m.NotAfter), m.IssuerID, m.KeyID, m.KeyUses, nanos(m.RenewDue), m.LastError, nanos(m.LastAttempt))
	return err
}

// revokeAfter stores "never" (any negative duration) as -1.
func revokeAfter(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64(d)
}

// AdvanceManaged implements store.Tx.
func (t *pgTx) AdvanceManaged(m store.ManagedRecord, from int) error {
	what := fmt.Sprintf("advance managed %s from version %d", m.Name, from)
	if m.Version != from+1 || m.Serial == "" || m.KeyID == "" || m.RenewDue.IsZero() {
		return fmt.Errorf("%s: incomplete record (version %d)", what, m.Version)
	}
	res, err := t.exec(what, qAdvanceManaged, m.Version, m.Serial, nanos(m.NotAfter), m.IssuerID, m.KeyID, m.KeyUses, nanos(m.RenewDue),
		nanos(m.LastAttempt), m.Name, from)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedFailed implements store.Tx.
func (t *pgTx) ManagedFailed(name string, at time.Time, msg string) error {
	what := "record managed failure " + name
	res, err := t.exec(what, qManagedFailed, msg, nanos(at), name)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// DeleteManaged implements store.Tx.
func (t *pgTx) DeleteManaged(name string, at time.Time) error {
	what := "delete managed " + name
	res, err := t.exec(what, qDeleteManaged, nanos(at), name)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedCertRevoked implements store.Tx.
func (t *pgTx) ManagedCertRevoked(serial string, at time.Time) (int64, error) {
	res, err := t.exec("managed certificate revoked "+serial, qManagedRevoked, nanos(at), serial, nanos(at))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("managed certificate revoked %s: %w", serial, err)
	}
	return n, nil
}

// ManagedIssuerDue implements store.Tx.
func (t *pgTx) ManagedIssuerDue(activeIssuer string, at time.Time) (int64, error) {
	var total int64
	for _, q := range []string{qIssuerDueBelow, qIssuerDueAbove} {
		res, err := t.exec("managed issuer due", q, nanos(at), activeIssuer, nanos(at))
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("managed issuer due: %w", err)
		}
		total += n
	}
	return total, nil
}

// InsertManagedVersion implements store.Tx.
func (t *pgTx) InsertManagedVersion(v store.ManagedVersion) error {
	what := fmt.Sprintf("insert managed version %s/%d", v.Name, v.Version)
	_, err := t.exec(what, qInsertVersion, v.Name, v.Version, v.Serial, v.IssuerID, v.KeyID, nanos(v.Created),
		nanos(v.NotBefore), nanos(v.NotAfter), v.State, v.Reason, nanos(v.RevokeDue))
	return err
}

// SupersedeManagedVersion implements store.Tx.
func (t *pgTx) SupersedeManagedVersion(name string, version int, revokeDue time.Time) error {
	what := fmt.Sprintf("supersede managed version %s/%d", name, version)
	res, err := t.exec(what, qSupersedeVersion, nanos(revokeDue), name, version)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedVersionRevoked implements store.Tx.
func (t *pgTx) ManagedVersionRevoked(name string, version int) error {
	what := fmt.Sprintf("managed version revoked %s/%d", name, version)
	res, err := t.exec(what, qVersionRevoked, name, version)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// PutManagedKey implements store.Tx.
func (t *pgTx) PutManagedKey(keyID, name string, notAfter time.Time) error {
	_, err := t.exec("put managed key "+keyID, qPutManagedKey, keyID, name, nanos(notAfter))
	return err
}

// ScheduleManagedKeyDestroy implements store.Tx.
func (t *pgTx) ScheduleManagedKeyDestroy(keyID string, at time.Time) error {
	what := "schedule managed key destruction " + keyID
	res, err := t.exec(what, qScheduleKeyDestroy, nanos(at), keyID)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedKeyOf implements store.Tx.
func (t *pgTx) ManagedKeyOf(keyID string) (store.ManagedKey, error) {
	k, err := scanManagedKey(t.queryRow("SELECT "+managedKeyColumns+" FROM managed_keys WHERE key_id = ?", keyID))
	if err != nil {
		return store.ManagedKey{}, notFound(err, "managed key "+keyID)
	}
	return k, nil
}

func scanManaged(sc interface{ Scan(...any) error }) (store.ManagedRecord, error) {
	var m store.ManagedRecord
	var sans string
	var validity, revokeAfter, created, deleted, notAfter, renewDue, lastAttempt int64
	err := sc.Scan(&m.Name, &m.Profile, &sans, &m.KeyType, &validity, &m.RenewAt, &m.RotateEvery, &revokeAfter, &m.State,
		&created, &m.CreatedBy, &deleted, &m.Version, &m.Serial, &notAfter, &m.IssuerID, &m.KeyID, &m.KeyUses, &renewDue,
		&m.LastError, &lastAttempt)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	m.SANs = splitSANs(sans)
	m.Validity, m.RevokeAfter = time.Duration(validity), time.Duration(revokeAfter)
	m.Created, m.Deleted, m.RenewDue, m.LastAttempt = fromNanos(created), fromNanos(deleted), fromNanos(renewDue), fromNanos(lastAttempt)
	m.NotAfter = fromNanos(notAfter)
	return m, nil
}

func scanVersion(sc interface{ Scan(...any) error }) (store.ManagedVersion, error) {
	var v store.ManagedVersion
	var created, notBefore, notAfter, revokeDue, revokedAt int64
	err := sc.Scan(&v.Name, &v.Version, &v.Serial, &v.IssuerID, &v.KeyID, &created, &notBefore, &notAfter, &v.State,
		&v.Reason, &revokeDue, &revokedAt, &v.RevokeReason)
	if err != nil {
		return store.ManagedVersion{}, err
	}
	v.Created, v.NotBefore, v.NotAfter, v.RevokeDue = fromNanos(created), fromNanos(notBefore), fromNanos(notAfter), fromNanos(revokeDue)
	v.RevokedAt = fromNanos(revokedAt)
	return v, nil
}

func scanManagedKey(sc interface{ Scan(...any) error }) (store.ManagedKey, error) {
	var k store.ManagedKey
	var notAfter, due int64
	if err := sc.Scan(&k.KeyID, &k.Name, &notAfter, &due); err != nil {
		return store.ManagedKey{}, err
	}
	k.NotAfter, k.DestroyDue = fromNanos(notAfter), fromNanos(due)
	return k, nil
}

// collect scans every row with scan, closing rows.
func collect[T any](rows pgx.Rows, what string, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// Managed implements Store.
func (s *Store) Managed(ctx context.Context, name string) (store.ManagedRecord, error) {
	m, err := scanManaged(s.queryRow(ctx, "SELECT "+managedColumns+" FROM managed WHERE name = ?", name))
	if err != nil {
		return store.ManagedRecord{}, notFound(err, "managed "+name)
	}
	return m, nil
}

// ManagedList implements Store.
func (s *Store) ManagedList(ctx context.Context, after string, limit int, deleted bool) ([]store.ManagedRecord, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q := "SELECT " + managedColumns + " FROM managed WHERE name > ? AND (state = 'active' OR ?::boolean) ORDER BY name LIMIT ?"
	rows, err := s.query(ctx, q, after, deleted, limit)
	if err != nil {
		return nil, fmt.Errorf("list managed: %w", err)
	}
	return collect(rows, "list managed", scanManaged)
}

// ManagedVersions implements Store.
func (s *Store) ManagedVersions(ctx context.Context, name string) ([]store.ManagedVersion, error) {
	rows, err := s.query(ctx, versionRead+" WHERE v.name = ? ORDER BY v.version DESC", name)
	if err != nil {
		return nil, fmt.Errorf("managed versions of %s: %w", name, err)
	}
	return collect(rows, "managed versions of "+name, scanVersion)
}

// ManagedVersionBySerial implements Store.
func (s *Store) ManagedVersionBySerial(ctx context.Context, serial string) (store.ManagedVersion, error) {
	v, err := scanVersion(s.queryRow(ctx, versionRead+" WHERE v.serial = ?", serial))
	if err != nil {
		return store.ManagedVersion{}, notFound(err, "managed version with serial "+serial)
	}
	return v, nil
}

// ManagedKeys implements Store.
func (s *Store) ManagedKeys(ctx context.Context, name string) ([]store.ManagedKey, error) {
	rows, err := s.query(ctx, "SELECT "+managedKeyColumns+" FROM managed_keys WHERE name = ? ORDER BY key_id", name)
	if err != nil {
		return nil, fmt.Errorf("managed keys of %s: %w", name, err)
	}
	return collect(rows, "managed keys of "+name, scanManagedKey)
}

// DueManaged implements Store.
func (s *Store) DueManaged(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedRecord, error) {
	rows, err := s.query(ctx, qDueManaged, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("due managed certificates: %w", err)
	}
	return collect(rows, "due managed certificates", scanManaged)
}

// ManagedIssuedElsewhere implements Store.
func (s *Store) ManagedIssuedElsewhere(ctx context.Context, activeIssuer string) (bool, error) {
	var one int
	err := s.queryRow(ctx, qIssuedElsewhere, activeIssuer, activeIssuer).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("managed certificates of other issuers: %w", err)
	}
	return true, nil
}

// DueManagedRevocations implements Store.
func (s *Store) DueManagedRevocations(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedVersion, error) {
	rows, err := s.query(ctx, qDueRevocations, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("due managed revocations: %w", err)
	}
	return collect(rows, "due managed revocations", scanVersion)
}

// DueManagedKeys implements Store.
func (s *Store) DueManagedKeys(ctx context.Context, now time.Time, after store.DueCursor, limit int) ([]store.ManagedKey, error) {
	rows, err := s.query(ctx, qDueKeys, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("due managed key destructions: %w", err)
	}
	return collect(rows, "due managed key destructions", scanManagedKey)
}

func pageLimit(limit int) int {
	if limit <= 0 || limit > 10000 {
		return 1000
	}
	return limit
}
