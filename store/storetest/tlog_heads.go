package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// testTreeHeads checks signed tree heads of the transparency log: none
// without a signer; a head is signed again only when the log grew or the
// latest is older than maxAge; and heads are found by size and listed.
func testTreeHeads(t *testing.T, open Opener) {
	t.Parallel()
	ctx := context.Background()
	unsigned := openTest(t, open)
	if _, _, err := unsigned.SignTreeHead(ctx, time.Hour); err == nil {
		t.Fatal("SignTreeHead without a signer succeeded")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := clockwork.NewFakeClockAt(testStart)
	s := openWith(t, open, Options{Clock: clk, Checkpointer: &store.Checkpointer{
		SignTree: func(size uint64, root []byte) (audit.TreeHead, error) {
			return audit.SignTreeHead(rand.Reader, priv, "audit-1", size, root, clk.Now())
		}}})
	seedIssuers(t, s, "int")
	if _, err := s.LatestTreeHead(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestTreeHead before any: %v", err)
	}
	sign := func(wantSigned bool, wantSize uint64) audit.TreeHead {
		t.Helper()
		h, signed, err := s.SignTreeHead(ctx, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if signed != wantSigned || h.Size != wantSize {
			t.Fatalf("SignTreeHead = size %d, signed %v; want size %d, signed %v", h.Size, signed, wantSize, wantSigned)
		}
		if err := audit.VerifyTreeHead(pub, h); err != nil {
			t.Fatal(err)
		}
		root, err := s.LogRoot(ctx, h.Size)
		if err != nil || !bytes.Equal(root, h.RootHash) {
			t.Fatalf("head root %x, log root %x (%v)", h.RootHash, root, err)
		}
		return h
	}
	empty := sign(true, 0)
	if !bytes.Equal(empty.RootHash, audit.EmptyRoot()) {
		t.Errorf("empty tree root %x", empty.RootHash)
	}
	sign(false, 0) // unchanged and young: the same head
	logCerts(t, s, 0, 5, 2)
	h5 := sign(true, 5)
	sign(false, 5)
	clk.Advance(time.Hour)
	h5b := sign(true, 5) // unchanged but old: signed again
	if !h5b.Time.After(h5.Time) {
		t.Errorf("re-signed head time %v not after %v", h5b.Time, h5.Time)
	}
	if got, err := s.LatestTreeHead(ctx); err != nil || !got.Time.Equal(h5b.Time) || got.Size != 5 {
		t.Errorf("LatestTreeHead = %+v, %v; want the newest of size 5", got, err)
	}
	if got, err := s.TreeHeadBySize(ctx, 5); err != nil || !got.Time.Equal(h5b.Time) {
		t.Errorf("TreeHeadBySize(5) = %v, %v; want the newest", got.Time, err)
	}
	if got, err := s.TreeHeadBySize(ctx, 0); err != nil || !bytes.Equal(got.Signature, empty.Signature) {
		t.Errorf("TreeHeadBySize(0) = %+v, %v", got, err)
	}
	if _, err := s.TreeHeadBySize(ctx, 4); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TreeHeadBySize(4): %v, want ErrNotFound", err)
	}
	if hs, err := s.TreeHeads(ctx); err != nil || len(hs) != 3 {
		t.Errorf("TreeHeads = %d, %v; want 3", len(hs), err)
	}
}
