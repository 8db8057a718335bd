// Package keybackend keeps signing keys and key-encryption keys where the
// private half never leaves: a PKCS#11 token (an HSM; SoftHSM 2 in tests) or
// AWS KMS (local-kms in tests). It is built on go.step.sm/crypto/kms: the
// apiv1.KeyManager of the pkcs11 and awskms backends creates keys, finds them
// and gives their crypto.Signer; this package adds what Sigil needs around
// that: strict key URIs that never carry a PIN or credential (uri.go),
// attestation of where a key lives checked live against the backend,
// destruction (C_DestroyObject; ScheduleKeyDeletion with its pending window),
// and data-key wrapping by a KMS key bound to Sigil's key id (kek.go).
//
// The pkcs11 backend needs cgo. A binary built without cgo (or with the
// nopkcs11 tag) still parses pkcs11 URIs, but opening one returns
// ErrPKCS11NotBuilt, which says so.
//
// Google Cloud KMS and Azure Key Vault URIs are parsed and checked only: no
// server for them runs here, so opening one returns an error saying that
// backend is not wired yet.
package keybackend
