package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
)

// KEKSource opens the KMS KEK uri names, creating one first when uri names
// no key (an awskms URI without key-id or alias), and returns it with its
// canonical URI.
type KEKSource func(ctx context.Context, uri string) (*RemoteKEK, error)

// ToPassphrase is RewrapKEKTo's target for a KEK derived from a passphrase.
const ToPassphrase = "passphrase"

// RewrapKEKTo moves every data key to a new KEK: in the KMS key to names
// (an awskms: URI), or derived from next when to is ToPassphrase. It runs
// online, a batch of keys per transaction, each key's move audited, the
// progress logged; issuance goes on. While the active KEK is derived from a
// passphrase, current must open it (a wrong one is Forbidden and changes
// nothing); a KEK in KMS needs none. An unreachable KMS is Unavailable.
func (a *Authority) RewrapKEKTo(ctx context.Context, actor, to string, current, next []byte) (string, int, error) {
	if !keystore.IsRemoteKEK(a.keys.KEKBackend()) {
		if err := a.keys.CheckPassphrase(current); err != nil {
			if !errors.Is(err, keystore.ErrWrongPassphrase) {
				return "", 0, internal("check passphrase", err)
			}
			a.auditBestEffort(ctx, audit.Event{Time: a.clk.Now(), Actor: actor, Action: audit.ActionKEKRewrapRefused,
				Detail: map[string]string{"reason": "wrong current passphrase", "to": to}})
			return "", 0, errorf(Forbidden, "the current passphrase is wrong")
		}
	}
	var target keystore.KEKTarget
	if to == ToPassphrase {
		if len(next) < 12 {
			return "", 0, errorf(Malformed, "the new passphrase must be at least 12 characters")
		}
		newParams := keystore.DefaultKDFParams
		if a.cfg.FastKDF {
			newParams = keystore.FastKDFParams
		}
		params, err := newParams(rand.Reader)
		if err != nil {
			return "", 0, internal("kdf params", err)
		}
		target = keystore.KEKTarget{Passphrase: next, Params: params}
	} else {
		if a.cfg.KEKs == nil {
			return "", 0, errorf(Unavailable, "this server has no KMS to hold a KEK")
		}
		kek, err := a.cfg.KEKs(ctx, to)
		if errors.Is(err, keybackend.ErrUnavailable) {
			return "", 0, &Error{Kind: Unavailable, Detail: "the KMS cannot be reached", Err: err}
		}
		if err != nil {
			return "", 0, &Error{Kind: Malformed, Detail: fmt.Sprintf("KEK %s: %v", to, err), Err: err}
		}
		target = keystore.KEKTarget{Backend: kek.Backend, URI: kek.URI, Remote: kek.KEK}
	}
	opts := keystore.RotateOptions{AfterBatch: func(done int) {
		a.log.Info("kek rewrap progress", "to", to, "keys", done)
	}}
	id, n, err := a.keys.RewrapTo(ctx, actor, target, opts)
	if errors.Is(err, keybackend.ErrUnavailable) {
		return id, n, &Error{Kind: Unavailable, Detail: fmt.Sprintf("the KMS could not be reached after %d keys; run it again to finish", n), Err: err}
	}
	if err != nil {
		return id, n, internal("rewrap", err)
	}
	a.log.Info("kek rewrapped", "kek", id, "to", to, "keys", n)
	return id, n, nil
}

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
