package agent

import (
	"crypto/rand"
	"math/big"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
)

// retryWaits yields the waits between consecutive failed attempts with "full
// jitter": wait n is uniform in [0, min(ceiling, base·2^(n-1))], so that many
// agents failing together (a CA restart) spread their retries instead of
// returning in waves. backoff/v4 supplies the exponential ceiling; its own
// randomization (±factor around the ceiling) is off because it keeps every
// agent near the same instant.
type retryWaits struct {
	exp    *backoff.ExponentialBackOff
	jitter func(time.Duration) time.Duration
}

func newRetryWaits(base, ceiling time.Duration, clk clockwork.Clock, jitter func(time.Duration) time.Duration) *retryWaits {
	exp := &backoff.ExponentialBackOff{
		InitialInterval:     base,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         ceiling,
		MaxElapsedTime:      0, // the agent never gives up
		Stop:                backoff.Stop,
		Clock:               clk,
	}
	exp.Reset()
	return &retryWaits{exp: exp, jitter: jitter}
}

// next is the wait before the next attempt.
func (r *retryWaits) next() time.Duration { return r.jitter(r.exp.NextBackOff()) }

// reset starts again from base after a success.
func (r *retryWaits) reset() { r.exp.Reset() }

// uniform returns a uniformly random duration in [0, max], from crypto/rand.
func uniform(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(max)+1))
	if err != nil {
		return max // crypto/rand does not fail on supported platforms; waiting longest is safe
	}
	return time.Duration(n.Int64())
}
