package main

// Issue 15, items 1 and 2, end to end: an ACME account, and everything it
// owns, exists only on the endpoint it was created on; and ACME revocation
// reaches no further than what the signer proved.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.step.sm/crypto/jose"
	"golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/api"
)

// acmeReply is a raw ACME response.
type acmeReply struct {
	status   int
	location string
	body     []byte
}

// problemType is the reply's problem type without the ACME prefix, or "".
func (r acmeReply) problemType() string {
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(r.body, &p)
	return strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:")
}

// postJWS sends one ACME POST signed with key: by kid when kid is set,
// else with the key in jwk. A nil payload is a POST-as-GET. It builds the
// JWS itself, so that it can name any kid on any endpoint.
func (e *acmeE2E) postJWS(t *testing.T, key crypto.Signer, kid, target string, payload any) acmeReply {
	t.Helper()
	resp, err := e.hc.Head(e.p.httpsURL + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	data := []byte{}
	if payload != nil {
		if data, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"nonce": resp.Header.Get("Replay-Nonce"), "url": target}}
	if kid != "" {
		opts.ExtraHeaders["kid"] = kid
	} else {
		opts.EmbedJWK = true
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = e.hc.Post(target, "application/jose+json", strings.NewReader(jws.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return acmeReply{status: resp.StatusCode, location: resp.Header.Get("Location"), body: body}
}

// endpointURL is path on the ACME endpoint name ("" for /acme/).
func (e *acmeE2E) endpointURL(name, path string) string {
	if name == "" {
		return e.p.httpsURL + "/acme" + path
	}
	return e.p.httpsURL + "/acme/" + name + path
}

// eabAccount registers c with a new binding key of endpoint for requester.
func (e *acmeE2E) eabAccount(t *testing.T, c *acme.Client, endpoint, requester string) *acme.Account {
	t.Helper()
	args := []string{"acme", "eab", "create", "--requester", requester, "--format", "json"}
	if endpoint != "" {
		args = append(args, "--endpoint", endpoint)
	}
	out, _ := e2eRun(t, e2eAdmin(e.p, e.c, args...)...)
	var k api.EABKey
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.KeyID == "" {
		t.Fatalf("eab create: %v\n%s", err, out)
	}
	hmacKey, err := base64.RawURLEncoding.DecodeString(k.HMACKey)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := c.Register(context.Background(), &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: k.KeyID, Key: hmacKey}}, acme.AcceptTOS)
	if err != nil {
		t.Fatalf("register on %q with EAB: %v", endpoint, err)
	}
	return acct
}

func lastSegment(u string) string { return u[strings.LastIndex(u, "/")+1:] }

// TestACMEAccountEndpointScope: an account of the open /acme/ endpoint,
// named by kid on the EAB-only "partners" endpoint (and the other way
// round), is accountDoesNotExist for every request, and nothing is created
// or changed; its orders, authorizations, challenges and certificates are
// not found through another endpoint's URLs, even by an account there with
// the same requester identity; renewalInfo answers for an ACME certificate
// only on its own endpoint.
func TestACMEAccountEndpointScope(t *testing.T) {
	inProcess(t)
	e := startACMEE2E(t)
	ctx := context.Background()
	for _, name := range []string{"scope", "scope-partner", "scope-new"} {
		e.dns.setA(name+".sigil.test", net.IPv4(127, 0, 0, 1))
	}

	// An account of the open endpoint, with an order, its authorization,
	// challenge and certificate.
	open := e.client(t, "")
	openAcct, err := open.Register(ctx, &acme.Account{Contact: []string{"mailto:open@sigil.test"}}, acme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	openID := lastSegment(openAcct.URI)
	openChain, _, openOrder := e.issue(t, open, "http-01", acme.DomainIDs("scope.sigil.test")...)
	az, err := open.GetAuthorization(ctx, openOrder.AuthzURLs[0])
	if err != nil || len(az.Challenges) == 0 {
		t.Fatalf("authorization: %+v, %v", az, err)
	}
	objects := map[string]string{ // path on any endpoint -> what it is
		"/order/" + lastSegment(openOrder.URI):               "order",
		"/order/" + lastSegment(openOrder.URI) + "/finalize": "finalize",
		"/authz/" + lastSegment(openOrder.AuthzURLs[0]):      "authorization",
		"/chall/" + lastSegment(az.Challenges[0].URI):        "challenge",
		"/cert/" + e2eSerial(openChain[0]):                   "certificate",
		"/acct/" + openID + "/orders":                        "orders",
		"/acct/" + openID:                                    "account",
		"/revoke-cert":                                       "revocation",
		"/new-order":                                         "new order",
		"/key-change":                                        "key change",
	}

	// A partner account, bound by EAB on the partners endpoint.
	partner := e.client(t, "partners")
	partnerAcct := e.eabAccount(t, partner, "partners", "team:scope")
	partnerID := lastSegment(partnerAcct.URI)
	partnerChain, _, _ := e.issue(t, partner, "http-01", acme.DomainIDs("scope-partner.sigil.test")...)

	ordersOf := func(c *acme.Client, acctURL string) int {
		t.Helper()
		r := e.postJWS(t, c.Key, acctURL, acctURL+"/orders", nil)
		var list struct {
			Orders []string `json:"orders"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil {
			t.Fatalf("orders of %s: %d %s", acctURL, r.status, r.body)
		}
		return len(list.Orders)
	}
	openOrders, partnerOrders := ordersOf(open, openAcct.URI), ordersOf(partner, partnerAcct.URI)
	events := func() int {
		return len(e2eListAudit(t, e.p, e.c, "--actor", "acme:"+openID)) + len(e2eListAudit(t, e.p, e.c, "--actor", "acme:"+partnerID))
	}
	eventsBefore := events()

	newKey := e2eP256(t)
	payloadFor := func(endpoint, path, kid string) any {
		switch path {
		case "/new-order":
			return map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "scope-new.sigil.test"}}}
		case "/revoke-cert":
			return map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(openChain[0].Raw), "reason": 1}
		case "/key-change":
			inner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: newKey}, &jose.SignerOptions{EmbedJWK: true,
				ExtraHeaders: map[jose.HeaderKey]any{"url": e.endpointURL(endpoint, "/key-change")}})
			if err != nil {
				t.Fatal(err)
			}
			old, _ := json.Marshal(jose.JSONWebKey{Key: open.Key.Public()})
			body, _ := json.Marshal(map[string]any{"account": kid, "oldKey": json.RawMessage(old)})
			jws, err := inner.Sign(body)
			if err != nil {
				t.Fatal(err)
			}
			return json.RawMessage(jws.FullSerialize())
		case "/acct/" + openID:
			return map[string]any{"contact": []string{"mailto:mallory@sigil.test"}}
		case "/order/" + lastSegment(openOrder.URI) + "/finalize":
			csr, _ := pem.Decode(e2eCSR(t, e2eP256(t), "", "scope.sigil.test"))
			return map[string]any{"csr": base64.RawURLEncoding.EncodeToString(csr.Bytes)}
		}
		return nil
	}

	t.Run("open account on the partners endpoint", func(t *testing.T) {
		kid := e.endpointURL("partners", "/acct/"+openID)
		for path, what := range objects {
			for _, payload := range []any{nil, payloadFor("partners", path, kid)} {
				r := e.postJWS(t, open.Key, kid, e.endpointURL("partners", path), payload)
				if r.status != http.StatusBadRequest || r.problemType() != "accountDoesNotExist" {
					t.Errorf("%s (%s) by the open account's kid on partners: %d %s, want accountDoesNotExist", what, path, r.status, r.body)
				}
			}
		}
	})
	t.Run("partner account on the open endpoint", func(t *testing.T) {
		kid := e.endpointURL("", "/acct/"+partnerID)
		for _, path := range []string{"/acct/" + partnerID, "/new-order", "/acct/" + partnerID + "/orders"} {
			var payload any
			if path == "/new-order" {
				payload = payloadFor("", path, kid)
			}
			r := e.postJWS(t, partner.Key, kid, e.endpointURL("", path), payload)
			if r.status != http.StatusBadRequest || r.problemType() != "accountDoesNotExist" {
				t.Errorf("%s by the partner account's kid on the open endpoint: %d %s, want accountDoesNotExist", path, r.status, r.body)
			}
		}
	})
	t.Run("the open account's key by jwk on partners", func(t *testing.T) {
		r := e.postJWS(t, open.Key, "", e.endpointURL("partners", "/new-account"), map[string]any{"onlyReturnExisting": true})
		if r.problemType() != "accountDoesNotExist" {
			t.Errorf("onlyReturnExisting: %d %s, want accountDoesNotExist", r.status, r.body)
		}
		r = e.postJWS(t, open.Key, "", e.endpointURL("partners", "/new-account"), map[string]any{"termsOfServiceAgreed": true})
		if r.problemType() != "externalAccountRequired" {
			t.Errorf("newAccount without a binding: %d %s, want externalAccountRequired", r.status, r.body)
		}
		r = e.postJWS(t, open.Key, "", e.endpointURL("partners", "/revoke-cert"), payloadFor("partners", "/revoke-cert", ""))
		if r.problemType() != "unauthorized" {
			t.Errorf("revokeCert signed by the account key in jwk: %d %s, want unauthorized", r.status, r.body)
		}
	})
	t.Run("nothing was created or changed", func(t *testing.T) {
		if n := ordersOf(open, openAcct.URI); n != openOrders {
			t.Errorf("open account has %d orders, had %d", n, openOrders)
		}
		if n := ordersOf(partner, partnerAcct.URI); n != partnerOrders {
			t.Errorf("partner account has %d orders, had %d", n, partnerOrders)
		}
		if got, err := open.GetReg(ctx, ""); err != nil || len(got.Contact) != 1 || got.Contact[0] != "mailto:open@sigil.test" {
			t.Errorf("open account after the attempts: %+v, %v (key or contacts changed?)", got, err)
		}
		if rec := e.record(t, e2eSerial(openChain[0])); rec.Status != "valid" {
			t.Errorf("open account's certificate is %s", rec.Status)
		}
		if n := events(); n != eventsBefore {
			t.Errorf("audit log grew from %d to %d events", eventsBefore, n)
		}
	})

	// An account of the open endpoint bound to the same requester as the
	// partner account: the certificates still belong to their endpoint.
	same := e.client(t, "")
	sameAcct := e.eabAccount(t, same, "", "team:scope")
	partnerCertID := ariCertID(partnerChain[0])
	t.Run("same requester on another endpoint", func(t *testing.T) {
		r := e.postJWS(t, same.Key, sameAcct.URI, e.endpointURL("", "/cert/"+e2eSerial(partnerChain[0])), nil)
		if r.status != http.StatusNotFound {
			t.Errorf("downloading a partners certificate on the open endpoint: %d %s, want 404", r.status, r.body)
		}
		r = e.postJWS(t, same.Key, sameAcct.URI, e.endpointURL("", "/revoke-cert"),
			map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(partnerChain[0].Raw), "reason": 4})
		if r.problemType() != "unauthorized" {
			t.Errorf("revoking a partners certificate from the open endpoint: %d %s, want unauthorized", r.status, r.body)
		}
		r = e.postJWS(t, same.Key, sameAcct.URI, e.endpointURL("", "/new-order"), map[string]any{
			"identifiers": []map[string]string{{"type": "dns", "value": "scope-partner.sigil.test"}}, "replaces": partnerCertID})
		if r.status < 400 {
			t.Errorf("replacing a partners certificate from the open endpoint: %d %s, want a refusal", r.status, r.body)
		}
		if rec := e.record(t, e2eSerial(partnerChain[0])); rec.Status != "valid" {
			t.Errorf("partners certificate is %s", rec.Status)
		}
	})
	t.Run("open objects through the partners endpoint", func(t *testing.T) {
		for path := range objects {
			if !strings.HasPrefix(path, "/order/") && !strings.HasPrefix(path, "/authz/") && !strings.HasPrefix(path, "/chall/") && !strings.HasPrefix(path, "/cert/") {
				continue
			}
			// The open account's objects, asked for by the partner account
			// through partners URLs.
			r := e.postJWS(t, partner.Key, partnerAcct.URI, e.endpointURL("partners", path), payloadFor("partners", path, partnerAcct.URI))
			if r.status != http.StatusNotFound {
				t.Errorf("%s of the open endpoint through partners: %d %s, want 404", path, r.status, r.body)
			}
		}
	})
	t.Run("renewal information", func(t *testing.T) {
		v1 := e2eIssueSAN(t, e.p, e.c, "tls-server", "scope-v1.sigil.test")[0]
		for _, tc := range []struct {
			endpoint string
			cert     *x509.Certificate
			want     int
		}{
			{"", openChain[0], http.StatusOK},
			{"partners", openChain[0], http.StatusNotFound},
			{"partners", partnerChain[0], http.StatusOK},
			{"", partnerChain[0], http.StatusNotFound},
			// Not an ACME certificate: the agent asks any endpoint.
			{"", v1, http.StatusOK},
			{"partners", v1, http.StatusOK},
		} {
			resp, err := e.hc.Get(e.endpointURL(tc.endpoint, "/renewal-info/"+ariCertID(tc.cert)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("renewal-info of %v on endpoint %q: %d, want %d", tc.cert.DNSNames, tc.endpoint, resp.StatusCode, tc.want)
			}
		}
	})
}

// signV1 issues a certificate for key through /v1/sign with token, with
// the DNS names and URIs given.
func (e *acmeE2E) signV1(t *testing.T, token string, key crypto.Signer, dns []string, uris ...string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{}, DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := e2eSignHTTPS(context.Background(), e.hc, e.p.httpsURL, token, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), "tls-server")
	if err != nil {
		t.Fatal(err)
	}
	return e2eParseChain(t, []byte(sr.Certificate))[0]
}

// issueWithKey runs one ACME order for name and finalizes it with key.
func (e *acmeE2E) issueWithKey(t *testing.T, c *acme.Client, key *ecdsa.PrivateKey, name string) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		t.Fatal(err)
	}
	e.solve(t, c, o, "http-01")
	if o, err = c.WaitOrder(ctx, o.URI); err != nil {
		t.Fatal(err)
	}
	csr, _ := pem.Decode(e2eCSR(t, key, "", name))
	ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr.Bytes, false)
	if err != nil {
		t.Fatalf("finalize %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(ders[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestACMERevocationReach: Let's Encrypt's revocation rules. An account
// that proved a name cannot revoke an API certificate for it (least of all
// one with a URI it never proved), so no key is blocked and no other
// requester's certificate falls; an account holding authorizations revokes
// another account's ACME certificate only as cessationOfOperation; the
// ordering account's keyCompromise revokes its certificate and nothing
// else; only a request signed by the certificate's key blocks the key.
func TestACMERevocationReach(t *testing.T) {
	inProcess(t)
	e := startACMEE2E(t)
	ctx := context.Background()
	for _, name := range []string{"reach", "reach-b", "reach-c", "bystander"} {
		e.dns.setA(name+".sigil.test", net.IPv4(127, 0, 0, 1))
	}
	out, _ := e2eRun(t, e2eAdmin(e.p, e.c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
	issuer := strings.TrimSpace(out)
	status := func(c *x509.Certificate) (string, string) {
		rec := e.record(t, e2eSerial(c))
		return rec.Status, rec.RevocationReason
	}
	blocked := func(key crypto.Signer) bool {
		t.Helper()
		csr := e2eCSR(t, key, "", "bystander.sigil.test")
		_, err := e2eSignHTTPS(ctx, e.hc, e.p.httpsURL, e.c.adminToken, csr, "tls-server")
		return err != nil && strings.Contains(err.Error(), "blocked")
	}
	revoke := func(c *acme.Client, key crypto.Signer, cert *x509.Certificate, reason int) acmeReply {
		t.Helper()
		kid := ""
		if key == nil {
			acct, err := c.GetReg(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			kid, key = acct.URI, c.Key
		}
		return e.postJWS(t, key, kid, e.endpointURL("", "/revoke-cert"),
			map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw), "reason": reason})
	}

	// Account A proves reach.sigil.test.
	a := e.client(t, "")
	if _, err := a.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	e.issue(t, a, "http-01", acme.DomainIDs("reach.sigil.test")...)

	t.Run("API certificates are out of an account's reach", func(t *testing.T) {
		key := e2eP256(t)
		withURI := e.signV1(t, issuer, key, []string{"reach.sigil.test"}, "spiffe://sigil.test/reach")
		dnsOnly := e.signV1(t, issuer, e2eP256(t), []string{"reach.sigil.test"})
		bystander := e.signV1(t, e.c.adminToken, key, []string{"bystander.sigil.test"})
		for _, c := range []*x509.Certificate{withURI, dnsOnly} {
			if r := revoke(a, nil, c, 1); r.problemType() != "unauthorized" {
				t.Errorf("revoking API certificate %v %v: %d %s, want unauthorized", c.DNSNames, c.URIs, r.status, r.body)
			}
		}
		for _, c := range []*x509.Certificate{withURI, dnsOnly, bystander} {
			if s, reason := status(c); s != "valid" {
				t.Errorf("certificate %v %v is %s (%s), want valid", c.DNSNames, c.URIs, s, reason)
			}
		}
		if blocked(key) {
			t.Error("the key was blocked")
		}
	})

	// Account B is issued a certificate for the same name, with a key that
	// another requester's API certificate shares.
	b := e.client(t, "")
	if _, err := b.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	t.Run("holding authorizations revokes as cessationOfOperation", func(t *testing.T) {
		key := e2eP256(t)
		theirs := e.issueWithKey(t, b, key, "reach.sigil.test")
		sibling := e.signV1(t, e.c.adminToken, key, []string{"bystander.sigil.test"})
		if r := revoke(a, nil, theirs, 1); r.status != http.StatusOK {
			t.Fatalf("revoking with authorizations: %d %s", r.status, r.body)
		}
		if s, reason := status(theirs); s != "revoked" || reason != "cessationOfOperation" {
			t.Errorf("revoked by authorizations: %s (%s), want revoked (cessationOfOperation)", s, reason)
		}
		if s, _ := status(sibling); s != "valid" || blocked(key) {
			t.Errorf("the key's other certificate is %s, key blocked %v; want valid, not blocked", s, blocked(key))
		}
		// Not every name proven: refused.
		both := e.issueWithKey(t, b, e2eP256(t), "reach-b.sigil.test")
		if r := revoke(a, nil, both, 4); r.problemType() != "unauthorized" {
			t.Errorf("revoking a certificate for a name not proven: %d %s, want unauthorized", r.status, r.body)
		}
	})
	t.Run("the ordering account's keyCompromise blocks nothing", func(t *testing.T) {
		key := e2eP256(t)
		mine := e.issueWithKey(t, b, key, "reach-c.sigil.test")
		sibling := e.signV1(t, e.c.adminToken, key, []string{"bystander.sigil.test"})
		if r := revoke(b, nil, mine, 1); r.status != http.StatusOK {
			t.Fatalf("the ordering account revoking: %d %s", r.status, r.body)
		}
		if s, reason := status(mine); s != "revoked" || reason != "keyCompromise" {
			t.Errorf("revoked by its account: %s (%s), want revoked (keyCompromise)", s, reason)
		}
		if s, _ := status(sibling); s != "valid" || blocked(key) {
			t.Errorf("the key's other certificate is %s, key blocked %v; want valid, not blocked", s, blocked(key))
		}
	})
	t.Run("the certificate's key blocks it", func(t *testing.T) {
		key, other := e2eP256(t), e2eP256(t)
		mine := e.issueWithKey(t, b, key, "reach-c.sigil.test")
		sibling := e.signV1(t, issuer, key, []string{"reach.sigil.test"}, "spiffe://sigil.test/reach")
		superseded := e.signV1(t, issuer, other, []string{"reach.sigil.test"})
		bystander := e.signV1(t, e.c.adminToken, other, []string{"bystander.sigil.test"})
		// Any reason; only keyCompromise blocks.
		if r := revoke(a, other, superseded, 4); r.status != http.StatusOK {
			t.Fatalf("revoking by the certificate key (superseded): %d %s", r.status, r.body)
		}
		if s, reason := status(superseded); s != "revoked" || reason != "superseded" {
			t.Errorf("revoked by its key: %s (%s), want revoked (superseded)", s, reason)
		}
		if s, _ := status(bystander); s != "valid" || blocked(other) {
			t.Errorf("superseded by the key: its other certificate is %s, key blocked %v", s, blocked(other))
		}
		if r := revoke(a, key, mine, 1); r.status != http.StatusOK {
			t.Fatalf("revoking by the certificate key: %d %s", r.status, r.body)
		}
		if s, reason := status(sibling); s != "revoked" || reason != "keyCompromise" || !blocked(key) {
			t.Errorf("after a keyCompromise proven by the key: other certificate %s (%s), key blocked %v; want revoked, blocked", s, reason, blocked(key))
		}
	})
}
