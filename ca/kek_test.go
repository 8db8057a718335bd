package ca

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// TestRotateKEKWhileSigning: a KEK rotation re-wraps every key in batches
// while Sign calls keep succeeding: each batch waits until a certificate
// was issued since the previous one, so issuance provably interleaves with
// the rotation instead of waiting for it.
func TestRotateKEKWhileSigning(t *testing.T) {
	c := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	// An inventory large enough for many batches.
	var extra []store.KeyRecord
	for range 120 {
		_, rec, err := c.init.Keystore.Generate(context.Background(), "test", keystore.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, rec)
	}
	if err := c.st.WithTx(ctx, func(tx store.Tx) error {
		for _, r := range extra {
			if err := tx.InsertKey(r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.RotateKEK(ctx, "system:kek-rotate"); KindOf(err) != Unavailable {
		t.Fatalf("RotateKEK without the passphrase held = %v, want Unavailable", err)
	}
	if err := c.init.Keystore.EnableRotation([]byte("correct horse")); err != nil {
		t.Fatal(err)
	}

	var issued, failed atomic.Int64
	signed := make(chan struct{}, 1) // a certificate was issued since the last receive
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := mustKey(t, keystore.ECDSAP256)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := c.Sign(ctx, SignRequest{CSR: newCSR(t, key, fmt.Sprintf("w%d-%d.example.com", w, i), fmt.Sprintf("w%d-%d.example.com", w, i)),
					Profile: "tls-server", Requester: "test", Channel: ChannelAPI})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				issued.Add(1)
				select {
				case signed <- struct{}{}:
				default:
				}
			}
		}()
	}
	var batches int
	waitIssued := func(done int) {
		batches++
		select {
		case <-signed:
		case <-time.After(30 * time.Second):
			t.Errorf("no certificate issued between batch %d and the previous one (%d keys re-wrapped)", batches, done)
		}
	}
	id, n, err := c.rotateKEK(ctx, "system:kek-rotate", keystore.RotateOptions{Batch: 16, AfterBatch: waitIssued})
	close(stop)
	wg.Wait()
	if err != nil || id != "kek-2" {
		t.Fatalf("rotateKEK = %s, %d, %v", id, n, err)
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d Sign calls failed during the rotation, first: %v", f, firstErr.Load())
	}
	keys, err := c.st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(keys) || batches < 8 {
		t.Errorf("re-wrapped %d of %d keys in %d batches", n, len(keys), batches)
	}
	for _, k := range keys {
		if k.KEKID != "kek-2" {
			t.Errorf("key %s (%s) still under %s", k.ID, k.Purpose, k.KEKID)
		}
	}
	t.Logf("%d certificates issued during a rotation of %d keys in %d batches", issued.Load(), n, batches)
	// The re-wrapped intermediate key opens after a restart.
	ks, err := keystore.Unlock(ctx, c.st, c.clk, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, c.cfg, c.st, ks); err != nil {
		t.Fatalf("authority after the rotation: %v", err)
	}
	evs, _, err := c.st.AuditEvents(ctx, store.AuditFilter{Action: "kek.rotated"})
	if err != nil || len(evs) != 1 || evs[0].Actor != "system:kek-rotate" {
		t.Errorf("kek.rotated events %+v, %v", evs, err)
	}
	if id, _, err := c.RotateKEK(ctx, "system:kek-rotate"); err != nil || id != "kek-3" {
		t.Errorf("second rotation: %s, %v", id, err)
	}
}
