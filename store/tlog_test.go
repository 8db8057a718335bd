package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
)

// mth is RFC 9162 §2.1.1's definition of the Merkle tree hash, written out
// recursively over the leaf hashes: the reference the store's incremental,
// node-by-node tree is checked against.
func mth(leafHashes [][]byte) []byte {
	switch n := len(leafHashes); n {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return leafHashes[0]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		h := sha256.New()
		h.Write([]byte{1})
		h.Write(mth(leafHashes[:k]))
		h.Write(mth(leafHashes[k:]))
		return h.Sum(nil)
	}
}

// refLeafHash hashes a leaf without the package under test.
func refLeafHash(leaf []byte) []byte {
	s := sha256.Sum256(append([]byte{0}, leaf...))
	return s[:]
}

// logCerts issues n certificates from writers goroutines at once (so that
// they share group commits), each with its own issuance time.
func logCerts(t *testing.T, s *SQLite, from, n, writers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := from; i < from+n; i++ {
		next <- i
	}
	close(next)
	for range writers {
		wg.Go(func() {
			for i := range next {
				c := testCert("int", fmt.Sprintf("%x", 0x1000+i))
				c.Created = testStart.Add(time.Duration(i) * time.Millisecond)
				if err := s.WithTx(context.Background(), func(tx Tx) error { return issue(tx, &c) }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// allEntries reads the whole log through LogEntries pages, checking that
// indexes are dense and each stored leaf hash is the hash of the leaf its
// certificate encodes.
func allEntries(t *testing.T, s *SQLite) []LogEntry {
	t.Helper()
	ctx := context.Background()
	var out []LogEntry
	for {
		page, err := s.LogEntries(ctx, uint64(len(out)), uint64(len(out))+5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			if e.Index != uint64(len(out)) {
				t.Fatalf("entry %d has index %d", len(out), e.Index)
			}
			if want := refLeafHash(audit.LogLeaf(e.Created, e.DER)); !bytes.Equal(e.LeafHash, want) {
				t.Fatalf("leaf %d hash %x, want %x", e.Index, e.LeafHash, want)
			}
			out = append(out, e)
		}
	}
	return out
}

func leafHashes(es []LogEntry) [][]byte {
	out := make([][]byte, len(es))
	for i, e := range es {
		out[i] = e.LeafHash
	}
	return out
}

// TestLogRollback checks that a transaction that fails after inserting a
// certificate leaves no leaf and consumes no index, while transactions in
// the same group commit, before and after it, are logged back to back.
func TestLogRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	release := holdWriter(t, s)
	refused := errors.New("refused after insert")
	results := make(chan error, 3)
	for i, fail := range []bool{false, true, false} {
		c := testCert("int", fmt.Sprintf("a%d", i))
		go func() {
			results <- s.WithTx(ctx, func(tx Tx) error {
				if err := issue(tx, &c); err != nil {
					return err
				}
				if fail {
					return refused
				}
				return nil
			})
		}()
		waitQueued(t, s, i+1) // keeps the three in order within the batch
	}
	release()
	var failed int
	for range 3 {
		if err := <-results; errors.Is(err, refused) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d transactions refused, want 1", failed)
	}
	es := allEntries(t, s)
	if len(es) != 2 || es[0].Serial != "a0" || es[1].Serial != "a2" {
		t.Fatalf("log holds %v, want a0 then a2", serialsOf(es))
	}
	var nodes int
	if err := s.read.QueryRowContext(ctx, "SELECT COUNT(*) FROM log_nodes").Scan(&nodes); err != nil || nodes != 1 {
		t.Errorf("%d interior nodes (%v), want 1 (the root of the two leaves)", nodes, err)
	}
	if root, err := s.LogRoot(ctx, 2); err != nil || !bytes.Equal(root, mth(leafHashes(es))) {
		t.Errorf("root after rollback %x (%v), want %x", root, err, mth(leafHashes(es)))
	}
	// The next batch appends at index 2, from the in-memory range.
	logCerts(t, s, 0, 1, 1)
	if es := allEntries(t, s); len(es) != 3 {
		t.Errorf("%d leaves after one more issuance, want 3", len(es))
	}
}

func serialsOf(es []LogEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Serial
	}
	return out
}

// TestLogBackfill checks that certificates recorded before the migration
// that creates the log are appended, in issuance order, when the store opens.
func TestLogBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	logCerts(t, s, 0, 40, 4)
	want := allEntries(t, s)
	// Back to schema 11: no log tables, no migration record.
	undoHistoryMigration(t, s)
	for _, q := range []string{"DROP TABLE log_entries", "DROP TABLE log_nodes", "DROP TABLE log_heads",
		"DELETE FROM schema_migrations WHERE version = 12"} {
		if _, err := s.write.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := dbFile(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, Config{Path: dbPath})
	got := allEntries(t, s2)
	if len(got) != len(want) {
		t.Fatalf("%d leaves backfilled, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].CertID != want[i].CertID || !bytes.Equal(got[i].LeafHash, want[i].LeafHash) {
			t.Fatalf("backfilled leaf %d is certificate %d, want %d", i, got[i].CertID, want[i].CertID)
		}
	}
	if root, err := s2.LogRoot(ctx, uint64(len(got))); err != nil || !bytes.Equal(root, mth(leafHashes(want))) {
		t.Errorf("backfilled root %x (%v), want %x", root, err, mth(leafHashes(want)))
	}
	// And issuance continues at the next index.
	logCerts(t, s2, 100, 3, 1)
	if n, err := s2.LogSize(ctx); err != nil || n != 43 {
		t.Errorf("LogSize after backfill and 3 more = %d, %v; want 43", n, err)
	}
}

func dbFile(t *testing.T, s *SQLite) string {
	t.Helper()
	var seq int
	var name, file string
	if err := s.write.QueryRow("PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestSignTreeHeadRefusesMismatch: a stored head the log does not match is
// refused, not papered over. The rest of the tree-head contract is
// storetest's (transparency log/tree heads); this needs SQL to tamper.
func TestSignTreeHeadRefusesMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clockwork.NewFakeClockAt(testStart)
	s := openTest(t, Config{Clock: clk})
	seedIssuers(t, s, "int")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.SetCheckpointer(Checkpointer{SignTree: func(size uint64, root []byte) (audit.TreeHead, error) {
		return audit.SignTreeHead(rand.Reader, priv, "audit-1", size, root, clk.Now())
	}})
	logCerts(t, s, 0, 5, 2)
	if h, signed, err := s.SignTreeHead(ctx, time.Hour); err != nil || !signed || h.Size != 5 {
		t.Fatalf("SignTreeHead = size %d, signed %v, %v; want a new head of 5", h.Size, signed, err)
	}
	if _, err := s.write.ExecContext(ctx, "UPDATE log_heads SET root_hash = ? WHERE size = 5", make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if _, _, err := s.SignTreeHead(ctx, time.Hour); err == nil {
		t.Error("SignTreeHead over a head with another root succeeded")
	}
}

// TestNodeKey checks that node ids are unique across levels and are the
// in-order positions: a node sits between the leaves it covers.
func TestNodeKey(t *testing.T) {
	t.Parallel()
	seen := map[int64]string{}
	for level := uint(1); level <= 12; level++ {
		for index := uint64(0); index < 300; index++ {
			k := NodeKey(level, index)
			if prev, dup := seen[k]; dup {
				t.Fatalf("NodeKey(%d, %d) = %d, as %s", level, index, k, prev)
			}
			seen[k] = fmt.Sprintf("(%d, %d)", level, index)
			first, last := index<<level, (index+1)<<level-1 // leaves covered
			if k <= NodeKey(0, first) || k >= NodeKey(0, last) {
				t.Fatalf("NodeKey(%d, %d) = %d is not between its leaves %d and %d", level, index, k, first, last)
			}
		}
	}
	if got := NodeKey(62, 0); got != 1<<62-1 {
		t.Errorf("NodeKey(62, 0) = %d", got)
	}
}
