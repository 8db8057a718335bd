package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

const keyColumns = `id, purpose, algorithm, backend, state, public_key, COALESCE(kek_id, ''), wrapped_dek, ciphertext,
	created, rotated, last_used, destroyed`

func scanKey(sc interface{ Scan(...any) error }) (store.KeyRecord, error) {
	var k store.KeyRecord
	var created, rotated, used, destroyed int64
	err := sc.Scan(&k.ID, &k.Purpose, &k.Algorithm, &k.Backend, &k.State, &k.PublicKey, &k.KEKID, &k.WrappedDEK,
		&k.Ciphertext, &created, &rotated, &used, &destroyed)
	if err != nil {
		return store.KeyRecord{}, err
	}
	k.Created, k.Rotated, k.LastUsed, k.Destroyed = fromNanos(created), fromNanos(rotated), fromNanos(used), fromNanos(destroyed)
	return k, nil
}

func scanKeys(rows pgx.Rows) ([]store.KeyRecord, error) {
	defer rows.Close()
	var out []store.KeyRecord
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("scan key: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Key implements Store.
func (s *Store) Key(ctx context.Context, id string) (store.KeyRecord, error) {
	k, err := scanKey(s.queryRow(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = ?", id))
	if err != nil {
		return store.KeyRecord{}, notFound(err, "key "+id)
	}
	return k, nil
}

// Keys implements Store.
func (s *Store) Keys(ctx context.Context) ([]store.KeyRecord, error) {
	rows, err := s.query(ctx, "SELECT "+keyColumns+" FROM keys ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return scanKeys(rows)
}

func scanKEK(sc interface{ Scan(...any) error }) (store.KEKRecord, error) {
	var k store.KEKRecord
	var created int64
	if err := sc.Scan(&k.ID, &k.Backend, &k.Params, &k.Check, &k.State, &created); err != nil {
		return store.KEKRecord{}, err
	}
	k.Created = fromNanos(created)
	return k, nil
}

// KEK implements Store.
func (s *Store) KEK(ctx context.Context, id string) (store.KEKRecord, error) {
	k, err := scanKEK(s.queryRow(ctx, "SELECT id, backend, params, check_blob, state, created FROM keks WHERE id = ?", id))
	if err != nil {
		return store.KEKRecord{}, notFound(err, "kek "+id)
	}
	return k, nil
}

// ActiveKEK implements Store.
func (s *Store) ActiveKEK(ctx context.Context) (store.KEKRecord, error) {
	k, err := scanKEK(s.queryRow(ctx,
		"SELECT id, backend, params, check_blob, state, created FROM keks WHERE state = ? ORDER BY created DESC LIMIT 1", store.KeyActive))
	if err != nil {
		return store.KEKRecord{}, notFound(err, "active kek")
	}
	return k, nil
}

func scanIssuer(sc interface{ Scan(...any) error }) (store.IssuerRecord, error) {
	var i store.IssuerRecord
	var created int64
	if err := sc.Scan(&i.ID, &i.Kind, &i.ParentID, &i.KeyID, &i.CertDER, &i.State, &created); err != nil {
		return store.IssuerRecord{}, err
	}
	i.Created = fromNanos(created)
	return i, nil
}

// Issuer implements Store.
func (s *Store) Issuer(ctx context.Context, id string) (store.IssuerRecord, error) {
	i, err := scanIssuer(s.queryRow(ctx,
		"SELECT id, kind, parent_id, key_id, cert_der, state, created FROM issuers WHERE id = ?", id))
	if err != nil {
		return store.IssuerRecord{}, notFound(err, "issuer "+id)
	}
	return i, nil
}

// Issuers implements Store.
func (s *Store) Issuers(ctx context.Context) ([]store.IssuerRecord, error) {
	rows, err := s.query(ctx, "SELECT id, kind, parent_id, key_id, cert_der, state, created FROM issuers ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("list issuers: %w", err)
	}
	defer rows.Close()
	var out []store.IssuerRecord
	for rows.Next() {
		i, err := scanIssuer(rows)
		if err != nil {
			return nil, fmt.Errorf("scan issuer: %w", err)
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// IssuerLastExpiry implements Store.
func (s *Store) IssuerLastExpiry(ctx context.Context, issuerID string, skip ...string) (time.Time, error) {
	q := "SELECT MAX(not_after) FROM certificates WHERE issuer_id = ?"
	args := []any{issuerID}
	if len(skip) > 0 {
		q += " AND profile NOT IN (?" + strings.Repeat(", ?", len(skip)-1) + ")"
		for _, p := range skip {
			args = append(args, p)
		}
	}
	var last *int64
	err := s.queryRow(ctx, q, args...).Scan(&last)
	if err != nil {
		return time.Time{}, fmt.Errorf("last expiry of issuer %s: %w", issuerID, err)
	}
	if last == nil {
		return time.Time{}, nil
	}
	return fromNanos(*last), nil
}

const certColumns = `id, issuer_id, serial, subject, sans, not_before, not_after, key_algorithm, profile, requester,
	channel, der, created, revoked_at, revoke_reason, invalidity_date, replaces, spki_sha256, crl_shard, archived`

func scanCert(sc interface{ Scan(...any) error }) (store.CertRecord, error) {
	var c store.CertRecord
	var sans string
	var nb, na, created, revoked, invalidity, archived int64
	err := sc.Scan(&c.ID, &c.IssuerID, &c.Serial, &c.Subject, &sans, &nb, &na, &c.KeyAlgorithm, &c.Profile,
		&c.Requester, &c.Channel, &c.DER, &created, &revoked, &c.RevokeReason, &invalidity, &c.Replaces, &c.SPKIHash, &c.CRLShard,
		&archived)
	if err != nil {
		return store.CertRecord{}, err
	}
	c.SANs = splitSANs(sans)
	c.NotBefore, c.NotAfter, c.Created, c.RevokedAt = fromNanos(nb), fromNanos(na), fromNanos(created), fromNanos(revoked)
	c.InvalidityDate, c.Archived = fromNanos(invalidity), fromNanos(archived)
	return c, nil
}

// Certificate implements Store.
func (s *Store) Certificate(ctx context.Context, serial string) (store.CertRecord, error) {
	c, err := scanCert(s.queryRow(ctx, "SELECT "+certColumns+" FROM certificates WHERE serial = ? ORDER BY id LIMIT 1", serial))
	if err != nil {
		return store.CertRecord{}, notFound(err, "certificate "+serial)
	}
	return c, nil
}

// CertificateReplacing implements Store.
func (s *Store) CertificateReplacing(ctx context.Context, serial string) (store.CertRecord, error) {
	c, err := scanCert(s.queryRow(ctx, "SELECT "+certColumns+" FROM certificates WHERE replaces = ? ORDER BY id LIMIT 1", serial))
	if err != nil {
		return store.CertRecord{}, notFound(err, "certificate replacing "+serial)
	}
	return c, nil
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

const auditColumns = "seq, time, actor, action, target, detail, prev_hash, hash"

func scanEvent(sc interface{ Scan(...any) error }) (audit.Event, error) {
	var e audit.Event
	var t int64
	var detail string
	if err := sc.Scan(&e.Seq, &t, &e.Actor, &e.Action, &e.Target, &detail, &e.PrevHash, &e.Hash); err != nil {
		return audit.Event{}, err
	}
	e.Time = fromNanos(t)
	d, err := decodeDetail(detail)
	if err != nil {
		return audit.Event{}, fmt.Errorf("event %d: %w", e.Seq, err)
	}
	e.Detail = d
	return e, nil
}

// AuditEvents implements Store.
func (s *Store) AuditEvents(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if !f.After.IsZero() {
		add("time >= ?", f.After.UnixNano())
	}
	if !f.Before.IsZero() {
		add("time < ?", f.Before.UnixNano())
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			add(`action LIKE ? ESCAPE '\'`, likeEscape(f.Action)+"%")
		} else {
			add("action = ?", f.Action)
		}
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.Cursor > 0 {
		add("seq > ?", f.Cursor)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q := "SELECT " + auditColumns + " FROM audit_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("scan audit event: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list audit events: %w", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].Seq
	}
	return out, next, nil
}

// ScanAudit implements store.Store. Rows are returned in seq order (the
// primary key; PostgreSQL has no insertion order) exactly as stored, so a
// verifier sees gaps and altered rows.
func (s *Store) ScanAudit(ctx context.Context, fn func(audit.Event) error) error {
	return scanEach(ctx, s, "scan audit", "SELECT "+auditColumns+" FROM audit_events ORDER BY seq", scanEvent, fn)
}

// scanEach runs query and hands each row, decoded by scan, to fn, which
// may stop the scan with an error; what names the scan in errors.
func scanEach[T any](ctx context.Context, s *Store, what, query string, scan func(interface{ Scan(...any) error }) (T, error), fn func(T) error) error {
	rows, err := s.query(ctx, query)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Checkpoints implements Store.
func (s *Store) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.query(ctx, "SELECT seq, hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		var t int64
		if err := rows.Scan(&c.Seq, &c.Hash, &t, &c.KeyID, &c.Signature); err != nil {
			return nil, fmt.Errorf("scan checkpoint: %w", err)
		}
		c.Time = fromNanos(t)
		out = append(out, c)
	}
	return out, rows.Err()
}

func scanToken(sc interface{ Scan(...any) error }) (store.TokenRecord, error) {
	var t store.TokenRecord
	var profiles string
	var created, expires, revoked int64
	if err := sc.Scan(&t.ID, &t.SecretHash, &t.Role, &profiles, &t.Description, &created, &expires, &revoked, &t.Managed); err != nil {
		return store.TokenRecord{}, err
	}
	if err := json.Unmarshal([]byte(profiles), &t.Profiles); err != nil {
		return store.TokenRecord{}, fmt.Errorf("token %s profiles: %w", t.ID, err)
	}
	t.Created, t.Expires, t.Revoked = fromNanos(created), fromNanos(expires), fromNanos(revoked)
	return t, nil
}

const tokenColumns = "id, secret_hash, role, profiles, description, created, expires, revoked, managed"

// Token implements Store.
func (s *Store) Token(ctx context.Context, id string) (store.TokenRecord, error) {
	t, err := scanToken(s.queryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE id = ?", id))
	if err != nil {
		return store.TokenRecord{}, notFound(err, "token "+id)
	}
	return t, nil
}

// Tokens implements Store.
func (s *Store) Tokens(ctx context.Context) ([]store.TokenRecord, error) {
	rows, err := s.query(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []store.TokenRecord
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("scan token: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Setting implements Store.
func (s *Store) Setting(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	if err := s.queryRow(ctx, "SELECT value FROM settings WHERE name = ?", name).Scan(&v); err != nil {
		return nil, notFound(err, "setting "+name)
	}
	return v, nil
}
