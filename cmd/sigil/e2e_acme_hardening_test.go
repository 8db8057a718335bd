package main

// ACME hardening end to end (issue 15, items 4, 11 and 12) against a real
// `sigil serve`: where http-01 validation may connect and what it reports,
// CAA at issuance, and rate limits a stranger cannot spend.

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"gopkg.in/yaml.v3"
)

// e2eSetConfigKeys returns the sigil.yaml text with each dotted key set to its
// value (comments are dropped; the keys stay strict-checked by serve).
func e2eSetConfigKeys(t *testing.T, text string, set map[string]any) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("sigil.yaml: %v", err)
	}
	for key, v := range set {
		m := doc
		parts := strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// startACMEConfigured is startACMEE2E with these config keys set.
func startACMEConfigured(t *testing.T, set map[string]any) *acmeE2E {
	t.Helper()
	return startACMEE2EWith(t, func(text string) string { return e2eSetConfigKeys(t, text, set) })
}

// e2eNoRetry stops x/crypto/acme from retrying a 429 by itself: the
// refusal is what is under test.
func e2eNoRetry(c *acme.Client) *acme.Client {
	c.RetryBackoff = func(int, *http.Request, *http.Response) time.Duration { return -1 }
	return c
}

// e2eRegister is a new registered client on the default endpoint.
func e2eRegister(t *testing.T, e *acmeE2E) *acme.Client {
	t.Helper()
	c := e2eNoRetry(e.client(t, ""))
	if _, err := c.Register(context.Background(), &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

// e2eFailedHTTP01 orders name, answers its http-01 challenge with a
// redirect to redirect (or with nothing when redirect is ""), and returns
// the challenge's problem once validation fails.
func e2eFailedHTTP01(t *testing.T, e *acmeE2E, c *acme.Client, name, redirect string) *acme.Error {
	t.Helper()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		t.Fatalf("order %s: %v", name, err)
	}
	az, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	var ch *acme.Challenge
	for _, x := range az.Challenges {
		if x.Type == "http-01" {
			ch = x
		}
	}
	if ch == nil {
		t.Fatalf("no http-01 challenge for %s", name)
	}
	if redirect != "" {
		e.redirects.Store(c.HTTP01ChallengePath(ch.Token), redirect)
	}
	if _, err := c.Accept(ctx, ch); err != nil {
		t.Fatalf("accept: %v", err)
	}
	if _, err := c.WaitAuthorization(ctx, az.URI); err == nil {
		t.Fatalf("http-01 for %s succeeded, want it refused", name)
	}
	got, err := c.GetChallenge(ctx, ch.URI)
	if err != nil {
		t.Fatal(err)
	}
	var ae *acme.Error
	if !errors.As(got.Error, &ae) {
		t.Fatalf("challenge for %s failed without a problem: %+v", name, got)
	}
	t.Logf("%s: %s: %s", name, ae.ProblemType, ae.Detail)
	return ae
}

// internalHost serves a secret on addr (an "internal" host next to the
// validation target) and counts the requests it gets.
func internalHost(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s (loopback beyond 127.0.0.1 needed): %v", addr, err)
	}
	var hits atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "internal-secret-payload")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return &hits
}

// TestE2EACMEValidationTargets (issue 15, item 4): by default an http-01
// redirect to another host on the validation port is not followed, nothing
// of that host's reply reaches the client, and a name resolving to a
// link-local (metadata) address is refused before any connection.
func TestE2EACMEValidationTargets(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEE2E(t)
	hits := internalHost(t, net.JoinHostPort("127.0.0.2", e.httpPort))
	e.dns.setA("redir.sigil.test", net.IPv4(127, 0, 0, 1))
	e.dns.setA("internal.sigil.test", net.IPv4(127, 0, 0, 2))
	e.dns.setA("meta.sigil.test", net.IPv4(169, 254, 169, 254))
	c := e2eRegister(t, e)

	for _, target := range []string{"http://internal.sigil.test/status", "http://127.0.0.2/status"} {
		p := e2eFailedHTTP01(t, e, c, "redir.sigil.test", target)
		if p.ProblemType != "urn:ietf:params:acme:error:connection" || !strings.Contains(p.Detail, "refused") {
			t.Errorf("redirect to %s: %s %q, want a refused connection problem", target, p.ProblemType, p.Detail)
		}
		if strings.Contains(p.Detail, "internal-secret") {
			t.Errorf("redirect to %s: the problem quotes the internal host's reply: %q", target, p.Detail)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal host got %d requests from the validator, want 0", n)
	}

	// A name whose A record is the metadata address: refused at dial time,
	// at once (no connection attempt that could hang or succeed).
	start := time.Now()
	p := e2eFailedHTTP01(t, e, c, "meta.sigil.test", "")
	if p.ProblemType != "urn:ietf:params:acme:error:connection" || !strings.Contains(p.Detail, "link-local") {
		t.Errorf("name resolving to 169.254.169.254: %s %q, want a connection problem naming link-local", p.ProblemType, p.Detail)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("refusing a link-local target took %s", d)
	}

	// What held still holds: the identifier's own redirects are followed.
	c2 := e2eRegister(t, e)
	o, err := c2.AuthorizeOrder(context.Background(), acme.DomainIDs("redir.sigil.test"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := c2.GetAuthorization(context.Background(), o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type == "http-01" {
			path := c2.HTTP01ChallengePath(ch.Token)
			body, err := c2.HTTP01ChallengeResponse(ch.Token)
			if err != nil {
				t.Fatal(err)
			}
			e.redirects.Store(path, "http://redir.sigil.test/moved"+path)
			e.tokens.Store("/moved"+path, body)
		}
	}
	e.solve(t, c2, o, "http-01")
	e.finalize(t, c2, o, acme.DomainIDs("redir.sigil.test"))
}

// TestE2EACMEValidationRedirectHosts (issue 15, item 4): a host named in
// acme.validation.redirect_hosts is followed, but its reply is never
// quoted back; a configured link-local host is still refused at dial time.
func TestE2EACMEValidationRedirectHosts(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEConfigured(t, map[string]any{
		"acme.validation.redirect_hosts": []string{"internal.sigil.test", "169.254.169.254"},
	})
	hits := internalHost(t, net.JoinHostPort("127.0.0.2", e.httpPort))
	e.dns.setA("redir.sigil.test", net.IPv4(127, 0, 0, 1))
	e.dns.setA("internal.sigil.test", net.IPv4(127, 0, 0, 2))
	c := e2eRegister(t, e)

	p := e2eFailedHTTP01(t, e, c, "redir.sigil.test", "http://internal.sigil.test/status")
	if hits.Load() == 0 {
		t.Errorf("a redirect to a configured host was not followed")
	}
	if p.ProblemType != "urn:ietf:params:acme:error:incorrectResponse" || strings.Contains(p.Detail, "internal-secret") {
		t.Errorf("configured host's wrong reply: %s %q, want incorrectResponse without its body", p.ProblemType, p.Detail)
	}
	p = e2eFailedHTTP01(t, e, c, "redir.sigil.test", "http://169.254.169.254/latest/meta-data/")
	if !strings.Contains(p.Detail, "link-local") {
		t.Errorf("redirect to a configured metadata address: %s %q, want refused as link-local", p.ProblemType, p.Detail)
	}
}

// caaIdentity is the CAA issuer domain name the CAA tests configure.
const caaIdentity = "ca.sigil.test"

// TestE2EACMECAAEveryRecord (issue 15, item 11): CAA permits issuance when
// any issue record names this CA, however many other CAs come first.
func TestE2EACMECAAEveryRecord(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEConfigured(t, map[string]any{"acme.caa": "on", "acme.caa_identities": []string{caaIdentity}})
	others := []string{`0 issue "a.example"`, `0 issue "b.example"`, `0 issue "c.example"`, `0 issue "d.example"`}
	for name, recs := range map[string][]string{
		"fourth.sigil.test": append(others[1:], `0 issue "`+caaIdentity+`"`),
		"fifth.sigil.test":  append(append([]string{}, others...), `0 issue "`+caaIdentity+`"`),
		"ninth.sigil.test": append(append(append([]string{}, others...), others...),
			`0 issue "`+caaIdentity+`"`),
	} {
		e.dns.setA(name, net.IPv4(127, 0, 0, 1))
		e.dns.setCAA(t, name, recs...)
	}
	for _, name := range []string{"fourth.sigil.test", "fifth.sigil.test", "ninth.sigil.test"} {
		c := e2eRegister(t, e)
		e.issue(t, c, "http-01", acme.DomainIDs(name)...)
	}
	// Refusals hold: only other CAs, in any number.
	e.dns.setA("refused.sigil.test", net.IPv4(127, 0, 0, 1))
	e.dns.setCAA(t, "refused.sigil.test", append(append([]string{}, others...), others...)...)
	c := e2eRegister(t, e)
	o, err := c.AuthorizeOrder(context.Background(), acme.DomainIDs("refused.sigil.test"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := c.GetAuthorization(context.Background(), o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type == "dns-01" {
			rec, _ := c.DNS01ChallengeRecord(ch.Token)
			e.dns.setTXT("_acme-challenge.refused.sigil.test", rec)
			if _, err := c.Accept(context.Background(), ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = c.WaitAuthorization(context.Background(), az.URI)
	wantProblem(t, err, "caa")
}

// TestE2EACMECAARecheckedOnReuse (issue 15, item 11): an order served by a
// reused authorization checks CAA again at finalize when the last check is
// older than acme.caa_max_age (0s here: every finalize; the 8-hour default
// is proven with a fake clock in acme's TestCAARecheckedAtIssuance).
func TestE2EACMECAARecheckedOnReuse(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEConfigured(t, map[string]any{"acme.caa": "on", "acme.caa_identities": []string{caaIdentity},
		"acme.caa_max_age": "0s"})
	const name = "reuse.sigil.test"
	e.dns.setA(name, net.IPv4(127, 0, 0, 1))
	e.dns.setCAA(t, name, `0 issue "`+caaIdentity+`"`)
	c := e2eRegister(t, e)
	ctx := context.Background()
	e.issue(t, c, "http-01", acme.DomainIDs(name)...)

	// The name's owner now allows another CA only.
	e.dns.setCAA(t, name, `0 issue "other-ca.example"`)
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != acme.StatusReady {
		t.Fatalf("order with a reused authorization is %s, want ready", o.Status)
	}
	csr := func() []byte { return e2eCSRDER(t, name) }
	_, _, err = c.CreateOrderCert(ctx, o.FinalizeURL, csr(), true)
	wantProblem(t, err, "caa")
	if got, err := c.GetOrder(ctx, o.URI); err != nil || got.Status != acme.StatusInvalid {
		t.Errorf("order refused by CAA at finalize: %+v (%v), want invalid", got, err)
	}
	if n := len(e2eListCerts(t, e.p, e.c, "--channel", "acme")); n != 1 {
		t.Errorf("%d certificates issued over ACME, want only the one before the CAA change", n)
	}

	// Once CAA names this CA again, the reused authorization issues.
	e.dns.setCAA(t, name, `0 issue "other-ca.example"`, `0 issue "`+caaIdentity+`"`)
	o, err = c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr(), true); err != nil {
		t.Errorf("finalize once CAA allows again: %v", err)
	}
}

// TestE2EACMEDomainLimitNotSpentByStrangers (issue 15, item 12): orders of
// an account that proved nothing do not spend a registered domain's
// budget; the domain owner still issues, and the budget counts issued
// certificates. The former key orders_per_domain still sets it.
func TestE2EACMEDomainLimitNotSpentByStrangers(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEConfigured(t, map[string]any{"acme.rate_limits": map[string]int{"orders_per_domain": 2}})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		e.dns.setA(n+".victim.test", net.IPv4(127, 0, 0, 1))
	}
	stranger := e2eRegister(t, e)
	for i := range 6 {
		if _, err := stranger.AuthorizeOrder(ctx, acme.DomainIDs("a.victim.test", "www.victim.test")); err != nil {
			t.Fatalf("stranger's unproven order %d: %v", i, err)
		}
	}
	owner := e2eRegister(t, e)
	for _, n := range []string{"a.victim.test", "b.victim.test"} {
		o, err := owner.AuthorizeOrder(ctx, acme.DomainIDs(n))
		if err != nil {
			t.Fatalf("owner's order for %s after a stranger's orders: %v", n, err)
		}
		e.solve(t, owner, o, "http-01")
		e.finalize(t, owner, o, acme.DomainIDs(n))
	}
	// Two certificates spent the budget of two an hour.
	o, err := owner.AuthorizeOrder(ctx, acme.DomainIDs("c.victim.test"))
	if err != nil {
		t.Fatalf("orders are not what the domain budget counts: %v", err)
	}
	e.solve(t, owner, o, "http-01")
	if o, err = owner.WaitOrder(ctx, o.URI); err != nil {
		t.Fatal(err)
	}
	_, _, err = owner.CreateOrderCert(ctx, o.FinalizeURL, e2eCSRDER(t, "c.victim.test"), true)
	wantProblem(t, err, "rateLimited")
	if got, err := owner.GetOrder(ctx, o.URI); err != nil || got.Status != acme.StatusReady {
		t.Errorf("rate-limited order %+v (%v), want still ready", got, err)
	}
}

// TestE2EACMEOrdersPerIP (issue 15, item 12): unproven orders count per
// client IP across accounts, so new accounts do not multiply the budget.
func TestE2EACMEOrdersPerIP(t *testing.T) {
	t.Parallel()
	inProcess(t)
	e := startACMEConfigured(t, map[string]any{"acme.rate_limits": map[string]int{"orders_per_ip": 5}})
	ctx := context.Background()
	a, b := e2eRegister(t, e), e2eRegister(t, e)
	for i := range 5 {
		c := a
		if i%2 == 1 {
			c = b
		}
		if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("n"+string(rune('a'+i))+".sigil.test")); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	for _, c := range []*acme.Client{a, b, e2eRegister(t, e)} {
		_, err := c.AuthorizeOrder(ctx, acme.DomainIDs("late.sigil.test"))
		wantProblem(t, err, "rateLimited")
	}
}

// e2eCSRDER is a DER CSR for DNS names with a fresh P-256 key.
func e2eCSRDER(t *testing.T, names ...string) []byte {
	t.Helper()
	block, _ := pem.Decode(e2eCSR(t, e2eP256(t), "", names...))
	return block.Bytes
}
