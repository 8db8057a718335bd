package acme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// caaDNS is a test resolver on 127.0.0.1, UDP and TCP on one port, that
// answers CAA queries as a recursive resolver would: through CNAMEs, with
// the target's records. A name that has no records, is no alias and is no
// ancestor of one that has is NXDOMAIN. It logs the names queried.
type caaDNS struct {
	addr string

	mu       sync.Mutex
	caa      map[string][]*dns.CAA // by lower-case FQDN
	cname    map[string]string
	servfail map[string]bool
	trunc    map[string]bool // UDP answers are empty and truncated
	queries  []string
}

// startCAADNS starts a caaDNS and stops it at cleanup.
func startCAADNS(t testing.TB) *caaDNS {
	t.Helper()
	d := &caaDNS{caa: map[string][]*dns.CAA{}, cname: map[string]string{}, servfail: map[string]bool{}, trunc: map[string]bool{}}
	// TCP must share the UDP port, for truncated answers; retry until a
	// free pair is found.
	var pc net.PacketConn
	var l net.Listener
	for try := 0; l == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatalf("test dns: %v", err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatalf("caa dns: no port free for both UDP and TCP: %v", err)
			}
		}
	}
	d.addr = pc.LocalAddr().String()
	serveDNS(t, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.handle)})
	serveDNS(t, &dns.Server{Listener: l, Handler: dns.HandlerFunc(d.handle)})
	return d
}

// Addr is the server's "127.0.0.1:port", for CAAConfig.Resolver.
func (d *caaDNS) Addr() string { return d.addr }

// SetCAA sets the CAA records of name, each in presentation format after
// the type: `0 issue "ca.test"`.
func (d *caaDNS) SetCAA(t testing.TB, name string, records ...string) {
	t.Helper()
	var rrs []*dns.CAA
	for _, r := range records {
		rr, err := dns.NewRR(fmt.Sprintf("%s 0 IN CAA %s", dns.Fqdn(name), r))
		if err != nil {
			t.Fatalf("CAA %q: %v", r, err)
		}
		rrs = append(rrs, rr.(*dns.CAA))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.caa[fqdn(name)] = rrs
}

// SetCNAME makes name an alias of target.
func (d *caaDNS) SetCNAME(name, target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cname[fqdn(name)] = fqdn(target)
}

// SetServFail makes queries for name answer SERVFAIL.
func (d *caaDNS) SetServFail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[fqdn(name)] = true
}

// SetTruncated makes UDP queries for name answer truncated, so that only
// TCP gets the records.
func (d *caaDNS) SetTruncated(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.trunc[fqdn(name)] = true
}

// Queries returns the names queried so far, and forgets them.
func (d *caaDNS) Queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queries
	d.queries = nil
	return q
}

// exists reports whether name has records or is an alias, or an ancestor
// of such a name (an empty non-terminal answers NOERROR).
func (d *caaDNS) exists(name string) bool {
	for n := range d.caa {
		if n == name || strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	for n := range d.cname {
		if n == name || strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func (d *caaDNS) handle(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	_, udp := w.LocalAddr().(*net.UDPAddr)
	d.mu.Lock()
	for _, q := range r.Question {
		name := fqdn(q.Name)
		d.queries = append(d.queries, name)
		switch {
		case d.servfail[name]:
			m.Rcode = dns.RcodeServerFailure
		case d.trunc[name] && udp:
			m.Truncated = true
		default:
			target := name
			if c, ok := d.cname[name]; ok {
				m.Answer = append(m.Answer, &dns.CNAME{
					Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET},
					Target: c,
				})
				target = c
			}
			if q.Qtype == dns.TypeCAA {
				for _, rr := range d.caa[target] {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			if !d.exists(target) {
				m.Rcode = dns.RcodeNameError
			}
		}
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

func newTestCAAChecker(t testing.TB, cfg CAAConfig) *CAAChecker {
	t.Helper()
	c, err := NewCAAChecker(cfg)
	if err != nil {
		t.Fatalf("NewCAAChecker: %v", err)
	}
	return c
}

const caaTestAccount = "https://ca.sigil.test/acme/acct/1"

func TestCAACheck(t *testing.T) {
	t.Parallel()
	srv := startCAADNS(t)
	srv.SetCAA(t, "ours.test", `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "other.test", `0 issue "letsencrypt.org"`)
	srv.SetCAA(t, "wild.test", `0 issue "ca.sigil.test"`, `0 issuewild ";"`)
	srv.SetCAA(t, "wildother.test", `0 issue "ca.sigil.test"`, `0 issuewild "other.ca"`)
	srv.SetCAA(t, "wildonly.test", `0 issuewild "ca.sigil.test"`)
	srv.SetCAA(t, "wildonlyother.test", `0 issuewild "other.ca"`)
	srv.SetCAA(t, "issueother.test", `0 issue "other.ca"`)
	srv.SetCAA(t, "crit.test", `128 tbs "Unknown"`, `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "critknown.test", `128 issue "ca.sigil.test"`, `128 IODEF "mailto:sec@critknown.test"`)
	srv.SetCAA(t, "noncrit.test", `0 tbs "Unknown"`, `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "noncritonly.test", `0 tbs "Unknown"`)
	srv.SetCAA(t, "iodefonly.test", `0 iodef "mailto:sec@iodefonly.test"`)
	srv.SetCAA(t, "case.test", `0 IsSuE "CA.Sigil.TEST"`)
	srv.SetCAA(t, "second.test", `0 issue "sigil.internal"`)
	srv.SetCAA(t, "empty.test", `0 issue ";"`)
	srv.SetCAA(t, "blank.test", `0 issue ""`)
	srv.SetCAA(t, "mixed.test", `0 issue ";"`, `0 issue "other.ca"`, `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "acct.test", `0 issue "ca.sigil.test; accounturi=`+caaTestAccount+`"`)
	srv.SetCAA(t, "vm.test", `0 issue "ca.sigil.test; validationmethods=dns-01,tls-alpn-01"`)
	srv.SetCAA(t, "both.test", `0 issue "  ca.sigil.test ;  AccountURI = `+caaTestAccount+` ;ValidationMethods=http-01;"`)
	srv.SetCAA(t, "unknownparam.test", `0 issue "ca.sigil.test; policy=ev"`)
	srv.SetCAA(t, "junk.test", `0 issue "ca.sigil.test junk"`, `0 issue "ca.sigil.test; =x"`)
	srv.SetCAA(t, "closest.test", `0 issue ";"`)
	srv.SetCAA(t, "allowed.closest.test", `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "many.test", `0 issue "a.ca"`, `0 issue "b.ca"`, `0 issue "c.ca"`, `0 issue "d.ca"`, `0 issue "e.ca"`)
	// Ours after four others, and after many others: every record counts,
	// not only those quoted in a refusal.
	srv.SetCAA(t, "fifth.test", `0 issue "a.ca"`, `0 issue "b.ca"`, `0 issue "c.ca"`, `0 issue "d.ca"`, `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "last.test", `0 issue "a.ca"`, `0 issue "b.ca"`, `0 issue "c.ca"`, `0 issue "d.ca"`, `0 issue "e.ca"`,
		`0 issue "f.ca"`, `0 issue "g.ca"`, `0 issue ";"`, `0 issue "ca.sigil.test; policy=x"`)
	srv.SetCAA(t, "fifthwild.test", `0 issuewild "a.ca"`, `0 issuewild "b.ca"`, `0 issuewild "c.ca"`, `0 issuewild "d.ca"`,
		`0 issuewild "ca.sigil.test"`)
	srv.SetCAA(t, "fifthacct.test", `0 issue "a.ca"`, `0 issue "b.ca"`, `0 issue "c.ca"`, `0 issue "d.ca"`,
		`0 issue "ca.sigil.test; accounturi=`+caaTestAccount+`0"`)
	srv.SetServFail("servfail.test")
	srv.SetServFail("parentfail.test")
	srv.SetCAA(t, "child.parentfail.test", `0 iodef "mailto:x@parentfail.test"`)
	srv.SetCNAME("alias.test", "target.other.test")
	srv.SetCAA(t, "target.other.test", `0 issue "other.ca"`)
	srv.SetCNAME("goodalias.test", "target.ours.test")
	srv.SetCAA(t, "target.ours.test", `0 issue "ca.sigil.test"`)
	srv.SetTruncated("trunc.test")
	srv.SetCAA(t, "trunc.test", `0 issue "other.ca"`)

	c := newTestCAAChecker(t, CAAConfig{
		Identities: []string{"ca.sigil.test", "SIGIL.internal"},
		Resolver:   srv.Addr(),
		Timeout:    5 * time.Second,
	})
	tests := []struct {
		name     string
		domain   string
		wildcard bool
		params   CAAParams
		wantType string // "" = permitted
		inDetail string
	}{
		{name: "no CAA anywhere", domain: "www.none.test"},
		{name: "no CAA, wildcard", domain: "*.none.test"},
		{name: "ours at the name", domain: "ours.test"},
		{name: "ours at the parent", domain: "www.ours.test"},
		{name: "ours at the grandparent", domain: "a.b.ours.test"},
		{name: "trailing dot", domain: "www.ours.test."},
		{name: "upper-case domain", domain: "WWW.Ours.Test"},
		{name: "other CA at the parent", domain: "www.other.test", wantType: TypeCAA,
			inDetail: `at other.test do not authorize ca.sigil.test or sigil.internal to issue for www.other.test: 0 issue "letsencrypt.org" (another CA)`},
		{name: "issuewild forbids a wildcard", domain: "*.wild.test", wantType: TypeCAA, inDetail: `0 issuewild ";" (no CA may issue)`},
		{name: "issuewild forbids wildcard=true", domain: "wild.test", wildcard: true, wantType: TypeCAA, inDetail: `for *.wild.test: 0 issuewild ";"`},
		{name: "issue permits the non-wildcard", domain: "www.wild.test"},
		{name: "issuewild for another CA", domain: "*.wildother.test", wantType: TypeCAA, inDetail: `0 issuewild "other.ca"`},
		{name: "issuewild other, non-wildcard", domain: "wildother.test"},
		{name: "issuewild ours permits a wildcard", domain: "*.wildonly.test"},
		{name: "issuewild only: non-wildcard unrestricted", domain: "wildonly.test"},
		{name: "issuewild other only: non-wildcard unrestricted", domain: "x.wildonlyother.test"},
		{name: "no issuewild: issue rules a wildcard", domain: "*.issueother.test", wantType: TypeCAA, inDetail: `0 issue "other.ca"`},
		{name: "no issuewild: issue ours permits a wildcard", domain: "*.ours.test"},
		{name: "critical unknown tag", domain: "crit.test", wantType: TypeCAA, inDetail: `128 tbs "Unknown" at crit.test has an unknown critical property`},
		{name: "critical unknown tag, wildcard", domain: "*.crit.test", wantType: TypeCAA, inDetail: "unknown critical"},
		{name: "critical known tags", domain: "critknown.test"},
		{name: "non-critical unknown tag ignored", domain: "noncrit.test"},
		{name: "non-critical unknown tag only", domain: "noncritonly.test"},
		{name: "iodef only", domain: "www.iodefonly.test"},
		{name: "case-insensitive tag and issuer", domain: "case.test"},
		{name: "second identity", domain: "second.test"},
		{name: "empty issuer", domain: "empty.test", wantType: TypeCAA, inDetail: `0 issue ";" (no CA may issue)`},
		{name: "blank value", domain: "blank.test", wantType: TypeCAA, inDetail: "no CA may issue"},
		{name: "one authorizing record is enough", domain: "mixed.test"},
		{name: "accounturi match", domain: "acct.test", params: CAAParams{AccountURI: caaTestAccount}},
		{name: "accounturi mismatch", domain: "acct.test", params: CAAParams{AccountURI: caaTestAccount + "0"},
			wantType: TypeCAA, inDetail: "accounturi does not name the requesting account"},
		{name: "accounturi, no account", domain: "acct.test", wantType: TypeCAA, inDetail: "accounturi"},
		{name: "validationmethods match", domain: "vm.test", params: CAAParams{Method: "dns-01"}},
		{name: "validationmethods match, any case", domain: "vm.test", params: CAAParams{Method: "TLS-ALPN-01"}},
		{name: "validationmethods mismatch", domain: "vm.test", params: CAAParams{Method: "http-01"},
			wantType: TypeCAA, inDetail: "validationmethods does not list http-01"},
		{name: "validationmethods, no method", domain: "vm.test", wantType: TypeCAA, inDetail: "no method was given"},
		{name: "both parameters, whitespace and case", domain: "both.test",
			params: CAAParams{AccountURI: caaTestAccount, Method: "http-01"}},
		{name: "both parameters, wrong method", domain: "both.test",
			params: CAAParams{AccountURI: caaTestAccount, Method: "dns-01"}, wantType: TypeCAA, inDetail: "validationmethods"},
		{name: "unknown parameter ignored", domain: "unknownparam.test"},
		{name: "unparseable values do not authorize", domain: "junk.test", wantType: TypeCAA,
			inDetail: `0 issue "ca.sigil.test junk" (unparseable: unexpected 'j' after the issuer domain name), 0 issue "ca.sigil.test; =x" (unparseable`},
		{name: "closest set rules: child allows", domain: "www.allowed.closest.test"},
		{name: "closest set rules: parent forbids", domain: "www.other.closest.test", wantType: TypeCAA, inDetail: "at closest.test"},
		{name: "records quoted at most three", domain: "many.test", wantType: TypeCAA, inDetail: `0 issue "c.ca" (another CA), ...`},
		{name: "ours fifth after four others", domain: "fifth.test"},
		{name: "ours last after eight others", domain: "www.last.test"},
		{name: "issuewild ours fifth", domain: "*.fifthwild.test"},
		{name: "ours fifth with a wrong accounturi", domain: "fifthacct.test", params: CAAParams{AccountURI: caaTestAccount},
			wantType: TypeCAA, inDetail: `0 issue "c.ca" (another CA), ...`},
		{name: "servfail", domain: "servfail.test", wantType: TypeDNS, inDetail: "CAA lookup of servfail.test: the resolver answered SERVFAIL"},
		{name: "servfail at a parent", domain: "www.servfail.test", wantType: TypeDNS, inDetail: "CAA lookup of servfail.test"},
		{name: "servfail after an iodef-only set", domain: "child.parentfail.test"},
		{name: "CNAME to a forbidding set", domain: "alias.test", wantType: TypeCAA, inDetail: "at alias.test (via its alias target.other.test)"},
		{name: "CNAME to a permitting set", domain: "goodalias.test"},
		{name: "truncated over UDP, records over TCP", domain: "trunc.test", wantType: TypeCAA, inDetail: `0 issue "other.ca"`},
		{name: "IP address", domain: "10.0.0.1"},
		{name: "IPv6 address", domain: "2001:db8::1"},
		{name: "invalid name", domain: "bad name.test", wantType: TypeMalformed},
		{name: "empty name", domain: "", wantType: TypeMalformed},
		{name: "wildcard IP", domain: "*.10.0.0.1", wantType: TypeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := c.Check(t.Context(), tc.domain, tc.wildcard, tc.params)
			checkProblem(t, err, tc.wantType, tc.inDetail)
		})
	}
}

// TestCAATreeClimb checks that each label is queried once, from the name
// up to the TLD, and that the climb stops at the first set found.
func TestCAATreeClimb(t *testing.T) {
	t.Parallel()
	srv := startCAADNS(t)
	srv.SetCAA(t, "c.found.test", `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "found.test", `0 issue ";"`)
	c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: srv.Addr()})
	tests := []struct {
		domain   string
		wildcard bool
		want     []string
	}{
		{domain: "a.b.c.none.test", want: []string{"a.b.c.none.test.", "b.c.none.test.", "c.none.test.", "none.test.", "test."}},
		{domain: "*.b.c.none.test.", want: []string{"b.c.none.test.", "c.none.test.", "none.test.", "test."}},
		{domain: "a.b.c.found.test", want: []string{"a.b.c.found.test.", "b.c.found.test.", "c.found.test."}},
		{domain: "found.test", wildcard: true, want: []string{"found.test."}},
		{domain: "localhost", want: []string{"localhost."}},
	}
	for _, tc := range tests {
		// Sequential: the server's query log is shared.
		_ = c.Check(t.Context(), tc.domain, tc.wildcard, CAAParams{})
		if got := srv.Queries(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: queried %q, want %q", tc.domain, got, tc.want)
		}
	}
}

func TestCAAResolverFailures(t *testing.T) {
	t.Parallel()
	t.Run("no server", func(t *testing.T) {
		t.Parallel()
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: addr, Timeout: 2 * time.Second})
		checkProblem(t, c.Check(t.Context(), "www.example.test", false, CAAParams{}), TypeDNS, "CAA lookup of www.example.test")
	})
	t.Run("hanging server", func(t *testing.T) {
		t.Parallel()
		// Reads queries, never answers.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: pc.LocalAddr().String(),
			Timeout: 300 * time.Millisecond})
		// Well under the library's own 2s read timeout, so only the
		// configured one can end it.
		err = promptly(t, 1500*time.Millisecond, func(ctx context.Context) error {
			return c.Check(ctx, "a.b.example.test", false, CAAParams{})
		})
		checkProblem(t, err, TypeDNS, "CAA lookup of a.b.example.test: timed out after 300ms")
	})
	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: pc.LocalAddr().String()})
		err = promptly(t, 1500*time.Millisecond, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return c.Check(ctx, "example.test", false, CAAParams{})
		})
		checkProblem(t, err, TypeDNS, "timed out (deadline reached)")
	})
	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: pc.LocalAddr().String()})
		err = promptly(t, 1500*time.Millisecond, func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			go func() {
				// Cancel once the query is in flight.
				buf := make([]byte, 512)
				_, _, _ = pc.ReadFrom(buf)
				cancel()
			}()
			return c.Check(ctx, "example.test", false, CAAParams{})
		})
		checkProblem(t, err, TypeDNS, "validation canceled")
	})
}

func TestNewCAAChecker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     CAAConfig
		wantErr string // "" = valid
	}{
		{name: "minimal", cfg: CAAConfig{Identities: []string{"sigil.internal"}}},
		{name: "full", cfg: CAAConfig{Identities: []string{"Sigil.Internal", "ca.example.com"}, Resolver: "[::1]:53", Timeout: time.Second}},
		{name: "no identity", cfg: CAAConfig{}},
		{name: "bad identity", cfg: CAAConfig{Identities: []string{"ca example"}}, wantErr: `identity "ca example"`},
		{name: "wildcard identity", cfg: CAAConfig{Identities: []string{"*.sigil.internal"}}, wantErr: "not an issuer domain name"},
		{name: "trailing dot identity", cfg: CAAConfig{Identities: []string{"sigil.internal."}}, wantErr: "not an issuer domain name"},
		{name: "empty identity", cfg: CAAConfig{Identities: []string{""}}, wantErr: "not an issuer domain name"},
		{name: "resolver without port", cfg: CAAConfig{Identities: []string{"a.test"}, Resolver: "127.0.0.1"}, wantErr: "resolver"},
		{name: "resolver port 0", cfg: CAAConfig{Identities: []string{"a.test"}, Resolver: "127.0.0.1:0"}, wantErr: "not host:port"},
		{name: "resolver without host", cfg: CAAConfig{Identities: []string{"a.test"}, Resolver: ":53"}, wantErr: "not host:port"},
		{name: "negative timeout", cfg: CAAConfig{Identities: []string{"a.test"}, Timeout: -time.Second}, wantErr: "negative timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewCAAChecker(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewCAAChecker: %v", err)
				}
				if c.timeout <= 0 {
					t.Errorf("timeout = %s, want a positive default", c.timeout)
				}
				for _, id := range c.identities {
					if id != strings.ToLower(id) {
						t.Errorf("identity %q not lower-cased", id)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewCAAChecker error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCAAResolvServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		conf string
		want []string
	}{
		{name: "v4 and v6", conf: "search corp.test\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n",
			want: []string{"192.0.2.1:53", "[2001:db8::1]:53"}},
		{name: "at most three", conf: "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
			want: []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"}},
		{name: "none", conf: "options ndots:2\n", want: []string{"127.0.0.1:53", "[::1]:53"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf, err := dns.ClientConfigFromReader(strings.NewReader(tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			if got := resolvServers(conf); !slices.Equal(got, tc.want) {
				t.Errorf("resolvServers = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseCAAIssueValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value   string
		issuer  string
		params  []caaParam
		wantErr string // "" = parses
	}{
		{value: "ca.test", issuer: "ca.test"},
		{value: "  CA.Test\t", issuer: "ca.test"},
		{value: "", issuer: ""},
		{value: ";", issuer: ""},
		{value: " ; ", issuer: ""},
		{value: "ca.test;", issuer: "ca.test"},
		{value: "ca.test; accounturi=https://ca.test/acct/1", issuer: "ca.test",
			params: []caaParam{{"accounturi", "https://ca.test/acct/1"}}},
		{value: "ca.test ;\taccountURI = a=b ; validationmethods=dns-01,http-01 ;", issuer: "ca.test",
			params: []caaParam{{"accounturi", "a=b"}, {"validationmethods", "dns-01,http-01"}}},
		{value: "; policy=", issuer: "", params: []caaParam{{"policy", ""}}},
		{value: "ca-1.test; x-y=1", issuer: "ca-1.test", params: []caaParam{{"x-y", "1"}}},
		{value: "ca.test.", wantErr: "invalid issuer domain name"},
		{value: "-ca.test", wantErr: "invalid issuer domain name"},
		{value: "ca_x.test", wantErr: "invalid issuer domain name"},
		{value: "ca..test", wantErr: "invalid issuer domain name"},
		{value: "ca.test junk", wantErr: "unexpected 'j'"},
		{value: "ca.test; =x", wantErr: "invalid parameter tag"},
		{value: "ca.test; a b=c", wantErr: "no '='"},
		{value: "ca.test; a", wantErr: "no '='"},
		{value: "ca.test; a=b c", wantErr: "invalid character 'c'"},
		{value: "ca.test; a=b\x00", wantErr: "invalid character"},
		{value: "ca.test; a=\u00e9", wantErr: "invalid character"},
		{value: "ca.test;; a=b", wantErr: "invalid parameter tag"},
		{value: "ca.test; a=1; A=2", wantErr: "given twice"},
		{value: "ca.test; -a=1", wantErr: "invalid parameter tag"},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			v, err := parseCAAIssueValue(tc.value)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("parse(%q) error = %v, want one containing %q", tc.value, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.value, err)
			}
			if v.issuer != tc.issuer || !slices.Equal(v.params, tc.params) {
				t.Errorf("parse(%q) = %+v, want issuer %q params %v", tc.value, v, tc.issuer, tc.params)
			}
		})
	}
}

func TestCAAMethodListed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		list, method string
		want         bool
	}{
		{"dns-01", "dns-01", true},
		{"dns-01,http-01", "http-01", true},
		{"dns-01,http-01", "tls-alpn-01", false},
		{"DNS-01", "dns-01", true},
		{"dns-01,", "dns-01", false},
		{"", "dns-01", false},
		{"dns-01", "", false},
		{"dns-01,http_01", "dns-01", false},
	}
	for _, tc := range tests {
		if got := methodListed(tc.list, tc.method); got != tc.want {
			t.Errorf("methodListed(%q, %q) = %v, want %v", tc.list, tc.method, got, tc.want)
		}
	}
}

func TestPublicLooking(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"www.google.com", true},
		{"a.b.co.uk", true},
		{"example.com", true}, // an ICANN name: only the TLD "example" is special
		{"WWW.Example.ORG.", true},
		{"*.example.net", true},
		{"com", true},
		{"co.uk", true},
		{"foo.internal", false},
		{"localhost", false},
		{"www.localhost", false},
		{"x.test", false},
		{"host.lan", false},
		{"printer.local", false},
		{"a.example", false},
		{"x.invalid", false},
		{"router.home.arpa", false},
		{"home.arpa", false},
		{"dc1.corp", false},
		{"nas.home", false},
		{"wiki.intranet", false},
		{"db.private", false},
		{"abc.onion", false},
		{"foo.alt", false},
		{"host.notarealtld", false},
		{"svc.cluster.local", false},
		{"10.0.0.1", false},
		{"::1", false},
		{"2001:db8::1", false},
		{"", false},
		{".", false},
		{"bad name.com", false},
		{"a..com", false},
	}
	for _, tc := range tests {
		if got := PublicLooking(tc.name); got != tc.want {
			t.Errorf("PublicLooking(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// formatCAAIssue writes v back in canonical form.
func formatCAAIssue(v caaIssue) string {
	var b strings.Builder
	b.WriteString(v.issuer)
	for _, p := range v.params {
		b.WriteString("; " + p.tag + "=" + p.value)
	}
	return b.String()
}

// FuzzCAAIssueValue feeds arbitrary values to the issue-value parser: it
// never panics, what it accepts is well formed and survives a round trip,
// and a record holding it is judged without panicking. Seeds: below and
// testdata/fuzz/FuzzCAAIssueValue.
func FuzzCAAIssueValue(f *testing.F) {
	f.Add("ca.sigil.test; accounturi=" + caaTestAccount + "; validationmethods=dns-01,http-01")
	f.Add("other.ca; accounturi=" + caaTestAccount)
	c, err := NewCAAChecker(CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: "127.0.0.1:53"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseCAAIssueValue(s)
		why := c.refusal(s, CAAParams{AccountURI: caaTestAccount, Method: "dns-01"})
		if err != nil {
			if v.issuer != "" || v.params != nil {
				t.Fatalf("error %v with a value %+v", err, v)
			}
			if !strings.HasPrefix(why, "unparseable: ") {
				t.Fatalf("refusal of unparseable %q = %q", s, why)
			}
			return
		}
		if v.issuer != "" && (!validIssuerDomain(v.issuer) || v.issuer != strings.ToLower(v.issuer)) {
			t.Fatalf("issuer %q", v.issuer)
		}
		for i, p := range v.params {
			if !caaLabel(p.tag) || p.tag != strings.ToLower(p.tag) {
				t.Fatalf("tag %q", p.tag)
			}
			if strings.ContainsFunc(p.value, func(r rune) bool { return r <= ' ' || r == ';' || r > '~' }) {
				t.Fatalf("value %q", p.value)
			}
			if slices.ContainsFunc(v.params[:i], func(q caaParam) bool { return q.tag == p.tag }) {
				t.Fatalf("duplicate tag %q", p.tag)
			}
		}
		again, err := parseCAAIssueValue(formatCAAIssue(v))
		if err != nil || again.issuer != v.issuer || !slices.Equal(again.params, v.params) {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, v)
		}
		if why == "" && v.issuer != "ca.sigil.test" {
			t.Fatalf("%q authorizes, naming %q", s, v.issuer)
		}
	})
}

// TestCAAProblemIsProblem checks that Check's errors reach the ACME
// adapter as the typed problem, not as serverInternal.
func TestCAAProblemIsProblem(t *testing.T) {
	t.Parallel()
	srv := startCAADNS(t)
	srv.SetCAA(t, "other.test", `0 issue "other.ca"`)
	c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}, Resolver: srv.Addr()})
	err := c.Check(t.Context(), "other.test", false, CAAParams{})
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("Check = %v (%T), want a *Problem", err, err)
	}
	if got := FromError(err); got.Type != TypeCAA || got.Status != 403 {
		t.Errorf("FromError = %s %d, want %s 403", got.Type, got.Status, TypeCAA)
	}
}

// TestCAANoIdentity: a CA with no CAA identity passes only names whose
// records do not restrict issuance.
func TestCAANoIdentity(t *testing.T) {
	t.Parallel()
	srv := startCAADNS(t)
	srv.SetCAA(t, "restricted.test", `0 issue "ca.sigil.test"`)
	srv.SetCAA(t, "reporting.test", `0 iodef "mailto:sec@reporting.test"`)
	c := newTestCAAChecker(t, CAAConfig{Resolver: srv.Addr(), Timeout: 5 * time.Second})
	ctx := context.Background()
	for _, name := range []string{"free.test", "www.reporting.test"} {
		if err := c.Check(ctx, name, false, CAAParams{}); err != nil {
			t.Errorf("Check(%s) = %v, want nil", name, err)
		}
	}
	if err := c.Check(ctx, "www.restricted.test", false, CAAParams{}); FromError(err).Type != TypeCAA {
		t.Errorf("Check(www.restricted.test) = %v, want a caa problem", err)
	}
}

// TestCAAEvaluateOrderIndependent: the decision on a record set is the
// same in every order of its records, however many there are.
func TestCAAEvaluateOrderIndependent(t *testing.T) {
	t.Parallel()
	c := newTestCAAChecker(t, CAAConfig{Identities: []string{"ca.sigil.test"}})
	parse := func(recs ...string) []*dns.CAA {
		var out []*dns.CAA
		for _, r := range recs {
			rr, err := dns.NewRR("x.test. 0 IN CAA " + r)
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			out = append(out, rr.(*dns.CAA))
		}
		return out
	}
	others := []string{`0 issue "a.ca"`, `0 issue "b.ca"`, `0 issue "c.ca"`, `0 issue "d.ca"`, `0 issue ";"`, `0 issue "e.ca; x=y"`}
	sets := []struct {
		recs  []string
		allow bool
	}{
		{append(slices.Clone(others), `0 issue "ca.sigil.test"`), true},
		{append(slices.Clone(others), `0 issue "ca.sigil.test; accounturi=`+caaTestAccount+`"`), true},
		{append(slices.Clone(others), `0 issue "ca.sigil.test; validationmethods=dns-01"`), false},
		{append(slices.Clone(others), `0 iodef "mailto:a@x.test"`), false},
		{append(slices.Clone(others), `128 tbs "x"`, `0 issue "ca.sigil.test"`), false},
	}
	for _, set := range sets {
		rrs := parse(set.recs...)
		// Every rotation, and reversed: the authorizing record sits at each
		// position in turn.
		for i := range rrs {
			for _, rev := range []bool{false, true} {
				perm := append(slices.Clone(rrs[i:]), rrs[:i]...)
				if rev {
					slices.Reverse(perm)
				}
				err := c.evaluate("x.test", false, "x.test", perm, CAAParams{AccountURI: caaTestAccount, Method: "http-01"})
				if (err == nil) != set.allow {
					t.Errorf("%v rotated by %d (reversed %v): %v, want allowed=%v", set.recs, i, rev, err, set.allow)
				}
			}
		}
	}
}
