package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/store"
)

// Write statements, with ? placeholders (see rebind).
const (
	qInsertACMEAccount = `INSERT INTO acme_accounts (id, endpoint, key_thumbprint, key_jwk, status, contacts,
		terms_agreed, eab_key_id, requester, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qUpdateACMEAccount = `UPDATE acme_accounts SET status = ?, contacts = ?, terms_agreed = ?, key_jwk = ?,
		key_thumbprint = ? WHERE id = ?`
	qInsertACMEOrder = `INSERT INTO acme_orders (id, account_id, endpoint, status, identifiers, profile, not_before,
		not_after, expires, authz_ids, cert_serial, replaces, error, created, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qTransitionACMEOrder = "UPDATE acme_orders SET status = ?, authz_ids = ?, cert_serial = ?, error = ?, updated = ? WHERE id = ? AND status = ? AND updated = ?"
	qACMEOrderExists     = "SELECT 1 FROM acme_orders WHERE id = ?"
	qInsertACMEAuthz     = `INSERT INTO acme_authzs (id, account_id, status, id_type, id_value, wildcard, expires, caa_checked)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	qInsertACMEChallenge = `INSERT INTO acme_challenges (id, authz_id, position, type, token, status, validated, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	qSetACMEAuthzCAA         = "UPDATE acme_authzs SET caa_checked = ? WHERE id = ?"
	qTransitionACMEAuthz     = "UPDATE acme_authzs SET status = ?, expires = CASE WHEN ?::bigint = 0 THEN expires ELSE ? END WHERE id = ? AND status = ?"
	qTransitionACMEChallenge = "UPDATE acme_challenges SET status = ?, validated = ?, error = ? WHERE id = ? AND status = ?"
	qACMEAuthzExists         = "SELECT 1 FROM acme_authzs WHERE id = ?"
	qACMEChallengeExists     = "SELECT 1 FROM acme_challenges WHERE id = ?"
	qUseNonce                = "INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)"
	qPurgeNonces             = "DELETE FROM acme_nonces WHERE expires < ?"
	qInsertEABKey            = `INSERT INTO acme_eab_keys (id, endpoint, requester, created, used, revoked)
		VALUES (?, ?, ?, ?, ?, ?)`
	qMarkEABKeyUsed = "UPDATE acme_eab_keys SET used = ? WHERE id = ? AND used = 0 AND revoked = 0"
)

// encodeList stores a list as a JSON array; nil and empty are both "[]".
func encodeList[T any](what string, v []T) (string, error) {
	if len(v) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", what, err)
	}
	return string(b), nil
}

// decodeList reads a list stored by encodeList; an empty list reads as nil.
func decodeList[T any](what, s string) ([]T, error) {
	var v []T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// optBlob binds an optional document: empty is stored as NULL and reads back as nil.
func optBlob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Reads.

const acmeAccountColumns = `id, endpoint, key_thumbprint, key_jwk, status, contacts, terms_agreed, eab_key_id,
	requester, created`

func scanACMEAccount(sc interface{ Scan(...any) error }) (store.ACMEAccount, error) {
	var a store.ACMEAccount
	var contacts string
	var created int64
	if err := sc.Scan(&a.ID, &a.Endpoint, &a.KeyThumbprint, &a.KeyJWK, &a.Status, &contacts, &a.TermsAgreed,
		&a.EABKeyID, &a.Requester, &created); err != nil {
		return store.ACMEAccount{}, err
	}
	var err error
	if a.Contacts, err = decodeList[string]("acme account "+a.ID+" contacts", contacts); err != nil {
		return store.ACMEAccount{}, err
	}
	a.Created = fromNanos(created)
	return a, nil
}

// store.ACMEAccount implements Store.
func (s *Store) ACMEAccount(ctx context.Context, id string) (store.ACMEAccount, error) {
	a, err := scanACMEAccount(s.queryRow(ctx, "SELECT "+acmeAccountColumns+" FROM acme_accounts WHERE id = ?", id))
	if err != nil {
		return store.ACMEAccount{}, notFound(err, "acme account "+id)
	}
	return a, nil
}

// ACMEAccountByKey implements Store.
func (s *Store) ACMEAccountByKey(ctx context.Context, endpoint, thumbprint string) (store.ACMEAccount, error) {
	a, err := scanACMEAccount(s.queryRow(ctx,
		"SELECT "+acmeAccountColumns+" FROM acme_accounts WHERE endpoint = ? AND key_thumbprint = ?", endpoint, thumbprint))
	if err != nil {
		return store.ACMEAccount{}, notFound(err, "acme account with key "+thumbprint)
	}
	return a, nil
}

const acmeOrderColumns = `id, account_id, endpoint, status, identifiers, profile, not_before, not_after, expires,
	authz_ids, cert_serial, replaces, error, created, updated`

func scanACMEOrder(sc interface{ Scan(...any) error }) (store.ACMEOrder, error) {
	var o store.ACMEOrder
	var idents, authzs string
	var nb, na, expires, created, updated int64
	if err := sc.Scan(&o.ID, &o.AccountID, &o.Endpoint, &o.Status, &idents, &o.Profile, &nb, &na, &expires,
		&authzs, &o.CertSerial, &o.Replaces, &o.Error, &created, &updated); err != nil {
		return store.ACMEOrder{}, err
	}
	var err error
	if o.Identifiers, err = decodeList[store.ACMEIdentifier]("acme order "+o.ID+" identifiers", idents); err != nil {
		return store.ACMEOrder{}, err
	}
	if o.AuthzIDs, err = decodeList[string]("acme order "+o.ID+" authorizations", authzs); err != nil {
		return store.ACMEOrder{}, err
	}
	o.Error = nilIfEmpty(o.Error)
	o.NotBefore, o.NotAfter, o.Expires = fromNanos(nb), fromNanos(na), fromNanos(expires)
	o.Created, o.Updated = fromNanos(created), fromNanos(updated)
	return o, nil
}

// store.ACMEOrder implements Store.
func (s *Store) ACMEOrder(ctx context.Context, id string) (store.ACMEOrder, error) {
	o, err := scanACMEOrder(s.queryRow(ctx, "SELECT "+acmeOrderColumns+" FROM acme_orders WHERE id = ?", id))
	if err != nil {
		return store.ACMEOrder{}, notFound(err, "acme order "+id)
	}
	return o, nil
}

// ACMECertOrder implements Store.
func (s *Store) ACMECertOrder(ctx context.Context, serial string) (store.ACMEOrder, error) {
	o, err := scanACMEOrder(s.queryRow(ctx, "SELECT "+acmeOrderColumns+
		" FROM acme_orders WHERE cert_serial = ? AND cert_serial != '' ORDER BY created, id LIMIT 1", serial))
	if err != nil {
		return store.ACMEOrder{}, notFound(err, "acme order of certificate "+serial)
	}
	return o, nil
}

// An orders cursor is the (created, id) of the last order of a page,
// base64url-encoded so callers treat it as opaque.
func encodeOrderCursor(o store.ACMEOrder) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(nanos(o.Created), 10) + "." + o.ID))
}

func decodeOrderCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("bad acme orders cursor %q", c)
	}
	created, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(created, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", fmt.Errorf("bad acme orders cursor %q", c)
	}
	return n, id, nil
}

// ACMEOrders implements Store.
func (s *Store) ACMEOrders(ctx context.Context, accountID, cursor string, limit int) ([]store.ACMEOrder, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q := "SELECT " + acmeOrderColumns + " FROM acme_orders WHERE account_id = ?"
	args := []any{accountID}
	if cursor != "" {
		created, id, err := decodeOrderCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		// A row-value comparison lets the index seek straight to the page.
		q += " AND (created, id) < (?, ?)"
		args = append(args, created, id)
	}
	q += " ORDER BY created DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list acme orders: %w", err)
	}
	defer rows.Close()
	var out []store.ACMEOrder
	for rows.Next() {
		o, err := scanACMEOrder(rows)
		if err != nil {
			return nil, "", fmt.Errorf("scan acme order: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list acme orders: %w", err)
	}
	var next string
	if len(out) > limit {
		out = out[:limit]
		next = encodeOrderCursor(out[limit-1])
	}
	return out, next, nil
}

// An authorization is read with its challenges in one statement (a LEFT
// JOIN, one row per challenge) so that both come from the same snapshot.
const acmeAuthzJoinColumns = `a.id, a.account_id, a.status, a.id_type, a.id_value, a.wildcard, a.expires, a.caa_checked,
	c.id, c.type, c.token, c.status, c.validated, c.error`

func scanACMEAuthz(rows pgx.Rows, what string) (store.ACMEAuthz, error) {
	defer rows.Close()
	var a store.ACMEAuthz
	found := false
	for rows.Next() {
		var expires, caaChecked int64
		var cid, ctype, token, cstatus *string
		var validated *int64
		var cerr []byte
		if err := rows.Scan(&a.ID, &a.AccountID, &a.Status, &a.Identifier.Type, &a.Identifier.Value, &a.Wildcard,
			&expires, &caaChecked, &cid, &ctype, &token, &cstatus, &validated, &cerr); err != nil {
			return store.ACMEAuthz{}, fmt.Errorf("scan %s: %w", what, err)
		}
		found = true
		a.Expires, a.CAAChecked = fromNanos(expires), fromNanos(caaChecked)
		if cid != nil { // NULL when the authorization has no challenges
			a.Challenges = append(a.Challenges, store.ACMEChallenge{ID: *cid, AuthzID: a.ID, Type: *ctype,
				Token: *token, Status: *cstatus, Validated: fromNanos(*validated), Error: nilIfEmpty(cerr)})
		}
	}
	if err := rows.Err(); err != nil {
		return store.ACMEAuthz{}, fmt.Errorf("%s: %w", what, err)
	}
	if !found {
		return store.ACMEAuthz{}, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return a, nil
}

// store.ACMEAuthz implements Store.
func (s *Store) ACMEAuthz(ctx context.Context, id string) (store.ACMEAuthz, error) {
	rows, err := s.query(ctx, "SELECT "+acmeAuthzJoinColumns+
		" FROM acme_authzs a LEFT JOIN acme_challenges c ON c.authz_id = a.id WHERE a.id = ? ORDER BY c.position", id)
	if err != nil {
		return store.ACMEAuthz{}, fmt.Errorf("acme authz %s: %w", id, err)
	}
	return scanACMEAuthz(rows, "acme authz "+id)
}

// ACMEReusableAuthz implements Store.
func (s *Store) ACMEReusableAuthz(ctx context.Context, accountID string, ident store.ACMEIdentifier, wildcard bool, now time.Time) (store.ACMEAuthz, error) {
	rows, err := s.query(ctx, "SELECT "+acmeAuthzJoinColumns+` FROM (
			SELECT id, account_id, status, id_type, id_value, wildcard, expires, caa_checked FROM acme_authzs
			WHERE account_id = ? AND id_type = ? AND id_value = ? AND wildcard = ? AND status = ? AND expires > ?
			ORDER BY expires DESC, id LIMIT 1
		) a LEFT JOIN acme_challenges c ON c.authz_id = a.id ORDER BY c.position`,
		accountID, ident.Type, ident.Value, wildcard, store.ACMEValid, now.UnixNano())
	what := "reusable acme authz for " + ident.Type + ":" + ident.Value
	if err != nil {
		return store.ACMEAuthz{}, fmt.Errorf("%s: %w", what, err)
	}
	return scanACMEAuthz(rows, what)
}

// store.ACMEChallenge implements Store.
func (s *Store) ACMEChallenge(ctx context.Context, id string) (store.ACMEChallenge, error) {
	var c store.ACMEChallenge
	var validated int64
	err := s.queryRow(ctx,
		"SELECT id, authz_id, type, token, status, validated, error FROM acme_challenges WHERE id = ?", id).
		Scan(&c.ID, &c.AuthzID, &c.Type, &c.Token, &c.Status, &validated, &c.Error)
	if err != nil {
		return store.ACMEChallenge{}, notFound(err, "acme challenge "+id)
	}
	c.Validated, c.Error = fromNanos(validated), nilIfEmpty(c.Error)
	return c, nil
}

// store.EABKey implements Store.
func (s *Store) EABKey(ctx context.Context, id string) (store.EABKey, error) {
	var k store.EABKey
	var created, used, revoked int64
	err := s.queryRow(ctx,
		"SELECT id, endpoint, requester, created, used, revoked FROM acme_eab_keys WHERE id = ?", id).
		Scan(&k.ID, &k.Endpoint, &k.Requester, &created, &used, &revoked)
	if err != nil {
		return store.EABKey{}, notFound(err, "eab key "+id)
	}
	k.Created, k.Used, k.Revoked = fromNanos(created), fromNanos(used), fromNanos(revoked)
	return k, nil
}

// Writes.

func (t *pgTx) InsertACMEAccount(a store.ACMEAccount) error {
	contacts, err := encodeList("acme account contacts", a.Contacts)
	if err != nil {
		return err
	}
	_, err = t.exec("insert acme account", qInsertACMEAccount, a.ID, a.Endpoint, a.KeyThumbprint, a.KeyJWK, a.Status,
		contacts, a.TermsAgreed, a.EABKeyID, a.Requester, nanos(a.Created))
	return err
}

func (t *pgTx) UpdateACMEAccount(a store.ACMEAccount) error {
	contacts, err := encodeList("acme account contacts", a.Contacts)
	if err != nil {
		return err
	}
	res, err := t.exec("update acme account", qUpdateACMEAccount, a.Status, contacts, a.TermsAgreed, a.KeyJWK,
		a.KeyThumbprint, a.ID)
	if err != nil {
		return err
	}
	return oneRow(res, "update acme account "+a.ID)
}

func (t *pgTx) InsertACMEOrder(o store.ACMEOrder) error {
	idents, err := encodeList("acme order identifiers", o.Identifiers)
	if err != nil {
		return err
	}
	authzs, err := encodeList("acme order authorizations", o.AuthzIDs)
	if err != nil {
		return err
	}
	_, err = t.exec("insert acme order", qInsertACMEOrder, o.ID, o.AccountID, o.Endpoint, o.Status, idents, o.Profile,
		nanos(o.NotBefore), nanos(o.NotAfter), nanos(o.Expires), authzs, o.CertSerial, o.Replaces, optBlob(o.Error),
		nanos(o.Created), nanos(o.Updated))
	return err
}

func (t *pgTx) TransitionACMEOrder(o, from store.ACMEOrder) error {
	authzs, err := encodeList("acme order authorizations", o.AuthzIDs)
	if err != nil {
		return err
	}
	res, err := t.exec("transition acme order", qTransitionACMEOrder, o.Status, authzs, o.CertSerial, optBlob(o.Error),
		nanos(o.Updated), o.ID, from.Status, nanos(from.Updated))
	if err != nil {
		return err
	}
	return t.transitioned(res, qACMEOrderExists, "acme order", o.ID, from.Status, o.Status)
}

func (t *pgTx) InsertACMEAuthz(a store.ACMEAuthz) error {
	_, err := t.exec("insert acme authz", qInsertACMEAuthz, a.ID, a.AccountID, a.Status, a.Identifier.Type,
		a.Identifier.Value, a.Wildcard, nanos(a.Expires), nanos(a.CAAChecked))
	if err != nil {
		return err
	}
	for i, c := range a.Challenges {
		if c.AuthzID != "" && c.AuthzID != a.ID {
			return fmt.Errorf("insert acme authz %s: challenge %s names authz %s", a.ID, c.ID, c.AuthzID)
		}
		if _, err := t.exec("insert acme challenge", qInsertACMEChallenge, c.ID, a.ID, i, c.Type, c.Token, c.Status,
			nanos(c.Validated), optBlob(c.Error)); err != nil {
			return err
		}
	}
	return nil
}

func (t *pgTx) SetACMEAuthzCAAChecked(id string, at time.Time) error {
	res, err := t.exec("record acme authz caa check", qSetACMEAuthzCAA, nanos(at), id)
	if err != nil {
		return err
	}
	return oneRow(res, "record acme authz caa check "+id)
}

func (t *pgTx) TransitionACMEAuthz(id, status string, expires time.Time, from string) error {
	res, err := t.exec("transition acme authz", qTransitionACMEAuthz, status, nanos(expires), nanos(expires), id, from)
	if err != nil {
		return err
	}
	return t.transitioned(res, qACMEAuthzExists, "acme authz", id, from, status)
}

func (t *pgTx) TransitionACMEChallenge(c store.ACMEChallenge, from string) error {
	res, err := t.exec("transition acme challenge", qTransitionACMEChallenge, c.Status, nanos(c.Validated), optBlob(c.Error), c.ID, from)
	if err != nil {
		return err
	}
	return t.transitioned(res, qACMEChallengeExists, "acme challenge", c.ID, from, c.Status)
}

// transitioned tells a guarded UPDATE's outcome: nil if it changed the row,
// store.ErrNotFound if there is no row id (exists selects it), store.ErrStateChanged if
// the row is in another state than from.
func (t *pgTx) transitioned(res result, exists, what, id, from, to string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("transition %s %s: %w", what, id, err)
	}
	if n == 1 {
		return nil
	}
	var one int
	switch err := t.queryRow(exists, id).Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("transition %s %s: %w", what, id, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("transition %s %s: %w", what, id, err)
	}
	return fmt.Errorf("transition %s %s from %s to %s: %w", what, id, from, to, store.ErrStateChanged)
}

func (t *pgTx) UseNonce(nonce string, expires time.Time) error {
	_, err := t.exec("use nonce", qUseNonce, nonce, nanos(expires))
	return err
}

func (t *pgTx) PurgeNonces(before time.Time) (int64, error) {
	res, err := t.exec("purge nonces", qPurgeNonces, before.UnixNano())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge nonces: %w", err)
	}
	return n, nil
}

func (t *pgTx) InsertEABKey(k store.EABKey) error {
	_, err := t.exec("insert eab key", qInsertEABKey, k.ID, k.Endpoint, k.Requester, nanos(k.Created),
		nanos(k.Used), nanos(k.Revoked))
	return err
}

func (t *pgTx) MarkEABKeyUsed(id string, at time.Time) error {
	if at.IsZero() {
		// used = 0 means unused: a zero time would leave the key free to bind again.
		return fmt.Errorf("mark eab key %s used: zero time", id)
	}
	res, err := t.exec("mark eab key used", qMarkEABKeyUsed, nanos(at), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("mark eab key %s used: %w", id, err)
	} else if n == 1 {
		return nil
	}
	// Nothing changed: say why. This runs in the same transaction, so the
	// answer is consistent with the update that just matched no row.
	var used, revoked int64
	err = t.queryRow("SELECT used, revoked FROM acme_eab_keys WHERE id = ?", id).Scan(&used, &revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("mark eab key %s used: %w", id, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("mark eab key %s used: %w", id, err)
	case revoked != 0:
		return fmt.Errorf("mark eab key %s used: revoked: %w", id, store.ErrNotFound)
	default:
		return fmt.Errorf("mark eab key %s used: already used: %w", id, store.ErrDuplicate)
	}
}
