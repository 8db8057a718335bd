package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// http01Server answers http-01 challenges on 127.0.0.1.
type http01Server struct {
	port int
	mu   sync.Mutex
	resp map[string]string // path -> body
}

func startHTTP01(t *testing.T) *http01Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &http01Server{resp: map[string]string{}, port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		body, ok := h.resp[r.URL.Path]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *http01Server) set(path, body string) {
	h.mu.Lock()
	h.resp[path] = body
	h.mu.Unlock()
}

func ipCSR(t *testing.T, ips ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestOrderHTTP01 runs a whole order with golang.org/x/crypto/acme: account,
// order for an IP identifier (RFC 8738), http-01, finalize, download; then
// checks the record and the audit trail.
func TestOrderHTTP01(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	acct, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	order, err := c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatalf("AuthorizeOrder: %v", err)
	}
	if order.Status != xacme.StatusPending || len(order.AuthzURLs) != 1 {
		t.Fatalf("order = %+v", order)
	}
	az, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	var chal *xacme.Challenge
	for _, ch := range az.Challenges {
		if ch.Type == "dns-01" {
			t.Errorf("an IP identifier was offered dns-01 (RFC 8738 §7)")
		}
		if ch.Type == "http-01" {
			chal = ch
		}
	}
	if chal == nil {
		t.Fatalf("no http-01 challenge in %+v", az.Challenges)
	}

	// Finalizing before the order is ready is refused and changes nothing.
	if _, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, ipCSR(t, "127.0.0.1"), true); !isProblem(err, "orderNotReady") {
		t.Errorf("finalize before ready = %v, want orderNotReady", err)
	}

	body, err := c.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		t.Fatal(err)
	}
	h.set(c.HTTP01ChallengePath(chal.Token), body)
	if _, err := c.Accept(ctx, chal); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if _, err := c.WaitAuthorization(ctx, order.AuthzURLs[0]); err != nil {
		t.Fatalf("WaitAuthorization: %v", err)
	}
	order, err = c.WaitOrder(ctx, order.URI)
	if err != nil || order.Status != xacme.StatusReady {
		t.Fatalf("WaitOrder = %+v, %v; want ready", order, err)
	}

	// A CSR for other names is refused and the order stays ready.
	if _, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, ipCSR(t, "127.0.0.2"), true); !isProblem(err, "badCSR") {
		t.Errorf("finalize with other names = %v, want badCSR", err)
	}
	if o, err := c.GetOrder(ctx, order.URI); err != nil || o.Status != xacme.StatusReady {
		t.Errorf("after a refused finalize the order is %+v (%v), want still ready", o, err)
	}

	chain, certURL, err := c.CreateOrderCert(ctx, order.FinalizeURL, ipCSR(t, "127.0.0.1"), true)
	if err != nil {
		t.Fatalf("CreateOrderCert: %v", err)
	}
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and intermediate", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ts.auth.Root().Cert)
	inter := x509.NewCertPool()
	inter.AddCert(ts.auth.Intermediate().Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: ts.acme.clk.Now()}); err != nil {
		t.Errorf("issued chain does not verify: %v", err)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("leaf IPs %v", leaf.IPAddresses)
	}
	again, err := c.FetchCert(ctx, certURL, true)
	if err != nil || len(again) != 2 || string(again[0]) != string(chain[0]) {
		t.Errorf("FetchCert = %d certs, %v", len(again), err)
	}

	// The record names the ACME account and channel.
	rec, err := ts.st.Certificate(ctx, ca.SerialString(leaf.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	acctID := lastSegment(acct.URI)
	if rec.Channel != ca.ChannelACME || rec.Requester != "acme:"+acctID {
		t.Errorf("record channel %q requester %q", rec.Channel, rec.Requester)
	}
	// Every ACME action is in the audit chain with the account as actor.
	events, _, err := ts.st.AuditEvents(ctx, store.AuditFilter{Actor: "acme:" + acctID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range events {
		seen[e.Action] = true
	}
	for _, want := range []string{"acme.account.created", "acme.order.created", "acme.challenge.started",
		"acme.challenge.validated", "acme.order.finalized", "cert.issued"} {
		if !seen[want] {
			t.Errorf("no %s event by the account; saw %v", want, seen)
		}
	}
}

// TestChallengeWrongResponse: a wrong key authorization invalidates the
// challenge, the authorization and then the order.
func TestChallengeWrongResponse(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	order, err := c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type != "http-01" {
			continue
		}
		h.set(c.HTTP01ChallengePath(ch.Token), "not-the-key-authorization")
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitAuthorization(ctx, order.AuthzURLs[0]); err == nil {
		t.Fatalf("WaitAuthorization succeeded with a wrong response")
	}
	o, err := c.GetOrder(ctx, order.URI)
	if err != nil || o.Status != xacme.StatusInvalid {
		t.Errorf("order after a failed challenge: %+v, %v; want invalid", o, err)
	}
}

// TestFinalizeRefusedCSRKeepsOrderReady: a CSR the CA refuses at signing
// (here an RSA-1024 key) is badCSR and leaves the order ready.
func TestFinalizeRefusedCSRKeepsOrderReady(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	issueIP(t, h, c, "127.0.0.1") // proves the authorization for reuse
	order, err := c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil || order.Status != xacme.StatusReady {
		t.Fatalf("second order = %+v, %v; want ready (authorization reused)", order, err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, weak)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, csr, true); !isProblem(err, "badCSR") {
		t.Fatalf("finalize with an RSA-1024 CSR = %v, want badCSR", err)
	}
	if o, err := c.GetOrder(ctx, order.URI); err != nil || o.Status != xacme.StatusReady {
		t.Errorf("after a refused CSR the order is %+v, %v; want ready", o, err)
	}
	if _, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, ipCSR(t, "127.0.0.1"), true); err != nil {
		t.Errorf("finalize with a good CSR after a refused one: %v", err)
	}
}
