package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// KEKOpener opens the remote KEK a record names: backend is the record's
// Backend (such as "awskms") and uri the key's URI from its Params. The
// credentials come from wherever the backend takes them (the AWS chain, a
// PIN file), never from the record.
type KEKOpener func(ctx context.Context, backend, uri string) (RemoteKEK, error)

// remoteParams is store.KEKRecord.Params for a KEK held in a KMS or HSM:
// where it is, nothing secret.
type remoteParams struct {
	URI string `json:"uri"`
}

// remoteCheckID is the key id a remote KEK's check value is bound to: it
// contains ':' so that no Sigil key id (checked by validKEKID's rules for
// KEKs, and by NewKeyID for keys) can collide with it.
func remoteCheckID(kekID string) string { return checkAADPrefix + kekID }

// remoteCheckValue is what a remote KEK's check wraps. It is not secret:
// unwrapping it at unlock proves the KMS key is the one the CA was made
// with, and that it is reachable, before anything is served.
func remoteCheckValue(kekID string) []byte {
	sum := sha256.Sum256([]byte(checkPlaintext + ":" + kekID))
	return sum[:]
}

// IsRemoteKEK reports whether a KEK record's backend is a KMS or HSM
// rather than a passphrase.
func IsRemoteKEK(backend string) bool { return backend != backendPassphrase }

// ActiveKEKBackend returns the backend of the KEK new keys are wrapped
// under ("passphrase", "awskms"), so that a caller knows whether to ask for
// a passphrase before Unlock.
func ActiveKEKBackend(ctx context.Context, st Store) (string, error) {
	r, err := st.ActiveKEK(ctx)
	if err != nil {
		return "", fmt.Errorf("load kek: %w", err)
	}
	return r.Backend, nil
}

// PrepareRemote makes the first KEK of a new CA the remote KEK at uri in
// backend (opened by the caller). Its record holds the URI and a check
// value wrapped by the KMS, never a secret. As with Prepare, the record is
// inserted in the transaction that inserts the keys sealed under it.
func PrepareRemote(ctx context.Context, st Store, clk clockwork.Clock, backend, uri string, remote RemoteKEK) (*Keystore, store.KEKRecord, error) {
	const id = "kek-1"
	kek, sr, err := newRemoteKEKRecord(ctx, id, backend, uri, remote, clk)
	if err != nil {
		return nil, store.KEKRecord{}, err
	}
	rec, err := fromStoreKEK(sr)
	if err != nil {
		return nil, store.KEKRecord{}, err
	}
	return &Keystore{st: st, clk: clk, kek: kek, rec: rec, keks: map[string]*KEK{id: kek}}, sr, nil
}

func newRemoteKEKRecord(ctx context.Context, id, backend, uri string, remote RemoteKEK, clk clockwork.Clock) (*KEK, store.KEKRecord, error) {
	if !IsRemoteKEK(backend) || backend == "" {
		return nil, store.KEKRecord{}, fmt.Errorf("remote kek %s: backend %q is not a KMS or HSM", id, backend)
	}
	if uri == "" {
		return nil, store.KEKRecord{}, fmt.Errorf("remote kek %s: empty uri", id)
	}
	kek, err := NewRemoteKEK(id, remote)
	if err != nil {
		return nil, store.KEKRecord{}, err
	}
	check, err := remote.Wrap(ctx, remoteCheckID(id), remoteCheckValue(id))
	if err != nil {
		return nil, store.KEKRecord{}, fmt.Errorf("remote kek %s: wrap its check value: %w", id, err)
	}
	params, err := json.Marshal(remoteParams{URI: uri})
	if err != nil {
		return nil, store.KEKRecord{}, fmt.Errorf("remote kek %s: encode params: %w", id, err)
	}
	return kek, store.KEKRecord{ID: id, Backend: backend, Params: params, Check: check, State: store.KeyActive,
		Created: clk.Now().UTC()}, nil
}

// openRemoteKEK opens the remote KEK a record describes and checks, by
// unwrapping its check value, that the KMS key is the one it was made with.
func openRemoteKEK(ctx context.Context, sr store.KEKRecord, open KEKOpener) (*KEK, error) {
	if err := validKEKID(sr.ID); err != nil {
		return nil, fmt.Errorf("open kek: %w", err)
	}
	var p remoteParams
	if err := json.Unmarshal(sr.Params, &p); err != nil || p.URI == "" {
		return nil, fmt.Errorf("open kek %s: its record names no %s key uri", sr.ID, sr.Backend)
	}
	if open == nil {
		return nil, fmt.Errorf("open kek %s: it is held in %s (%s), and no %s backend is configured", sr.ID, sr.Backend, p.URI, sr.Backend)
	}
	remote, err := open(ctx, sr.Backend, p.URI)
	if err != nil {
		return nil, fmt.Errorf("open kek %s in %s: %w", sr.ID, sr.Backend, err)
	}
	got, err := remote.Unwrap(ctx, remoteCheckID(sr.ID), sr.Check)
	if err != nil {
		return nil, fmt.Errorf("open kek %s: unwrap its check value with %s: %w", sr.ID, p.URI, err)
	}
	ok := subtle.ConstantTimeCompare(got, remoteCheckValue(sr.ID)) == 1
	clear(got)
	if !ok {
		return nil, fmt.Errorf("open kek %s: %s unwrapped its check value to something else", sr.ID, p.URI)
	}
	return NewRemoteKEK(sr.ID, remote)
}

// UnlockWith opens the active KEK, and every earlier version a key is
// still wrapped under, each with passphrase if it is passphrase-derived or
// through open if it is held in a KMS or HSM. A CA whose KEKs are all
// remote unlocks with a nil passphrase.
func UnlockWith(ctx context.Context, st Store, clk clockwork.Clock, passphrase []byte, open KEKOpener) (*Keystore, error) {
	sr, err := st.ActiveKEK(ctx)
	if err != nil {
		return nil, fmt.Errorf("load kek: %w", err)
	}
	openOne := func(sr store.KEKRecord) (*KEK, error) {
		if IsRemoteKEK(sr.Backend) {
			return openRemoteKEK(ctx, sr, open)
		}
		if passphrase == nil {
			return nil, fmt.Errorf("open kek %s: it is derived from a passphrase, and none was given: %w", sr.ID, ErrWrongPassphrase)
		}
		rec, err := fromStoreKEK(sr)
		if err != nil {
			return nil, err
		}
		return OpenKEK(passphrase, rec)
	}
	kek, err := openOne(sr)
	if err != nil {
		return nil, err
	}
	rec, err := fromStoreKEK(sr)
	if err != nil {
		return nil, err
	}
	k := &Keystore{st: st, clk: clk, kek: kek, rec: rec, keks: map[string]*KEK{kek.ID(): kek}}
	keys, err := st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("load keys: %w", err)
	}
	for _, key := range keys {
		if !rewrappable(key) || k.keks[key.KEKID] != nil {
			continue
		}
		sr, err := st.KEK(ctx, key.KEKID)
		if err != nil {
			return nil, fmt.Errorf("key %s: load its kek: %w", key.ID, err)
		}
		old, err := openOne(sr)
		if err != nil {
			return nil, fmt.Errorf("key %s is wrapped under %s, an earlier KEK version: %w", key.ID, key.KEKID, err)
		}
		k.keks[old.ID()] = old
	}
	return k, nil
}

// KEKTarget is the KEK RewrapTo moves every data key to: a key in a KMS
// (Remote set, with its Backend and URI), or a KEK derived from Passphrase
// with Params.
type KEKTarget struct {
	Backend string
	URI     string
	Remote  RemoteKEK

	Passphrase []byte
	Params     KDFParams
}

// RewrapTo moves every data key to a new KEK version held where to says:
// from a passphrase KEK to a KMS key, back, or from one KMS key to another.
// It runs as Rotate does, online: the new version is recorded as the active
// KEK first ("kek.rotation.started" naming its backend and URI, the
// previous version retired), so keys are sealed under it from then on;
// each batch of opts.Batch keys is re-wrapped and audited in one
// transaction, opts.AfterBatch reporting progress; "kek.rotated" ends it.
// Private keys are never decrypted. A rotation already cut short is
// finished first, under the KEK it was going to. A RewrapTo cut short is
// finished by Rotate (the kek-rotate job) or by the next RewrapTo. It
// returns the new KEK's id and how many keys it re-wrapped.
func (k *Keystore) RewrapTo(ctx context.Context, actor string, to KEKTarget, opts RotateOptions) (string, int, error) {
	k.rewrapMu.Lock()
	defer k.rewrapMu.Unlock()
	pending, err := k.pending(ctx)
	if err != nil {
		return "", 0, err
	}
	done, err := k.rewrapPending(ctx, actor, opts, pending)
	if err != nil {
		return k.KEKID(), done, fmt.Errorf("finish the unfinished rotation first: %w", err)
	}
	k.mu.RLock()
	old := k.kek
	k.mu.RUnlock()
	newID, err := nextKEKID(old.ID())
	if err != nil {
		return "", 0, err
	}
	now := k.clk.Now().UTC()
	var kek *KEK
	var sr store.KEKRecord
	detail := map[string]string{"previous": old.ID()}
	if to.Remote != nil {
		if kek, sr, err = newRemoteKEKRecord(ctx, newID, to.Backend, to.URI, to.Remote, k.clk); err != nil {
			return "", 0, fmt.Errorf("rewrap to %s: %w", to.URI, err)
		}
		detail["backend"], detail["uri"] = to.Backend, to.URI
	} else {
		var rec KEKRecord
		if kek, rec, err = NewKEK(rand.Reader, newID, to.Passphrase, to.Params, now); err != nil {
			return "", 0, fmt.Errorf("rewrap to a passphrase: %w", err)
		}
		if sr, err = toStoreKEK(rec); err != nil {
			return "", 0, err
		}
		detail["backend"], detail["kdf"] = backendPassphrase, rec.Params.KDF
	}
	rec, err := fromStoreKEK(sr)
	if err != nil {
		return "", 0, err
	}
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKEK(sr); err != nil {
			return err
		}
		if err := tx.SetKEKState(old.ID(), store.KeyRetired); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKEKRotationStarted, Target: newID, Detail: detail})
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("rewrap: record %s: %w", newID, err)
	}
	k.mu.Lock()
	k.kek, k.rec, k.keks[newID] = kek, rec, kek
	// A held passphrase derives new versions of a passphrase KEK only: it
	// follows the KEK, and is dropped when the KEK moves to a KMS.
	clear(k.passphrase)
	k.passphrase = nil
	if to.Remote == nil && to.Passphrase != nil {
		k.passphrase = heldSecret(bytes.Clone(to.Passphrase))
	}
	k.mu.Unlock()
	if pending, err = k.pending(ctx); err != nil {
		return newID, 0, err
	}
	n, err := k.rewrapPending(ctx, actor, opts, pending)
	if err != nil {
		return newID, n, err
	}
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: k.clk.Now().UTC(), Actor: actor, Action: audit.ActionKEKRotated, Target: newID,
			Detail: map[string]string{"previous": old.ID(), "keys": strconv.Itoa(n)}})
		return err
	})
	if err != nil {
		return newID, n, fmt.Errorf("rewrap to %s: audit: %w", newID, err)
	}
	return newID, n, nil
}
