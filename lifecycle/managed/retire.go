package managed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Delete stops renewing the managed certificate name. Its current key is
// retired and destroyed when the last certificate issued with it expires,
// as a rotated key is; its certificates stay valid. With destroyKeys every
// key it still holds is destroyed at once (crypto-shredding: bundles can be
// fetched no more) and every unexpired certificate of it is revoked
// (cessationOfOperation): copies of those keys live on the servers that
// fetched them, and a certificate whose key the CA gave up must not outlive
// the decision. One transaction with its audit events (cert.revoked,
// key.retired, key.destroyed, managed.deleted).
func (s *Service) Delete(ctx context.Context, name, actor string, destroyKeys bool) (Cert, error) {
	m, err := s.delete(ctx, name, actorOrSystem(actor), destroyKeys)
	if err != nil {
		s.recordRefusal(ctx, "managed.delete", name, actor, err)
		return Cert{}, err
	}
	return s.view(m, nil), nil
}

// deleteRevocations lists the certificates of the managed certificate name
// that deleting it with its keys revokes: every version unexpired at now
// and not revoked for good (one on hold is revoked for good).
func (s *Service) deleteRevocations(ctx context.Context, name string, now time.Time) ([]store.CertRecord, []store.ManagedVersion, error) {
	vs, err := s.st.ManagedVersions(ctx, name)
	if err != nil {
		return nil, nil, internal("list managed versions", err)
	}
	var recs []store.CertRecord
	var versions []store.ManagedVersion
	for _, v := range vs {
		rec, err := s.st.Certificate(ctx, v.Serial)
		if err != nil {
			return nil, nil, internal("load managed certificate", err)
		}
		if !now.Before(rec.NotAfter) || (!rec.RevokedAt.IsZero() && rec.RevokeReason != ca.ReasonCertificateHold) {
			continue
		}
		recs, versions = append(recs, rec), append(versions, v)
	}
	return recs, versions, nil
}

func (s *Service) delete(ctx context.Context, name, actor string, destroyKeys bool) (store.ManagedRecord, error) {
	m, err := s.active(ctx, name)
	if err != nil {
		return store.ManagedRecord{}, err
	}
	// CRLs and OCSP carry whole seconds; the record keeps what they say.
	now := s.clk.Now().UTC().Truncate(time.Second)
	var toRevoke []store.CertRecord
	var versions []store.ManagedVersion
	if destroyKeys {
		if toRevoke, versions, err = s.deleteRevocations(ctx, name, now); err != nil {
			return store.ManagedRecord{}, err
		}
	}
	mkeys, err := s.st.ManagedKeys(ctx, name)
	if err != nil {
		return store.ManagedRecord{}, internal("list managed keys", err)
	}
	var keys []store.KeyRecord
	for _, mk := range mkeys {
		k, err := s.st.Key(ctx, mk.KeyID)
		if err != nil {
			return store.ManagedRecord{}, internal("load managed key", err)
		}
		if k.State != store.KeyDestroyed {
			keys = append(keys, k)
		}
	}
	revoked := make([]string, len(toRevoke))
	for i, rec := range toRevoke {
		revoked[i] = rec.Serial
	}
	var retired, destroyed []string
	_, err = s.ca.RevokeRecords(ctx, ca.Revocation{Certs: toRevoke, Reason: ca.ReasonCessationOfOperation, Actor: actor,
		Channel: ca.ChannelManaged, Time: now,
		Detail: func(i int) map[string]string {
			return map[string]string{"managed": name, "version": strconv.Itoa(versions[i].Version),
				"cause": "managed certificate deleted with its keys destroyed"}
		},
		InTx: func(stx store.Tx) error {
			var tx Tx = stx // the keys' retirement and destruction are the authority's (stx)
			retired, destroyed = nil, nil
			if err := tx.DeleteManaged(name, now); err != nil {
				return err
			}
			// A superseded version's pending revocation is done now.
			for _, v := range versions {
				if !v.RevokeDue.IsZero() {
					if err := tx.ManagedVersionRevoked(name, v.Version); err != nil {
						return err
					}
				}
			}
			for _, k := range keys {
				if k.State == store.KeyActive {
					if err := s.ca.RetireKey(stx, k, actor, now, map[string]string{"reason": "managed certificate deleted", "managed": name}); err != nil {
						return err
					}
					retired = append(retired, k.ID)
				}
				if destroyKeys {
					if err := s.ca.DestroyKey(stx, k, actor, "managed certificate deleted", now); err != nil {
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
		}})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrNotOnHold):
		return store.ManagedRecord{}, &ca.Error{Kind: ca.Conflict, Detail: fmt.Sprintf("managed certificate %q changed during its deletion; nothing was deleted", name), Err: err}
	case err != nil:
		return store.ManagedRecord{}, internal("delete managed certificate", err)
	}
	m.State, m.Deleted = store.ManagedDeleted, now
	return m, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// DueRevocations returns up to limit superseded versions whose revocation
// is due now, after the cursor.
func (s *Service) DueRevocations(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedVersion, error) {
	vs, err := s.st.DueManagedRevocations(ctx, s.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed revocations", err)
	}
	return vs, nil
}

// DueKeys returns up to limit retired managed keys whose destruction is
// due now, after the cursor.
func (s *Service) DueKeys(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedKey, error) {
	ks, err := s.st.DueManagedKeys(ctx, s.clk.Now(), after, limit)
	if err != nil {
		return nil, internal("due managed key destructions", err)
	}
	return ks, nil
}

// RevokeSuperseded revokes the superseded version v (reason superseded)
// and clears its pending revocation, in one transaction with its
// cert.revoked event; a version already revoked or expired only has its
// pending revocation cleared. It reports whether it revoked.
func (s *Service) RevokeSuperseded(ctx context.Context, v store.ManagedVersion, actor string) (bool, error) {
	actor = actorOrSystem(actor)
	rec, err := s.st.Certificate(ctx, v.Serial)
	if err != nil {
		return false, internal("load superseded managed certificate", err)
	}
	now := s.clk.Now().UTC().Truncate(time.Second)
	var certs []store.CertRecord
	if rec.RevokedAt.IsZero() && now.Before(rec.NotAfter) {
		certs = []store.CertRecord{rec}
	}
	_, err = s.ca.RevokeRecords(ctx, ca.Revocation{Certs: certs, Reason: ca.ReasonSuperseded, Actor: actor,
		Channel: ca.ChannelManaged, Time: now,
		Detail: func(int) map[string]string {
			return map[string]string{"managed": v.Name, "version": strconv.Itoa(v.Version)}
		},
		InTx: func(tx store.Tx) error { return Tx(tx).ManagedVersionRevoked(v.Name, v.Version) }})
	switch {
	case errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrNotFound):
		return false, &ca.Error{Kind: ca.Conflict, Detail: fmt.Sprintf("managed certificate %s changed during its revocation", v.Serial), Err: err}
	case err != nil:
		return false, internal("revoke superseded managed certificate", err)
	}
	return len(certs) > 0, nil
}

// DestroyKey crypto-shreds the retired managed key k, whose last
// certificate has expired (or which was compromised or its managed
// certificate deleted), and clears its pending destruction, in one
// transaction with its key.destroyed event. It refuses the current key of
// an active managed certificate.
func (s *Service) DestroyKey(ctx context.Context, k store.ManagedKey, actor string) error {
	actor = actorOrSystem(actor)
	rec, err := s.st.Key(ctx, k.KeyID)
	if err != nil {
		return internal("load managed key", err)
	}
	if m, err := s.st.Managed(ctx, k.Name); err == nil && m.State == store.ManagedActive && m.KeyID == k.KeyID {
		return errorf(ca.Conflict, "key %s is the current key of managed certificate %q", k.KeyID, k.Name)
	}
	now := s.clk.Now().UTC()
	err = s.st.WithTx(ctx, func(stx store.Tx) error {
		switch rec.State {
		case store.KeyActive:
			if err := s.ca.RetireKey(stx, rec, actor, now, map[string]string{"reason": "managed certificates expired", "managed": k.Name}); err != nil {
				return err
			}
			fallthrough
		case store.KeyRetired:
			if err := s.ca.DestroyKey(stx, rec, actor, "managed certificates expired", now); err != nil {
				return err
			}
		}
		return Tx(stx).ScheduleManagedKeyDestroy(k.KeyID, time.Time{})
	})
	if err != nil {
		return internal("destroy managed key", err)
	}
	return nil
}
