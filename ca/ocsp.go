package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

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
	// RenewMargin: a recorded responder certificate is reused only while its
	// half-life (RenewAt) is more than RenewMargin away, so that it is not
	// due before the caller next checks (the responder passes its refresh
	// interval). Zero: reused until its half-life.
	RenewMargin time.Duration
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
	tbs       *tbsSigner // signs hand-encoded ResponseData (SignWithNonce)
}

// NewOCSPSigner returns a signer for OCSP responses about certificates of
// issuerID, the active intermediate or one retired by a rotation whose key
// this process still holds. Unless cfg.SignWithIssuer, it reuses the newest
// recorded responder certificate of the intermediate that is unrevoked,
// whose key is active, whose lifetime is within cfg.Validity and whose
// half-life is more than cfg.RenewMargin away, unwrapping its key through the
// keystore (audited as key.unwrapped); otherwise it generates a responder key
// (inventory purpose "ocsp", sealed under the KEK) and a short-lived responder
// certificate signed by the intermediate, linted like every certificate. The
// new key, the certificate record, their key.generated and cert.issued
// events and TidyOCSPKeys's work (the intermediate's other active responder
// keys retired, retired ones no certificate needs any more destroyed) are
// one transaction; a reused signer is followed by TidyOCSPKeys.
func (a *Authority) NewOCSPSigner(ctx context.Context, issuerID string, cfg OCSPSignerConfig) (*OCSPSigner, error) {
	iss, err := a.signingFor(issuerID)
	if err != nil {
		return nil, err
	}
	if cfg.SignWithIssuer {
		s, err := issuerOCSPSigner(iss)
		if err != nil {
			return nil, err
		}
		a.tidyAfter(ctx, s)
		return s, nil
	}
	if cfg.Validity == 0 {
		cfg.Validity = 72 * time.Hour
	}
	if cfg.Validity < 0 || cfg.RenewMargin < 0 {
		return nil, errorf(Malformed, "negative OCSP responder validity or renewal margin")
	}
	s, err := a.reuseOCSPSigner(ctx, iss, cfg)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return a.issueOCSPSigner(ctx, iss, cfg)
	}
	a.tidyAfter(ctx, s)
	return s, nil
}

// tidyAfter runs TidyOCSPKeys once s is chosen. A failure is logged, not
// returned: s is good, and the responder tidies again at every refresh.
func (a *Authority) tidyAfter(ctx context.Context, s *OCSPSigner) {
	if err := a.TidyOCSPKeys(ctx, s); err != nil {
		a.log.ErrorContext(ctx, "ocsp responder keys not tidied", "error", err)
	}
}

func issuerOCSPSigner(iss *signingIssuer) (*OCSPSigner, error) {
	tbs, err := newOCSPTBSSigner(iss.signer, iss.Cert)
	if err != nil {
		return nil, internal("ocsp signer", err)
	}
	return &OCSPSigner{issuer: iss.Issuer, key: iss.signer, keyID: iss.keyID, tbs: tbs}, nil
}

// reuseCandidates bounds how many of the newest valid responder
// certificates are considered for reuse: older ones are no better.
const reuseCandidates = 8

// reuseOCSPSigner returns a signer with a recorded responder certificate
// (see NewOCSPSigner), or nil if none qualifies.
func (a *Authority) reuseOCSPSigner(ctx context.Context, iss *signingIssuer, cfg OCSPSignerConfig) (*OCSPSigner, error) {
	now := a.clk.Now()
	keys, err := a.st.Keys(ctx)
	if err != nil {
		return nil, internal("list keys", err)
	}
	active := map[string]store.KeyRecord{} // by SPKI hash, as certificates record it
	for _, k := range keys {
		if k.Purpose == KeyPurposeOCSP && k.State == store.KeyActive {
			active[string(store.SPKIHash(k.PublicKey))] = k
		}
	}
	if len(active) == 0 {
		return nil, nil
	}
	certs, _, err := a.st.Certificates(ctx, store.CertFilter{Profile: ocspResponderProfile, IssuerID: iss.ID,
		Status: "valid", Now: now, Limit: reuseCandidates})
	if err != nil {
		return nil, internal("list ocsp responder certificates", err)
	}
	for _, rec := range certs { // newest first
		k, ok := active[string(rec.SPKIHash)]
		if !ok {
			continue
		}
		cert, err := x509.ParseCertificate(rec.DER)
		if err != nil {
			a.log.WarnContext(ctx, "recorded ocsp responder certificate unreadable", "serial", rec.Serial, "error", err)
			continue
		}
		s := &OCSPSigner{issuer: iss.Issuer, responder: cert, keyID: k.ID}
		// A shortened responder_validity takes effect at once rather than
		// after a certificate of the old, longer lifetime.
		if cert.NotAfter.Sub(cert.NotBefore) > cfg.Validity+a.cfg.Backdate {
			continue
		}
		if !now.Add(cfg.RenewMargin).Before(s.RenewAt()) {
			continue
		}
		key, err := a.keys.Unwrap(ctx, k.ID, "system")
		if err != nil {
			a.log.WarnContext(ctx, "ocsp responder key not reusable", "key_id", k.ID, "error", err)
			continue
		}
		if !publicKeyEqual(key.Public(), cert.PublicKey) {
			a.log.WarnContext(ctx, "ocsp responder key does not match its certificate", "key_id", k.ID, "serial", rec.Serial)
			continue
		}
		if s.tbs, err = newOCSPTBSSigner(key, cert); err != nil {
			return nil, internal("ocsp signer", err)
		}
		s.key = key
		a.log.InfoContext(ctx, "ocsp responder certificate reused", "serial", rec.Serial, "issuer", rec.IssuerID,
			"key_id", k.ID, "not_after", rec.NotAfter)
		return s, nil
	}
	return nil, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// issueOCSPSigner generates a responder key and certificate; the previous
// responder keys are retired (and the expired destroyed) in the same
// transaction.
func (a *Authority) issueOCSPSigner(ctx context.Context, iss *signingIssuer, cfg OCSPSignerConfig) (*OCSPSigner, error) {
	key, keyRec, err := a.keys.Generate(ctx, KeyPurposeOCSP, keystore.ECDSAP256)
	if err != nil {
		return nil, internal("ocsp responder key", err)
	}
	der, rec, err := a.ocspResponderCert(iss, key.Public(), cfg.Validity)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, internal("parse ocsp responder certificate", err)
	}
	tbs, err := newOCSPTBSSigner(key, cert)
	if err != nil {
		return nil, internal("ocsp signer", err)
	}
	now := a.clk.Now()
	var retired, destroyed []string
	_, err = a.record(ctx, Issuance{Cert: rec, Actor: "system", NewKey: &keyRec, Time: now,
		InTx: func(tx store.Tx, _ store.CertRecord) error {
			var err error
			retired, destroyed, err = tidyOCSPKeys(tx, keyRec.ID, iss.ID, now)
			return err
		}})
	if err != nil {
		return nil, internal("record ocsp responder certificate", err)
	}
	a.log.InfoContext(ctx, "ocsp responder certificate issued", "serial", rec.Serial, "issuer", rec.IssuerID,
		"key_id", keyRec.ID, "not_after", rec.NotAfter, "retired", retired, "destroyed", destroyed)
	return &OCSPSigner{issuer: iss.Issuer, responder: cert, key: key, keyID: keyRec.ID, tbs: tbs}, nil
}

// TidyOCSPKeys ends the life of responder keys current no longer needs:
// every active OCSP responder key but current's is retired (key.retired)
// unless it is another intermediate's current responder (one of its
// unexpired certificates was issued by another intermediate), and every
// retired one that no unexpired certificate, unrevoked or on hold, carries
// any more is destroyed by crypto-shredding (key.destroyed). One
// transaction, and none at all when there is nothing to do; idempotent. The
// responder calls it at every refresh, so a key goes soon after its
// certificate expires.
func (a *Authority) TidyOCSPKeys(ctx context.Context, current *OCSPSigner) error {
	now := a.clk.Now()
	due, err := a.ocspKeysDue(ctx, current.keyID, current.issuer.ID, now)
	if err != nil || !due {
		return err
	}
	var retired, destroyed []string
	err = update(ctx, a.st, func(tx Tx) error {
		var err error
		retired, destroyed, err = tidyOCSPKeys(tx, current.keyID, current.issuer.ID, now)
		return err
	})
	if err != nil {
		return internal("tidy ocsp responder keys", err)
	}
	if len(retired)+len(destroyed) > 0 {
		a.log.InfoContext(ctx, "ocsp responder keys tidied", "key_id", current.keyID, "retired", retired, "destroyed", destroyed)
	}
	return nil
}

// ocspKeysDue reports, from reads alone, whether tidyOCSPKeys would change
// anything, so that the periodic call commits nothing in the usual case.
func (a *Authority) ocspKeysDue(ctx context.Context, keep, issuerID string, now time.Time) (bool, error) {
	keys, err := a.st.Keys(ctx)
	if err != nil {
		return false, internal("list keys", err)
	}
	var candidates []store.KeyRecord
	for _, k := range keys {
		if k.Purpose == KeyPurposeOCSP && k.ID != keep && k.State != store.KeyDestroyed {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		return false, nil
	}
	// The issuers of the responder certificates that keep a key: unexpired,
	// and unrevoked or on hold; by SPKI hash.
	inUse := map[string][]string{}
	for _, status := range []string{"valid", "revoked"} {
		err := eachCertificate(ctx, a.st, store.CertFilter{Profile: ocspResponderProfile, Status: status, Now: now}, func(c store.CertRecord) {
			if status == "valid" || (c.RevokeReason == ReasonCertificateHold && now.Before(c.NotAfter)) {
				inUse[string(c.SPKIHash)] = append(inUse[string(c.SPKIHash)], c.IssuerID)
			}
		})
		if err != nil {
			return false, internal("list ocsp responder certificates", err)
		}
	}
	for _, k := range candidates {
		issuers := inUse[string(store.SPKIHash(k.PublicKey))]
		switch {
		case k.State == store.KeyActive && !slices.ContainsFunc(issuers, func(id string) bool { return id != issuerID }):
			return true, nil // to retire
		case k.State == store.KeyRetired && len(issuers) == 0:
			return true, nil // to destroy
		}
	}
	return false, nil
}

// tidyOCSPKeys retires, inside tx, every active OCSP responder key but keep
// that no other intermediate than issuerID answers with (none of its
// unexpired certificates was issued by another), and destroys each retired
// one that no unexpired certificate, unrevoked or on hold, carries.
// Retirement always comes first, so a key is never destroyed straight from
// active.
func tidyOCSPKeys(tx Tx, keep, issuerID string, now time.Time) (retired, destroyed []string, err error) {
	keys, err := tx.Keys()
	if err != nil {
		return nil, nil, err
	}
	for _, k := range keys {
		if k.Purpose != KeyPurposeOCSP || k.ID == keep || k.State == store.KeyDestroyed {
			continue
		}
		// Unexpired and unrevoked, or on hold (it may be released).
		inUse, err := tx.CertificatesToBlockWithKey(store.SPKIHash(k.PublicKey), now)
		if err != nil {
			return nil, nil, err
		}
		if k.State == store.KeyActive {
			if slices.ContainsFunc(inUse, func(c store.CertRecord) bool { return c.IssuerID != issuerID }) {
				continue // another intermediate's current responder
			}
			if err := keystore.Retire(tx, k, "system", now, map[string]string{"reason": "superseded", "successor": keep}); err != nil {
				return nil, nil, err
			}
			retired = append(retired, k.ID)
		}
		if len(inUse) > 0 {
			continue // responses it signed may still be served and verified
		}
		if err := keystore.Destroy(tx, k, "system", "ocsp responder certificates expired", now); err != nil {
			return nil, nil, err
		}
		destroyed = append(destroyed, k.ID)
	}
	return retired, destroyed, nil
}

// ocspResponderCert builds, lints and signs a responder certificate for pub.
func (a *Authority) ocspResponderCert(iss *signingIssuer, pub crypto.PublicKey, validity time.Duration) ([]byte, store.CertRecord, error) {
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
	if ia := iss.Cert.NotAfter; notAfter.After(ia) {
		notAfter = ia
	}
	subject := pkix.Name{CommonName: "Sigil OCSP Responder " + iss.ID}
	if org := iss.Cert.Subject.Organization; len(org) > 0 {
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
		IssuingCertificateURL: []string{strings.TrimRight(a.cfg.BaseURL, "/") + "/issuer/" + iss.ID + ".crt"},
	}
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, iss.lintParent, pub, iss.lintSigner)
	if err != nil {
		return nil, store.CertRecord{}, internal("build ocsp responder certificate", err)
	}
	if err := a.linter.Lint(lintDER); err != nil {
		return nil, store.CertRecord{}, internal("ocsp responder certificate lint", err)
	}
	der, err := iss.tbs.sign(lintDER)
	if err != nil {
		return nil, store.CertRecord{}, internal("sign ocsp responder certificate", err)
	}
	rec := store.CertRecord{
		IssuerID:     iss.ID,
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
