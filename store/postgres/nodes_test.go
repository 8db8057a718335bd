package postgres_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// TestNodesShareOneChain runs two stores (two nodes, each with its own pool
// and writer) on one database, 16 goroutines each issuing certificates
// with their audit events, spending a nonce before each (a write that
// appends nothing, batched with the appends), and signing tree heads and
// checkpoints meanwhile.
// Afterwards the audit chain is one verified chain with every checkpoint
// valid, and the transparency log has exactly one leaf per certificate, at
// indexes 0..n-1, with no serial twice, its stored root and every signed
// head matching the tree recomputed from the leaves.
func TestNodesShareOneChain(t *testing.T) {
	t.Parallel()
	const nodes, workers = 2, 16
	perWorker := 20
	if testing.Short() {
		perWorker = 5
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	clk := testclock.New()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cp := store.Checkpointer{
		Every: 7,
		Sign: func(h audit.Head) (audit.Checkpoint, error) {
			return audit.SignCheckpoint(rand.Reader, priv, "audit-1", h, clk.Now())
		},
		SignTree: func(size uint64, root []byte) (audit.TreeHead, error) {
			return audit.SignTreeHead(rand.Reader, priv, "audit-1", size, root, clk.Now())
		},
	}
	var stores []*postgres.Store
	for range nodes {
		s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Clock: clk, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		s.SetCheckpointer(cp)
		stores = append(stores, s)
	}
	if err := stores[0].WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(store.KeyRecord{ID: "key-int", Purpose: "intermediate", Algorithm: "ecdsa-p256",
			Backend: "passphrase", State: store.KeyActive, PublicKey: []byte("pub"), Created: clk.Now()}); err != nil {
			return err
		}
		return tx.InsertIssuer(store.IssuerRecord{ID: "int", Kind: "intermediate", KeyID: "key-int",
			CertDER: []byte("der-int"), State: store.KeyActive, Created: clk.Now()})
	}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, nodes*workers)
	for n, s := range stores {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					var b [16]byte
					if _, err := rand.Read(b[:]); err != nil {
						errs <- err
						return
					}
					serial := hex.EncodeToString(b[:])
					// A write that appends nothing, queued beside the
					// issuances: batches mix both, so an append often
					// follows a write of its batch while the other node
					// holds the chain lock, and is put off.
					if err := s.WithTx(ctx, func(tx store.Tx) error {
						return tx.UseNonce("nonce-"+serial, clk.Now().Add(time.Hour))
					}); err != nil {
						errs <- fmt.Errorf("node %d worker %d nonce: %w", n, w, err)
						return
					}
					c := store.CertRecord{IssuerID: "int", Serial: serial, Subject: "CN=" + serial,
						SANs: []string{fmt.Sprintf("n%d-w%d-%d.example.com", n, w, i)}, NotBefore: clk.Now(),
						NotAfter: clk.Now().Add(24 * time.Hour), KeyAlgorithm: "ecdsa-p256", Profile: "server",
						Requester: fmt.Sprintf("node-%d", n), Channel: "api", DER: []byte("der-" + serial), Created: clk.Now()}
					err := s.WithTx(ctx, func(tx store.Tx) error {
						if err := tx.InsertCertificate(&c); err != nil {
							return err
						}
						_, err := tx.AppendAudit(audit.Event{Time: c.Created, Actor: c.Requester, Action: "cert.issued", Target: serial})
						return err
					})
					if err != nil {
						errs <- fmt.Errorf("node %d worker %d: %w", n, w, err)
						return
					}
					if i%4 == 0 {
						if _, _, err := s.SignTreeHead(ctx, time.Hour); err != nil {
							errs <- fmt.Errorf("node %d sign tree head: %w", n, err)
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	want := nodes * workers * perWorker

	// Both nodes see the same chain; it verifies with every checkpoint.
	var events []audit.Event
	if err := stores[1].ScanAudit(ctx, func(e audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(events) != want {
		t.Fatalf("%d audit events, want %d", len(events), want)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	cps, err := stores[0].Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) < want/cp.Every/2 {
		t.Errorf("%d checkpoints for %d events signed every %d", len(cps), want, cp.Every)
	}
	head, err := audit.VerifyAll(events, cps, map[string]crypto.PublicKey{"audit-1": priv.Public()})
	if err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	for i, s := range stores {
		h, err := s.AuditHead(ctx)
		if err != nil || h.Seq != head.Seq || !bytes.Equal(h.Hash, head.Hash) {
			t.Errorf("node %d: AuditHead = %d/%x, %v; verified head %d/%x", i, h.Seq, h.Hash, err, head.Seq, head.Hash)
		}
	}

	// One leaf per certificate, by index without gaps, each serial once,
	// and the stored tree is the one the leaves make.
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	tree := rf.NewEmptyRange(0)
	roots := map[uint64][]byte{}
	seen := map[string]bool{}
	if err := stores[0].ScanLog(ctx, func(e store.LogEntry) error {
		if e.Index != tree.End() {
			return fmt.Errorf("leaf %d follows %d leaves", e.Index, tree.End())
		}
		if seen[e.Serial] {
			return fmt.Errorf("serial %s logged twice", e.Serial)
		}
		seen[e.Serial] = true
		lh := audit.LeafHash(e.Leaf())
		if !bytes.Equal(lh, e.LeafHash) {
			return fmt.Errorf("leaf %d: stored hash %x, certificate's %x", e.Index, e.LeafHash, lh)
		}
		if err := tree.Append(lh, nil); err != nil {
			return err
		}
		root, err := tree.GetRootHash(nil)
		roots[tree.End()] = root
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if tree.End() != uint64(want) {
		t.Fatalf("log has %d leaves, want %d", tree.End(), want)
	}
	// The nonces written beside the issuances were all committed.
	for serial := range seen {
		err := stores[0].WithTx(ctx, func(tx store.Tx) error { return tx.UseNonce("nonce-"+serial, clk.Now().Add(time.Hour)) })
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("nonce of %s used again: %v, want ErrDuplicate", serial, err)
		}
	}
	if n, err := stores[1].CertificateCount(ctx); err != nil || n != int64(want) {
		t.Errorf("CertificateCount = %d, %v; want %d", n, err, want)
	}
	stored, err := stores[1].LogRoot(ctx, uint64(want))
	if err != nil || !bytes.Equal(stored, roots[uint64(want)]) {
		t.Errorf("LogRoot = %x, %v; recomputed %x", stored, err, roots[uint64(want)])
	}
	heads, err := stores[1].TreeHeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) == 0 {
		t.Fatal("no tree head was signed")
	}
	for _, h := range heads {
		if err := audit.VerifyTreeHead(priv.Public(), h); err != nil {
			t.Errorf("tree head of size %d: %v", h.Size, err)
		}
		if h.Size > 0 && !bytes.Equal(h.RootHash, roots[h.Size]) {
			t.Errorf("tree head of size %d has root %x, the leaves make %x", h.Size, h.RootHash, roots[h.Size])
		}
	}
}
