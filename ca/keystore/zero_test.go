package keystore

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

func TestZero(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{ECDSAP256, ECDSAP384, RSA2048, Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			// Used once, as the root key is before it is dropped.
			digest, opts := make([]byte, 32), crypto.Hash(crypto.SHA256)
			if alg == Ed25519 {
				opts = crypto.Hash(0)
			}
			if _, err := key.Sign(rand.Reader, digest, opts); err != nil {
				t.Fatalf("sign before Zero: %v", err)
			}
			Zero(key)
			switch k := key.(type) {
			case ed25519.PrivateKey:
				if !bytes.Equal(k, make([]byte, len(k))) {
					t.Errorf("key bytes remain after Zero")
				}
			case *rsa.PrivateKey:
				if k.D.Sign() != 0 || k.Primes[0].Sign() != 0 || k.Primes[1].Sign() != 0 {
					t.Errorf("private values remain after Zero")
				}
			}
			if alg != Ed25519 {
				if _, err := key.Sign(rand.Reader, digest, opts); err == nil {
					t.Errorf("the key still signs after Zero")
				}
			}
		})
	}
	Zero(nil) // no key: nothing to do
}
