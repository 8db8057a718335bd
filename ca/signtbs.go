package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tbsSigner signs, with the issuer's real key, the exact TBSCertificate that
// passed the lint: the issued certificate is the linted one by construction,
// not by re-encoding the template and hoping the bytes match.
type tbsSigner struct {
	signer crypto.Signer
	issuer *x509.Certificate
	sigAlg x509.SignatureAlgorithm
	hash   crypto.Hash
	algID  []byte // DER AlgorithmIdentifier, as in the lint copies
}

// sigHash is the digest each supported signature algorithm signs.
func sigHash(alg x509.SignatureAlgorithm) (crypto.Hash, bool) {
	switch alg {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		return crypto.SHA256, true
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		return crypto.SHA384, true
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		return crypto.SHA512, true
	case x509.PureEd25519:
		return crypto.Hash(0), true
	}
	return 0, false
}

// newTBSSigner learns which signature algorithm lint copies carry by making
// one, and checks the real key can produce it.
func newTBSSigner(signer crypto.Signer, issuer, lintParent *x509.Certificate, lintSigner crypto.Signer) (*tbsSigner, error) {
	probe := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1, 0)}
	der, err := x509.CreateCertificate(rand.Reader, probe, lintParent, lintSigner.Public(), lintSigner)
	if err != nil {
		return nil, fmt.Errorf("probe certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("probe certificate: %w", err)
	}
	h, ok := sigHash(c.SignatureAlgorithm)
	if !ok {
		return nil, fmt.Errorf("unsupported signature algorithm %s", c.SignatureAlgorithm)
	}
	_, algID, err := splitCert(der)
	if err != nil {
		return nil, err
	}
	return &tbsSigner{signer: signer, issuer: issuer, sigAlg: c.SignatureAlgorithm, hash: h, algID: algID}, nil
}

// sign returns the certificate made of lintDER's TBSCertificate signed by
// the real key.
func (s *tbsSigner) sign(lintDER []byte) ([]byte, error) {
	tbs, algID, err := splitCert(lintDER)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(algID, s.algID) {
		return nil, errors.New("lint copy carries an unexpected signature algorithm")
	}
	return s.signTBS(tbs)
}

// signTBS signs a DER to-be-signed structure (TBSCertificate or
// TBSCertList) whose signature field is s.algID and returns the signed
// SEQUENCE { tbs, algorithm, signature }. Callers check what they sign.
func (s *tbsSigner) signTBS(tbs []byte) ([]byte, error) {
	sig, err := s.signature(tbs)
	if err != nil {
		return nil, err
	}
	// Sized once: a CRL's TBS may be tens of MiB, and growing by doubling
	// would hold several copies at once.
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(s.algID)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(s.algID)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// signature returns the key's signature over tbs, checked against s.issuer
// (the issuer certificate, or an OCSP responder's). Callers check what they
// sign.
func (s *tbsSigner) signature(tbs []byte) ([]byte, error) {
	digest := tbs
	if s.hash != 0 {
		h := s.hash.New()
		h.Write(tbs)
		digest = h.Sum(nil)
	}
	sig, err := s.signer.Sign(rand.Reader, digest, s.hash)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	// As x509.CreateCertificate does: a faulty signer must never yield a
	// certificate, and a fault must not leak the key through a bad signature.
	if err := s.issuer.CheckSignature(s.sigAlg, tbs, sig); err != nil {
		return nil, fmt.Errorf("signature from the signing key does not verify: %w", err)
	}
	return sig, nil
}

// splitCert returns the TBSCertificate and signatureAlgorithm elements of a
// DER certificate.
func splitCert(der []byte) (tbs, algID []byte, err error) {
	in := cryptobyte.String(der)
	var cert, t, a cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1Element(&t, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&a, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("malformed certificate")
	}
	return t, a, nil
}
