package acme

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	xacme "golang.org/x/crypto/acme"
)

// TestRateLimits: orders per account and per registered domain, and new
// accounts per IP, are refused with rateLimited and a Retry-After once the
// hourly budget is spent, and allowed again as it refills.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	clk := clockwork.NewFakeClock()
	ts := newTestServer(t, Config{Clock: clk, RateLimits: RateLimits{OrdersPerAccount: 3, OrdersPerDomain: 3, AccountsPerIP: 3}})
	ctx := context.Background()
	// x/crypto/acme retries 429 by itself, honouring Retry-After; here the
	// refusal itself is under test.
	noRetry := func(c *xacme.Client) *xacme.Client {
		c.RetryBackoff = func(int, *http.Request, *http.Response) time.Duration { return -1 }
		return c
	}
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
	// The nonces the client holds expired meanwhile (their lifetime is 15
	// minutes on the same clock): a fresh client for the same account.
	clk.Advance(21 * time.Minute)
	c = noRetry(&xacme.Client{Key: c.Key, DirectoryURL: ts.dir, HTTPClient: ts.srv.Client()})
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("host4.example.com")); err != nil {
		t.Errorf("order after the budget refilled: %v", err)
	}

	// Per registered domain: example.com has spent its 3-an-hour budget and
	// the 21-minute refill, so a second account is refused for it but not
	// for another registered domain.
	other := noRetry(ts.client(t))
	if _, err := other.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AuthorizeOrder(ctx, xacme.DomainIDs("www.example.com")); !errors.As(err, &e) || e.ProblemType != errPrefix+"rateLimited" {
		t.Errorf("order for an exhausted registered domain = %v, want rateLimited", err)
	}
	if _, err := other.AuthorizeOrder(ctx, xacme.DomainIDs("www.example.org")); err != nil {
		t.Errorf("order for another registered domain: %v", err)
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
