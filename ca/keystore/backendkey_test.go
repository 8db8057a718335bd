package keystore

import (
	"context"
	"crypto"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// swapKeys is a BackendKeys that returns a fixed signer: a stand-in for an
// HSM whose object was replaced by another key.
type swapKeys struct{ s crypto.Signer }

func (k swapKeys) LoadSigner(context.Context, string, string) (crypto.Signer, error) { return k.s, nil }

func (k swapKeys) CreateLike(context.Context, string, string, string, string) (crypto.Signer, string, error) {
	return k.s, "pkcs11:module-path=/m.so;token=root;object=successor", nil
}

func (swapKeys) DestroyKey(context.Context, string, string) (map[string]string, error) {
	return map[string]string{"backend_destruction": "C_DestroyObject"}, nil
}

// TestBackendKeyRecord records a key held in a backend and checks that
// Unwrap opens it only through a configured backend, only if the backend
// still holds the recorded public key, and that re-wrapping leaves it alone.
func TestBackendKeyRecord(t *testing.T) {
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
	held, err := Generate(ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	const uri = "pkcs11:module-path=/m.so;token=root;object=k"
	if _, err := ks.BackendKeyRecord("intermediate", BackendPassphrase, uri, held.Public()); err == nil {
		t.Error("a passphrase backend key record accepted")
	}
	rec, err := ks.BackendKeyRecord("intermediate", "pkcs11", uri, held.Public())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Algorithm != string(ECDSAP384) || BackendURI(rec) != uri || rec.KEKID != "" || rec.WrappedDEK != nil {
		t.Fatalf("record %+v", rec)
	}
	if ev := GeneratedEvent(rec, "cli"); ev.Detail["uri"] != uri || ev.Detail["backend"] != "pkcs11" {
		t.Errorf("generated event detail %v", ev.Detail)
	}
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKEK(kekRec); err != nil {
			return err
		}
		return tx.InsertKey(rec)
	}); err != nil {
		t.Fatal(err)
	}

	if _, err := ks.Unwrap(ctx, rec.ID, "test"); err == nil || !strings.Contains(err.Error(), "no pkcs11 backend is configured") {
		t.Errorf("unwrap without backends: %v", err)
	}
	other, err := Generate(ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	ks.SetBackends(swapKeys{other})
	if _, err := ks.Unwrap(ctx, rec.ID, "test"); err == nil || !strings.Contains(err.Error(), "another public key") {
		t.Errorf("unwrap of a replaced backend key: %v", err)
	}
	ks.SetBackends(swapKeys{held})
	s, err := ks.Unwrap(ctx, rec.ID, "test")
	if err != nil || s != held {
		t.Fatalf("unwrap through the backend: %v", err)
	}
	params2, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, n, err := ks.Rewrap(ctx, "test", []byte("correct horse"), []byte("battery staple"), params2); err != nil || n != 0 {
		t.Errorf("a passphrase change re-wrapped %d keys (%v); a backend key has nothing to re-wrap", n, err)
	}
	if s, err := ks.Unwrap(ctx, rec.ID, "test"); err != nil || s != held {
		t.Errorf("unwrap after the passphrase change: %v", err)
	}

	// Destruction: in the backend first, then the record, never the record alone.
	at := clk.Now()
	if err := st.WithTx(ctx, func(tx store.Tx) error { return Retire(tx, rec, "test", at, nil) }); err != nil {
		t.Fatal(err)
	}
	err = st.WithTx(ctx, func(tx store.Tx) error { return Destroy(tx, rec, "test", "expired", at) })
	if err == nil || !strings.Contains(err.Error(), "destroy it there first") {
		t.Fatalf("destroying only the record of a backend key: %v", err)
	}
	detail, err := ks.DestroyInBackend(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if detail["backend"] != "pkcs11" || detail["uri"] != uri || detail["backend_destruction"] != "C_DestroyObject" {
		t.Errorf("backend destruction detail %v", detail)
	}
	if err := st.WithTx(ctx, func(tx store.Tx) error { return DestroyWith(tx, rec, "test", "expired", at, detail) }); err != nil {
		t.Fatalf("destroy after the backend: %v", err)
	}
	if got, err := st.Key(ctx, rec.ID); err != nil || got.State != store.KeyDestroyed {
		t.Errorf("record after destruction: %s, %v", got.State, err)
	}
	if d, err := ks.DestroyInBackend(ctx, store.KeyRecord{ID: "k", Backend: BackendPassphrase}); d != nil || err != nil {
		t.Errorf("DestroyInBackend of a database key: %v, %v", d, err)
	}
}
