package keystore

import (
	"fmt"
	"maps"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Retire moves an active key to retired inside tx and appends its
// "key.retired" event: the key is used for nothing new, while what it
// signed stays valid. detail is added to the event (successor, reason).
func Retire(tx store.Tx, rec store.KeyRecord, actor string, at time.Time, detail map[string]string) error {
	at = at.UTC()
	if err := tx.RetireKey(rec.ID, at); err != nil {
		return fmt.Errorf("retire key %s: %w", rec.ID, err)
	}
	d := map[string]string{"purpose": rec.Purpose}
	maps.Copy(d, detail)
	if _, err := tx.AppendAudit(audit.Event{Time: at, Actor: actor, Action: audit.ActionKeyRetired, Target: rec.ID, Detail: d}); err != nil {
		return fmt.Errorf("audit retirement of %s: %w", rec.ID, err)
	}
	return nil
}

// Destroy crypto-shreds a retired key inside tx and appends its
// "key.destroyed" event: the wrapped data key and the ciphertext are erased,
// so no KEK, current or past, opens the key again (see the package doc).
// Only a retired key is destroyed; anything else is an error wrapping
// store.ErrNotFound and changes nothing.
func Destroy(tx store.Tx, rec store.KeyRecord, actor, reason string, at time.Time) error {
	at = at.UTC()
	if err := tx.DestroyKey(rec.ID, at); err != nil {
		return fmt.Errorf("destroy key %s: %w", rec.ID, err)
	}
	if _, err := tx.AppendAudit(audit.Event{Time: at, Actor: actor, Action: audit.ActionKeyDestroyed, Target: rec.ID,
		Detail: map[string]string{"purpose": rec.Purpose, "algorithm": rec.Algorithm, "kek": rec.KEKID, "reason": reason}}); err != nil {
		return fmt.Errorf("audit destruction of %s: %w", rec.ID, err)
	}
	return nil
}
