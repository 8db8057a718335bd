package agent

import (
	"crypto/rand"
	"math/big"
	"time"
)

// backoff is the wait before retry n (n >= 1) with "full jitter": uniform
// in [0, min(ceiling, base·2^(n-1))], so that many agents failing together
// (a CA restart) spread their retries instead of returning in waves.
func backoff(n int, base, ceiling time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	limit := base
	for i := 1; i < n && limit < ceiling; i++ {
		limit *= 2
	}
	return jitter(min(limit, ceiling))
}

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
