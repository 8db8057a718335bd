package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// checkpointDomain prefixes every signed checkpoint so that a checkpoint
// signature can never be mistaken for a signature over anything else the same
// key signs.
const checkpointDomain = "sigil-audit-checkpoint-v1\n"

// Checkpoint is a signed statement of the chain head: the log held Seq events
// and event Seq had Hash. Seq 0 with GenesisHash() is the empty chain.
type Checkpoint struct {
	Seq       int64
	Hash      []byte
	Time      time.Time
	KeyID     string
	Signature []byte
}

// SignedBytes returns the message a checkpoint signature covers: the domain
// string "sigil-audit-checkpoint-v1\n" followed by Seq (8 bytes big-endian),
// Hash (uvarint length ‖ bytes), Time in UTC (8-byte big-endian Unix seconds,
// 4-byte big-endian nanoseconds) and KeyID (uvarint length ‖ bytes).
// It is deterministic and covers every field except Signature.
func (c Checkpoint) SignedBytes() []byte {
	b := make([]byte, 0, len(checkpointDomain)+8+binary.MaxVarintLen64+len(c.Hash)+12+binary.MaxVarintLen64+len(c.KeyID))
	b = append(b, checkpointDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = binary.AppendUvarint(b, uint64(len(c.Hash)))
	b = append(b, c.Hash...)
	t := c.Time.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = appendString(b, c.KeyID)
	return b
}

// SignCheckpoint signs head with signer and returns the checkpoint, stamped
// with now in UTC. Ed25519 keys sign the SignedBytes message itself
// (crypto.Hash(0)); ECDSA and RSA keys sign its SHA-256 digest (RSA with the
// signer's default for crypto.SHA256, PKCS #1 v1.5 for *rsa.PrivateKey).
// rand must be crypto/rand.Reader in production. The signature is verified
// against signer.Public() before it is returned, so a misbehaving signer (an
// HSM or KMS) yields an error rather than a checkpoint that will not verify.
// keyID must not be empty: verifiers find the public key by it.
func SignCheckpoint(rand io.Reader, signer crypto.Signer, keyID string, head Head, now time.Time) (Checkpoint, error) {
	if signer == nil {
		return Checkpoint{}, errors.New("sign checkpoint: nil signer")
	}
	if keyID == "" {
		return Checkpoint{}, errors.New("sign checkpoint: empty key id")
	}
	if head.Seq < 0 {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: negative seq %d", head.Seq)
	}
	hash := head.Hash
	if head.Seq == 0 && len(hash) == 0 {
		hash = GenesisHash()
	}
	if len(hash) != HashSize {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: head hash is %d bytes, want %d", len(hash), HashSize)
	}
	c := Checkpoint{
		Seq:   head.Seq,
		Hash:  slices.Clone(hash),
		Time:  now.UTC().Round(0),
		KeyID: keyID,
	}
	sig, err := signMessage(rand, signer, c.SignedBytes())
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	c.Signature = sig
	if err := VerifyCheckpoint(signer.Public(), c); err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: signer produced an invalid signature: %w", err)
	}
	return c, nil
}

// VerifyCheckpoint reports whether c.Signature is a valid signature by pub
// over c.SignedBytes(), and whether c is well formed (Seq not negative, Hash
// 32 bytes). It does not check that c matches any chain; Verifier does that.
// pub may be an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey
// (PKCS #1 v1.5 with SHA-256).
func VerifyCheckpoint(pub crypto.PublicKey, c Checkpoint) error {
	if c.Seq < 0 {
		return fmt.Errorf("verify checkpoint: negative seq %d", c.Seq)
	}
	if len(c.Hash) != HashSize {
		return fmt.Errorf("verify checkpoint: hash is %d bytes, want %d", len(c.Hash), HashSize)
	}
	if err := verifyMessage(pub, c.SignedBytes(), c.Signature); err != nil {
		return fmt.Errorf("verify checkpoint: %w", err)
	}
	return nil
}

// signMessage signs msg as checkpoints and tree heads are signed: Ed25519
// over msg itself (crypto.Hash(0)), ECDSA and RSA over its SHA-256 digest.
func signMessage(rand io.Reader, signer crypto.Signer, msg []byte) ([]byte, error) {
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey, *ed25519.PublicKey:
		return signer.Sign(rand, msg, crypto.Hash(0))
	case *ecdsa.PublicKey, *rsa.PublicKey:
		digest := sha256.Sum256(msg)
		return signer.Sign(rand, digest[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
}

// verifyMessage checks a signMessage signature.
func verifyMessage(pub crypto.PublicKey, msg, sig []byte) error {
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig)
	case *ed25519.PublicKey:
		ok = k != nil && len(*k) == ed25519.PublicKeySize && ed25519.Verify(*k, msg, sig)
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(msg)
		ok = k != nil && k.Curve != nil && ecdsa.VerifyASN1(k, digest[:], sig)
	case *rsa.PublicKey:
		if k == nil {
			break
		}
		digest := sha256.Sum256(msg)
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	if !ok {
		return errors.New("invalid signature")
	}
	return nil
}
