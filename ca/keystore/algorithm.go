package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
)

// Algorithm names a key type, as stored in the key inventory and accepted in
// configuration.
type Algorithm string

// The algorithms Sigil generates. ECDSAP256 is the default.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
	Ed25519   Algorithm = "ed25519"
)

// keySpec is the keyutil.GenerateSigner arguments for an Algorithm.
type keySpec struct {
	kty, crv string
	size     int
}

// spec returns the generation parameters of a; ok is false if Sigil does not
// generate a. A switch rather than a map keeps the package free of
// package-level variables.
func (a Algorithm) spec() (s keySpec, ok bool) {
	switch a {
	case ECDSAP256:
		return keySpec{kty: "EC", crv: "P-256"}, true
	case ECDSAP384:
		return keySpec{kty: "EC", crv: "P-384"}, true
	case RSA2048:
		return keySpec{kty: "RSA", size: 2048}, true
	case RSA3072:
		return keySpec{kty: "RSA", size: 3072}, true
	case RSA4096:
		return keySpec{kty: "RSA", size: 4096}, true
	case Ed25519:
		return keySpec{kty: "OKP", crv: "Ed25519"}, true
	}
	return keySpec{}, false
}

// Algorithms returns every algorithm Sigil generates, the default
// (ECDSAP256) first. The slice is new on each call.
func Algorithms() []Algorithm {
	return []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}
}

// ParseAlgorithm returns the Algorithm named by s, compared case-insensitively.
// For any other name the error lists the valid ones.
func ParseAlgorithm(s string) (Algorithm, error) {
	algs := Algorithms()
	names := make([]string, len(algs))
	for i, a := range algs {
		if strings.EqualFold(s, string(a)) {
			return a, nil
		}
		names[i] = string(a)
	}
	return "", fmt.Errorf("unknown key algorithm %q (valid: %s)", s, strings.Join(names, ", "))
}

// Generate creates a new private key of algorithm alg using
// go.step.sm/crypto/keyutil, which draws on crypto/rand. It returns
// *ecdsa.PrivateKey, *rsa.PrivateKey or ed25519.PrivateKey.
func Generate(alg Algorithm) (crypto.Signer, error) {
	s, ok := alg.spec()
	if !ok {
		_, err := ParseAlgorithm(string(alg))
		return nil, fmt.Errorf("generate key: %w", err)
	}
	signer, err := keyutil.GenerateSigner(s.kty, s.crv, s.size)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return signer, nil
}

// AlgorithmOf returns the algorithm of a public key. Keys Sigil does not
// generate but can still use are named in the same scheme: an RSA key of any
// size is "rsa-<bits>" (such as "rsa-2304") and an ECDSA P-521 key is
// "ecdsa-p521"; ParseAlgorithm and Generate do not accept those names. Other
// key types and curves are an error.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", fmt.Errorf("key algorithm: nil ECDSA key")
		}
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		case elliptic.P521():
			return "ecdsa-p521", nil
		}
		return "", fmt.Errorf("key algorithm: unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", fmt.Errorf("key algorithm: nil RSA key")
		}
		return Algorithm(fmt.Sprintf("rsa-%d", k.N.BitLen())), nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("key algorithm: Ed25519 key of %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return Ed25519, nil
	}
	return "", fmt.Errorf("key algorithm: unsupported public key type %T", pub)
}

// RSABits returns the modulus size in bits of an RSA public key, or 0 if pub
// is not an *rsa.PublicKey.
func RSABits(pub crypto.PublicKey) int {
	k, ok := pub.(*rsa.PublicKey)
	if !ok || k == nil || k.N == nil {
		return 0
	}
	return k.N.BitLen()
}
