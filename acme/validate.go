package acme

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ValidationConfig says where and how challenges are checked.
type ValidationConfig struct {
	// Resolver is the "host:port" of the DNS server used for every lookup:
	// the dns-01 TXT record and the A/AAAA records of http-01 and
	// tls-alpn-01 targets. Empty means the servers in /etc/resolv.conf.
	Resolver string
	// HTTPPort is the port http-01 connects to, and the only port an http
	// redirect may name (default 80).
	HTTPPort int
	// TLSPort is the port tls-alpn-01 connects to, and the only port an
	// https redirect may name (default 443).
	TLSPort int
	// Timeout bounds one validation attempt, lookups and redirects
	// included (default 10s).
	Timeout time.Duration
	// RedirectHosts are the hosts an http-01 redirect may lead to besides
	// the identifier's own: a DNS name ("cdn.example.com"), every name
	// under a domain ("*.example.com", not the domain itself) or an IP
	// address. Empty: only the identifier's host. The validator sits
	// inside the operator's network, so a redirect must not aim it at
	// other hosts there.
	RedirectHosts []string
	// AllowLinkLocal lets validation connect to link-local and cloud
	// metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254). By
	// default they are refused when connecting, on the resolved address,
	// whatever name or redirect led there.
	AllowLinkLocal bool
}

// Validation limits.
const (
	defaultHTTPPort          = 80
	defaultTLSPort           = 443
	defaultValidationTimeout = 10 * time.Second
	// maxRedirects is how many redirects http-01 follows (RFC 8555 §8.3
	// lets the server follow them; Let's Encrypt stops at 10).
	maxRedirects = 10
	// maxHTTPBody is how much of an http-01 response is read.
	maxHTTPBody = 8 << 10
	// maxDetailValue is how much of a received value a problem quotes.
	maxDetailValue = 128
	// acmeTLS1 is the ALPN protocol of tls-alpn-01 (RFC 8737 §6.2).
	acmeTLS1 = "acme-tls/1"
	// oidACMEIdentifier is id-pe-acmeIdentifier (RFC 8737 §6.1).
	oidACMEIdentifier = "1.3.6.1.5.5.7.1.31"
	// oidSubjectAltName is id-ce-subjectAltName (RFC 5280 §4.2.1.6).
	oidSubjectAltName  = "2.5.29.17"
	validatorUserAgent = "Sigil-ACME-validator (+RFC 8555)"
)

// Validator checks challenge responses (RFC 8555 §8.3, §8.4; RFC 8737; RFC
// 8738). Every method returns nil when the response proves control, or a
// *Problem whose type says why not: connection (no connection, refused
// redirect, timeout), dns (lookup failure), tls (handshake or ALPN failure),
// unauthorized (nothing proving control: error status, missing record or
// extension, wrong certificate), incorrectResponse (a value that differs
// from the expected one) or malformed (an unusable identifier or token).
// It is safe for concurrent use; each attempt uses its own connections and
// leaves nothing running when it returns.
type Validator struct {
	cfg      ValidationConfig
	resolver *net.Resolver
	// redirectNames and redirectSuffixes ("." + domain) are the DNS names
	// of RedirectHosts, lower-case; redirectIPs its addresses.
	redirectNames    map[string]bool
	redirectSuffixes []string
	redirectIPs      map[netip.Addr]bool
}

var _ Challenger = (*Validator)(nil)

// WithDefaults returns c with every unset (zero) field at its default, as
// NewValidator uses it; callers that show the defaults read them here.
func (c ValidationConfig) WithDefaults() ValidationConfig {
	if c.HTTPPort == 0 {
		c.HTTPPort = defaultHTTPPort
	}
	if c.TLSPort == 0 {
		c.TLSPort = defaultTLSPort
	}
	if c.Timeout == 0 {
		c.Timeout = defaultValidationTimeout
	}
	return c
}

// NewValidator checks cfg, fills in its defaults and returns a Validator.
func NewValidator(cfg ValidationConfig) (*Validator, error) {
	cfg = cfg.WithDefaults()
	if !validPort(cfg.HTTPPort) {
		return nil, fmt.Errorf("acme validation: http port %d out of range", cfg.HTTPPort)
	}
	if !validPort(cfg.TLSPort) {
		return nil, fmt.Errorf("acme validation: tls port %d out of range", cfg.TLSPort)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("acme validation: negative timeout %s", cfg.Timeout)
	}
	// PreferGo gives the same resolver, and the same error semantics, with
	// or without cgo.
	r := &net.Resolver{PreferGo: true}
	if cfg.Resolver != "" {
		host, port, err := net.SplitHostPort(cfg.Resolver)
		if err != nil {
			return nil, fmt.Errorf("acme validation: resolver %q: %w", cfg.Resolver, err)
		}
		if p, err := strconv.Atoi(port); err != nil || host == "" || !validPort(p) {
			return nil, fmt.Errorf("acme validation: resolver %q is not host:port", cfg.Resolver)
		}
		addr := cfg.Resolver
		// Every query goes to addr, whatever /etc/resolv.conf lists; the
		// network ("udp", or "tcp" after truncation) is kept.
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	v := &Validator{cfg: cfg, resolver: r, redirectNames: map[string]bool{}, redirectIPs: map[netip.Addr]bool{}}
	for _, h := range cfg.RedirectHosts {
		if ip, err := netip.ParseAddr(h); err == nil && ip.Zone() == "" {
			v.redirectIPs[ip.Unmap()] = true
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if base, ok := strings.CutPrefix(name, "*."); ok && validDNSName(base) {
			v.redirectSuffixes = append(v.redirectSuffixes, "."+base)
			continue
		}
		if !validDNSName(name) || strings.Contains(name, "*") {
			return nil, fmt.Errorf("acme validation: redirect host %q is not a DNS name, *.domain or an IP address", h)
		}
		v.redirectNames[name] = true
	}
	return v, nil
}

// sameHost reports whether two URL hosts (without port) name the same
// host: equal names ignoring case and a trailing dot, or equal addresses.
func sameHost(a, b string) bool {
	ipa, erra := netip.ParseAddr(a)
	ipb, errb := netip.ParseAddr(b)
	if erra == nil || errb == nil {
		return erra == nil && errb == nil && ipa.Unmap() == ipb.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// redirectAllowed reports whether an http-01 redirect may lead to host,
// when validating the identifier whose host is idHost.
func (v *Validator) redirectAllowed(idHost, host string) bool {
	if sameHost(idHost, host) {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return v.redirectIPs[ip.Unmap()]
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if v.redirectNames[name] {
		return true
	}
	for _, suffix := range v.redirectSuffixes {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// refusedAddr reports whether validation must not connect to ip: unless
// AllowLinkLocal, a link-local address (where cloud metadata services
// live) or AWS's IPv6 metadata address.
func (v *Validator) refusedAddr(ip netip.Addr) bool {
	if v.cfg.AllowLinkLocal {
		return false
	}
	ip = ip.Unmap()
	// fd00:ec2::254 is the EC2 instance metadata service's IPv6 address.
	return ip.IsLinkLocalUnicast() || ip == netip.AddrFrom16([16]byte{0xfd, 0x00, 0x0e, 0xc2, 14: 0x02, 15: 0x54})
}

// control runs before each connection, on the address actually dialed
// (after every lookup), so no name, redirect or DNS answer can reach a
// refused address.
func (v *Validator) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return Connection(fmt.Sprintf("connection to %s refused: not an IP address and port", truncate(address)))
	}
	if v.refusedAddr(ap.Addr()) {
		return Connection(fmt.Sprintf("connection to %s refused: validation does not connect to link-local or metadata addresses", ap.Addr().Unmap()))
	}
	return nil
}

func validPort(p int) bool { return p > 0 && p <= 65535 }

// attempt is one validation, bounded by cfg.Timeout and by the caller's
// context.
type attempt struct {
	ctx context.Context
	// timedOut says how the attempt ends when its deadline passes. A
	// socket deadline (set from ctx) can fire just before ctx reports it,
	// so any timeout error is described with it.
	timedOut string
}

func (v *Validator) attempt(parent context.Context) (*attempt, context.CancelFunc) {
	return newAttempt(parent, v.cfg.Timeout, "validation deadline")
}

// newAttempt bounds work by timeout and by parent. The earlier deadline
// wins: when it is the caller's, a timeout is described as "timed out
// (<deadline> reached)" rather than naming a timeout that was not reached.
func newAttempt(parent context.Context, timeout time.Duration, deadline string) (*attempt, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	a := &attempt{ctx: ctx, timedOut: "timed out after " + timeout.String()}
	if pd, ok := parent.Deadline(); ok {
		if d, _ := ctx.Deadline(); d.Equal(pd) {
			a.timedOut = "timed out (" + deadline + " reached)"
		}
	}
	return a, cancel
}

// why says how the attempt ended, or "" while it runs.
func (a *attempt) why() string {
	switch {
	case errors.Is(a.ctx.Err(), context.Canceled):
		return "validation canceled"
	case a.ctx.Err() != nil:
		return a.timedOut
	}
	return ""
}

// HTTP01 checks an http-01 response (RFC 8555 §8.3): a GET of
// http://{id}:{HTTPPort}/.well-known/acme-challenge/{token} must answer 200
// with keyAuth as its body (trailing whitespace ignored). Redirects are
// followed, at most 10, only to the identifier's host or RedirectHosts,
// and only to http on HTTPPort or https on TLSPort (a redirect that names
// no port goes to those); an https target's certificate is not verified,
// as Let's Encrypt does. At most 8 KiB of body is read, and what was read
// is quoted in the problem only when it came from the identifier's host.
func (v *Validator) HTTP01(ctx context.Context, id Identifier, token, keyAuth string) error {
	host, _, err := targetHost(id, "http-01")
	if err != nil {
		return err
	}
	if !validToken(token) {
		return Malformed("http-01: invalid challenge token")
	}
	at, cancel := v.attempt(ctx)
	defer cancel()

	target := &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(v.cfg.HTTPPort)),
		Path: "/.well-known/acme-challenge/" + token}
	req, err := http.NewRequestWithContext(at.ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return Malformed("http-01: cannot build request for %s", target)
	}
	setValidationHeaders(req)

	tr := v.httpTransport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: v.checkRedirect}
	resp, err := client.Do(req)
	if err != nil {
		where := target.String()
		var uerr *url.Error
		if errors.As(err, &uerr) && uerr.URL != "" {
			where = uerr.URL
		}
		return at.problem("fetching "+where, err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL.String()
	if resp.StatusCode != http.StatusOK {
		return Unauthorized(fmt.Sprintf("invalid response from %s: HTTP %d", final, resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return at.problem("reading the response from "+final, err)
	}
	if len(body) > maxHTTPBody {
		return IncorrectResponse(fmt.Sprintf("the response from %s is longer than %d bytes", final, maxHTTPBody))
	}
	// RFC 8555 §8.3: the server SHOULD ignore whitespace at the end.
	got := strings.TrimRight(string(body), " \t\r\n")
	if subtle.ConstantTimeCompare([]byte(got), []byte(keyAuth)) != 1 {
		if !sameHost(resp.Request.URL.Hostname(), host) {
			// Another host's reply is not the client's to read.
			return IncorrectResponse(fmt.Sprintf("the key authorization from %s does not match: expected %q",
				final, truncate(keyAuth)))
		}
		return IncorrectResponse(fmt.Sprintf("the key authorization from %s does not match: expected %q, got %q",
			final, truncate(keyAuth), truncate(got)))
	}
	return nil
}

// setValidationHeaders names us and sends the bare host, without the port,
// as RFC 8555 §8.3 describes the request.
func setValidationHeaders(req *http.Request) {
	req.Host = hostHeader(req.URL.Hostname())
	req.Header.Set("User-Agent", validatorUserAgent)
	req.Header.Set("Accept", "*/*")
}

func hostHeader(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// checkRedirect allows at most maxRedirects redirects, each to the
// identifier's host or one of RedirectHosts, over http on HTTPPort or https
// on TLSPort. A redirect that names no port is sent to the configured one,
// so a test harness on other ports behaves as production does on 80 and
// 443.
func (v *Validator) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return Connection(fmt.Sprintf("too many redirects: stopped after %d (last to %s)", maxRedirects, truncate(req.URL.String())))
	}
	u := req.URL
	var want int
	switch strings.ToLower(u.Scheme) {
	case "http":
		want = v.cfg.HTTPPort
	case "https":
		want = v.cfg.TLSPort
	default:
		return Connection(fmt.Sprintf("redirect to %s refused: only http and https are allowed", truncate(u.String())))
	}
	host := u.Hostname()
	if host == "" {
		return Connection(fmt.Sprintf("redirect to %s refused: no host", truncate(u.String())))
	}
	if idHost := via[0].URL.Hostname(); !v.redirectAllowed(idHost, host) {
		return Connection(fmt.Sprintf("redirect to %s refused: only %s and the configured redirect hosts may be redirected to",
			truncate(u.String()), idHost))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n != want {
			return Connection(fmt.Sprintf("redirect to %s refused: %s may only use port %d",
				truncate(u.String()), strings.ToLower(u.Scheme), want))
		}
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(want))
	setValidationHeaders(req)
	return nil
}

// httpTransport is a one-attempt transport: no proxy from the environment,
// no keep-alive, lookups through the configured resolver, and TLS (for
// https redirects) completed but not verified.
func (v *Validator) httpTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            v.dial,
		DialTLSContext:         v.dialTLS,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
	}
}

// dial connects to addr. With a configured resolver a name is looked up as
// fully qualified, so no search domain is appended; with the system
// resolver it is looked up as given, so /etc/hosts entries (which Go's
// resolver matches only without the trailing dot) apply as they do for
// every other program on the host.
func (v *Validator) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil && !strings.HasSuffix(host, ".") && v.cfg.Resolver != "" {
		host += "."
	}
	d := net.Dialer{Resolver: v.resolver, Control: v.control}
	return d.DialContext(ctx, network, net.JoinHostPort(host, port))
}

// handshakeError marks a failed TLS handshake so it maps to a tls problem.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func (v *Validator) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := v.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{
		// Let's Encrypt practice: an https redirect target proves nothing
		// by its certificate, so any certificate will do.
		InsecureSkipVerify: true, //nolint:gosec // see above
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
	}
	if _, err := netip.ParseAddr(host); err != nil {
		cfg.ServerName = strings.TrimSuffix(host, ".")
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &handshakeError{err}
	}
	return tc, nil
}

// TLSALPN01 checks a tls-alpn-01 response (RFC 8737 §3): a TLS connection
// to {id}:{TLSPort} offering only ALPN "acme-tls/1", with SNI the DNS name
// or, for an IP, its reverse-DNS name (RFC 8738 §6), must negotiate
// acme-tls/1 and present a self-signed certificate whose only
// subjectAltName is the identifier and which carries a critical
// acmeIdentifier extension holding SHA-256(keyAuth).
func (v *Validator) TLSALPN01(ctx context.Context, id Identifier, keyAuth string) error {
	host, ip, err := targetHost(id, "tls-alpn-01")
	if err != nil {
		return err
	}
	sni := host
	if ip.IsValid() {
		sni = reverseName(ip)
	}
	at, cancel := v.attempt(ctx)
	defer cancel()
	ctx = at.ctx

	addr := net.JoinHostPort(host, strconv.Itoa(v.cfg.TLSPort))
	conn, err := v.dial(ctx, "tcp", addr)
	if err != nil {
		return at.problem("connecting to "+addr, err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{
		ServerName: sni,
		NextProtos: []string{acmeTLS1},
		// RFC 8737 §3: the certificate is self-signed; it is checked below.
		InsecureSkipVerify: true, //nolint:gosec // checked by hand
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return at.problem("tls-alpn-01 with "+addr, &handshakeError{err})
	}
	if dl, ok := ctx.Deadline(); ok {
		// Bounds the close_notify that Close writes. Not set before the
		// handshake, which ctx bounds, so that a timeout there is seen as
		// the attempt's.
		_ = conn.SetDeadline(dl)
	}
	defer tc.Close()
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != acmeTLS1 {
		return TLS(fmt.Sprintf("tls-alpn-01 with %s: the server did not negotiate ALPN %q (got %q)",
			addr, acmeTLS1, st.NegotiatedProtocol))
	}
	if len(st.PeerCertificates) == 0 {
		return TLS(fmt.Sprintf("tls-alpn-01 with %s: no certificate presented", addr))
	}
	return checkALPNCert(st.PeerCertificates[0], id, host, ip, keyAuth)
}

// checkALPNCert applies RFC 8737 §3 to the validation certificate.
func checkALPNCert(cert *x509.Certificate, id Identifier, host string, ip netip.Addr, keyAuth string) error {
	san, acmeExt := -1, -1
	for i, ext := range cert.Extensions {
		switch ext.Id.String() {
		case oidSubjectAltName:
			san = i
		case oidACMEIdentifier:
			acmeExt = i
		}
	}
	what := "tls-alpn-01 certificate for " + id.Value
	if san < 0 {
		return Unauthorized(what + " has no subjectAltName extension")
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(cert.Extensions[san].Value, &names); err != nil || len(rest) > 0 {
		return Unauthorized(what + " has a malformed subjectAltName extension")
	}
	if len(names) != 1 {
		return Unauthorized(fmt.Sprintf("%s must have exactly one subjectAltName, has %d", what, len(names)))
	}
	n := names[0]
	switch {
	case n.Class != asn1.ClassContextSpecific:
		return Unauthorized(what + " has a malformed subjectAltName")
	case ip.IsValid():
		got, ok := netip.AddrFromSlice(n.Bytes)
		if n.Tag != 7 || !ok || got.Unmap() != ip {
			return Unauthorized(fmt.Sprintf("%s: the subjectAltName must be the iPAddress %s", what, ip))
		}
	default:
		if n.Tag != 2 || !strings.EqualFold(string(n.Bytes), host) {
			return Unauthorized(fmt.Sprintf("%s: the subjectAltName must be the dNSName %s", what, host))
		}
	}
	if acmeExt < 0 {
		return Unauthorized(what + " has no acmeIdentifier extension (" + oidACMEIdentifier + ")")
	}
	ext := cert.Extensions[acmeExt]
	if !ext.Critical {
		return Unauthorized(what + ": the acmeIdentifier extension must be critical")
	}
	var got []byte
	if rest, err := asn1.Unmarshal(ext.Value, &got); err != nil || len(rest) > 0 {
		return Unauthorized(what + ": the acmeIdentifier extension is not an OCTET STRING")
	}
	want := sha256.Sum256([]byte(keyAuth))
	if subtle.ConstantTimeCompare(got, want[:]) != 1 {
		return IncorrectResponse(fmt.Sprintf("%s: the acmeIdentifier extension holds %s, expected %s",
			what, truncate(hex.EncodeToString(got)), hex.EncodeToString(want[:])))
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return Unauthorized(what + " is not self-signed")
	}
	return nil
}

// reverseName is the reverse-DNS name of ip (RFC 8738 §6, RFC 1035 §3.5,
// RFC 3596 §2.5): "4.3.2.1.in-addr.arpa" for 1.2.3.4, nibbles under
// ip6.arpa for IPv6.
func reverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
	}
	const hexDigits = "0123456789abcdef"
	b := ip.As16()
	var sb strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		sb.WriteByte(hexDigits[b[i]&0x0f])
		sb.WriteByte('.')
		sb.WriteByte(hexDigits[b[i]>>4])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa")
	return sb.String()
}

// DNS01 checks a dns-01 response (RFC 8555 §8.4): a TXT record at
// _acme-challenge.{domain}, looked up through the configured resolver, must
// equal base64url(SHA-256(keyAuth)) without padding. domain is the base
// name; a leading "*." is dropped, since a wildcard is proven on its base.
func (v *Validator) DNS01(ctx context.Context, domain, keyAuth string) error {
	domain = strings.TrimPrefix(strings.TrimSuffix(domain, "."), "*.")
	if !validDNSName(domain) {
		return Malformed("dns-01: invalid domain name %q", truncate(domain))
	}
	name := "_acme-challenge." + domain
	at, cancel := v.attempt(ctx)
	defer cancel()

	txts, err := v.resolver.LookupTXT(at.ctx, name+".")
	if err != nil {
		var dnsErr *net.DNSError
		why := at.why()
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			return Unauthorized("no TXT record found at " + name)
		case why != "":
		case isTimeout(err):
			why = at.timedOut
		case dnsErr != nil:
			why = dnsErr.Err
		default:
			why = err.Error()
		}
		return DNS(fmt.Sprintf("looking up TXT for %s: %s", name, why))
	}
	sum := sha256.Sum256([]byte(keyAuth))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	for _, t := range txts {
		if subtle.ConstantTimeCompare([]byte(t), []byte(want)) == 1 {
			return nil
		}
	}
	if len(txts) == 0 {
		return Unauthorized("no TXT record found at " + name)
	}
	const shown = 3
	found := make([]string, 0, shown)
	for i, t := range txts {
		if i == shown {
			found = append(found, fmt.Sprintf("and %d more", len(txts)-shown))
			break
		}
		found = append(found, strconv.Quote(truncate(t)))
	}
	return IncorrectResponse(fmt.Sprintf("incorrect TXT record at %s: expected %q, found %s",
		name, want, strings.Join(found, ", ")))
}

// targetHost checks an http-01 or tls-alpn-01 identifier and returns the
// host to connect to and, for an IP identifier, its address.
func targetHost(id Identifier, challenge string) (string, netip.Addr, error) {
	switch id.Type {
	case "ip":
		ip, err := netip.ParseAddr(id.Value)
		if err != nil || ip.Zone() != "" {
			return "", netip.Addr{}, Malformed("%s: invalid IP identifier %q", challenge, truncate(id.Value))
		}
		ip = ip.Unmap()
		return ip.String(), ip, nil
	case "dns":
		name := strings.TrimSuffix(id.Value, ".")
		if strings.HasPrefix(name, "*.") {
			// RFC 8555 §7.1.3: only dns-01 proves a wildcard.
			return "", netip.Addr{}, Malformed("%s cannot validate the wildcard %q", challenge, truncate(id.Value))
		}
		if !validDNSName(name) {
			return "", netip.Addr{}, Malformed("%s: invalid DNS identifier %q", challenge, truncate(id.Value))
		}
		return name, netip.Addr{}, nil
	}
	return "", netip.Addr{}, Malformed("%s: unsupported identifier type %q", challenge, truncate(id.Type))
}

// validDNSName reports whether s is a name we may look up: LDH labels
// (underscores allowed, as in _acme-challenge) of 1 to 63 bytes, at most
// 253 bytes in all, and not an IP literal.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validToken reports whether a challenge token is base64url, as RFC 8555
// §8.3 requires, so that it is safe in a path.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// problem maps a lookup, connection, TLS or HTTP error met during the
// attempt to a problem; what names the step ("fetching URL"). A *Problem in
// err (a refused redirect) is returned as is.
func (a *attempt) problem(what string, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	// A failed lookup is a dns problem even when the attempt ran out of
	// time in it.
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		name := strings.TrimSuffix(dnsErr.Name, ".")
		switch {
		case dnsErr.IsNotFound:
			return DNS(fmt.Sprintf("%s: no A or AAAA record for %s", what, name))
		case a.why() != "":
			return DNS(fmt.Sprintf("%s: DNS lookup of %s: %s", what, name, a.why()))
		case dnsErr.IsTimeout:
			return DNS(fmt.Sprintf("%s: DNS lookup of %s: %s", what, name, a.timedOut))
		default:
			return DNS(fmt.Sprintf("%s: DNS lookup of %s failed: %s", what, name, dnsErr.Err))
		}
	}
	if why := a.why(); why != "" {
		return Connection(what + ": " + why)
	}
	if isTimeout(err) {
		return Connection(what + ": " + a.timedOut)
	}
	var herr *handshakeError
	if errors.As(err, &herr) {
		return TLS(fmt.Sprintf("%s: %s", what, herr.err))
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return Connection(fmt.Sprintf("%s: %s", what, err))
}

// isTimeout reports whether err is a deadline passing; the only deadlines
// set are the attempt's.
func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()
}

// truncate shortens s for a problem detail.
func truncate(s string) string {
	if len(s) <= maxDetailValue {
		return s
	}
	return s[:maxDetailValue] + "..."
}
