package keybackend

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
)

// KEK opens the KMS KEK uri names (an awskms URI with a key id or alias);
// backend must be the URI's kind, as the KEK's record names it. The KEK
// must be an enabled symmetric key.
func (k *Keys) KEK(ctx context.Context, backend, uri string) (*KMSKEK, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if string(u.Kind) != backend {
		return nil, fmt.Errorf("kek uri is %s, its record says backend %s", u.Kind, backend)
	}
	if u.Kind != AWSKMS {
		return nil, fmt.Errorf("a KEK in %s is not supported yet (awskms is)", u.Kind)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, err
	}
	return b.KEK(ctx, u)
}

// CreateOrLoadKEK returns the KMS KEK uri names, first creating a
// symmetric key with the alias NAME-<8 random hex digits> when uri names no
// key (an awskms URI without key-id or alias). The returned KEK's URI, with
// its resolved key id, is the one to record.
func (k *Keys) CreateOrLoadKEK(ctx context.Context, uri, name string) (*KMSKEK, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Kind != AWSKMS {
		return nil, fmt.Errorf("a KEK in %s is not supported yet (awskms is)", u.Kind)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, err
	}
	if u.KeyID == "" {
		suffix := make([]byte, 4)
		if _, err := rand.Read(suffix); err != nil {
			return nil, fmt.Errorf("kek alias: %w", err)
		}
		if u, err = b.CreateKEK(ctx, fmt.Sprintf("%s-%x", name, suffix)); err != nil {
			return nil, err
		}
	}
	return b.KEK(ctx, u)
}

// Attest reads, live from its backend, where the key uri names lives and
// whether it can leave, and checks its public key against want (Backend's
// Attest); backend must be the URI's kind.
func (k *Keys) Attest(ctx context.Context, backend, uri string, want crypto.PublicKey) (Attestation, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return Attestation{}, err
	}
	if string(u.Kind) != backend {
		return Attestation{}, fmt.Errorf("key uri is %s, its record says backend %s", u.Kind, backend)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return Attestation{}, err
	}
	return b.Attest(ctx, u, want)
}
