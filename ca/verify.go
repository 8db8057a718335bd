package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// AuditSource is what offline verification reads.
type AuditSource interface {
	ScanAudit(ctx context.Context, fn func(audit.Event) error) error
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	Setting(ctx context.Context, name string) ([]byte, error)
}

// AuditReport summarizes a verified chain.
type AuditReport struct {
	Head        audit.Head
	Events      int64
	Checkpoints int
	// KeysCertified is true when every checkpoint key was certified by the
	// given root; false when no root was given (keys taken from the database).
	KeysCertified bool
}

// VerifyAudit checks every event hash, link and checkpoint signature of src.
// With root set, each audit key must carry a certificate issued by root, so a
// rewritten database cannot substitute its own signing key.
func VerifyAudit(ctx context.Context, src AuditSource, root *x509.Certificate) (AuditReport, error) {
	pubs, err := auditKeys(ctx, src, root)
	if err != nil {
		return AuditReport{}, err
	}
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	v := audit.NewVerifier(cps, pubs)
	if err := src.ScanAudit(ctx, v.Add); err != nil {
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			return AuditReport{}, err
		}
		return AuditReport{}, fmt.Errorf("read audit log: %w", err)
	}
	head, err := v.Finish()
	if err != nil {
		return AuditReport{}, err
	}
	// init signs a checkpoint, so a log with events and none was stripped.
	if v.Count() > 0 && len(cps) == 0 {
		return AuditReport{}, errors.New("the audit log has events but no signed checkpoint: checkpoints were deleted")
	}
	return AuditReport{Head: head, Events: v.Count(), Checkpoints: len(cps), KeysCertified: root != nil}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
