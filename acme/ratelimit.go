package acme

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// RateLimits bound how fast one client may consume the CA. Each is a count
// per hour with a burst of the same size; zero means the default, negative
// disables the limit.
//
// A limit that a stranger could spend must be keyed by the stranger: new
// accounts and new orders count per client IP and per account, whatever
// they name. Only issuance counts per registered domain, since only an
// account that proved control of every name reaches it: orders that
// proved nothing cannot use up a domain owner's budget.
type RateLimits struct {
	AccountsPerIP         int // new accounts per client IP
	OrdersPerAccount      int // new orders per account
	OrdersPerIP           int // new orders per client IP, whichever account
	CertificatesPerDomain int // certificates issued naming a registered domain (eTLD+1)
	MaxTrackedClients     int // keys remembered per limit before idle ones are dropped
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
	l.OrdersPerIP = def(l.OrdersPerIP, 3000)
	l.CertificatesPerDomain = def(l.CertificatesPerDomain, 3000)
	l.MaxTrackedClients = def(l.MaxTrackedClients, 100000)
	return l
}

// limiter is a set of token buckets keyed by client, account or domain. It
// is per process: several nodes each enforce it on their own share. It
// keeps nothing durable: refused traffic costs memory for at most max keys.
type limiter struct {
	name    string
	perHour int
	max     int

	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket holds tokens as of last; it refills at perHour an hour, up to
// perHour.
type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(name string, perHour, max int) *limiter {
	if perHour < 0 {
		return nil
	}
	return &limiter{name: name, perHour: perHour, max: max, buckets: map[string]*bucket{}}
}

// tokensAt is what b holds at now; time running backwards refills nothing.
func (l *limiter) tokensAt(b *bucket, now time.Time) float64 {
	t := b.tokens
	if now.After(b.last) {
		t += now.Sub(b.last).Hours() * float64(l.perHour)
	}
	return math.Min(t, float64(l.perHour))
}

// allow takes one token for key at now, or returns a rateLimited problem
// saying when to retry. A nil limiter allows everything.
func (l *limiter) allow(key string, now time.Time) error {
	_, err := l.take(key, now)
	return err
}

// take is allow that also returns a function giving the token back, for a
// request that something else refuses afterwards.
func (l *limiter) take(key string, now time.Time) (undo func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evictFull(now)
		}
		b = &bucket{tokens: float64(l.perHour), last: now}
		l.buckets[key] = b
	}
	t := l.tokensAt(b, now)
	if t < 1 {
		if l.perHour == 0 {
			return nil, RateLimited(fmt.Sprintf("%s limit reached for %s", l.name, key), time.Hour)
		}
		wait := time.Duration((1 - t) / float64(l.perHour) * float64(time.Hour))
		return nil, RateLimited(fmt.Sprintf("%s limit reached for %s; retry in %s", l.name, key, wait.Round(time.Second)),
			time.Duration(math.Ceil(wait.Seconds()))*time.Second)
	}
	b.tokens = t - 1
	if now.After(b.last) {
		b.last = now
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		b.tokens = math.Min(b.tokens+1, float64(l.perHour))
	}, nil
}

// takeAll takes one token for each key, all or none.
func (l *limiter) takeAll(keys []string, now time.Time) (undo func(), err error) {
	var undos []func()
	undoAll := func() {
		for _, u := range undos {
			u()
		}
	}
	for _, k := range keys {
		u, err := l.take(k, now)
		if err != nil {
			undoAll()
			return nil, err
		}
		undos = append(undos, u)
	}
	return undoAll, nil
}

// evictFull drops buckets that have refilled: forgetting them loses nothing.
func (l *limiter) evictFull(now time.Time) {
	for k, b := range l.buckets {
		if l.tokensAt(b, now) >= float64(l.perHour) {
			delete(l.buckets, k)
		}
	}
}

// clientKey is the client a per-IP limit counts a request under: its IPv4
// address, or the /64 of its IPv6 address, since one host commonly holds
// a whole /64 (as Let's Encrypt counts).
func clientKey(r *http.Request) string {
	ip, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return clientIP(r)
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// registeredDomain is the eTLD+1 a rate limit counts a name under.
func registeredDomain(name string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return d
}
