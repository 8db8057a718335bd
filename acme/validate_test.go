package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestValidator is NewValidator that fails the test on error.
func newTestValidator(t testing.TB, cfg ValidationConfig) *Validator {
	t.Helper()
	v, err := NewValidator(cfg)
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

// asProblem returns the *Problem in err, failing the test if there is none.
func asProblem(t testing.TB, err error) *Problem {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("got error %v (%T), want a *Problem", err, err)
	}
	return p
}

// checkProblem checks that err is nil when wantType is "", and otherwise a
// problem of that type whose detail contains inDetail.
func checkProblem(t testing.TB, err error, wantType, inDetail string) *Problem {
	t.Helper()
	if wantType == "" {
		if err != nil {
			t.Fatalf("got %v, want success", err)
		}
		return nil
	}
	if err == nil {
		t.Fatalf("got success, want a %s problem", wantType)
	}
	p := asProblem(t, err)
	t.Logf("problem: %v", p)
	if p.Type != wantType {
		t.Errorf("type = %s, want %s (detail %q)", p.Type, wantType, p.Detail)
	}
	if !strings.Contains(p.Detail, inDetail) {
		t.Errorf("detail = %q, want it to contain %q", p.Detail, inDetail)
	}
	return p
}

// promptly runs fn and fails the test if it has not returned within limit.
func promptly(t testing.TB, limit time.Duration, fn func(ctx context.Context) error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn(context.Background()) }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("validation still running after %s", limit)
		return nil
	}
}

// portOf is the port of a "host:port" or URL.
func portOf(t testing.TB, addr string) int {
	t.Helper()
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// closedPort is a local TCP port with no listener.
func closedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, l.Addr().String())
	l.Close()
	return port
}

func TestNewValidator(t *testing.T) {
	t.Parallel()
	v := newTestValidator(t, ValidationConfig{})
	if v.cfg.HTTPPort != 80 || v.cfg.TLSPort != 443 || v.cfg.Timeout != 10*time.Second {
		t.Errorf("defaults = %+v, want ports 80/443 and 10s", v.cfg)
	}
	v = newTestValidator(t, ValidationConfig{Resolver: "[::1]:5353", HTTPPort: 5002, TLSPort: 5001, Timeout: time.Second})
	if v.cfg.HTTPPort != 5002 || v.cfg.TLSPort != 5001 || v.cfg.Timeout != time.Second {
		t.Errorf("cfg = %+v, want the given values", v.cfg)
	}
	bad := []struct {
		name string
		cfg  ValidationConfig
	}{
		{"resolver without port", ValidationConfig{Resolver: "127.0.0.1"}},
		{"resolver port zero", ValidationConfig{Resolver: "127.0.0.1:0"}},
		{"resolver port not a number", ValidationConfig{Resolver: "127.0.0.1:dns"}},
		{"resolver without host", ValidationConfig{Resolver: ":53"}},
		{"negative http port", ValidationConfig{HTTPPort: -1}},
		{"http port too large", ValidationConfig{HTTPPort: 65536}},
		{"negative tls port", ValidationConfig{TLSPort: -443}},
		{"negative timeout", ValidationConfig{Timeout: -time.Second}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewValidator(tc.cfg); err == nil {
				t.Errorf("NewValidator(%+v) succeeded, want an error", tc.cfg)
			}
		})
	}
}

// testKeyAuth is the key authorization the http-01 test server serves for
// token.
func testKeyAuth(token string) string { return token + ".dGh1bWJwcmludC1mb3ItdGVzdHM" }

// httpTarget is an http-01 responder on 127.0.0.1 with a twin over TLS
// (the https redirect target) and a third listener on a port redirects may
// not use. Paths under /.well-known/acme-challenge/ are named by behaviour.
type httpTarget struct {
	http, https, other *httptest.Server
	mu                 sync.Mutex
	hits               map[string]int    // requests per token
	hosts              map[string]string // last Host header per token
}

func startHTTPTarget(t *testing.T) *httpTarget {
	t.Helper()
	s := &httpTarget{hits: map[string]int{}, hosts: map[string]string{}}
	s.other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.count("other")
		_, _ = io.WriteString(w, testKeyAuth(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]))
	}))
	t.Cleanup(s.other.Close)
	mux := http.NewServeMux()
	s.http = httptest.NewUnstartedServer(mux)
	s.https = httptest.NewUnstartedServer(mux)
	s.http.Start()
	s.https.StartTLS()
	t.Cleanup(s.http.Close)
	t.Cleanup(s.https.Close)
	httpsPort := portOf(t, s.https.URL)
	otherPort := portOf(t, s.other.URL)
	httpPort := portOf(t, s.http.URL)

	serve := func(w http.ResponseWriter, tok string) { _, _ = io.WriteString(w, testKeyAuth(tok)) }
	redirect := func(loc string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, strings.ReplaceAll(loc, "TOKEN", r.PathValue("tok")), http.StatusFound)
		}
	}
	handlers := map[string]http.HandlerFunc{
		"ok": func(w http.ResponseWriter, r *http.Request) { serve(w, r.PathValue("tok")) },
		"ws": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, testKeyAuth(r.PathValue("tok"))+" \r\n\t\n")
		},
		"lead": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, " "+testKeyAuth(r.PathValue("tok")))
		},
		"wrong": func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "nope") },
		"big": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, testKeyAuth(r.PathValue("tok"))+strings.Repeat(" ", maxHTTPBody))
		},
		"fail":        func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"path":        redirect("/other/TOKEN"),
		"noport":      redirect("http://127.0.0.1/other/TOKEN"),
		"https":       redirect(fmt.Sprintf("https://127.0.0.1:%d/other/TOKEN", httpsPort)),
		"httpsnoport": redirect("https://127.0.0.1/other/TOKEN"),
		"badport":     redirect(fmt.Sprintf("http://127.0.0.1:%d/other/TOKEN", otherPort)),
		"httpsonhttp": redirect(fmt.Sprintf("https://127.0.0.1:%d/other/TOKEN", httpPort)),
		"ftp":         redirect("ftp://127.0.0.1/other/TOKEN"),
		"name":        redirect("http://example.test/other/TOKEN"),
		"www":         redirect("http://www.example.test/other/TOKEN"),
		"secret":      redirect("http://example.test/secret/TOKEN"),
		"samesecret":  redirect("/secret/TOKEN"),
		"metadata":    redirect("http://169.254.169.254/latest/meta-data/TOKEN"),
		"metasix":     redirect("http://[fe80::1]/latest/meta-data/TOKEN"),
		"loop":        redirect("/.well-known/acme-challenge/TOKEN"),
	}
	mux.HandleFunc("GET /.well-known/acme-challenge/{tok}", func(w http.ResponseWriter, r *http.Request) {
		tok := r.PathValue("tok")
		s.count(tok)
		s.mu.Lock()
		s.hosts[tok] = r.Host
		s.mu.Unlock()
		kind := strings.TrimRight(strings.SplitN(tok, "-", 2)[0], "0123456789")
		if kind == "chain" {
			// chainN redirects N times before answering.
			n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(tok, "-", 2)[0], "chain"))
			http.Redirect(w, r, fmt.Sprintf("/chain/%d/%s", n-1, tok), http.StatusFound)
			return
		}
		h, ok := handlers[kind]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
	mux.HandleFunc("GET /other/{tok}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts["other/"+r.PathValue("tok")] = r.Host
		s.mu.Unlock()
		serve(w, r.PathValue("tok"))
	})
	mux.HandleFunc("GET /secret/{tok}", func(w http.ResponseWriter, r *http.Request) {
		s.count("secret")
		_, _ = io.WriteString(w, "internal-secret-data")
	})
	mux.HandleFunc("GET /chain/{n}/{tok}", func(w http.ResponseWriter, r *http.Request) {
		s.count(r.PathValue("tok"))
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n <= 0 {
			serve(w, r.PathValue("tok"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/chain/%d/%s", n-1, r.PathValue("tok")), http.StatusFound)
	})
	return s
}

func (s *httpTarget) count(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits[key]++
}

func (s *httpTarget) hitCount(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[key]
}

func (s *httpTarget) host(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[key]
}

func TestHTTP01(t *testing.T) {
	t.Parallel()
	srv := startHTTPTarget(t)
	ns := startTestDNS(t)
	ns.SetA("example.test", "127.0.0.1")
	cfg := ValidationConfig{
		Resolver: ns.Addr(),
		HTTPPort: portOf(t, srv.http.URL),
		TLSPort:  portOf(t, srv.https.URL),
		Timeout:  5 * time.Second,
	}
	v := newTestValidator(t, cfg)
	ip := Identifier{Type: "ip", Value: "127.0.0.1"}
	name := Identifier{Type: "dns", Value: "example.test"}

	tests := []struct {
		name     string
		id       Identifier
		token    string
		keyAuth  string // default testKeyAuth(token)
		wantType string // "" = success
		inDetail string
	}{
		{name: "ip", id: ip, token: "ok-ip"},
		{name: "dns name via resolver", id: name, token: "ok-name"},
		{name: "dns name with trailing dot", id: Identifier{Type: "dns", Value: "example.test."}, token: "ok-dot"},
		{name: "trailing whitespace ignored", id: ip, token: "ws"},
		{name: "leading whitespace", id: ip, token: "lead", wantType: TypeIncorrectResponse},
		{name: "wrong content", id: ip, token: "wrong", wantType: TypeIncorrectResponse,
			inDetail: fmt.Sprintf("expected %q, got %q", testKeyAuth("wrong"), "nope")},
		{name: "other key authorization", id: ip, token: "ok-other", keyAuth: "ok-other.x", wantType: TypeIncorrectResponse},
		{name: "body over 8 KiB", id: ip, token: "big", wantType: TypeIncorrectResponse, inDetail: "longer than 8192 bytes"},
		{name: "404", id: ip, token: "missing", wantType: TypeUnauthorized, inDetail: "HTTP 404"},
		{name: "500", id: ip, token: "fail", wantType: TypeUnauthorized, inDetail: "HTTP 500"},
		{name: "redirect to other path", id: ip, token: "path"},
		{name: "redirect without port uses HTTPPort", id: ip, token: "noport"},
		{name: "redirect to https on TLSPort", id: ip, token: "https"},
		{name: "redirect to https without port uses TLSPort", id: ip, token: "httpsnoport"},
		{name: "redirect to another host", id: ip, token: "name", wantType: TypeConnection,
			inDetail: "redirect to http://example.test/other/name refused: only 127.0.0.1"},
		{name: "redirect to disallowed port", id: ip, token: "badport", wantType: TypeConnection, inDetail: "may only use port"},
		{name: "redirect to https on HTTPPort", id: ip, token: "httpsonhttp", wantType: TypeConnection, inDetail: "https may only use port"},
		{name: "redirect to ftp", id: ip, token: "ftp", wantType: TypeConnection, inDetail: "only http and https"},
		{name: "ten redirects", id: ip, token: "chain10"},
		{name: "eleven redirects", id: ip, token: "chain11", wantType: TypeConnection, inDetail: "too many redirects"},
		{name: "redirect loop", id: ip, token: "loop", wantType: TypeConnection, inDetail: "too many redirects"},
		{name: "nxdomain", id: Identifier{Type: "dns", Value: "missing.test"}, token: "ok-nx", wantType: TypeDNS, inDetail: "no A or AAAA record for missing.test"},
		{name: "wildcard", id: Identifier{Type: "dns", Value: "*.example.test"}, token: "ok-wc", wantType: TypeMalformed},
		{name: "bad dns name", id: Identifier{Type: "dns", Value: "exa mple.test"}, token: "ok-bad", wantType: TypeMalformed},
		{name: "bad ip", id: Identifier{Type: "ip", Value: "127.0.0"}, token: "ok-badip", wantType: TypeMalformed},
		{name: "unknown type", id: Identifier{Type: "email", Value: "a@example.test"}, token: "ok-email", wantType: TypeMalformed},
		{name: "token with a slash", id: ip, token: "../ok", wantType: TypeMalformed},
		{name: "empty token", id: ip, token: "", wantType: TypeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ka := tc.keyAuth
			if ka == "" {
				ka = testKeyAuth(tc.token)
			}
			err := v.HTTP01(t.Context(), tc.id, tc.token, ka)
			checkProblem(t, err, tc.wantType, tc.inDetail)
		})
	}

	t.Run("host header", func(t *testing.T) {
		t.Parallel()
		if err := v.HTTP01(t.Context(), name, "ok-host", testKeyAuth("ok-host")); err != nil {
			t.Fatal(err)
		}
		if got := srv.host("ok-host"); got != "example.test" {
			t.Errorf("Host = %q, want example.test", got)
		}
		if err := v.HTTP01(t.Context(), ip, "noport-host", testKeyAuth("noport-host")); err != nil {
			t.Fatal(err)
		}
		if got := srv.host("other/noport-host"); got != "127.0.0.1" {
			t.Errorf("Host after redirect = %q, want 127.0.0.1", got)
		}
	})
	t.Run("refused redirect is not followed", func(t *testing.T) {
		t.Parallel()
		err := v.HTTP01(t.Context(), ip, "badport-nf", testKeyAuth("badport-nf"))
		checkProblem(t, err, TypeConnection, "refused")
		if n := srv.hitCount("other"); n != 0 {
			t.Errorf("disallowed port got %d requests, want 0", n)
		}
	})
	t.Run("loop stops after ten redirects", func(t *testing.T) {
		t.Parallel()
		err := v.HTTP01(t.Context(), ip, "loop-count", testKeyAuth("loop-count"))
		checkProblem(t, err, TypeConnection, "stopped after 10")
		if n := srv.hitCount("loop-count"); n != 1+maxRedirects {
			t.Errorf("loop target got %d requests, want %d", n, 1+maxRedirects)
		}
	})
}

func TestHTTP01ConnectionFailures(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		v := newTestValidator(t, ValidationConfig{HTTPPort: closedPort(t), Timeout: 5 * time.Second})
		err := v.HTTP01(t.Context(), Identifier{Type: "ip", Value: "127.0.0.1"}, "tok", testKeyAuth("tok"))
		checkProblem(t, err, TypeConnection, "refused")
	})
	t.Run("hanging server times out", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) }) // runs before srv.Close
		v := newTestValidator(t, ValidationConfig{HTTPPort: portOf(t, srv.URL), Timeout: 300 * time.Millisecond})
		err := promptly(t, 5*time.Second, func(ctx context.Context) error {
			return v.HTTP01(ctx, Identifier{Type: "ip", Value: "127.0.0.1"}, "tok", testKeyAuth("tok"))
		})
		checkProblem(t, err, TypeConnection, "timed out after 300ms")
	})
	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		v := newTestValidator(t, ValidationConfig{HTTPPort: portOf(t, srv.URL), Timeout: time.Minute})
		err := promptly(t, 5*time.Second, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return v.HTTP01(ctx, Identifier{Type: "ip", Value: "127.0.0.1"}, "tok", testKeyAuth("tok"))
		})
		checkProblem(t, err, TypeConnection, "timed out")
	})
	t.Run("https redirect to a server without TLS", func(t *testing.T) {
		t.Parallel()
		var port int
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, fmt.Sprintf("https://127.0.0.1:%d/x", port), http.StatusFound)
		}))
		port = portOf(t, srv.Listener.Addr().String())
		srv.Start()
		t.Cleanup(srv.Close)
		v := newTestValidator(t, ValidationConfig{HTTPPort: port, TLSPort: port, Timeout: 5 * time.Second})
		err := v.HTTP01(t.Context(), Identifier{Type: "ip", Value: "127.0.0.1"}, "tok", testKeyAuth("tok"))
		checkProblem(t, err, TypeTLS, "https://127.0.0.1")
	})
	t.Run("ipv6 literal", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		hosts := make(chan string, 1)
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case hosts <- r.Host:
			default:
			}
			_, _ = io.WriteString(w, testKeyAuth("v6"))
		})}}
		srv.Start()
		t.Cleanup(srv.Close)
		v := newTestValidator(t, ValidationConfig{HTTPPort: portOf(t, l.Addr().String()), Timeout: 5 * time.Second})
		if err := v.HTTP01(t.Context(), Identifier{Type: "ip", Value: "::1"}, "v6", testKeyAuth("v6")); err != nil {
			t.Fatal(err)
		}
		if host := <-hosts; host != "[::1]" {
			t.Errorf("Host = %q, want [::1]", host)
		}
	})
}

// alpnCertSpec describes a tls-alpn-01 validation certificate to build.
type alpnCertSpec struct {
	dns         []string
	ips         []string
	keyAuth     string // digest source; ignored when digest is set
	digest      []byte
	rawValue    []byte // the extension's whole value, when set
	notCritical bool
	noExt       bool
	foreign     bool // signed by another key rather than self-signed
}

// makeALPNCert builds a certificate as RFC 8737 §3 describes, with the
// deviations spec asks for.
func makeALPNCert(t testing.TB, spec alpnCertSpec) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "acme-tls-alpn-01 test"},
		// The validator never checks a validation certificate's dates
		// (RFC 8737 §3 does not ask it to): any span will do, today or not.
		NotBefore: time.Unix(0, 0),
		NotAfter:  time.Unix(0, 0).Add(time.Hour),
		DNSNames:  spec.dns,
	}
	for _, s := range spec.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	if !spec.noExt {
		digest := spec.digest
		if digest == nil {
			sum := sha256.Sum256([]byte(spec.keyAuth))
			digest = sum[:]
		}
		val, err := asn1.Marshal(digest)
		if err != nil {
			t.Fatal(err)
		}
		if spec.rawValue != nil {
			val = spec.rawValue
		}
		tmpl.ExtraExtensions = []pkix.Extension{{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: !spec.notCritical, Value: val,
		}}
	}
	parent, signer := tmpl, key
	if spec.foreign {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		parent = &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "other"},
			NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter}
		signer = caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// alpnServer is a TLS responder on 127.0.0.1 serving one certificate.
type alpnServer struct {
	port int
	mu   sync.Mutex
	sni  string
}

func (s *alpnServer) lastSNI() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sni
}

// startALPNServer serves cert with the given ALPN protocols (nil: no ALPN)
// until the test ends.
func startALPNServer(t testing.TB, cert tls.Certificate, protos []string) *alpnServer {
	t.Helper()
	s := &alpnServer{}
	cfg := &tls.Config{
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			s.sni = hello.ServerName
			s.mu.Unlock()
			return &cert, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.port = portOf(t, ln.Addr().String())
	serveConns(t, ln, func(c net.Conn) {
		if err := c.(*tls.Conn).Handshake(); err == nil {
			_, _ = io.Copy(io.Discard, c)
		}
	})
	return s
}

// serveConns accepts on ln and runs handle on each connection until the
// test ends, then closes the listener and every connection and waits.
func serveConns(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

func TestTLSALPN01(t *testing.T) {
	t.Parallel()
	const keyAuth = "tok.dGh1bWJwcmludC1mb3ItdGVzdHM"
	ns := startTestDNS(t)
	ns.SetA("alpn.test", "127.0.0.1")
	ip := Identifier{Type: "ip", Value: "127.0.0.1"}
	name := Identifier{Type: "dns", Value: "alpn.test"}
	wrong := sha256.Sum256([]byte("something else"))

	tests := []struct {
		name     string
		id       Identifier
		spec     alpnCertSpec
		protos   []string // default acme-tls/1
		wantSNI  string
		wantType string
		inDetail string
	}{
		{name: "dns name", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth}, wantSNI: "alpn.test"},
		{name: "dns name case-insensitive", id: name, spec: alpnCertSpec{dns: []string{"ALPN.test"}, keyAuth: keyAuth}},
		{name: "ip", id: ip, spec: alpnCertSpec{ips: []string{"127.0.0.1"}, keyAuth: keyAuth}, wantSNI: "1.0.0.127.in-addr.arpa"},
		{name: "wrong digest", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, digest: wrong[:]},
			wantType: TypeIncorrectResponse, inDetail: fmt.Sprintf("%x", wrong)},
		{name: "digest of another key authorization", id: ip, spec: alpnCertSpec{ips: []string{"127.0.0.1"}, keyAuth: "tok.other"},
			wantType: TypeIncorrectResponse},
		{name: "value not an octet string", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, rawValue: []byte{0x02, 0x01, 0x05}},
			wantType: TypeUnauthorized, inDetail: "not an OCTET STRING"},
		{name: "extension not critical", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth, notCritical: true},
			wantType: TypeUnauthorized, inDetail: "must be critical"},
		{name: "no extension", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, noExt: true},
			wantType: TypeUnauthorized, inDetail: "no acmeIdentifier extension"},
		{name: "two SANs", id: name, spec: alpnCertSpec{dns: []string{"alpn.test", "other.test"}, keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "exactly one subjectAltName, has 2"},
		{name: "dns and ip SANs", id: ip, spec: alpnCertSpec{dns: []string{"alpn.test"}, ips: []string{"127.0.0.1"}, keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "exactly one"},
		{name: "other name", id: name, spec: alpnCertSpec{dns: []string{"other.test"}, keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "dNSName alpn.test"},
		{name: "other ip", id: ip, spec: alpnCertSpec{ips: []string{"127.0.0.2"}, keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "iPAddress 127.0.0.1"},
		{name: "dNSName for an ip", id: ip, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "iPAddress"},
		{name: "no SAN", id: name, spec: alpnCertSpec{keyAuth: keyAuth},
			wantType: TypeUnauthorized, inDetail: "no subjectAltName"},
		{name: "not self-signed", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth, foreign: true},
			wantType: TypeUnauthorized, inDetail: "not self-signed"},
		{name: "server without ALPN", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth}, protos: []string{},
			wantType: TypeTLS, inDetail: "did not negotiate"},
		{name: "server without acme-tls/1", id: name, spec: alpnCertSpec{dns: []string{"alpn.test"}, keyAuth: keyAuth}, protos: []string{"h2"},
			wantType: TypeTLS},
		{name: "wildcard", id: Identifier{Type: "dns", Value: "*.alpn.test"}, spec: alpnCertSpec{dns: []string{"*.alpn.test"}, keyAuth: keyAuth},
			wantType: TypeMalformed},
		{name: "nxdomain", id: Identifier{Type: "dns", Value: "missing.test"}, spec: alpnCertSpec{dns: []string{"missing.test"}, keyAuth: keyAuth},
			wantType: TypeDNS, inDetail: "missing.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			protos := tc.protos
			if protos == nil {
				protos = []string{acmeTLS1}
			} else if len(protos) == 0 {
				protos = nil
			}
			srv := startALPNServer(t, makeALPNCert(t, tc.spec), protos)
			v := newTestValidator(t, ValidationConfig{Resolver: ns.Addr(), TLSPort: srv.port, Timeout: 5 * time.Second})
			err := v.TLSALPN01(t.Context(), tc.id, keyAuth)
			checkProblem(t, err, tc.wantType, tc.inDetail)
			if tc.wantSNI != "" && srv.lastSNI() != tc.wantSNI {
				t.Errorf("SNI = %q, want %q", srv.lastSNI(), tc.wantSNI)
			}
		})
	}
}

func TestTLSALPN01ConnectionFailures(t *testing.T) {
	t.Parallel()
	ip := Identifier{Type: "ip", Value: "127.0.0.1"}
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		v := newTestValidator(t, ValidationConfig{TLSPort: closedPort(t), Timeout: 5 * time.Second})
		checkProblem(t, v.TLSALPN01(t.Context(), ip, "k.a"), TypeConnection, "refused")
	})
	t.Run("hanging server times out", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Accepts and never answers the ClientHello.
		serveConns(t, ln, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
		v := newTestValidator(t, ValidationConfig{TLSPort: portOf(t, ln.Addr().String()), Timeout: 300 * time.Millisecond})
		err = promptly(t, 5*time.Second, func(ctx context.Context) error { return v.TLSALPN01(ctx, ip, "k.a") })
		checkProblem(t, err, TypeConnection, "timed out after 300ms")
	})
	t.Run("not TLS", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serveConns(t, ln, func(c net.Conn) { _, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n") })
		v := newTestValidator(t, ValidationConfig{TLSPort: portOf(t, ln.Addr().String()), Timeout: 5 * time.Second})
		checkProblem(t, v.TLSALPN01(t.Context(), ip, "k.a"), TypeTLS, "")
	})
}

func TestValidatorReverseName(t *testing.T) {
	t.Parallel()
	tests := []struct{ ip, want string }{
		{"1.2.3.4", "4.3.2.1.in-addr.arpa"},
		{"::ffff:1.2.3.4", "4.3.2.1.in-addr.arpa"},
		// RFC 3596 §2.5's example.
		{"2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	}
	for _, tc := range tests {
		if got := reverseName(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("reverseName(%s) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// TestValidatorNoGoroutineLeak is not parallel: it counts goroutines, and
// parallel tests wait while sequential ones run. The count is taken with
// the test servers up, so a connection the validator failed to close
// (client side, or the server side waiting on it) shows as a leak.
func TestValidatorNoGoroutineLeak(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	srv := startHTTPTarget(t)
	ns := startTestDNS(t)
	ns.SetA("example.test", "127.0.0.1")
	ns.SetTXT("_acme-challenge.example.test", dns01Value("k.a"))
	hangTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, hangTLS, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	alpn := startALPNServer(t, makeALPNCert(t, alpnCertSpec{ips: []string{"127.0.0.1"}, keyAuth: "k.a"}), []string{acmeTLS1})

	ip := Identifier{Type: "ip", Value: "127.0.0.1"}
	quick := ValidationConfig{Resolver: ns.Addr(), Timeout: 200 * time.Millisecond}
	quick.HTTPPort, quick.TLSPort = portOf(t, hang.URL), portOf(t, hangTLS.Addr().String())
	vq := newTestValidator(t, quick)
	// A long timeout, so that nothing is cleaned up by it within the wait.
	// The https redirect names 127.0.0.1, another host than example.test.
	normal := ValidationConfig{Resolver: ns.Addr(), HTTPPort: portOf(t, srv.http.URL), TLSPort: portOf(t, srv.https.URL), Timeout: time.Minute,
		RedirectHosts: []string{"127.0.0.1"}}
	vn := newTestValidator(t, normal)
	normal.TLSPort = alpn.port
	va := newTestValidator(t, normal)
	ctx := t.Context()

	before := runtime.NumGoroutine()
	for i := range 3 {
		if err := vq.HTTP01(ctx, ip, "tok", "tok.x"); err == nil {
			t.Error("hanging http-01 succeeded")
		}
		if err := vq.TLSALPN01(ctx, ip, "tok.x"); err == nil {
			t.Error("hanging tls-alpn-01 succeeded")
		}
		tok := "https-" + strconv.Itoa(i)
		if err := vn.HTTP01(ctx, Identifier{Type: "dns", Value: "example.test"}, tok, testKeyAuth(tok)); err != nil {
			t.Error(err)
		}
		if err := vn.HTTP01(ctx, ip, "wrong", testKeyAuth("wrong")); err == nil {
			t.Error("wrong http-01 response succeeded")
		}
		if err := vn.HTTP01(ctx, ip, "missing", "x"); err == nil {
			t.Error("404 succeeded")
		}
		if err := vn.HTTP01(ctx, ip, "loop-leak", "x"); err == nil {
			t.Error("redirect loop succeeded")
		}
		if err := va.TLSALPN01(ctx, ip, "k.a"); err != nil {
			t.Error(err)
		}
		if err := vn.DNS01(ctx, "example.test", "k.a"); err != nil {
			t.Error(err)
		}
	}
	// Closed connections wind their goroutines down asynchronously.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after validations, %d before:\n%s", n, before, buf)
		}
	}
}

// TestHTTP01RedirectHosts: a redirect leads only to the identifier's own
// host unless RedirectHosts names the target, and a reply from any other
// host is never quoted back to the client.
func TestHTTP01RedirectHosts(t *testing.T) {
	t.Parallel()
	srv := startHTTPTarget(t)
	ns := startTestDNS(t)
	ns.SetA("example.test", "127.0.0.1")
	ns.SetA("www.example.test", "127.0.0.1")
	base := ValidationConfig{Resolver: ns.Addr(), HTTPPort: portOf(t, srv.http.URL), TLSPort: portOf(t, srv.https.URL),
		Timeout: 5 * time.Second}
	ip := Identifier{Type: "ip", Value: "127.0.0.1"}
	name := Identifier{Type: "dns", Value: "example.test"}

	strict := newTestValidator(t, base)
	t.Run("default: another host is not contacted", func(t *testing.T) {
		err := strict.HTTP01(t.Context(), ip, "secret-strict", testKeyAuth("secret-strict"))
		checkProblem(t, err, TypeConnection, "refused")
		if n := srv.hitCount("secret"); n != 0 {
			t.Errorf("the redirect target got %d requests, want 0", n)
		}
	})
	t.Run("default: a subdomain is another host", func(t *testing.T) {
		checkProblem(t, strict.HTTP01(t.Context(), name, "www-strict", testKeyAuth("www-strict")), TypeConnection, "refused")
	})
	t.Run("default: the identifier's own host", func(t *testing.T) {
		if err := strict.HTTP01(t.Context(), name, "name-own", testKeyAuth("name-own")); err != nil {
			t.Errorf("redirect from example.test to example.test: %v", err)
		}
		// The identifier's own reply is still quoted: it is the client's.
		checkProblem(t, strict.HTTP01(t.Context(), name, "samesecret-own", testKeyAuth("samesecret-own")),
			TypeIncorrectResponse, "internal-secret-data")
	})

	wide := base
	wide.RedirectHosts = []string{"Example.Test."}
	v := newTestValidator(t, wide)
	t.Run("configured host", func(t *testing.T) {
		if err := v.HTTP01(t.Context(), ip, "name-wide", testKeyAuth("name-wide")); err != nil {
			t.Errorf("redirect to a configured host: %v", err)
		}
		checkProblem(t, v.HTTP01(t.Context(), ip, "www-wide", testKeyAuth("www-wide")), TypeConnection, "refused")
	})
	t.Run("configured host's reply is not quoted", func(t *testing.T) {
		p := checkProblem(t, v.HTTP01(t.Context(), ip, "secret-wide", testKeyAuth("secret-wide")), TypeIncorrectResponse, "does not match")
		if p != nil && strings.Contains(p.Detail, "internal-secret") {
			t.Errorf("problem quotes another host's reply: %s", p.Detail)
		}
	})

	sub := base
	sub.RedirectHosts = []string{"*.example.test"}
	vs := newTestValidator(t, sub)
	t.Run("wildcard host", func(t *testing.T) {
		if err := vs.HTTP01(t.Context(), ip, "www-sub", testKeyAuth("www-sub")); err != nil {
			t.Errorf("redirect to a name under *.example.test: %v", err)
		}
		checkProblem(t, vs.HTTP01(t.Context(), ip, "name-sub", testKeyAuth("name-sub")), TypeConnection, "refused")
	})

	for _, bad := range []string{"", "exa mple.test", "*", "a.*.test", "http://example.test", "fe80::1%eth0"} {
		c := base
		c.RedirectHosts = []string{bad}
		if _, err := NewValidator(c); err == nil {
			t.Errorf("NewValidator accepted redirect host %q", bad)
		}
	}
}

// TestValidatorLinkLocal: link-local and metadata addresses are refused
// when connecting, however they were reached: an IP identifier, a name
// whose A record points there, a redirect, or a configured redirect host.
func TestValidatorLinkLocal(t *testing.T) {
	t.Parallel()
	srv := startHTTPTarget(t)
	ns := startTestDNS(t)
	ns.SetA("meta.test", "169.254.169.254")
	ns.SetA("mixed.test", "169.254.169.254", "127.0.0.1")
	cfg := ValidationConfig{Resolver: ns.Addr(), HTTPPort: portOf(t, srv.http.URL), TLSPort: portOf(t, srv.https.URL),
		Timeout: 5 * time.Second, RedirectHosts: []string{"169.254.169.254", "fe80::1"}}
	v := newTestValidator(t, cfg)
	const refused = "validation does not connect to link-local or metadata addresses"
	for _, tc := range []struct {
		name  string
		id    Identifier
		token string
	}{
		{"ip identifier", Identifier{Type: "ip", Value: "169.254.169.254"}, "ok-ll"},
		{"ipv6 identifier", Identifier{Type: "ip", Value: "fe80::1"}, "ok-ll6"},
		{"mapped ipv6 identifier", Identifier{Type: "ip", Value: "::ffff:169.254.1.1"}, "ok-llm"},
		{"name resolving there", Identifier{Type: "dns", Value: "meta.test"}, "ok-llname"},
		{"redirect to a configured metadata host", Identifier{Type: "ip", Value: "127.0.0.1"}, "metadata-ll"},
		{"redirect to a configured fe80 host", Identifier{Type: "ip", Value: "127.0.0.1"}, "metasix-ll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := promptly(t, 2*time.Second, func(ctx context.Context) error {
				return v.HTTP01(ctx, tc.id, tc.token, testKeyAuth(tc.token))
			})
			checkProblem(t, err, TypeConnection, refused)
		})
	}
	t.Run("tls-alpn-01", func(t *testing.T) {
		checkProblem(t, v.TLSALPN01(t.Context(), Identifier{Type: "dns", Value: "meta.test"}, "ka"), TypeConnection, refused)
	})
	t.Run("other addresses of the name are used", func(t *testing.T) {
		if err := v.HTTP01(t.Context(), Identifier{Type: "dns", Value: "mixed.test"}, "ok-mixed", testKeyAuth("ok-mixed")); err != nil {
			t.Errorf("name with a link-local and a loopback address: %v", err)
		}
	})
	t.Run("allowed by configuration", func(t *testing.T) {
		open := newTestValidator(t, ValidationConfig{AllowLinkLocal: true})
		for _, a := range []string{"169.254.169.254", "fe80::1", "fd00:ec2::254"} {
			if open.refusedAddr(netip.MustParseAddr(a)) {
				t.Errorf("%s refused with AllowLinkLocal", a)
			}
			if !v.refusedAddr(netip.MustParseAddr(a)) {
				t.Errorf("%s allowed by default", a)
			}
		}
		for _, a := range []string{"127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "169.255.0.1"} {
			if v.refusedAddr(netip.MustParseAddr(a)) {
				t.Errorf("%s refused", a)
			}
		}
	})
}
