//go:build !cgo || nopkcs11

package keybackend

import "crypto"

const pkcs11Built = false

func p11Unreachable(error) bool { return false }

// p11Context is empty without cgo: openPKCS11 refuses before using it.
type p11Context struct{}

func openP11(URI, []byte) (*p11Context, error)      { return nil, ErrPKCS11NotBuilt }
func (*p11Context) close() error                    { return nil }
func (*p11Context) keyExists(URI) (bool, error)     { return false, ErrPKCS11NotBuilt }
func (*p11Context) labelInUse(string) (bool, error) { return false, ErrPKCS11NotBuilt }
func (*p11Context) destroy(URI) error               { return ErrPKCS11NotBuilt }
func (*p11Context) attest(URI) (Attestation, crypto.PublicKey, error) {
	return Attestation{}, nil, ErrPKCS11NotBuilt
}
