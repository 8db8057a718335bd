package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// KeyInfo is one row of the key inventory, without key material.
type KeyInfo struct {
	ID        string    `json:"id"`
	Purpose   string    `json:"purpose"`
	Algorithm string    `json:"algorithm"`
	Backend   string    `json:"backend"`
	URI       string    `json:"uri,omitempty"` // where an HSM or KMS key lives; empty for keys in the database
	State     string    `json:"state"`
	KEK       string    `json:"kek"`
	Created   time.Time `json:"created"`
	Rotated   time.Time `json:"rotated,omitzero"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// KeyInventory lists every key the CA holds.
func (a *Authority) KeyInventory(ctx context.Context) ([]KeyInfo, error) {
	recs, err := a.st.Keys(ctx)
	if err != nil {
		return nil, internal("list keys", err)
	}
	out := make([]KeyInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, KeyInfo{ID: r.ID, Purpose: r.Purpose, Algorithm: r.Algorithm, Backend: r.Backend,
			URI: keystore.BackendURI(r), State: r.State, KEK: r.KEKID, Created: r.Created, Rotated: r.Rotated, LastUsed: r.LastUsed})
	}
	return out, nil
}

// RewrapKEK replaces the passphrase-derived KEK: every data key is re-wrapped
// under a KEK derived from newPassphrase in one transaction. Issuance goes on
// meanwhile. A wrong current passphrase is Unauthorized and changes nothing.
func (a *Authority) RewrapKEK(ctx context.Context, actor string, current, next []byte) (string, int, error) {
	if len(next) < 12 {
		return "", 0, errorf(Malformed, "the new passphrase must be at least 12 characters")
	}
	newParams := keystore.DefaultKDFParams
	if a.cfg.FastKDF {
		newParams = keystore.FastKDFParams
	}
	params, err := newParams(rand.Reader)
	if err != nil {
		return "", 0, internal("kdf params", err)
	}
	id, n, err := a.keys.Rewrap(ctx, actor, current, next, params)
	if errors.Is(err, keystore.ErrWrongPassphrase) {
		// Its reason is not an error kind: the record keeps its own shape.
		a.auditBestEffort(ctx, audit.Event{Time: a.clk.Now(), Actor: actor, Action: audit.ActionKEKRewrapRefused,
			Detail: map[string]string{"reason": "wrong current passphrase"}})
		return "", 0, errorf(Forbidden, "the current passphrase is wrong")
	}
	if err != nil {
		return "", 0, internal("rewrap", err)
	}
	return id, n, nil
}

// Certificate returns the record of one certificate.
func (a *Authority) Certificate(ctx context.Context, serial string) (store.CertRecord, error) {
	c, err := a.st.Certificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return store.CertRecord{}, errorf(NotFound, "no certificate with serial %s", serial)
	}
	if err != nil {
		return store.CertRecord{}, internal("load certificate", err)
	}
	return c, nil
}

// Certificates queries the record.
func (a *Authority) Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error) {
	if f.Now.IsZero() {
		f.Now = a.clk.Now()
	}
	if err := checkStatus(f.Status); err != nil {
		return nil, store.CertCursor{}, err
	}
	out, next, err := a.st.Certificates(ctx, f)
	if err != nil {
		return nil, store.CertCursor{}, internal("list certificates", err)
	}
	return out, next, nil
}

// ScanCertificates streams every certificate f selects to fn, in f.Sort
// order; an error from fn stops the scan and is returned as is.
func (a *Authority) ScanCertificates(ctx context.Context, f store.CertFilter, fn func(store.CertRecord) error) error {
	if f.Now.IsZero() {
		f.Now = a.clk.Now()
	}
	if err := checkStatus(f.Status); err != nil {
		return err
	}
	var fnErr error
	err := a.st.ScanCertificates(ctx, f, func(c store.CertRecord) error {
		if fnErr = fn(c); fnErr != nil {
			return fnErr
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return internal("scan certificates", err)
	}
	return nil
}

// CertificateSummary counts the certificates f selects by group.
func (a *Authority) CertificateSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error) {
	if f.Now.IsZero() {
		f.Now = a.clk.Now()
	}
	if err := checkStatus(f.Status); err != nil {
		return nil, 0, err
	}
	switch by {
	case store.GroupProfile, store.GroupRequester, store.GroupIssuer, store.GroupChannel, store.GroupDay, store.GroupStatus:
	default:
		return nil, 0, errorf(Malformed, "unknown grouping %q (want profile, requester, issuer, channel, day or status)", by)
	}
	rows, total, err := a.st.CertificateSummary(ctx, f, by)
	if err != nil {
		return nil, 0, internal("summarize certificates", err)
	}
	return rows, total, nil
}

func checkStatus(s string) error {
	switch s {
	case "", "valid", "expired", "revoked":
		return nil
	}
	return errorf(Malformed, "unknown status %q (want valid, expired or revoked)", s)
}

// AuditEvents queries the audit log.
func (a *Authority) AuditEvents(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error) {
	out, next, err := a.st.AuditEvents(ctx, f)
	if err != nil {
		return nil, 0, internal("list audit events", err)
	}
	return out, next, nil
}

// Now returns the authority's clock reading.
func (a *Authority) Now() time.Time { return a.clk.Now() }

// CheckNames applies a profile's name policy to identifiers before any CSR
// exists (ACME newOrder): every refused name is one SubError of a Rejected
// error. Syntax errors are Malformed.
func (a *Authority) CheckNames(profileName string, dns []string, ips []net.IP) error {
	prof := a.profile(profileName)
	if prof == nil {
		return errorf(Rejected, "unknown profile %q", profileName)
	}
	for _, d := range dns {
		if err := validDNSName(d, true); err != nil {
			return &Error{Kind: Malformed, Detail: fmt.Sprintf("DNS name %q: %v", d, err),
				Sub: []SubError{{Identifier: d, Kind: Malformed, Detail: err.Error()}}}
		}
	}
	if subs := prof.Names.Check(Names{DNS: dns, IPs: ips}); len(subs) > 0 {
		e := errorf(Rejected, "%s", subs[0].Detail)
		e.Sub = subs
		return e
	}
	return nil
}
