package ca

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// NamePolicy decides which subject names a profile may certify. For each
// name type a name must match no Deny entry and, when Allow is non-empty,
// at least one Allow entry. A type whose Allow is empty is open unless
// Forbid lists it.
type NamePolicy struct {
	// DNS entries are domain suffixes: "example.com" matches example.com and
	// every name below it; ".example.com" matches only names below it.
	DNS NameRules `yaml:"dns" json:"dns"`
	// IP entries are CIDR prefixes or single addresses.
	IP NameRules `yaml:"ip" json:"ip"`
	// Email entries are domains (with the suffix rules of DNS) or full addresses.
	Email NameRules `yaml:"email" json:"email"`
	// URI entries are prefixes, such as "spiffe://example.org/".
	URI NameRules `yaml:"uri" json:"uri"`
	// AllowWildcards permits "*." as the leftmost DNS label.
	AllowWildcards bool `yaml:"allow_wildcards" json:"allow_wildcards"`
	// Forbid lists name types (dns, ip, email, uri) that may not appear at all.
	Forbid []string `yaml:"forbid,omitempty" json:"forbid,omitempty"`
	// MaxNames caps the number of names in one certificate (default 100).
	MaxNames int `yaml:"max_names,omitempty" json:"max_names,omitempty"`
}

// NameRules are the allow and deny lists of one name type.
type NameRules struct {
	Allow []string `yaml:"allow,omitempty" json:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty" json:"deny,omitempty"`
}

// Validate checks every rule parses.
func (p NamePolicy) Validate() error {
	for _, list := range [][]string{p.IP.Allow, p.IP.Deny} {
		for _, e := range list {
			if _, err := parsePrefix(e); err != nil {
				return fmt.Errorf("names.ip: %w", err)
			}
		}
	}
	for _, list := range [][]string{p.DNS.Allow, p.DNS.Deny} {
		for _, e := range list {
			if err := validDNSName(strings.TrimPrefix(e, "."), false); err != nil {
				return fmt.Errorf("names.dns entry %q: %w", e, err)
			}
		}
	}
	for _, list := range [][]string{p.Email.Allow, p.Email.Deny} {
		for _, e := range list {
			domain := e
			if at := strings.LastIndexByte(e, '@'); at >= 0 {
				if at == 0 {
					return fmt.Errorf("names.email entry %q has an empty local part", e)
				}
				domain = e[at+1:]
			}
			if err := validDNSName(strings.ToLower(strings.TrimPrefix(domain, ".")), false); err != nil {
				return fmt.Errorf("names.email entry %q: %w", e, err)
			}
		}
	}
	for _, list := range [][]string{p.URI.Allow, p.URI.Deny} {
		for _, e := range list {
			u, err := url.Parse(e)
			if err != nil || !strings.Contains(e, ":") {
				return fmt.Errorf("names.uri entry %q is not a URI prefix", e)
			}
			// Names are matched in canonical form only (canonicalURI): a
			// rule spelt otherwise would never match.
			path := u.EscapedPath()
			if u.Opaque != "" {
				path = u.Opaque
			}
			if err := checkEscapes(e); err != nil {
				return fmt.Errorf("names.uri entry %q is not canonical: %v", e, err)
			}
			if err := checkSegments(path, true); err != nil {
				return fmt.Errorf("names.uri entry %q is not canonical: %v", e, err)
			}
		}
	}
	for _, f := range p.Forbid {
		switch f {
		case "dns", "ip", "email", "uri":
		default:
			return fmt.Errorf("names.forbid: unknown name type %q (want dns, ip, email or uri)", f)
		}
	}
	return nil
}

func (p NamePolicy) forbids(typ string) bool {
	for _, f := range p.Forbid {
		if f == typ {
			return true
		}
	}
	return false
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// suffixMatch reports whether name is rule or below it (see NamePolicy.DNS).
func suffixMatch(name, rule string) bool {
	rule = strings.ToLower(rule)
	if strings.HasPrefix(rule, ".") {
		return strings.HasSuffix(name, rule)
	}
	return name == rule || strings.HasSuffix(name, "."+rule)
}

// Names are the subject names of one request, already syntax-checked.
type Names struct {
	DNS   []string
	IPs   []net.IP
	Email []string
	URIs  []*url.URL
}

// Count returns the number of names.
func (n Names) Count() int { return len(n.DNS) + len(n.IPs) + len(n.Email) + len(n.URIs) }

// Strings lists every name in a stable order: DNS, IP, email, URI.
func (n Names) Strings() []string {
	out := make([]string, 0, n.Count())
	out = append(out, n.DNS...)
	for _, ip := range n.IPs {
		out = append(out, ip.String())
	}
	out = append(out, n.Email...)
	for _, u := range n.URIs {
		out = append(out, u.String())
	}
	return out
}

// Check returns one SubError per name the policy refuses.
func (p NamePolicy) Check(n Names) []SubError {
	var subs []SubError
	refuse := func(id, format string, args ...any) {
		subs = append(subs, SubError{Identifier: id, Kind: Rejected, Detail: fmt.Sprintf(format, args...)})
	}
	limit := p.MaxNames
	if limit <= 0 {
		limit = 100
	}
	if n.Count() > limit {
		refuse("", "%d names exceed the limit of %d", n.Count(), limit)
	}
	for _, d := range n.DNS {
		switch {
		case p.forbids("dns"):
			refuse(d, "DNS names are not allowed by this profile")
		case strings.HasPrefix(d, "*.") && !p.AllowWildcards:
			refuse(d, "wildcard names are not allowed by this profile")
		case !p.DNS.permitsDNS(d):
			refuse(d, "DNS name %s is not allowed by the name policy", d)
		}
	}
	for _, ip := range n.IPs {
		s := ip.String()
		switch {
		case p.forbids("ip"):
			refuse(s, "IP addresses are not allowed by this profile")
		case !p.IP.permits(s, ipMatch):
			refuse(s, "IP address %s is not allowed by the name policy", s)
		}
	}
	for _, e := range n.Email {
		switch {
		case p.forbids("email"):
			refuse(e, "email addresses are not allowed by this profile")
		case !p.Email.permits(e, emailMatch):
			refuse(e, "email address %s is not allowed by the name policy", e)
		}
	}
	for _, u := range n.URIs {
		s, err := canonicalURI(u)
		switch {
		case p.forbids("uri"):
			refuse(u.String(), "URIs are not allowed by this profile")
		case err != nil:
			// Policy compares strings: only the one spelling can be judged.
			refuse(u.String(), "URI %s is not in canonical form: %v", u, err)
		case !p.URI.permits(s, uriMatch):
			refuse(s, "URI %s is not allowed by the name policy", s)
		}
	}
	return subs
}

func (r NameRules) permits(name string, match func(name, rule string) bool) bool {
	for _, d := range r.Deny {
		if match(name, d) {
			return false
		}
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, a := range r.Allow {
		if match(name, a) {
			return true
		}
	}
	return false
}

// permitsDNS is permits for DNS names. A wildcard "*.base" is matched as
// written, "*" standing for the one label it covers: an entry for base or
// ".base" matches it. It is refused if a deny entry names any host it is
// valid for, such as "secret.base", since deny beats allow.
func (r NameRules) permitsDNS(name string) bool {
	base, wild := strings.CutPrefix(name, "*.")
	for _, d := range r.Deny {
		if suffixMatch(name, d) {
			return false
		}
		if label, rest, ok := strings.Cut(strings.ToLower(d), "."); wild && ok && label != "" && rest == base {
			return false
		}
	}
	return NameRules{Allow: r.Allow}.permits(name, suffixMatch)
}

// uriMatch treats a rule as a path prefix: "spiffe://example.org" matches
// that URI, everything below "spiffe://example.org/" and the URI with a
// query or fragment, never "spiffe://example.org.evil/". name is canonical
// (see canonicalURI); the rule's scheme and authority are compared
// without case.
func uriMatch(name, rule string) bool {
	rule = canonicalRule(rule)
	if strings.HasSuffix(rule, "/") {
		return strings.HasPrefix(name, rule)
	}
	rest, ok := strings.CutPrefix(name, rule)
	return ok && (rest == "" || strings.IndexByte("/?#", rest[0]) >= 0)
}

func ipMatch(name, rule string) bool {
	a, err := netip.ParseAddr(name)
	if err != nil {
		return false
	}
	p, err := parsePrefix(rule)
	if err != nil {
		return false
	}
	return p.Contains(a.Unmap())
}

func emailMatch(addr, rule string) bool {
	rule = strings.ToLower(rule)
	if strings.Contains(rule, "@") {
		return strings.EqualFold(addr, rule)
	}
	at := strings.LastIndexByte(addr, '@')
	return at >= 0 && suffixMatch(strings.ToLower(addr[at+1:]), rule)
}

// ValidDNSName reports whether name is a lower-case LDH DNS name (RFC 1034
// preferred syntax) without a wildcard, as a certificate may carry it: not
// numeric like an IPv4 address, and with valid A-labels only.
func ValidDNSName(name string) error { return validDNSName(name, false) }

// validDNSName checks RFC 1034 preferred syntax (LDH labels), lower case,
// with an optional leading "*." when wildcard is true, then checkDNSLabels.

func validDNSName(name string, wildcard bool) error {
	if wildcard && strings.HasPrefix(name, "*.") {
		name = name[2:]
	}
	if name == "" {
		return fmt.Errorf("empty DNS name")
	}
	if len(name) > 253 {
		return fmt.Errorf("DNS name longer than 253 characters")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("an IP address is not a DNS name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return fmt.Errorf("empty label")
		}
		if len(l) > 63 {
			return fmt.Errorf("label longer than 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has a character outside a-z, 0-9 and '-'", l)
			}
		}
	}
	return checkDNSLabels(labels)
}
