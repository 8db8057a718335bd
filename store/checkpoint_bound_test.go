package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// TestCheckpointBoundUnderBatching: with many writers sharing commits, no
// more than Every events ever go unsigned, even inside one large batch.
func TestCheckpointBoundUnderBatching(t *testing.T) {
	t.Parallel()
	const every, writers, perWriter = 10, 64, 20
	maxBatch := 0
	var mu sync.Mutex
	s := openTest(t, Config{MaxBatch: 256, OnCommit: func(_ time.Duration, n int) {
		mu.Lock()
		maxBatch = max(maxBatch, n)
		mu.Unlock()
	}})
	signer := newTestSigner(t)
	signer.install(s, every)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				err := s.WithTx(ctx, func(tx Tx) error {
					_, err := tx.AppendAudit(audit.Event{Time: testStart.Add(time.Duration(w*perWriter+i) * time.Millisecond), Actor: "system", Action: "tick"})
					return err
				})
				if err != nil {
					t.Errorf("WithTx: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cps, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prev := int64(0)
	for _, c := range cps {
		if c.Seq-prev > every {
			t.Errorf("events %d..%d went unsigned (%d > %d)", prev+1, c.Seq, c.Seq-prev, every)
		}
		prev = c.Seq
	}
	if total := int64(writers * perWriter); total-prev >= every {
		t.Errorf("the last %d events are unsigned, want fewer than %d", total-prev, every)
	}
	if maxBatch <= every {
		t.Logf("largest batch %d: batching did not exceed Every, the bound was not stressed", maxBatch)
	}
}
