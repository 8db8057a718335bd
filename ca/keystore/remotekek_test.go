package keystore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// TestUnlockRemoteKEK makes a CA's first KEK a key in local-kms
// (PrepareRemote), seals a key under it and unlocks the store again with
// no passphrase, through a KEKOpener: the record holds the URI and no
// secret, the check value stops another KMS key, and without an opener the
// error names the backend.
func TestUnlockRemoteKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remoteKEK, _ := kmsKEK(t, "kek-1")
	other, _ := kmsKEK(t, "kek-1")
	clk := clockwork.NewFakeClockAt(testNow)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "ks.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const uri = "awskms:key-id=1234abcd-12ab-34cd-56ef-1234567890ab"
	ks, kekRec, err := PrepareRemote(ctx, st, clk, "awskms", uri, remoteKEK.remote)
	if err != nil {
		t.Fatal(err)
	}
	if kekRec.Backend != "awskms" || string(kekRec.Params) != `{"uri":"`+uri+`"}` || len(kekRec.Check) == 0 {
		t.Fatalf("remote kek record %+v", kekRec)
	}
	signer, rec, err := ks.Generate(ctx, "audit", Ed25519)
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
	if b, err := ActiveKEKBackend(ctx, st); err != nil || b != "awskms" {
		t.Fatalf("active kek backend %q, %v", b, err)
	}
	var asked []string
	opener := func(r RemoteKEK) KEKOpener {
		return func(_ context.Context, backend, u string) (RemoteKEK, error) {
			asked = append(asked, backend+" "+u)
			return r, nil
		}
	}
	ks2, err := UnlockWith(ctx, st, clk, nil, opener(remoteKEK.remote))
	if err != nil {
		t.Fatalf("unlock with a KMS KEK and no passphrase: %v", err)
	}
	if len(asked) != 1 || asked[0] != "awskms "+uri {
		t.Errorf("opener asked for %q", asked)
	}
	got, err := ks2.Unwrap(ctx, rec.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !publicEqual(got.Public(), signer.Public()) {
		t.Error("the key unwrapped through KMS is another key")
	}
	if err := ks2.CheckPassphrase([]byte("correct horse")); err == nil {
		t.Error("a passphrase check passed on a KMS KEK")
	}
	if _, err := UnlockWith(ctx, st, clk, nil, opener(other.remote)); err == nil || !strings.Contains(err.Error(), "check value") {
		t.Errorf("unlock through another KMS key: %v", err)
	}
	if _, err := UnlockWith(ctx, st, clk, nil, nil); err == nil || !strings.Contains(err.Error(), "no awskms backend is configured") {
		t.Errorf("unlock without an opener: %v", err)
	}
	if _, err := Unlock(ctx, st, clk, []byte("correct horse")); err == nil {
		t.Error("a passphrase unlocked a KMS KEK")
	}
}
