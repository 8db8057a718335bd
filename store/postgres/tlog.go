package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Transparency log statements; see migrations/0012_transparency_log.sql.
const (
	qLogSize       = "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries"
	qInsertLogHead = "INSERT INTO log_heads (size, time, root_hash, key_id, signature) VALUES (?, ?, ?, ?, ?)"
	qLeafHash      = "SELECT leaf_hash FROM log_entries WHERE idx = ?"
	qNodeHash      = "SELECT hash FROM log_nodes WHERE id = ?"
	qLeafCert      = "SELECT cert_id FROM log_entries WHERE idx = ?"
	qLatestLogHead = "SELECT size, time, root_hash, key_id, signature FROM log_heads ORDER BY size DESC, time DESC LIMIT 1"

	logEntryColumns = "e.idx, e.leaf_hash, c.id, c.issuer_id, c.serial, c.created, c.der"
	logEntryJoin    = " FROM log_entries e JOIN certificates c ON c.id = e.cert_id"
)

// newRangeFactory returns the compact-range factory of RFC 9162 hashing.
func newRangeFactory() *compact.RangeFactory {
	return &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
}

// rowQuerier is what reading a node needs: the pool and a transaction both have it.
type rowQuerier interface {
	QueryRow(ctx context.Context, query string, args ...any) pgx.Row
}

// logNode reads the stored hash of a completed subtree: a leaf hash at level
// 0, an interior node above.
func logNode(ctx context.Context, q rowQuerier, id compact.NodeID) ([]byte, error) {
	var h []byte
	var err error
	if id.Level == 0 {
		err = q.QueryRow(ctx, rebind(qLeafHash), id.Index).Scan(&h)
	} else {
		err = q.QueryRow(ctx, rebind(qNodeHash), store.NodeKey(id.Level, id.Index)).Scan(&h)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("log node (level %d, index %d) is missing: %w", id.Level, id.Index, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read log node (level %d, index %d): %w", id.Level, id.Index, err)
	}
	return h, nil
}

func logNodes(ctx context.Context, q rowQuerier, ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := logNode(ctx, q, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return hashes, nil
}

// loadRange reads the compact range [0, size): the O(log size) perfect
// subtrees on the right border of the tree of that size.
func loadRange(ctx context.Context, q rowQuerier, rf *compact.RangeFactory, size uint64) (*compact.Range, error) {
	hashes, err := logNodes(ctx, q, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, fmt.Errorf("load log range: %w", err)
	}
	r, err := rf.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("load log range: %w", err)
	}
	return r, nil
}

// rangeRoot is r's root hash, EmptyRoot for the empty tree.
func rangeRoot(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return audit.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

func cloneRange(rf *compact.RangeFactory, r *compact.Range) *compact.Range {
	c, err := rf.NewRange(r.Begin(), r.End(), slices.Clone(r.Hashes()))
	if err != nil { // a range's own hashes always fit its bounds
		panic(fmt.Sprintf("store: clone log range: %v", err))
	}
	return c
}

// syncLog makes the writer's range the committed tree, inside tx under the
// write lock: reloaded only when another process appended since (or a
// failed commit left it unknown), as syncHead does for the audit head.
func (g *groupCommit) syncLog(ctx context.Context, tx pgx.Tx) error {
	var size uint64
	if err := tx.QueryRow(ctx, qLogSize).Scan(&size); err != nil {
		return fmt.Errorf("log size: %w", err)
	}
	if g.tree != nil && g.tree.End() == size {
		return nil
	}
	r, err := loadRange(ctx, tx, g.rf, size)
	if err != nil {
		return err
	}
	g.tree = r
	return nil
}

// logLeaf is a certificate's leaf and the subtrees it completes, to be
// written with the certificate.
type logLeaf struct {
	index      uint64
	hash       []byte
	nodeIDs    []int64
	nodeHashes [][]byte
}

// nextLeaf appends certificate c to the writer's log range as the next
// leaf and returns what to store. The savepoint that holds the certificate
// holds these rows too; apply restores the range if it rolls back, so the
// index is not consumed.
func (t *pgTx) nextLeaf(c *store.CertRecord) (logLeaf, error) {
	g := t.g
	if err := g.lockChain(t.ctx, t.tx); err != nil {
		return logLeaf{}, err
	}
	if g.logSaved == nil {
		g.logSaved = cloneRange(g.rf, g.tree)
	}
	l := logLeaf{index: g.tree.End(), hash: audit.LeafHash(audit.LogLeaf(fromNanos(nanos(c.Created)), c.DER))}
	l.nodeIDs, l.nodeHashes = []int64{}, [][]byte{}
	if err := g.tree.Append(l.hash, func(id compact.NodeID, h []byte) {
		if id.Level > 0 {
			l.nodeIDs, l.nodeHashes = append(l.nodeIDs, store.NodeKey(id.Level, id.Index)), append(l.nodeHashes, h)
		}
	}); err != nil {
		return logLeaf{}, fmt.Errorf("log certificate: %w", err)
	}
	return l, nil
}

// SignTreeHead implements Store.
func (s *Store) SignTreeHead(ctx context.Context, maxAge time.Duration) (audit.TreeHead, bool, error) {
	var head audit.TreeHead
	var signed bool
	err := s.WithTx(ctx, func(tx store.Tx) error {
		var err error
		head, signed, err = tx.(*pgTx).signTreeHead(maxAge)
		return err
	})
	if err != nil {
		return audit.TreeHead{}, false, err
	}
	return head, signed, nil
}

func (t *pgTx) signTreeHead(maxAge time.Duration) (audit.TreeHead, bool, error) {
	g := t.g
	cp := g.checkpointer()
	if cp.SignTree == nil {
		return audit.TreeHead{}, false, errors.New("sign tree head: no signer configured")
	}
	if err := g.lockChain(t.ctx, t.tx); err != nil {
		return audit.TreeHead{}, false, err
	}
	size := g.tree.End()
	root, err := rangeRoot(g.tree)
	if err != nil {
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: %w", err)
	}
	last, err := scanTreeHead(t.queryRow(qLatestLogHead))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: %w", err)
	case last.Size > size:
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: a head of size %d is stored but the log has %d leaves (leaves deleted?)", last.Size, size)
	case last.Size == size && string(last.RootHash) != string(root):
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: the stored head of size %d has another root than the log (log altered?)", size)
	case last.Size == size && g.clk.Since(last.Time) < maxAge:
		return last, false, nil
	}
	h, err := cp.SignTree(size, root)
	if err != nil {
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: %w", err)
	}
	if _, err := t.exec("store tree head", qInsertLogHead, h.Size, nanos(h.Time), h.RootHash, h.KeyID, h.Signature); err != nil {
		return audit.TreeHead{}, false, err
	}
	g.signedHeads = append(g.signedHeads, h)
	return h, true, nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanTreeHead(r rowScanner) (audit.TreeHead, error) {
	var h audit.TreeHead
	var at int64
	err := r.Scan(&h.Size, &at, &h.RootHash, &h.KeyID, &h.Signature)
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.TreeHead{}, store.ErrNotFound
	}
	if err != nil {
		return audit.TreeHead{}, fmt.Errorf("read tree head: %w", err)
	}
	h.Time = fromNanos(at)
	return h, nil
}

// LogSize implements Store.
func (s *Store) LogSize(ctx context.Context) (uint64, error) {
	var n uint64
	if err := s.queryRow(ctx, qLogSize).Scan(&n); err != nil {
		return 0, fmt.Errorf("log size: %w", err)
	}
	return n, nil
}

// checkSize returns store.ErrNotFound unless size <= the committed log size.
func (s *Store) checkSize(ctx context.Context, size uint64) error {
	n, err := s.LogSize(ctx)
	if err != nil {
		return err
	}
	if size > n {
		return fmt.Errorf("tree size %d exceeds the log's %d leaves: %w", size, n, store.ErrNotFound)
	}
	return nil
}

// LogRoot implements Store.
func (s *Store) LogRoot(ctx context.Context, size uint64) ([]byte, error) {
	if err := s.checkSize(ctx, size); err != nil {
		return nil, err
	}
	r, err := loadRange(ctx, s.pool, newRangeFactory(), size)
	if err != nil {
		return nil, err
	}
	return rangeRoot(r)
}

// LogInclusionProof implements Store.
func (s *Store) LogInclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("inclusion proof: leaf %d is not in a tree of size %d: %w", index, size, store.ErrNotFound)
	}
	if err := s.checkSize(ctx, size); err != nil {
		return nil, err
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return s.rehash(ctx, nodes)
}

// LogConsistencyProof implements Store.
func (s *Store) LogConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 {
		return nil, fmt.Errorf("consistency proof: first size %d exceeds second %d: %w", size1, size2, store.ErrNotFound)
	}
	if err := s.checkSize(ctx, size2); err != nil {
		return nil, err
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return s.rehash(ctx, nodes)
}

// rehash fetches a proof's stored nodes and folds in its one ephemeral node.
func (s *Store) rehash(ctx context.Context, nodes proof.Nodes) ([][]byte, error) {
	hashes, err := logNodes(ctx, s.pool, nodes.IDs)
	if err != nil {
		return nil, err
	}
	p, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("rehash proof: %w", err)
	}
	if p == nil {
		p = [][]byte{}
	}
	return p, nil
}

func scanLogEntries(rows pgx.Rows) ([]store.LogEntry, error) {
	defer rows.Close()
	var out []store.LogEntry
	for rows.Next() {
		var e store.LogEntry
		var created int64
		if err := rows.Scan(&e.Index, &e.LeafHash, &e.CertID, &e.IssuerID, &e.Serial, &created, &e.DER); err != nil {
			return nil, fmt.Errorf("read log entry: %w", err)
		}
		e.Created = fromNanos(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log entries: %w", err)
	}
	return out, nil
}

// LogEntries implements Store.
func (s *Store) LogEntries(ctx context.Context, start, end uint64) ([]store.LogEntry, error) {
	if end > start+store.MaxLogEntries {
		end = start + store.MaxLogEntries
	}
	if start >= end {
		return []store.LogEntry{}, nil
	}
	rows, err := s.query(ctx, "SELECT "+logEntryColumns+logEntryJoin+
		" WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx", start, end)
	if err != nil {
		return nil, fmt.Errorf("log entries: %w", err)
	}
	out, err := scanLogEntries(rows)
	if out == nil && err == nil {
		out = []store.LogEntry{}
	}
	return out, err
}

// LogEntryBySerial implements Store.
func (s *Store) LogEntryBySerial(ctx context.Context, serial string) (store.LogEntry, error) {
	var certID int64
	err := s.queryRow(ctx, "SELECT id FROM certificates WHERE serial = ? ORDER BY id LIMIT 1", serial).Scan(&certID)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, err)
	}
	idx, err := s.leafOf(ctx, certID)
	if err != nil {
		return store.LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, err)
	}
	es, err := s.LogEntries(ctx, idx, idx+1)
	if err != nil {
		return store.LogEntry{}, err
	}
	if len(es) == 0 {
		return store.LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, store.ErrNotFound)
	}
	return es[0], nil
}

// leafOf finds the leaf of certificate certID. Leaves are appended in
// certificate id order, so a binary search on idx reads O(log n) rows and
// no index on cert_id is needed; a scan covers the one exception, a
// certificate an older process recorded while this version's log was
// already appending (caught up later, out of order).
func (s *Store) leafOf(ctx context.Context, certID int64) (uint64, error) {
	size, err := s.LogSize(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := uint64(0), size
	for lo < hi {
		mid := lo + (hi-lo)/2
		var id int64
		if err := s.queryRow(ctx, qLeafCert, mid).Scan(&id); err != nil {
			return 0, fmt.Errorf("read leaf %d: %w", mid, err)
		}
		switch {
		case id == certID:
			return mid, nil
		case id < certID:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	var idx uint64
	err = s.queryRow(ctx, "SELECT idx FROM log_entries WHERE cert_id = ? LIMIT 1", certID).Scan(&idx)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return idx, err
}

// ScanLog implements Store.
func (s *Store) ScanLog(ctx context.Context, fn func(store.LogEntry) error) error {
	// Pages by index keep no read transaction open across fn calls. A row
	// whose certificate is missing drops out of the join, so the caller sees
	// the gap in Index.
	var next uint64
	for {
		rows, err := s.query(ctx, "SELECT "+logEntryColumns+logEntryJoin+
			" WHERE e.idx >= ? ORDER BY e.idx LIMIT ?", next, store.MaxLogEntries)
		if err != nil {
			return fmt.Errorf("scan log: %w", err)
		}
		page, err := scanLogEntries(rows)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < store.MaxLogEntries {
			return nil
		}
		next = page[len(page)-1].Index + 1
	}
}

// LogNode implements Store.
func (s *Store) LogNode(ctx context.Context, level uint, index uint64) ([]byte, error) {
	return logNode(ctx, s.pool, compact.NewNodeID(level, index))
}

// CertificateCount implements Store.
func (s *Store) CertificateCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.queryRow(ctx, "SELECT COUNT(*) FROM certificates").Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// LatestTreeHead implements Store.
func (s *Store) LatestTreeHead(ctx context.Context) (audit.TreeHead, error) {
	return scanTreeHead(s.queryRow(ctx, qLatestLogHead))
}

// TreeHeadBySize implements Store.
func (s *Store) TreeHeadBySize(ctx context.Context, size uint64) (audit.TreeHead, error) {
	return scanTreeHead(s.queryRow(ctx,
		"SELECT size, time, root_hash, key_id, signature FROM log_heads WHERE size = ? ORDER BY time DESC LIMIT 1", size))
}

// TreeHeads implements Store.
func (s *Store) TreeHeads(ctx context.Context) ([]audit.TreeHead, error) {
	rows, err := s.query(ctx, "SELECT size, time, root_hash, key_id, signature FROM log_heads ORDER BY size, time")
	if err != nil {
		return nil, fmt.Errorf("tree heads: %w", err)
	}
	defer rows.Close()
	var out []audit.TreeHead
	for rows.Next() {
		h, err := scanTreeHead(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tree heads: %w", err)
	}
	return out, nil
}
