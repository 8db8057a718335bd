package ui

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sigil-ca/sigil/ca"
)

// LogReader is the part of the transparency log the page reads; *ca.Log
// (ca.Authority.Log) implements it.
type LogReader interface {
	TreeHead(ctx context.Context, size uint64, latest bool) (ca.SignedTreeHead, error)
	InclusionProof(ctx context.Context, serial string, treeSize uint64) (ca.Inclusion, error)
}

// CheckedLog is the TransparencyLog of a live CA. It answers the page's
// questions the way an outside auditor would: the tree head's signature
// checked against the root, the inclusion proof checked against the head,
// the whole log recomputed from the certificate records.
type CheckedLog struct {
	log  LogReader
	src  ca.LogSource
	root *x509.Certificate
}

// NewCheckedLog checks the log that log serves and src stores, with root
// as the certifier of the tree heads' signer (the CA's root, as in
// `sigil audit verify --ca-file`).
func NewCheckedLog(log LogReader, src ca.LogSource, root *x509.Certificate) (*CheckedLog, error) {
	if log == nil || src == nil || root == nil {
		return nil, errors.New("transparency log: the log, its store and the root are required")
	}
	return &CheckedLog{log: log, src: src, root: root}, nil
}

// InclusionStatus proves that the certificate with serial is in the
// latest signed tree head and verifies both the head and the proof. What
// does not verify is reported in the Detail, not as an error: the page
// shows it.
func (l *CheckedLog) InclusionStatus(ctx context.Context, serial string) (LogInclusion, error) {
	h, err := l.log.TreeHead(ctx, 0, true)
	if ca.KindOf(err) == ca.NotFound {
		return LogInclusion{Detail: "no signed tree head yet (the log-sign job signs one)"}, nil
	}
	if err != nil {
		return LogInclusion{}, err
	}
	out := LogInclusion{TreeSize: int64(h.Size), RootHash: hex.EncodeToString(h.RootHash)}
	if _, err := ca.VerifySignedTreeHead(h.TreeHead, h.SignerCert, l.root); err != nil {
		out.Detail = fmt.Sprintf("the latest tree head does not verify: %v", err)
		return out, nil
	}
	inc, err := l.log.InclusionProof(ctx, serial, h.Size)
	if e, ok := ca.AsError(err); ok && e.Kind == ca.NotFound {
		out.Detail = e.Detail
		return out, nil
	}
	if err != nil {
		return LogInclusion{}, err
	}
	out.Included, out.LeafIndex = true, int64(inc.Entry.Index)
	// The leaf hash is recomputed from the certificate record, not read.
	if err := ca.VerifyInclusion(h.TreeHead, inc.Entry.Index, inc.Entry.Leaf(), inc.Proof); err != nil {
		out.Detail = fmt.Sprintf("the inclusion proof does not verify: %v", err)
		return out, nil
	}
	out.Verified = true
	return out, nil
}

// VerifyLog recomputes the whole log (ca.VerifyLog) with the heads'
// signer certified by the root; a failure is the Detail of a result that
// is not OK.
func (l *CheckedLog) VerifyLog(ctx context.Context) (LogVerification, error) {
	rep, err := ca.VerifyLog(ctx, l.src, l.root)
	out := LogVerification{TreeSize: int64(rep.Leaves), RootHash: hex.EncodeToString(rep.Root), SignedAt: rep.Newest.Time}
	if err != nil {
		out.Detail = err.Error()
		return out, nil
	}
	out.OK = true
	return out, nil
}
