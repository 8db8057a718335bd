package agent

import (
	"context"
	"crypto/x509"
	"math/big"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
)

// running is an agent's Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, a *Agent, force bool) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx, force) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil // idempotent
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// blocked waits until the agent sleeps on the fake clock: it has finished
// whatever the last Advance made it do.
func (e *caEnv) blocked(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the agent did not go back to sleep: %v\nlogs:\n%s", err, e.logs)
	}
}

// checkSuccessor checks that next renewed prev (same key unless rekeyed).
func (e *caEnv) checkSuccessor(t *testing.T, prev, next *x509.Certificate, sameKey bool) {
	t.Helper()
	if next.SerialNumber.Cmp(prev.SerialNumber) == 0 {
		t.Fatalf("still serial %x on disk, want a renewal", prev.SerialNumber)
	}
	rec := e.record(t, next)
	if rec.Replaces != prev.SerialNumber.Text(16) || rec.Channel != ca.ChannelRenew || rec.Requester != "token:test" {
		t.Errorf("record %+v, want a renewal of %x requested by token:test", rec, prev.SerialNumber)
	}
	if got := samePublic(prev.PublicKey, next.PublicKey); got != sameKey {
		t.Errorf("same key = %v, want %v", got, sameKey)
	}
	if !slices.Equal(next.DNSNames, prev.DNSNames) {
		t.Errorf("names %v, want %v", next.DNSNames, prev.DNSNames)
	}
}

func TestRunRenewsAtLifetimeFraction(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	e.install(t, f)
	hook := filepath.Join(f.dir, "hook.log")
	a := e.agentFor(t, f, func(c *Config) { c.Exec = `echo "$SIGIL_SERIAL" >> ` + hook })
	start(t, a, false)
	for i := range 3 {
		e.blocked(t)
		prev := onDisk(t, f).Leaf
		due := prev.NotBefore.Add(prev.NotAfter.Sub(prev.NotBefore) * 2 / 3)
		e.clk.Advance(due.Sub(e.clk.Now()) - time.Second)
		e.blocked(t)
		if got := onDisk(t, f).Leaf; got.SerialNumber.Cmp(prev.SerialNumber) != 0 {
			t.Fatalf("renewal %d: renewed a second before two thirds of the lifetime", i+1)
		}
		e.clk.Advance(time.Second)
		e.blocked(t)
		next := onDisk(t, f).Leaf
		e.checkSuccessor(t, prev, next, true)
		if got := lines(t, hook); len(got) != i+1 || got[i] != next.SerialNumber.Text(16) {
			t.Errorf("hook ran with %v, want %d runs, the last for %x", got, i+1, next.SerialNumber)
		}
	}
	if !strings.Contains(e.logs.String(), `msg=waiting next_check=`) {
		t.Errorf("the agent never logged when it acts next:\n%s", e.logs)
	}
}

func TestRunRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	leaf := e.install(t, f)
	hook := filepath.Join(f.dir, "hook.log")
	a := e.agentFor(t, f, func(c *Config) {
		c.RetryMin, c.RetryMax = 2*time.Second, 10*time.Second
		c.Exec = "echo ran >> " + hook + "; exit 3" // a failing hook is not fatal
	})
	var mu sync.Mutex
	var asked []time.Duration
	a.jitter = func(d time.Duration) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, d)
		return d
	}
	// On hold, the certificate cannot be renewed until it is released.
	if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: leaf.SerialNumber.Text(16),
		Reason: ca.ReasonCertificateHold, Actor: "token:admin"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, f.dir)
	start(t, a, false)
	e.blocked(t)
	e.clk.Advance(lifetimePoint(leaf, 2.0/3).Sub(e.clk.Now()))
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, d := range want {
		e.blocked(t)
		mu.Lock()
		got := slices.Clone(asked)
		mu.Unlock()
		if !slices.Equal(got, want[:i+1]) {
			t.Fatalf("backoff maxima %v, want %v", got, want[:i+1])
		}
		if now := snapshot(t, f.dir); !mapsEqual(now, before) {
			t.Fatalf("a failed renewal changed the files")
		}
		if i < len(want)-1 {
			e.clk.Advance(d)
		}
	}
	if !strings.Contains(e.logs.String(), "renewal failed; the current certificate stays in place") ||
		!strings.Contains(e.logs.String(), "is on hold") {
		t.Errorf("failures not logged:\n%s", e.logs)
	}
	if _, err := e.auth.Unhold(context.Background(), leaf.SerialNumber.Text(16), "token:admin"); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(10 * time.Second)
	e.blocked(t)
	e.checkSuccessor(t, leaf, onDisk(t, f).Leaf, true)
	if got := lines(t, hook); len(got) != 1 {
		t.Errorf("hook ran %d times, want once", len(got))
	}
	if !strings.Contains(e.logs.String(), "exec hook failed; the new certificate is in place") {
		t.Errorf("hook failure not logged:\n%s", e.logs)
	}
	// Success resets the backoff: the next wait is the next renewal point.
	e.blocked(t)
	mu.Lock()
	n := len(asked)
	mu.Unlock()
	if n != len(want) {
		t.Errorf("backoff asked %d times, want %d", n, len(want))
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBackoffFullJitter(t *testing.T) {
	t.Parallel()
	clk := testclock.New()
	// backoff(n) is the n-th wait of a fresh sequence.
	backoff := func(n int, base, ceiling time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
		w := newRetryWaits(base, ceiling, clk, jitter)
		for range n - 1 {
			w.next()
		}
		return w.next()
	}
	for n := 1; n <= 12; n++ {
		limit := min(time.Second<<(n-1), time.Minute)
		for range 50 {
			if d := backoff(n, time.Second, time.Minute, uniform); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, limit)
			}
		}
	}
	// Full jitter spreads over the whole range, not just its top.
	var low int
	for range 200 {
		if backoff(6, time.Second, time.Minute, uniform) < 16*time.Second {
			low++
		}
	}
	if low < 50 || low > 150 {
		t.Errorf("%d of 200 waits fell in the lower half, want about 100", low)
	}
}

func TestOnce(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, nil)
	ctx := context.Background()

	before := snapshot(t, f.dir)
	if err := a.Once(ctx, false); err != nil {
		t.Fatalf("Once, not due: %v", err)
	}
	if !mapsEqual(snapshot(t, f.dir), before) {
		t.Error("Once renewed a certificate that was not due")
	}
	if !strings.Contains(e.logs.String(), "certificate not due for renewal") {
		t.Errorf("Once did not say the certificate is not due:\n%s", e.logs)
	}

	if err := a.Once(ctx, true); err != nil {
		t.Fatalf("Once, forced: %v", err)
	}
	forced := onDisk(t, f).Leaf
	e.checkSuccessor(t, leaf, forced, true)

	e.clk.Advance(lifetimePoint(forced, 2.0/3).Sub(e.clk.Now()))
	if err := a.Once(ctx, false); err != nil {
		t.Fatalf("Once, due: %v", err)
	}
	due := onDisk(t, f).Leaf
	e.checkSuccessor(t, forced, due, true)

	if _, err := e.auth.Revoke(ctx, ca.RevokeRequest{Serial: due.SerialNumber.Text(16), Reason: ca.ReasonSuperseded, Actor: "token:admin"}); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, f.dir)
	err := a.Once(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "was revoked (superseded)") {
		t.Errorf("Once with a revoked certificate: %v, want the server's refusal", err)
	}
	if !mapsEqual(snapshot(t, f.dir), before) {
		t.Error("a refused renewal changed the files")
	}
}

// TestOnceLostAnswer: the server renewed the agent's certificate but its
// answer never arrived; the next renewal is answered 200 with that
// successor, which the agent installs.
func TestOnceLostAnswer(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, nil)
	ctx := context.Background()
	lost, err := e.auth.Renew(ctx, ca.RenewRequest{Certificate: leaf})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Once(ctx, true); err != nil {
		t.Fatalf("Once after a lost answer: %v", err)
	}
	got := onDisk(t, f).Leaf
	if got.SerialNumber.Text(16) != lost.Record.Serial {
		t.Errorf("on disk serial %x, want the successor issued for the lost answer (%s)", got.SerialNumber, lost.Record.Serial)
	}
	e.checkSuccessor(t, leaf, got, true)
}

func TestOnceExpired(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, nil)
	e.clk.Advance(leaf.NotAfter.Sub(e.clk.Now()) + time.Minute)
	err := a.Once(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Once with an expired certificate: %v, want a refusal", err)
	}
}

func TestRekey(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, func(c *Config) { c.Rekey = true })
	if err := a.Once(context.Background(), true); err != nil {
		t.Fatalf("Once --rekey: %v", err)
	}
	e.checkSuccessor(t, leaf, onDisk(t, f).Leaf, false)
}

func TestCertID(t *testing.T) {
	t.Parallel()
	// RFC 9773 §4.1's example.
	aki := []byte{0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4}
	for _, tc := range []struct {
		serial int64
		want   string
	}{
		{0x0087654321, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"},
		{0x7f, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.fw"},
		{0x80, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIA"},
	} {
		got, err := CertID(&x509.Certificate{AuthorityKeyId: aki, SerialNumber: big.NewInt(tc.serial)})
		if err != nil || got != tc.want {
			t.Errorf("CertID(serial %x) = %q, %v; want %q", tc.serial, got, err, tc.want)
		}
	}
	if _, err := CertID(&x509.Certificate{SerialNumber: big.NewInt(1)}); err == nil {
		t.Error("CertID without an AKI succeeded")
	}
}

func TestARI(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, true)
	// Count renewal-info requests on the real ACME handler.
	var asked atomic.Int32
	inner := e.srv.Config.Handler
	e.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/acme/renewal-info/") {
			asked.Add(1)
		}
		inner.ServeHTTP(w, r)
	})
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, func(c *Config) { c.ARI = true })
	a.jitter = func(d time.Duration) time.Duration { return d / 4 }

	// The sigil ACME window: the last third of the lifetime, a sixth wide.
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	wStart := leaf.NotAfter.Add(-life / 3)
	pick := wStart.Add(life / 6 / 4)
	_, d, err := a.decide(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.plan.source != "ari" || !d.plan.due.Equal(pick) || !d.plan.window.Start.Equal(wStart) {
		t.Fatalf("plan %+v, want the ARI window from %v and a due time of %v", d.plan, wStart, pick)
	}

	start(t, a, false)
	e.blocked(t)
	e.clk.Advance(pick.Sub(e.clk.Now()) - time.Second)
	e.blocked(t)
	if onDisk(t, f).Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("renewed before the time drawn in the ARI window")
	}
	e.clk.Advance(time.Second)
	e.blocked(t)
	next := onDisk(t, f).Leaf
	e.checkSuccessor(t, leaf, next, true)

	// A 90-day certificate: the agent wakes every MaxSleep (1h) but asks
	// again only after the server's Retry-After (6h).
	key := newKey(t)
	chain, long := e.issue(t, key, "tls-server", "long.example.com")
	keyPEM, _ := pkcs8PEM(key)
	if err := (files{cert: f.cert, key: f.key}).write([]byte(chain), keyPEM, true); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour) // the sleeping agent wakes and reads the new pair
	e.blocked(t)
	n0 := asked.Load()
	for range 13 {
		e.clk.Advance(time.Hour)
		e.blocked(t)
	}
	if got := asked.Load() - n0; got != 2 {
		t.Errorf("asked for renewal information %d times in 13 hours, want 2 (Retry-After: 6h)", got)
	}
	if onDisk(t, f).Leaf.SerialNumber.Cmp(long.SerialNumber) != 0 {
		t.Error("the 90-day certificate was renewed early")
	}
}

func TestARIUnavailable(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false) // no ACME endpoint
	f := newPairFiles(t)
	leaf := e.install(t, f)
	a := e.agentFor(t, f, func(c *Config) { c.ARI = true; c.RenewAt = 0.5 })
	_, d, err := a.decide(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.plan.source != "lifetime" || !d.plan.due.Equal(lifetimePoint(leaf, 0.5)) {
		t.Errorf("plan %+v, want half the lifetime", d.plan)
	}
	if !strings.Contains(e.logs.String(), "no renewal information from the server; using the lifetime fraction") {
		t.Errorf("fallback not logged:\n%s", e.logs)
	}
}

func TestNewChecks(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	f := newPairFiles(t)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"http server", func(c *Config) { c.Server = "http://127.0.0.1:1" }, "must be an https:// URL"},
		{"renew-at 1", func(c *Config) { c.RenewAt = 1 }, "between 0 and 1"},
		{"renew-at negative", func(c *Config) { c.RenewAt = -0.5 }, "between 0 and 1"},
		{"no key file", func(c *Config) { c.KeyFile = "" }, "required"},
		{"retry bounds", func(c *Config) { c.RetryMin, c.RetryMax = time.Hour, time.Minute }, "below the minimum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Server: e.srv.URL, CertFile: f.cert, KeyFile: f.key, Clock: e.clk, Logger: slogDiscard()}
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
	a := e.agentFor(t, f, nil)
	if err := a.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Run without a pair on disk: %v, want an error naming the missing file", err)
	}
}
