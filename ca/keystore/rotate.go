package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// ErrRotationDisabled is returned by Rotate when a new KEK version is due
// but EnableRotation was not called: the keystore cannot derive one.
var ErrRotationDisabled = errors.New("kek rotation is not enabled: the passphrase is not held")

// DefaultRotateBatch is how many keys one Rotate transaction re-wraps.
const DefaultRotateBatch = 100

// EnableRotation lets Rotate derive new KEK versions: the keystore keeps a
// copy of passphrase, which must open the active KEK (an error wrapping
// ErrWrongPassphrase otherwise). Without it the passphrase is forgotten once
// the KEK is derived, and only a rotation cut short can be finished.
func (k *Keystore) EnableRotation(passphrase []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := OpenKEK(passphrase, k.rec); err != nil {
		return fmt.Errorf("enable kek rotation: %w", err)
	}
	clear(k.passphrase)
	k.passphrase = heldSecret(bytes.Clone(passphrase))
	return nil
}

// heldSecret is a passphrase the keystore keeps; it formats and logs as
// "REDACTED", so printing a Keystore never shows it.
type heldSecret []byte

// String returns "REDACTED".
func (heldSecret) String() string { return "REDACTED" }

// GoString returns "REDACTED".
func (heldSecret) GoString() string { return "REDACTED" }

// Format writes "REDACTED" for every verb.
func (heldSecret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "REDACTED") }

// LogValue implements slog.LogValuer.
func (heldSecret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// RotateOptions configures Rotate.
type RotateOptions struct {
	// Params are the KDF parameters of a new KEK version (a fresh salt each).
	Params KDFParams
	// Batch is how many keys one transaction re-wraps (default
	// DefaultRotateBatch): the store's single writer is never held long.
	Batch int
	// AfterBatch, if set, is called after each committed batch with the
	// number of keys re-wrapped so far in this run.
	AfterBatch func(done int)
}

// Rotate re-wraps every data key under a new version of the KEK, derived
// from the passphrase held by EnableRotation with a fresh salt and
// opts.Params, one batch of keys per transaction; private keys are never
// decrypted and ciphertexts stay byte-identical. The new version is
// recorded as the active KEK first (the previous one retired,
// "kek.rotation.started"), so new keys are sealed under it from then on;
// each batch re-wraps and audits its keys ("key.rewrapped") in one
// transaction; "kek.rotated" ends the rotation.
//
// A rotation cut short (a crash, a cancelled ctx) leaves every key wrapped
// under either version, and both open: this process keeps them, and Unlock
// opens every version a key still uses. The next Rotate then finishes that
// rotation instead of starting another. Rotate returns the active KEK's id
// and how many keys this call re-wrapped. Issuance is never paused: keys in
// use are already unwrapped, and Unwrap and Generate wait at most for a
// pointer swap.
func (k *Keystore) Rotate(ctx context.Context, actor string, opts RotateOptions) (string, int, error) {
	if opts.Batch <= 0 {
		opts.Batch = DefaultRotateBatch
	}
	k.rewrapMu.Lock()
	defer k.rewrapMu.Unlock()
	pending, err := k.pending(ctx)
	if err != nil {
		return "", 0, err
	}
	var previous []string
	if len(pending) == 0 {
		prev, err := k.startVersion(ctx, actor, opts.Params)
		if err != nil {
			return "", 0, err
		}
		previous = []string{prev}
		if pending, err = k.pending(ctx); err != nil {
			return k.KEKID(), 0, err
		}
	} else {
		for _, key := range pending {
			if !slices.Contains(previous, key.KEKID) {
				previous = append(previous, key.KEKID)
			}
		}
	}
	to := k.KEKID()
	done, err := k.rewrapPending(ctx, actor, opts, pending)
	if err != nil {
		return to, done, err
	}
	now := k.clk.Now().UTC()
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKEKRotated, Target: to,
			Detail: map[string]string{"previous": strings.Join(previous, ","), "keys": strconv.Itoa(done)}})
		return err
	})
	if err != nil {
		return to, done, fmt.Errorf("kek rotation to %s: audit: %w", to, err)
	}
	return to, done, nil
}

// rewrapPending re-wraps pending under the active KEK a batch per
// transaction, passing again until no key is left under another version,
// and returns how many keys it re-wrapped.
func (k *Keystore) rewrapPending(ctx context.Context, actor string, opts RotateOptions, pending []store.KeyRecord) (int, error) {
	if opts.Batch <= 0 {
		opts.Batch = DefaultRotateBatch
	}
	to := k.KEKID()
	done := 0
	var err error
	// Keys sealed under the previous version just before the switch may be
	// recorded after a pass read the inventory: pass until none is left.
	for len(pending) > 0 {
		for chunk := range slices.Chunk(pending, opts.Batch) {
			if err := ctx.Err(); err != nil {
				return done, fmt.Errorf("kek rotation to %s stopped after %d keys (the next run finishes it): %w", to, done, err)
			}
			n, err := k.rewrapBatch(ctx, actor, chunk)
			done += n
			if err != nil {
				return done, fmt.Errorf("kek rotation to %s: %w", to, err)
			}
			if opts.AfterBatch != nil {
				opts.AfterBatch(done)
			}
		}
		if pending, err = k.pending(ctx); err != nil {
			return done, err
		}
	}
	return done, nil
}

// pending lists the keys not wrapped under the active KEK.
func (k *Keystore) pending(ctx context.Context) ([]store.KeyRecord, error) {
	keys, err := k.st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("kek rotation: list keys: %w", err)
	}
	active := k.KEKID()
	return slices.DeleteFunc(keys, func(key store.KeyRecord) bool { return !rewrappable(key) || key.KEKID == active }), nil
}

// startVersion derives the next KEK version from the held passphrase,
// records it as active (the current one retired) and makes it the one new
// keys are sealed under. It returns the previous version's id.
func (k *Keystore) startVersion(ctx context.Context, actor string, params KDFParams) (string, error) {
	k.mu.RLock()
	pass, old := bytes.Clone(k.passphrase), k.kek
	k.mu.RUnlock()
	defer clear(pass)
	if pass == nil {
		return "", ErrRotationDisabled
	}
	newID, err := nextKEKID(old.ID())
	if err != nil {
		return "", err
	}
	now := k.clk.Now().UTC()
	kek, rec, err := NewKEK(rand.Reader, newID, pass, params, now)
	if err != nil {
		return "", fmt.Errorf("kek rotation: %w", err)
	}
	sr, err := toStoreKEK(rec)
	if err != nil {
		return "", err
	}
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKEK(sr); err != nil {
			return err
		}
		if err := tx.SetKEKState(old.ID(), store.KeyRetired); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKEKRotationStarted, Target: newID,
			Detail: map[string]string{"previous": old.ID(), "kdf": rec.Params.KDF,
				"kdf_time": strconv.Itoa(int(rec.Params.Time)), "kdf_memory_kib": strconv.Itoa(int(rec.Params.MemoryKiB))}})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("kek rotation: record %s: %w", newID, err)
	}
	k.mu.Lock()
	k.kek, k.rec, k.keks[newID] = kek, rec, kek
	k.mu.Unlock()
	return old.ID(), nil
}

// rewrapBatch re-wraps keys under the active KEK in one transaction, each
// with its audit event, and returns how many it re-wrapped. The AES work is
// done before the transaction; a key destroyed meanwhile is skipped.
func (k *Keystore) rewrapBatch(ctx context.Context, actor string, keys []store.KeyRecord) (int, error) {
	k.mu.RLock()
	to := k.kek
	k.mu.RUnlock()
	type rewrapped struct {
		key  store.KeyRecord
		seal Sealed
	}
	out := make([]rewrapped, 0, len(keys))
	for _, key := range keys {
		from, err := k.kekFor(key.ID, key.KEKID)
		if err != nil {
			return 0, err
		}
		s, err := Rewrap(ctx, rand.Reader, from, to, key.ID, Sealed{KEKID: key.KEKID, WrappedDEK: key.WrappedDEK, Ciphertext: key.Ciphertext})
		if err != nil {
			return 0, err
		}
		out = append(out, rewrapped{key, s})
	}
	now := k.clk.Now().UTC()
	n := 0
	err := k.st.WithTx(ctx, func(tx store.Tx) error {
		n = 0
		for _, r := range out {
			err := tx.RewrapKey(r.key.ID, r.seal.KEKID, r.seal.WrappedDEK, now)
			if errors.Is(err, store.ErrNotFound) {
				continue // destroyed since the inventory was read: nothing to re-wrap
			}
			if err != nil {
				return err
			}
			if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKeyRewrapped, Target: r.key.ID,
				Detail: map[string]string{"from_kek": r.key.KEKID, "to_kek": to.ID()}}); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
