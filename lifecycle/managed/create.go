package managed

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Create generates a key for spec, issues its first certificate and
// records both with the managed certificate, in one transaction with their
// audit events (key.generated, cert.issued, managed.created). Bad input is
// refused with a *ca.Error, audited, and changes nothing else.
func (s *Service) Create(ctx context.Context, spec Spec) (Cert, error) {
	m, err := s.create(ctx, spec)
	if err != nil {
		s.recordRefusal(ctx, "managed.create", spec.Name, spec.Actor, err)
		return Cert{}, err
	}
	return s.view(m, nil), nil
}

func (s *Service) create(ctx context.Context, spec Spec) (store.ManagedRecord, error) {
	start := s.clk.Now()
	if err := ca.CheckManagedName(spec.Name); err != nil {
		return store.ManagedRecord{}, err
	}
	alg, err := s.ca.CheckKeyType(spec.Profile, spec.KeyType)
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
			return store.ManagedRecord{}, errorf(ca.Malformed, "revoke-previous-after must not be negative")
		}
		revokeAfter = *spec.RevokePreviousAfter
	}
	if spec.Validity < 0 {
		return store.ManagedRecord{}, errorf(ca.Malformed, "negative validity")
	}
	names, cn, err := ca.NamesFromSANs(spec.SANs)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	switch old, err := s.st.Managed(ctx, spec.Name); {
	case err == nil && old.State == store.ManagedDeleted:
		return store.ManagedRecord{}, errorf(ca.Conflict, "managed certificate %q was deleted on %s; its name is not reused",
			spec.Name, old.Deleted.UTC().Format(time.RFC3339))
	case err == nil:
		return store.ManagedRecord{}, errorf(ca.Conflict, "managed certificate %q exists", spec.Name)
	case !errors.Is(err, store.ErrNotFound):
		return store.ManagedRecord{}, internal("load managed certificate", err)
	}
	signer, keyRec, err := s.ca.GenerateKey(ctx, KeyPurpose, alg)
	if err != nil {
		return store.ManagedRecord{}, internal("generate managed key", err)
	}
	leaf, err := s.ca.SignLeaf(ctx, ca.LeafRequest{Public: signer.Public(), Names: names, CN: cn, Validity: spec.Validity,
		Profile: spec.Profile, Requester: requester(spec.Name), Channel: ca.ChannelManaged})
	if err != nil {
		return store.ManagedRecord{}, err
	}
	now := leaf.Created
	actor := actorOrSystem(spec.Actor)
	m := store.ManagedRecord{
		Name: spec.Name, Profile: spec.Profile, SANs: names.Strings(), KeyType: string(alg), Validity: spec.Validity,
		RenewAt: renewAt.RatString(), RotateEvery: rotate, RevokeAfter: revokeAfter, State: store.ManagedActive,
		Created: now, CreatedBy: actor, Version: 1, Serial: leaf.Serial, NotAfter: leaf.NotAfter,
		IssuerID: leaf.IssuerID, KeyID: keyRec.ID, KeyUses: 1, RenewDue: ca.LifetimePoint(leaf.NotBefore, leaf.NotAfter, renewAt),
	}
	v := store.ManagedVersion{Name: m.Name, Version: 1, Serial: leaf.Serial, IssuerID: leaf.IssuerID, KeyID: keyRec.ID,
		Created: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, State: store.VersionCurrent, Reason: RenewCreated}
	_, err = s.ca.Record(ctx, ca.Issuance{Cert: leaf, Actor: actor, NewKey: &keyRec, Time: now, Start: start,
		InTx: func(stx store.Tx, _ store.CertRecord) error {
			var tx Tx = stx
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
		return store.ManagedRecord{}, errorf(ca.Conflict, "managed certificate %q exists", spec.Name)
	}
	if err != nil {
		return store.ManagedRecord{}, internal("record managed certificate", err)
	}
	return m, nil
}
