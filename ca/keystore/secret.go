package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// AlgorithmHMACSHA256 labels a symmetric secret used as an HMAC-SHA256 key
// (ACME external account binding keys).
const AlgorithmHMACSHA256 = "hmac-sha256"

// secretAAD differs from keyAAD so that a sealed secret can never be opened
// as a private key, or the other way round.
func secretAAD(keyID string) []byte { return []byte("sigil-secret:" + keyID) }

// SealSecret encrypts a symmetric secret the way Seal encrypts a private key:
// under a fresh data key wrapped by kek, with keyID bound into both. The
// result re-wraps with Rewrap like any other key.
func SealSecret(ctx context.Context, rand io.Reader, kek *KEK, keyID string, secret []byte) (Sealed, error) {
	switch {
	case kek == nil:
		return Sealed{}, fmt.Errorf("seal secret %q: nil kek", keyID)
	case keyID == "":
		return Sealed{}, errors.New("seal secret: empty key id")
	case len(secret) == 0:
		return Sealed{}, fmt.Errorf("seal secret %q: empty secret", keyID)
	}
	s, err := sealEnvelope(ctx, rand, kek, keyID, secret, secretAAD(keyID))
	if err != nil {
		return Sealed{}, fmt.Errorf("seal secret %q: %w", keyID, err)
	}
	return s, nil
}

// OpenSecret decrypts a secret sealed by SealSecret under keyID; the caller
// clears the result when done. Errors never include secret bytes.
func OpenSecret(ctx context.Context, kek *KEK, keyID string, s Sealed) ([]byte, error) {
	secret, err := openEnvelope(ctx, kek, keyID, s, secretAAD(keyID))
	if err != nil {
		return nil, fmt.Errorf("open secret %q: %w", keyID, err)
	}
	return secret, nil
}

// GenerateSecret creates a random secret of size bytes (at least 16) and
// seals it under the current KEK. As with Generate, nothing is stored: the
// caller inserts the record and its GeneratedEvent in one transaction. The
// record has no public key.
func (k *Keystore) GenerateSecret(ctx context.Context, purpose, algorithm string, size int) ([]byte, store.KeyRecord, error) {
	if size < 16 {
		return nil, store.KeyRecord{}, fmt.Errorf("generate secret: %d bytes is too short", size)
	}
	id, err := NewKeyID(purpose)
	if err != nil {
		return nil, store.KeyRecord{}, err
	}
	secret := make([]byte, size)
	if _, err := rand.Read(secret); err != nil {
		return nil, store.KeyRecord{}, fmt.Errorf("generate secret: %w", err)
	}
	k.mu.RLock()
	sealed, err := SealSecret(ctx, rand.Reader, k.kek, id, secret)
	k.mu.RUnlock()
	if err != nil {
		clear(secret)
		return nil, store.KeyRecord{}, err
	}
	return secret, store.KeyRecord{
		ID: id, Purpose: purpose, Algorithm: algorithm, Backend: BackendPassphrase, State: store.KeyActive,
		PublicKey: []byte{}, KEKID: sealed.KEKID, WrappedDEK: sealed.WrappedDEK, Ciphertext: sealed.Ciphertext,
		Created: k.clk.Now().UTC(),
	}, nil
}

// UnwrapSecret opens a stored secret and audits that it was unwrapped, like
// Unwrap does for private keys.
func (k *Keystore) UnwrapSecret(ctx context.Context, keyID, actor string) ([]byte, error) {
	rec, err := k.st.Key(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("load secret: %w", err)
	}
	if rec.State == store.KeyDestroyed {
		return nil, fmt.Errorf("secret %s was destroyed", keyID)
	}
	if rec.Algorithm != AlgorithmHMACSHA256 {
		return nil, fmt.Errorf("key %s is a %s key, not a secret", keyID, rec.Algorithm)
	}
	kek, err := k.kekFor(keyID, rec.KEKID)
	if err != nil {
		return nil, fmt.Errorf("open secret %q: %w", keyID, err)
	}
	secret, err := OpenSecret(ctx, kek, keyID, Sealed{KEKID: rec.KEKID, WrappedDEK: rec.WrappedDEK, Ciphertext: rec.Ciphertext})
	if err != nil {
		return nil, err
	}
	now := k.clk.Now().UTC()
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.TouchKey(keyID, now); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKeyUnwrapped, Target: keyID,
			Detail: map[string]string{"purpose": rec.Purpose}})
		return err
	})
	if err != nil {
		clear(secret)
		return nil, fmt.Errorf("audit unwrap of %s: %w", keyID, err)
	}
	return secret, nil
}
