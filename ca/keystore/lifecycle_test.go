package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// TestRetireDestroy runs a key's whole life on a real store: generated,
// retired, destroyed; then it no longer opens, re-wrapping skips it, and
// every step is in the audit log.
func TestRetireDestroy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clockwork.NewFakeClockAt(testNow)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "ks.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, kekRec, err := Prepare(st, clk, []byte("correct horse"), params)
	if err != nil {
		t.Fatal(err)
	}
	_, rec, err := ks.Generate(context.Background(), "ocsp", ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKEK(kekRec); err != nil {
			return err
		}
		return tx.InsertKey(rec)
	}); err != nil {
		t.Fatal(err)
	}

	// An active key is not destroyed: it must be retired first.
	err = st.WithTx(ctx, func(tx store.Tx) error { return Destroy(tx, rec, "system", "test", clk.Now()) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Destroy(active) = %v, want ErrNotFound", err)
	}
	clk.Advance(time.Hour)
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		return Retire(tx, rec, "system", clk.Now(), map[string]string{"successor": "ocsp-next"})
	}); err != nil {
		t.Fatal(err)
	}
	// A retired key still opens: what it signed may need it until expiry.
	if _, err := ks.Unwrap(ctx, rec.ID, "test"); err != nil {
		t.Fatalf("unwrap retired key: %v", err)
	}
	clk.Advance(time.Hour)
	if err := st.WithTx(ctx, func(tx store.Tx) error { return Destroy(tx, rec, "system", "expired", clk.Now()) }); err != nil {
		t.Fatal(err)
	}
	got, err := st.Key(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.KeyDestroyed || got.WrappedDEK != nil || got.Ciphertext != nil || !got.Destroyed.Equal(clk.Now().UTC()) {
		t.Errorf("destroyed key row: state %s, wrapped DEK %d bytes, ciphertext %d bytes, destroyed %v",
			got.State, len(got.WrappedDEK), len(got.Ciphertext), got.Destroyed)
	}
	if _, err := ks.Unwrap(ctx, rec.ID, "test"); err == nil {
		t.Error("a destroyed key was unwrapped")
	}
	// Re-wrapping under a new KEK skips it: there is nothing left to re-wrap.
	if _, n, err := ks.Rewrap(ctx, "test", []byte("correct horse"), []byte("battery staple"), params); err != nil || n != 0 {
		t.Errorf("Rewrap = %d keys, %v; want 0 (the only key is destroyed)", n, err)
	}

	want := []struct{ action, detail string }{
		{"key.retired", "ocsp-next"}, {"key.unwrapped", ""}, {"key.destroyed", "expired"},
	}
	evs, _, err := st.AuditEvents(ctx, store.AuditFilter{Target: rec.ID, Action: "key."})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(want) {
		t.Fatalf("audit events for %s: %+v", rec.ID, evs)
	}
	for i, w := range want {
		e := evs[i]
		if e.Action != w.action || e.Detail["purpose"] != "ocsp" {
			t.Errorf("event %d: %s %v, want %s", i, e.Action, e.Detail, w.action)
		}
		if w.detail != "" && e.Detail["successor"] != w.detail && e.Detail["reason"] != w.detail {
			t.Errorf("event %d %s: detail %v lacks %q", i, e.Action, e.Detail, w.detail)
		}
	}
}
