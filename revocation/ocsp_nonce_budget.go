package revocation

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// nonceBudget bounds the work anonymous clients can buy with nonces: every
// live signature must fit a global count, a share of one core's signing
// time (an RSA-3072 signature costs a hundred P-256 ones), and its source's
// own rate, so one client cannot spend the others' budget. Past any of
// them the pre-signed response goes out without the nonce (RFC 8954 §4
// leaves that to the responder).
type nonceBudget struct {
	global *rate.Limiter // signatures
	cpu    *rate.Limiter // microseconds of signing time
	costUS atomic.Int64  // moving average of one signature, microseconds

	perSource  rate.Limit
	burst      int
	maxSources int

	mu        sync.Mutex
	sources   map[netip.Prefix]*rate.Limiter
	lastSweep time.Time
}

// initialSignCostUS is the estimate before the first signature is timed:
// high, so a cold responder errs on the side of the cached answer.
const initialSignCostUS = 5000

func newNonceBudget(perSecond, perSourcePerSecond, cpuShare float64, maxSources int) *nonceBudget {
	cpuPerSecond := cpuShare * 1e6
	b := &nonceBudget{
		global:     rate.NewLimiter(rate.Limit(perSecond), int(2*perSecond)+1),
		cpu:        rate.NewLimiter(rate.Limit(cpuPerSecond), int(cpuPerSecond)+initialSignCostUS),
		perSource:  rate.Limit(perSourcePerSecond),
		burst:      int(2*perSourcePerSecond) + 1,
		maxSources: maxSources,
		sources:    make(map[netip.Prefix]*rate.Limiter),
	}
	b.costUS.Store(initialSignCostUS)
	return b
}

// allow reports whether a request from remoteAddr may have its nonce
// signed now; it spends from every budget it passes.
func (b *nonceBudget) allow(remoteAddr string, now time.Time) bool {
	src, ok := sourceOf(remoteAddr)
	if !ok || !b.sourceAllows(src, now) {
		return false
	}
	// A signature dearer than the whole bucket is charged the whole bucket:
	// charged in full, it could never be allowed again, and the estimate
	// that only signing updates would stay stuck above it for good.
	cost := min(int(b.costUS.Load()), b.cpu.Burst())
	return b.global.AllowN(now, 1) && b.cpu.AllowN(now, cost)
}

// spent records how long one signature took, for the CPU budget's estimate.
func (b *nonceBudget) spent(d time.Duration) {
	us := max(d.Microseconds(), 1)
	old := b.costUS.Load()
	b.costUS.Store(old + (us-old)/8) // races lose an update of an estimate, nothing more
}

func (b *nonceBudget) sourceAllows(src netip.Prefix, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.sources[src]
	if l == nil {
		if len(b.sources) >= b.maxSources {
			b.sweep(now)
		}
		if len(b.sources) >= b.maxSources {
			// Too many sources at once to tell apart: none gets a live
			// signature until some fall idle.
			return false
		}
		l = rate.NewLimiter(b.perSource, b.burst)
		b.sources[src] = l
	}
	return l.AllowN(now, 1)
}

// sweep forgets sources whose bucket has refilled: forgetting them changes
// nothing. At most once a second, so a flood of new sources costs one
// pass, not one per request.
func (b *nonceBudget) sweep(now time.Time) {
	if now.Sub(b.lastSweep) < time.Second {
		return
	}
	b.lastSweep = now
	for src, l := range b.sources {
		if l.TokensAt(now) >= float64(b.burst) {
			delete(b.sources, src)
		}
	}
}

// sourceOf is the client a request counts against: its IPv4 address, or
// its IPv6 /64 (one host usually holds a whole /64).
func sourceOf(remoteAddr string) (netip.Prefix, bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, err := addr.Prefix(bits)
	return p, err == nil
}
