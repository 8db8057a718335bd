package acme

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/publicsuffix"
)

// CAAConfig says whether and how CAA records are checked (RFC 8659).
type CAAConfig struct {
	// Identities are the issuer domain names this CA answers to in CAA
	// "issue" and "issuewild" values (e.g. "sigil.internal"), compared
	// case-insensitively.
	Identities []string
	// Resolver is the "host:port" of the recursive resolver every CAA query
	// goes to. Empty means the name servers in /etc/resolv.conf, read at
	// each check.
	Resolver string
	// Timeout bounds one Check, every query and retry included (default
	// 10s).
	Timeout time.Duration
}

// CAAParams are the facts of the issuance being checked that RFC 8657
// parameters restrict. The zero value names no account and no method: a
// record carrying accounturi or validationmethods then never authorizes.
type CAAParams struct {
	// AccountURI is the requesting ACME account's URL, compared byte for
	// byte with an accounturi parameter (RFC 8657 §3).
	AccountURI string
	// Method is the ACME challenge type that proved control ("http-01",
	// "dns-01", "tls-alpn-01"), looked up case-insensitively in a
	// validationmethods parameter (RFC 8657 §4).
	Method string
}

// CAA limits and constants.
const (
	defaultCAATimeout = 10 * time.Second
	// caaUDPSize is the EDNS0 buffer size advertised (DNS Flag Day 2020).
	caaUDPSize = 1232
	// caaFlagCritical is the Issuer Critical flag (RFC 8659 §4.1).
	caaFlagCritical = 0x80
	// resolvConf lists the system name servers.
	resolvConf = "/etc/resolv.conf"
	// maxResolvServers is how many resolv.conf servers are tried, as in
	// glibc (MAXNS).
	maxResolvServers = 3
	// maxCAAShown is how many records a caa problem quotes.
	maxCAAShown = 3
)

// CAAChecker decides whether CAA records (RFC 8659, with the RFC 8657
// accounturi and validationmethods parameters) let this CA issue for a
// domain name. It is safe for concurrent use and keeps nothing between
// checks.
type CAAChecker struct {
	identities []string // lower-case issuer domain names
	resolver   string   // "host:port", or "" for resolv.conf
	timeout    time.Duration
}

// NewCAAChecker checks cfg, fills in its defaults and returns a CAAChecker.
// With no identity, no issue or issuewild value authorizes this CA: only
// names without a relevant one pass. It fails for an identity that is not
// an issuer domain name (RFC 8659 §4.2: LDH labels, no trailing dot), a resolver
// that is not host:port, or a negative timeout.
func NewCAAChecker(cfg CAAConfig) (*CAAChecker, error) {
	ids := make([]string, 0, len(cfg.Identities))
	for _, id := range cfg.Identities {
		if !validIssuerDomain(id) {
			return nil, fmt.Errorf("acme caa: identity %q is not an issuer domain name", id)
		}
		if id = strings.ToLower(id); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if cfg.Resolver != "" {
		host, port, err := net.SplitHostPort(cfg.Resolver)
		if err != nil {
			return nil, fmt.Errorf("acme caa: resolver %q: %w", cfg.Resolver, err)
		}
		if p, err := strconv.Atoi(port); err != nil || host == "" || !validPort(p) {
			return nil, fmt.Errorf("acme caa: resolver %q is not host:port", cfg.Resolver)
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("acme caa: negative timeout %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultCAATimeout
	}
	return &CAAChecker{identities: ids, resolver: cfg.Resolver, timeout: cfg.Timeout}, nil
}

// Check returns nil when CAA lets this CA issue for domain, and otherwise
// a *Problem:
//
//   - caa (403) when the relevant record set forbids it, naming the name
//     it was found at and the records (a critical property with an unknown
//     tag, or no issue/issuewild value naming one of our identities with
//     matching RFC 8657 parameters);
//   - dns (400) when a lookup fails (SERVFAIL or another error code, no
//     answer, timeout): a failed lookup is not permission (RFC 8659 §5.3,
//     CA/B Forum BR 3.2.2.8);
//   - malformed (400) when domain is not a DNS name.
//
// The relevant record set is the CAA answer for domain or, when that is
// empty or NXDOMAIN, for the closest parent that has one, the root
// excluded (RFC 8659 §3): one query per label, over UDP and again over TCP
// when truncated, CAA records accepted whatever their owner since a
// recursive resolver answers through CNAMEs. No records anywhere permits.
// A name starting with "*." is checked on its base as a wildcard, as is
// any name when wildcard is true: issuewild values then rule when the set
// has any (RFC 8659 §4.3). An IP address returns nil: CAA applies to
// domain names only. Check takes at most the configured Timeout, less if
// ctx ends first. Another error, not a *Problem, means the system resolver
// configuration could not be read.
func (c *CAAChecker) Check(ctx context.Context, domain string, wildcard bool, params CAAParams) error {
	name := strings.ToLower(strings.TrimSuffix(domain, "."))
	if _, err := netip.ParseAddr(name); err == nil {
		return nil
	}
	if base, ok := strings.CutPrefix(name, "*."); ok {
		name, wildcard = base, true
	}
	if !validDNSName(name) {
		return Malformed("caa: invalid domain name %q", truncate(domain))
	}
	servers, err := c.servers()
	if err != nil {
		return fmt.Errorf("acme caa: %w", err)
	}
	at, cancel := newAttempt(ctx, c.timeout, "deadline")
	defer cancel()
	for owner := range caaSearchNames(name) {
		rrs, prob := lookupCAA(at, servers, owner)
		if prob != nil {
			return prob
		}
		if len(rrs) > 0 {
			if prob := c.evaluate(name, wildcard, owner, rrs, params); prob != nil {
				return prob
			}
			return nil
		}
	}
	return nil
}

// caaSearchNames yields name and then each parent, the root excluded
// (RFC 8659 §3).
func caaSearchNames(name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for {
			if !yield(name) {
				return
			}
			_, parent, ok := strings.Cut(name, ".")
			if !ok || parent == "" {
				return
			}
			name = parent
		}
	}
}

// servers returns the name servers to query: the configured resolver, or
// the first three of /etc/resolv.conf, reread at each check as the Go
// resolver rereads it.
func (c *CAAChecker) servers() ([]string, error) {
	if c.resolver != "" {
		return []string{c.resolver}, nil
	}
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if errors.Is(err, fs.ErrNotExist) {
		// As the Go resolver and glibc do without the file.
		conf, err = &dns.ClientConfig{Port: "53"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", resolvConf, err)
	}
	return resolvServers(conf), nil
}

// resolvServers lists conf's name servers as host:port, at most three; the
// local host when it lists none, as the Go resolver does.
func resolvServers(conf *dns.ClientConfig) []string {
	var out []string
	for _, s := range conf.Servers {
		if len(out) == maxResolvServers {
			break
		}
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	if len(out) == 0 {
		out = []string{net.JoinHostPort("127.0.0.1", conf.Port), net.JoinHostPort("::1", conf.Port)}
	}
	return out
}

// rcodeError is an answer whose response code is neither NOERROR nor
// NXDOMAIN.
type rcodeError int

func (e rcodeError) Error() string { return "response code " + rcodeText(int(e)) }

func rcodeText(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// errCAAMismatch is an answer to some other question.
var errCAAMismatch = errors.New("answer does not match the question")

// lookupCAA queries the CAA records of name, trying each server in turn
// until one answers NOERROR or NXDOMAIN. NXDOMAIN and an empty answer are
// no records.
func lookupCAA(at *attempt, servers []string, name string) ([]*dns.CAA, *Problem) {
	var last error
	for i, server := range servers {
		ctx, cancel := at.ctx, context.CancelFunc(func() {})
		// Each server left gets an equal share of the remaining time, so
		// a dead first server leaves the next one time to answer.
		if left := len(servers) - i; left > 1 {
			if dl, ok := at.ctx.Deadline(); ok {
				ctx, cancel = context.WithTimeout(at.ctx, time.Until(dl)/time.Duration(left))
			}
		}
		rrs, err := queryCAA(ctx, server, name)
		cancel()
		if err == nil {
			return rrs, nil
		}
		last = err
		if at.why() != "" {
			break
		}
	}
	return nil, caaLookupProblem(at, name, last)
}

// queryCAA asks server for the CAA records of name, over UDP and, when
// the answer is truncated, over TCP (RFC 7766).
func queryCAA(ctx context.Context, server, name string) ([]*dns.CAA, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeCAA) // recursion desired
	q.SetEdns0(caaUDPSize, false)
	r, err := exchange(ctx, "udp", server, q)
	if r != nil && r.Truncated {
		r, err = exchange(ctx, "tcp", server, q)
	}
	if err != nil {
		return nil, fmt.Errorf("query CAA %s at %s: %w", name, server, err)
	}
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeCAA ||
		!strings.EqualFold(r.Question[0].Name, q.Question[0].Name) {
		return nil, fmt.Errorf("query CAA %s at %s: %w", name, server, errCAAMismatch)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, nil
	default:
		return nil, fmt.Errorf("query CAA %s at %s: %w", name, server, rcodeError(r.Rcode))
	}
	var rrs []*dns.CAA
	for _, rr := range r.Answer {
		// Owner names are not compared: a resolver that followed a CNAME
		// answers with the target's records (RFC 8659 §3).
		if caa, ok := rr.(*dns.CAA); ok && caa.Hdr.Class == dns.ClassINET {
			rrs = append(rrs, caa)
		}
	}
	return rrs, nil
}

// exchange sends q to server over network and reads the answer, within
// ctx's deadline and until ctx ends.
func exchange(ctx context.Context, network, server string, q *dns.Msg) (*dns.Msg, error) {
	// Timeout only replaces the library's 2s defaults; ctx's deadline is
	// earlier and wins.
	cl := &dns.Client{Net: network, UDPSize: caaUDPSize, Timeout: time.Hour}
	co, err := cl.DialContext(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", network, err)
	}
	defer co.Close()
	// The exchange honours ctx's deadline but not its cancellation;
	// closing the connection does.
	stop := context.AfterFunc(ctx, func() { _ = co.Close() })
	defer stop()
	r, _, err := cl.ExchangeWithConnContext(ctx, q, co)
	if err != nil {
		// A truncated answer may fail to unpack; it is still usable to
		// retry over TCP.
		if r != nil && r.Truncated {
			return r, nil
		}
		return nil, fmt.Errorf("exchange over %s: %w", network, err)
	}
	return r, nil
}

// caaLookupProblem describes a failed lookup without the resolver's
// address or other internal detail.
func caaLookupProblem(at *attempt, name string, err error) *Problem {
	what := "CAA lookup of " + name
	var rc rcodeError
	var why string
	switch {
	case errors.As(err, &rc):
		why = "the resolver answered " + rcodeText(int(rc))
	case at.why() != "":
		why = at.why()
	case isTimeout(err):
		why = at.timedOut
	case errors.Is(err, errCAAMismatch):
		why = "the answer does not match the question"
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "the resolver refused the connection"
	default:
		why = "networking error"
	}
	return DNS(what + ": " + why)
}

// evaluate applies the relevant record set rrs, found at owner, to name.
func (c *CAAChecker) evaluate(name string, wildcard bool, owner string, rrs []*dns.CAA, params CAAParams) *Problem {
	where := "at " + owner
	if aliased := strings.TrimSuffix(rrs[0].Hdr.Name, "."); !strings.EqualFold(aliased, owner) {
		where += " (via its alias " + strings.ToLower(aliased) + ")"
	}
	subject := name
	if wildcard {
		subject = "*." + name
	}
	// RFC 8659 §4.1: an unknown tag marked critical forbids issuance.
	for _, rr := range rrs {
		if rr.Flag&caaFlagCritical != 0 && !knownCAATag(rr.Tag) {
			return CAA(fmt.Sprintf("CAA record %s %s has an unknown critical property: issuance for %s is forbidden",
				caaRecordText(rr), where, subject))
		}
	}
	// RFC 8659 §4.3: issuewild rules for a wildcard when present, and is
	// ignored otherwise.
	tag := "issue"
	if wildcard && slices.ContainsFunc(rrs, func(rr *dns.CAA) bool { return strings.EqualFold(rr.Tag, "issuewild") }) {
		tag = "issuewild"
	}
	// Every record of the tag is weighed: one that authorizes us permits,
	// wherever it sits in the set. Only the message is shortened.
	var refused []string
	relevant := 0
	for _, rr := range rrs {
		if !strings.EqualFold(rr.Tag, tag) {
			continue
		}
		why := c.refusal(rr.Value, params)
		if why == "" {
			return nil
		}
		relevant++
		if len(refused) < maxCAAShown {
			refused = append(refused, caaRecordText(rr)+" ("+why+")")
		}
	}
	if relevant == 0 {
		// RFC 8659 §4.2: no issue property (only iodef, say) restricts
		// nothing.
		return nil
	}
	if relevant > len(refused) {
		refused = append(refused, "...")
	}
	return CAA(fmt.Sprintf("CAA records %s do not authorize %s to issue for %s: %s",
		where, strings.Join(c.identities, " or "), subject, strings.Join(refused, ", ")))
}

// refusal is "" when the issue or issuewild value v authorizes us for
// params, or else why it does not.
func (c *CAAChecker) refusal(v string, params CAAParams) string {
	iv, err := parseCAAIssueValue(v)
	switch {
	case err != nil:
		return "unparseable: " + err.Error()
	case iv.issuer == "":
		return "no CA may issue"
	case !slices.Contains(c.identities, iv.issuer):
		return "another CA"
	}
	if uri, ok := iv.param("accounturi"); ok && (params.AccountURI == "" || uri != params.AccountURI) {
		return "accounturi does not name the requesting account"
	}
	if list, ok := iv.param("validationmethods"); ok && !methodListed(list, params.Method) {
		if params.Method == "" {
			return "validationmethods is set and no method was given"
		}
		return "validationmethods does not list " + truncate(params.Method)
	}
	return ""
}

// methodListed reports whether the validationmethods value list, a
// comma-separated list of labels (RFC 8657 §4), names method. A malformed
// list names nothing.
func methodListed(list, method string) bool {
	found := false
	for m := range strings.SplitSeq(list, ",") {
		if !caaLabel(m) {
			return false
		}
		if method != "" && strings.EqualFold(m, method) {
			found = true
		}
	}
	return found
}

// knownCAATag reports whether tag is a property we understand, for the
// critical flag: RFC 8659's, issuemail (RFC 9495) and the CA/B Forum's
// contact tags. accounturi and validationmethods are listed because the
// configuration says so, though RFC 8657 defines them as parameters.
func knownCAATag(tag string) bool {
	switch strings.ToLower(tag) {
	case "issue", "issuewild", "iodef", "issuemail", "contactemail", "contactphone",
		"accounturi", "validationmethods":
		return true
	}
	return false
}

// caaRecordText quotes a record for a problem detail: `0 issue "ca.test"`.
func caaRecordText(rr *dns.CAA) string {
	tag := rr.Tag
	if !caaLabel(tag) {
		tag = strconv.QuoteToASCII(truncate(tag))
	}
	return fmt.Sprintf("%d %s %s", rr.Flag, tag, strconv.QuoteToASCII(truncate(rr.Value)))
}

// caaIssue is a parsed issue or issuewild value (RFC 8659 §4.2).
type caaIssue struct {
	// issuer is the lower-case issuer domain name; "" means no CA may
	// issue.
	issuer string
	// params are the parameters in order, tags lower-case and unique.
	params []caaParam
}

type caaParam struct{ tag, value string }

// param returns the value of the parameter tagged tag (lower-case).
func (v caaIssue) param(tag string) (string, bool) {
	for _, p := range v.params {
		if p.tag == tag {
			return p.value, true
		}
	}
	return "", false
}

// parseCAAIssueValue parses an issue or issuewild value (RFC 8659 §4.2):
//
//	issue-value = *WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]
//	parameter   = tag *WSP "=" *WSP value
//	value       = *(%x21-3A / %x3C-7E)
//
// Parameters are separated by ";", and a trailing ";" is tolerated. Tags
// are compared case-insensitively; a tag given twice makes the value
// unusable, since which one restricts would be ambiguous.
func parseCAAIssueValue(s string) (caaIssue, error) {
	var v caaIssue
	i := skipWSP(s, 0)
	j := i
	for j < len(s) && s[j] != ';' && !isWSP(s[j]) {
		j++
	}
	if j > i {
		if !validIssuerDomain(s[i:j]) {
			return caaIssue{}, fmt.Errorf("invalid issuer domain name %q", truncate(s[i:j]))
		}
		v.issuer = strings.ToLower(s[i:j])
	}
	i = skipWSP(s, j)
	if i == len(s) {
		return v, nil
	}
	if s[i] != ';' {
		return caaIssue{}, fmt.Errorf("unexpected %q after the issuer domain name", s[i])
	}
	for i = skipWSP(s, i+1); i < len(s); i = skipWSP(s, i+1) {
		j = i
		for j < len(s) && s[j] != '=' && s[j] != ';' && !isWSP(s[j]) {
			j++
		}
		tag := s[i:j]
		if !caaLabel(tag) {
			return caaIssue{}, fmt.Errorf("invalid parameter tag %q", truncate(tag))
		}
		tag = strings.ToLower(tag)
		if _, dup := v.param(tag); dup {
			return caaIssue{}, fmt.Errorf("parameter %q given twice", tag)
		}
		i = skipWSP(s, j)
		if i == len(s) || s[i] != '=' {
			return caaIssue{}, fmt.Errorf("no '=' after parameter %q", tag)
		}
		i = skipWSP(s, i+1)
		j = i
		for j < len(s) && s[j] >= 0x21 && s[j] <= 0x7e && s[j] != ';' {
			j++
		}
		v.params = append(v.params, caaParam{tag: tag, value: s[i:j]})
		i = skipWSP(s, j)
		if i == len(s) {
			break
		}
		if s[i] != ';' {
			return caaIssue{}, fmt.Errorf("invalid character %q in the value of parameter %q", s[i], tag)
		}
	}
	return v, nil
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func skipWSP(s string, i int) int {
	for i < len(s) && isWSP(s[i]) {
		i++
	}
	return i
}

// validIssuerDomain reports whether s is an issuer-domain-name (RFC 8659
// §4.2): dot-separated labels, at most 253 bytes.
func validIssuerDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !caaLabel(label) {
			return false
		}
	}
	return true
}

// caaLabel reports whether s is a label of RFC 8659 §4.2, also the syntax
// of parameter tags: letters and digits, with inner hyphens.
func caaLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PublicLooking reports whether a DNS name looks public: a valid DNS name
// (a leading "*." and a trailing dot ignored) under an ICANN public suffix
// (golang.org/x/net/publicsuffix), a bare suffix such as "com" included,
// and not under a special-use or internal-use TLD: localhost, local,
// internal, test, example, invalid, lan, corp, home, intranet, private,
// onion, alt, or under home.arpa. Only those TLDs are special:
// "example.com" is an ICANN registration (reserved by IANA, but resolvable
// in public DNS) and is public-looking. IP literals are not.
func PublicLooking(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	name = strings.TrimPrefix(name, "*.")
	if !validDNSName(name) {
		return false
	}
	if name == "home.arpa" || strings.HasSuffix(name, ".home.arpa") {
		return false // RFC 8375
	}
	tld := name[strings.LastIndexByte(name, '.')+1:]
	switch tld {
	case "localhost", "local", "internal", "test", "example", "invalid", // RFC 6761, 6762; ICANN .internal
		"lan", "corp", "home", "intranet", "private", // private-use by convention
		"onion", "alt": // RFC 7686, RFC 9476
		return false
	}
	_, icann := publicsuffix.PublicSuffix(name)
	return icann
}
