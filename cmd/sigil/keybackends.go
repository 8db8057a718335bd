package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
)

// hsmPINEnv names the variable holding the PKCS#11 user PIN when a key URI
// has no pin-source; a PIN is never a flag value nor in sigil.yaml.
const hsmPINEnv = "SIGIL_HSM_PIN"

// newKeyBackends opens HSM and KMS keys on demand, with the PIN from
// SIGIL_HSM_PIN if set (AWS credentials come from the SDK's own chain).
func newKeyBackends() *keybackend.Keys {
	pin := []byte(os.Getenv(hsmPINEnv))
	defer clear(pin)
	return keybackend.NewKeys(keybackend.Config{PIN: pin})
}

// backendKey creates or finds the key uri names for purpose ("root" or
// "intermediate", which also names the flags). backend, if given, must be
// uri's scheme; an empty uri (or softkms) means the key is generated in
// process.
func backendKey(ctx context.Context, keys *keybackend.Keys, purpose, backend, uri string, alg keystore.Algorithm) (*ca.BackendKey, error) {
	flag := "--" + purpose + "-key-uri"
	u, err := keybackend.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	switch keybackend.Kind(backend) {
	case "", u.Kind:
	case keybackend.PKCS11, keybackend.AWSKMS, keybackend.Soft:
		if uri == "" {
			return nil, fmt.Errorf("--%s-key-backend %s needs %s", purpose, backend, flag)
		}
		return nil, fmt.Errorf("--%s-key-backend %s does not match %s, a %s URI", purpose, backend, flag, u.Kind)
	default:
		return nil, fmt.Errorf("--%s-key-backend %q: want softkms, pkcs11 or awskms", purpose, backend)
	}
	if u.Kind == keybackend.Soft {
		return nil, nil
	}
	if u.Kind != keybackend.PKCS11 && u.Kind != keybackend.AWSKMS {
		return nil, fmt.Errorf("%s: %s keys are not supported yet (pkcs11 and awskms are)", flag, u.Kind)
	}
	k, err := keys.CreateOrLoad(ctx, uri, "sigil-"+purpose, string(alg))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return &ca.BackendKey{Backend: string(k.URI.Kind), URI: k.URI.String(), Signer: k.Signer}, nil
}

// kekOpener opens a KEK held in KMS through keys, for keystore.UnlockWith.
func kekOpener(keys *keybackend.Keys) keystore.KEKOpener {
	return func(ctx context.Context, backend, uri string) (keystore.RemoteKEK, error) {
		return keys.KEK(ctx, backend, uri)
	}
}

// remoteKEK creates or finds the KMS KEK uri names (sigil init --kek-uri,
// sigil keys rewrap --to); nil when uri is empty (the KEK is then derived
// from a passphrase).
func remoteKEK(ctx context.Context, keys *keybackend.Keys, uri string) (*ca.RemoteKEK, error) {
	if uri == "" {
		return nil, nil
	}
	u, err := keybackend.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("kek uri: %w", err)
	}
	if u.Kind != keybackend.AWSKMS {
		return nil, fmt.Errorf("kek uri: a KEK in %s is not supported yet (awskms is)", u.Kind)
	}
	kek, err := keys.CreateOrLoadKEK(ctx, uri, "sigil-kek")
	if err != nil {
		return nil, fmt.Errorf("kek uri: %w", err)
	}
	return &ca.RemoteKEK{Backend: string(keybackend.AWSKMS), URI: kek.URI().String(), KEK: kek}, nil
}
