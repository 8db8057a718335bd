package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

const testPassphrase = "correct horse"

// rotationStore is a keystore on a real store with n keys sealed under kek-1.
func rotationStore(t *testing.T, n int) (*store.SQLite, *clockwork.FakeClock, *Keystore, []store.KeyRecord) {
	t.Helper()
	ctx := context.Background()
	clk := clockwork.NewFakeClockAt(testNow)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "ks.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, kekRec, err := Prepare(st, clk, []byte(testPassphrase), fastParams(t))
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.KeyRecord
	for range n {
		_, rec, err := ks.Generate(context.Background(), "test", ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKEK(kekRec); err != nil {
			return err
		}
		for _, r := range recs {
			if err := tx.InsertKey(r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st, clk, ks, recs
}

func fastParams(t *testing.T) KDFParams {
	t.Helper()
	p, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wrappedUnder counts the stored keys by KEK id.
func wrappedUnder(t *testing.T, st *store.SQLite) map[string]int {
	t.Helper()
	keys, err := st.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, k := range keys {
		out[k.KEKID]++
	}
	return out
}

// unwrapAll opens every key with ks and checks its ciphertext is the one
// it was sealed with.
func unwrapAll(t *testing.T, st *store.SQLite, ks *Keystore, recs []store.KeyRecord) {
	t.Helper()
	ctx := context.Background()
	for _, r := range recs {
		got, err := st.Key(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Ciphertext, r.Ciphertext) {
			t.Errorf("key %s: ciphertext changed", r.ID)
		}
		if _, err := ks.Unwrap(ctx, r.ID, "test"); err != nil {
			t.Errorf("key %s (under %s) does not open: %v", r.ID, got.KEKID, err)
		}
	}
}

func actions(t *testing.T, st *store.SQLite, prefix string) []string {
	t.Helper()
	evs, _, err := st.AuditEvents(context.Background(), store.AuditFilter{Action: prefix, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Action+" "+e.Target)
	}
	return out
}

// TestRotate: a rotation re-wraps every key under a new version in
// batches, audited, and a restart with the passphrase opens them all.
func TestRotate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clk, ks, recs := rotationStore(t, 25)
	if err := ks.EnableRotation([]byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("EnableRotation(wrong) = %v", err)
	}
	if err := ks.EnableRotation([]byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v", ks, ks, ks.passphrase); strings.Contains(s, testPassphrase) {
		t.Errorf("the held passphrase prints: %s", s)
	}
	var batches []int
	id, n, err := ks.Rotate(ctx, "system:kek-rotate", RotateOptions{Params: fastParams(t), Batch: 10,
		AfterBatch: func(done int) { batches = append(batches, done) }})
	if err != nil || id != "kek-2" || n != 25 {
		t.Fatalf("Rotate = %s, %d, %v; want kek-2, 25", id, n, err)
	}
	if !slices.Equal(batches, []int{10, 20, 25}) {
		t.Errorf("batches %v, want 10, 20, 25", batches)
	}
	if got := wrappedUnder(t, st); got["kek-2"] != 25 || len(got) != 1 {
		t.Errorf("keys by KEK %v, want all 25 under kek-2", got)
	}
	if k1, err := st.KEK(ctx, "kek-1"); err != nil || k1.State != store.KeyRetired {
		t.Errorf("kek-1 %+v, %v; want retired", k1, err)
	}
	if got := actions(t, st, "kek."); !slices.Equal(got, []string{"kek.rotation.started kek-2", "kek.rotated kek-2"}) {
		t.Errorf("kek events %v", got)
	}
	if got := actions(t, st, "key.rewrapped"); len(got) != 25 {
		t.Errorf("%d key.rewrapped events, want 25", len(got))
	}
	// New keys are sealed under the new version.
	if _, rec, err := ks.Generate(context.Background(), "test", ECDSAP256); err != nil || rec.KEKID != "kek-2" {
		t.Errorf("new key under %q (%v), want kek-2", rec.KEKID, err)
	}
	restarted, err := Unlock(ctx, st, clk, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	unwrapAll(t, st, restarted, recs)
	// Again: kek-3, from the same passphrase, with a new salt.
	if id, n, err := ks.Rotate(ctx, "system:kek-rotate", RotateOptions{Params: fastParams(t)}); err != nil || id != "kek-3" || n != 25 {
		t.Fatalf("second Rotate = %s, %d, %v", id, n, err)
	}
	k2, _ := st.KEK(ctx, "kek-2")
	k3, _ := st.KEK(ctx, "kek-3")
	if bytes.Equal(k2.Params, k3.Params) {
		t.Error("kek-3 has kek-2's KDF parameters and salt")
	}
}

// TestRotateResumes: a rotation cut short between batches (a crash) leaves
// every key readable under the old or the new version, after a restart
// too; the next run finishes it without a passphrase and without a third
// version.
func TestRotateResumes(t *testing.T) {
	t.Parallel()
	st, clk, ks, recs := rotationStore(t, 25)
	if err := ks.EnableRotation([]byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, n, err := ks.Rotate(ctx, "system:kek-rotate", RotateOptions{Params: fastParams(t), Batch: 10,
		AfterBatch: func(int) { cancel() }})
	if !errors.Is(err, context.Canceled) || n != 10 {
		t.Fatalf("cut-short Rotate = %d, %v; want 10 and context.Canceled", n, err)
	}
	if got := wrappedUnder(t, st); got["kek-1"] != 15 || got["kek-2"] != 10 {
		t.Fatalf("keys by KEK %v, want 15 under kek-1 and 10 under kek-2", got)
	}
	unwrapAll(t, st, ks, recs)
	// The restarted server holds no passphrase for rotation.
	restarted, err := Unlock(context.Background(), st, clk, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	unwrapAll(t, st, restarted, recs)
	if _, err := Unlock(context.Background(), st, clk, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Unlock(wrong) = %v", err)
	}
	id, n, err := restarted.Rotate(context.Background(), "system:kek-rotate", RotateOptions{Batch: 10})
	if err != nil || id != "kek-2" || n != 15 {
		t.Fatalf("resumed Rotate = %s, %d, %v; want kek-2, 15", id, n, err)
	}
	if got := wrappedUnder(t, st); got["kek-2"] != 25 || len(got) != 1 {
		t.Errorf("keys by KEK %v, want all under kek-2", got)
	}
	if _, err := st.KEK(context.Background(), "kek-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("kek-3: %v, want none", err)
	}
	if got := actions(t, st, "kek."); !slices.Equal(got, []string{"kek.rotation.started kek-2", "kek.rotated kek-2"}) {
		t.Errorf("kek events %v", got)
	}
	// With nothing left to finish, a new version needs the passphrase.
	if _, _, err := restarted.Rotate(context.Background(), "system:kek-rotate", RotateOptions{Params: fastParams(t)}); !errors.Is(err, ErrRotationDisabled) {
		t.Errorf("Rotate without the passphrase = %v, want ErrRotationDisabled", err)
	}
	again, err := Unlock(context.Background(), st, clk, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	unwrapAll(t, st, again, recs)
}

// TestRewrapFinishesCutShortRotation: a passphrase change re-wraps keys of
// both versions; later rotations derive from the new passphrase.
func TestRewrapFinishesCutShortRotation(t *testing.T) {
	t.Parallel()
	st, clk, ks, recs := rotationStore(t, 12)
	if err := ks.EnableRotation([]byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, _, err := ks.Rotate(ctx, "system", RotateOptions{Params: fastParams(t), Batch: 5, AfterBatch: func(int) { cancel() }}); err == nil {
		t.Fatal("rotation not cut short")
	}
	bg := context.Background()
	id, n, err := ks.Rewrap(bg, "admin", []byte(testPassphrase), []byte("battery staple"), fastParams(t))
	if err != nil || id != "kek-3" || n != 12 {
		t.Fatalf("Rewrap = %s, %d, %v", id, n, err)
	}
	for _, old := range []string{"kek-1", "kek-2"} {
		if k, err := st.KEK(bg, old); err != nil || k.State != store.KeyRetired {
			t.Errorf("%s: %+v, %v; want retired", old, k, err)
		}
	}
	if id, n, err := ks.Rotate(bg, "system", RotateOptions{Params: fastParams(t)}); err != nil || id != "kek-4" || n != 12 {
		t.Fatalf("Rotate after Rewrap = %s, %d, %v", id, n, err)
	}
	restarted, err := Unlock(bg, st, clk, []byte("battery staple"))
	if err != nil {
		t.Fatalf("kek-4 does not open with the new passphrase: %v", err)
	}
	unwrapAll(t, st, restarted, recs)
}
