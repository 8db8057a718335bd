package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// Managed certificates (issue 7) are certificates whose keys Sigil holds:
// the key is generated and sealed by ca/keystore (inventory purpose
// "managed"), certificates are issued through the normal path (profile,
// name policy, lint) on channel "managed", and every version is kept.
// Renewal happens at a fraction of each version's lifetime (RenewAt), at
// once when the current certificate is revoked, or when it was issued by
// another intermediate than the active one; the key is rotated per policy.
// A superseded version may be revoked (reason superseded) after an overlap.
// Every operation is one transaction with its audit events. The private key
// leaves the CA only in a bundle fetched by the identity it belongs to
// (ManagedBundle).
//
// Keys: a key replaced by rotation is retired at once and destroyed
// (crypto-shredded) when the last certificate issued with it expires.
// Deleting a managed certificate stops its renewal and does the same with
// its current key, or destroys every key at once (destroyKeys); its
// certificates are not revoked (revoke them with Revoke if needed).

// KeyPurposeManaged is the inventory purpose of managed-certificate keys.
const KeyPurposeManaged = keystore.PurposeManaged

// DefaultRenewAt is the renewal point of a managed certificate that names
// none: two thirds of its lifetime.
const DefaultRenewAt = "2/3"

// Why a managed version was issued (ManagedVersion.Reason).
const (
	RenewCreated = "created" // the first version
	RenewDue     = "due"     // its predecessor reached its renewal point
	RenewRevoked = "revoked" // its predecessor was revoked
	RenewIssuer  = "issuer"  // its predecessor was issued by another intermediate
	RenewManual  = "manual"  // an operator asked
)

// ManagedSpec asks for a new managed certificate.
type ManagedSpec struct {
	Name     string   // 1-64 of [A-Za-z0-9._-], starting with a letter or digit
	SANs     []string // DNS names, IP addresses, email addresses, URIs
	Profile  string
	KeyType  string        // keystore algorithm name; "" is ecdsa-p256
	Validity time.Duration // 0: the profile default
	// RenewAt is the fraction of each version's lifetime after which it is
	// renewed: "2/3", "0.5" or "75%"; "" is DefaultRenewAt.
	RenewAt string
	// RotateKey is "always" (a new key at every renewal; the default),
	// "never", or "every:N" (a new key at every Nth renewal).
	RotateKey string
	// RevokePreviousAfter, if set, revokes each superseded version (reason
	// superseded) that long after its successor was issued; nil: never.
	RevokePreviousAfter *time.Duration
	Actor               string // who asks, e.g. "token:ab12"
}

// ManagedCert is a managed certificate as the API shows it.
type ManagedCert struct {
	Name                string           `json:"name"`
	Profile             string           `json:"profile"`
	SANs                []string         `json:"sans"`
	KeyType             string           `json:"key_type"`
	Validity            string           `json:"validity,omitempty"`
	RenewAt             string           `json:"renew_at"`
	RotateKey           string           `json:"rotate_key"`
	RevokePreviousAfter string           `json:"revoke_previous_after,omitempty"`
	State               string           `json:"state"`
	Created             time.Time        `json:"created"`
	CreatedBy           string           `json:"created_by"`
	Deleted             time.Time        `json:"deleted,omitzero"`
	Version             int              `json:"version"`
	Serial              string           `json:"serial"`
	KeyID               string           `json:"key_id"`
	NotAfter            time.Time        `json:"not_after"`
	RenewDue            time.Time        `json:"renew_due"`
	LastError           string           `json:"last_error,omitempty"`
	LastAttempt         time.Time        `json:"last_attempt,omitzero"`
	Versions            []ManagedVersion `json:"versions,omitempty"`
}

// ManagedVersion is one certificate of a managed name. State is "current",
// "previous" (the one before, still valid), "superseded", "revoked" or
// "expired".
type ManagedVersion struct {
	Version      int       `json:"version"`
	Serial       string    `json:"serial"`
	KeyID        string    `json:"key_id"`
	IssuerID     string    `json:"issuer"`
	Created      time.Time `json:"created"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	State        string    `json:"state"`
	Reason       string    `json:"reason"`
	RevokeAt     time.Time `json:"revoke_at,omitzero"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

var managedNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckManagedName refuses names that cannot name a managed certificate
// (they appear in URL paths and audit targets).
func CheckManagedName(name string) error {
	if !managedNameRE.MatchString(name) {
		return errorf(Malformed, "managed certificate name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// parseRenewAt reads a renewal point as a fraction strictly between 0 and 1.
func parseRenewAt(s string) (*big.Rat, error) {
	return ParseLifetimePoint("renew-at", s, DefaultRenewAt)
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

// renewPoint is notBefore plus the fraction r of the lifetime, to the
// nanosecond below.
func renewPoint(notBefore, notAfter time.Time, r *big.Rat) time.Time {
	life := big.NewInt(int64(notAfter.Sub(notBefore)))
	life.Mul(life, r.Num())
	life.Quo(life, r.Denom())
	return notBefore.Add(time.Duration(life.Int64()))
}

// parseRotateKey reads a rotation policy as ManagedRecord.RotateEvery.
func parseRotateKey(s string) (int, error) {
	switch in := strings.ToLower(strings.TrimSpace(s)); in {
	case "", "always":
		return 1, nil
	case "never":
		return 0, nil
	default:
		if n, ok := strings.CutPrefix(in, "every:"); ok {
			if v, err := strconv.Atoi(n); err == nil && v >= 1 && v <= 1000 {
				return v, nil
			}
		}
	}
	return 0, errorf(Malformed, "rotate-key %q: want always, never or every:N (N from 1 to 1000)", s)
}

// RotateKeyString renders ManagedRecord.RotateEvery as parseRotateKey reads it.
func RotateKeyString(n int) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "always"
	}
	return "every:" + strconv.Itoa(n)
}

// managedNames sorts SANs into their types and checks them as a CSR's
// names are checked. The common name is the first DNS name (if short enough).
func managedNames(sans []string) (Names, string, error) {
	if len(sans) == 0 {
		return Names{}, "", errorf(Malformed, "a managed certificate needs at least one subject alternative name")
	}
	req := &x509.CertificateRequest{}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return Names{}, "", errorf(Malformed, "empty subject alternative name")
		case net.ParseIP(s) != nil:
			req.IPAddresses = append(req.IPAddresses, net.ParseIP(s))
		case strings.Contains(s, "://"):
			u, err := url.Parse(s)
			if err != nil {
				return Names{}, "", errorf(Malformed, "URI %q: %v", s, err)
			}
			req.URIs = append(req.URIs, u)
		case strings.Contains(s, "@"):
			if _, err := mail.ParseAddress(s); err != nil {
				return Names{}, "", errorf(Malformed, "email address %q is malformed", s)
			}
			req.EmailAddresses = append(req.EmailAddresses, s)
		default:
			req.DNSNames = append(req.DNSNames, s)
		}
	}
	names, _, err := csrNames(req)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == BadCSR {
			return Names{}, "", &Error{Kind: Malformed, Detail: e.Detail, Sub: e.Sub}
		}
		return Names{}, "", err
	}
	cn := ""
	if len(names.DNS) > 0 && len(names.DNS[0]) <= 64 {
		cn = names.DNS[0]
	}
	return names, cn, nil
}

// managedAlgorithm parses a key type and checks that the profile takes it.
func managedAlgorithm(prof *Profile, keyType string) (keystore.Algorithm, error) {
	if keyType == "" {
		keyType = string(keystore.ECDSAP256)
	}
	alg, err := keystore.ParseAlgorithm(keyType)
	if err != nil {
		return "", errorf(Malformed, "%v", err)
	}
	bits := 0
	if n, ok := strings.CutPrefix(string(alg), "rsa-"); ok {
		bits, _ = strconv.Atoi(n)
	}
	if err := prof.checkKey(alg, bits); err != nil {
		return "", errorf(Rejected, "%v", err)
	}
	return alg, nil
}

func managedRequester(name string) string { return "managed:" + name }

// CreateManaged generates a key for spec, issues its first certificate and
// records both with the managed certificate, in one transaction with their
// audit events (key.generated, cert.issued, managed.created). Bad input is
// refused with an *Error, audited, and changes nothing else.
func (a *Authority) CreateManaged(ctx context.Context, spec ManagedSpec) (ManagedCert, error) {
	m, err := a.createManaged(ctx, spec)
	if err != nil {
		a.recordManagedRefusal(ctx, "managed.create", spec.Name, spec.Actor, err)
		return ManagedCert{}, err
	}
	return a.managedView(m, nil), nil
}

func (a *Authority) createManaged(ctx context.Context, spec ManagedSpec) (store.ManagedRecord, error) {
	start := a.clk.Now()
	if err := CheckManagedName(spec.Name); err != nil {
		return store.ManagedRecord{}, err
	}
	prof := a.profile(spec.Profile)
	if prof == nil {
		return store.ManagedRecord{}, errorf(Rejected, "unknown profile %q", spec.Profile)
	}
	alg, err := managedAlgorithm(prof, spec.KeyType)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	renewAt, err := parseRenewAt(spec.RenewAt)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	rotate, err := parseRotateKey(spec.RotateKey)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	revokeAfter := time.Duration(-1)
	if spec.RevokePreviousAfter != nil {
		if *spec.RevokePreviousAfter < 0 {
			return store.ManagedRecord{}, errorf(Malformed, "revoke-previous-after must not be negative")
		}
		revokeAfter = *spec.RevokePreviousAfter
	}
	if spec.Validity < 0 {
		return store.ManagedRecord{}, errorf(Malformed, "negative validity")
	}
	names, cn, err := managedNames(spec.SANs)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	switch old, err := a.st.Managed(ctx, spec.Name); {
	case err == nil && old.State == store.ManagedDeleted:
		return store.ManagedRecord{}, errorf(Conflict, "managed certificate %q was deleted on %s; its name is not reused",
			spec.Name, old.Deleted.UTC().Format(time.RFC3339))
	case err == nil:
		return store.ManagedRecord{}, errorf(Conflict, "managed certificate %q exists", spec.Name)
	case !errors.Is(err, store.ErrNotFound):
		return store.ManagedRecord{}, internal("load managed certificate", err)
	}
	signer, keyRec, err := a.keys.Generate(KeyPurposeManaged, alg)
	if err != nil {
		return store.ManagedRecord{}, internal("generate managed key", err)
	}
	keyHash, err := KeyHash(signer.Public())
	if err != nil {
		return store.ManagedRecord{}, internal("managed key hash", err)
	}
	leaf, err := a.buildLeaf(a.active.Load(), prof, leafRequest{pub: signer.Public(), alg: alg, keyHash: keyHash, names: names, cn: cn,
		validity: spec.Validity, profile: spec.Profile, requester: managedRequester(spec.Name), channel: ChannelManaged})
	if err != nil {
		return store.ManagedRecord{}, err
	}
	now := leaf.Created
	m := store.ManagedRecord{
		Name: spec.Name, Profile: spec.Profile, SANs: names.Strings(), KeyType: string(alg), Validity: spec.Validity,
		RenewAt: renewAt.RatString(), RotateEvery: rotate, RevokeAfter: revokeAfter, State: store.ManagedActive,
		Created: now, CreatedBy: actorOrSystem(spec.Actor), Version: 1, Serial: leaf.Serial, NotAfter: leaf.NotAfter,
		IssuerID: leaf.IssuerID, KeyID: keyRec.ID, KeyUses: 1, RenewDue: renewPoint(leaf.NotBefore, leaf.NotAfter, renewAt),
	}
	v := store.ManagedVersion{Name: m.Name, Version: 1, Serial: leaf.Serial, IssuerID: leaf.IssuerID, KeyID: keyRec.ID,
		Created: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, State: store.VersionCurrent, Reason: RenewCreated}
	actor := actorOrSystem(spec.Actor)
	_, err = a.Record(ctx, Issuance{Cert: leaf, Actor: actor, NewKey: &keyRec, Time: now, Start: start,
		InTx: func(tx store.Tx, _ store.CertRecord) error {
			if err := tx.InsertManaged(m); err != nil {
				return err
			}
			if err := tx.InsertManagedVersion(v); err != nil {
				return err
			}
			if err := tx.PutManagedKey(keyRec.ID, m.Name, leaf.NotAfter); err != nil {
				return err
			}
			detail := map[string]string{"profile": m.Profile, "sans": strings.Join(m.SANs, ","), "key_type": m.KeyType,
				"key": keyRec.ID, "serial": leaf.Serial, "version": "1", "renew_at": m.RenewAt,
				"rotate_key": RotateKeyString(rotate), "renew_due": m.RenewDue.Format(time.RFC3339)}
			if revokeAfter >= 0 {
				detail["revoke_previous_after"] = revokeAfter.String()
			}
			_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionManagedCreated, Target: m.Name, Detail: detail})
			return err
		}})
	if errors.Is(err, store.ErrDuplicate) {
		return store.ManagedRecord{}, errorf(Conflict, "managed certificate %q exists", spec.Name)
	}
	if err != nil {
		return store.ManagedRecord{}, internal("record managed certificate", err)
	}
	return m, nil
}

// ManagedRenewal is what one renewal did.
type ManagedRenewal struct {
	Name     string
	Version  int
	Serial   string
	Replaced string // the previous version's serial
	KeyID    string
	Rotated  bool   // a new key was generated
	Reason   string // RenewDue, RenewRevoked, RenewIssuer or RenewManual
}

// RenewManaged renews the managed certificate m (as read by DueManaged)
// if it is due at the authority's current time: its renewal point has come,
// its current certificate is revoked, or another issuer than the active
// intermediate issued it; or at once when manual. It returns nil, nil when
// nothing is due. The key is rotated per policy, and also when the current
// certificate was revoked for keyCompromise, its key is blocked or no longer
// active. The new key (if any), the certificate, the new version, the
// retirement of the replaced key and the audit events (key.generated,
// key.retired, cert.issued, managed.renewed) are one transaction; the
// superseded version is scheduled for revocation per policy. A renewal
// that lost a race (m is stale) is a Conflict; any other failure is
// recorded on the managed certificate (LastError, managed.renew.failed).
// It is PrepareManagedRenewal then CommitManagedRenewal.
func (a *Authority) RenewManaged(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*ManagedRenewal, error) {
	p, err := a.PrepareManagedRenewal(ctx, m, actor, manual)
	if err != nil || p == nil {
		return nil, err
	}
	return a.CommitManagedRenewal(ctx, p)
}

// PreparedRenewal is a managed renewal whose key is generated (sealed) and
// certificate signed, not yet recorded: nothing of it is valid or visible
// until CommitManagedRenewal. It holds no private key in the clear.
type PreparedRenewal struct {
	m           store.ManagedRecord
	actor       string
	reason      string
	rotate      bool
	compromised bool
	keyRec      store.KeyRecord // the new key, when rotate
	leaf        store.CertRecord
	next        store.ManagedRecord
	version     store.ManagedVersion
	revokeDue   time.Time
	start       time.Time
}

// Name is the managed certificate the renewal is for.
func (p *PreparedRenewal) Name() string { return p.m.Name }

// PrepareManagedRenewal does the CPU-bound half of RenewManaged: it
// decides whether m is due and, if so, generates its new key (per policy)
// and builds, lints and signs its next certificate, writing nothing. It
// returns nil, nil when nothing is due. A failure is recorded as in
// RenewManaged. The job runs it on a bounded number of goroutines so that
// renewals never take every CPU from API issuance.
func (a *Authority) PrepareManagedRenewal(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*PreparedRenewal, error) {
	actor = actorOrSystem(actor)
	p, err := a.prepareRenewal(ctx, m, actor, manual)
	if err != nil && KindOf(err) != Conflict && ctx.Err() == nil {
		a.recordManagedFailure(ctx, m.Name, actor, err)
	}
	return p, err
}

// CommitManagedRenewal records p in one transaction (see RenewManaged).
// A renewal that lost a race is a Conflict and records nothing; any other
// failure is recorded as in RenewManaged.
func (a *Authority) CommitManagedRenewal(ctx context.Context, p *PreparedRenewal) (*ManagedRenewal, error) {
	r, err := a.commitRenewal(ctx, p)
	if err != nil && KindOf(err) != Conflict && ctx.Err() == nil {
		a.recordManagedFailure(ctx, p.m.Name, p.actor, err)
	}
	return r, err
}

// RenewManagedNow renews the managed certificate name at once (an
// operator's request) and returns it.
func (a *Authority) RenewManagedNow(ctx context.Context, name, actor string) (ManagedCert, error) {
	m, err := a.activeManaged(ctx, name)
	if err == nil {
		_, err = a.RenewManaged(ctx, m, actor, true)
	}
	if err != nil {
		a.recordManagedRefusal(ctx, "managed.renew", name, actor, err)
		return ManagedCert{}, err
	}
	return a.ManagedCert(ctx, name)
}

func (a *Authority) activeManaged(ctx context.Context, name string) (store.ManagedRecord, error) {
	if err := CheckManagedName(name); err != nil {
		return store.ManagedRecord{}, err
	}
	m, err := a.st.Managed(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ManagedRecord{}, errorf(NotFound, "no managed certificate %q", name)
	case err != nil:
		return store.ManagedRecord{}, internal("load managed certificate", err)
	case m.State != store.ManagedActive:
		return store.ManagedRecord{}, errorf(NotFound, "managed certificate %q was deleted", name)
	}
	return m, nil
}

func (a *Authority) prepareRenewal(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*PreparedRenewal, error) {
	start := a.clk.Now()
	now := start.UTC()
	if m.State != store.ManagedActive {
		return nil, errorf(Conflict, "managed certificate %q was deleted", m.Name)
	}
	cur, err := a.st.Certificate(ctx, m.Serial)
	if err != nil {
		return nil, internal("load current managed certificate", err)
	}
	revoked := !cur.RevokedAt.IsZero()
	reason := ""
	switch {
	case manual:
		reason = RenewManual
	case revoked:
		reason = RenewRevoked
	case m.IssuerID != a.Intermediate().ID:
		reason = RenewIssuer
	case !now.Before(m.RenewDue):
		reason = RenewDue
	default:
		return nil, nil
	}
	prof := a.profile(m.Profile)
	if prof == nil {
		return nil, errorf(Rejected, "unknown profile %q", m.Profile)
	}
	alg, err := managedAlgorithm(prof, m.KeyType)
	if err != nil {
		return nil, err
	}
	renewAt, err := parseRenewAt(m.RenewAt)
	if err != nil {
		return nil, err
	}
	names, cn, err := managedNames(m.SANs)
	if err != nil {
		return nil, err
	}
	rotate := m.RotateEvery == 1 || (m.RotateEvery > 1 && m.KeyUses >= m.RotateEvery) ||
		(revoked && cur.RevokeReason == ReasonKeyCompromise)
	var keyRec store.KeyRecord
	var pub any
	if !rotate {
		old, err := a.st.Key(ctx, m.KeyID)
		if err != nil {
			return nil, internal("load managed key", err)
		}
		p, err := x509.ParsePKIXPublicKey(old.PublicKey)
		if err != nil {
			return nil, internal("managed public key", err)
		}
		h, err := KeyHash(p)
		if err != nil {
			return nil, internal("managed key hash", err)
		}
		switch berr := a.checkKeyHash(ctx, h); {
		case old.State != store.KeyActive, KindOf(berr) == Forbidden:
			rotate = true // a blocked or inactive key is never certified again
		case berr != nil:
			return nil, berr
		default:
			pub = p
		}
	}
	keyID, keyUses := m.KeyID, m.KeyUses+1
	if rotate {
		signer, rec, err := a.keys.Generate(KeyPurposeManaged, alg)
		if err != nil {
			return nil, internal("generate managed key", err)
		}
		keyRec, pub, keyID, keyUses = rec, signer.Public(), rec.ID, 1
	}
	keyHash, err := KeyHash(pub)
	if err != nil {
		return nil, internal("managed key hash", err)
	}
	leaf, err := a.buildLeaf(a.active.Load(), prof, leafRequest{pub: pub, alg: alg, keyHash: keyHash, names: names, cn: cn,
		validity: m.Validity, profile: m.Profile, requester: managedRequester(m.Name), channel: ChannelManaged,
		replaces: m.Serial})
	if err != nil {
		return nil, err
	}
	now = leaf.Created
	next := m
	next.Version, next.Serial, next.NotAfter, next.IssuerID = m.Version+1, leaf.Serial, leaf.NotAfter, leaf.IssuerID
	next.KeyID, next.KeyUses, next.LastAttempt = keyID, keyUses, now
	next.RenewDue = renewPoint(leaf.NotBefore, leaf.NotAfter, renewAt)
	v := store.ManagedVersion{Name: m.Name, Version: next.Version, Serial: leaf.Serial, IssuerID: leaf.IssuerID,
		KeyID: keyID, Created: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, State: store.VersionCurrent, Reason: reason}
	// The superseded version is revoked after the overlap, unless it is
	// revoked already.
	var revokeDue time.Time
	if m.RevokeAfter >= 0 && !revoked {
		revokeDue = now.Add(m.RevokeAfter)
	}
	return &PreparedRenewal{m: m, actor: actor, reason: reason, rotate: rotate,
		compromised: revoked && cur.RevokeReason == ReasonKeyCompromise, keyRec: keyRec, leaf: leaf, next: next,
		version: v, revokeDue: revokeDue, start: start}, nil
}

func (a *Authority) commitRenewal(ctx context.Context, p *PreparedRenewal) (*ManagedRenewal, error) {
	m, leaf, next, rotate, reason, revokeDue, actor := p.m, p.leaf, p.next, p.rotate, p.reason, p.revokeDue, p.actor
	keyID, now := next.KeyID, leaf.Created
	iss := Issuance{Cert: leaf, Actor: actor, KeyID: keyID, Time: now, Start: p.start,
		InTx: func(tx store.Tx, _ store.CertRecord) error {
			if err := tx.PutManagedKey(keyID, m.Name, leaf.NotAfter); err != nil {
				return err
			}
			if err := tx.SupersedeManagedVersion(m.Name, m.Version, revokeDue); err != nil {
				return err
			}
			if err := tx.InsertManagedVersion(p.version); err != nil {
				return err
			}
			if err := tx.AdvanceManaged(next, m.Version); err != nil {
				return err
			}
			detail := map[string]string{"version": strconv.Itoa(next.Version), "serial": leaf.Serial, "replaces": m.Serial,
				"key": keyID, "rotated": strconv.FormatBool(rotate), "reason": reason,
				"not_after": leaf.NotAfter.Format(time.RFC3339), "renew_due": next.RenewDue.Format(time.RFC3339)}
			if !revokeDue.IsZero() {
				detail["revoke_previous_at"] = revokeDue.Format(time.RFC3339)
			}
			_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionManagedRenewed, Target: m.Name, Detail: detail})
			return err
		}}
	if rotate {
		iss.NewKey = &p.keyRec
		iss.Before = func(tx store.Tx) error { return a.retireManagedKeyTx(tx, m, p.keyRec.ID, actor, now, p.compromised) }
	}
	_, err := a.Record(ctx, iss)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDuplicate):
		return nil, &Error{Kind: Conflict, Detail: fmt.Sprintf("managed certificate %q changed during its renewal; nothing was renewed", m.Name), Err: err}
	case err != nil:
		return nil, internal("record managed renewal", err)
	}
	return &ManagedRenewal{Name: m.Name, Version: next.Version, Serial: leaf.Serial, Replaced: m.Serial, KeyID: keyID,
		Rotated: rotate, Reason: reason}, nil
}

// retireManagedKeyTx retires the key of m that newKeyID replaces, to be
// destroyed when its last certificate expires (at once when compromised).
func (a *Authority) retireManagedKeyTx(tx store.Tx, m store.ManagedRecord, newKeyID, actor string, now time.Time, compromised bool) error {
	old, err := tx.ManagedKeyOf(m.KeyID)
	if err != nil {
		return err
	}
	err = keystore.Retire(tx, store.KeyRecord{ID: m.KeyID, Purpose: KeyPurposeManaged}, actor, now,
		map[string]string{"reason": "rotated", "successor": newKeyID, "managed": m.Name})
	if err != nil && !errors.Is(err, store.ErrNotFound) { // not active: retired before
		return err
	}
	destroy := old.NotAfter
	if compromised || destroy.Before(now) {
		destroy = now
	}
	return tx.ScheduleManagedKeyDestroy(m.KeyID, destroy)
}

// recordManagedFailure notes a failed renewal on the managed certificate
// and audits it (managed.renew.failed). Best effort: a failure is logged.
func (a *Authority) recordManagedFailure(ctx context.Context, name, actor string, cause error) {
	msg := "internal error"
	kind := KindOf(cause)
	var e *Error
	if errors.As(cause, &e) && kind != Internal {
		msg = e.Detail
	}
	if kind == Internal {
		a.log.ErrorContext(ctx, "managed renewal failed", "managed", name, "error", cause)
	}
	now := a.clk.Now().UTC()
	if werr := a.st.WithTx(context.WithoutCancel(ctx), func(tx store.Tx) error {
		if err := tx.ManagedFailed(name, now, msg); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionManagedRenewFailed, Target: name,
			Detail: map[string]string{"reason": kind.String(), "detail": msg}})
		return err
	}); werr != nil {
		a.log.ErrorContext(ctx, "record managed renewal failure", "managed", name, "error", werr)
	}
}

// recordManagedRefusal audits a refused managed-certificate request as
// request.refused. Best effort: a failure is logged.
func (a *Authority) recordManagedRefusal(ctx context.Context, op, name, actor string, err error) {
	target := name
	if CheckManagedName(name) != nil {
		target = "" // never copy unchecked input into the target index
	}
	a.AuditRefusal(ctx, Refusal{Actor: actorOrSystem(actor), Target: target, Detail: map[string]string{"request": op},
		Err: err, Op: op, LogAttrs: []any{"managed", name, "actor", actor}})
}

// DeleteManaged stops renewing the managed certificate name. Its current key
// is retired and destroyed when the last certificate issued with it
// expires, as a rotated key is; its certificates stay valid. With
// destroyKeys every key it still holds is destroyed at once
// (crypto-shredding: bundles can be fetched no more) and every unexpired
// certificate of it is revoked (cessationOfOperation): copies of those keys
// live on the servers that fetched them, and a certificate whose key the CA
// gave up must not outlive the decision. One transaction with its audit
// events (managed.deleted, key.retired, key.destroyed, cert.revoked).
func (a *Authority) DeleteManaged(ctx context.Context, name, actor string, destroyKeys bool) (ManagedCert, error) {
	m, revoked, err := a.deleteManaged(ctx, name, actorOrSystem(actor), destroyKeys)
	if err != nil {
		a.recordManagedRefusal(ctx, "managed.delete", name, actor, err)
		return ManagedCert{}, err
	}
	for _, r := range revoked {
		a.metrics.observeRevoked(ReasonName(r.RevokeReason))
		a.statusChanged(r)
	}
	return a.managedView(m, nil), nil
}

// deleteRevocations lists the certificates of the managed certificate name
// that deleting it with its keys revokes: every version unexpired at now
// and not revoked for good (one on hold is revoked for good).
func (a *Authority) deleteRevocations(ctx context.Context, name string, now time.Time) ([]store.CertRecord, []store.ManagedVersion, error) {
	vs, err := a.st.ManagedVersions(ctx, name)
	if err != nil {
		return nil, nil, internal("list managed versions", err)
	}
	var recs []store.CertRecord
	var versions []store.ManagedVersion
	for _, v := range vs {
		rec, err := a.st.Certificate(ctx, v.Serial)
		if err != nil {
			return nil, nil, internal("load managed certificate", err)
		}
		if !now.Before(rec.NotAfter) || (!rec.RevokedAt.IsZero() && rec.RevokeReason != ReasonCertificateHold) {
			continue
		}
		recs, versions = append(recs, rec), append(versions, v)
	}
	return recs, versions, nil
}

func (a *Authority) deleteManaged(ctx context.Context, name, actor string, destroyKeys bool) (store.ManagedRecord, []store.CertRecord, error) {
	m, err := a.activeManaged(ctx, name)
	if err != nil {
		return store.ManagedRecord{}, nil, err
	}
	// CRLs and OCSP carry whole seconds; the record keeps what they say.
	now := a.clk.Now().UTC().Truncate(time.Second)
	var toRevoke []store.CertRecord
	var versions []store.ManagedVersion
	if destroyKeys {
		if toRevoke, versions, err = a.deleteRevocations(ctx, name, now); err != nil {
			return store.ManagedRecord{}, nil, err
		}
	}
	mkeys, err := a.st.ManagedKeys(ctx, name)
	if err != nil {
		return store.ManagedRecord{}, nil, internal("list managed keys", err)
	}
	var keys []store.KeyRecord
	for _, mk := range mkeys {
		k, err := a.st.Key(ctx, mk.KeyID)
		if err != nil {
			return store.ManagedRecord{}, nil, internal("load managed key", err)
		}
		if k.State != store.KeyDestroyed {
			keys = append(keys, k)
		}
	}
	var retired, destroyed, revoked []string
	err = a.st.WithTx(ctx, func(tx store.Tx) error {
		retired, destroyed, revoked = nil, nil, nil
		if err := tx.DeleteManaged(name, now); err != nil {
			return err
		}
		for i, rec := range toRevoke {
			var err error
			if rec.RevokedAt.IsZero() {
				err = tx.RevokeCertificate(rec.IssuerID, rec.Serial, now, ReasonCessationOfOperation, time.Time{})
			} else {
				err = tx.FinalizeHold(rec.IssuerID, rec.Serial, ReasonCessationOfOperation, time.Time{})
			}
			if err != nil {
				return err
			}
			if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionCertRevoked, Target: rec.Serial,
				Detail: map[string]string{"reason": ReasonName(ReasonCessationOfOperation), "issuer": rec.IssuerID,
					"channel": ChannelManaged, "managed": name, "version": strconv.Itoa(versions[i].Version),
					"cause": "managed certificate deleted with its keys destroyed"}}); err != nil {
				return err
			}
			// A superseded version's pending revocation is done now.
			if !versions[i].RevokeDue.IsZero() {
				if err := tx.ManagedVersionRevoked(name, versions[i].Version); err != nil {
					return err
				}
			}
			revoked = append(revoked, rec.Serial)
		}
		for _, k := range keys {
			if k.State == store.KeyActive {
				if err := keystore.Retire(tx, k, actor, now, map[string]string{"reason": "managed certificate deleted", "managed": name}); err != nil {
					return err
				}
				retired = append(retired, k.ID)
			}
			if destroyKeys {
				if err := keystore.Destroy(tx, k, actor, "managed certificate deleted", now); err != nil {
					return err
				}
				destroyed = append(destroyed, k.ID)
				if err := tx.ScheduleManagedKeyDestroy(k.ID, time.Time{}); err != nil {
					return err
				}
				continue
			}
			mk, err := tx.ManagedKeyOf(k.ID)
			if err != nil {
				return err
			}
			if mk.DestroyDue.IsZero() {
				if err := tx.ScheduleManagedKeyDestroy(k.ID, maxTime(mk.NotAfter, now)); err != nil {
					return err
				}
			}
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionManagedDeleted, Target: name,
			Detail: map[string]string{"version": strconv.Itoa(m.Version), "serial": m.Serial,
				"destroy_keys": strconv.FormatBool(destroyKeys), "retired": strings.Join(retired, ","),
				"destroyed": strings.Join(destroyed, ","), "revoked": strings.Join(revoked, ",")}})
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrNotOnHold):
		return store.ManagedRecord{}, nil, &Error{Kind: Conflict, Detail: fmt.Sprintf("managed certificate %q changed during its deletion; nothing was deleted", name), Err: err}
	case err != nil:
		return store.ManagedRecord{}, nil, internal("delete managed certificate", err)
	}
	for i := range toRevoke {
		if toRevoke[i].RevokedAt.IsZero() {
			toRevoke[i].RevokedAt = now
		}
		toRevoke[i].RevokeReason, toRevoke[i].InvalidityDate = ReasonCessationOfOperation, time.Time{}
	}
	m.State, m.Deleted = store.ManagedDeleted, now
	return m, toRevoke, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ManagedCert returns the managed certificate name, deleted or not, with
// every version, newest first.
func (a *Authority) ManagedCert(ctx context.Context, name string) (ManagedCert, error) {
	if err := CheckManagedName(name); err != nil {
		return ManagedCert{}, err
	}
	m, err := a.st.Managed(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return ManagedCert{}, errorf(NotFound, "no managed certificate %q", name)
	}
	if err != nil {
		return ManagedCert{}, internal("load managed certificate", err)
	}
	vs, err := a.st.ManagedVersions(ctx, name)
	if err != nil {
		return ManagedCert{}, internal("load managed versions", err)
	}
	return a.managedView(m, vs), nil
}

// ListManaged returns up to limit managed certificates whose name sorts
// after cursor, by name, and the cursor of the next page ("": no more).
// Deleted ones are listed only if deleted is set.
func (a *Authority) ListManaged(ctx context.Context, cursor string, limit int, deleted bool) ([]ManagedCert, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ms, err := a.st.ManagedList(ctx, cursor, limit+1, deleted)
	if err != nil {
		return nil, "", internal("list managed certificates", err)
	}
	next := ""
	if len(ms) > limit {
		ms = ms[:limit]
		next = ms[limit-1].Name
	}
	out := make([]ManagedCert, 0, len(ms))
	for _, m := range ms {
		out = append(out, a.managedView(m, nil))
	}
	return out, next, nil
}

func (a *Authority) managedView(m store.ManagedRecord, vs []store.ManagedVersion) ManagedCert {
	c := ManagedCert{Name: m.Name, Profile: m.Profile, SANs: m.SANs, KeyType: m.KeyType, RenewAt: m.RenewAt,
		RotateKey: RotateKeyString(m.RotateEvery), State: m.State, Created: m.Created, CreatedBy: m.CreatedBy,
		Deleted: m.Deleted, Version: m.Version, Serial: m.Serial, KeyID: m.KeyID, NotAfter: m.NotAfter,
		RenewDue: m.RenewDue, LastError: m.LastError, LastAttempt: m.LastAttempt}
	if c.SANs == nil {
		c.SANs = []string{}
	}
	if m.Validity > 0 {
		c.Validity = m.Validity.String()
	}
	if m.RevokeAfter >= 0 {
		c.RevokePreviousAfter = m.RevokeAfter.String()
	}
	now := a.clk.Now()
	for _, v := range vs {
		mv := ManagedVersion{Version: v.Version, Serial: v.Serial, KeyID: v.KeyID, IssuerID: v.IssuerID,
			Created: v.Created, NotBefore: v.NotBefore, NotAfter: v.NotAfter, Reason: v.Reason, RevokeAt: v.RevokeDue,
			RevokedAt: v.RevokedAt}
		switch {
		case !v.RevokedAt.IsZero():
			mv.State, mv.RevokeReason = "revoked", ReasonName(v.RevokeReason)
		case !now.Before(v.NotAfter):
			mv.State = "expired"
		case v.Version == m.Version:
			mv.State = "current"
		case v.Version == m.Version-1:
			mv.State = "previous"
		default:
			mv.State = "superseded"
		}
		c.Versions = append(c.Versions, mv)
	}
	return c
}

// MarkManagedIssuerDue makes every active managed certificate whose current
// version was issued by another intermediate than the active one due now
// (after an intermediate rotation), and returns how many. It reads first,
// through an index, and writes only when there is something to mark.
func (a *Authority) MarkManagedIssuerDue(ctx context.Context) (int64, error) {
	active := a.Intermediate().ID
	found, err := a.st.ManagedIssuedElsewhere(ctx, active)
	if err != nil {
		return 0, internal("managed certificates of other issuers", err)
	}
	if !found {
		return 0, nil
	}
	now := a.clk.Now().UTC()
	var n int64
	err = a.st.WithTx(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.ManagedIssuerDue(active, now)
		return err
	})
	if err != nil {
		return 0, internal("mark managed certificates of other issuers due", err)
	}
	return n, nil
}

// DueManaged returns up to limit active managed certificates due for
// renewal now, after the cursor (see store.Store.DueManaged).
func (a *Authority) DueManaged(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedRecord, error) {
	ms, err := a.st.DueManaged(ctx, a.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed certificates", err)
	}
	return ms, nil
}

// DueManagedRevocations returns up to limit superseded versions whose
// revocation is due now, after the cursor.
func (a *Authority) DueManagedRevocations(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedVersion, error) {
	vs, err := a.st.DueManagedRevocations(ctx, a.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed revocations", err)
	}
	return vs, nil
}

// DueManagedKeys returns up to limit retired managed keys whose destruction
// is due now, after the cursor.
func (a *Authority) DueManagedKeys(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedKey, error) {
	ks, err := a.st.DueManagedKeys(ctx, a.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed key destructions", err)
	}
	return ks, nil
}

// RevokeSupersededManaged revokes the superseded version v (reason
// superseded) and clears its pending revocation, in one transaction with
// its cert.revoked event; a version already revoked or expired only has
// its pending revocation cleared. It reports whether it revoked.
func (a *Authority) RevokeSupersededManaged(ctx context.Context, v store.ManagedVersion, actor string) (bool, error) {
	actor = actorOrSystem(actor)
	rec, err := a.st.Certificate(ctx, v.Serial)
	if err != nil {
		return false, internal("load superseded managed certificate", err)
	}
	now := a.clk.Now().UTC().Truncate(time.Second)
	revoke := rec.RevokedAt.IsZero() && now.Before(rec.NotAfter)
	err = a.st.WithTx(ctx, func(tx store.Tx) error {
		if revoke {
			if err := tx.RevokeCertificate(rec.IssuerID, rec.Serial, now, ReasonSuperseded, time.Time{}); err != nil {
				return err
			}
			if _, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionCertRevoked, Target: rec.Serial,
				Detail: map[string]string{"reason": ReasonName(ReasonSuperseded), "issuer": rec.IssuerID, "channel": ChannelManaged,
					"managed": v.Name, "version": strconv.Itoa(v.Version)}}); err != nil {
				return err
			}
		}
		return tx.ManagedVersionRevoked(v.Name, v.Version)
	})
	switch {
	case errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrNotFound):
		return false, &Error{Kind: Conflict, Detail: fmt.Sprintf("managed certificate %s changed during its revocation", v.Serial), Err: err}
	case err != nil:
		return false, internal("revoke superseded managed certificate", err)
	}
	if revoke {
		rec.RevokedAt, rec.RevokeReason = now, ReasonSuperseded
		a.metrics.observeRevoked(ReasonName(ReasonSuperseded))
		a.statusChanged(rec)
	}
	return revoke, nil
}

// DestroyManagedKey crypto-shreds the retired managed key k, whose last
// certificate has expired (or which was compromised or its managed
// certificate deleted), and clears its pending destruction, in one
// transaction with its key.destroyed event. It refuses the current key of
// an active managed certificate.
func (a *Authority) DestroyManagedKey(ctx context.Context, k store.ManagedKey, actor string) error {
	actor = actorOrSystem(actor)
	rec, err := a.st.Key(ctx, k.KeyID)
	if err != nil {
		return internal("load managed key", err)
	}
	if m, err := a.st.Managed(ctx, k.Name); err == nil && m.State == store.ManagedActive && m.KeyID == k.KeyID {
		return errorf(Conflict, "key %s is the current key of managed certificate %q", k.KeyID, k.Name)
	}
	now := a.clk.Now().UTC()
	err = a.st.WithTx(ctx, func(tx store.Tx) error {
		switch rec.State {
		case store.KeyActive:
			if err := keystore.Retire(tx, rec, actor, now, map[string]string{"reason": "managed certificates expired", "managed": k.Name}); err != nil {
				return err
			}
			fallthrough
		case store.KeyRetired:
			if err := keystore.Destroy(tx, rec, actor, "managed certificates expired", now); err != nil {
				return err
			}
		}
		return tx.ScheduleManagedKeyDestroy(k.KeyID, time.Time{})
	})
	if err != nil {
		return internal("destroy managed key", err)
	}
	return nil
}
