package ca

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// Issuer kinds in the record.
const (
	KindRoot         = "root"
	KindIntermediate = "intermediate"
)

// signingIssuer is an intermediate whose key this process holds: the active
// one issues; one retired by a rotation signs only CRLs and OCSP responses
// about the certificates it issued. Immutable once built.
type signingIssuer struct {
	Issuer
	keyID  string
	signer crypto.Signer
	// lintParent is the intermediate's certificate with a throwaway public
	// key, and lintSigner that key: pre-issuance lint copies are signed with
	// it so that a certificate failing lint is never signed by the real key.
	lintParent *x509.Certificate
	lintSigner crypto.Signer
	tbs        *tbsSigner
}

// openIssuer unwraps iss's key (audited as key.unwrapped) and prepares it
// to sign.
func (a *Authority) openIssuer(ctx context.Context, iss Issuer, keyID string) (*signingIssuer, error) {
	signer, err := a.keys.Unwrap(ctx, keyID, "system")
	if err != nil {
		return nil, fmt.Errorf("ca: unwrap the key of intermediate %s: %w", iss.ID, err)
	}
	return newSigningIssuer(iss, keyID, signer)
}

func newSigningIssuer(iss Issuer, keyID string, signer crypto.Signer) (*signingIssuer, error) {
	alg, err := keystore.AlgorithmOf(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: intermediate %s key: %w", iss.ID, err)
	}
	if !publicKeyEqual(signer.Public(), iss.Cert.PublicKey) {
		return nil, fmt.Errorf("ca: the key %s does not match intermediate %s", keyID, iss.ID)
	}
	s := &signingIssuer{Issuer: iss, keyID: keyID, signer: signer}
	if s.lintSigner, err = keystore.Generate(alg); err != nil {
		return nil, fmt.Errorf("ca: throwaway lint key: %w", err)
	}
	parent := *iss.Cert
	parent.PublicKey = s.lintSigner.Public()
	s.lintParent = &parent
	if s.tbs, err = newTBSSigner(signer, iss.Cert, s.lintParent, s.lintSigner); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return s, nil
}

// loadIssuers reads the hierarchy from the records: the active root, the
// newest active intermediate (which issues) and every intermediate retired
// by a rotation whose key is not destroyed yet (which signs CRLs and OCSP
// for what it issued). Every recorded issuer is kept for chains.
func (a *Authority) loadIssuers(ctx context.Context, recs []store.IssuerRecord) error {
	a.known = make(map[string]Issuer, len(recs))
	a.signing = map[string]*signingIssuer{}
	var root *Issuer
	var active *signingIssuer
	for _, rec := range recs { // oldest first
		iss, err := parseIssuer(rec)
		if err != nil {
			return err
		}
		a.known[rec.ID] = iss
		switch {
		case rec.Kind == KindRoot && rec.State == store.KeyActive:
			root = &iss
		case rec.Kind == KindIntermediate && (rec.State == store.KeyActive || rec.State == store.KeyRetired):
			si, err := a.openIssuer(ctx, iss, rec.KeyID)
			if err != nil {
				return err
			}
			a.signing[rec.ID] = si
			if rec.State == store.KeyActive {
				active = si // newest active wins
			}
		}
	}
	if root == nil || active == nil {
		return errors.New("ca: no active root and intermediate: run sigil init first")
	}
	a.root = *root
	a.active.Store(active)
	return nil
}

// signingFor returns the intermediate id whose key this process holds, or
// a NotFound error naming what is served instead.
func (a *Authority) signingFor(issuerID string) (*signingIssuer, error) {
	a.issMu.RLock()
	s, ok := a.signing[issuerID]
	a.issMu.RUnlock()
	if !ok {
		return nil, errorf(NotFound, "issuer %s does not sign here (the active intermediate is %s)", issuerID, a.Intermediate().ID)
	}
	return s, nil
}

// ServingIssuers returns the intermediates whose CRLs and OCSP responses
// this process signs: the active one first, then those retired by a
// rotation whose certificates have not all expired, oldest first.
func (a *Authority) ServingIssuers() []Issuer {
	active := a.Intermediate()
	a.issMu.RLock()
	var retired []Issuer
	for id, s := range a.signing {
		if id != active.ID {
			retired = append(retired, s.Issuer)
		}
	}
	a.issMu.RUnlock()
	slices.SortFunc(retired, func(x, y Issuer) int {
		return cmp.Or(x.Cert.NotBefore.Compare(y.Cert.NotBefore), cmp.Compare(x.ID, y.ID))
	})
	return append([]Issuer{active}, retired...)
}

// IssuerByID returns any issuer recorded, whatever its state (a certificate
// of an intermediate since destroyed still needs its chain).
func (a *Authority) IssuerByID(id string) (Issuer, bool) {
	a.issMu.RLock()
	defer a.issMu.RUnlock()
	iss, ok := a.known[id]
	return iss, ok
}

// Issuers returns every issuer recorded, by id.
func (a *Authority) Issuers() map[string]Issuer {
	a.issMu.RLock()
	defer a.issMu.RUnlock()
	return maps.Clone(a.known)
}

// issuerKeyID returns the inventory id of issuerID's key, "" if this
// process does not hold it.
func (a *Authority) issuerKeyID(issuerID string) string {
	a.issMu.RLock()
	defer a.issMu.RUnlock()
	if s, ok := a.signing[issuerID]; ok {
		return s.keyID
	}
	return ""
}

// IntermediateStatus is one intermediate as operators and auditors see it.
type IntermediateStatus struct {
	ID        string
	Subject   string
	Serial    string
	State     string // active, retired (rotated out; still signs CRLs and OCSP), destroyed
	KeyID     string
	NotBefore time.Time
	NotAfter  time.Time
	Created   time.Time
	// LastExpiry is when the last certificate it issued expires (the CA's
	// own, such as OCSP responder certificates, aside); zero if none.
	LastExpiry time.Time
}

// IntermediateStatuses lists every intermediate recorded, oldest first.
func (x *Intermediates) IntermediateStatuses(ctx context.Context) ([]IntermediateStatus, error) {
	a := x.a
	recs, err := a.st.Issuers(ctx)
	if err != nil {
		return nil, internal("load issuers", err)
	}
	var out []IntermediateStatus
	for _, rec := range recs {
		if rec.Kind != KindIntermediate {
			continue
		}
		iss, err := parseIssuer(rec)
		if err != nil {
			return nil, internal("intermediates", err)
		}
		last, err := a.st.IssuerLastExpiry(ctx, rec.ID, internalProfiles...)
		if err != nil {
			return nil, internal("intermediates", err)
		}
		out = append(out, IntermediateStatus{ID: rec.ID, Subject: iss.Cert.Subject.String(), Serial: SerialString(iss.Cert.SerialNumber),
			State: rec.State, KeyID: rec.KeyID, NotBefore: iss.Cert.NotBefore.UTC(), NotAfter: iss.Cert.NotAfter.UTC(),
			Created: rec.Created.UTC(), LastExpiry: last.UTC()})
	}
	return out, nil
}

// eachCertificate calls fn with every certificate f selects, a page at a
// time (f.Limit records per read; 1000 if unset).
func eachCertificate(ctx context.Context, st interface {
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
}, f store.CertFilter, fn func(store.CertRecord)) error {
	if f.Limit == 0 {
		f.Limit = 1000
	}
	for {
		page, next, err := st.Certificates(ctx, f)
		if err != nil {
			return err
		}
		for _, c := range page {
			fn(c)
		}
		if next.IsZero() {
			return nil
		}
		f.After = next
	}
}
