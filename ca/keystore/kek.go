package keystore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrWrongPassphrase is wrapped by the error OpenKEK returns when the
// passphrase does not open the KEK record's check value.
var ErrWrongPassphrase = errors.New("wrong passphrase")

const (
	// backendPassphrase is KEKRecord.Backend for a KEK derived from a
	// passphrase.
	backendPassphrase = "passphrase"
	// kdfArgon2id is KDFParams.KDF for Argon2id (RFC 9106).
	kdfArgon2id = "argon2id"

	aesKeySize = 32 // AES-256 for KEKs and DEKs
	saltSize   = 16 // RFC 9106 §3.1 recommends 128-bit salts

	// Validate's bounds. The lower ones reject weak parameters; the upper
	// ones stop a corrupt record from making OpenKEK allocate or spin without
	// end, while leaving ample room to raise the parameters later.
	minMemoryKiB = 8 * 1024
	maxMemoryKiB = 4 * 1024 * 1024 // 4 GiB
	maxTime      = 100

	// checkPlaintext is sealed under every KEK; opening it proves the
	// passphrase before anything is decrypted or changed. It is not secret.
	checkPlaintext = "sigil kek check v1"
	checkAADPrefix = "sigil-kek-check:"
)

// KDFParams are the Argon2id parameters stored with each KEK, so that the
// cost can be raised for new KEKs while old ones still open.
type KDFParams struct {
	KDF       string `json:"kdf"`  // always "argon2id"
	Time      uint32 `json:"t"`    // passes over memory
	MemoryKiB uint32 `json:"m"`    // memory in KiB
	Threads   uint8  `json:"p"`    // parallelism
	Salt      []byte `json:"salt"` // at least 16 random bytes
}

// DefaultKDFParams returns the production Argon2id parameters, t=3, m=64 MiB,
// p=2 (RFC 9106 §4's second recommended option, with two lanes rather than
// four), with a fresh 16-byte salt read from rand.
func DefaultKDFParams(rand io.Reader) (KDFParams, error) {
	return newKDFParams(rand, 3, 64*1024, 2)
}

// FastKDFParams returns cheap Argon2id parameters (t=1, m=8 MiB, p=1, the
// minimum Validate accepts) with a fresh 16-byte salt read from rand. They are
// for tests and `sigil dev`, whose passphrase is random and held only in
// memory; never use them for a passphrase a person chose.
func FastKDFParams(rand io.Reader) (KDFParams, error) {
	return newKDFParams(rand, 1, minMemoryKiB, 1)
}

func newKDFParams(rand io.Reader, t, m uint32, p uint8) (KDFParams, error) {
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return KDFParams{}, fmt.Errorf("kdf salt: %w", err)
	}
	return KDFParams{KDF: kdfArgon2id, Time: t, MemoryKiB: m, Threads: p, Salt: salt}, nil
}

// Validate reports whether p is usable: KDF must be "argon2id", Time at least
// 1, MemoryKiB at least 8192 (8 MiB), Threads at least 1, and Salt at least
// 16 bytes. It also rejects Time above 100 and MemoryKiB above 4 GiB, which no
// sane configuration reaches and a corrupt record could.
func (p KDFParams) Validate() error {
	switch {
	case p.KDF != kdfArgon2id:
		return fmt.Errorf("kdf params: unsupported kdf %q, want %q", p.KDF, kdfArgon2id)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("kdf params: time %d out of range [1, %d]", p.Time, maxTime)
	case p.MemoryKiB < minMemoryKiB || p.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("kdf params: memory %d KiB out of range [%d, %d]", p.MemoryKiB, minMemoryKiB, maxMemoryKiB)
	case p.Threads < 1:
		return fmt.Errorf("kdf params: threads must be at least 1")
	case len(p.Salt) < saltSize:
		return fmt.Errorf("kdf params: salt of %d bytes, want at least %d", len(p.Salt), saltSize)
	}
	return nil
}

// KEKRecord is what is persisted about a KEK. It holds no secret material:
// Check is a seal of a public constant.
type KEKRecord struct {
	ID      string    // e.g. "kek-1"; never contains ':'
	Backend string    // "passphrase"
	Params  KDFParams // how the KEK is derived from the passphrase
	// Check is nonce ‖ AES-256-GCM(KEK, fixed constant), aad =
	// "sigil-kek-check:" ‖ ID; it lets OpenKEK detect a wrong passphrase
	// before anything changes.
	Check   []byte
	Created time.Time // UTC
}

// KEK is an unlocked key-encryption key. It is safe for concurrent use. It
// formats (with any fmt verb) and logs (slog.LogValuer) as "REDACTED".
type KEK struct {
	id   string
	aead cipher.AEAD // AES-256-GCM; the raw key is zeroed once this exists
	// remote, when set, wraps data keys instead of aead: the KEK lives in a
	// KMS or HSM and never in this process.
	remote RemoteKEK
}

// RemoteKEK is a key-encryption key held outside the process, in a KMS or
// an HSM (ca/keybackend's KMSKEK): it wraps and unwraps data keys there,
// each bound to the Sigil key id it protects, so that a wrapped data key
// copied onto another key id does not unwrap.
type RemoteKEK interface {
	Wrap(ctx context.Context, keyID string, dek []byte) ([]byte, error)
	Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error)
}

// NewRemoteKEK returns a KEK named id whose data keys remote wraps. Seal,
// Open and Rewrap use it like a passphrase KEK, so keys move between the
// two kinds with Rewrap; the envelope format of keys themselves is
// unchanged.
func NewRemoteKEK(id string, remote RemoteKEK) (*KEK, error) {
	if err := validKEKID(id); err != nil {
		return nil, fmt.Errorf("new remote kek: %w", err)
	}
	if remote == nil {
		return nil, fmt.Errorf("new remote kek %s: nil backend", id)
	}
	return &KEK{id: id, remote: remote}, nil
}

// ID returns the KEK's id, the KEKRecord.ID it was made or opened from.
func (k *KEK) ID() string { return k.id }

// The redaction methods have value receivers so that a KEK value, not only a
// *KEK, prints as REDACTED.

// String returns "REDACTED".
func (KEK) String() string { return "REDACTED" }

// GoString returns "REDACTED", for %#v.
func (KEK) GoString() string { return "REDACTED" }

// Format writes "REDACTED" for every verb, so %d or %x cannot reach the
// cipher state either.
func (KEK) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "REDACTED") }

// LogValue implements slog.LogValuer: a KEK logs as "REDACTED".
func (KEK) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// NewKEK derives a KEK from passphrase with params and returns it with the
// record to persist. rand supplies the check value's nonce; now is the
// creation time, stored in UTC. The record keeps its own copy of the salt.
func NewKEK(rand io.Reader, id string, passphrase []byte, params KDFParams, now time.Time) (*KEK, KEKRecord, error) {
	if err := validKEKID(id); err != nil {
		return nil, KEKRecord{}, fmt.Errorf("new kek: %w", err)
	}
	if len(passphrase) == 0 {
		return nil, KEKRecord{}, fmt.Errorf("new kek %s: empty passphrase", id)
	}
	if err := params.Validate(); err != nil {
		return nil, KEKRecord{}, fmt.Errorf("new kek %s: %w", id, err)
	}
	if now.IsZero() {
		return nil, KEKRecord{}, fmt.Errorf("new kek %s: zero creation time", id)
	}
	params.Salt = bytes.Clone(params.Salt)
	k, err := deriveKEK(id, passphrase, params)
	if err != nil {
		return nil, KEKRecord{}, fmt.Errorf("new kek %s: %w", id, err)
	}
	check, err := seal(rand, k.aead, []byte(checkPlaintext), checkAAD(id))
	if err != nil {
		return nil, KEKRecord{}, fmt.Errorf("new kek %s: check value: %w", id, err)
	}
	rec := KEKRecord{
		ID:      id,
		Backend: backendPassphrase,
		Params:  params,
		Check:   check,
		Created: now.UTC(),
	}
	return k, rec, nil
}

// OpenKEK re-derives the KEK from passphrase and rec.Params and verifies
// rec.Check. A passphrase that does not open the check value (or a check value
// that was altered) gives an error wrapping ErrWrongPassphrase, such as "wrong
// passphrase for kek-1"; a malformed record gives another error. Parameters
// are validated before the costly derivation.
func OpenKEK(passphrase []byte, rec KEKRecord) (*KEK, error) {
	if err := validKEKID(rec.ID); err != nil {
		return nil, fmt.Errorf("open kek: %w", err)
	}
	if rec.Backend != backendPassphrase {
		return nil, fmt.Errorf("open kek %s: backend %q is not %q", rec.ID, rec.Backend, backendPassphrase)
	}
	if err := rec.Params.Validate(); err != nil {
		return nil, fmt.Errorf("open kek %s: %w", rec.ID, err)
	}
	if want := gcmNonceSize + len(checkPlaintext) + gcmTagSize; len(rec.Check) != want {
		return nil, fmt.Errorf("open kek %s: check value of %d bytes, want %d", rec.ID, len(rec.Check), want)
	}
	k, err := deriveKEK(rec.ID, passphrase, rec.Params)
	if err != nil {
		return nil, fmt.Errorf("open kek %s: %w", rec.ID, err)
	}
	got, err := open(k.aead, rec.Check, checkAAD(rec.ID))
	if err != nil || string(got) != checkPlaintext {
		return nil, fmt.Errorf("%w for %s", ErrWrongPassphrase, rec.ID)
	}
	return k, nil
}

// deriveKEK runs Argon2id; params must be valid (argon2 panics on zero time
// or threads).
func deriveKEK(id string, passphrase []byte, params KDFParams) (*KEK, error) {
	key := argon2.IDKey(passphrase, params.Salt, params.Time, params.MemoryKiB, params.Threads, aesKeySize)
	defer clear(key)
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &KEK{id: id, aead: aead}, nil
}

// validKEKID rejects ids that would make the DEK associated data ambiguous.
func validKEKID(id string) error {
	if id == "" {
		return errors.New("empty kek id")
	}
	if strings.ContainsRune(id, ':') {
		return fmt.Errorf("kek id %q contains ':'", id)
	}
	return nil
}

func checkAAD(id string) []byte { return []byte(checkAADPrefix + id) }

// The AES-256-GCM helpers shared by KEKs and envelopes.

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// seal returns nonce ‖ AES-GCM(plaintext) with a random 96-bit nonce from rand.
// Random nonces are safe here: each DEK seals one message, and a KEK seals one
// DEK per key and rewrap, far below the 2^32 messages per key that NIST SP
// 800-38D §8.3 allows.
func seal(rand io.Reader, aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, gcmNonceSize, gcmNonceSize+len(plaintext)+gcmTagSize)
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// open reverses seal. Its error says only that authentication failed.
func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < gcmNonceSize+gcmTagSize {
		return nil, errors.New("ciphertext too short")
	}
	pt, err := aead.Open(nil, sealed[:gcmNonceSize], sealed[gcmNonceSize:], aad)
	if err != nil {
		return nil, errors.New("message authentication failed")
	}
	return pt, nil
}
