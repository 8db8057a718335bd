package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/internal/testclock"
)

// TestRateLimits: orders per account, and new accounts per IP, are refused
// with rateLimited and a Retry-After once the hourly budget is spent, and
// allowed again as it refills. Orders never spend a registered domain's
// budget: they prove nothing (see TestRateLimitsCertificatesPerDomain).
func TestRateLimits(t *testing.T) {
	t.Parallel()
	clk := clockwork.NewFakeClock()
	ts := newTestServer(t, Config{Clock: clk, RateLimits: RateLimits{OrdersPerAccount: 3, CertificatesPerDomain: 3, AccountsPerIP: 3}})
	ctx := context.Background()
	// x/crypto/acme retries 429 by itself, honouring Retry-After; here the
	// refusal itself is under test.
	c := noRetry(ts.client(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("host"+strconv.Itoa(i)+".example.com")); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	_, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("host9.example.com"))
	var e *xacme.Error
	if !errors.As(err, &e) || e.ProblemType != errPrefix+"rateLimited" || e.StatusCode != 429 {
		t.Fatalf("fourth order in an hour = %v, want rateLimited 429", err)
	}
	if ra := e.Header.Get("Retry-After"); ra == "" {
		t.Errorf("rateLimited without Retry-After")
	} else if secs, _ := strconv.Atoi(ra); secs < 1 || secs > 3600 {
		t.Errorf("Retry-After %q, want 1..3600 seconds", ra)
	}
	// A third of an hour refills one order for a budget of three an hour.
	clk.Advance(21 * time.Minute)
	c = freshNonces(c)
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("host4.example.com")); err != nil {
		t.Errorf("order after the budget refilled: %v", err)
	}

	// The first account's five unproven orders for example.com spent
	// nothing of example.com's budget: another account orders it freely.
	other := noRetry(ts.client(t))
	if _, err := other.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := other.AuthorizeOrder(ctx, xacme.DomainIDs("www.example.com")); err != nil {
			t.Errorf("order %d by another account for example.com: %v", i, err)
		}
	}

	// Per IP: three accounts an hour from 127.0.0.1, plus one refilled in
	// the 21 minutes: two exist, two more are allowed, the fifth is refused.
	for i := range 2 {
		if _, err := noRetry(ts.client(t)).Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
			t.Fatalf("account %d: %v", i+3, err)
		}
	}
	fifth := noRetry(ts.client(t))
	if _, err := fifth.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); !errors.As(err, &e) || e.ProblemType != errPrefix+"rateLimited" {
		t.Errorf("fifth account from one IP = %v, want rateLimited", err)
	}
}

// noRetry stops x/crypto/acme from retrying a 429 by itself.
func noRetry(c *xacme.Client) *xacme.Client {
	c.RetryBackoff = func(int, *http.Request, *http.Response) time.Duration { return -1 }
	return c
}

// provenOrder orders names with c and proves each by http-01 through h,
// returning the ready order.
func provenOrder(t *testing.T, c *xacme.Client, h *http01Server, names ...string) *xacme.Order {
	t.Helper()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(names...))
	if err != nil {
		t.Fatalf("order %v: %v", names, err)
	}
	for _, u := range o.AuthzURLs {
		az, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if az.Status == xacme.StatusValid {
			continue
		}
		for _, ch := range az.Challenges {
			if ch.Type != "http-01" {
				continue
			}
			body, err := c.HTTP01ChallengeResponse(ch.Token)
			if err != nil {
				t.Fatal(err)
			}
			h.set(c.HTTP01ChallengePath(ch.Token), body)
			if _, err := c.Accept(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			t.Fatalf("authorization for %s: %v", az.Identifier.Value, err)
		}
	}
	if o, err = c.WaitOrder(ctx, o.URI); err != nil {
		t.Fatalf("order %v not ready: %v", names, err)
	}
	return o
}

// dnsCSR is a CSR for names with a fresh key.
func dnsCSR(t *testing.T, names ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRateLimitsCertificatesPerDomain: a registered domain's budget counts
// certificates issued for it, so an account that proves nothing cannot
// spend it however many orders it makes; once issuance spends it, finalize
// is refused with rateLimited, the order stays ready, and it succeeds
// after the budget refills. A refused issuance gives its token back.
func TestRateLimitsCertificatesPerDomain(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ns := startTestDNS(t)
	for _, n := range []string{"a.victim.test", "b.victim.test", "c.victim.test", "d.victim.test", "e.victim.test"} {
		ns.SetA(n, "127.0.0.1")
	}
	clk := testclock.New()
	ts := newTestServer(t, Config{Clock: clk, RateLimits: RateLimits{CertificatesPerDomain: 2, OrdersPerAccount: 100}},
		testValidation{httpPort: h.port, resolver: ns.Addr()})
	ctx := context.Background()

	stranger := noRetry(ts.client(t))
	if _, err := stranger.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := stranger.AuthorizeOrder(ctx, xacme.DomainIDs("a.victim.test", "www.victim.test")); err != nil {
			t.Fatalf("unproven order %d: %v", i, err)
		}
	}

	owner := noRetry(ts.client(t))
	if _, err := owner.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.victim.test", "b.victim.test"} {
		o := provenOrder(t, owner, h, n)
		if _, _, err := owner.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, n), false); err != nil {
			t.Fatalf("issuance for %s after a stranger's orders: %v", n, err)
		}
	}
	// The budget of two is spent: a third certificate waits, the order
	// stays ready, and a CSR the CA refuses does not spend the budget.
	o := provenOrder(t, owner, h, "c.victim.test")
	_, _, err := owner.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, "c.victim.test"), false)
	if !isProblem(err, "rateLimited") {
		t.Fatalf("third certificate in an hour = %v, want rateLimited", err)
	}
	if got, err := owner.GetOrder(ctx, o.URI); err != nil || got.Status != xacme.StatusReady {
		t.Fatalf("rate-limited order is %+v (%v), want still ready", got, err)
	}
	clk.Advance(31 * time.Minute) // refills one of two an hour
	owner = freshNonces(owner)
	if _, _, err := owner.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, "other.victim.test"), false); !isProblem(err, "badCSR") {
		t.Fatalf("finalize with a wrong CSR = %v, want badCSR", err)
	}
	if _, _, err := owner.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, "c.victim.test"), false); err != nil {
		t.Fatalf("issuance after the budget refilled: %v", err)
	}
	o = provenOrder(t, owner, h, "d.victim.test")
	if _, _, err := owner.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, "d.victim.test"), false); !isProblem(err, "rateLimited") {
		t.Errorf("issuance past the refilled budget = %v, want rateLimited", err)
	}
}

// TestRateLimitsOrdersPerIP: new orders count per client IP whichever
// account makes them, so fresh accounts do not multiply the budget.
func TestRateLimitsOrdersPerIP(t *testing.T) {
	t.Parallel()
	clk := testclock.New()
	ts := newTestServer(t, Config{Clock: clk, RateLimits: RateLimits{OrdersPerIP: 4, OrdersPerAccount: 100}})
	ctx := context.Background()
	var clients []*xacme.Client
	for range 2 {
		c := noRetry(ts.client(t))
		if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for i := range 4 {
		if _, err := clients[i%2].AuthorizeOrder(ctx, xacme.DomainIDs("h"+strconv.Itoa(i)+".example.com")); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	for i, c := range clients {
		if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("late.example.org")); !isProblem(err, "rateLimited") {
			t.Errorf("account %d: fifth order from one IP = %v, want rateLimited", i, err)
		}
	}
	clk.Advance(15 * time.Minute)
	clients[1] = freshNonces(clients[1])
	if _, err := clients[1].AuthorizeOrder(ctx, xacme.DomainIDs("later.example.org")); err != nil {
		t.Errorf("order after a quarter hour refilled one: %v", err)
	}
}

// TestLimiter: tokens refill with the clock, take gives its token back,
// takeAll takes all or none, and IPv6 clients count per /64.
func TestLimiter(t *testing.T) {
	t.Parallel()
	now := testclock.Start()
	l := newLimiter("test", 2, 10)
	for range 2 {
		if err := l.allow("a", now); err != nil {
			t.Fatal(err)
		}
	}
	err := l.allow("a", now)
	var p *Problem
	if !errors.As(err, &p) || p.Type != TypeRateLimited || p.RetryAfter != 30*time.Minute {
		t.Fatalf("third token = %v, want rateLimited with Retry-After 30m", err)
	}
	if err := l.allow("a", now.Add(30*time.Minute)); err != nil {
		t.Errorf("after 30 minutes: %v", err)
	}
	undo, err := l.take("b", now)
	if err != nil {
		t.Fatal(err)
	}
	undo()
	for range 2 {
		if err := l.allow("b", now); err != nil {
			t.Errorf("token given back was not restored: %v", err)
		}
	}
	// "c" has one token left, "d" none: takeAll refuses and takes none.
	_ = l.allow("c", now)
	_ = l.allow("d", now)
	_ = l.allow("d", now)
	if _, err := l.takeAll([]string{"c", "d"}, now); err == nil {
		t.Fatal("takeAll with an exhausted key succeeded")
	}
	if err := l.allow("c", now); err != nil {
		t.Errorf("a refused takeAll spent c's token: %v", err)
	}
	if newLimiter("off", -1, 10).allow("x", now) != nil {
		t.Error("a disabled limit refused")
	}

	for addr, want := range map[string]string{
		"192.0.2.7:443":              "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1":   "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:443":     "192.0.2.7",
		"[2001:db8:1:3::1]:443":      "2001:db8:1:3::/64",
	} {
		r := &http.Request{RemoteAddr: addr}
		if got := clientKey(r); got != want {
			t.Errorf("clientKey(%s) = %q, want %q", addr, got, want)
		}
	}
}
