package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sigil-ca/sigil/store"
)

// testFull checks store.ErrFull: a write refused for want of space is
// reported as ErrFull and leaves nothing (no certificate, no audit event,
// no log leaf); reads still work meanwhile; and once there is space again
// the store writes on, its chain intact.
func testFull(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	f, ok := s.(Filler)
	if !ok {
		t.Skip("STORE BACKEND CANNOT BE FILLED IN A TEST: the ErrFull contract is not checked")
	}
	ctx := context.Background()
	seedIssuers(t, s, "int")
	first := testCert("int", "01")
	mustTx(t, s, func(tx store.Tx) error { return issue(tx, &first) })
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetFull(true); err != nil {
		t.Fatalf("SetFull(true): %v", err)
	}
	// Enough data to need new space whatever is left in the last pages.
	err = s.WithTx(ctx, func(tx store.Tx) error {
		for i := range 64 {
			c := testCert("int", fmt.Sprintf("%02x", i+2))
			c.DER = bytes.Repeat([]byte{byte(i)}, 16<<10)
			if err := issue(tx, &c); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("write to a full store = %v, want ErrFull", err)
	}
	if got, err := s.Certificate(ctx, first.Serial); err != nil || got.ID != first.ID {
		t.Errorf("read from a full store = %+v, %v; want certificate %d", got, err, first.ID)
	}
	if _, err := s.Certificate(ctx, "02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused certificate: %v, want ErrNotFound", err)
	}
	if got, err := s.AuditHead(ctx); err != nil || got.Seq != head.Seq || !bytes.Equal(got.Hash, head.Hash) {
		t.Errorf("audit head after the refused write = %d/%x (%v), want %d/%x", got.Seq, got.Hash, err, head.Seq, head.Hash)
	}
	if n, err := s.LogSize(ctx); err != nil || n != 1 {
		t.Errorf("log size after the refused write = %d, %v; want 1", n, err)
	}

	if err := f.SetFull(false); err != nil {
		t.Fatalf("SetFull(false): %v", err)
	}
	second := testCert("int", "02")
	mustTx(t, s, func(tx store.Tx) error { return issue(tx, &second) })
	if n, err := s.LogSize(ctx); err != nil || n != 2 {
		t.Errorf("log size after space came back = %d, %v; want 2", n, err)
	}
	checkChain(t, s, nil)
}
