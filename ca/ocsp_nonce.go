package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// MaxOCSPNonce is the longest nonce, in octets, that SignWithNonce echoes:
// RFC 8954 §2.1 bounds Nonce ::= OCTET STRING(SIZE(1..32)).
const MaxOCSPNonce = 32

var (
	oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidSHA1      = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
)

// ocspSigAlgOID returns the OID of a signature algorithm OCSP responses are
// signed with, and whether its parameters are NULL (RFC 4055 §5: RSA
// PKCS #1 v1.5) rather than absent.
func ocspSigAlgOID(alg x509.SignatureAlgorithm) (oid asn1.ObjectIdentifier, null, ok bool) {
	switch alg {
	case x509.ECDSAWithSHA256:
		return asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false, true
	case x509.ECDSAWithSHA384:
		return asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false, true
	case x509.ECDSAWithSHA512:
		return asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false, true
	case x509.SHA256WithRSA:
		return asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true, true
	case x509.PureEd25519:
		return asn1.ObjectIdentifier{1, 3, 101, 112}, false, true
	}
	return nil, false, false
}

// newOCSPTBSSigner returns the signer of hand-encoded ResponseData for key,
// whose signatures are checked against cert's public key before use. The
// algorithm follows from the key as golang.org/x/crypto/ocsp.CreateResponse
// chooses it, so that a nonce response and the pre-signed one differ only in
// the nonce, producedAt and the signature value.
func newOCSPTBSSigner(key crypto.Signer, cert *x509.Certificate) (*tbsSigner, error) {
	var alg x509.SignatureAlgorithm
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			alg = x509.ECDSAWithSHA256
		case elliptic.P384():
			alg = x509.ECDSAWithSHA384
		case elliptic.P521():
			alg = x509.ECDSAWithSHA512
		}
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	}
	oid, null, ok := ocspSigAlgOID(alg)
	h, hok := sigHash(alg)
	if !ok || !hok {
		return nil, fmt.Errorf("no OCSP signature algorithm for a %T key", key.Public())
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
	algID, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode signature algorithm: %w", err)
	}
	return &tbsSigner{signer: key, issuer: cert, sigAlg: alg, hash: h, algID: algID}, nil
}

// SignWithNonce signs one OCSP response for a certificate of s's issuer,
// saying what tmpl says (Status, SerialNumber, ThisUpdate, NextUpdate,
// RevokedAt, RevocationReason, IssuerHash SHA-1 or SHA-256) as Sign would,
// and echoing a request's nonce in the ResponseData's responseExtensions
// (RFC 6960 §4.4.1), where golang.org/x/crypto/ocsp cannot put it. nonce is
// the request extension's extnValue, the DER Nonce OCTET STRING of 1 to
// MaxOCSPNonce octets, copied byte for byte. producedAt is
// tmpl.ProducedAt, which the caller sets. ca encodes the ResponseData
// itself, so the key signs nothing but an OCSP response about its issuer's
// certificates; a template it cannot honour is Malformed.
func (s *OCSPSigner) SignWithNonce(tmpl ocsp.Response, nonce []byte) ([]byte, error) {
	if err := checkOCSPNonce(nonce); err != nil {
		return nil, errorf(Malformed, "ocsp nonce: %v", err)
	}
	if err := s.checkTemplate(tmpl); err != nil {
		return nil, errorf(Malformed, "ocsp response: %v", err)
	}
	if s.tbs == nil {
		return nil, errorf(Internal, "ocsp signer cannot sign nonce responses")
	}
	certID, err := s.certID(tmpl)
	if err != nil {
		return nil, internal("ocsp certID", err)
	}
	responder := s.issuer.Cert
	if s.responder != nil {
		responder = s.responder
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 512))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseData; version v1 is the DEFAULT, so absent
		// ResponderID byName [1] EXPLICIT, as x/crypto/ocsp names it.
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(responder.RawSubject) })
		b.AddASN1GeneralizedTime(tmpl.ProducedAt.UTC())
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				b.AddBytes(certID)
				addCertStatus(b, tmpl)
				b.AddASN1GeneralizedTime(tmpl.ThisUpdate.UTC())
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1GeneralizedTime(tmpl.NextUpdate.UTC())
				})
			})
		})
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // responseExtensions
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidOCSPNonce)
					b.AddASN1OctetString(nonce) // not critical: DEFAULT FALSE, absent
				})
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, internal("encode ocsp response data", err)
	}
	sig, err := s.tbs.signature(tbs)
	if err != nil {
		return nil, internal("sign ocsp response", err)
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+len(responder.Raw)+64))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPResponse
		b.AddASN1Enum(int64(ocsp.Success))
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseBytes
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // BasicOCSPResponse
						b.AddBytes(tbs)
						b.AddBytes(s.tbs.algID)
						b.AddASN1BitString(sig)
						if s.responder != nil {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(s.responder.Raw) })
							})
						}
					})
				})
			})
		})
	})
	der, err := out.Bytes()
	if err != nil {
		return nil, internal("encode ocsp response", err)
	}
	return der, nil
}

// checkOCSPNonce checks that nonce is one DER OCTET STRING of 1 to
// MaxOCSPNonce octets (RFC 8954 §2.1).
func checkOCSPNonce(nonce []byte) error {
	in := cryptobyte.String(nonce)
	var v cryptobyte.String
	if !in.ReadASN1(&v, cbasn1.OCTET_STRING) || !in.Empty() {
		return errors.New("not a DER OCTET STRING")
	}
	if len(v) < 1 || len(v) > MaxOCSPNonce {
		return fmt.Errorf("%d octets, want 1 to %d", len(v), MaxOCSPNonce)
	}
	return nil
}

// checkTemplate refuses what no response of s may say.
func (s *OCSPSigner) checkTemplate(t ocsp.Response) error {
	switch {
	case t.SerialNumber == nil || t.SerialNumber.Sign() <= 0:
		return errors.New("serial is not positive")
	case t.Status != ocsp.Good && t.Status != ocsp.Revoked && t.Status != ocsp.Unknown:
		return fmt.Errorf("status %d", t.Status)
	case t.Status == ocsp.Revoked && (t.RevokedAt.IsZero() || t.RevocationReason < ocsp.Unspecified ||
		t.RevocationReason > ocsp.AACompromise || t.RevocationReason == 7):
		return fmt.Errorf("revoked at %v with reason %d", t.RevokedAt, t.RevocationReason)
	case t.IssuerHash != 0 && t.IssuerHash != crypto.SHA1 && t.IssuerHash != crypto.SHA256:
		return fmt.Errorf("CertID hash %v", t.IssuerHash)
	case t.ThisUpdate.IsZero() || t.NextUpdate.Before(t.ThisUpdate):
		return fmt.Errorf("thisUpdate %v, nextUpdate %v", t.ThisUpdate, t.NextUpdate)
	case len(t.ExtraExtensions) > 0:
		return errors.New("single extensions are not signed here")
	}
	// A response never outlives, nor predates, what signs it.
	notBefore := s.issuer.Cert.NotBefore
	if s.responder != nil {
		notBefore = s.responder.NotBefore
	}
	if t.NextUpdate.After(s.NotAfter()) || t.ProducedAt.Before(notBefore) || t.ProducedAt.After(s.NotAfter()) {
		return fmt.Errorf("producedAt %v or nextUpdate %v outside the signer's validity %v to %v",
			t.ProducedAt, t.NextUpdate, notBefore, s.NotAfter())
	}
	return nil
}

// certID encodes the CertID of tmpl's serial (RFC 6960 §4.1.1): hashes of
// the issuer's name and public key, and explicit NULL parameters as
// x/crypto/ocsp writes them.
func (s *OCSPSigner) certID(tmpl ocsp.Response) ([]byte, error) {
	h, oid := crypto.SHA1, oidSHA1
	if tmpl.IssuerHash == crypto.SHA256 {
		h, oid = crypto.SHA256, oidSHA256
	}
	spki := cryptobyte.String(s.issuer.Cert.RawSubjectPublicKeyInfo)
	var seq cryptobyte.String
	var pub []byte
	if !spki.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.ReadASN1BitStringAsBytes(&pub) {
		return nil, errors.New("issuer public key unreadable")
	}
	nh, kh := h.New(), h.New()
	nh.Write(s.issuer.Cert.RawSubject)
	kh.Write(pub)
	b := cryptobyte.NewBuilder(make([]byte, 0, 128))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(nh.Sum(nil))
		b.AddASN1OctetString(kh.Sum(nil))
		b.AddASN1BigInt(tmpl.SerialNumber)
	})
	return b.Bytes()
}

// addCertStatus appends the CertStatus CHOICE (RFC 6960 §4.2.1), the
// revocation reason always present as x/crypto/ocsp writes it.
func addCertStatus(b *cryptobyte.Builder, t ocsp.Response) {
	switch t.Status {
	case ocsp.Good:
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {}) // [0] IMPLICIT NULL
	case ocsp.Unknown:
		b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {}) // [2] IMPLICIT NULL
	case ocsp.Revoked:
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1GeneralizedTime(t.RevokedAt.UTC())
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1Enum(int64(t.RevocationReason))
			})
		})
	}
}
