package postgres

import (
	"context"
	"slices"

	"github.com/sigil-ca/sigil/store"
)

// SetNoRollup makes s count every summary from the certificate table
// (true) or from the rollups where they answer (false, the default).
func SetNoRollup(s *Store, v bool) { s.noRollup = v }

// ChainLock is the advisory lock key that serialises chain appends.
const ChainLock = chainLock

// CommitBatch runs fns as one batch, as s's writer does, and returns each
// one's error and the indexes of those put off to a later batch (the chain
// lock was taken after earlier ones wrote). Nothing else may write to s
// meanwhile: it uses the writer's state from the test's goroutine.
func CommitBatch(s *Store, fns ...func(store.Tx) error) (errs []error, putOff []int) {
	reqs := make([]*writeReq, len(fns))
	for i, fn := range fns {
		reqs[i] = &writeReq{ctx: context.Background(), fn: fn, err: make(chan error, 1), kind: reqTx}
	}
	again := s.gc.commitOnce(reqs)
	errs = make([]error, len(fns))
	for i, r := range reqs {
		if slices.Contains(again, r) {
			putOff = append(putOff, i)
			continue
		}
		errs[i] = <-r.err
	}
	return errs, putOff
}
