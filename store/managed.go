package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Managed certificate states.
const (
	ManagedActive  = "active"
	ManagedDeleted = "deleted"
)

// Managed version states: the current version, or one a later version
// replaced (whatever its revocation status, which the certificate keeps).
const (
	VersionCurrent    = "current"
	VersionSuperseded = "superseded"
)

// ManagedRecord is one managed certificate: its issuance policy and its
// current version. Sigil holds its key (see ManagedKey).
type ManagedRecord struct {
	Name     string
	Profile  string
	SANs     []string
	KeyType  string
	Validity time.Duration // 0: the profile default
	// RenewAt is the fraction of a version's lifetime after which it is
	// renewed, as a ratio such as "2/3".
	RenewAt string
	// RotateEvery is the key rotation policy: 0 never, 1 a new key at every
	// renewal, N a new key at every Nth renewal.
	RotateEvery int
	// RevokeAfter is how long a superseded version stays valid before it is
	// revoked (reason superseded); negative: it is never revoked.
	RevokeAfter time.Duration
	State       string // ManagedActive or ManagedDeleted
	Created     time.Time
	CreatedBy   string
	Deleted     time.Time
	Version     int    // the current version, from 1
	Serial      string // its certificate
	NotAfter    time.Time
	IssuerID    string // its issuer
	KeyID       string // its key
	KeyUses     int    // versions issued with KeyID so far
	// RenewDue is when the current version is to be renewed: its renewal
	// point, or earlier (the revocation time when it was revoked).
	RenewDue    time.Time
	LastError   string // why the last renewal attempt failed; "" after a success
	LastAttempt time.Time
}

// ManagedVersion is one certificate issued for a managed name.
type ManagedVersion struct {
	Name      string
	Version   int
	Serial    string
	IssuerID  string
	KeyID     string
	Created   time.Time
	NotBefore time.Time
	NotAfter  time.Time
	State     string // VersionCurrent or VersionSuperseded
	Reason    string // why it was issued: created, due, revoked, issuer, manual
	// RevokeDue is when this superseded version is to be revoked; zero: never, or done.
	RevokeDue time.Time
	// RevokedAt and RevokeReason are the certificate's revocation status as
	// the certificate record has it when read (RevokedAt zero: not revoked);
	// writes ignore them.
	RevokedAt    time.Time
	RevokeReason int
}

// ManagedKey tracks a managed certificate's key until it is destroyed.
type ManagedKey struct {
	KeyID string
	Name  string
	// NotAfter is the latest notAfter of a certificate issued with the key.
	NotAfter time.Time
	// DestroyDue is when the key, retired, is to be crypto-shredded; zero
	// while it is in use, or once it is destroyed.
	DestroyDue time.Time
}

// DueCursor pages through due work in (due time, key) order; the zero value
// starts at the beginning.
type DueCursor struct {
	Due time.Time
	Key string
}

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
		UNION ALL SELECT 1 FROM managed WHERE state = 'active' AND issuer_id > ?) LIMIT 1`
	qDueRevocations = versionRead + `
		WHERE v.revoke_due > 0 AND v.revoke_due <= ? AND (v.revoke_due, v.serial) > (?, ?) ORDER BY v.revoke_due, v.serial LIMIT ?`
	qDueKeys = "SELECT " + managedKeyColumns + ` FROM managed_keys
		WHERE destroy_due > 0 AND destroy_due <= ? AND (destroy_due, key_id) > (?, ?) ORDER BY destroy_due, key_id LIMIT ?`
)

func managedWriteQueries() []string {
	return []string{qInsertManaged, qAdvanceManaged, qManagedFailed, qDeleteManaged, qManagedRevoked, qIssuerDueBelow, qIssuerDueAbove,
		qInsertVersion, qSupersedeVersion, qVersionRevoked, qPutManagedKey, qScheduleKeyDestroy}
}

// InsertManaged implements Tx.
func (t *sqliteTx) InsertManaged(m ManagedRecord) error {
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

// AdvanceManaged implements Tx.
func (t *sqliteTx) AdvanceManaged(m ManagedRecord, from int) error {
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

// ManagedFailed implements Tx.
func (t *sqliteTx) ManagedFailed(name string, at time.Time, msg string) error {
	what := "record managed failure " + name
	res, err := t.exec(what, qManagedFailed, msg, nanos(at), name)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// DeleteManaged implements Tx.
func (t *sqliteTx) DeleteManaged(name string, at time.Time) error {
	what := "delete managed " + name
	res, err := t.exec(what, qDeleteManaged, nanos(at), name)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedCertRevoked implements Tx.
func (t *sqliteTx) ManagedCertRevoked(serial string, at time.Time) (int64, error) {
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

// ManagedIssuerDue implements Tx.
func (t *sqliteTx) ManagedIssuerDue(activeIssuer string, at time.Time) (int64, error) {
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

// InsertManagedVersion implements Tx.
func (t *sqliteTx) InsertManagedVersion(v ManagedVersion) error {
	what := fmt.Sprintf("insert managed version %s/%d", v.Name, v.Version)
	_, err := t.exec(what, qInsertVersion, v.Name, v.Version, v.Serial, v.IssuerID, v.KeyID, nanos(v.Created),
		nanos(v.NotBefore), nanos(v.NotAfter), v.State, v.Reason, nanos(v.RevokeDue))
	return err
}

// SupersedeManagedVersion implements Tx.
func (t *sqliteTx) SupersedeManagedVersion(name string, version int, revokeDue time.Time) error {
	what := fmt.Sprintf("supersede managed version %s/%d", name, version)
	res, err := t.exec(what, qSupersedeVersion, nanos(revokeDue), name, version)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedVersionRevoked implements Tx.
func (t *sqliteTx) ManagedVersionRevoked(name string, version int) error {
	what := fmt.Sprintf("managed version revoked %s/%d", name, version)
	res, err := t.exec(what, qVersionRevoked, name, version)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// PutManagedKey implements Tx.
func (t *sqliteTx) PutManagedKey(keyID, name string, notAfter time.Time) error {
	_, err := t.exec("put managed key "+keyID, qPutManagedKey, keyID, name, nanos(notAfter))
	return err
}

// ScheduleManagedKeyDestroy implements Tx.
func (t *sqliteTx) ScheduleManagedKeyDestroy(keyID string, at time.Time) error {
	what := "schedule managed key destruction " + keyID
	res, err := t.exec(what, qScheduleKeyDestroy, nanos(at), keyID)
	if err != nil {
		return err
	}
	return oneRow(res, what)
}

// ManagedKeyOf implements Tx.
func (t *sqliteTx) ManagedKeyOf(keyID string) (ManagedKey, error) {
	k, err := scanManagedKey(t.tx.QueryRowContext(t.ctx, "SELECT "+managedKeyColumns+" FROM managed_keys WHERE key_id = ?", keyID))
	if err != nil {
		return ManagedKey{}, notFound(err, "managed key "+keyID)
	}
	return k, nil
}

func scanManaged(sc interface{ Scan(...any) error }) (ManagedRecord, error) {
	var m ManagedRecord
	var sans string
	var validity, revokeAfter, created, deleted, notAfter, renewDue, lastAttempt int64
	err := sc.Scan(&m.Name, &m.Profile, &sans, &m.KeyType, &validity, &m.RenewAt, &m.RotateEvery, &revokeAfter, &m.State,
		&created, &m.CreatedBy, &deleted, &m.Version, &m.Serial, &notAfter, &m.IssuerID, &m.KeyID, &m.KeyUses, &renewDue,
		&m.LastError, &lastAttempt)
	if err != nil {
		return ManagedRecord{}, err
	}
	m.SANs = splitSANs(sans)
	m.Validity, m.RevokeAfter = time.Duration(validity), time.Duration(revokeAfter)
	m.Created, m.Deleted, m.RenewDue, m.LastAttempt = fromNanos(created), fromNanos(deleted), fromNanos(renewDue), fromNanos(lastAttempt)
	m.NotAfter = fromNanos(notAfter)
	return m, nil
}

func scanVersion(sc interface{ Scan(...any) error }) (ManagedVersion, error) {
	var v ManagedVersion
	var created, notBefore, notAfter, revokeDue, revokedAt int64
	err := sc.Scan(&v.Name, &v.Version, &v.Serial, &v.IssuerID, &v.KeyID, &created, &notBefore, &notAfter, &v.State,
		&v.Reason, &revokeDue, &revokedAt, &v.RevokeReason)
	if err != nil {
		return ManagedVersion{}, err
	}
	v.Created, v.NotBefore, v.NotAfter, v.RevokeDue = fromNanos(created), fromNanos(notBefore), fromNanos(notAfter), fromNanos(revokeDue)
	v.RevokedAt = fromNanos(revokedAt)
	return v, nil
}

func scanManagedKey(sc interface{ Scan(...any) error }) (ManagedKey, error) {
	var k ManagedKey
	var notAfter, due int64
	if err := sc.Scan(&k.KeyID, &k.Name, &notAfter, &due); err != nil {
		return ManagedKey{}, err
	}
	k.NotAfter, k.DestroyDue = fromNanos(notAfter), fromNanos(due)
	return k, nil
}

// collect scans every row with scan, closing rows.
func collect[T any](rows *sql.Rows, what string, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
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
func (s *SQLite) Managed(ctx context.Context, name string) (ManagedRecord, error) {
	m, err := scanManaged(s.read.QueryRowContext(ctx, "SELECT "+managedColumns+" FROM managed WHERE name = ?", name))
	if err != nil {
		return ManagedRecord{}, notFound(err, "managed "+name)
	}
	return m, nil
}

// ManagedList implements Store.
func (s *SQLite) ManagedList(ctx context.Context, after string, limit int, deleted bool) ([]ManagedRecord, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q := "SELECT " + managedColumns + " FROM managed WHERE name > ? AND (state = 'active' OR ?) ORDER BY name LIMIT ?"
	rows, err := s.read.QueryContext(ctx, q, after, deleted, limit)
	if err != nil {
		return nil, fmt.Errorf("list managed: %w", err)
	}
	return collect(rows, "list managed", scanManaged)
}

// ManagedVersions implements Store.
func (s *SQLite) ManagedVersions(ctx context.Context, name string) ([]ManagedVersion, error) {
	rows, err := s.read.QueryContext(ctx, versionRead+" WHERE v.name = ? ORDER BY v.version DESC", name)
	if err != nil {
		return nil, fmt.Errorf("managed versions of %s: %w", name, err)
	}
	return collect(rows, "managed versions of "+name, scanVersion)
}

// ManagedVersionBySerial implements Store.
func (s *SQLite) ManagedVersionBySerial(ctx context.Context, serial string) (ManagedVersion, error) {
	v, err := scanVersion(s.read.QueryRowContext(ctx, versionRead+" WHERE v.serial = ?", serial))
	if err != nil {
		return ManagedVersion{}, notFound(err, "managed version with serial "+serial)
	}
	return v, nil
}

// ManagedKeys implements Store.
func (s *SQLite) ManagedKeys(ctx context.Context, name string) ([]ManagedKey, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT "+managedKeyColumns+" FROM managed_keys WHERE name = ? ORDER BY key_id", name)
	if err != nil {
		return nil, fmt.Errorf("managed keys of %s: %w", name, err)
	}
	return collect(rows, "managed keys of "+name, scanManagedKey)
}

// DueManaged implements Store.
func (s *SQLite) DueManaged(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedRecord, error) {
	rows, err := s.read.QueryContext(ctx, qDueManaged, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("due managed certificates: %w", err)
	}
	return collect(rows, "due managed certificates", scanManaged)
}

// ManagedIssuedElsewhere implements Store.
func (s *SQLite) ManagedIssuedElsewhere(ctx context.Context, activeIssuer string) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, qIssuedElsewhere, activeIssuer, activeIssuer).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("managed certificates of other issuers: %w", err)
	}
	return true, nil
}

// DueManagedRevocations implements Store.
func (s *SQLite) DueManagedRevocations(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedVersion, error) {
	rows, err := s.read.QueryContext(ctx, qDueRevocations, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("due managed revocations: %w", err)
	}
	return collect(rows, "due managed revocations", scanVersion)
}

// DueManagedKeys implements Store.
func (s *SQLite) DueManagedKeys(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedKey, error) {
	rows, err := s.read.QueryContext(ctx, qDueKeys, nanos(now), nanos(after.Due), after.Key, pageLimit(limit))
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
