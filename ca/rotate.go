package ca

import (
	"cmp"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// DefaultIntermediateRotateAt is the point of the active intermediate's
// lifetime at which intermediate-rotate replaces it: the old one then has a
// third of its life left, which every leaf it issued (capped at its
// notAfter) outlives no longer, and clients have that third to renew onto
// the new one.
const DefaultIntermediateRotateAt = "2/3"

// internalProfiles are the CA's own certificates, whose keys it alone ever
// held: an intermediate's delegated OCSP responders and the HTTPS
// listener's certificate (its key only in the memory of the process, which
// renews it onto the new intermediate after a rotation). They do not hold
// a rotated-out intermediate's key back from destruction.
var internalProfiles = []string{ocspResponderProfile, servingProfile}

// minIntermediateLife refuses a rotation whose successor, capped at the
// root's notAfter, would live less than this: the root needs renewing
// first.
const minIntermediateLife = 24 * time.Hour

// Intermediates is the authority's intermediate rotation, as the
// intermediate-rotate job, the /v1/ca/intermediates endpoints and the
// operator use it: the intermediates recorded, when the active one is due,
// its replacement, and the destruction of rotated-out keys once what they
// issued has expired.
type Intermediates struct{ a *Authority }

// Intermediates returns the authority's intermediate rotation.
func (a *Authority) Intermediates() *Intermediates { return &Intermediates{a: a} }

// IntermediateRotation is what RotateIntermediate did.
type IntermediateRotation struct {
	Previous Issuer
	Current  Issuer
	KeyID    string // the new intermediate's key
	// ManagedDue is how many managed certificates of the previous
	// intermediate were made due for renewal.
	ManagedDue int64
}

// IntermediateRotationPoint returns when the active intermediate reaches
// the point at of its lifetime (a fraction such as 2/3, 0.75 or 80%; empty:
// DefaultIntermediateRotateAt).
func (x *Intermediates) IntermediateRotationPoint(at string) (time.Time, error) {
	a := x.a
	r, err := ParseLifetimePoint("intermediate rotation point", at, DefaultIntermediateRotateAt)
	if err != nil {
		return time.Time{}, err
	}
	c := a.Intermediate().Cert
	return LifetimePoint(c.NotBefore, c.NotAfter, r), nil
}

// RotateIntermediateIfDue rotates the active intermediate if it has reached
// the point at of its lifetime (see IntermediateRotationPoint); nil, nil if
// not.
func (x *Intermediates) RotateIntermediateIfDue(ctx context.Context, actor, at string) (*IntermediateRotation, error) {
	point, err := x.IntermediateRotationPoint(at)
	if err != nil {
		return nil, err
	}
	if x.a.clk.Now().Before(point) {
		return nil, nil
	}
	return x.RotateIntermediate(ctx, actor, "reached its rotation point "+point.UTC().Format(time.RFC3339))
}

// RotateIntermediate replaces the active intermediate: it generates a new
// intermediate key (sealed by the keystore), unwraps the root key for the
// one signature of the new certificate and zeroes it at once, and records
// in one transaction the key, the issuer, the certificate, the previous
// intermediate and its key retired, the managed certificates it issued made
// due, and the audit events (key.generated, cert.issued, key.retired,
// ca.intermediate.rotated). Issuance switches to the new intermediate when
// the transaction commits; the previous one keeps its key in memory to sign
// CRLs and OCSP responses about what it issued until RetireIntermediates
// destroys it after its last certificate expires.
func (x *Intermediates) RotateIntermediate(ctx context.Context, actor, reason string) (*IntermediateRotation, error) {
	a := x.a
	a.rotateMu.Lock()
	defer a.rotateMu.Unlock()
	actor = cmp.Or(actor, "system")
	prev := a.active.Load()
	recs, err := a.st.Issuers(ctx)
	if err != nil {
		return nil, internal("load issuers", err)
	}
	rootRec, root, err := rootOf(recs)
	if err != nil {
		return nil, err
	}
	generations := 0
	for _, r := range recs {
		if r.Kind == KindIntermediate {
			generations++
		}
	}
	prevKey, err := a.st.Key(ctx, prev.keyID)
	if err != nil {
		return nil, internal("load the intermediate's key", err)
	}
	now := a.clk.Now().UTC().Truncate(time.Second)
	life := prev.Cert.NotAfter.Sub(prev.Cert.NotBefore)
	notAfter := now.Add(life)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	if notAfter.Sub(now) < minIntermediateLife {
		return nil, errorf(Rejected, "the root expires %s: a new intermediate would live under %s; renew the root first",
			root.NotAfter.UTC().Format(time.RFC3339), minIntermediateLife)
	}
	alg, err := keystore.AlgorithmOf(prev.signer.Public())
	if err != nil {
		return nil, internal("intermediate key algorithm", err)
	}
	// The successor lives where its predecessor does: the database, an HSM
	// or a KMS.
	key, keyRec, err := a.keys.GenerateLike(ctx, KindIntermediate, alg, prevKey)
	if err != nil {
		if errors.Is(err, keybackend.ErrUnavailable) {
			return nil, &Error{Kind: Unavailable, Detail: "the HSM or KMS that holds the intermediate key cannot be reached; retry later", RetryAfter: backendRetryAfter, Err: err}
		}
		return nil, internal("generate the intermediate key", err)
	}
	recorded := false
	defer func() {
		if recorded || keyRec.Backend == keystore.BackendPassphrase {
			return
		}
		// Created in its backend but never recorded: remove it rather than
		// leave a key that nothing names.
		if _, err := a.keys.DestroyInBackend(context.WithoutCancel(ctx), keyRec); err != nil {
			a.log.WarnContext(ctx, "unrecorded successor key left in its backend", "uri", keystore.BackendURI(keyRec), "error", err)
		}
	}()
	tmpl := &x509.Certificate{
		Subject:               successorSubject(prev.Cert.Subject, generations),
		NotBefore:             now.Add(-a.cfg.Backdate),
		NotAfter:              notAfter,
		KeyUsage:              prev.Cert.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		IssuingCertificateURL: prev.Cert.IssuingCertificateURL,
		CRLDistributionPoints: prev.Cert.CRLDistributionPoints,
	}
	// The root key is in memory for this one signature only.
	cert, err := func() (*x509.Certificate, error) {
		rootKey, err := a.keys.Unwrap(ctx, rootRec.KeyID, actor)
		if err != nil {
			return nil, internal("unwrap the root key", err)
		}
		defer keystore.Zero(rootKey)
		c, err := createCA(tmpl, root, rootKey, key.Public(), a.linter)
		if err != nil {
			return nil, internal("sign the new intermediate", err)
		}
		return c, nil
	}()
	if err != nil {
		return nil, err
	}
	next, err := newSigningIssuer(Issuer{ID: IssuerID(cert), Cert: cert}, keyRec.ID, key)
	if err != nil {
		return nil, internal("new intermediate", err)
	}
	rec := store.CertRecord{
		IssuerID: rootRec.ID, Serial: SerialString(cert.SerialNumber), Subject: cert.Subject.String(), SANs: []string{},
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, KeyAlgorithm: keyRec.Algorithm, Profile: KindIntermediate,
		Requester: actor, Channel: ChannelInternal, DER: cert.Raw, Created: now,
	}
	var managedDue int64
	_, err = a.record(ctx, Issuance{Cert: rec, Actor: actor, NewKey: &keyRec, Time: now,
		InTx: func(stx store.Tx, _ store.CertRecord) error {
			tx := Tx(stx)
			if err := tx.InsertIssuer(store.IssuerRecord{ID: next.ID, Kind: KindIntermediate, ParentID: rootRec.ID, KeyID: keyRec.ID,
				CertDER: cert.Raw, State: store.KeyActive, Created: now}); err != nil {
				return err
			}
			if err := tx.TouchKey(rootRec.KeyID, now); err != nil {
				return err
			}
			if err := tx.SetIssuerState(prev.ID, store.KeyActive, store.KeyRetired); err != nil {
				return err
			}
			if err := keystore.Retire(tx, prevKey, actor, now, map[string]string{"reason": "intermediate rotation", "successor": keyRec.ID}); err != nil {
				return err
			}
			var err error
			if managedDue, err = tx.ManagedIssuerDue(next.ID, now); err != nil {
				return err
			}
			_, err = tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionIntermediateRotated, Target: next.ID,
				Detail: map[string]string{"previous": prev.ID, "key": keyRec.ID, "previous_key": prev.keyID, "serial": rec.Serial,
					"not_after": cert.NotAfter.Format(time.RFC3339), "reason": reason, "managed_due": strconv.FormatInt(managedDue, 10)}})
			return err
		}})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(Conflict, "intermediate %s is no longer active; nothing was rotated", prev.ID)
	}
	if err != nil {
		return nil, internal("record the intermediate rotation", err)
	}
	recorded = true
	a.issMu.Lock()
	a.signing[next.ID] = next
	a.known[next.ID] = next.Issuer
	a.active.Store(next)
	a.issMu.Unlock()
	a.log.InfoContext(ctx, "intermediate rotated", "issuer", next.ID, "previous", prev.ID, "key_id", keyRec.ID,
		"not_after", cert.NotAfter, "managed_due", managedDue, "reason", reason)
	a.issuersChanged(ctx)
	return &IntermediateRotation{Previous: prev.Issuer, Current: next.Issuer, KeyID: keyRec.ID, ManagedDue: managedDue}, nil
}

// generation matches a trailing generation number in a common name.
var generation = regexp.MustCompile(` [0-9]+$`)

// successorSubject names the next intermediate after prev, n intermediates
// having been recorded: the same name with generation n+1, so that two intermediates never share a subject and
// CRLs and OCSP requests name their issuer unambiguously.
func successorSubject(prev pkix.Name, n int) pkix.Name {
	next := prev
	next.Names, next.ExtraNames = nil, nil
	next.CommonName = generation.ReplaceAllString(prev.CommonName, "") + " " + strconv.Itoa(n+1)
	return next
}

// RetireIntermediates destroys the key of every intermediate retired by a
// rotation whose certificates (the CA's own, internalProfiles, aside) all
// expired at least grace ago, so that the CRL listing them as they
// expired has been served its full validity: the key is crypto-shredded
// (key.destroyed), the issuer's state becomes destroyed, its OCSP responder
// keys are retired and destroyed with it, and ca.intermediate.destroyed is
// audited, in one transaction per intermediate. It returns the ids
// destroyed. The issuer stays in the record: its certificate is public and
// old chains still name it.
func (x *Intermediates) RetireIntermediates(ctx context.Context, actor string, grace time.Duration) ([]string, error) {
	a := x.a
	a.rotateMu.Lock()
	defer a.rotateMu.Unlock()
	actor = cmp.Or(actor, "system")
	active := a.Intermediate().ID
	var destroyed []string
	defer func() {
		if len(destroyed) > 0 {
			a.issuersChanged(ctx)
		}
	}()
	for _, iss := range a.ServingIssuers() {
		if iss.ID == active {
			continue
		}
		last, err := a.st.IssuerLastExpiry(ctx, iss.ID, internalProfiles...)
		if err != nil {
			return destroyed, internal("last expiry", err)
		}
		now := a.clk.Now().UTC()
		if now.Before(last.Add(grace)) {
			continue
		}
		if err := a.destroyIntermediate(ctx, iss, actor, last, now); err != nil {
			return destroyed, err
		}
		destroyed = append(destroyed, iss.ID)
	}
	return destroyed, nil
}

func (a *Authority) destroyIntermediate(ctx context.Context, iss Issuer, actor string, last, now time.Time) error {
	keyID := a.issuerKeyID(iss.ID)
	keyRec, err := a.st.Key(ctx, keyID)
	if err != nil {
		return internal("load the intermediate's key", err)
	}
	// Its responder keys answer for nothing once it is gone: those of every
	// responder certificate it issued, expired or not.
	responders := map[string]bool{} // by SPKI hash
	err = eachCertificate(ctx, a.st, store.CertFilter{Profile: ocspResponderProfile, IssuerID: iss.ID}, func(c store.CertRecord) {
		responders[string(c.SPKIHash)] = true
	})
	if err != nil {
		return internal("list ocsp responder certificates", err)
	}
	// A key held in an HSM or KMS is destroyed there first: no backend call
	// runs inside the transaction, and a retry after a failed one is
	// harmless (see keybackend.Keys.DestroyKey).
	backendDetail, err := a.keys.DestroyInBackend(ctx, keyRec)
	if err != nil {
		return internal("destroy the intermediate's key in its backend", err)
	}
	err = update(ctx, a.st, func(tx Tx) error {
		keys, err := tx.Keys()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Purpose != KeyPurposeOCSP || k.State == store.KeyDestroyed || !responders[string(store.SPKIHash(k.PublicKey))] {
				continue
			}
			if k.State == store.KeyActive {
				if err := keystore.Retire(tx, k, actor, now, map[string]string{"reason": "issuer destroyed", "issuer": iss.ID}); err != nil {
					return err
				}
			}
			if err := keystore.Destroy(tx, k, actor, "issuer "+iss.ID+" destroyed", now); err != nil {
				return err
			}
		}
		if err := keystore.DestroyWith(tx, keyRec, actor, "last certificate of intermediate "+iss.ID+" expired", now, backendDetail); err != nil {
			return err
		}
		if err := tx.SetIssuerState(iss.ID, store.KeyRetired, store.KeyDestroyed); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionIntermediateDestroyed, Target: iss.ID,
			Detail: map[string]string{"key": keyID, "last_expiry": last.Format(time.RFC3339)}})
		return err
	})
	if err != nil {
		return internal("destroy intermediate "+iss.ID, err)
	}
	a.issMu.Lock()
	delete(a.signing, iss.ID)
	a.issMu.Unlock()
	a.log.InfoContext(ctx, "retired intermediate destroyed", "issuer", iss.ID, "key_id", keyID, "last_expiry", last)
	return nil
}

// ParseLifetimePoint reads what, a point in a lifetime, as a fraction
// strictly between 0 and 1 (2/3, 0.5, 75%); empty is def.
func ParseLifetimePoint(what, s, def string) (*big.Rat, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		in = def
	}
	r := new(big.Rat)
	var ok bool
	if pct, isPct := strings.CutSuffix(in, "%"); isPct {
		_, ok = r.SetString(strings.TrimSpace(pct))
		r.Quo(r, big.NewRat(100, 1))
	} else {
		_, ok = r.SetString(in)
	}
	if !ok || r.Sign() <= 0 || r.Cmp(big.NewRat(1, 1)) >= 0 {
		return nil, errorf(Malformed, "%s %q: want a fraction of the lifetime between 0 and 1, such as 2/3, 0.5 or 75%%", what, s)
	}
	return r, nil
}

// LifetimePoint is notBefore plus the fraction r of the lifetime up to
// notAfter, to the nanosecond below.
func LifetimePoint(notBefore, notAfter time.Time, r *big.Rat) time.Time {
	life := big.NewInt(int64(notAfter.Sub(notBefore)))
	life.Mul(life, r.Num())
	life.Quo(life, r.Denom())
	return notBefore.Add(time.Duration(life.Int64()))
}
