package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

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
	return VerifyAuditWitnessed(ctx, src, root, nil)
}

// VerifyAuditWitnessed is VerifyAudit with checkpoints kept outside the
// database (a witness) checked as if stored. A witnessed checkpoint past the
// end of the chain proves that events were cut from its tail even when the
// checkpoints stored after the cut were deleted with them.
func VerifyAuditWitnessed(ctx context.Context, src AuditSource, root *x509.Certificate, witnessed []audit.Checkpoint) (AuditReport, error) {
	pubs, err := auditKeys(ctx, src, root)
	if err != nil {
		return AuditReport{}, err
	}
	stored, err := src.Checkpoints(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	cps := append(slices.Clone(stored), witnessed...)
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
		return AuditReport{}, behindWitness(err, head, witnessed, pubs)
	}
	// init signs a checkpoint, so a log with events and none was stripped.
	if v.Count() > 0 && len(stored) == 0 {
		return AuditReport{}, errors.New("the audit log has events but no signed checkpoint: checkpoints were deleted")
	}
	return AuditReport{Head: head, Events: v.Count(), Checkpoints: len(stored), KeysCertified: root != nil}, nil
}

// behindWitness adds to err, when an authentic witnessed checkpoint lies
// past the verified head, that the database is behind its witness.
func behindWitness(err error, head audit.Head, witnessed []audit.Checkpoint, pubs map[string]crypto.PublicKey) error {
	var newest *audit.Checkpoint
	for i, c := range witnessed {
		if c.Seq > head.Seq && (newest == nil || c.Seq > newest.Seq) && audit.VerifyCheckpoint(pubs[c.KeyID], c) == nil {
			newest = &witnessed[i]
		}
	}
	if newest == nil {
		return err
	}
	return fmt.Errorf("%w (the database is behind its witness: the chain ends at event %d, a checkpoint of event %d signed %s was witnessed)",
		err, head.Seq, newest.Seq, newest.Time.UTC().Format(time.RFC3339))
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// AuditTailSource is what VerifyAuditTail reads.
type AuditTailSource interface {
	ScanAuditFrom(ctx context.Context, from int64, fn func(audit.Event) error) error
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	Setting(ctx context.Context, name string) ([]byte, error)
}

// VerifyAuditTail checks the chain from its newest signed checkpoint to its
// head, which is what a serving process checks before it appends: that
// checkpoint's signature (its key certified by root, if root is set), that
// the event it signs is stored with the hash it signed, and every event
// after it, hash and link. Events before the checkpoint are left to
// VerifyAudit. A log with events but no checkpoint fails (init signs one).
// The report counts the events read, the checkpoint's included.
// Witnessed checkpoints (kept outside the database) past the newest stored
// one are checked against the tail too, so a tail cut together with its
// stored checkpoints is a break.
func VerifyAuditTail(ctx context.Context, src AuditTailSource, root *x509.Certificate, witnessed []audit.Checkpoint) (AuditReport, error) {
	pubs, err := auditKeys(ctx, src, root)
	if err != nil {
		return AuditReport{}, err
	}
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	var from audit.Checkpoint
	for _, c := range cps {
		if c.Seq > from.Seq {
			from = c
		}
	}
	var v *audit.Verifier
	var n int64
	err = src.ScanAuditFrom(ctx, from.Seq, func(e audit.Event) error {
		n++
		if v != nil {
			return v.Add(e)
		}
		if from.Seq == 0 {
			// No checkpoint: only an empty log is acceptable, checked below.
			v = audit.NewVerifier(witnessed, pubs)
			return v.Add(e)
		}
		if e.Seq != from.Seq {
			return &audit.VerifyError{Seq: from.Seq, Reason: fmt.Sprintf("event %d signed by the newest checkpoint is missing", from.Seq)}
		}
		if pub, ok := pubs[from.KeyID]; !ok {
			return &audit.VerifyError{Seq: from.Seq, Reason: fmt.Sprintf("the newest checkpoint is signed by unknown key %q", from.KeyID)}
		} else if err := audit.VerifyCheckpoint(pub, from); err != nil {
			return &audit.VerifyError{Seq: from.Seq, Reason: fmt.Sprintf("bad signature on the newest checkpoint (key %q): %v", from.KeyID, err)}
		}
		if !bytes.Equal(audit.ComputeHash(e.PrevHash, &e), from.Hash) || !bytes.Equal(e.Hash, from.Hash) {
			return &audit.VerifyError{Seq: from.Seq, Reason: fmt.Sprintf("checkpoint mismatch: event hash differs from the head signed by key %q (chain rewritten)", from.KeyID)}
		}
		v = audit.NewVerifierFrom(audit.Head{Seq: e.Seq, Hash: e.Hash}, witnessed, pubs)
		return nil
	})
	if err != nil {
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			return AuditReport{}, err
		}
		return AuditReport{}, fmt.Errorf("read audit log: %w", err)
	}
	if v == nil && from.Seq == 0 {
		v = audit.NewVerifier(witnessed, pubs) // empty log: a witnessed checkpoint proves a cut
	}
	switch {
	case from.Seq > 0 && v == nil:
		return AuditReport{}, &audit.VerifyError{Seq: from.Seq,
			Reason: fmt.Sprintf("log ends before seq %d, which a checkpoint covers: events were cut", from.Seq)}
	case from.Seq == 0 && n > 0:
		return AuditReport{}, errors.New("the audit log has events but no signed checkpoint: checkpoints were deleted")
	}
	head, err := v.Finish()
	if err != nil {
		return AuditReport{}, behindWitness(err, head, witnessed, pubs)
	}
	return AuditReport{Head: head, Events: n, Checkpoints: len(cps), KeysCertified: root != nil}, nil
}
