package postgres

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Write statements, written with ? placeholders (see rebind).
const (
	qAppendAuditEvent = "INSERT INTO audit_events (seq, time, actor, action, target, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
	qInsertKek        = "INSERT INTO keks (id, backend, params, check_blob, state, created) VALUES (?, ?, ?, ?, ?, ?)"
	qSetKekState      = "UPDATE keks SET state = ? WHERE id = ?"
	qInsertKey        = `INSERT INTO keys (id, purpose, algorithm, backend, state, public_key, kek_id,
		wrapped_dek, ciphertext, created, rotated, last_used, destroyed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qRewrapKey         = "UPDATE keys SET kek_id = ?, wrapped_dek = ?, rotated = ? WHERE id = ? AND state != ?"
	qTouchKey          = "UPDATE keys SET last_used = ? WHERE id = ? AND last_used < ?"
	qInsertIssuer      = "INSERT INTO issuers (id, kind, parent_id, key_id, cert_der, state, created) VALUES (?, ?, ?, ?, ?, ?, ?)"
	qSetIssuerState    = "UPDATE issuers SET state = ? WHERE id = ? AND state = ?"
	qInsertCertificate = `INSERT INTO certificates (issuer_id, serial, subject, sans, not_before, not_after,
		key_algorithm, profile, requester, channel, der, created, replaces, spki_sha256, crl_shard, names)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// qInsertCertificateLogged is qInsertCertificate with the name index
	// rows (?17, reversed names) and the log leaf (?18 index, ?19 hash) and
	// completed subtrees (?20 ids, ?21 hashes) written by the same statement.
	qInsertCertificateLogged = `WITH c AS (` + qInsertCertificate + ` RETURNING id),
		n AS (INSERT INTO certificate_names (rname, cert_id) SELECT r, (SELECT id FROM c) FROM unnest(?::text[]) AS r
			ON CONFLICT DO NOTHING),
		l AS (INSERT INTO log_entries (idx, cert_id, leaf_hash) SELECT ?, id, ? FROM c),
		t AS (INSERT INTO log_nodes (id, hash) SELECT * FROM unnest(?::bigint[], ?::bytea[]))
		SELECT id FROM c`
	qInsertToken = `INSERT INTO tokens (id, secret_hash, role, profiles, description, created, expires, revoked, managed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qRevokeToken = "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked = 0"
	qPutSetting  = "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"

	// qSyncHead reads, on the writer, the committed audit head and the last
	// signed checkpoint (none without an event): see groupCommit.syncHead.
	qSyncHead = `SELECT seq, hash, (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints)
		FROM audit_events ORDER BY seq DESC LIMIT 1`

	qSavepoint  = "SAVEPOINT w"
	qRelease    = "RELEASE w"
	qRollbackTo = "ROLLBACK TO w"
)

// Key lifecycle statements. Destroying is crypto-shredding: without the
// wrapped data key the ciphertext cannot be opened even with the KEK, and the
// ciphertext goes too; the public key stays for the record.
const (
	qRetireKey  = "UPDATE keys SET state = ?, rotated = ? WHERE id = ? AND state = ?"
	qDestroyKey = "UPDATE keys SET state = ?, wrapped_dek = NULL, ciphertext = NULL, destroyed = ? WHERE id = ? AND state = ?"
)

// pgTx is the store.Tx handed to WithTx functions.
type pgTx struct {
	ctx context.Context
	tx  pgx.Tx
	g   *groupCommit
}

func (t *pgTx) query(q string, args ...any) (pgx.Rows, error) {
	return t.g.query(t.ctx, t.tx, q, args...)
}

func (t *pgTx) queryRow(q string, args ...any) pgx.Row {
	return t.g.queryRow(t.ctx, t.tx, q, args...)
}

func (t *pgTx) exec(what, q string, args ...any) (result, error) {
	res, err := t.g.exec(t.ctx, t.tx, q, args...)
	if err != nil {
		if isUnique(err) {
			return result{}, fmt.Errorf("%s: %w", what, store.ErrDuplicate)
		}
		return result{}, fmt.Errorf("%s: %w", what, err)
	}
	return res, nil
}

func (t *pgTx) AppendAudit(e audit.Event) (audit.Event, error) {
	if err := t.g.lockChain(t.ctx, t.tx); err != nil {
		return audit.Event{}, err
	}
	next := audit.Next(t.g.head, &e)
	// The row keeps Unix nanoseconds, read back with fromNanos; a time that
	// does not survive that (the zero time, the epoch, years outside
	// 1678..2262) would be stored as another instant than the one hashed.
	if !fromNanos(e.Time.UnixNano()).Equal(e.Time) {
		return audit.Event{}, fmt.Errorf("append audit event: time %v cannot be stored", e.Time)
	}
	detail, err := encodeDetail(e.Detail)
	if err != nil {
		return audit.Event{}, err
	}
	if _, err := t.exec("append audit event", qAppendAuditEvent,
		e.Seq, e.Time.UnixNano(), e.Actor, e.Action, e.Target, detail, e.PrevHash, e.Hash); err != nil {
		return audit.Event{}, err
	}
	t.g.head = next
	return e, nil
}

func (t *pgTx) InsertKEK(k store.KEKRecord) error {
	_, err := t.exec("insert kek", qInsertKek,
		k.ID, k.Backend, k.Params, k.Check, k.State, nanos(k.Created))
	return err
}

func (t *pgTx) SetKEKState(id, state string) error {
	res, err := t.exec("set kek state", qSetKekState, state, id)
	if err != nil {
		return err
	}
	return oneRow(res, "set kek state")
}

func (t *pgTx) InsertKey(k store.KeyRecord) error {
	_, err := t.exec("insert key", qInsertKey,
		k.ID, k.Purpose, k.Algorithm, k.Backend, k.State, k.PublicKey, k.KEKID, k.WrappedDEK, k.Ciphertext,
		nanos(k.Created), nanos(k.Rotated), nanos(k.LastUsed), nanos(k.Destroyed))
	return err
}

func (t *pgTx) RewrapKey(id, kekID string, wrappedDEK []byte, rotated time.Time) error {
	res, err := t.exec("rewrap key", qRewrapKey,
		kekID, wrappedDEK, nanos(rotated), id, store.KeyDestroyed)
	if err != nil {
		return err
	}
	return oneRow(res, "rewrap key "+id)
}

func (t *pgTx) TouchKey(id string, at time.Time) error {
	_, err := t.exec("touch key", qTouchKey, nanos(at), id, nanos(at))
	return err
}

func (t *pgTx) RetireKey(id string, at time.Time) error {
	res, err := t.exec("retire key", qRetireKey, store.KeyRetired, nanos(at), id, store.KeyActive)
	if err != nil {
		return err
	}
	return oneRow(res, "retire key "+id)
}

func (t *pgTx) DestroyKey(id string, at time.Time) error {
	res, err := t.exec("destroy key", qDestroyKey, store.KeyDestroyed, nanos(at), id, store.KeyRetired)
	if err != nil {
		return err
	}
	return oneRow(res, "destroy key "+id)
}

func (t *pgTx) Keys() ([]store.KeyRecord, error) {
	rows, err := t.query("SELECT " + keyColumns + " FROM keys ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return scanKeys(rows)
}

func (t *pgTx) InsertIssuer(i store.IssuerRecord) error {
	_, err := t.exec("insert issuer", qInsertIssuer,
		i.ID, i.Kind, i.ParentID, i.KeyID, i.CertDER, i.State, nanos(i.Created))
	return err
}

func (t *pgTx) SetIssuerState(id, from, to string) error {
	res, err := t.exec("set issuer state", qSetIssuerState, to, id, from)
	if err != nil {
		return err
	}
	return oneRow(res, "issuer "+id+" in state "+from)
}

func (t *pgTx) InsertCertificate(c *store.CertRecord) error {
	if len(c.SPKIHash) == 0 {
		c.SPKIHash = []byte{0} // not a key hash: the DER does not parse
		if cert, err := x509.ParseCertificate(c.DER); err == nil {
			c.SPKIHash = store.SPKIHash(cert.RawSubjectPublicKeyInfo)
		}
	}
	names := store.CertNames(c.Subject, c.SANs)
	rnames := make([]string, len(names))
	for i, n := range names {
		rnames[i] = store.ReverseName(n)
	}
	leaf, err := t.nextLeaf(c)
	if err != nil {
		return err
	}
	// One statement, one round trip: the row, its names and its log leaf
	// with the subtrees the leaf completes. A failure writes none of them,
	// and the savepoint's rollback restores the writer's log range.
	var id int64
	err = t.queryRow(qInsertCertificateLogged,
		c.IssuerID, c.Serial, c.Subject, joinSANs(c.SANs), nanos(c.NotBefore), nanos(c.NotAfter),
		c.KeyAlgorithm, c.Profile, c.Requester, c.Channel, c.DER, nanos(c.Created), c.Replaces, c.SPKIHash, c.CRLShard,
		namesText(names), rnames, leaf.index, leaf.hash, leaf.nodeIDs, leaf.nodeHashes).Scan(&id)
	if err != nil {
		if isUnique(err) {
			return fmt.Errorf("insert certificate: %w", store.ErrDuplicate)
		}
		return fmt.Errorf("insert certificate: %w", err)
	}
	c.ID = id
	return nil
}

func (t *pgTx) InsertToken(tok store.TokenRecord) error {
	profiles, err := json.Marshal(nonNil(tok.Profiles))
	if err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	_, err = t.exec("insert token", qInsertToken, tok.ID, tok.SecretHash, tok.Role, string(profiles), tok.Description,
		nanos(tok.Created), nanos(tok.Expires), nanos(tok.Revoked), tok.Managed)
	return err
}

func (t *pgTx) RevokeToken(id string, at time.Time) error {
	res, err := t.exec("revoke token", qRevokeToken, nanos(at), id)
	if err != nil {
		return err
	}
	return oneRow(res, "revoke token "+id)
}

func (t *pgTx) PutSetting(name string, value []byte) error {
	if value == nil {
		value = []byte{} // a nil slice binds as NULL; the column is NOT NULL
	}
	_, err := t.exec("put setting", qPutSetting, name, value)
	return err
}

func oneRow(res result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SANs are stored newline-joined with surrounding newlines so that an exact
// match can be expressed as LIKE '%\nname\n%'.
func joinSANs(sans []string) string {
	if len(sans) == 0 {
		return ""
	}
	return "\n" + strings.Join(sans, "\n") + "\n"
}

func splitSANs(s string) []string {
	s = strings.Trim(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func encodeDetail(d map[string]string) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode audit detail: %w", err)
	}
	return string(b), nil
}

func decodeDetail(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var d map[string]string
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("decode audit detail: %w", err)
	}
	return d, nil
}
