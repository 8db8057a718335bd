package managed

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Renewal is what one renewal did.
type Renewal struct {
	Name     string
	Version  int
	Serial   string
	Replaced string // the previous version's serial
	KeyID    string
	Rotated  bool   // a new key was generated
	Reason   string // RenewDue, RenewRevoked, RenewIssuer or RenewManual
}

// Renew renews the managed certificate m (as read by Due) if it is due at
// the service's current time: its renewal point has come, its current
// certificate is revoked, or another issuer than the active intermediate
// issued it; or at once when manual. It returns nil, nil when nothing is
// due. The key is rotated per policy, and also when the current certificate
// was revoked for keyCompromise, its key is blocked or no longer active.
// The new key (if any), the certificate, the new version, the retirement
// of the replaced key and the audit events (key.generated, key.retired,
// cert.issued, managed.renewed) are one transaction; the superseded version
// is scheduled for revocation per policy. A renewal that lost a race (m is
// stale) is a Conflict; any other failure is recorded on the managed
// certificate (LastError, managed.renew.failed). It is PrepareRenewal then
// CommitRenewal.
func (s *Service) Renew(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*Renewal, error) {
	p, err := s.PrepareRenewal(ctx, m, actor, manual)
	if err != nil || p == nil {
		return nil, err
	}
	return s.CommitRenewal(ctx, p)
}

// PreparedRenewal is a renewal whose key is generated (sealed) and
// certificate signed, not yet recorded: nothing of it is valid or visible
// until CommitRenewal. It holds no private key in the clear.
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

// PrepareRenewal does the CPU-bound half of Renew: it decides whether m is
// due and, if so, generates its new key (per policy) and builds, lints and
// signs its next certificate, writing nothing. It returns nil, nil when
// nothing is due. A failure is recorded as in Renew. The job runs it on a
// bounded number of goroutines so that renewals never take every CPU from
// API issuance.
func (s *Service) PrepareRenewal(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*PreparedRenewal, error) {
	actor = actorOrSystem(actor)
	p, err := s.prepare(ctx, m, actor, manual)
	if err != nil && ca.KindOf(err) != ca.Conflict && ctx.Err() == nil {
		s.recordFailure(ctx, m.Name, actor, err)
	}
	return p, err
}

// CommitRenewal records p in one transaction (see Renew). A renewal that
// lost a race is a Conflict and records nothing; any other failure is
// recorded as in Renew.
func (s *Service) CommitRenewal(ctx context.Context, p *PreparedRenewal) (*Renewal, error) {
	r, err := s.commit(ctx, p)
	if err != nil && ca.KindOf(err) != ca.Conflict && ctx.Err() == nil {
		s.recordFailure(ctx, p.m.Name, p.actor, err)
	}
	return r, err
}

// RenewNow renews the managed certificate name at once (an operator's
// request) and returns it.
func (s *Service) RenewNow(ctx context.Context, name, actor string) (Cert, error) {
	m, err := s.active(ctx, name)
	if err == nil {
		_, err = s.Renew(ctx, m, actor, true)
	}
	if err != nil {
		s.recordRefusal(ctx, "managed.renew", name, actor, err)
		return Cert{}, err
	}
	return s.Get(ctx, name)
}

func (s *Service) prepare(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*PreparedRenewal, error) {
	start := s.clk.Now()
	now := start.UTC()
	if m.State != store.ManagedActive {
		return nil, errorf(ca.Conflict, "managed certificate %q was deleted", m.Name)
	}
	cur, err := s.st.Certificate(ctx, m.Serial)
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
	case m.IssuerID != s.ca.Intermediate().ID:
		reason = RenewIssuer
	case !now.Before(m.RenewDue):
		reason = RenewDue
	default:
		return nil, nil
	}
	alg, err := s.ca.CheckKeyType(m.Profile, m.KeyType)
	if err != nil {
		return nil, err
	}
	renewAt, err := parseRenewAt(m.RenewAt)
	if err != nil {
		return nil, err
	}
	names, cn, err := ca.NamesFromSANs(m.SANs)
	if err != nil {
		return nil, err
	}
	compromised := revoked && cur.RevokeReason == ca.ReasonKeyCompromise
	rotate := m.RotateEvery == 1 || (m.RotateEvery > 1 && m.KeyUses >= m.RotateEvery) || compromised
	var keyRec store.KeyRecord
	var pub crypto.PublicKey
	if !rotate {
		if pub, rotate, err = s.reusableKey(ctx, m.KeyID); err != nil {
			return nil, err
		}
	}
	keyID, keyUses := m.KeyID, m.KeyUses+1
	if rotate {
		signer, rec, err := s.ca.GenerateKey(ctx, KeyPurpose, alg)
		if err != nil {
			return nil, internal("generate managed key", err)
		}
		keyRec, pub, keyID, keyUses = rec, signer.Public(), rec.ID, 1
	}
	leaf, err := s.ca.SignLeaf(ctx, ca.LeafRequest{Public: pub, Names: names, CN: cn, Validity: m.Validity,
		Profile: m.Profile, Requester: requester(m.Name), Channel: ca.ChannelManaged, Replaces: m.Serial})
	if err != nil {
		return nil, err
	}
	now = leaf.Created
	next := m
	next.Version, next.Serial, next.NotAfter, next.IssuerID = m.Version+1, leaf.Serial, leaf.NotAfter, leaf.IssuerID
	next.KeyID, next.KeyUses, next.LastAttempt = keyID, keyUses, now
	next.RenewDue = ca.LifetimePoint(leaf.NotBefore, leaf.NotAfter, renewAt)
	v := store.ManagedVersion{Name: m.Name, Version: next.Version, Serial: leaf.Serial, IssuerID: leaf.IssuerID,
		KeyID: keyID, Created: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, State: store.VersionCurrent, Reason: reason}
	// The superseded version is revoked after the overlap, unless it is
	// revoked already.
	var revokeDue time.Time
	if m.RevokeAfter >= 0 && !revoked {
		revokeDue = now.Add(m.RevokeAfter)
	}
	return &PreparedRenewal{m: m, actor: actor, reason: reason, rotate: rotate, compromised: compromised, keyRec: keyRec,
		leaf: leaf, next: next, version: v, revokeDue: revokeDue, start: start}, nil
}

// reusableKey returns the public key of keyID for another certificate, or
// rotate: a blocked or inactive key is never certified again.
func (s *Service) reusableKey(ctx context.Context, keyID string) (crypto.PublicKey, bool, error) {
	old, err := s.st.Key(ctx, keyID)
	if err != nil {
		return nil, false, internal("load managed key", err)
	}
	pub, err := x509.ParsePKIXPublicKey(old.PublicKey)
	if err != nil {
		return nil, false, internal("managed public key", err)
	}
	switch berr := s.ca.CheckKeyNotBlocked(ctx, pub); {
	case old.State != store.KeyActive, ca.KindOf(berr) == ca.Forbidden:
		return nil, true, nil
	case berr != nil:
		return nil, false, berr
	}
	return pub, false, nil
}

func (s *Service) commit(ctx context.Context, p *PreparedRenewal) (*Renewal, error) {
	m, leaf, next, rotate, reason, revokeDue, actor := p.m, p.leaf, p.next, p.rotate, p.reason, p.revokeDue, p.actor
	keyID, now := next.KeyID, leaf.Created
	iss := ca.Issuance{Cert: leaf, Actor: actor, KeyID: keyID, Time: now, Start: p.start,
		InTx: func(stx store.Tx, _ store.CertRecord) error {
			var tx Tx = stx
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
		iss.Before = func(tx store.Tx) error { return s.retireReplacedKey(tx, m, p.keyRec.ID, actor, now, p.compromised) }
	}
	_, err := s.ca.Record(ctx, iss)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDuplicate):
		return nil, &ca.Error{Kind: ca.Conflict, Detail: fmt.Sprintf("managed certificate %q changed during its renewal; nothing was renewed", m.Name), Err: err}
	case err != nil:
		return nil, internal("record managed renewal", err)
	}
	return &Renewal{Name: m.Name, Version: next.Version, Serial: leaf.Serial, Replaced: m.Serial, KeyID: keyID,
		Rotated: rotate, Reason: reason}, nil
}

// retireReplacedKey retires the key of m that newKeyID replaces, to be
// destroyed when its last certificate expires (at once when compromised).
func (s *Service) retireReplacedKey(tx store.Tx, m store.ManagedRecord, newKeyID, actor string, now time.Time, compromised bool) error {
	var w Tx = tx
	old, err := w.ManagedKeyOf(m.KeyID)
	if err != nil {
		return err
	}
	err = s.ca.RetireKey(tx, store.KeyRecord{ID: m.KeyID, Purpose: KeyPurpose}, actor, now,
		map[string]string{"reason": "rotated", "successor": newKeyID, "managed": m.Name})
	if err != nil && !errors.Is(err, store.ErrNotFound) { // not active: retired before
		return err
	}
	destroy := old.NotAfter
	if compromised || destroy.Before(now) {
		destroy = now
	}
	return w.ScheduleManagedKeyDestroy(m.KeyID, destroy)
}

// recordFailure notes a failed renewal on the managed certificate and
// audits it (managed.renew.failed). Best effort: a failure is logged.
func (s *Service) recordFailure(ctx context.Context, name, actor string, cause error) {
	kind := ca.KindOf(cause)
	if kind == ca.Internal {
		s.log.ErrorContext(ctx, "managed renewal failed", "managed", name, "error", cause)
	}
	msg := refusalDetail(cause)
	now := s.clk.Now().UTC()
	if werr := update(context.WithoutCancel(ctx), s.st, func(tx Tx) error {
		if err := tx.ManagedFailed(name, now, msg); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: audit.ActionManagedRenewFailed, Target: name,
			Detail: map[string]string{"reason": kind.String(), "detail": msg}})
		return err
	}); werr != nil {
		s.log.ErrorContext(ctx, "record managed renewal failure", "managed", name, "error", werr)
	}
}

// MarkIssuerDue makes every active managed certificate whose current
// version was issued by another intermediate than the active one due now
// (after an intermediate rotation), and returns how many. It reads first,
// through an index, and writes only when there is something to mark.
func (s *Service) MarkIssuerDue(ctx context.Context) (int64, error) {
	active := s.ca.Intermediate().ID
	found, err := s.st.ManagedIssuedElsewhere(ctx, active)
	if err != nil {
		return 0, internal("managed certificates of other issuers", err)
	}
	if !found {
		return 0, nil
	}
	now := s.clk.Now().UTC()
	var n int64
	err = update(ctx, s.st, func(tx Tx) error {
		var err error
		n, err = tx.ManagedIssuerDue(active, now)
		return err
	})
	if err != nil {
		return 0, internal("mark managed certificates of other issuers due", err)
	}
	return n, nil
}

// Due returns up to limit active managed certificates due for renewal
// now, after the cursor (see store.Store.DueManaged).
func (s *Service) Due(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedRecord, error) {
	ms, err := s.st.DueManaged(ctx, s.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed certificates", err)
	}
	return ms, nil
}
