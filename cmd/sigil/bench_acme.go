package main

// `sigil bench acme` (issue 5, item 10): a load generator that runs full
// RFC 8555 orders — newOrder, http-01 served by itself, finalize, chain
// download — with concurrent workers against any ACME directory. It speaks
// only RFC 8555 through golang.org/x/crypto/acme, so it measures other ACME
// servers too.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/acme"
)

// benchACMEResult summarizes one `sigil bench acme` run. Latencies are per
// full order, from newOrder to the certificate chain received.
type benchACMEResult struct {
	Count       int           `json:"count"`
	Errors      int64         `json:"errors"`
	FirstError  string        `json:"first_error,omitempty"`
	Concurrency int           `json:"concurrency"`
	Validated   int64         `json:"validated"` // orders whose authorization went through http-01
	Reused      int64         `json:"reused"`    // orders whose authorization the server reused (already valid)
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"orders_per_second"`
	P50         time.Duration `json:"p50_ns"`
	P95         time.Duration `json:"p95_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
}

// benchACMEConfig is what one run needs, taken from the flags.
type benchACMEConfig struct {
	directory    string
	caFile       string
	concurrency  int
	count        int
	httpPort     int
	domainSuffix string // empty: IP identifier 127.0.0.1
	dnsAddr      string // with domainSuffix: answer A 127.0.0.1 for its names here
	csrKeys      int
	pollInterval time.Duration // 0: WaitOrder, honouring the server's Retry-After
}

func benchACMECmd() *cobra.Command {
	var cfg benchACMEConfig
	var useIP, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "acme --directory URL --concurrency C --count N --http-port P [--ip | --domain-suffix S]",
		Short: "Run N full ACME orders (http-01) with C concurrent accounts; print orders/s and latency percentiles",
		Long: `Run N full RFC 8555 orders against an ACME directory with C concurrent
workers, each with its own account: newOrder, http-01 (served by this command
on --http-port), finalize and chain download. Latency is measured per order,
from newOrder to the certificate chain received; accounts and CSR keys are
made before the clock starts.

With --ip (the default) every order is for the IP identifier 127.0.0.1
(RFC 8738), so the server validates on 127.0.0.1:<http-port>; a server may
reuse a proven authorization for later orders of the same account, and the
result counts validated and reused orders separately. With --domain-suffix S
order i is for the DNS name "o<i>.S": the server must resolve every such name
to this host (for sigil serve, a wildcard record in the resolver given by
--acme-resolver), and --http-port must be the port it validates on
(--acme-http-port; 80 for a public CA). --dns-addr ADDR makes this command
that resolver: it answers A 127.0.0.1 for every name under the suffix on
ADDR (UDP), so a local server started with --acme-resolver ADDR validates
every order from scratch.

Only RFC 8555 is used, so other ACME servers can be measured too; --ca-file
names the root to trust (empty: the system roots).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			if cmd.Flags().Changed("ip") && cfg.domainSuffix != "" {
				return errors.New("--ip and --domain-suffix are mutually exclusive")
			}
			if cfg.dnsAddr != "" && cfg.domainSuffix == "" {
				return errors.New("--dns-addr needs --domain-suffix")
			}
			_ = useIP // --ip is the default; the flag exists to say so explicitly
			res, err := runACMEBench(cmd.Context(), cfg, cmd.ErrOrStderr(), quiet)
			if err != nil {
				return err
			}
			if format == "json" {
				if err := render(cmd.OutOrStdout(), "json", table{}, res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%d orders in %s with %d workers: %.1f orders/s, p50 %s, p95 %s, p99 %s, max %s, errors %d (validated %d, reused authorizations %d)\n",
					res.Count, res.Elapsed.Round(time.Millisecond), res.Concurrency, res.PerSecond,
					res.P50.Round(100*time.Microsecond), res.P95.Round(100*time.Microsecond),
					res.P99.Round(100*time.Microsecond), res.Max.Round(100*time.Microsecond),
					res.Errors, res.Validated, res.Reused)
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d of %d orders failed; first: %s", res.Errors, res.Count, res.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.directory, "directory", "", "ACME directory URL (required)")
	f.StringVar(&cfg.caFile, "ca-file", os.Getenv("SIGIL_CA_FILE"), "root certificate to trust for the ACME server (or SIGIL_CA_FILE; empty: system roots)")
	f.IntVar(&cfg.concurrency, "concurrency", 32, "concurrent workers, one ACME account each")
	f.IntVar(&cfg.count, "count", 1000, "orders to run")
	f.IntVar(&cfg.httpPort, "http-port", 5002, "port to serve http-01 responses on (the port the server validates on)")
	f.BoolVar(&useIP, "ip", true, "order the IP identifier 127.0.0.1 (default)")
	f.StringVar(&cfg.domainSuffix, "domain-suffix", "", `order DNS names "o<i>.SUFFIX" instead of an IP (the server must resolve them to this host)`)
	f.StringVar(&cfg.dnsAddr, "dns-addr", "", "with --domain-suffix: serve DNS on this UDP address, answering A 127.0.0.1 for names under the suffix")
	f.DurationVar(&cfg.pollInterval, "poll-interval", 0, "poll a pending order at this interval instead of the server's Retry-After (0: honour Retry-After)")
	f.IntVar(&cfg.csrKeys, "csr-keys", 64, "distinct P-256 CSR keys to rotate through")
	f.StringVar(&format, "format", "text", "text or json")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	_ = cmd.MarkFlagRequired("directory")
	return cmd
}

// http01Server answers http-01 challenges for every worker: path → key
// authorization (RFC 8555 §8.3).
type http01Server struct {
	responses sync.Map
}

func (s *http01Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v, ok := s.responses.Load(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write([]byte(v.(string)))
}

// runACMEBench prepares accounts, keys and the http-01 listener, then runs
// the timed orders.
func runACMEBench(ctx context.Context, cfg benchACMEConfig, progress io.Writer, quiet bool) (benchACMEResult, error) {
	if cfg.concurrency < 1 || cfg.count < 1 || cfg.csrKeys < 1 {
		return benchACMEResult{}, errors.New("--concurrency, --count and --csr-keys must be positive")
	}
	if cfg.httpPort < 1 || cfg.httpPort > 65535 {
		return benchACMEResult{}, fmt.Errorf("--http-port %d is not a port", cfg.httpPort)
	}
	if u, err := url.Parse(cfg.directory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return benchACMEResult{}, fmt.Errorf("--directory %q must be an http(s):// URL", cfg.directory)
	}
	hc, err := benchACMEHTTPClient(cfg.caFile, cfg.concurrency)
	if err != nil {
		return benchACMEResult{}, err
	}

	// The http-01 responder listens on loopback for IP orders (the server
	// validates 127.0.0.1) and on every interface for names, which may
	// resolve to any address of this host.
	host := "127.0.0.1"
	if cfg.domainSuffix != "" {
		host = ""
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.httpPort)))
	if err != nil {
		return benchACMEResult{}, fmt.Errorf("http-01 listener: %w", err)
	}
	h01 := &http01Server{}
	srv := &http.Server{Handler: h01, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if cfg.dnsAddr != "" {
		stop, err := startBenchDNS(cfg.dnsAddr, cfg.domainSuffix)
		if err != nil {
			return benchACMEResult{}, err
		}
		defer stop()
	}

	// Everything below, until the clock starts, is setup the run does not
	// measure: CSR keys and one registered account per worker.
	keys := make([]crypto.Signer, cfg.csrKeys)
	for i := range keys {
		if keys[i], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return benchACMEResult{}, err
		}
	}
	clients := make([]*acme.Client, cfg.concurrency)
	regErrs := make([]error, cfg.concurrency)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				regErrs[w] = err
				return
			}
			c := &acme.Client{Key: key, DirectoryURL: cfg.directory, HTTPClient: hc, UserAgent: "sigil-bench",
				RetryBackoff: benchRetryBackoff}
			if _, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
				regErrs[w] = fmt.Errorf("register account %d: %w", w, err)
				return
			}
			clients[w] = c
		}()
	}
	wg.Wait()
	if failed := slices.DeleteFunc(slices.Clone(regErrs), func(err error) bool { return err == nil }); len(failed) > 0 {
		return benchACMEResult{}, fmt.Errorf("%d of %d account registrations failed; first: %w", len(failed), len(regErrs), failed[0])
	}

	bar := progressbar.NewOptions(cfg.count, progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("ordering"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("orders"), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetVisibility(!quiet))
	lat := make([]time.Duration, cfg.count)
	var next, errs, validated, reused atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.count || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				didValidate, err := benchACMEOrder(ctx, c, h01, cfg, i, keys[i%len(keys)])
				lat[i] = time.Since(t0)
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("order %d: %v", i, err))
				case didValidate:
					validated.Add(1)
				default:
					reused.Add(1)
				}
				_ = bar.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	_ = bar.Finish()
	if !quiet {
		fmt.Fprintln(progress)
	}
	if err := ctx.Err(); err != nil {
		return benchACMEResult{}, err
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	res := benchACMEResult{Count: cfg.count, Errors: errs.Load(), Concurrency: cfg.concurrency,
		Validated: validated.Load(), Reused: reused.Load(), Elapsed: elapsed,
		PerSecond: float64(cfg.count) / elapsed.Seconds(),
		P50:       pct(0.50), P95: pct(0.95), P99: pct(0.99), Max: lat[len(lat)-1]}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res, nil
}

// benchACMEOrder runs order i to the end: newOrder, http-01 (unless the
// server reused a valid authorization), wait until ready, finalize with a
// fresh CSR and download the chain. It reports whether a challenge was
// validated.
func benchACMEOrder(ctx context.Context, c *acme.Client, h01 *http01Server, cfg benchACMEConfig, i int, key crypto.Signer) (bool, error) {
	domainSuffix := cfg.domainSuffix
	ids := acme.IPIDs("127.0.0.1")
	tmpl := &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if domainSuffix != "" {
		name := fmt.Sprintf("o%d.%s", i, domainSuffix)
		ids = acme.DomainIDs(name)
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}
	}
	o, err := c.AuthorizeOrder(ctx, ids)
	if err != nil {
		return false, fmt.Errorf("new order: %w", err)
	}
	validated := false
	for _, u := range o.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			return false, fmt.Errorf("get authorization: %w", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, ch := range z.Challenges {
			if ch.Type == "http-01" {
				chal = ch
				break
			}
		}
		if chal == nil {
			return false, fmt.Errorf("authorization %s offers no http-01 challenge", u)
		}
		body, err := c.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return false, err
		}
		path := c.HTTP01ChallengePath(chal.Token)
		h01.responses.Store(path, body)
		defer h01.responses.Delete(path)
		if _, err := c.Accept(ctx, chal); err != nil {
			return false, fmt.Errorf("accept challenge: %w", err)
		}
		validated = true
	}
	if err := benchACMEWaitReady(ctx, c, o.URI, cfg.pollInterval); err != nil {
		return validated, fmt.Errorf("wait order: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return validated, fmt.Errorf("csr: %w", err)
	}
	chain, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		return validated, fmt.Errorf("finalize: %w", err)
	}
	if len(chain) == 0 {
		return validated, errors.New("finalize: empty certificate chain")
	}
	return validated, nil
}

// benchACMEWaitReady waits until the order is ready (or valid). With a zero
// interval it is WaitOrder, which sleeps the server's Retry-After (RFC 8555
// §8.2) between polls; a positive interval polls at that rate instead, so
// that a whole-second Retry-After does not dominate the measured latency.
func benchACMEWaitReady(ctx context.Context, c *acme.Client, orderURL string, interval time.Duration) error {
	if interval <= 0 {
		_, err := c.WaitOrder(ctx, orderURL)
		return err
	}
	for {
		o, err := c.GetOrder(ctx, orderURL)
		if err != nil {
			return err
		}
		switch o.Status {
		case acme.StatusReady, acme.StatusValid:
			return nil
		case acme.StatusInvalid:
			return &acme.OrderError{OrderURL: orderURL, Status: o.Status, Problem: o.Error}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// benchACMEHTTPClient trusts caFile (or the system roots when empty) and
// keeps enough idle connections for every worker.
func benchACMEHTTPClient(caFile string, concurrency int) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 2 * concurrency
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, nil
}

// startBenchDNS answers A 127.0.0.1 for suffix and every name under it on
// addr (UDP), NXDOMAIN for anything else, and an empty answer for other
// types; it stands in for the wildcard record a real deployment would have.
func startBenchDNS(addr, suffix string) (stop func(), err error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("--dns-addr: %w", err)
	}
	zone := dns.Fqdn(strings.ToLower(suffix))
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative, m.RecursionAvailable = true, true
		for _, q := range r.Question {
			name := strings.ToLower(q.Name)
			if name != zone && !strings.HasSuffix(name, "."+zone) {
				m.Rcode = dns.RcodeNameError
				continue
			}
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A: net.IPv4(127, 0, 0, 1)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		return nil, fmt.Errorf("--dns-addr: %w", err)
	}
	return func() { _ = srv.Shutdown() }, nil
}

// benchRetryBackoff retries a bad nonce or a server error a few times,
// quickly, and never a rate limit: x/crypto/acme would otherwise wait out
// Retry-After, stalling the run, and a benchmark should report it instead.
func benchRetryBackoff(n int, _ *http.Request, resp *http.Response) time.Duration {
	if resp != nil && resp.StatusCode == http.StatusTooManyRequests || n > 4 {
		return 0
	}
	return time.Duration(50<<n) * time.Millisecond
}
