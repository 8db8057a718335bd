package ca

import (
	"context"
	"crypto/rand"
	"errors"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// RotateKEK re-wraps every data key under a new version of the KEK (the
// kek-rotate job), a batch of keys per transaction so that issuance goes
// on; a rotation cut short is finished by the next call. It returns the
// active KEK's id and how many keys this call re-wrapped. Without a held
// passphrase (keystore.EnableRotation) a new version cannot be derived: that
// is Unavailable.
func (a *Authority) RotateKEK(ctx context.Context, actor string) (string, int, error) {
	return a.rotateKEK(ctx, actor, keystore.RotateOptions{})
}

func (a *Authority) rotateKEK(ctx context.Context, actor string, opts keystore.RotateOptions) (string, int, error) {
	newParams := keystore.DefaultKDFParams
	if a.cfg.FastKDF {
		newParams = keystore.FastKDFParams
	}
	params, err := newParams(rand.Reader)
	if err != nil {
		return "", 0, internal("kdf params", err)
	}
	opts.Params = params
	id, n, err := a.keys.Rotate(ctx, actor, opts)
	if errors.Is(err, keystore.ErrRotationDisabled) {
		return id, n, &Error{Kind: Unavailable, Detail: "KEK rotation needs the passphrase, which the server holds only while the kek-rotate job is enabled", Err: err}
	}
	if err != nil {
		return id, n, internal("rotate kek", err)
	}
	return id, n, nil
}
