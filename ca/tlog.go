package ca

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// TreeHeadMaxAge is how old the latest signed tree head may grow before
// the log-sign job signs the unchanged tree again, so that a monitor can
// tell a quiet log from a stalled one.
const TreeHeadMaxAge = 24 * time.Hour

// LogStore is what the transparency log reads and signs through the store.
type LogStore interface {
	LogSize(ctx context.Context) (uint64, error)
	LogInclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	LogConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error)
	LogEntries(ctx context.Context, start, end uint64) ([]store.LogEntry, error)
	LogEntryBySerial(ctx context.Context, serial string) (store.LogEntry, error)
	SignTreeHead(ctx context.Context, maxAge time.Duration) (audit.TreeHead, bool, error)
	LatestTreeHead(ctx context.Context) (audit.TreeHead, error)
	TreeHeadBySize(ctx context.Context, size uint64) (audit.TreeHead, error)
	Setting(ctx context.Context, name string) ([]byte, error)
}

// SignedTreeHead is a tree head with the certificate of the audit key that
// signed it, so that a client holding only the root can check it
// (VerifySignedTreeHead).
type SignedTreeHead struct {
	audit.TreeHead
	SignerCert []byte // DER, issued by the root
}

// Inclusion is a certificate's leaf and the proof that the tree of
// TreeSize leaves holds it.
type Inclusion struct {
	Entry    store.LogEntry
	TreeSize uint64
	Proof    [][]byte
}

// Log is the transparency log of issued certificates as the authority
// serves it: signed tree heads, inclusion and consistency proofs, entries,
// and a full verification of the live log.
type Log struct{ a *Authority }

// Log returns the authority's transparency log.
func (a *Authority) Log() *Log { return &Log{a: a} }

// SignTreeHead signs a head of the transparency log now, unless the latest
// head has the same size and is younger than maxAge; it reports whether it
// signed.
func (l *Log) SignTreeHead(ctx context.Context, maxAge time.Duration) (SignedTreeHead, bool, error) {
	a := l.a
	h, signed, err := a.st.SignTreeHead(ctx, maxAge)
	if err != nil {
		return SignedTreeHead{}, false, fmt.Errorf("sign tree head: %w", err)
	}
	sth, err := a.withSignerCert(ctx, h)
	return sth, signed, err
}

// TreeHead returns the latest signed tree head (size 0) or the newest one
// of size leaves; NotFound if there is none.
func (l *Log) TreeHead(ctx context.Context, size uint64, latest bool) (SignedTreeHead, error) {
	a := l.a
	var h audit.TreeHead
	var err error
	if latest {
		h, err = a.st.LatestTreeHead(ctx)
	} else {
		h, err = a.st.TreeHeadBySize(ctx, size)
	}
	switch {
	case errors.Is(err, store.ErrNotFound) && latest:
		return SignedTreeHead{}, &Error{Kind: NotFound, Detail: "no tree head is signed yet (the log-sign job signs one)"}
	case errors.Is(err, store.ErrNotFound):
		return SignedTreeHead{}, &Error{Kind: NotFound, Detail: fmt.Sprintf("no signed tree head of size %d", size)}
	case err != nil:
		return SignedTreeHead{}, fmt.Errorf("tree head: %w", err)
	}
	return a.withSignerCert(ctx, h)
}

func (a *Authority) withSignerCert(ctx context.Context, h audit.TreeHead) (SignedTreeHead, error) {
	der, err := a.st.Setting(ctx, AuditCertSetting+h.KeyID)
	if err != nil {
		return SignedTreeHead{}, fmt.Errorf("certificate of audit key %s: %w", h.KeyID, err)
	}
	return SignedTreeHead{TreeHead: h, SignerCert: der}, nil
}

// checkTreeSize refuses a size the log has not reached.
func (a *Authority) checkTreeSize(ctx context.Context, what string, size uint64) error {
	n, err := a.st.LogSize(ctx)
	if err != nil {
		return fmt.Errorf("log size: %w", err)
	}
	if size > n {
		return &Error{Kind: NotFound, Detail: fmt.Sprintf("%s %d is beyond the log, which has %d leaves", what, size, n)}
	}
	return nil
}

// InclusionProof proves that the certificate with serial is in the tree of
// treeSize leaves, or, when treeSize is 0, in the tree of the latest signed
// head. NotFound if no certificate has serial, if the tree is larger than
// the log, or if the certificate was logged after that tree.
func (l *Log) InclusionProof(ctx context.Context, serial string, treeSize uint64) (Inclusion, error) {
	a := l.a
	e, err := a.st.LogEntryBySerial(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return Inclusion{}, &Error{Kind: NotFound, Detail: "no certificate with serial " + serial + " is in the log"}
	}
	if err != nil {
		return Inclusion{}, fmt.Errorf("inclusion proof: %w", err)
	}
	if treeSize == 0 {
		h, err := l.TreeHead(ctx, 0, true)
		if err != nil {
			return Inclusion{}, err
		}
		treeSize = h.Size
	}
	if err := a.checkTreeSize(ctx, "tree_size", treeSize); err != nil {
		return Inclusion{}, err
	}
	if e.Index >= treeSize {
		return Inclusion{}, &Error{Kind: NotFound, Detail: fmt.Sprintf(
			"certificate %s is leaf %d, not in the tree of size %d yet; a later signed tree head will include it", serial, e.Index, treeSize)}
	}
	p, err := a.st.LogInclusionProof(ctx, e.Index, treeSize)
	if err != nil {
		return Inclusion{}, fmt.Errorf("inclusion proof: %w", err)
	}
	return Inclusion{Entry: e, TreeSize: treeSize, Proof: p}, nil
}

// ConsistencyProof proves that the tree of first leaves is a prefix of the
// tree of second leaves. Malformed if first > second, NotFound if second is
// beyond the log.
func (l *Log) ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error) {
	a := l.a
	if first > second {
		return nil, &Error{Kind: Malformed, Detail: fmt.Sprintf("first (%d) must not exceed second (%d)", first, second)}
	}
	if err := a.checkTreeSize(ctx, "second", second); err != nil {
		return nil, err
	}
	p, err := a.st.LogConsistencyProof(ctx, first, second)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return p, nil
}

// LogEntries returns the leaves [start, end), at most store.MaxLogEntries;
// NotFound if start is beyond the log.
func (l *Log) LogEntries(ctx context.Context, start, end uint64) ([]store.LogEntry, error) {
	a := l.a
	if err := a.checkTreeSize(ctx, "start", start); err != nil {
		return nil, err
	}
	es, err := a.st.LogEntries(ctx, start, end)
	if err != nil {
		return nil, fmt.Errorf("log entries: %w", err)
	}
	return es, nil
}

// VerifySignedTreeHead checks that h is signed by the key of signerDER and,
// with root set, that the signer certificate is issued by root and is an
// audit signer (not a CA, digitalSignature). It returns the signer
// certificate.
func VerifySignedTreeHead(h audit.TreeHead, signerDER []byte, root *x509.Certificate) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(signerDER)
	if err != nil {
		return nil, fmt.Errorf("tree head signer certificate: %w", err)
	}
	if root != nil {
		if err := cert.CheckSignatureFrom(root); err != nil {
			return nil, fmt.Errorf("tree head signer %q is not certified by the given root: %w", cert.Subject.CommonName, err)
		}
		if cert.IsCA || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			return nil, fmt.Errorf("tree head signer %q is not an audit signing certificate", cert.Subject.CommonName)
		}
	}
	if err := audit.VerifyTreeHead(cert.PublicKey, h); err != nil {
		return nil, err
	}
	return cert, nil
}

// VerifyInclusion checks that the tree described by h (its Size and
// RootHash) holds leaf at index, by the audit path (RFC 9162 §2.1.3.2). The
// leaf hash is computed here from leaf, never taken from the caller, so a
// proof can only vouch for the bytes the caller holds. It does not check
// h's signature: VerifySignedTreeHead does.
func VerifyInclusion(h audit.TreeHead, index uint64, leaf []byte, path [][]byte) error {
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, h.Size, audit.LeafHash(leaf), path, h.RootHash); err != nil {
		return fmt.Errorf("inclusion proof of leaf %d in the tree of %d leaves: %w", index, h.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree of old is a prefix of the tree of
// cur (RFC 9162 §2.1.4.2): nothing old committed to was removed or
// rewritten. Like VerifyInclusion it checks no signature.
func VerifyConsistency(old, cur audit.TreeHead, path [][]byte) error {
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cur.Size, path, old.RootHash, cur.RootHash); err != nil {
		return fmt.Errorf("consistency proof from %d to %d leaves: %w", old.Size, cur.Size, err)
	}
	return nil
}

// LogSource is what VerifyLog reads: the log, its signed heads, the
// certificate records and the audit keys.
type LogSource interface {
	ScanLog(ctx context.Context, fn func(store.LogEntry) error) error
	LogNode(ctx context.Context, level uint, index uint64) ([]byte, error)
	TreeHeads(ctx context.Context) ([]audit.TreeHead, error)
	CertificateCount(ctx context.Context) (int64, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	Setting(ctx context.Context, name string) ([]byte, error)
}

// LogReport summarizes a verified transparency log.
type LogReport struct {
	Leaves   uint64
	Root     []byte // of all Leaves
	Heads    int    // signed tree heads checked
	Newest   audit.TreeHead
	Verified bool // always true when VerifyLog returns no error
	// KeysCertified is true when the head signing keys were checked
	// against a given root (as in AuditReport).
	KeysCertified bool
}

// LogError names the leaf where the log stops matching what it should be.
type LogError struct {
	Index  uint64
	Reason string
}

func (e *LogError) Error() string {
	return fmt.Sprintf("transparency log broken at leaf %d: %s", e.Index, e.Reason)
}

// VerifyLog recomputes the transparency log from the certificate records
// and checks it against everything stored and signed: each stored leaf
// hash against the leaf its certificate record encodes (issuance time and
// DER), each stored interior node against the recomputed tree, each signed
// tree head's signature (by an audit key, certified by root when root is
// set) and root hash against the recomputed tree of its size, that no head
// is larger than the log, and that every certificate is logged. The first
// discrepancy is returned as a *LogError naming the leaf index (or an error
// naming the head). It only reads, so it may run on a live store.
func VerifyLog(ctx context.Context, src LogSource, root *x509.Certificate) (LogReport, error) {
	return VerifyLogWitnessed(ctx, src, root, nil)
}

// VerifyLogWitnessed is VerifyLog with tree heads kept outside the database
// (a witness) checked as if stored: each must be signed by an audit key and
// match the recomputed tree, and one larger than the log proves leaves were
// cut, although the database lost its copy.
func VerifyLogWitnessed(ctx context.Context, src LogSource, root *x509.Certificate, witnessed []audit.TreeHead) (LogReport, error) {
	// Counted first: certificates issued while the scan runs are logged
	// after it starts, so they can only make the scan longer.
	certs, err := src.CertificateCount(ctx)
	if err != nil {
		return LogReport{}, err
	}
	pubs, err := auditKeys(ctx, src, root)
	if err != nil {
		return LogReport{}, err
	}
	heads, err := src.TreeHeads(ctx)
	if err != nil {
		return LogReport{}, fmt.Errorf("read tree heads: %w", err)
	}
	if len(witnessed) > 0 {
		heads = append(heads, witnessed...)
		slices.SortStableFunc(heads, func(a, b audit.TreeHead) int { return cmp.Compare(a.Size, b.Size) })
	}
	for _, h := range heads {
		pub, ok := pubs[h.KeyID]
		if !ok {
			return LogReport{}, fmt.Errorf("tree head of size %d signed %s: unknown audit key %s", h.Size, h.Time.Format(time.RFC3339), h.KeyID)
		}
		if err := audit.VerifyTreeHead(pub, h); err != nil {
			return LogReport{}, fmt.Errorf("tree head of size %d signed %s: %w", h.Size, h.Time.Format(time.RFC3339), err)
		}
	}
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	tree := rf.NewEmptyRange(0)
	next := 0 // heads[next] is the first head not checked yet (heads are by size)
	checkHeads := func() error {
		for ; next < len(heads) && heads[next].Size == tree.End(); next++ {
			root := audit.EmptyRoot()
			if tree.End() > 0 {
				root, _ = tree.GetRootHash(nil)
			}
			if !bytes.Equal(root, heads[next].RootHash) {
				h := heads[next]
				return &LogError{Index: max(h.Size, 1) - 1, Reason: fmt.Sprintf(
					"the tree head of size %d signed %s has root %x, the log recomputes %x (log rewritten)",
					h.Size, h.Time.Format(time.RFC3339), h.RootHash, root)}
			}
		}
		return nil
	}
	if err := checkHeads(); err != nil {
		return LogReport{}, err
	}
	var nodeErr error
	err = src.ScanLog(ctx, func(e store.LogEntry) error {
		idx := tree.End()
		if e.Index != idx {
			return &LogError{Index: idx, Reason: "leaf missing, or its certificate record deleted"}
		}
		lh := audit.LeafHash(e.Leaf())
		if !bytes.Equal(lh, e.LeafHash) {
			return &LogError{Index: idx, Reason: fmt.Sprintf(
				"stored leaf hash does not match certificate %s as recorded (leaf or certificate altered)", e.Serial)}
		}
		if err := tree.Append(lh, func(id compact.NodeID, h []byte) {
			if id.Level == 0 || nodeErr != nil {
				return
			}
			stored, err := src.LogNode(ctx, id.Level, id.Index)
			switch {
			case errors.Is(err, store.ErrNotFound):
				nodeErr = &LogError{Index: idx, Reason: fmt.Sprintf(
					"stored node (level %d, index %d) is missing (deleted)", id.Level, id.Index)}
			case err != nil:
				nodeErr = fmt.Errorf("read log node (level %d, index %d): %w", id.Level, id.Index, err)
			case !bytes.Equal(stored, h):
				nodeErr = &LogError{Index: idx, Reason: fmt.Sprintf(
					"stored node (level %d, index %d) differs from the recomputed tree (node altered)", id.Level, id.Index)}
			}
		}); err != nil {
			return err
		}
		if nodeErr != nil {
			return nodeErr
		}
		return checkHeads()
	})
	if err != nil {
		var le *LogError
		if errors.As(err, &le) {
			return LogReport{}, err
		}
		return LogReport{}, fmt.Errorf("read log: %w", err)
	}
	if next < len(heads) {
		h := heads[next]
		return LogReport{}, &LogError{Index: tree.End(), Reason: fmt.Sprintf(
			"a tree head of size %d is signed but the log ends after %d leaves (leaves deleted)", h.Size, tree.End())}
	}
	if uint64(certs) > tree.End() {
		return LogReport{}, &LogError{Index: tree.End(), Reason: fmt.Sprintf(
			"%d certificates are recorded but only %d are logged", certs, tree.End())}
	}
	rep := LogReport{Leaves: tree.End(), Heads: len(heads), Verified: true, KeysCertified: root != nil, Root: audit.EmptyRoot()}
	if tree.End() > 0 {
		rep.Root, _ = tree.GetRootHash(nil)
	}
	if len(heads) > 0 {
		rep.Newest = heads[len(heads)-1]
	}
	return rep, nil
}

// VerifyLog checks the live transparency log as the package-level VerifyLog
// does, the head keys certified by this CA's root: "does the log verify
// right now".
func (l *Log) VerifyLog(ctx context.Context, src LogSource) (LogReport, error) {
	a := l.a
	return VerifyLog(ctx, src, a.root.Cert)
}

// auditKeys returns the public audit keys by id; with root set, each must
// carry a certificate issued by root, so that a rewritten database cannot
// bring its own signing key.
func auditKeys(ctx context.Context, src interface {
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	Setting(ctx context.Context, name string) ([]byte, error)
}, root *x509.Certificate) (map[string]crypto.PublicKey, error) {
	keys, err := src.Keys(ctx)
	if err != nil {
		return nil, err
	}
	pubs := map[string]crypto.PublicKey{}
	for _, k := range keys {
		if k.Purpose != "audit" {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("audit key %s: %w", k.ID, err)
		}
		if root != nil {
			der, err := src.Setting(ctx, AuditCertSetting+k.ID)
			if err != nil {
				return nil, fmt.Errorf("audit key %s has no certificate: %w", k.ID, err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("audit key %s certificate: %w", k.ID, err)
			}
			if err := cert.CheckSignatureFrom(root); err != nil {
				return nil, fmt.Errorf("audit key %s is not certified by the given root: %w", k.ID, err)
			}
			if !publicKeysEqual(cert.PublicKey, pub) {
				return nil, fmt.Errorf("audit key %s does not match its certificate", k.ID)
			}
		}
		pubs[k.ID] = pub
	}
	return pubs, nil
}
