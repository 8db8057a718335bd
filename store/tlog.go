package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/ca/audit"
)

// Transparency log statements; see migrations/0012_transparency_log.sql.
const (
	qLogSize        = "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries"
	qInsertLogEntry = "INSERT INTO log_entries (idx, cert_id, leaf_hash) VALUES (?, ?, ?)"
	qInsertLogNode  = "INSERT INTO log_nodes (id, hash) VALUES (?, ?)"
	qInsertLogHead  = "INSERT INTO log_heads (size, time, root_hash, key_id, signature) VALUES (?, ?, ?, ?, ?)"
	qLeafHash       = "SELECT leaf_hash FROM log_entries WHERE idx = ?"
	qNodeHash       = "SELECT hash FROM log_nodes WHERE id = ?"
	qLeafCert       = "SELECT cert_id FROM log_entries WHERE idx = ?"
	qLatestLogHead  = "SELECT size, time, root_hash, key_id, signature FROM log_heads ORDER BY size DESC, time DESC LIMIT 1"

	logEntryColumns = "e.idx, e.leaf_hash, c.id, c.issuer_id, c.serial, c.created, c.der"
	logEntryJoin    = " FROM log_entries e JOIN certificates c ON c.id = e.cert_id"
)

func logWriteQueries() []string {
	return []string{qLogSize, qInsertLogEntry, qInsertLogNode, qInsertLogHead, qLatestLogHead}
}

// MaxLogEntries bounds one LogEntries call.
const MaxLogEntries = 1000

// LogEntry is one leaf of the transparency log and the certificate record
// it commits to. The leaf itself is audit.LogLeaf(Created, DER).
type LogEntry struct {
	Index    uint64
	LeafHash []byte // as stored
	CertID   int64
	IssuerID string
	Serial   string
	Created  time.Time
	DER      []byte
}

// Leaf returns the log leaf the entry's certificate record encodes. Its
// audit.LeafHash equals LeafHash unless one of them was altered.
func (e LogEntry) Leaf() []byte { return audit.LogLeaf(e.Created, e.DER) }

// newRangeFactory returns the compact-range factory of RFC 9162 hashing.
func newRangeFactory() *compact.RangeFactory {
	return &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
}

// NodeKey is the log_nodes id of the completed subtree (level >= 1,
// index): its in-order position, index * 2^(level+1) + 2^level - 1.
func NodeKey(level uint, index uint64) int64 {
	return int64(index<<(level+1) + 1<<level - 1)
}

// rowQuerier is what reading a node needs: *sql.DB and *sql.Tx both have it.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// logNode reads the stored hash of a completed subtree: a leaf hash at level
// 0, an interior node above.
func logNode(ctx context.Context, q rowQuerier, id compact.NodeID) ([]byte, error) {
	var h []byte
	var err error
	if id.Level == 0 {
		err = q.QueryRowContext(ctx, qLeafHash, id.Index).Scan(&h)
	} else {
		err = q.QueryRowContext(ctx, qNodeHash, NodeKey(id.Level, id.Index)).Scan(&h)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("log node (level %d, index %d) is missing: %w", id.Level, id.Index, ErrNotFound)
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
func (g *groupCommit) syncLog(ctx context.Context, tx *sql.Tx) error {
	var size uint64
	ts := tx.StmtContext(ctx, g.stmts[qLogSize])
	defer ts.Close()
	if err := ts.QueryRowContext(ctx).Scan(&size); err != nil {
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

// appendLeaf logs the certificate c just inserted as the next leaf, storing
// the leaf hash and every subtree it completes. The savepoint that holds
// the certificate holds these rows too; apply restores the range if it
// rolls back, so the index is not consumed.
func (t *sqliteTx) appendLeaf(c *CertRecord) error {
	g := t.g
	if g.noLog {
		return nil
	}
	if g.logSaved == nil {
		g.logSaved = cloneRange(g.rf, g.tree)
	}
	lh := audit.LeafHash(audit.LogLeaf(fromNanos(nanos(c.Created)), c.DER))
	idx := g.tree.End()
	if _, err := t.exec("log certificate", qInsertLogEntry, idx, c.ID, lh); err != nil {
		return err
	}
	var nodes []compact.NodeID
	var hashes [][]byte
	if err := g.tree.Append(lh, func(id compact.NodeID, h []byte) {
		if id.Level > 0 {
			nodes, hashes = append(nodes, id), append(hashes, h)
		}
	}); err != nil {
		return fmt.Errorf("log certificate: %w", err)
	}
	for i, id := range nodes {
		if _, err := t.exec("log certificate", qInsertLogNode, NodeKey(id.Level, id.Index), hashes[i]); err != nil {
			return err
		}
	}
	return nil
}

// SignTreeHead implements Store.
func (s *SQLite) SignTreeHead(ctx context.Context, maxAge time.Duration) (audit.TreeHead, bool, error) {
	var head audit.TreeHead
	var signed bool
	err := s.WithTx(ctx, func(tx Tx) error {
		var err error
		head, signed, err = tx.(*sqliteTx).signTreeHead(maxAge)
		return err
	})
	if err != nil {
		return audit.TreeHead{}, false, err
	}
	return head, signed, nil
}

func (t *sqliteTx) signTreeHead(maxAge time.Duration) (audit.TreeHead, bool, error) {
	g := t.g
	cp := g.checkpointer()
	if cp.SignTree == nil {
		return audit.TreeHead{}, false, errors.New("sign tree head: no signer configured")
	}
	size := g.tree.End()
	root, err := rangeRoot(g.tree)
	if err != nil {
		return audit.TreeHead{}, false, fmt.Errorf("sign tree head: %w", err)
	}
	ts := t.tx.StmtContext(t.ctx, g.stmts[qLatestLogHead])
	defer ts.Close()
	last, err := scanTreeHead(ts.QueryRowContext(t.ctx))
	switch {
	case errors.Is(err, ErrNotFound):
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
	if errors.Is(err, sql.ErrNoRows) {
		return audit.TreeHead{}, ErrNotFound
	}
	if err != nil {
		return audit.TreeHead{}, fmt.Errorf("read tree head: %w", err)
	}
	h.Time = fromNanos(at)
	return h, nil
}

// LogSize implements Store.
func (s *SQLite) LogSize(ctx context.Context) (uint64, error) {
	var n uint64
	if err := s.read.QueryRowContext(ctx, qLogSize).Scan(&n); err != nil {
		return 0, fmt.Errorf("log size: %w", err)
	}
	return n, nil
}

// checkSize returns ErrNotFound unless size <= the committed log size.
func (s *SQLite) checkSize(ctx context.Context, size uint64) error {
	n, err := s.LogSize(ctx)
	if err != nil {
		return err
	}
	if size > n {
		return fmt.Errorf("tree size %d exceeds the log's %d leaves: %w", size, n, ErrNotFound)
	}
	return nil
}

// LogRoot implements Store.
func (s *SQLite) LogRoot(ctx context.Context, size uint64) ([]byte, error) {
	if err := s.checkSize(ctx, size); err != nil {
		return nil, err
	}
	r, err := loadRange(ctx, s.read, newRangeFactory(), size)
	if err != nil {
		return nil, err
	}
	return rangeRoot(r)
}

// LogInclusionProof implements Store.
func (s *SQLite) LogInclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("inclusion proof: leaf %d is not in a tree of size %d: %w", index, size, ErrNotFound)
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
func (s *SQLite) LogConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 {
		return nil, fmt.Errorf("consistency proof: first size %d exceeds second %d: %w", size1, size2, ErrNotFound)
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
func (s *SQLite) rehash(ctx context.Context, nodes proof.Nodes) ([][]byte, error) {
	hashes, err := logNodes(ctx, s.read, nodes.IDs)
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

func scanLogEntries(rows *sql.Rows) ([]LogEntry, error) {
	defer rows.Close()
	var out []LogEntry
	for rows.Next() {
		var e LogEntry
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
func (s *SQLite) LogEntries(ctx context.Context, start, end uint64) ([]LogEntry, error) {
	if end > start+MaxLogEntries {
		end = start + MaxLogEntries
	}
	if start >= end {
		return []LogEntry{}, nil
	}
	rows, err := s.read.QueryContext(ctx, "SELECT "+logEntryColumns+logEntryJoin+
		" WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx", start, end)
	if err != nil {
		return nil, fmt.Errorf("log entries: %w", err)
	}
	out, err := scanLogEntries(rows)
	if out == nil && err == nil {
		out = []LogEntry{}
	}
	return out, err
}

// LogEntryBySerial implements Store.
func (s *SQLite) LogEntryBySerial(ctx context.Context, serial string) (LogEntry, error) {
	var certID int64
	err := s.read.QueryRowContext(ctx, "SELECT id FROM certificates WHERE serial = ? ORDER BY id LIMIT 1", serial).Scan(&certID)
	if errors.Is(err, sql.ErrNoRows) {
		return LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, err)
	}
	idx, err := s.leafOf(ctx, certID)
	if err != nil {
		return LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, err)
	}
	es, err := s.LogEntries(ctx, idx, idx+1)
	if err != nil {
		return LogEntry{}, err
	}
	if len(es) == 0 {
		return LogEntry{}, fmt.Errorf("log entry of %s: %w", serial, ErrNotFound)
	}
	return es[0], nil
}

// leafOf finds the leaf of certificate certID. Leaves are appended in
// certificate id order, so a binary search on idx reads O(log n) rows and
// no index on cert_id is needed; a scan covers the one exception, a
// certificate an older process recorded while this version's log was
// already appending (caught up later, out of order).
func (s *SQLite) leafOf(ctx context.Context, certID int64) (uint64, error) {
	size, err := s.LogSize(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := uint64(0), size
	for lo < hi {
		mid := lo + (hi-lo)/2
		var id int64
		if err := s.read.QueryRowContext(ctx, qLeafCert, mid).Scan(&id); err != nil {
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
	err = s.read.QueryRowContext(ctx, "SELECT idx FROM log_entries WHERE cert_id = ? LIMIT 1", certID).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return idx, err
}

// ScanLog implements Store.
func (s *SQLite) ScanLog(ctx context.Context, fn func(LogEntry) error) error {
	// Pages by index keep no read transaction open across fn calls. A row
	// whose certificate is missing drops out of the join, so the caller sees
	// the gap in Index.
	var next uint64
	for {
		rows, err := s.read.QueryContext(ctx, "SELECT "+logEntryColumns+logEntryJoin+
			" WHERE e.idx >= ? ORDER BY e.idx LIMIT ?", next, MaxLogEntries)
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
		if len(page) < MaxLogEntries {
			return nil
		}
		next = page[len(page)-1].Index + 1
	}
}

// LogNode implements Store.
func (s *SQLite) LogNode(ctx context.Context, level uint, index uint64) ([]byte, error) {
	return logNode(ctx, s.read, compact.NewNodeID(level, index))
}

// CertificateCount implements Store.
func (s *SQLite) CertificateCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, "SELECT COUNT(*) FROM certificates").Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// LatestTreeHead implements Store.
func (s *SQLite) LatestTreeHead(ctx context.Context) (audit.TreeHead, error) {
	return scanTreeHead(s.read.QueryRowContext(ctx, qLatestLogHead))
}

// TreeHeadBySize implements Store.
func (s *SQLite) TreeHeadBySize(ctx context.Context, size uint64) (audit.TreeHead, error) {
	return scanTreeHead(s.read.QueryRowContext(ctx,
		"SELECT size, time, root_hash, key_id, signature FROM log_heads WHERE size = ? ORDER BY time DESC LIMIT 1", size))
}

// TreeHeads implements Store.
func (s *SQLite) TreeHeads(ctx context.Context) ([]audit.TreeHead, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT size, time, root_hash, key_id, signature FROM log_heads ORDER BY size, time")
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

// catchUpLog appends, in id order, every certificate recorded after the
// last logged one: at the migration that creates the log, the whole
// history; later, only certificates a process without the log wrote. It
// runs on the write connection before the writer starts, in batches of one
// transaction each, so a crash resumes where it stopped.
func catchUpLog(ctx context.Context, db *sql.DB) error {
	rf := newRangeFactory()
	for {
		n, err := catchUpBatch(ctx, db, rf, 10000)
		if err != nil {
			return fmt.Errorf("backfill transparency log: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

func catchUpBatch(ctx context.Context, db *sql.DB, rf *compact.RangeFactory, limit int) (n int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	rows, err := tx.QueryContext(ctx, `SELECT id, created, der FROM certificates
		WHERE id > (SELECT COALESCE(MAX(cert_id), 0) FROM log_entries) ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return 0, err
	}
	type cert struct {
		id      int64
		created int64
		der     []byte
	}
	var certs []cert
	for rows.Next() {
		var c cert
		if err := rows.Scan(&c.id, &c.created, &c.der); err != nil {
			rows.Close()
			return 0, err
		}
		certs = append(certs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(certs) == 0 {
		return 0, tx.Rollback()
	}
	var size uint64
	if err := tx.QueryRowContext(ctx, qLogSize).Scan(&size); err != nil {
		return 0, err
	}
	r, err := loadRange(ctx, tx, rf, size)
	if err != nil {
		return 0, err
	}
	var visitErr error
	for _, c := range certs {
		lh := audit.LeafHash(audit.LogLeaf(fromNanos(c.created), c.der))
		if _, err := tx.ExecContext(ctx, qInsertLogEntry, r.End(), c.id, lh); err != nil {
			return 0, err
		}
		if err := r.Append(lh, func(id compact.NodeID, h []byte) {
			if id.Level > 0 && visitErr == nil {
				_, visitErr = tx.ExecContext(ctx, qInsertLogNode, NodeKey(id.Level, id.Index), h)
			}
		}); err != nil {
			return 0, err
		}
		if visitErr != nil {
			return 0, visitErr
		}
	}
	return len(certs), tx.Commit()
}
