package main

// ACME end to end (issue 5, acceptance): golang.org/x/crypto/acme against a
// real `sigil serve` on 127.0.0.1. Challenge names resolve through a DNS
// server on loopback; http-01 and tls-alpn-01 are answered by listeners
// this test runs on the ports the server is told to validate on.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/api"
)

// acmeE2E is one `sigil serve` with everything ACME validation needs.
type acmeE2E struct {
	c      *caDir
	p      *serverProc
	dns    *loopbackDNS
	hc     *http.Client
	tokens sync.Map // http-01 path -> body
	alpn   sync.Map // name -> tls.Certificate for tls-alpn-01
	// redirects are http-01 paths answered with a redirect to the URL.
	redirects sync.Map
	// httpPort is the port http-01 validation connects to.
	httpPort string
}

func startACMEE2E(t *testing.T) *acmeE2E {
	t.Helper()
	return startACMEE2EWith(t, func(text string) string {
		// Wildcards for tls-server, and a named endpoint that requires EAB.
		text = strings.Replace(text, "      allow_wildcards: false", "      allow_wildcards: true", 1)
		return strings.Replace(text, "\nacme:\n", "\nacme:\n  endpoints:\n    partners:\n      require_eab: true\n      caa: off\n", 1)
	})
}

// startACMEE2EWith is startACMEE2E with the generated sigil.yaml passed
// through edit before `sigil serve` reads it.
func startACMEE2EWith(t *testing.T, edit func(text string) string) *acmeE2E {
	t.Helper()
	e := &acmeE2E{dns: startLoopbackDNS(t)}
	for _, name := range []string{"renew", "revoke", "other", "keychange", "deactivate", "partner"} {
		e.dns.setA(name+".sigil.test", net.IPv4(127, 0, 0, 1))
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h01 := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loc, ok := e.redirects.Load(r.URL.Path); ok {
			http.Redirect(w, r, loc.(string), http.StatusFound)
			return
		}
		if body, ok := e.tokens.Load(r.URL.Path); ok {
			_, _ = io.WriteString(w, body.(string))
			return
		}
		http.NotFound(w, r)
	})}
	go func() { _ = h01.Serve(httpLn) }()
	t.Cleanup(func() { h01.Close() })
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	alpn := tls.NewListener(tlsLn, &tls.Config{NextProtos: []string{"acme-tls/1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := e.alpn.Load(hello.ServerName); ok {
				cert := c.(tls.Certificate)
				return &cert, nil
			}
			return nil, errors.New("no challenge certificate for " + hello.ServerName)
		}})
	go func() {
		for {
			conn, err := alpn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	t.Cleanup(func() { alpn.Close() })

	e.c = initCA(t)
	cfg, err := os.ReadFile(e.c.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.c.config, []byte(edit(string(cfg))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, httpPort, _ := net.SplitHostPort(httpLn.Addr().String())
	e.httpPort = httpPort
	_, tlsPort, _ := net.SplitHostPort(tlsLn.Addr().String())
	e.p = startServe(t, e.c, "--acme-resolver", e.dns.addr, "--acme-http-port", httpPort, "--acme-tls-port", tlsPort)
	e.hc = e.c.httpClient(t)
	return e
}

// client is a new ACME client with a fresh P-256 key on endpoint ("" for
// the default one).
func (e *acmeE2E) client(t *testing.T, endpoint string) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := e.p.httpsURL + "/acme/directory"
	if endpoint != "" {
		dir = e.p.httpsURL + "/acme/" + endpoint + "/directory"
	}
	return &acme.Client{Key: key, DirectoryURL: dir, HTTPClient: e.hc}
}

// issue runs one order for ids, proving each authorization with the given
// challenge type, and returns the chain, the leaf key and the order.
func (e *acmeE2E) issue(t *testing.T, c *acme.Client, challenge string, ids ...acme.AuthzID) ([]*x509.Certificate, crypto.Signer, *acme.Order) {
	t.Helper()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, ids)
	if err != nil {
		t.Fatalf("newOrder %v: %v", ids, err)
	}
	e.solve(t, c, o, challenge)
	return e.finalize(t, c, o, ids)
}

// solve proves every pending authorization of o with the challenge type.
func (e *acmeE2E) solve(t *testing.T, c *acme.Client, o *acme.Order, challenge string) {
	t.Helper()
	ctx := context.Background()
	for _, u := range o.AuthzURLs {
		az, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if az.Status == acme.StatusValid {
			continue
		}
		var ch *acme.Challenge
		for _, x := range az.Challenges {
			if x.Type == challenge {
				ch = x
			}
		}
		if ch == nil {
			t.Fatalf("authorization for %s offers no %s challenge", az.Identifier.Value, challenge)
		}
		switch challenge {
		case "http-01":
			body, err := c.HTTP01ChallengeResponse(ch.Token)
			if err != nil {
				t.Fatal(err)
			}
			e.tokens.Store(c.HTTP01ChallengePath(ch.Token), body)
		case "dns-01":
			rec, err := c.DNS01ChallengeRecord(ch.Token)
			if err != nil {
				t.Fatal(err)
			}
			e.dns.setTXT("_acme-challenge."+az.Identifier.Value, rec)
		case "tls-alpn-01":
			cert, err := c.TLSALPN01ChallengeCert(ch.Token, az.Identifier.Value)
			if err != nil {
				t.Fatal(err)
			}
			e.alpn.Store(az.Identifier.Value, cert)
		}
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatalf("accept %s: %v", challenge, err)
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			t.Fatalf("%s for %s: %v", challenge, az.Identifier.Value, err)
		}
	}
}

func (e *acmeE2E) finalize(t *testing.T, c *acme.Client, o *acme.Order, ids []acme.AuthzID) ([]*x509.Certificate, crypto.Signer, *acme.Order) {
	t.Helper()
	ctx := context.Background()
	o, err := c.WaitOrder(ctx, o.URI)
	if err != nil {
		t.Fatalf("order not ready: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{}}
	for _, id := range ids {
		if id.Type == "ip" {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(id.Value))
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, id.Value)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	var chain []*x509.Certificate
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	return chain, key, o
}

// record fetches a certificate's record through the admin API.
func (e *acmeE2E) record(t *testing.T, serial string) api.Certificate {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(e.p, e.c, "cert", "show", serial, "--format", "json")...)
	var cert api.Certificate
	if err := json.Unmarshal([]byte(out), &cert); err != nil {
		t.Fatalf("cert show %s: %v\n%s", serial, err, out)
	}
	return cert
}

// wantProblem checks an x/crypto/acme error's problem type, directly or
// as the error of a failed authorization.
func wantProblem(t *testing.T, err error, typ string) {
	t.Helper()
	typ = "urn:ietf:params:acme:error:" + typ
	var ae *acme.Error
	var aze *acme.AuthorizationError
	switch {
	case errors.As(err, &ae) && ae.ProblemType == typ:
	case errors.As(err, &aze) && len(aze.Errors) > 0 && errors.As(aze.Errors[0], &ae) && ae.ProblemType == typ:
	default:
		t.Errorf("error = %v, want an ACME %s problem", err, typ)
	}
}

func TestACMEEndToEnd(t *testing.T) {
	inProcess(t)
	e := startACMEE2E(t)
	ctx := context.Background()
	c := e.client(t, "")
	acct, err := c.Register(ctx, &acme.Account{Contact: []string{"mailto:ops@sigil.test"}}, acme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	acctID := acct.URI[strings.LastIndex(acct.URI, "/")+1:]

	t.Run("http-01 IP identifier", func(t *testing.T) {
		chain, _, _ := e.issue(t, c, "http-01", acme.IPIDs("127.0.0.1")...)
		if len(chain[0].IPAddresses) != 1 || !chain[0].IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("leaf IPs %v", chain[0].IPAddresses)
		}
		e2eVerifyChain(t, e.c, chain, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	})
	t.Run("dns-01 wildcard", func(t *testing.T) {
		chain, _, _ := e.issue(t, c, "dns-01", acme.DomainIDs("*.wild.sigil.test")...)
		if len(chain[0].DNSNames) != 1 || chain[0].DNSNames[0] != "*.wild.sigil.test" {
			t.Errorf("leaf names %v", chain[0].DNSNames)
		}
		e2eVerifyChain(t, e.c, chain, "any.wild.sigil.test", x509.ExtKeyUsageServerAuth)
	})
	t.Run("tls-alpn-01", func(t *testing.T) {
		e.dns.setA("alpn.sigil.test", net.IPv4(127, 0, 0, 1))
		chain, _, _ := e.issue(t, c, "tls-alpn-01", acme.DomainIDs("alpn.sigil.test")...)
		e2eVerifyChain(t, e.c, chain, "alpn.sigil.test", x509.ExtKeyUsageServerAuth)
	})
	t.Run("wrong dns-01 answer", func(t *testing.T) {
		o, err := c.AuthorizeOrder(ctx, acme.DomainIDs("wrong.sigil.test"))
		if err != nil {
			t.Fatal(err)
		}
		az, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
		if err != nil {
			t.Fatal(err)
		}
		e.dns.setTXT("_acme-challenge.wrong.sigil.test", "not-the-key-authorization")
		for _, ch := range az.Challenges {
			if ch.Type == "dns-01" {
				if _, err := c.Accept(ctx, ch); err != nil {
					t.Fatal(err)
				}
			}
		}
		_, err = c.WaitAuthorization(ctx, o.AuthzURLs[0])
		wantProblem(t, err, "incorrectResponse")
	})

	t.Run("renewal information and replaces", func(t *testing.T) {
		chain, _, _ := e.issue(t, c, "http-01", acme.DomainIDs("renew.sigil.test")...)
		leaf := chain[0]
		id := ariCertID(leaf)
		resp, err := e.hc.Get(e.p.httpsURL + "/acme/renewal-info/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			SuggestedWindow struct{ Start, End time.Time } `json:"suggestedWindow"`
		}
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("renewal-info: %d %v", resp.StatusCode, err)
		}
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if w := info.SuggestedWindow; w.Start.Before(leaf.NotBefore.Add(life/2)) || !w.End.After(w.Start) || w.End.After(leaf.NotAfter) {
			t.Errorf("window %v..%v for a certificate valid %v..%v", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
		}

		// newOrder with "replaces" (x/crypto/acme has no option for it).
		loc, body := signedPost(t, e, c, acct.URI, e.p.httpsURL+"/acme/new-order", map[string]any{
			"identifiers": []map[string]string{{"type": "dns", "value": "renew.sigil.test"}}, "replaces": id})
		var o struct {
			Status   string `json:"status"`
			Finalize string `json:"finalize"`
			Replaces string `json:"replaces"`
		}
		if err := json.Unmarshal(body, &o); err != nil || o.Status != "ready" {
			t.Fatalf("replacing order %s: %v", body, err)
		}
		renewed, _, _ := e.finalize(t, c, &acme.Order{URI: loc, FinalizeURL: o.Finalize, Status: o.Status}, acme.DomainIDs("renew.sigil.test"))
		rec := e.record(t, e2eSerial(renewed[0]))
		if rec.Replaces != e2eSerial(leaf) {
			t.Errorf("renewed certificate replaces %q, want %s", rec.Replaces, e2eSerial(leaf))
		}
		_, body = signedPost(t, e, c, acct.URI, e.p.httpsURL+"/acme/new-order", map[string]any{
			"identifiers": []map[string]string{{"type": "dns", "value": "renew.sigil.test"}}, "replaces": id})
		if !bytes.Contains(body, []byte("alreadyReplaced")) {
			t.Errorf("second replacement: %s, want alreadyReplaced", body)
		}
	})

	t.Run("revocation by account and by certificate key", func(t *testing.T) {
		chain, _, _ := e.issue(t, c, "http-01", acme.DomainIDs("revoke.sigil.test")...)
		if err := c.RevokeCert(ctx, nil, chain[0].Raw, acme.CRLReasonSuperseded); err != nil {
			t.Fatalf("revoke with the account key: %v", err)
		}
		if rec := e.record(t, e2eSerial(chain[0])); rec.Status != "revoked" || rec.RevocationReason != "superseded" {
			t.Errorf("after account revocation: status %s reason %s", rec.Status, rec.RevocationReason)
		}
		// x/crypto/acme reads alreadyRevoked as success, so ask directly.
		_, body := signedPost(t, e, c, acct.URI, e.p.httpsURL+"/acme/revoke-cert", map[string]any{
			"certificate": base64.RawURLEncoding.EncodeToString(chain[0].Raw), "reason": 4})
		if !bytes.Contains(body, []byte("alreadyRevoked")) {
			t.Errorf("revoking twice: %s, want alreadyRevoked", body)
		}

		chain, certKey, _ := e.issue(t, c, "http-01", acme.DomainIDs("revoke.sigil.test")...)
		// Without an account, only the certificate's own key will do.
		stranger := e.client(t, "")
		wantProblem(t, stranger.RevokeCert(ctx, nil, chain[0].Raw, acme.CRLReasonKeyCompromise), "unauthorized")
		if err := stranger.RevokeCert(ctx, certKey, chain[0].Raw, acme.CRLReasonKeyCompromise); err != nil {
			t.Fatalf("revoke with the certificate key: %v", err)
		}
		if rec := e.record(t, e2eSerial(chain[0])); rec.Status != "revoked" || rec.RevocationReason != "keyCompromise" {
			t.Errorf("after certificate-key revocation: status %s reason %s", rec.Status, rec.RevocationReason)
		}
		// Another account may not revoke what it was not issued.
		other := e.client(t, "")
		if _, err := other.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		chain, _, _ = e.issue(t, c, "http-01", acme.DomainIDs("other.sigil.test")...)
		wantProblem(t, other.RevokeCert(ctx, nil, chain[0].Raw, acme.CRLReasonUnspecified), "unauthorized")
		wantProblem(t, c.RevokeCert(ctx, nil, chain[0].Raw, acme.CRLReasonCACompromise), "badRevocationReason")
		if rec := e.record(t, e2eSerial(chain[0])); rec.Status == "revoked" {
			t.Errorf("a refused revocation revoked the certificate")
		}
	})

	t.Run("key change", func(t *testing.T) {
		kc := e.client(t, "")
		if _, err := kc.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		oldKey := kc.Key
		newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := kc.AccountKeyRollover(ctx, newKey); err != nil {
			t.Fatalf("key change: %v", err)
		}
		if _, err := kc.AuthorizeOrder(ctx, acme.DomainIDs("keychange.sigil.test")); err != nil {
			t.Errorf("newOrder with the new key: %v", err)
		}
		old := &acme.Client{Key: oldKey, DirectoryURL: kc.DirectoryURL, HTTPClient: e.hc}
		if _, err = old.GetReg(ctx, ""); !errors.Is(err, acme.ErrNoAccount) {
			t.Errorf("old key after key change: %v, want no account", err)
		}
	})

	t.Run("deactivation", func(t *testing.T) {
		dc := e.client(t, "")
		if _, err := dc.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		o, err := dc.AuthorizeOrder(ctx, acme.DomainIDs("deactivate.sigil.test"))
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.RevokeAuthorization(ctx, o.AuthzURLs[0]); err != nil {
			t.Fatalf("deactivate authorization: %v", err)
		}
		if az, err := dc.GetAuthorization(ctx, o.AuthzURLs[0]); err != nil || az.Status != acme.StatusDeactivated {
			t.Errorf("authorization after deactivation: %+v %v", az, err)
		}
		if o, err := dc.GetOrder(ctx, o.URI); err != nil || o.Status != acme.StatusInvalid {
			t.Errorf("order after its authorization was deactivated: %+v %v", o, err)
		}
		if err := dc.DeactivateReg(ctx); err != nil {
			t.Fatalf("deactivate account: %v", err)
		}
		_, err = dc.AuthorizeOrder(ctx, acme.DomainIDs("deactivate.sigil.test"))
		wantProblem(t, err, "unauthorized")
	})

	t.Run("external account binding", func(t *testing.T) {
		pc := e.client(t, "partners")
		_, err := pc.Register(ctx, &acme.Account{}, acme.AcceptTOS)
		wantProblem(t, err, "externalAccountRequired")

		out, _ := e2eRun(t, e2eAdmin(e.p, e.c, "acme", "eab", "create", "--endpoint", "partners", "--requester", "team:web", "--format", "json")...)
		var k api.EABKey
		if err := json.Unmarshal([]byte(out), &k); err != nil || k.KeyID == "" || k.HMACKey == "" {
			t.Fatalf("eab create: %v\n%s", err, out)
		}
		hmacKey, err := base64.RawURLEncoding.DecodeString(k.HMACKey)
		if err != nil {
			t.Fatal(err)
		}
		bound, err := pc.Register(ctx, &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: k.KeyID, Key: hmacKey}}, acme.AcceptTOS)
		if err != nil {
			t.Fatalf("register with EAB: %v", err)
		}
		chain, _, _ := e.issue(t, pc, "http-01", acme.DomainIDs("partner.sigil.test")...)
		if rec := e.record(t, e2eSerial(chain[0])); rec.Requester != "team:web" || rec.Channel != "acme" {
			t.Errorf("EAB-bound certificate requester %q channel %q, want team:web acme", rec.Requester, rec.Channel)
		}
		// The binding is spent, and the default endpoint does not take it.
		again := e.client(t, "partners")
		_, err = again.Register(ctx, &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: k.KeyID, Key: hmacKey}}, acme.AcceptTOS)
		wantProblem(t, err, "unauthorized")
		_ = bound
	})

	t.Run("audit names the account", func(t *testing.T) {
		events := e2eListAudit(t, e.p, e.c, "--actor", "acme:"+acctID)
		seen := map[string]bool{}
		for _, ev := range events {
			seen[ev.Action] = true
		}
		for _, action := range []string{"acme.account.created", "acme.order.created", "acme.challenge.started",
			"acme.challenge.validated", "acme.order.finalized", "cert.revoked"} {
			if !seen[action] {
				t.Errorf("no %s event with actor acme:%s (saw %v)", action, acctID, seen)
			}
		}
	})
}

// ariCertID is the RFC 9773 §4.1 identifier of a certificate.
func ariCertID(c *x509.Certificate) string {
	serial := c.SerialNumber.Bytes()
	if serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...)
	}
	return base64.RawURLEncoding.EncodeToString(c.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(serial)
}

// signedPost sends a kid-signed JWS POST with c's key, the way any ACME
// client does, and returns the Location header and the response body.
func signedPost(t *testing.T, e *acmeE2E, c *acme.Client, kid, url string, payload any) (string, []byte) {
	t.Helper()
	resp, err := e.hc.Head(e.p.httpsURL + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nonce := resp.Header.Get("Replay-Nonce")
	data, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: c.Key}, &jose.SignerOptions{
		ExtraHeaders: map[jose.HeaderKey]any{"kid": kid, "nonce": nonce, "url": url}})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = e.hc.Post(url, "application/jose+json", strings.NewReader(jws.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("Location"), body
}
