package keystore

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/internal/testkms"
	"github.com/sigil-ca/sigil/store"
)

// twoKMSKEKs starts local-kms and creates two KEKs there; it returns them
// and a plain KMS client for the test to act on the keys as an operator.
func twoKMSKEKs(t *testing.T) (a, b *keybackend.KMSKEK, client *kms.Client) {
	t.Helper()
	ctx := context.Background()
	srv := testkms.Start(t)
	cfgFile := srv.ConfigFile(t)
	conn, err := keybackend.ParseURI("awskms:profile=" + testkms.Profile + ";credentials-file=" + cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	keys := keybackend.NewKeys(keybackend.Config{})
	t.Cleanup(func() { _ = keys.Close() })
	for i, name := range []string{"sigil-kek-a", "sigil-kek-b"} {
		k, err := keys.CreateOrLoadKEK(ctx, conn.String(), name)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			a = k
		} else {
			b = k
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigProfile(testkms.Profile), config.WithSharedConfigFiles([]string{cfgFile}))
	if err != nil {
		t.Fatal(err)
	}
	return a, b, kms.NewFromConfig(cfg)
}

// TestRewrapToKMSWhileIssuing moves 300 data keys from the passphrase KEK
// to a KEK in local-kms, then to another KMS key, in batches of 40 while
// four goroutines keep generating and unwrapping keys: nothing fails, every
// key ends under the new KEK, progress is reported per batch. The first
// KMS key is then disabled in local-kms (DisableKey) and a restart
// (UnlockWith, no passphrase) opens every key; a last rewrap goes back to
// a passphrase.
func TestRewrapToKMSWhileIssuing(t *testing.T) {
	if testing.Short() {
		t.Skip("hundreds of KMS calls; skipped with -short")
	}
	t.Parallel()
	ctx := context.Background()
	st, clk, ks, recs := rotationStore(t, 300)
	kekA, kekB, client := twoKMSKEKs(t)

	var mu sync.Mutex
	var failures []error
	var generated []store.KeyRecord
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, rec, err := ks.Generate(ctx, "managed", ECDSAP256)
				if err == nil {
					err = st.WithTx(ctx, func(tx store.Tx) error { return tx.InsertKey(rec) })
				}
				if err == nil {
					_, err = ks.Unwrap(ctx, recs[(g*97+i)%len(recs)].ID, "test")
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					generated = append(generated, rec)
				}
				mu.Unlock()
			}
		}()
	}
	var progress []int
	rewrap := func(to KEKTarget) string {
		progress = progress[:0]
		id, n, err := ks.RewrapTo(ctx, "test", to, RotateOptions{Batch: 40, AfterBatch: func(done int) { progress = append(progress, done) }})
		if err != nil {
			t.Fatalf("rewrap to %s: %v", to.URI, err)
		}
		if n < len(recs) || len(progress) < len(recs)/40 || progress[len(progress)-1] != n {
			t.Errorf("rewrap to %s re-wrapped %d keys, progress %v", id, n, progress)
		}
		return id
	}
	toA := rewrap(KEKTarget{Backend: "awskms", URI: kekA.URI().String(), Remote: kekA})
	toB := rewrap(KEKTarget{Backend: "awskms", URI: kekB.URI().String(), Remote: kekB})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d generate/unwrap calls failed during the rewraps, first: %v", len(failures), failures[0])
	}
	if toA != "kek-2" || toB != "kek-3" {
		t.Errorf("new KEKs %s, %s", toA, toB)
	}
	all := append(append([]store.KeyRecord(nil), recs...), generated...)
	// Keys generated after the last rewrap's final pass are sealed under
	// kek-3 already; none may be left under kek-1 or kek-2.
	if got := wrappedUnder(t, st); got["kek-3"] != len(all) || len(got) != 1 {
		t.Fatalf("keys by KEK %v, want all %d under kek-3", got, len(all))
	}

	if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(kekA.URI().KeyID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := kekA.Wrap(ctx, "probe", make([]byte, 32)); err == nil {
		t.Fatal("local-kms still encrypts with a disabled key: the check below would prove nothing")
	}
	opener := func(_ context.Context, backend, uri string) (RemoteKEK, error) {
		switch uri {
		case kekA.URI().String():
			return kekA, nil
		case kekB.URI().String():
			return kekB, nil
		}
		t.Errorf("opener asked for %s %s", backend, uri)
		return nil, context.Canceled
	}
	restarted, err := UnlockWith(ctx, st, clk, nil, opener)
	if err != nil {
		t.Fatalf("restart with kek-3 in KMS and kek-2's KMS key disabled: %v", err)
	}
	unwrapAll(t, st, restarted, all)

	const back = "a new passphrase after KMS"
	if id := func() string {
		id, _, err := restarted.RewrapTo(ctx, "test", KEKTarget{Passphrase: []byte(back), Params: fastParams(t)}, RotateOptions{Batch: 100})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}(); id != "kek-4" {
		t.Errorf("back to a passphrase: %s", id)
	}
	if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(kekB.URI().KeyID)}); err != nil {
		t.Fatal(err)
	}
	again, err := Unlock(ctx, st, clk, []byte(back))
	if err != nil {
		t.Fatalf("unlock with the passphrase after moving back from KMS: %v", err)
	}
	unwrapAll(t, st, again, all)
}
