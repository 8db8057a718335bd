package ca

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// FuzzCanonicalURI: whatever canonicalURI accepts is u.String(), stays
// accepted when parsed again (as x509 does), has no spelling a lenient
// reader resolves differently (encoded unreserved characters or
// separators, dot or empty segments), and is matched by a deny rule made
// of any prefix of its segments.
func FuzzCanonicalURI(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/ns/prod/sa/web", "spiffe://example.org", "spiffe://example.org/ns/%61dmin",
		"spiffe://example.org//ns/admin", "spiffe://example.org/ns/admin?x", "spiffe://example.org/ns/admin#x",
		"spiffe://example.org/ns%2Fadmin/x", "SPIFFE://EXAMPLE.ORG/a", "spiffe://u@example.org:1/a/",
		"https://svc.example.org/a/b?q=1#f", "https://svc.example.org:443/a", "https://svc.example.org/a/../b",
		"https://svc.example.org/%7Euser/", "https://svc.example.org/a%2fb", "https://2130706433/",
		"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "mailto:a@example.org", "https://[::1]:8443/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		c, err := canonicalURI(u)
		if err != nil {
			return
		}
		if c != u.String() {
			t.Fatalf("canonicalURI(%q) = %q, not the string a certificate carries (%q)", s, c, u.String())
		}
		v, err := url.Parse(c)
		if err != nil {
			t.Fatalf("accepted %q does not parse again: %v", c, err)
		}
		if c2, err := canonicalURI(v); err != nil || c2 != c {
			t.Fatalf("accepted %q, but not after parsing it again: %q %v", c, c2, err)
		}
		path := v.EscapedPath()
		if v.Opaque != "" {
			path = v.Opaque
		}
		lower := strings.ToLower(c)
		for i := 0; i+2 < len(lower); i++ {
			if lower[i] == '%' && unreserved(unhex(lower[i+1])<<4|unhex(lower[i+2])) {
				t.Fatalf("accepted %q, which percent-encodes an unreserved character", c)
			}
		}
		segs := strings.Split(path, "/")
		for i, seg := range segs {
			ls := strings.ToLower(seg)
			if ls == "." || ls == ".." || strings.Contains(ls, "%2f") || strings.Contains(ls, "%5c") {
				t.Fatalf("accepted %q, with path segment %q", c, seg)
			}
			if seg == "" && i > 0 && i < len(segs)-1 {
				t.Fatalf("accepted %q, with an empty path segment", c)
			}
		}
		if strings.HasPrefix(lower, "spiffe:") {
			if strings.ContainsAny(c, "%?#@") || strings.Count(c, ":") != 1 || strings.HasSuffix(c, "/") || v.Host != strings.ToLower(v.Host) {
				t.Fatalf("accepted %q, which is not a SPIFFE ID", c)
			}
		}
		// Every segment prefix of the name, as a deny rule, catches it.
		if v.Opaque == "" && v.Host != "" {
			base := v.Scheme + "://" + v.Host
			rule := base
			for _, seg := range segs[1:] {
				if (NameRules{Deny: []string{rule}}).permits(c, uriMatch) {
					t.Fatalf("deny rule %q does not catch %q", rule, c)
				}
				rule += "/" + seg
			}
		}
	})
}

// FuzzDNSName: whatever validDNSName accepts is no IP address to any
// parser (net.ParseIP, an inet_aton of one to four parts in any base), and
// each A-label in it is what IDNA encodes its decoding to.
func FuzzDNSName(f *testing.F) {
	for _, s := range []string{
		"example.com", "*.example.com", "134744072", "8.8.2056", "08.8.8.8", "2130706433", "0x7f.1",
		"0x7f000001", "1.2.3", "xn--a.example", "xn--bcher-kva.example", "a.0x1f", "0x.example", "a-.b", "1.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validDNSName(s, true) != nil {
			return
		}
		name := strings.TrimPrefix(s, "*.")
		if net.ParseIP(name) != nil {
			t.Fatalf("accepted the IP address %q", s)
		}
		if ip, ok := inetAton(name); ok {
			t.Fatalf("accepted %q, which inet_aton reads as %v", s, ip)
		}
		for l := range strings.SplitSeq(name, ".") {
			if !strings.HasPrefix(l, "xn--") {
				continue
			}
			u, err := idna.Registration.ToUnicode(l)
			if err != nil {
				t.Fatalf("accepted %q with the A-label %q that does not decode: %v", s, l, err)
			}
			if back, err := idna.Registration.ToASCII(u); err != nil || back != l {
				t.Fatalf("accepted %q with the A-label %q that encodes back as %q (%v)", s, l, back, err)
			}
		}
		if ValidDNSName(name) != nil {
			t.Fatalf("validDNSName accepted %q but ValidDNSName refuses %q", s, name)
		}
	})
}
