package keystore

import (
	"context"
	"fmt"
	"maps"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// PurposeManaged is the inventory purpose of managed-certificate keys: the
// only keys Export hands out. A CA, OCSP or audit key can never leave the
// keystore through it.
const PurposeManaged = "managed"

// Export decrypts the active managed key keyID and returns its PKCS#8 DER,
// for delivery to the identity it belongs to (a managed bundle): the one
// case in which a private key leaves the CA (DESIGN.md, Keys). It appends a
// "key.exported" event (with detail) and runs inTx, where the caller records
// the delivery, in one transaction: if that fails nothing is returned. The
// caller zeroes the result once it is sent. Errors name the key, never its
// bytes.
func (k *Keystore) Export(ctx context.Context, keyID, actor string, detail map[string]string, inTx func(tx store.Tx) error) ([]byte, error) {
	rec, err := k.st.Key(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	switch {
	case rec.Purpose != PurposeManaged:
		return nil, fmt.Errorf("export key %s: a %s key is never exported", keyID, rec.Purpose)
	case rec.State != store.KeyActive:
		return nil, fmt.Errorf("export key %s: the key is %s", keyID, rec.State)
	case rec.Backend != BackendPassphrase:
		return nil, fmt.Errorf("export key %s: backend %s keeps its keys", keyID, rec.Backend)
	}
	k.mu.RLock()
	kek := k.kek
	k.mu.RUnlock()
	s := Sealed{KEKID: rec.KEKID, WrappedDEK: rec.WrappedDEK, Ciphertext: rec.Ciphertext}
	der, _, err := openKey(ctx, kek, keyID, s)
	if err != nil {
		return nil, fmt.Errorf("export key %s: %w", keyID, err)
	}
	now := k.clk.Now().UTC()
	d := map[string]string{"purpose": rec.Purpose}
	maps.Copy(d, detail)
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.TouchKey(keyID, now); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKeyExported, Target: keyID, Detail: d}); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(tx)
		}
		return nil
	})
	if err != nil {
		clear(der)
		return nil, fmt.Errorf("audit export of %s: %w", keyID, err)
	}
	return der, nil
}
