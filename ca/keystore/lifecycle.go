package keystore

import (
	"fmt"
	"maps"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// LifecycleTx is what Retire and Destroy write inside the caller's
// transaction; every store.Tx, and the narrower views of the packages that
// retire keys (ca.Tx), implement it.
type LifecycleTx interface {
	// RetireKey moves an active key to retired; store.ErrNotFound if no
	// active key has that id.
	RetireKey(id string, at time.Time) error
	// DestroyKey erases a retired key's wrapped data key and ciphertext;
	// store.ErrNotFound if no retired key has that id.
	DestroyKey(id string, at time.Time) error
	// AppendAudit appends e to the audit chain in the transaction.
	AppendAudit(e audit.Event) (audit.Event, error)
}

// Retire moves an active key to retired inside tx and appends its
// "key.retired" event: the key is used for nothing new, while what it
// signed stays valid. detail is added to the event (successor, reason).
func Retire(tx LifecycleTx, rec store.KeyRecord, actor string, at time.Time, detail map[string]string) error {
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
func Destroy(tx LifecycleTx, rec store.KeyRecord, actor, reason string, at time.Time) error {
	return DestroyWith(tx, rec, actor, reason, at, nil)
}

// DestroyWith is Destroy with detail added to the event: for a key held in
// an HSM or KMS, what Keystore.DestroyInBackend returned. Such a key must
// have been destroyed in its backend first; Destroy refuses it otherwise,
// since erasing its record would leave the key alive with nothing naming it.
func DestroyWith(tx LifecycleTx, rec store.KeyRecord, actor, reason string, at time.Time, detail map[string]string) error {
	at = at.UTC()
	if rec.Backend != BackendPassphrase && detail["backend_destruction"] == "" {
		return fmt.Errorf("destroy key %s: it is held in %s: destroy it there first (Keystore.DestroyInBackend)", rec.ID, rec.Backend)
	}
	if err := tx.DestroyKey(rec.ID, at); err != nil {
		return fmt.Errorf("destroy key %s: %w", rec.ID, err)
	}
	d := map[string]string{"purpose": rec.Purpose, "algorithm": rec.Algorithm, "kek": rec.KEKID, "reason": reason}
	maps.Copy(d, detail)
	if _, err := tx.AppendAudit(audit.Event{Time: at, Actor: actor, Action: audit.ActionKeyDestroyed, Target: rec.ID,
		Detail: d}); err != nil {
		return fmt.Errorf("audit destruction of %s: %w", rec.ID, err)
	}
	return nil
}
