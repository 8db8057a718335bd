package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// What a lenient consumer makes of a name, independently of the code under
// test: the meaning a policy must judge, whatever the spelling.

// uriMeaning reads u as a lenient consumer would: scheme and host without
// case, user info, trailing dot or default port (another port is another
// authority, RFC 3986 §6.2.3), the path fully percent-decoded (%2F too)
// with empty and "." segments dropped and ".." resolved, and the query and
// fragment ignored.
func uriMeaning(u *url.URL) string {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	// A SPIFFE ID has no port: a lenient consumer drops it.
	if p := u.Port(); p != "" && !(strings.EqualFold(u.Scheme, "https") && p == "443") && !strings.EqualFold(u.Scheme, "spiffe") {
		host += ":" + p
	}
	p, err := url.PathUnescape(u.EscapedPath())
	if err != nil {
		p = u.Path
	}
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	return strings.ToLower(u.Scheme) + "://" + host + "/" + strings.Join(segs, "/")
}

// under reports whether meaning m is the denied meaning d or below it.
func under(m, d string) bool { return m == d || strings.HasPrefix(m, d+"/") }

// inetAton is a lenient inet_aton: one to four parts, each decimal,
// octal (leading 0, digits 8 and 9 tolerated as some parsers do) or hex
// (0x, possibly empty); the last part fills the remaining bytes.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
			if strings.ContainsAny(digits, "89") {
				base = 10
			}
		}
		v, err := strconv.ParseUint(digits, base, 64)
		if err != nil || digits != strings.TrimLeft(digits, "+-") {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var ip uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		ip |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	ip |= last
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// admits reports whether a certificate with u as its only SAN would be
// issued under prof: the CSR round trip (x509 re-parses u.String()), the
// syntax checks, then the name policy, as issue runs them.
func admits(prof Profile, n Names) bool {
	req := &x509.CertificateRequest{DNSNames: n.DNS, IPAddresses: n.IPs, URIs: n.URIs}
	for i, u := range req.URIs {
		v, err := url.Parse(u.String())
		if err != nil {
			return false // x509 refuses to parse the CSR
		}
		req.URIs[i] = v
	}
	names, _, err := csrNames(req)
	if err != nil {
		return false
	}
	return len(prof.Names.Check(names)) == 0
}

type nameGen struct{ r *rand.Rand }

func (g nameGen) pick(s string) byte { return s[g.r.IntN(len(s))] }

func (g nameGen) word(alphabet string, minLen, maxLen int) string {
	b := make([]byte, minLen+g.r.IntN(maxLen-minLen+1))
	for i := range b {
		b[i] = g.pick(alphabet)
	}
	return string(b)
}

const (
	lower     = "abcdefghijklmnopqrstuvwxyz"
	digitsSet = "0123456789"
	segChars  = lower + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + digitsSet + "-_"
)

// domain is a random lower-case DNS name that no check refuses.
func (g nameGen) domain() string {
	n := 1 + g.r.IntN(3)
	labels := make([]string, n, n+1)
	for i := range labels {
		labels[i] = g.word(lower, 1, 1) + g.word(lower+digitsSet, 0, 6)
	}
	return strings.Join(append(labels, g.word(lower, 2, 4)), ".")
}

func (g nameGen) segments(minN, maxN int) []string {
	segs := make([]string, minN+g.r.IntN(maxN-minN+1))
	for i := range segs {
		segs[i] = g.word(segChars, 1, 8)
	}
	return segs
}

// respell writes a URI of meaning scheme://host/segs in a random, mostly
// non-canonical way: percent-encoding of any byte (any hex case, "/"
// included), case changes in the scheme and host, dot, dot-dot and empty
// segments, a trailing "/", an empty or default port (any port for a
// SPIFFE ID, which has none), user info, a query or a fragment.
func (g nameGen) respell(scheme, host string, segs []string) string {
	flip := func(s string) string {
		b := []byte(s)
		for i := range b {
			if g.r.IntN(3) == 0 {
				b[i] = strings.ToUpper(string(b[i]))[0]
			}
		}
		return string(b)
	}
	enc := func(s string) string {
		var sb strings.Builder
		for i := 0; i < len(s); i++ {
			if g.r.IntN(4) == 0 {
				h := fmt.Sprintf("%%%02X", s[i])
				if g.r.IntN(2) == 0 {
					h = strings.ToLower(h)
				}
				sb.WriteString(h)
			} else {
				sb.WriteByte(s[i])
			}
		}
		return sb.String()
	}
	var path []string
	for i, s := range segs {
		if i > 0 && g.r.IntN(6) == 0 {
			// Join this segment to the previous one with an encoded "/".
			path[len(path)-1] += []string{"%2F", "%2f"}[g.r.IntN(2)] + enc(s)
			continue
		}
		switch g.r.IntN(10) {
		case 0:
			path = append(path, ".")
		case 1:
			path = append(path, "")
		case 2:
			path = append(path, g.word(segChars, 1, 4), "..")
		case 3:
			path = append(path, []string{"%2e", "%2E"}[g.r.IntN(2)])
		case 4:
			path = append(path, g.word(segChars, 1, 4), []string{".%2e", "%2e.", "%2E%2e"}[g.r.IntN(3)])
		}
		path = append(path, enc(s))
	}
	if g.r.IntN(5) == 0 {
		path = append(path, "")
	}
	s := scheme
	if g.r.IntN(3) == 0 {
		s = flip(s)
	}
	s += "://"
	if g.r.IntN(8) == 0 {
		s += g.word(lower, 1, 5) + "@"
	}
	h := host
	if g.r.IntN(3) == 0 {
		h = flip(h)
	}
	s += h
	switch g.r.IntN(8) {
	case 0:
		s += ":"
	case 1:
		s += ":443"
	case 2:
		if scheme == "spiffe" {
			s += ":" + strconv.Itoa(1+g.r.IntN(65535))
		}
	}
	s += "/" + strings.Join(path, "/")
	switch g.r.IntN(8) {
	case 0:
		s += "?" + g.word(lower, 0, 4)
	case 1:
		s += "#" + g.word(lower, 0, 4)
	}
	return s
}

// TestPolicyNeverIssuesDeniedNameProperty (issue 15, acceptance): for random
// names and random spellings of them, a URI or DNS name the policy denies
// is never issued, under any encoding, while a canonical name beside it is.
func TestPolicyNeverIssuesDeniedNameProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(15)
	t.Logf("seed %d", seed)
	g := nameGen{rand.New(rand.NewPCG(seed, seed^0x5eed))}
	const rounds = 3000
	issued, refused := 0, 0
	for i := range rounds {
		// URIs: deny a random prefix; spell names at or below it.
		scheme := []string{"spiffe", "https"}[g.r.IntN(2)]
		host := g.domain()
		denied := g.segments(1, 3)
		rule := scheme + "://" + host + "/" + strings.Join(denied, "/")
		prof := DefaultProfiles()["tls-client"]
		prof.Names.URI.Deny = []string{rule}
		ruleURL, err := url.Parse(rule)
		if err != nil {
			t.Fatalf("generated rule %q does not parse: %v", rule, err)
		}
		want := uriMeaning(ruleURL)
		segs := append(append([]string{}, denied...), g.segments(0, 2)...)
		raw := g.respell(scheme, host, segs)
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		if !under(uriMeaning(u), want) {
			t.Fatalf("generator bug: %q means %q, not under %q", raw, uriMeaning(u), want)
		}
		if admits(prof, Names{URIs: []*url.URL{u}}) {
			t.Errorf("round %d: %q (meaning %q) was admitted past deny rule %q", i, raw, uriMeaning(u), rule)
		} else {
			refused++
		}
		// A canonical sibling outside the rule is still issued.
		sib := scheme + "://" + host + "/" + strings.Join(denied[:len(denied)-1], "/")
		if len(denied) > 1 {
			sib += "/"
		}
		sib += "z" + denied[len(denied)-1]
		if su, _ := url.Parse(sib); su == nil || !admits(prof, Names{URIs: []*url.URL{su}}) {
			t.Errorf("round %d: canonical %q outside %q was refused", i, sib, rule)
		} else {
			issued++
		}

		// DNS: deny a random domain; spell names at or below it.
		d := g.domain()
		prof = DefaultProfiles()["tls-server"]
		prof.Names.DNS.Deny = []string{d}
		name := d
		if g.r.IntN(2) == 0 {
			name = g.word(lower, 1, 5) + "." + d
		}
		b := []byte(name)
		for j := range b {
			if g.r.IntN(3) == 0 {
				b[j] = strings.ToUpper(string(b[j]))[0]
			}
		}
		name = string(b)
		if g.r.IntN(3) == 0 {
			name += "."
		}
		if admits(prof, Names{DNS: []string{name}}) {
			t.Errorf("round %d: DNS %q was admitted past deny rule %q", i, name, d)
		}
		if !admits(prof, Names{DNS: []string{"z" + d}}) {
			t.Errorf("round %d: DNS z%s outside deny rule %q was refused", i, d, d)
		}

		// Numeric forms: deny an IPv4 address; spell it as a DNS name.
		ip := netip.AddrFrom4([4]byte{byte(g.r.IntN(256)), byte(g.r.IntN(256)), byte(g.r.IntN(256)), byte(g.r.IntN(256))})
		prof = DefaultProfiles()["tls-server"]
		prof.Names.IP.Deny = []string{ip.String()}
		num := g.numeric(ip)
		if got, ok := inetAton(num); !ok || got != ip {
			t.Fatalf("generator bug: %q is %v %v to inet_aton, not %v", num, got, ok, ip)
		}
		if admits(prof, Names{DNS: []string{num}}) {
			t.Errorf("round %d: DNS %q (the denied %v to inet_aton) was admitted", i, num, ip)
		}
		if admits(prof, Names{IPs: []net.IP{ip.AsSlice()}}) {
			t.Fatalf("round %d: the IP rule does not deny %v", i, ip)
		}
	}
	if refused < rounds/2 || issued < rounds/2 {
		t.Errorf("only %d URI spellings refused and %d siblings issued in %d rounds", refused, issued, rounds)
	}
}

// numeric writes ip as one of inet_aton's forms: one to four parts, each
// in decimal, octal or hex.
func (g nameGen) numeric(ip netip.Addr) string {
	b := ip.As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	n := 1 + g.r.IntN(4)
	parts := make([]uint64, n)
	switch n {
	case 1:
		parts[0] = v
	case 2:
		parts[0], parts[1] = v>>24, v&0xffffff
	case 3:
		parts[0], parts[1], parts[2] = v>>24, v>>16&0xff, v&0xffff
	case 4:
		parts[0], parts[1], parts[2], parts[3] = v>>24, v>>16&0xff, v>>8&0xff, v&0xff
	}
	out := make([]string, n)
	for i, p := range parts {
		switch g.r.IntN(4) {
		case 0:
			out[i] = "0" + strconv.FormatUint(p, 8)
		case 1:
			out[i] = "0x" + strconv.FormatUint(p, 16)
		case 2:
			out[i] = "0X" + strings.ToUpper(strconv.FormatUint(p, 16))
		default:
			out[i] = strconv.FormatUint(p, 10)
		}
	}
	return strings.Join(out, ".")
}

// TestPolicyPropertyThroughSign runs a sample of the property through the
// real Sign, CSR and all: none of the denied spellings is issued.
func TestPolicyPropertyThroughSign(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	prof := DefaultProfiles()["tls-client"]
	prof.Names.URI.Deny = []string{"spiffe://example.org/ns/admin", "https://svc.example.org/admin"}
	prof.Names.IP.Deny = []string{"10.0.0.0/8"}
	a := withProfiles(t, tc, map[string]Profile{"prop": prof})
	key := mustKey(t, keystore.ECDSAP256)
	g := nameGen{rand.New(rand.NewPCG(15, 15))}
	tried := 0
	for i := range 150 {
		var dns, uris []string
		switch i % 3 {
		case 0:
			uris = []string{g.respell("spiffe", "example.org", append([]string{"ns", "admin"}, g.segments(0, 2)...))}
		case 1:
			uris = []string{g.respell("https", "svc.example.org", append([]string{"admin"}, g.segments(0, 2)...))}
		case 2:
			dns = []string{g.numeric(netip.AddrFrom4([4]byte{10, byte(g.r.IntN(256)), byte(g.r.IntN(256)), byte(g.r.IntN(256))}))}
		}
		csr, err := csrWith(key, dns, uris)
		if err != nil {
			continue // url or x509 cannot carry it: nothing to issue
		}
		tried++
		if iss, err := a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "prop", Requester: "test", Channel: ChannelAPI}); err == nil {
			t.Errorf("Sign issued %s for %v %v", iss.Record.Serial, dns, uris)
		}
	}
	if tried < 100 {
		t.Errorf("only %d of 150 requests could be built", tried)
	}
}
