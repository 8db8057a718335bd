package acme

import (
	"context"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/internal/testclock"
)

// TestCAARecheckedAtIssuance: a certificate issued from an authorization
// whose last CAA check is over 8 hours old checks CAA again at finalize,
// however young the authorization; a refusal ends the order, a pass is
// recorded and holds for another 8 hours.
func TestCAARecheckedAtIssuance(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ns := startTestDNS(t)
	ns.SetA("www.example.com", "127.0.0.1")
	caa := &recordingCAA{deny: map[string]bool{}}
	clk := testclock.New()
	ts := newTestServer(t, Config{Clock: clk, CAA: CAAOn, CAAVerifier: caa}, testValidation{httpPort: h.port, resolver: ns.Addr()})
	ctx := context.Background()
	c := noRetry(ts.client(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	asked := func() int {
		caa.mu.Lock()
		defer caa.mu.Unlock()
		return len(caa.asked)
	}
	deny := func(on bool) {
		caa.mu.Lock()
		defer caa.mu.Unlock()
		caa.deny["www.example.com"] = on
	}
	const name = "www.example.com"
	issue := func() error {
		t.Helper()
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(name))
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != xacme.StatusReady {
			t.Fatalf("order from a reused authorization is %s, want ready", o.Status)
		}
		_, _, err = c.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, name), false)
		if err != nil {
			if got, gerr := c.GetOrder(ctx, o.URI); gerr == nil {
				t.Logf("order after the refusal: %s", got.Status)
				if isProblem(err, "caa") && got.Status != xacme.StatusInvalid {
					t.Errorf("order refused by CAA is %s, want invalid", got.Status)
				}
			}
		}
		return err
	}

	// Validation checks CAA; issuing right after does not check again.
	o := provenOrder(t, c, h, name)
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, name), false); err != nil {
		t.Fatal(err)
	}
	if n := asked(); n != 1 {
		t.Fatalf("CAA checked %d times by validation and issuance, want 1", n)
	}
	// Within 8 hours of that check the authorization issues without one.
	clk.Advance(MaxCAAAge - time.Minute)
	c = freshNonces(c)
	if err := issue(); err != nil {
		t.Fatalf("issuance 7h59m after the CAA check: %v", err)
	}
	if n := asked(); n != 1 {
		t.Errorf("CAA checked %d times within 8 hours, want 1", n)
	}
	// Past 8 hours CAA is checked again, and its refusal holds.
	clk.Advance(2 * time.Minute)
	c = freshNonces(c)
	deny(true)
	if err := issue(); !isProblem(err, "caa") {
		t.Fatalf("issuance 8h01m after the CAA check, CAA now refusing = %v, want caa", err)
	}
	if n := asked(); n != 2 {
		t.Errorf("CAA checked %d times, want 2", n)
	}
	// A failed lookup is no permission, and leaves the order ready to retry.
	deny(false)
	caa.mu.Lock()
	caa.servfail = map[string]bool{name: true}
	caa.mu.Unlock()
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(name))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, name), false); !isProblem(err, "dns") {
		t.Fatalf("issuance while the CAA lookup fails = %v, want dns", err)
	}
	if got, err := c.GetOrder(ctx, o.URI); err != nil || got.Status != xacme.StatusReady {
		t.Errorf("order after a failed CAA lookup: %+v (%v), want still ready", got, err)
	}
	caa.mu.Lock()
	caa.servfail = nil
	caa.mu.Unlock()
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, dnsCSR(t, name), false); err != nil {
		t.Fatalf("retried finalize once the lookup works: %v", err)
	}
	// A refusal or failure records no check: the next finalize asked again,
	// and its pass is recorded for the next 8 hours.
	if err := issue(); err != nil {
		t.Fatal(err)
	}
	if n := asked(); n != 4 {
		t.Errorf("CAA checked %d times, want 4", n)
	}
	// However young the authorization: one proven 20 days ago (reuse is
	// 30 days) still checks CAA at issuance.
	clk.Advance(20 * 24 * time.Hour)
	c = freshNonces(c)
	if err := issue(); err != nil {
		t.Fatal(err)
	}
	if n := asked(); n != 5 {
		t.Errorf("CAA checked %d times, want 5", n)
	}
}

// TestCAAMaxAgeConfig: CAAMaxAge defaults to 8 hours and may not exceed it.
func TestCAAMaxAgeConfig(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	if ts.acme.cfg.CAAMaxAge != MaxCAAAge {
		t.Errorf("default CAAMaxAge %s, want %s", ts.acme.cfg.CAAMaxAge, MaxCAAAge)
	}
	cfg := ts.acme.cfg
	cfg.CAAMaxAge = MaxCAAAge + time.Second
	if _, err := New(cfg, ts.st, ts.auth, &flakyChallenger{}, ts.acme.nonces); err == nil {
		t.Error("CAAMaxAge over 8 hours accepted")
	}
}
