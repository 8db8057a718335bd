package keybackend

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"testing"
)

// checkSigns signs a fresh message with s and verifies it with s's public key.
func checkSigns(t testing.TB, s crypto.Signer) error {
	t.Helper()
	msg := make([]byte, 64)
	if _, err := rand.Read(msg); err != nil {
		return err
	}
	var digest []byte
	var h crypto.Hash
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve.Params().BitSize == 384 {
			d := sha512.Sum384(msg)
			digest, h = d[:], crypto.SHA384
		} else {
			d := sha256.Sum256(msg)
			digest, h = d[:], crypto.SHA256
		}
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		digest, h = d[:], crypto.SHA256
	default:
		return fmt.Errorf("unexpected public key %T", pub)
	}
	sig, err := s.Sign(rand.Reader, digest, h)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return fmt.Errorf("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, h, digest, sig); err != nil {
			return fmt.Errorf("RSA signature does not verify: %w", err)
		}
	}
	// The signature must not verify for another message.
	digest[0] ^= 1
	if pub, ok := s.Public().(*ecdsa.PublicKey); ok && ecdsa.VerifyASN1(pub, digest, sig) {
		return fmt.Errorf("signature verifies for a changed digest")
	}
	return nil
}

// wantCurve checks the public key's type and size.
func wantKey(t *testing.T, pub crypto.PublicKey, alg string) {
	t.Helper()
	switch alg {
	case "ecdsa-p256", "ecdsa-p384":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("%s: public key is %T", alg, pub)
		}
		want := map[string]int{"ecdsa-p256": 256, "ecdsa-p384": 384}[alg]
		if got := k.Curve.Params().BitSize; got != want {
			t.Fatalf("%s: curve of %d bits", alg, got)
		}
	case "rsa-2048":
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N.BitLen() != 2048 {
			t.Fatalf("%s: public key %T", alg, pub)
		}
	}
}
