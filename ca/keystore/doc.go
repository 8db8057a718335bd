// Package keystore is Sigil's key management core: it generates private keys,
// encrypts them at rest with envelope encryption, and derives the
// key-encryption key (KEK) that protects them (DESIGN.md, Keys).
//
// The cryptographic core (algorithm.go, kek.go, envelope.go) imports nothing
// of ours: only the standard library, go.step.sm/crypto/keyutil (key
// generation) and golang.org/x/crypto/argon2 (passphrase KDF); it never reads
// the clock and takes randomness as an io.Reader named rand, which callers set
// to crypto/rand.Reader. Keystore (keystore.go) adds persistence through store
// and audits every generation, unwrap and re-wrap through ca/audit; [Retire]
// and [Destroy] (lifecycle.go) end a key's life inside a caller's
// transaction, audited too. [Keystore.Export] (export.go) decrypts a key of
// purpose "managed", and only such a key, for delivery in a managed
// bundle, audited in the caller's transaction. There is no package-level mutable state (the one
// package-level variable is the immutable sentinel [ErrWrongPassphrase]).
//
// # Envelope format
//
// Each private key gets its own random 256-bit data key (DEK), used exactly
// once. [Seal] produces a [Sealed]:
//
//	Ciphertext = nonce ‖ AES-256-GCM(DEK, PKCS#8 DER(key), aad = "sigil-key:" ‖ keyID)
//	WrappedDEK = nonce ‖ AES-256-GCM(KEK, DEK,             aad = "sigil-dek:" ‖ keyID ‖ ":" ‖ KEKID)
//
// Nonces are 96 random bits. The associated data binds a ciphertext to its key
// id and a wrapped DEK to both its key id and its KEK, so a row copied onto
// another key id, or a wrapped DEK moved between KEKs, fails authentication
// rather than opening as the wrong key. KEK ids may not contain ':', which
// keeps the DEK associated data unambiguous. Secrets ([SealSecret]) use the
// same envelope with aad "sigil-secret:" ‖ keyID, so neither opens as the
// other; one pair of helpers (sealEnvelope, openEnvelope) seals and opens
// every envelope, and fixed vectors in the tests pin the format.
//
// Rotating the KEK is [Rewrap]: it unwraps the DEK with the old KEK and wraps
// it with the new one, leaving Ciphertext byte-identical; the private key is
// never decrypted and issuance never stops. [Keystore.Rewrap] changes the
// passphrase in one transaction; [Keystore.Rotate] moves every key to a new
// version of the same passphrase's KEK (a fresh salt, current KDF
// parameters) a batch of keys per transaction, and a rotation cut short is
// finished by the next call: until then both versions are open, in the
// process and after [Unlock]. Destroying a key
// (crypto-shredding) is erasing its Sealed record: without the wrapped DEK the
// ciphertext cannot be opened even by a holder of the KEK.
//
// # KEKs
//
// A passphrase KEK is derived with Argon2id (RFC 9106). Its parameters and
// salt are stored in the [KEKRecord] so that they can be raised for new KEKs
// without breaking old ones. The record also holds Check, an AES-256-GCM seal
// of a fixed constant under the KEK, so [OpenKEK] detects a wrong passphrase
// (returning an error wrapping [ErrWrongPassphrase]) before anything is
// decrypted or changed. A KEKRecord holds no secret material.
//
// A KEK may instead live in a KMS or HSM ([NewRemoteKEK] over a
// [RemoteKEK], such as ca/keybackend's AWS KMS key): its WrappedDEK is then
// the KMS's own ciphertext of the data key, bound to the key id by the
// KMS's encryption context, and the data key is wrapped and unwrapped there,
// never by a key in this process. Seal, Open and Rewrap take a context for
// those calls; a passphrase KEK ignores it, and its format is unchanged
// (the fixed vectors pin it), so [Rewrap] moves keys between the two kinds.
// Persisting a remote KEK's record and unlocking a Keystore from one is not
// built yet: [Unlock] and [Prepare] still take a passphrase.
//
// # Secrets
//
// Secret bytes (passphrases, KEKs, DEKs, PKCS#8 encodings) never appear in
// errors or logs: a [KEK] formats and logs as "REDACTED", and errors name key
// and KEK ids only. DEK and PKCS#8 buffers are zeroed after use on a
// best-effort basis (Go may have copied them; the parsed key itself lives on
// in the returned crypto.Signer).
package keystore
