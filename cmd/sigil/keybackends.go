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

// backendKey creates or finds the key uri names for purpose (flag names the
// option for errors). An empty uri means the key is generated in process.
func backendKey(ctx context.Context, keys *keybackend.Keys, flag, uri, purpose string, alg keystore.Algorithm) (*ca.BackendKey, error) {
	if uri == "" {
		return nil, nil
	}
	u, err := keybackend.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if u.Kind == keybackend.Soft {
		return nil, nil
	}
	k, err := keys.CreateOrLoad(ctx, uri, "sigil-"+purpose, string(alg))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return &ca.BackendKey{Backend: string(k.URI.Kind), URI: k.URI.String(), Signer: k.Signer}, nil
}
