package ca

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// A name policy compares strings, so every name it sees must have one
// spelling: a second spelling of a denied name is a way around the rule.
// This file holds the checks that give DNS names and URIs one spelling, or
// refuse them.

// checkDNSLabels refuses what validDNSName's character rules let through
// but clients read as something else: names an IPv4 parser takes for an
// address, and A-labels that are not valid IDNA.
func checkDNSLabels(labels []string) error {
	if looksNumeric(labels) {
		return fmt.Errorf("a name whose last label is numeric is read as an IPv4 address by some clients; use an IP address SAN instead")
	}
	for _, l := range labels {
		if err := checkALabel(l); err != nil {
			return err
		}
	}
	return nil
}

// looksNumeric reports whether a client could parse the name as an IPv4
// address. The WHATWG URL standard treats a host whose last label is a
// number (decimal, or hex with 0x) as IPv4, and inet_aton accepts one to
// four such parts in decimal, octal or hex ("2130706433", "0x7f.1",
// "08.8.8.8"): every inet_aton form ends in such a label, so checking
// the last one covers both.
func looksNumeric(labels []string) bool {
	if len(labels) == 0 {
		return false
	}
	return isNumberLabel(labels[len(labels)-1])
}

func isNumberLabel(l string) bool {
	digits := l
	hex := false
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		digits, hex = l[2:], true
		if digits == "" {
			return true // inet_aton reads "0x" as zero
		}
	}
	if digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
		case hex && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		default:
			return false
		}
	}
	return true
}

// checkALabel checks an "xn--" label with IDNA's registration profile: it
// must decode, and encoding what it decodes to must give it back, so that
// no two spellings name one host and no undecodable label ("xn--a") is
// certified.
func checkALabel(l string) error {
	if !strings.HasPrefix(l, "xn--") {
		return nil
	}
	u, err := idna.Registration.ToUnicode(l)
	if err != nil {
		return fmt.Errorf("label %q is not a valid A-label: %v", l, err)
	}
	back, err := idna.Registration.ToASCII(u)
	if err != nil || back != l {
		return fmt.Errorf("label %q is not a valid A-label: it does not round-trip through Unicode", l)
	}
	return nil
}

// unreserved reports RFC 3986 §2.3 unreserved characters: their
// percent-encoding is another spelling of the same URI (§6.2.2.2).
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// maxSPIFFEID is the SPIFFE ID specification's bound on a SPIFFE ID.
const maxSPIFFEID = 2048

// canonicalURI returns the one spelling under which policy matches u, or
// an error if u has another: what goes into the certificate is u.String(),
// so that is what is checked. A spiffe:// URI must be a SPIFFE ID as the
// SPIFFE ID specification defines it (lower-case trust domain of
// [a-z0-9._-], no port or user info, path segments of [A-Za-z0-9._-] that
// are neither empty, "." nor "..", no query or fragment, nothing
// percent-encoded). Any other URI must be absolute with an authority or an
// opaque part, without user info, percent-encoded unreserved characters,
// lower-case percent escapes, dot segments, empty segments (but a trailing
// "/"), an encoded "/" or "\" in the path, an explicit default port, a
// host an IPv4 parser reads as an address, or upper case in its scheme,
// host or URN namespace.
func canonicalURI(u *url.URL) (string, error) {
	s := u.String()
	if !u.IsAbs() {
		return "", fmt.Errorf("not absolute")
	}
	if u.Scheme == "spiffe" { // url.Parse lower-cases the scheme
		if err := checkSPIFFEID(s); err != nil {
			return "", err
		}
		return s, nil
	}
	if u.Host == "" && u.Opaque == "" {
		return "", fmt.Errorf("has neither an authority nor an opaque part")
	}
	if u.User != nil {
		return "", fmt.Errorf("has user info")
	}
	if err := checkEscapes(s); err != nil {
		return "", err
	}
	if u.Scheme != strings.ToLower(u.Scheme) {
		return "", fmt.Errorf("scheme is not lower case")
	}
	path := u.EscapedPath()
	if u.Opaque != "" {
		// A URN's namespace identifier has no case (RFC 8141 §3).
		if nid, _, _ := strings.Cut(u.Opaque, ":"); u.Scheme == "urn" && nid != strings.ToLower(nid) {
			return "", fmt.Errorf("URN namespace %q is not lower case", nid)
		}
		path = u.Opaque
	} else if err := checkAuthority(u); err != nil {
		return "", err
	}
	if err := checkSegments(path, true); err != nil {
		return "", err
	}
	return s, nil
}

// checkAuthority refuses a host in upper case, with a trailing dot, or
// read as an IPv4 address by lenient parsers, and an empty or default port.
func checkAuthority(u *url.URL) error {
	host := u.Hostname()
	if host != strings.ToLower(host) {
		return fmt.Errorf("host is not lower case")
	}
	if strings.HasSuffix(host, ".") {
		return fmt.Errorf("host ends with a dot")
	}
	if _, err := netip.ParseAddr(host); err != nil && looksNumeric(strings.Split(host, ".")) {
		return fmt.Errorf("host %q is read as an IPv4 address by some clients; write the address", host)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if p == "" || p == defaultPort(u.Scheme) {
			return fmt.Errorf("has an empty or default port")
		}
	}
	return nil
}

// defaultPort is the port a URI of the scheme has when it names none.
func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	case "ftp":
		return "21"
	}
	return ""
}

// checkEscapes refuses percent-encoded unreserved characters and lower-case
// escapes, which RFC 3986 §6.2.2 normalizes away.
func checkEscapes(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return fmt.Errorf("has a malformed percent-encoding")
		}
		b := unhex(s[i+1])<<4 | unhex(s[i+2])
		if unreserved(b) {
			return fmt.Errorf("percent-encodes the unreserved character %q", b)
		}
		if s[i+1] != strings.ToUpper(s[i+1 : i+2])[0] || s[i+2] != strings.ToUpper(s[i+2 : i+3])[0] {
			return fmt.Errorf("has a lower-case percent-encoding")
		}
		i += 2
	}
	return nil
}

// checkSegments refuses dot segments, encoded or not, empty segments and
// encoded separators ("%2F", and "%5C" which WHATWG parsers read as "/")
// in path, which many servers decode into segments a prefix rule never
// saw; a single trailing "/" is allowed when trailingSlash is true.
func checkSegments(path string, trailingSlash bool) error {
	if path == "" {
		return nil
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		switch d := strings.ReplaceAll(strings.ToLower(seg), "%2e", "."); {
		case d == "." || d == "..":
			return fmt.Errorf("has a '.' or '..' path segment")
		case strings.Contains(d, "%2f") || strings.Contains(d, "%5c"):
			return fmt.Errorf("has a percent-encoded '/' or '\\' in its path")
		case seg != "":
		case i == 0 && strings.HasPrefix(path, "/"):
			// The root before the first "/".
		case i == len(segs)-1 && trailingSlash:
		default:
			return fmt.Errorf("has an empty path segment")
		}
	}
	return nil
}

func checkSPIFFEID(s string) error {
	if len(s) > maxSPIFFEID {
		return fmt.Errorf("SPIFFE ID is longer than %d bytes", maxSPIFFEID)
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return fmt.Errorf("SPIFFE ID must start with spiffe:// in lower case")
	}
	td, path, _ := strings.Cut(rest, "/")
	if strings.Contains(td, "@") {
		return fmt.Errorf("SPIFFE ID has user info")
	}
	if td == "" {
		return fmt.Errorf("SPIFFE ID has an empty trust domain")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("SPIFFE ID trust domain %q has %q: only lower-case letters, digits, '.', '-' and '_' are allowed (no port, user info or percent-encoding)", td, c)
		}
	}
	if !strings.Contains(rest, "/") {
		return nil
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return fmt.Errorf("SPIFFE ID has an empty path segment or a trailing '/'")
		case ".", "..":
			return fmt.Errorf("SPIFFE ID has a '.' or '..' path segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("SPIFFE ID path has %q: only letters, digits, '.', '-' and '_' are allowed (no query, fragment or percent-encoding)", c)
			}
		}
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// canonicalRule lower-cases a URI rule's scheme and authority, which are
// case-insensitive, so that it compares with canonical URIs.
func canonicalRule(rule string) string {
	scheme, rest, ok := strings.Cut(rule, ":")
	if !ok {
		return rule
	}
	scheme = strings.ToLower(scheme)
	auth, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return scheme + ":" + rest
	}
	end := strings.IndexAny(auth, "/?#")
	if end < 0 {
		end = len(auth)
	}
	return scheme + "://" + strings.ToLower(auth[:end]) + auth[end:]
}
