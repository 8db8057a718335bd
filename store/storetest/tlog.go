package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
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
func logCerts(t *testing.T, s store.Store, from, n, writers int) {
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
				if err := s.WithTx(context.Background(), func(tx store.Tx) error { return issue(tx, &c) }); err != nil {
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
func allEntries(t *testing.T, s store.Store) []store.LogEntry {
	t.Helper()
	ctx := context.Background()
	var out []store.LogEntry
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

func leafHashes(es []store.LogEntry) [][]byte {
	out := make([][]byte, len(es))
	for i, e := range es {
		out[i] = e.LeafHash
	}
	return out
}

func testLogProofs(t *testing.T, open Opener) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	const n = 300
	logCerts(t, s, 0, n, 32)

	es := allEntries(t, s)
	if len(es) != n {
		t.Fatalf("%d leaves, want %d", len(es), n)
	}
	seen := map[int64]bool{}
	for _, e := range es {
		if seen[e.CertID] {
			t.Fatalf("certificate %d logged twice", e.CertID)
		}
		seen[e.CertID] = true
		c, err := s.Certificate(ctx, e.Serial)
		if err != nil || c.ID != e.CertID || !bytes.Equal(c.DER, e.DER) {
			t.Fatalf("leaf %d: certificate %s (%v) does not match", e.Index, e.Serial, err)
		}
		if got, err := s.LogEntryBySerial(ctx, e.Serial); err != nil || got.Index != e.Index {
			t.Fatalf("LogEntryBySerial(%s) = leaf %d, %v; want %d", e.Serial, got.Index, err, e.Index)
		}
	}
	if size, err := s.LogSize(ctx); err != nil || size != n {
		t.Fatalf("LogSize = %d, %v; want %d", size, err, n)
	}
	lh := leafHashes(es)
	roots := make([][]byte, n+1)
	for size := range n + 1 {
		roots[size] = mth(lh[:size])
		got, err := s.LogRoot(ctx, uint64(size))
		if err != nil || !bytes.Equal(got, roots[size]) {
			t.Fatalf("LogRoot(%d) = %x, %v; want %x", size, got, err, roots[size])
		}
	}

	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		size := 1 + rng.Uint64N(n)
		idx := rng.Uint64N(size)
		p, err := s.LogInclusionProof(ctx, idx, size)
		if err != nil {
			t.Fatalf("inclusion(%d, %d): %v", idx, size, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, size, lh[idx], p, roots[size]); err != nil {
			t.Errorf("inclusion(%d, %d) does not verify: %v", idx, size, err)
		}
	}
	for range 200 {
		s2 := rng.Uint64N(n + 1)
		s1 := rng.Uint64N(s2 + 1)
		p, err := s.LogConsistencyProof(ctx, s1, s2)
		if err != nil {
			t.Fatalf("consistency(%d, %d): %v", s1, s2, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, s1, s2, p, roots[s1], roots[s2]); err != nil {
			t.Errorf("consistency(%d, %d) does not verify: %v", s1, s2, err)
		}
	}

	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"inclusion beyond the log", func() error { _, err := s.LogInclusionProof(ctx, 0, n+1); return err }},
		{"inclusion index at size", func() error { _, err := s.LogInclusionProof(ctx, 5, 5); return err }},
		{"consistency beyond the log", func() error { _, err := s.LogConsistencyProof(ctx, 1, n+1); return err }},
		{"consistency reversed", func() error { _, err := s.LogConsistencyProof(ctx, 3, 2); return err }},
		{"root beyond the log", func() error { _, err := s.LogRoot(ctx, n+1); return err }},
		{"unknown serial", func() error { _, err := s.LogEntryBySerial(ctx, "ffff"); return err }},
	} {
		if err := tc.fn(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", tc.name, err)
		}
	}
	if es, err := s.LogEntries(ctx, n, n+10); err != nil || len(es) != 0 {
		t.Errorf("entries past the log: %d, %v", len(es), err)
	}
	if es, err := s.LogEntries(ctx, 0, 1<<40); err != nil || len(es) != store.MaxLogEntries && len(es) != n {
		t.Errorf("unbounded page: %d entries, %v", len(es), err)
	}
}
