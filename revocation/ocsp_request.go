package revocation

import (
	"crypto"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-ca/sigil/ca"
)

// DER contents of the OIDs the parser recognizes: the CertID hash
// algorithms SHA-1 (RFC 5019 §2.1.1 requires it of clients) and SHA-256
// (RFC 6960 §4.1.1 allows any), and id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
const (
	derSHA1   = "\x2b\x0e\x03\x02\x1a"
	derSHA256 = "\x60\x86\x48\x01\x65\x03\x04\x02\x01"
	derNonce  = "\x2b\x06\x01\x05\x05\x07\x30\x01\x02"
)

// hashIndex numbers the CertID hash algorithms; responses are pre-signed
// once per algorithm because a response's CertID must match the request's.
type hashIndex uint8

const (
	hashSHA1 hashIndex = iota
	hashSHA256
	numHashes
)

func (h hashIndex) crypto() crypto.Hash {
	if h == hashSHA256 {
		return crypto.SHA256
	}
	return crypto.SHA1
}

func (h hashIndex) String() string {
	if h == hashSHA256 {
		return "sha256"
	}
	return "sha1"
}

func hashByName(s string) (hashIndex, bool) {
	switch s {
	case "sha1":
		return hashSHA1, true
	case "sha256":
		return hashSHA256, true
	}
	return 0, false
}

var errMalformed = errors.New("malformed OCSP request")

// ocspRequest is the one CertID of an RFC 6960 OCSPRequest, and its nonce.
// Its slices alias the request bytes.
type ocspRequest struct {
	hash     hashIndex
	nameHash []byte
	keyHash  []byte
	serial   []byte // big-endian magnitude, no leading zeros
	// nonce is the extnValue of the id-pkix-ocsp-nonce request extension
	// (RFC 6960 §4.4.1) if hasNonce: the DER Nonce OCTET STRING, as it is
	// echoed. Its length is judged where it is used (validNonce).
	nonce    []byte
	hasNonce bool
}

// parseOCSPRequest decodes der (RFC 6960 §4.1.1) without reflection or
// allocation beyond the result. It refuses, as malformed: trailing bytes, a
// version other than v1(0), no or more than one Request (RFC 5019 §2.1.1
// allows exactly one), a hash algorithm other than SHA-1 or SHA-256, hashes
// of the wrong length, non-positive serials, request extensions that are
// not Extension SEQUENCEs (RFC 5280 §4.1) and a second nonce. The optional
// signature is not checked: the responder answers anyone (RFC 5019 §2.1.2).
func parseOCSPRequest(der []byte) (ocspRequest, error) {
	var req ocspRequest
	in := cryptobyte.String(der)
	var outer, tbs cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !in.Empty() {
		return req, errMalformed
	}
	if !outer.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return req, errMalformed
	}
	// optionalSignature [0] EXPLICIT is allowed and ignored; nothing else.
	if !outer.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !outer.Empty() {
		return req, errMalformed
	}
	var version cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return req, errMalformed
	}
	if hasVersion {
		var v int64
		if !version.ReadASN1Integer(&v) || !version.Empty() || v != 0 {
			return req, errMalformed
		}
	}
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) { // requestorName
		return req, errMalformed
	}
	var list, one cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) || !list.ReadASN1(&one, cbasn1.SEQUENCE) || !list.Empty() {
		return req, errMalformed
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, cbasn1.Tag(2).Constructed().ContextSpecific()) || !tbs.Empty() {
		return req, errMalformed
	}
	if hasExts {
		var seq cryptobyte.String
		if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
			return req, errMalformed
		}
		for !seq.Empty() {
			// Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
			var ext, oid, value cryptobyte.String
			var critical bool
			if !seq.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
				(ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical)) ||
				!ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
				return req, errMalformed
			}
			if oidEqual(oid, derNonce) {
				if req.hasNonce {
					return req, errMalformed
				}
				req.nonce, req.hasNonce = value, true
			}
		}
	}
	var certID, alg, oidBytes cryptobyte.String
	if !one.ReadASN1(&certID, cbasn1.SEQUENCE) {
		return req, errMalformed
	}
	// singleRequestExtensions [0] EXPLICIT OPTIONAL: none is understood.
	if !one.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !one.Empty() {
		return req, errMalformed
	}
	if !certID.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oidBytes, cbasn1.OBJECT_IDENTIFIER) {
		return req, errMalformed
	}
	// Parameters: absent or NULL (RFC 5754 §2 allows both).
	if !alg.Empty() {
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !alg.Empty() {
			return req, errMalformed
		}
	}
	want := 0
	switch {
	case oidEqual(oidBytes, derSHA1):
		req.hash, want = hashSHA1, 20
	case oidEqual(oidBytes, derSHA256):
		req.hash, want = hashSHA256, 32
	default:
		return req, errMalformed
	}
	var nameHash, keyHash, serial cryptobyte.String
	if !certID.ReadASN1(&nameHash, cbasn1.OCTET_STRING) || !certID.ReadASN1(&keyHash, cbasn1.OCTET_STRING) ||
		!certID.ReadASN1(&serial, cbasn1.INTEGER) || !certID.Empty() {
		return req, errMalformed
	}
	if len(nameHash) != want || len(keyHash) != want {
		return req, errMalformed
	}
	s, ok := serialMagnitude(serial)
	if !ok {
		return req, errMalformed
	}
	req.nameHash, req.keyHash, req.serial = nameHash, keyHash, s
	return req, nil
}

// serialMagnitude returns the bytes of a positive DER INTEGER's content
// without its leading zero octet, or false if it is not positive or not
// minimally encoded (X.690 §8.3.2).
func serialMagnitude(b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0]&0x80 != 0 {
		return nil, false
	}
	if len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0 {
		return nil, false
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b, len(b) > 0
}

func oidEqual(b cryptobyte.String, contents string) bool { return string(b) == contents }

// validNonce reports whether a request's nonce is one DER OCTET STRING of 1
// to ca.MaxOCSPNonce octets (RFC 8954 §2.1: a longer or empty one is a
// malformedRequest).
func validNonce(nonce []byte) bool {
	in := cryptobyte.String(nonce)
	var v cryptobyte.String
	return in.ReadASN1(&v, cbasn1.OCTET_STRING) && in.Empty() && len(v) >= 1 && len(v) <= ca.MaxOCSPNonce
}
