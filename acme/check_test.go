package acme

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// flakyChallenger fails its first failures calls with err, then succeeds.
type flakyChallenger struct {
	mu       sync.Mutex
	calls    int
	failures int
	err      error
}

func (f *flakyChallenger) answer() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.failures {
		return f.err
	}
	return nil
}

func (f *flakyChallenger) HTTP01(context.Context, Identifier, string, string) error {
	return f.answer()
}
func (f *flakyChallenger) TLSALPN01(context.Context, Identifier, string) error { return f.answer() }
func (f *flakyChallenger) DNS01(context.Context, string, string) error         { return f.answer() }

// recordingCAA refuses the names in deny, fails the lookup of those in
// servfail, and records what it was asked.
type recordingCAA struct {
	mu       sync.Mutex
	deny     map[string]bool
	servfail map[string]bool
	asked    []string
	params   []CAAParams
}

func (c *recordingCAA) Check(_ context.Context, domain string, _ bool, p CAAParams) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, domain)
	c.params = append(c.params, p)
	if c.deny[domain] {
		return CAA("CAA records at " + domain + " do not authorize this CA")
	}
	if c.servfail[domain] {
		return DNS("CAA lookup of " + domain + ": the resolver answered SERVFAIL")
	}
	return nil
}

func dnsAuthz(name string) store.ACMEAuthz {
	return store.ACMEAuthz{ID: "az", Identifier: store.ACMEIdentifier{Type: "dns", Value: name}}
}

// runCheck runs Server.check with a fake clock, advancing it through every
// retry delay, and returns the result.
func runCheck(t *testing.T, s *Server, az store.ACMEAuthz, typ string) error {
	t.Helper()
	fake := s.clk.(*clockwork.FakeClock)
	done := make(chan error, 1)
	go func() {
		done <- s.check(context.Background(), "https://ca.test/acme/acct/1", az, store.ACMEChallenge{Type: typ, Token: "tok"}, "ka")
	}()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(time.Millisecond):
			fake.Advance(time.Second)
		}
	}
}

func TestCheckRetriesNetworkFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retries   int
		failures  int
		err       error
		wantCalls int
		wantType  string // "" for success
	}{
		{"connection refused then fine", 2, 2, Connection("connection refused"), 3, ""},
		{"dns failure beyond the retries", 2, 5, DNS("SERVFAIL"), 3, TypeDNS},
		{"tls failure, retries off", -1, 1, TLS("handshake failed"), 1, TypeTLS},
		{"wrong answer is final", 2, 5, IncorrectResponse("wrong key authorization"), 1, TypeIncorrectResponse},
		{"missing record is final", 2, 5, Unauthorized("no TXT record"), 1, TypeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ch := &flakyChallenger{failures: tt.failures, err: tt.err}
			s := &Server{cfg: Config{ValidationRetries: tt.retries, CAA: CAAOff}, challenger: ch, clk: clockwork.NewFakeClock()}
			err := runCheck(t, s, store.ACMEAuthz{Identifier: store.ACMEIdentifier{Type: "ip", Value: "127.0.0.1"}}, "http-01")
			if got := FromError(err); (tt.wantType == "") != (err == nil) || err != nil && got.Type != tt.wantType {
				t.Errorf("check = %v, want type %q", err, tt.wantType)
			}
			if ch.calls != tt.wantCalls {
				t.Errorf("%d attempts, want %d", ch.calls, tt.wantCalls)
			}
		})
	}
}

func TestCheckCAAModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode      CAAMode
		name      string
		wantAsked bool
	}{
		{CAAAuto, "www.example.com", true},
		{CAAAuto, "svc.internal", false},
		{CAAAuto, "db.corp.test", false},
		{CAAOn, "svc.internal", true},
		{CAAOff, "www.example.com", false},
	}
	for _, tt := range tests {
		caa := &recordingCAA{}
		s := &Server{cfg: Config{CAA: tt.mode, CAAVerifier: caa}, challenger: &flakyChallenger{}, clk: clockwork.NewFakeClock()}
		if err := runCheck(t, s, dnsAuthz(tt.name), "dns-01"); err != nil {
			t.Errorf("%s %s: %v", tt.mode, tt.name, err)
		}
		if asked := len(caa.asked) > 0; asked != tt.wantAsked {
			t.Errorf("%s %s: CAA checked = %v, want %v", tt.mode, tt.name, asked, tt.wantAsked)
		}
		if tt.wantAsked && (caa.params[0].AccountURI != "https://ca.test/acme/acct/1" || caa.params[0].Method != "dns-01") {
			t.Errorf("CAA params %+v, want the account URL and dns-01", caa.params[0])
		}
	}

	// A refusal by CAA fails the validation even though the challenge passed.
	caa := &recordingCAA{deny: map[string]bool{"blocked.example.com": true}}
	s := &Server{cfg: Config{CAA: CAAAuto, CAAVerifier: caa}, challenger: &flakyChallenger{}, clk: clockwork.NewFakeClock()}
	err := runCheck(t, s, dnsAuthz("blocked.example.com"), "http-01")
	var p *Problem
	if !errors.As(err, &p) || p.Type != TypeCAA {
		t.Errorf("check of a CAA-refused name = %v, want a caa problem", err)
	}
	// IP identifiers never get a CAA check.
	caa.asked = nil
	if err := runCheck(t, &Server{cfg: Config{CAA: CAAOn, CAAVerifier: caa}, challenger: &flakyChallenger{}, clk: clockwork.NewFakeClock()},
		store.ACMEAuthz{Identifier: store.ACMEIdentifier{Type: "ip", Value: "192.0.2.1"}}, "http-01"); err != nil || len(caa.asked) != 0 {
		t.Errorf("IP identifier: %v, CAA asked for %v", err, caa.asked)
	}
}
