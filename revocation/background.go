package revocation

import "context"

// background is one goroutine a component starts and stops: the CRL
// publisher's regeneration after revocations, the offline CRLs' reloads.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs run in a goroutine until stop; ctx's values reach it, its
// cancellation does not (the component outlives the call that starts it).
func (b *background) start(ctx context.Context, run func(context.Context)) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		run(runCtx)
	}()
}

// stop cancels the goroutine and waits for it; a no-op when none runs.
func (b *background) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	<-b.done
	b.cancel = nil
}
