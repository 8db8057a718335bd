package acme

import "crypto/rsa"

// rsaExponent is the only RSA public exponent accepted for account keys,
// as for certificate keys in ca: other exponents are legal but rare, and a
// small one invites the attacks that padding mistakes make possible.
const rsaExponent = 65537

// rsaKeyProblem refuses an RSA account key whose exponent is not 65537.
func rsaKeyProblem(key *rsa.PublicKey) *Problem {
	if key.E != rsaExponent {
		return BadPublicKey("RSA public exponent must be 65537")
	}
	return nil
}
