package ca

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

// dnsNames, ips, emails and uris build a Names of one type for Check.
func dnsNames(d ...string) Names { return Names{DNS: d} }

func ips(t *testing.T, s ...string) Names {
	t.Helper()
	var n Names
	for _, v := range s {
		ip := net.ParseIP(v)
		if ip == nil {
			t.Fatalf("bad test IP %q", v)
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4 // as csrNames normalizes
		}
		n.IPs = append(n.IPs, ip)
	}
	return n
}

func emails(e ...string) Names { return Names{Email: e} }

func uris(t *testing.T, s ...string) Names {
	t.Helper()
	var n Names
	for _, v := range s {
		u, err := url.Parse(v)
		if err != nil {
			t.Fatalf("bad test URI %q: %v", v, err)
		}
		n.URIs = append(n.URIs, u)
	}
	return n
}

// refusedIDs lists the identifiers Check refused, in order.
func refusedIDs(subs []SubError) []string {
	out := make([]string, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.Identifier)
	}
	return out
}

func TestNamePolicyCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		policy  NamePolicy
		names   Names
		refused []string // identifiers refused, in order; empty: all allowed
		detail  string   // substring of the first refusal's detail
	}{
		// DNS suffix rules.
		{name: "dns open policy", names: dnsNames("anything.test", "example.com")},
		{name: "dns apex rule matches apex", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("example.com")},
		{name: "dns apex rule matches subdomains", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("www.example.com", "a.b.c.example.com")},
		{name: "dns apex rule is label aligned", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("badexample.com", "example.com.evil.test"), refused: []string{"badexample.com", "example.com.evil.test"},
			detail: "DNS name badexample.com is not allowed by the name policy"},
		{name: "dns dot rule refuses apex", policy: NamePolicy{DNS: NameRules{Allow: []string{".example.com"}}},
			names: dnsNames("example.com", "www.example.com"), refused: []string{"example.com"}},
		{name: "dns dot rule is label aligned", policy: NamePolicy{DNS: NameRules{Allow: []string{".example.com"}}},
			names: dnsNames("wwwexample.com"), refused: []string{"wwwexample.com"}},
		{name: "dns several allow entries", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com", "example.org"}}},
			names: dnsNames("a.example.org", "b.example.com", "c.example.net"), refused: []string{"c.example.net"}},
		{name: "dns deny beats allow", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com"}, Deny: []string{"secret.example.com"}}},
			names:   dnsNames("www.example.com", "secret.example.com", "db.secret.example.com"),
			refused: []string{"secret.example.com", "db.secret.example.com"}},
		{name: "dns deny dot rule keeps apex", policy: NamePolicy{DNS: NameRules{Deny: []string{".internal.example"}}},
			names: dnsNames("internal.example", "db.internal.example"), refused: []string{"db.internal.example"}},
		{name: "dns deny without allow", policy: NamePolicy{DNS: NameRules{Deny: []string{"evil.test"}}},
			names: dnsNames("good.test", "evil.test"), refused: []string{"evil.test"}},

		// Wildcards.
		{name: "wildcard refused by default", names: dnsNames("*.example.com"), refused: []string{"*.example.com"},
			detail: "wildcard names are not allowed by this profile"},
		{name: "wildcard allowed", policy: NamePolicy{AllowWildcards: true, DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("*.example.com", "*.a.example.com")},
		{name: "wildcard outside allow", policy: NamePolicy{AllowWildcards: true, DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("*.example.org"), refused: []string{"*.example.org"}},
		// A wildcard only ever covers names below its base, which is
		// exactly what a dot rule means.
		{name: "wildcard within dot allow", policy: NamePolicy{AllowWildcards: true, DNS: NameRules{Allow: []string{".example.com"}}},
			names: dnsNames("*.example.com")},
		{name: "wildcard under dot deny", policy: NamePolicy{AllowWildcards: true, DNS: NameRules{Deny: []string{".example.com"}}},
			names: dnsNames("*.example.com", "example.com"), refused: []string{"*.example.com"}},
		{name: "wildcard under apex deny", policy: NamePolicy{AllowWildcards: true, DNS: NameRules{Deny: []string{"example.com"}}},
			names: dnsNames("*.example.com"), refused: []string{"*.example.com"}},
		// *.example.com is valid for secret.example.com: deny beats allow.
		{name: "wildcard covering a denied name", policy: NamePolicy{AllowWildcards: true,
			DNS: NameRules{Allow: []string{"example.com"}, Deny: []string{"secret.example.com"}}},
			names:   dnsNames("*.example.com", "*.secret.example.com", "*.www.example.com"),
			refused: []string{"*.example.com", "*.secret.example.com"}},
		// A wildcard covers one label only: a.secret.example.com is not
		// below *.example.com.
		{name: "wildcard above a deeper denied subtree", policy: NamePolicy{AllowWildcards: true,
			DNS: NameRules{Deny: []string{"a.secret.example.com", ".secret.example.com"}}},
			names: dnsNames("*.example.com")},
		{name: "wildcard forbidden dns", policy: NamePolicy{AllowWildcards: true, Forbid: []string{"dns"}},
			names: dnsNames("*.example.com"), refused: []string{"*.example.com"}, detail: "DNS names are not allowed"},

		// IP addresses.
		{name: "ip open policy", names: ips(t, "192.0.2.1", "2001:db8::1")},
		{name: "ip v4 cidr allow", policy: NamePolicy{IP: NameRules{Allow: []string{"10.0.0.0/8"}}},
			names: ips(t, "10.1.2.3", "11.0.0.1"), refused: []string{"11.0.0.1"}, detail: "IP address 11.0.0.1 is not allowed"},
		{name: "ip v4 single address", policy: NamePolicy{IP: NameRules{Allow: []string{"192.0.2.7"}}},
			names: ips(t, "192.0.2.7", "192.0.2.8"), refused: []string{"192.0.2.8"}},
		{name: "ip v4 unmasked cidr", policy: NamePolicy{IP: NameRules{Allow: []string{"10.1.2.3/16"}}},
			names: ips(t, "10.1.200.1", "10.2.0.1"), refused: []string{"10.2.0.1"}},
		{name: "ip v4 deny beats allow", policy: NamePolicy{IP: NameRules{Allow: []string{"10.0.0.0/8"}, Deny: []string{"10.66.0.0/16"}}},
			names: ips(t, "10.1.1.1", "10.66.1.1"), refused: []string{"10.66.1.1"}},
		{name: "ip v6 cidr allow", policy: NamePolicy{IP: NameRules{Allow: []string{"2001:db8::/32"}}},
			names: ips(t, "2001:db8:1::1", "2001:db9::1"), refused: []string{"2001:db9::1"}},
		{name: "ip v6 deny", policy: NamePolicy{IP: NameRules{Deny: []string{"fd00::/8", "::1"}}},
			names: ips(t, "fd12::1", "::1", "2001:db8::1"), refused: []string{"fd12::1", "::1"}},
		{name: "ip v4 rule does not match v6", policy: NamePolicy{IP: NameRules{Allow: []string{"0.0.0.0/0"}}},
			names: ips(t, "2001:db8::1", "203.0.113.9"), refused: []string{"2001:db8::1"}},
		{name: "ip v4-mapped v6 address matches v4 rule", policy: NamePolicy{IP: NameRules{Allow: []string{"10.0.0.0/8"}}},
			names: Names{IPs: []net.IP{net.ParseIP("::ffff:10.0.0.1")}}},
		{name: "ip forbidden", policy: NamePolicy{Forbid: []string{"ip"}},
			names: ips(t, "10.0.0.1"), refused: []string{"10.0.0.1"}, detail: "IP addresses are not allowed by this profile"},

		// Email addresses.
		{name: "email domain rule", policy: NamePolicy{Email: NameRules{Allow: []string{"example.com"}}},
			names: emails("alice@example.com", "bob@mail.example.com", "eve@example.org"), refused: []string{"eve@example.org"},
			detail: "email address eve@example.org is not allowed"},
		{name: "email dot rule refuses apex", policy: NamePolicy{Email: NameRules{Allow: []string{".example.com"}}},
			names: emails("alice@example.com", "bob@mail.example.com"), refused: []string{"alice@example.com"}},
		{name: "email domain label aligned", policy: NamePolicy{Email: NameRules{Allow: []string{"example.com"}}},
			names: emails("x@badexample.com"), refused: []string{"x@badexample.com"}},
		{name: "email domain case insensitive", policy: NamePolicy{Email: NameRules{Allow: []string{"example.com"}}},
			names: emails("Alice@Example.COM")},
		{name: "email full address rule", policy: NamePolicy{Email: NameRules{Allow: []string{"alice@example.com"}}},
			names: emails("alice@example.com", "ALICE@example.com", "bob@example.com"), refused: []string{"bob@example.com"}},
		{name: "email full address deny beats domain allow", policy: NamePolicy{Email: NameRules{Allow: []string{"example.com"}, Deny: []string{"root@example.com"}}},
			names: emails("alice@example.com", "root@example.com"), refused: []string{"root@example.com"}},
		{name: "email rule is not a dns rule", policy: NamePolicy{DNS: NameRules{Allow: []string{"example.com"}}},
			names: Names{DNS: []string{"evil.test"}, Email: []string{"a@evil.test"}}, refused: []string{"evil.test"}},
		{name: "email forbidden", policy: NamePolicy{Forbid: []string{"email"}},
			names: emails("a@example.com"), refused: []string{"a@example.com"}, detail: "email addresses are not allowed"},

		// URIs.
		{name: "uri spiffe prefix", policy: NamePolicy{URI: NameRules{Allow: []string{"spiffe://example.org/"}}},
			names:   uris(t, "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org.evil/x", "spiffe://other.org/x"),
			refused: []string{"spiffe://example.org.evil/x", "spiffe://other.org/x"}, detail: "URI spiffe://example.org.evil/x is not allowed"},
		{name: "uri deny beats allow", policy: NamePolicy{URI: NameRules{Allow: []string{"spiffe://example.org/"}, Deny: []string{"spiffe://example.org/ns/admin/"}}},
			names:   uris(t, "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/admin/sa/root"),
			refused: []string{"spiffe://example.org/ns/admin/sa/root"}},
		{name: "uri scheme differs", policy: NamePolicy{URI: NameRules{Allow: []string{"spiffe://example.org/"}}},
			names: uris(t, "https://example.org/"), refused: []string{"https://example.org/"}},
		{name: "uri forbidden", policy: NamePolicy{Forbid: []string{"uri"}},
			names: uris(t, "spiffe://example.org/x"), refused: []string{"spiffe://example.org/x"}, detail: "URIs are not allowed"},

		// Forbid applies per type.
		{name: "forbid one type only", policy: NamePolicy{Forbid: []string{"ip", "uri"}},
			names: Names{DNS: []string{"example.com"}, Email: []string{"a@example.com"}}},
		{name: "forbid beats allow", policy: NamePolicy{Forbid: []string{"dns"}, DNS: NameRules{Allow: []string{"example.com"}}},
			names: dnsNames("example.com"), refused: []string{"example.com"}},

		// MaxNames.
		{name: "max names default 100", names: dnsNames(manyNames(100)...)},
		{name: "max names default exceeded", names: dnsNames(manyNames(101)...), refused: []string{""},
			detail: "101 names exceed the limit of 100"},
		{name: "max names custom", policy: NamePolicy{MaxNames: 2},
			names:   Names{DNS: []string{"a.test"}, IPs: []net.IP{net.IPv4(10, 0, 0, 1).To4()}, Email: []string{"x@a.test"}},
			refused: []string{""}, detail: "3 names exceed the limit of 2"},
		{name: "max names counts all types", policy: NamePolicy{MaxNames: 3},
			names: Names{DNS: []string{"a.test"}, IPs: []net.IP{net.IPv4(10, 0, 0, 1).To4()}, Email: []string{"x@a.test"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.policy.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			subs := tt.policy.Check(tt.names)
			got := refusedIDs(subs)
			if strings.Join(got, "|") != strings.Join(tt.refused, "|") || len(got) != len(tt.refused) {
				t.Fatalf("refused %q, want %q (subs %+v)", got, tt.refused, subs)
			}
			for _, s := range subs {
				if s.Kind != Rejected {
					t.Errorf("sub %q kind = %v, want rejected", s.Identifier, s.Kind)
				}
				if s.Detail == "" {
					t.Errorf("sub %q has no detail", s.Identifier)
				}
			}
			if tt.detail != "" && !strings.Contains(subs[0].Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", subs[0].Detail, tt.detail)
			}
		})
	}
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host%d.example.com", i)
	}
	return out
}

func TestNamePolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		policy  NamePolicy
		wantErr string // substring; empty: valid
	}{
		{name: "zero policy", policy: NamePolicy{}},
		{name: "full valid policy", policy: NamePolicy{
			DNS:    NameRules{Allow: []string{"example.com", ".example.org"}, Deny: []string{"secret.example.com"}},
			IP:     NameRules{Allow: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1", "::1"}, Deny: []string{"10.66.0.0/16"}},
			Email:  NameRules{Allow: []string{"example.com", "alice@example.org"}},
			URI:    NameRules{Allow: []string{"spiffe://example.org/"}, Deny: []string{"urn:example:"}},
			Forbid: []string{"dns", "ip", "email", "uri"}, MaxNames: 5, AllowWildcards: true,
		}},
		{name: "ip bad cidr", policy: NamePolicy{IP: NameRules{Allow: []string{"10.0.0.0/33"}}}, wantErr: `names.ip: bad CIDR "10.0.0.0/33"`},
		{name: "ip bad v6 cidr", policy: NamePolicy{IP: NameRules{Deny: []string{"2001:db8::/129"}}}, wantErr: "bad CIDR"},
		{name: "ip bad address", policy: NamePolicy{IP: NameRules{Deny: []string{"10.0.0.256"}}}, wantErr: `bad address "10.0.0.256"`},
		{name: "ip hostname", policy: NamePolicy{IP: NameRules{Allow: []string{"example.com"}}}, wantErr: "bad address"},
		{name: "dns bad label", policy: NamePolicy{DNS: NameRules{Allow: []string{"-bad.example.com"}}}, wantErr: `names.dns entry "-bad.example.com"`},
		{name: "dns space", policy: NamePolicy{DNS: NameRules{Deny: []string{"exa mple.com"}}}, wantErr: "names.dns entry"},
		{name: "dns wildcard entry", policy: NamePolicy{DNS: NameRules{Allow: []string{"*.example.com"}}}, wantErr: "names.dns entry"},
		{name: "dns empty entry", policy: NamePolicy{DNS: NameRules{Allow: []string{""}}}, wantErr: "empty DNS name"},
		{name: "dns lone dot", policy: NamePolicy{DNS: NameRules{Allow: []string{"."}}}, wantErr: "empty DNS name"},
		{name: "dns double dot", policy: NamePolicy{DNS: NameRules{Allow: []string{"..example.com"}}}, wantErr: "empty label"},
		{name: "dns ip entry", policy: NamePolicy{DNS: NameRules{Allow: []string{"10.0.0.1"}}}, wantErr: "IP address"},
		{name: "dns upper case", policy: NamePolicy{DNS: NameRules{Allow: []string{"Example.com"}}}, wantErr: "outside a-z"},
		{name: "uri without scheme", policy: NamePolicy{URI: NameRules{Allow: []string{"example.org/path"}}}, wantErr: `names.uri entry "example.org/path" is not a URI prefix`},
		{name: "uri unparsable", policy: NamePolicy{URI: NameRules{Deny: []string{"spiffe://exa mple%zz/"}}}, wantErr: "names.uri entry"},
		{name: "forbid unknown type", policy: NamePolicy{Forbid: []string{"x400"}}, wantErr: `names.forbid: unknown name type "x400"`},
		{name: "forbid case sensitive", policy: NamePolicy{Forbid: []string{"DNS"}}, wantErr: "unknown name type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate passed, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestProfileValidateNames(t *testing.T) {
	t.Parallel()
	p := DefaultProfiles()["tls-server"]
	p.Names.IP.Allow = []string{"not-an-ip"}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "names.ip") {
		t.Errorf("Profile.Validate = %v, want the name policy error", err)
	}
}

func TestValidDNSName(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 and one of 1: 4*63 + 1 + 4 dots = 257; trim to 253 exactly.
	name253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	if len(name253) != 253 {
		t.Fatalf("test setup: len = %d", len(name253))
	}
	tests := []struct {
		name     string
		in       string
		wildcard bool
		wantErr  string // substring; empty: valid
	}{
		{name: "simple", in: "example.com"},
		{name: "single label", in: "localhost"},
		{name: "digits and hyphens", in: "a-1.0-9.example"},
		// Issue 15 item 9: inet_aton reads "1.2.3" as 1.2.0.3.
		{name: "all digit labels read as an ip", in: "1.2.3", wantErr: "numeric"},
		{name: "punycode", in: "xn--bcher-kva.example"},
		{name: "label of 63", in: label63 + ".example"},
		{name: "name of 253", in: name253},
		{name: "wildcard allowed", in: "*.example.com", wildcard: true},
		{name: "empty", in: "", wantErr: "empty DNS name"},
		{name: "name of 254", in: "a" + name253, wantErr: "longer than 253"},
		{name: "label of 64", in: label63 + "a.example", wantErr: "label longer than 63"},
		{name: "leading hyphen", in: "-a.example", wantErr: "starts or ends with a hyphen"},
		{name: "trailing hyphen", in: "a-.example", wantErr: "starts or ends with a hyphen"},
		{name: "empty label", in: "a..example", wantErr: "empty label"},
		{name: "leading dot", in: ".example", wantErr: "empty label"},
		{name: "trailing dot", in: "example.com.", wantErr: "empty label"},
		{name: "upper case", in: "Example.com", wantErr: "outside a-z"},
		{name: "underscore", in: "_acme-challenge.example.com", wantErr: "outside a-z"},
		{name: "space", in: "exa mple.com", wantErr: "outside a-z"},
		{name: "unicode", in: "bücher.example", wantErr: "outside a-z"},
		{name: "nul byte", in: "a\x00.example", wantErr: "outside a-z"},
		{name: "ipv4", in: "192.0.2.1", wantErr: "IP address"},
		{name: "ipv6", in: "2001:db8::1", wantErr: "IP address"},
		{name: "wildcard refused", in: "*.example.com", wantErr: "outside a-z"},
		{name: "bare wildcard", in: "*", wildcard: true, wantErr: "outside a-z"},
		{name: "wildcard without base", in: "*.", wildcard: true, wantErr: "empty DNS name"},
		{name: "double wildcard", in: "*.*.example.com", wildcard: true, wantErr: "outside a-z"},
		{name: "partial wildcard", in: "a*.example.com", wildcard: true, wantErr: "outside a-z"},
		{name: "inner wildcard", in: "a.*.example.com", wildcard: true, wantErr: "outside a-z"},
		{name: "wildcard over ip", in: "*.192.0.2.1", wildcard: true, wantErr: "IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validDNSName(tt.in, tt.wildcard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("validDNSName(%q, %v) = %v", tt.in, tt.wildcard, err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("validDNSName(%q, %v) passed, want error containing %q", tt.in, tt.wildcard, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("validDNSName(%q, %v) = %q, want it to contain %q", tt.in, tt.wildcard, err, tt.wantErr)
			}
		})
	}
}
