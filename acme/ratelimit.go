package acme

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/time/rate"
)

// RateLimits bound how fast one client may consume the CA. Each is a count
// per hour with a burst of the same size; zero means the default, negative
// disables the limit.
type RateLimits struct {
	AccountsPerIP     int // new accounts per client IP
	OrdersPerAccount  int // new orders per account
	OrdersPerDomain   int // new orders naming a registered domain (eTLD+1)
	MaxTrackedClients int // keys remembered per limit before idle ones are dropped
}

func (l RateLimits) withDefaults() RateLimits {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	l.AccountsPerIP = def(l.AccountsPerIP, 50)
	l.OrdersPerAccount = def(l.OrdersPerAccount, 3000)
	l.OrdersPerDomain = def(l.OrdersPerDomain, 3000)
	l.MaxTrackedClients = def(l.MaxTrackedClients, 100000)
	return l
}

// limiter is a set of token buckets keyed by client, account or domain. It
// is per process: several nodes each enforce it on their own share.
type limiter struct {
	name  string
	every rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(name string, perHour, max int) *limiter {
	if perHour < 0 {
		return nil
	}
	return &limiter{name: name, every: rate.Limit(float64(perHour) / 3600), burst: perHour, max: max,
		buckets: map[string]*rate.Limiter{}}
}

// allow takes one token for key at now, or returns a rateLimited problem
// saying when to retry. A nil limiter allows everything.
func (l *limiter) allow(key string, now time.Time) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evictFull(now)
		}
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return RateLimited(fmt.Sprintf("%s limit reached for %s", l.name, key), time.Hour)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return RateLimited(fmt.Sprintf("%s limit reached for %s; retry in %s", l.name, key, d.Round(time.Second)),
			time.Duration(math.Ceil(d.Seconds()))*time.Second)
	}
	return nil
}

// evictFull drops buckets that have refilled: forgetting them loses nothing.
func (l *limiter) evictFull(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}

// registeredDomain is the eTLD+1 a rate limit counts a name under.
func registeredDomain(name string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return d
}
