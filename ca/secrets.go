package ca

import (
	"context"
	"errors"
	"fmt"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// secretSize is 256 bits: the HS256 key size RFC 7518 §3.2 asks for.
const secretSize = 32

// NewHMACSecret generates an HMAC-SHA256 secret that the CA keeps like a
// private key: envelope-encrypted, in the key inventory, re-wrapped with the
// KEK, destroyable by crypto-shredding. inTx runs in the same transaction
// that stores the key (and its key.generated event) so a caller's own record
// of it commits with it or not at all. The caller shows the secret once and
// clears it.
func (a *Authority) NewHMACSecret(ctx context.Context, purpose, actor string, inTx func(tx store.Tx, rec store.KeyRecord) error) ([]byte, store.KeyRecord, error) {
	secret, rec, err := a.keys.GenerateSecret(ctx, purpose, keystore.AlgorithmHMACSHA256, secretSize)
	if err != nil {
		return nil, store.KeyRecord{}, internal("generate secret", err)
	}
	err = a.st.WithTx(ctx, func(stx store.Tx) error {
		tx := Tx(stx) // ca's writes; inTx, the caller's, gets the store.Tx
		if err := tx.InsertKey(rec); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(keystore.GeneratedEvent(rec, actor)); err != nil {
			return err
		}
		return inTx(stx, rec)
	})
	if err != nil {
		clear(secret)
		var ce *Error
		if errors.As(err, &ce) {
			return nil, store.KeyRecord{}, ce
		}
		return nil, store.KeyRecord{}, internal("store secret", err)
	}
	return secret, rec, nil
}

// HMACSecret opens a secret made by NewHMACSecret; the unwrap is audited
// with actor. The caller clears the result.
func (a *Authority) HMACSecret(ctx context.Context, keyID, actor string) ([]byte, error) {
	secret, err := a.keys.UnwrapSecret(ctx, keyID, actor)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(NotFound, "no secret %s", keyID)
	}
	if err != nil {
		return nil, internal(fmt.Sprintf("unwrap secret %s", keyID), err)
	}
	return secret, nil
}
