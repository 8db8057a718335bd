package audit

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// logLeafVersion is the first byte of every log leaf. A new leaf layout gets
// a new version; old leaves keep hashing as they did.
const logLeafVersion = 0x01

// logLeafHeader is the fixed part of a version 1 leaf: version, seconds,
// nanoseconds and the DER length.
const logLeafHeader = 1 + 8 + 4 + 4

// maxLeafDER bounds the certificate a leaf may carry; a 4-byte length could
// say 4 GiB, and a parser of untrusted leaves must not believe it.
const maxLeafDER = 1 << 20

// treeHeadDomain prefixes every signed tree head, as checkpointDomain does
// for checkpoints, so that the audit key's two kinds of statement can never
// be confused with each other or with anything else it signs.
const treeHeadDomain = "sigil-tree-head-v1\n"

// LogLeaf returns the transparency log entry of a certificate issued at
// issued with DER der: what the log commits to is "this certificate, issued
// then". Layout, version 1:
//
//	0x01
//	issued seconds      8 bytes big-endian, seconds since the Unix epoch (UTC)
//	issued nanoseconds  4 bytes big-endian, 0..999999999
//	len(der)            4 bytes big-endian
//	der
//
// Time is split as in Canonical so every instant encodes. The encoding is
// injective: the length prefix fixes where the DER ends and nothing follows.
func LogLeaf(issued time.Time, der []byte) []byte {
	b := make([]byte, 0, logLeafHeader+len(der))
	b = append(b, logLeafVersion)
	t := issued.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(der)))
	return append(b, der...)
}

// ParseLogLeaf decodes a LogLeaf encoding. It refuses any other version, a
// nanosecond field of a second or more, a length that does not match the rest
// of leaf exactly, and a certificate over 1 MiB; the DER is returned as a
// sub-slice of leaf, not parsed.
func ParseLogLeaf(leaf []byte) (issued time.Time, der []byte, err error) {
	if len(leaf) < logLeafHeader {
		return time.Time{}, nil, fmt.Errorf("parse log leaf: %d bytes, shorter than the %d-byte header", len(leaf), logLeafHeader)
	}
	if leaf[0] != logLeafVersion {
		return time.Time{}, nil, fmt.Errorf("parse log leaf: unknown version %d", leaf[0])
	}
	secs := int64(binary.BigEndian.Uint64(leaf[1:9]))
	nsec := binary.BigEndian.Uint32(leaf[9:13])
	if nsec >= 1e9 {
		return time.Time{}, nil, fmt.Errorf("parse log leaf: nanoseconds %d out of range", nsec)
	}
	n := binary.BigEndian.Uint32(leaf[13:17])
	if n > maxLeafDER {
		return time.Time{}, nil, fmt.Errorf("parse log leaf: certificate of %d bytes exceeds %d", n, maxLeafDER)
	}
	if uint64(len(leaf)-logLeafHeader) != uint64(n) {
		return time.Time{}, nil, fmt.Errorf("parse log leaf: length says %d certificate bytes, %d follow", n, len(leaf)-logLeafHeader)
	}
	return time.Unix(secs, int64(nsec)).UTC(), leaf[logLeafHeader:], nil
}

// LeafHash returns the RFC 9162 §2.1.1 hash of a log leaf:
// SHA-256(0x00 ‖ leaf).
func LeafHash(leaf []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0x00})
	h.Write(leaf)
	return h.Sum(nil)
}

// NodeHash returns the RFC 9162 §2.1.1 hash of an interior node:
// SHA-256(0x01 ‖ left ‖ right).
func NodeHash(left, right []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0x01})
	h.Write(left)
	h.Write(right)
	return h.Sum(nil)
}

// EmptyRoot returns the root hash of the empty tree, SHA-256 of no bytes
// (RFC 9162 §2.1.1), in a fresh slice.
func EmptyRoot() []byte {
	s := sha256.Sum256(nil)
	return s[:]
}

// TreeHead is a signed statement of the transparency log: it held Size
// leaves and their Merkle tree had RootHash at Time. KeyID names the audit
// key that signed it, the key that signs checkpoints.
type TreeHead struct {
	Size      uint64
	RootHash  []byte
	Time      time.Time
	KeyID     string
	Signature []byte
}

// SignedBytes returns the message a tree head signature covers: the domain
// string "sigil-tree-head-v1\n", Size (8 bytes big-endian), RootHash (uvarint
// length ‖ bytes), Time in UTC (8-byte big-endian Unix seconds, 4-byte
// big-endian nanoseconds) and KeyID (uvarint length ‖ bytes).
func (h TreeHead) SignedBytes() []byte {
	b := make([]byte, 0, len(treeHeadDomain)+8+binary.MaxVarintLen64+len(h.RootHash)+12+binary.MaxVarintLen64+len(h.KeyID))
	b = append(b, treeHeadDomain...)
	b = binary.BigEndian.AppendUint64(b, h.Size)
	b = binary.AppendUvarint(b, uint64(len(h.RootHash)))
	b = append(b, h.RootHash...)
	t := h.Time.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = appendString(b, h.KeyID)
	return b
}

// SignTreeHead signs (size, root) with signer as SignCheckpoint signs a
// checkpoint (same key types and digests, another domain string), stamped
// with now in UTC, and verifies the signature before returning it.
func SignTreeHead(rand io.Reader, signer crypto.Signer, keyID string, size uint64, root []byte, now time.Time) (TreeHead, error) {
	if signer == nil {
		return TreeHead{}, errors.New("sign tree head: nil signer")
	}
	if keyID == "" {
		return TreeHead{}, errors.New("sign tree head: empty key id")
	}
	if len(root) != HashSize {
		return TreeHead{}, fmt.Errorf("sign tree head: root hash is %d bytes, want %d", len(root), HashSize)
	}
	h := TreeHead{Size: size, RootHash: slices.Clone(root), Time: now.UTC().Round(0), KeyID: keyID}
	sig, err := signMessage(rand, signer, h.SignedBytes())
	if err != nil {
		return TreeHead{}, fmt.Errorf("sign tree head: %w", err)
	}
	h.Signature = sig
	if err := VerifyTreeHead(signer.Public(), h); err != nil {
		return TreeHead{}, fmt.Errorf("sign tree head: signer produced an invalid signature: %w", err)
	}
	return h, nil
}

// VerifyTreeHead reports whether h.Signature is pub's signature over
// h.SignedBytes() and h is well formed (RootHash 32 bytes). It says nothing
// about whether any log matches h.
func VerifyTreeHead(pub crypto.PublicKey, h TreeHead) error {
	if len(h.RootHash) != HashSize {
		return fmt.Errorf("verify tree head: root hash is %d bytes, want %d", len(h.RootHash), HashSize)
	}
	if err := verifyMessage(pub, h.SignedBytes(), h.Signature); err != nil {
		return fmt.Errorf("verify tree head: %w", err)
	}
	return nil
}
