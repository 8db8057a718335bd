package ui

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
)

// verifyResult is one run of the audit chain verification.
type verifyResult struct {
	At     time.Time
	Took   time.Duration
	Report ca.AuditReport
	Err    error
}

// verifier runs the audit chain verification for the verify page. The
// check reads the whole log, so page views share one run in flight and
// reuse a result for a short while instead of each starting their own.
type verifier struct {
	clk   clockwork.Clock
	every time.Duration
	run   func(ctx context.Context) (ca.AuditReport, error)

	mu      sync.Mutex
	last    *verifyResult
	running chan struct{} // closed when the run in flight ends
}

func (v *verifier) result(ctx context.Context) verifyResult {
	for {
		v.mu.Lock()
		if v.last != nil && v.clk.Since(v.last.At) < v.every {
			r := *v.last
			v.mu.Unlock()
			return r
		}
		if ch := v.running; ch != nil {
			v.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return verifyResult{At: v.clk.Now(), Err: ctx.Err()}
			}
		}
		ch := make(chan struct{})
		v.running = ch
		v.mu.Unlock()

		start := v.clk.Now()
		// The run is shared: a viewer who leaves does not cancel it for
		// the others.
		rep, err := v.run(context.WithoutCancel(ctx))
		r := verifyResult{At: v.clk.Now(), Took: v.clk.Since(start), Report: rep, Err: err}
		v.mu.Lock()
		v.last, v.running = &r, nil
		v.mu.Unlock()
		close(ch)
		return r
	}
}
