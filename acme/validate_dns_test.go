package acme

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is an authoritative DNS server on 127.0.0.1 (UDP, and TCP on the
// same port for truncated answers) for validation tests. A name with no
// records is NXDOMAIN; a name with records of other types answers NOERROR
// with no data. Safe for concurrent use; stopped when the test ends.
type testDNS struct {
	addr string

	mu       sync.Mutex
	a        map[string][]netip.Addr // A and AAAA, by lower-case FQDN
	txt      map[string][]string
	servfail map[string]bool
}

// startTestDNS starts a testDNS on 127.0.0.1:0 and stops it at cleanup.
func startTestDNS(t testing.TB) *testDNS {
	t.Helper()
	d := &testDNS{a: map[string][]netip.Addr{}, txt: map[string][]string{}, servfail: map[string]bool{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("test dns: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	serveDNS(t, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.handle)})
	// TCP is a convenience for answers too large for UDP; the port may be
	// taken for TCP, in which case only UDP is served.
	if l, err := net.Listen("tcp", d.addr); err == nil {
		serveDNS(t, &dns.Server{Listener: l, Handler: dns.HandlerFunc(d.handle)})
	}
	return d
}

// serveDNS runs srv until the test ends.
func serveDNS(t testing.TB, srv *dns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("test dns: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("test dns shutdown: %v", err)
		}
		<-done
	})
}

// Addr is the server's "127.0.0.1:port", for ValidationConfig.Resolver.
func (d *testDNS) Addr() string { return d.addr }

// SetA sets the address records of name: IPv4 addresses answer A queries,
// IPv6 ones AAAA. No addresses removes them.
func (d *testDNS) SetA(name string, ips ...string) {
	var addrs []netip.Addr
	for _, s := range ips {
		addrs = append(addrs, netip.MustParseAddr(s).Unmap())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[fqdn(name)] = addrs
}

// SetTXT sets the TXT records of name, one record per value (values longer
// than 255 bytes are split into strings of one record). No values removes
// them.
func (d *testDNS) SetTXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[fqdn(name)] = values
}

// SetServFail makes every query for name answer SERVFAIL (on) or not.
func (d *testDNS) SetServFail(name string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[fqdn(name)] = on
}

func fqdn(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (d *testDNS) handle(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	// Without these flags an empty NOERROR reads as a lame referral to Go.
	m.Authoritative, m.RecursionAvailable = true, true
	d.mu.Lock()
	for _, q := range r.Question {
		name := fqdn(q.Name)
		if d.servfail[name] {
			m.Rcode = dns.RcodeServerFailure
			continue
		}
		addrs, txts := d.a[name], d.txt[name]
		if len(addrs) == 0 && len(txts) == 0 {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := func(t uint16) dns.RR_Header {
			return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 0}
		}
		switch q.Qtype {
		case dns.TypeA:
			for _, a := range addrs {
				if a.Is4() {
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
				}
			}
		case dns.TypeAAAA:
			for _, a := range addrs {
				if a.Is6() {
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
				}
			}
		case dns.TypeTXT:
			for _, v := range txts {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(v)})
			}
		}
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

// splitTXT splits v into character-strings of at most 255 bytes.
func splitTXT(v string) []string {
	out := []string{}
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// dns01Value is the TXT value that proves keyAuth (RFC 8555 §8.4).
func dns01Value(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestDNS01(t *testing.T) {
	t.Parallel()
	const keyAuth = "tok-DNS01.thumbprint"
	srv := startTestDNS(t)
	srv.SetTXT("_acme-challenge.ok.test", dns01Value(keyAuth))
	srv.SetTXT("_acme-challenge.several.test", "first", dns01Value(keyAuth), "third")
	srv.SetTXT("_acme-challenge.wrong.test", "nope", "also-wrong", "still-wrong", "wrong-again")
	srv.SetTXT("_acme-challenge.long.test", strings.Repeat("x", 300)+dns01Value(keyAuth))
	srv.SetA("_acme-challenge.nodata.test", "127.0.0.1")
	srv.SetServFail("_acme-challenge.servfail.test", true)
	srv.SetTXT("_acme-challenge.MiXeD.test", dns01Value(keyAuth))

	v := newTestValidator(t, ValidationConfig{Resolver: srv.Addr(), Timeout: 5 * time.Second})
	tests := []struct {
		name     string
		domain   string
		keyAuth  string
		wantType string // "" = success
		inDetail string
	}{
		{name: "ok", domain: "ok.test", keyAuth: keyAuth},
		{name: "one of several", domain: "several.test", keyAuth: keyAuth},
		{name: "wildcard base", domain: "*.ok.test", keyAuth: keyAuth},
		{name: "trailing dot", domain: "ok.test.", keyAuth: keyAuth},
		{name: "case-insensitive name", domain: "mixed.TEST", keyAuth: keyAuth},
		{name: "wrong value", domain: "wrong.test", keyAuth: keyAuth, wantType: TypeIncorrectResponse, inDetail: `"nope"`},
		{name: "other key authorization", domain: "ok.test", keyAuth: "tok.other", wantType: TypeIncorrectResponse, inDetail: dns01Value("tok.other")},
		{name: "long wrong value", domain: "long.test", keyAuth: keyAuth, wantType: TypeIncorrectResponse, inDetail: `xxx..."`},
		{name: "nxdomain", domain: "missing.test", keyAuth: keyAuth, wantType: TypeUnauthorized, inDetail: "no TXT record found at _acme-challenge.missing.test"},
		{name: "no TXT data", domain: "nodata.test", keyAuth: keyAuth, wantType: TypeUnauthorized, inDetail: "no TXT record"},
		{name: "servfail", domain: "servfail.test", keyAuth: keyAuth, wantType: TypeDNS, inDetail: "_acme-challenge.servfail.test"},
		{name: "bad domain", domain: "bad domain", keyAuth: keyAuth, wantType: TypeMalformed},
		{name: "empty domain", domain: "", keyAuth: keyAuth, wantType: TypeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := v.DNS01(t.Context(), tc.domain, tc.keyAuth)
			checkProblem(t, err, tc.wantType, tc.inDetail)
		})
	}
}

func TestDNS01ResolverFailures(t *testing.T) {
	t.Parallel()
	t.Run("no server", func(t *testing.T) {
		t.Parallel()
		// A UDP port nobody reads: the query is refused or times out.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		v := newTestValidator(t, ValidationConfig{Resolver: addr, Timeout: 2 * time.Second})
		checkProblem(t, v.DNS01(t.Context(), "example.test", "k.a"), TypeDNS, "_acme-challenge.example.test")
	})
	t.Run("hanging server", func(t *testing.T) {
		t.Parallel()
		// Reads queries, never answers.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		v := newTestValidator(t, ValidationConfig{Resolver: pc.LocalAddr().String(), Timeout: 300 * time.Millisecond})
		err = promptly(t, 5*time.Second, func(ctx context.Context) error {
			return v.DNS01(ctx, "example.test", "k.a")
		})
		checkProblem(t, err, TypeDNS, "timed out after 300ms")
	})
}

func TestTestDNSHelper(t *testing.T) {
	t.Parallel()
	srv := startTestDNS(t)
	srv.SetA("Host.Test", "127.0.0.1", "::1")
	srv.SetTXT("txt.test", "a", "b")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr())
	}}
	ips, err := r.LookupNetIP(t.Context(), "ip", "host.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 {
		t.Errorf("LookupNetIP = %v, want 127.0.0.1 and ::1", ips)
	}
	txts, err := r.LookupTXT(t.Context(), "txt.test.")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(txts, ",") != "a,b" {
		t.Errorf("LookupTXT = %q, want [a b]", txts)
	}
	srv.SetTXT("txt.test")
	if _, err := r.LookupTXT(t.Context(), "txt.test."); err == nil {
		t.Error("LookupTXT after removal succeeded, want NXDOMAIN")
	}
}
