package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
)

// Sealed is a private key at rest: safe to persist, useless without the KEK
// named by KEKID. Erasing WrappedDEK destroys the key (crypto-shredding).
type Sealed struct {
	KEKID string
	// WrappedDEK is nonce ‖ AES-256-GCM(KEK, DEK), aad = "sigil-dek:" ‖
	// keyID ‖ ":" ‖ KEKID.
	WrappedDEK []byte
	// Ciphertext is nonce ‖ AES-256-GCM(DEK, PKCS#8 DER of the private key),
	// aad = "sigil-key:" ‖ keyID.
	Ciphertext []byte
}

func keyAAD(keyID string) []byte { return []byte("sigil-key:" + keyID) }

func dekAAD(keyID, kekID string) []byte { return []byte("sigil-dek:" + keyID + ":" + kekID) }

// Seal encrypts key under a fresh random data key read from rand, and wraps
// the data key with kek. keyID is bound into both as associated data, so the
// result opens only under the same keyID.
func Seal(ctx context.Context, rand io.Reader, kek *KEK, keyID string, key crypto.Signer) (Sealed, error) {
	if kek == nil {
		return Sealed{}, fmt.Errorf("seal key %q: nil kek", keyID)
	}
	if keyID == "" {
		return Sealed{}, errors.New("seal key: empty key id")
	}
	if key == nil {
		return Sealed{}, fmt.Errorf("seal key %q: nil key", keyID)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// The error names the key type only.
		return Sealed{}, fmt.Errorf("seal key %q: %w", keyID, err)
	}
	defer clear(der)
	s, err := sealEnvelope(ctx, rand, kek, keyID, der, keyAAD(keyID))
	if err != nil {
		return Sealed{}, fmt.Errorf("seal key %q: %w", keyID, err)
	}
	return s, nil
}

// sealEnvelope is the one envelope encryption of keys and secrets: plaintext
// under a fresh random data key read from rand (Ciphertext, with aad), and
// the data key wrapped by kek (WrappedDEK, with dekAAD). Callers check their
// arguments and wrap its errors with what they seal.
func sealEnvelope(ctx context.Context, rand io.Reader, kek *KEK, keyID string, plaintext, aad []byte) (Sealed, error) {
	dek := make([]byte, aesKeySize)
	defer clear(dek)
	if _, err := io.ReadFull(rand, dek); err != nil {
		return Sealed{}, fmt.Errorf("data key: %w", err)
	}
	dekAEAD, err := newGCM(dek)
	if err != nil {
		return Sealed{}, err
	}
	ct, err := seal(rand, dekAEAD, plaintext, aad)
	if err != nil {
		return Sealed{}, err
	}
	wrapped, err := wrapDEK(ctx, rand, kek, keyID, dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("wrap data key: %w", err)
	}
	return Sealed{KEKID: kek.id, WrappedDEK: wrapped, Ciphertext: ct}, nil
}

// openEnvelope reverses sealEnvelope: it checks that s belongs to kek,
// unwraps the data key and decrypts the ciphertext with aad. The caller
// clears the result; errors never include secret bytes.
func openEnvelope(ctx context.Context, kek *KEK, keyID string, s Sealed, aad []byte) ([]byte, error) {
	dek, err := unwrapDEK(ctx, kek, keyID, s)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	dekAEAD, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	pt, err := open(dekAEAD, s.Ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return pt, nil
}

// openKey opens the private key sealed under keyID and returns its PKCS#8
// DER, for the caller to clear, and the parsed key.
func openKey(ctx context.Context, kek *KEK, keyID string, s Sealed) ([]byte, any, error) {
	der, err := openEnvelope(ctx, kek, keyID, s, keyAAD(keyID))
	if err != nil {
		return nil, nil, err
	}
	// The parser's error is dropped: it could describe the plaintext.
	// Authenticated plaintext that does not parse means a sealing bug.
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		clear(der)
		return nil, nil, errors.New("decrypted key is not valid PKCS#8")
	}
	return der, priv, nil
}

// Open decrypts the private key sealed under keyID. It fails if s was sealed
// under another KEK id, if the wrapped data key or ciphertext was altered, or
// if s belongs to a different key id. Errors name the key and KEK ids, never
// secret bytes.
func Open(ctx context.Context, kek *KEK, keyID string, s Sealed) (crypto.Signer, error) {
	der, priv, err := openKey(ctx, kek, keyID, s)
	if err != nil {
		return nil, fmt.Errorf("open key %q: %w", keyID, err)
	}
	clear(der)
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("open key %q: %T is not a signer", keyID, priv)
	}
	return signer, nil
}

// Rewrap unwraps the data key of s with old and wraps it with new, reading a
// fresh nonce from rand. The result names new's id; its Ciphertext is a copy,
// byte-identical to s.Ciphertext. The private key is never decrypted.
func Rewrap(ctx context.Context, rand io.Reader, old, new *KEK, keyID string, s Sealed) (Sealed, error) {
	if new == nil {
		return Sealed{}, fmt.Errorf("rewrap key %q: nil new kek", keyID)
	}
	dek, err := unwrapDEK(ctx, old, keyID, s)
	if err != nil {
		return Sealed{}, fmt.Errorf("rewrap key %q: %w", keyID, err)
	}
	defer clear(dek)
	wrapped, err := wrapDEK(ctx, rand, new, keyID, dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("rewrap key %q: wrap data key: %w", keyID, err)
	}
	return Sealed{KEKID: new.id, WrappedDEK: wrapped, Ciphertext: bytes.Clone(s.Ciphertext)}, nil
}

// unwrapDEK checks that s belongs to kek and returns its data key; the caller
// zeroes it.
func unwrapDEK(ctx context.Context, kek *KEK, keyID string, s Sealed) ([]byte, error) {
	switch {
	case kek == nil:
		return nil, errors.New("nil kek")
	case keyID == "":
		return nil, errors.New("empty key id")
	case s.KEKID != kek.id:
		return nil, fmt.Errorf("sealed under kek %q, not %q", s.KEKID, kek.id)
	}
	var dek []byte
	var err error
	if kek.remote != nil {
		dek, err = kek.remote.Unwrap(ctx, keyID, s.WrappedDEK)
	} else {
		dek, err = open(kek.aead, s.WrappedDEK, dekAAD(keyID, kek.id))
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with %s: %w", kek.id, err)
	}
	if len(dek) != aesKeySize {
		clear(dek)
		return nil, fmt.Errorf("unwrap data key with %s: data key of %d bytes", kek.id, len(dek))
	}
	return dek, nil
}

// wrapDEK wraps dek under kek: AES-256-GCM with a nonce from rand and the
// dekAAD for a passphrase KEK, or the KMS's own wrapping (bound to keyID)
// for a remote one.
func wrapDEK(ctx context.Context, rand io.Reader, kek *KEK, keyID string, dek []byte) ([]byte, error) {
	if kek.remote != nil {
		return kek.remote.Wrap(ctx, keyID, dek)
	}
	return seal(rand, kek.aead, dek, dekAAD(keyID, kek.id))
}
