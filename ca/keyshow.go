package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// KeyAttester reads a backend key's attestation live (ca/keybackend.Keys).
type KeyAttester interface {
	Attest(ctx context.Context, backend, uri string, want crypto.PublicKey) (keybackend.Attestation, error)
}

// KeyDetail is one key's record with where it lives: for a key in an HSM
// or KMS, what the backend said just now.
type KeyDetail struct {
	KeyInfo
	// PublicKeySHA256 is the hex SHA-256 of the recorded public key (DER
	// SubjectPublicKeyInfo); for a backend key, Attested says the backend
	// holds the same one now.
	PublicKeySHA256 string `json:"public_key_sha256"`
	// NonExtractable: the backend never exports the private key
	// (CKA_EXTRACTABLE=false and CKA_SENSITIVE=true; KMS keys by
	// construction). False for keys wrapped in the database.
	NonExtractable   bool `json:"non_extractable"`
	NeverExtractable bool `json:"never_extractable"`
	// Attested is true when the backend was asked just now and holds the
	// recorded public key; AttestationError says why not otherwise.
	Attested         bool   `json:"attested"`
	AttestationError string `json:"attestation_error,omitempty"`
	// Where is a one-line description of where the key lives.
	Where string `json:"where"`
}

// ShowKey returns one key's record and, for a key in an HSM or KMS, its
// live attestation. A backend that cannot be reached or holds another
// public key is reported in AttestationError, not as a failure: the record
// is still shown.
func (a *Authority) ShowKey(ctx context.Context, id string) (KeyDetail, error) {
	r, err := a.st.Key(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return KeyDetail{}, errorf(NotFound, "no key %s", id)
	}
	if err != nil {
		return KeyDetail{}, internal("load key", err)
	}
	d := KeyDetail{KeyInfo: KeyInfo{ID: r.ID, Purpose: r.Purpose, Algorithm: r.Algorithm, Backend: r.Backend,
		URI: keystore.BackendURI(r), State: r.State, KEK: r.KEKID, Created: r.Created, Rotated: r.Rotated, LastUsed: r.LastUsed}}
	pub, err := x509.ParsePKIXPublicKey(r.PublicKey)
	if err != nil {
		return KeyDetail{}, internal("parse recorded public key", err)
	}
	if d.PublicKeySHA256, err = keybackend.Fingerprint(pub); err != nil {
		return KeyDetail{}, internal("fingerprint", err)
	}
	switch {
	case r.Backend == keystore.BackendPassphrase:
		d.Where = fmt.Sprintf("in the database, envelope-encrypted under KEK %s", r.KEKID)
	case r.State == store.KeyDestroyed:
		d.Where = fmt.Sprintf("destroyed in %s", r.Backend)
	case a.cfg.Attester == nil:
		d.Where = "in " + r.Backend
		d.AttestationError = "this server has no key backends to ask"
	default:
		d.Where = "in " + r.Backend
		att, err := a.cfg.Attester.Attest(ctx, r.Backend, d.URI, pub)
		if err != nil {
			d.AttestationError = err.Error()
			break
		}
		d.Attested, d.NonExtractable, d.NeverExtractable = true, att.NonExtractable, att.NeverExtractable
		if att.Detail != "" {
			d.Where += " (" + att.Detail + ")"
		}
	}
	return d, nil
}
