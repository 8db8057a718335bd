package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"math/big"
)

// Zero overwrites the private values of a key returned by Generate or Open
// (ECDSA, RSA, Ed25519) so that a key unwrapped for one operation, such as
// the root's, does not linger in memory once dropped; an ECDSA or RSA key
// refuses to sign afterwards. Like the zeroing of data keys, it is best
// effort: the runtime may have copied the values, and crypto/ecdsa and
// crypto/rsa keep derived forms of a key they have used, unreachable from
// here, until it is garbage collected. Other key types are left alone.
func Zero(key crypto.Signer) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		//lint:ignore SA1019 D is the scalar's only copy in the key, and making the key invalid is the point
		zeroInt(k.D)
	case *rsa.PrivateKey:
		zeroInt(k.D)
		for _, p := range k.Primes {
			zeroInt(p)
		}
		zeroInt(k.Precomputed.Dp)
		zeroInt(k.Precomputed.Dq)
		zeroInt(k.Precomputed.Qinv)
		// Also drops the reference to crypto/rsa's own form of the key, with
		// which it would otherwise go on signing.
		k.Precomputed = rsa.PrecomputedValues{}
	case ed25519.PrivateKey:
		clear(k)
	case *ed25519.PrivateKey:
		if k != nil {
			clear(*k)
		}
	}
}

// zeroInt clears the words behind n, then leaves it a well-formed zero.
func zeroInt(n *big.Int) {
	if n == nil {
		return
	}
	clear(n.Bits())
	n.SetInt64(0)
}
