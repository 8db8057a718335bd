package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Store is what the keystore persists through.
type Store interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	Key(ctx context.Context, id string) (store.KeyRecord, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	KEK(ctx context.Context, id string) (store.KEKRecord, error)
	ActiveKEK(ctx context.Context) (store.KEKRecord, error)
}

// BackendPassphrase names keys wrapped under a passphrase-derived KEK.
const BackendPassphrase = "passphrase"

// Keystore holds the unlocked KEK and unwraps, generates and re-wraps keys,
// auditing each step.
type Keystore struct {
	st  Store
	clk clockwork.Clock

	mu  sync.RWMutex
	kek *KEK      // the active KEK: new keys are sealed under it
	rec KEKRecord // its record
	// keks holds every open KEK by id, the active one included: while a
	// rotation runs, or after one was cut short, keys wrapped under the
	// previous version open too. Versions stay open until the process ends.
	keks map[string]*KEK
	// passphrase is held only after EnableRotation, to derive new KEK
	// versions; nil otherwise.
	passphrase heldSecret

	// rewrapMu makes re-wrapping runs (Rewrap, Rotate) exclusive; it is
	// taken before mu and held for a whole run.
	rewrapMu sync.Mutex

	// backends opens keys held in an HSM or KMS (records whose Backend is
	// not "passphrase"); nil until SetBackends.
	backends BackendKeys
}

// BackendKeys opens a signing key held outside the database, by the
// backend and URI its record names (ca/keybackend.Keys implements it).
type BackendKeys interface {
	LoadSigner(ctx context.Context, backend, uri string) (crypto.Signer, error)
	// DestroyKey destroys the key in its backend (or schedules its
	// deletion) and returns what to add to the key.destroyed event.
	DestroyKey(ctx context.Context, backend, uri string) (map[string]string, error)
	// CreateLike creates a key of algorithm alg (named after name) in the
	// same backend as the key likeURI names, and returns it with its URI.
	CreateLike(ctx context.Context, backend, likeURI, name, alg string) (crypto.Signer, string, error)
}

// GenerateLike creates a key for purpose where like lives: in the database
// (Generate) for a passphrase-wrapped key, else in like's HSM or KMS, as a
// rotation's successor. As with Generate, the caller stores the record.
func (k *Keystore) GenerateLike(ctx context.Context, purpose string, alg Algorithm, like store.KeyRecord) (crypto.Signer, store.KeyRecord, error) {
	if like.Backend == BackendPassphrase {
		return k.Generate(ctx, purpose, alg)
	}
	k.mu.RLock()
	b := k.backends
	k.mu.RUnlock()
	if b == nil {
		return nil, store.KeyRecord{}, fmt.Errorf("generate %s key like %s: no %s backend is configured", purpose, like.ID, like.Backend)
	}
	signer, uri, err := b.CreateLike(ctx, like.Backend, BackendURI(like), "sigil-"+purpose, string(alg))
	if err != nil {
		return nil, store.KeyRecord{}, fmt.Errorf("generate %s key in %s: %w", purpose, like.Backend, err)
	}
	rec, err := k.BackendKeyRecord(purpose, like.Backend, uri, signer.Public())
	if err != nil {
		return nil, store.KeyRecord{}, err
	}
	return signer, rec, nil
}

// SetBackends lets k open keys held in an HSM or KMS through b. Without it,
// unwrapping such a key fails with an error that says so.
func (k *Keystore) SetBackends(b BackendKeys) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.backends = b
}

// BackendKeyRecord returns the inventory record of a key held in backend
// (such as "pkcs11" or "awskms") at uri, with public key pub: nothing is
// wrapped, so KEKID and WrappedDEK are empty and Ciphertext holds the URI,
// which is not secret (the store has no column of its own for it yet). As
// with Generate, the caller inserts it with its GeneratedEvent.
func (k *Keystore) BackendKeyRecord(purpose, backend, uri string, pub crypto.PublicKey) (store.KeyRecord, error) {
	if backend == "" || backend == BackendPassphrase {
		return store.KeyRecord{}, fmt.Errorf("backend key record: backend %q is not an HSM or KMS", backend)
	}
	if uri == "" {
		return store.KeyRecord{}, errors.New("backend key record: empty uri")
	}
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return store.KeyRecord{}, fmt.Errorf("backend key record: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return store.KeyRecord{}, fmt.Errorf("backend key record: marshal public key: %w", err)
	}
	id, err := NewKeyID(purpose)
	if err != nil {
		return store.KeyRecord{}, err
	}
	return store.KeyRecord{
		ID: id, Purpose: purpose, Algorithm: string(alg), Backend: backend, State: store.KeyActive,
		PublicKey: der, Ciphertext: []byte(uri), Created: k.clk.Now().UTC(),
	}, nil
}

// BackendURI returns the URI of a key held in an HSM or KMS, or "" for a
// key in the database.
func BackendURI(rec store.KeyRecord) string {
	if rec.Backend == BackendPassphrase {
		return ""
	}
	return string(rec.Ciphertext)
}

// DestroyInBackend destroys a key held in an HSM or KMS there, before its
// record is destroyed with Destroy (a network or HSM call has no place
// inside the transaction), and returns the detail for Destroy's event. For
// a key in the database it does nothing and returns nil.
func (k *Keystore) DestroyInBackend(ctx context.Context, rec store.KeyRecord) (map[string]string, error) {
	if rec.Backend == BackendPassphrase {
		return nil, nil
	}
	k.mu.RLock()
	b := k.backends
	k.mu.RUnlock()
	if b == nil {
		return nil, fmt.Errorf("destroy key %s: it is held in %s, and no %s backend is configured", rec.ID, rec.Backend, rec.Backend)
	}
	d, err := b.DestroyKey(ctx, rec.Backend, BackendURI(rec))
	if err != nil {
		return nil, fmt.Errorf("destroy key %s in %s: %w", rec.ID, rec.Backend, err)
	}
	out := map[string]string{"backend": rec.Backend, "uri": BackendURI(rec)}
	maps.Copy(out, d)
	return out, nil
}

// openBackendKey loads a key held in an HSM or KMS and checks that it is
// the key its record describes.
func (k *Keystore) openBackendKey(ctx context.Context, rec store.KeyRecord) (crypto.Signer, error) {
	k.mu.RLock()
	b := k.backends
	k.mu.RUnlock()
	if b == nil {
		return nil, fmt.Errorf("key %s is held in %s, and no %s backend is configured", rec.ID, rec.Backend, rec.Backend)
	}
	signer, err := b.LoadSigner(ctx, rec.Backend, BackendURI(rec))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", rec.ID, err)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("key %s: marshal public key: %w", rec.ID, err)
	}
	if !bytes.Equal(der, rec.PublicKey) {
		return nil, fmt.Errorf("key %s: %s holds another public key than the one recorded", rec.ID, BackendURI(rec))
	}
	return signer, nil
}

// Unlock opens the active KEK with passphrase, and every earlier version
// that a key is still wrapped under (a rotation cut short: every version of
// a passphrase's KEK derives from that passphrase). A wrong passphrase
// returns an error wrapping ErrWrongPassphrase and changes nothing.
func Unlock(ctx context.Context, st Store, clk clockwork.Clock, passphrase []byte) (*Keystore, error) {
	if passphrase == nil {
		// UnlockWith reads nil as "no passphrase at all".
		passphrase = []byte{}
	}
	return UnlockWith(ctx, st, clk, passphrase, nil)
}

// rewrappable reports whether key has a data key wrapped under a
// passphrase KEK.
func rewrappable(key store.KeyRecord) bool {
	return key.State != store.KeyDestroyed && key.Backend == BackendPassphrase
}

// kekFor returns the open KEK with id, or an error naming it.
func (k *Keystore) kekFor(keyID, id string) (*KEK, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	kek := k.keks[id]
	if kek == nil {
		return nil, fmt.Errorf("key %s is wrapped under %s, which is not open", keyID, id)
	}
	return kek, nil
}

// Prepare derives a first KEK for a new CA. The returned record must be
// inserted (tx.InsertKEK) in the same transaction as the keys sealed under it.
func Prepare(st Store, clk clockwork.Clock, passphrase []byte, params KDFParams) (*Keystore, store.KEKRecord, error) {
	kek, rec, err := NewKEK(rand.Reader, "kek-1", passphrase, params, clk.Now())
	if err != nil {
		return nil, store.KEKRecord{}, err
	}
	sr, err := toStoreKEK(rec)
	if err != nil {
		return nil, store.KEKRecord{}, err
	}
	return &Keystore{st: st, clk: clk, kek: kek, rec: rec, keks: map[string]*KEK{kek.ID(): kek}}, sr, nil
}

func toStoreKEK(r KEKRecord) (store.KEKRecord, error) {
	params, err := json.Marshal(r.Params)
	if err != nil {
		return store.KEKRecord{}, fmt.Errorf("encode kdf params: %w", err)
	}
	return store.KEKRecord{ID: r.ID, Backend: r.Backend, Params: params, Check: r.Check, State: store.KeyActive, Created: r.Created}, nil
}

func fromStoreKEK(r store.KEKRecord) (KEKRecord, error) {
	var p KDFParams
	if err := json.Unmarshal(r.Params, &p); err != nil {
		return KEKRecord{}, fmt.Errorf("kek %s: decode kdf params: %w", r.ID, err)
	}
	return KEKRecord{ID: r.ID, Backend: r.Backend, Params: p, Check: r.Check, Created: r.Created}, nil
}

// KEKBackend returns the backend of the KEK new keys are wrapped under:
// "passphrase", or the KMS holding it ("awskms").
func (k *Keystore) KEKBackend() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.rec.Backend
}

// KEKID returns the id of the KEK new keys are wrapped under.
func (k *Keystore) KEKID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.kek.ID()
}

// NewKeyID returns a fresh random key id with a purpose prefix.
func NewKeyID(purpose string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	return purpose + "-" + hex.EncodeToString(b), nil
}

// Generate creates a key and seals it under the current KEK. Nothing is
// stored: the caller inserts the record and its "key.generated" event
// (GeneratedEvent) in one transaction.
func (k *Keystore) Generate(ctx context.Context, purpose string, alg Algorithm) (crypto.Signer, store.KeyRecord, error) {
	id, err := NewKeyID(purpose)
	if err != nil {
		return nil, store.KeyRecord{}, err
	}
	signer, err := Generate(alg)
	if err != nil {
		return nil, store.KeyRecord{}, fmt.Errorf("generate %s key: %w", alg, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, store.KeyRecord{}, fmt.Errorf("marshal public key: %w", err)
	}
	k.mu.RLock()
	sealed, err := Seal(ctx, rand.Reader, k.kek, id, signer)
	k.mu.RUnlock()
	if err != nil {
		return nil, store.KeyRecord{}, fmt.Errorf("seal key %s: %w", id, err)
	}
	return signer, store.KeyRecord{
		ID: id, Purpose: purpose, Algorithm: string(alg), Backend: BackendPassphrase, State: store.KeyActive,
		PublicKey: pub, KEKID: sealed.KEKID, WrappedDEK: sealed.WrappedDEK, Ciphertext: sealed.Ciphertext,
		Created: k.clk.Now().UTC(),
	}, nil
}

// GeneratedEvent is the audit event for a newly generated key.
func GeneratedEvent(rec store.KeyRecord, actor string) audit.Event {
	e := audit.Event{Time: rec.Created, Actor: actor, Action: audit.ActionKeyGenerated, Target: rec.ID,
		Detail: map[string]string{"purpose": rec.Purpose, "algorithm": rec.Algorithm, "backend": rec.Backend, "kek": rec.KEKID,
			"public_key_sha256": publicKeyDigest(rec.PublicKey)}}
	if uri := BackendURI(rec); uri != "" {
		e.Detail["uri"] = uri
	}
	return e
}

// Unwrap opens a stored key for use and audits that it was unwrapped.
func (k *Keystore) Unwrap(ctx context.Context, keyID, actor string) (crypto.Signer, error) {
	rec, err := k.st.Key(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if rec.State == store.KeyDestroyed {
		return nil, fmt.Errorf("key %s was destroyed", keyID)
	}
	var signer crypto.Signer
	if rec.Backend != BackendPassphrase {
		// Held in an HSM or KMS: nothing to unwrap, the backend signs.
		if signer, err = k.openBackendKey(ctx, rec); err != nil {
			return nil, fmt.Errorf("unwrap key %s: %w", keyID, err)
		}
	} else {
		kek, err := k.kekFor(keyID, rec.KEKID)
		if err != nil {
			return nil, fmt.Errorf("unwrap key %s: %w", keyID, err)
		}
		if signer, err = Open(ctx, kek, keyID, Sealed{KEKID: rec.KEKID, WrappedDEK: rec.WrappedDEK, Ciphertext: rec.Ciphertext}); err != nil {
			return nil, fmt.Errorf("unwrap key %s: %w", keyID, err)
		}
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
		return nil, fmt.Errorf("audit unwrap of %s: %w", keyID, err)
	}
	return signer, nil
}

// CheckPassphrase reports whether passphrase opens the active KEK; a
// mismatch wraps ErrWrongPassphrase.
func (k *Keystore) CheckPassphrase(passphrase []byte) error {
	k.mu.RLock()
	rec := k.rec
	k.mu.RUnlock()
	_, err := OpenKEK(passphrase, rec)
	return err
}

// Rewrap derives a new KEK from newPassphrase and re-wraps every key's data
// key under it in one transaction; private keys are never decrypted and the
// ciphertexts stay byte-identical. currentPassphrase must open the active KEK
// first: a wrong one changes nothing. Keys still wrapped under an earlier
// version of the current passphrase's KEK (a rotation cut short) are
// re-wrapped too, and every earlier version is retired. Issuance continues
// throughout: signing keys already unwrapped in memory are not touched.
// With EnableRotation, later rotations derive from newPassphrase.
func (k *Keystore) Rewrap(ctx context.Context, actor string, currentPassphrase, newPassphrase []byte, params KDFParams) (string, int, error) {
	k.rewrapMu.Lock()
	defer k.rewrapMu.Unlock()
	// Check under the lock: two concurrent re-wraps must not both pass a
	// check against the same KEK.
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := OpenKEK(currentPassphrase, k.rec); err != nil {
		return "", 0, err
	}
	old := k.kek
	newID, err := nextKEKID(old.ID())
	if err != nil {
		return "", 0, err
	}
	now := k.clk.Now().UTC()
	kek, rec, err := NewKEK(rand.Reader, newID, newPassphrase, params, now)
	if err != nil {
		return "", 0, err
	}
	sr, err := toStoreKEK(rec)
	if err != nil {
		return "", 0, err
	}
	count := 0
	err = k.st.WithTx(ctx, func(tx store.Tx) error {
		count = 0
		keys, err := tx.Keys()
		if err != nil {
			return err
		}
		if err := tx.InsertKEK(sr); err != nil {
			return err
		}
		for _, key := range keys {
			if !rewrappable(key) {
				continue
			}
			from := k.keks[key.KEKID]
			if from == nil {
				return fmt.Errorf("key %s is wrapped under %s, which is not open", key.ID, key.KEKID)
			}
			s, err := Rewrap(ctx, rand.Reader, from, kek, key.ID, Sealed{KEKID: key.KEKID, WrappedDEK: key.WrappedDEK, Ciphertext: key.Ciphertext})
			if err != nil {
				return fmt.Errorf("rewrap %s: %w", key.ID, err)
			}
			if err := tx.RewrapKey(key.ID, s.KEKID, s.WrappedDEK, now); err != nil {
				return err
			}
			if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKeyRewrapped, Target: key.ID,
				Detail: map[string]string{"from_kek": key.KEKID, "to_kek": newID}}); err != nil {
				return err
			}
			count++
		}
		for _, id := range slices.Sorted(maps.Keys(k.keks)) {
			if err := tx.SetKEKState(id, store.KeyRetired); err != nil {
				return err
			}
		}
		_, err = tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionKEKRotated, Target: newID,
			Detail: map[string]string{"previous": old.ID(), "keys": strconv.Itoa(count), "kdf": rec.Params.KDF,
				"kdf_time": strconv.Itoa(int(rec.Params.Time)), "kdf_memory_kib": strconv.Itoa(int(rec.Params.MemoryKiB))}})
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("rewrap: %w", err)
	}
	// Earlier versions stay open: a key sealed just before this re-wrap
	// and recorded after it still opens in this process.
	k.kek, k.rec, k.keks[newID] = kek, rec, kek
	if k.passphrase != nil {
		clear(k.passphrase)
		k.passphrase = heldSecret(bytes.Clone(newPassphrase))
	}
	return newID, count, nil
}

func nextKEKID(id string) (string, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "kek-"))
	if err != nil || !strings.HasPrefix(id, "kek-") {
		return "", errors.New("unexpected kek id " + id)
	}
	return "kek-" + strconv.Itoa(n+1), nil
}

// publicKeyDigest is the hex SHA-256 of a stored public key (DER), which
// key.generated records so that offline verification notices a key swapped
// in the database.
func publicKeyDigest(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
