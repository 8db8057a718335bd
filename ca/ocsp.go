package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// ocspResponderProfile names the built-in profile of delegated OCSP
// responder certificates in the record; it is not selectable through the API.
const ocspResponderProfile = "sigil-ocsp-responder"

// KeyPurposeOCSP is the inventory purpose of delegated OCSP responder keys.
const KeyPurposeOCSP = "ocsp"

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying
// parties need not check the responder certificate's own revocation status.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// OCSPSignerConfig configures NewOCSPSigner.
type OCSPSignerConfig struct {
	// Validity of a delegated responder certificate (default 72h); it is
	// capped at the issuer's notAfter.
	Validity time.Duration
	// SignWithIssuer signs responses with the issuing intermediate's own key
	// instead of a delegated responder certificate.
	SignWithIssuer bool
}

// OCSPSigner signs OCSP responses for the active intermediate, either with a
// delegated responder key (EKU OCSPSigning, id-pkix-ocsp-nocheck) or with
// the intermediate's key. The key never leaves ca: callers get signed DER.
// It is safe for concurrent use and immutable; rotation makes a new one.
type OCSPSigner struct {
	issuer    Issuer
	responder *x509.Certificate // nil: the issuer signs
	key       crypto.Signer
	keyID     string
}

// NewOCSPSigner returns a signer for OCSP responses about certificates of
// the active intermediate. Unless cfg.SignWithIssuer, it generates a
// responder key through the keystore (inventory purpose "ocsp", sealed under
// the KEK) and a short-lived responder certificate signed by the
// intermediate, linted like every certificate; the key, the certificate
// record and their key.generated and cert.issued audit events are one
// transaction.
func (a *Authority) NewOCSPSigner(ctx context.Context, cfg OCSPSignerConfig) (*OCSPSigner, error) {
	if cfg.SignWithIssuer {
		return &OCSPSigner{issuer: a.intermediate, key: a.signer, keyID: a.keyID}, nil
	}
	if cfg.Validity == 0 {
		cfg.Validity = 72 * time.Hour
	}
	if cfg.Validity < 0 {
		return nil, errorf(Malformed, "negative OCSP responder validity")
	}
	key, keyRec, err := a.keys.Generate(KeyPurposeOCSP, keystore.ECDSAP256)
	if err != nil {
		return nil, internal("ocsp responder key", err)
	}
	der, rec, err := a.ocspResponderCert(key.Public(), cfg.Validity)
	if err != nil {
		return nil, err
	}
	now := a.clk.Now()
	err = a.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(keyRec); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(keystore.GeneratedEvent(keyRec, "system")); err != nil {
			return err
		}
		if err := tx.InsertCertificate(&rec); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: "system", Action: "cert.issued", Target: rec.Serial,
			Detail: map[string]string{
				"issuer": rec.IssuerID, "profile": rec.Profile, "channel": rec.Channel, "subject": rec.Subject,
				"not_after": rec.NotAfter.Format(time.RFC3339), "key": keyRec.ID,
			}})
		return err
	})
	if err != nil {
		return nil, internal("record ocsp responder certificate", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, internal("parse ocsp responder certificate", err)
	}
	a.log.InfoContext(ctx, "ocsp responder certificate issued", "serial", rec.Serial, "issuer", rec.IssuerID,
		"key_id", keyRec.ID, "not_after", rec.NotAfter)
	return &OCSPSigner{issuer: a.intermediate, responder: cert, key: key, keyID: keyRec.ID}, nil
}

// ocspResponderCert builds, lints and signs a responder certificate for pub.
func (a *Authority) ocspResponderCert(pub crypto.PublicKey, validity time.Duration) ([]byte, store.CertRecord, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, store.CertRecord{}, internal("serial", err)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, store.CertRecord{}, internal("ocsp responder key id", err)
	}
	now := a.clk.Now().UTC().Truncate(time.Second)
	notAfter := now.Add(validity)
	if ia := a.intermediate.Cert.NotAfter; notAfter.After(ia) {
		notAfter = ia
	}
	subject := pkix.Name{CommonName: "Sigil OCSP Responder " + a.intermediate.ID}
	if org := a.intermediate.Cert.Subject.Organization; len(org) > 0 {
		subject.Organization = org
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-a.cfg.Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		// RFC 6960 §4.2.2.2.1: the value of id-pkix-ocsp-nocheck is NULL.
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
		IssuingCertificateURL: []string{strings.TrimRight(a.cfg.BaseURL, "/") + "/issuer/" + a.intermediate.ID + ".crt"},
	}
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, a.lintParent, pub, a.lintSigner)
	if err != nil {
		return nil, store.CertRecord{}, internal("build ocsp responder certificate", err)
	}
	if err := a.linter.Lint(lintDER); err != nil {
		return nil, store.CertRecord{}, internal("ocsp responder certificate lint", err)
	}
	der, err := a.tbs.sign(lintDER)
	if err != nil {
		return nil, store.CertRecord{}, internal("sign ocsp responder certificate", err)
	}
	rec := store.CertRecord{
		IssuerID:     a.intermediate.ID,
		Serial:       SerialString(serial),
		Subject:      subject.String(),
		SANs:         []string{},
		NotBefore:    tmpl.NotBefore,
		NotAfter:     tmpl.NotAfter,
		KeyAlgorithm: string(keystore.ECDSAP256),
		Profile:      ocspResponderProfile,
		Requester:    "sigil",
		Channel:      ChannelInternal,
		DER:          der,
		Created:      now,
	}
	return der, rec, nil
}

// Issuer returns the issuer whose certificates s answers for.
func (s *OCSPSigner) Issuer() Issuer { return s.issuer }

// Certificate returns the delegated responder certificate, or nil when the
// issuer signs responses itself.
func (s *OCSPSigner) Certificate() *x509.Certificate { return s.responder }

// KeyID returns the inventory id of the signing key.
func (s *OCSPSigner) KeyID() string { return s.keyID }

// RenewAt returns when a successor should replace s: half-way through the
// responder certificate's life (RFC 6960 §4.2.2.2.1 advises short-lived
// nocheck certificates). An issuer-signing s never needs one: the zero time.
func (s *OCSPSigner) RenewAt() time.Time {
	if s.responder == nil {
		return time.Time{}
	}
	life := s.responder.NotAfter.Sub(s.responder.NotBefore)
	return s.responder.NotBefore.Add(life / 2)
}

// NotAfter returns the last moment responses s signs verify: the responder
// certificate's notAfter, or the issuer's.
func (s *OCSPSigner) NotAfter() time.Time {
	if s.responder == nil {
		return s.issuer.Cert.NotAfter
	}
	return s.responder.NotAfter
}

// Sign signs one OCSP response for a certificate of s's issuer; the
// template's Certificate is set to the responder certificate (embedded so
// relying parties can verify it) or left nil for issuer-signed responses.
// The CertID hash is tmpl.IssuerHash (SHA-1 if zero).
func (s *OCSPSigner) Sign(tmpl ocsp.Response) ([]byte, error) {
	responder := s.issuer.Cert
	tmpl.Certificate = nil
	if s.responder != nil {
		responder = s.responder
		tmpl.Certificate = s.responder
	}
	der, err := ocsp.CreateResponse(s.issuer.Cert, responder, tmpl, s.key)
	if err != nil {
		return nil, fmt.Errorf("sign ocsp response: %w", err)
	}
	return der, nil
}
