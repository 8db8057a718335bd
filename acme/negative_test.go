package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// Negative tests (issue 5, Acceptance): requests a broken client or an
// attacker sends, built by hand with go-jose and POSTed to a real server.
// Each must be refused with the right problem document and a fresh nonce,
// and must change nothing: no account, no order, no audit event, no
// change to the orders and authorizations it names.

// negEnv is a test server with one registered account whose key the test
// holds, so it can sign whatever it likes with it.
type negEnv struct {
	ts     *testServer
	hc     *http.Client
	base   string // endpoint URL, e.g. https://127.0.0.1:1234/acme
	c      *xacme.Client
	key    *ecdsa.PrivateKey
	kid    string // the account URL
	acctID string
}

func newNegEnv(t *testing.T, ts *testServer) *negEnv {
	t.Helper()
	c := ts.client(t)
	acct, err := c.Register(context.Background(), &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return &negEnv{ts: ts, hc: ts.srv.Client(), base: ts.srv.URL + ts.acme.Prefix(), c: c,
		key: c.Key.(*ecdsa.PrivateKey), kid: acct.URI, acctID: lastSegment(acct.URI)}
}

// nonce fetches a fresh nonce with HEAD new-nonce.
func (e *negEnv) nonce(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, e.base+"/new-nonce", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		t.Fatal("new-nonce sent no Replay-Nonce")
	}
	return n
}

// post sends body to url; contentType "" sends none.
func (e *negEnv) post(t *testing.T, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return e.do(t, req)
}

func (e *negEnv) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", req.Method, req.URL, err)
	}
	return resp, b
}

// kidJWS is a well-formed request signed by the account.
func (e *negEnv) kidJWS(t *testing.T, url, nonce string, payload []byte) []byte {
	t.Helper()
	return signed(t, jose.ES256, e.key, false, map[string]any{"kid": e.kid, "nonce": nonce, "url": url}, payload)
}

// postKID signs payload as the account with a fresh nonce and POSTs it.
func (e *negEnv) postKID(t *testing.T, url string, payload []byte) (resp *http.Response, body []byte, nonce string) {
	t.Helper()
	nonce = e.nonce(t)
	resp, body = e.post(t, url, "application/jose+json", e.kidJWS(t, url, nonce, payload))
	return resp, body, nonce
}

// negState is what a refused request must leave alone.
type negState struct {
	auditSeq int64
	orders   []string // "id status" of the account's orders
	account  store.ACMEAccount
}

func (e *negEnv) state(t *testing.T) negState {
	t.Helper()
	ctx := context.Background()
	head, err := e.ts.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	orders, _, err := e.ts.st.ACMEOrders(ctx, e.acctID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := e.ts.st.ACMEAccount(ctx, e.acctID)
	if err != nil {
		t.Fatal(err)
	}
	s := negState{auditSeq: head.Seq, account: acct}
	for _, o := range orders {
		s.orders = append(s.orders, o.ID+" "+o.Status)
	}
	slices.Sort(s.orders)
	return s
}

func (e *negEnv) unchanged(t *testing.T, before negState) {
	t.Helper()
	after := e.state(t)
	if after.auditSeq != before.auditSeq {
		t.Errorf("audit log grew from %d to %d events", before.auditSeq, after.auditSeq)
	}
	if !slices.Equal(after.orders, before.orders) {
		t.Errorf("orders changed: %v, was %v", after.orders, before.orders)
	}
	if !reflect.DeepEqual(after.account, before.account) {
		t.Errorf("account changed: %+v, was %+v", after.account, before.account)
	}
}

// noAccountFor fails unless no account exists for key's public key.
func (e *negEnv) noAccountFor(t *testing.T, key any) {
	t.Helper()
	thumb := mustThumb(t, pubJWK(t, key))
	if a, err := e.ts.st.ACMEAccountByKey(context.Background(), e.ts.acme.cfg.Name, thumb); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("account for a refused key: %+v, %v; want ErrNotFound", a, err)
	}
}

// wantProblem checks a refusal: the status, a problem document of type typ
// (the suffix after urn:ietf:params:acme:error:) and a fresh Replay-Nonce.
func wantProblem(t *testing.T, resp *http.Response, body []byte, sentNonce string, status int, typ string) Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Errorf("body %q is not a problem document: %v", body, err)
	}
	if p.Type != errPrefix+typ {
		t.Errorf("problem type %q, want %s; detail %q", p.Type, errPrefix+typ, p.Detail)
	}
	if p.Status != resp.StatusCode || p.Detail == "" {
		t.Errorf("problem %+v: want status %d and a detail", p, resp.StatusCode)
	}
	if n := resp.Header.Get("Replay-Nonce"); n == "" || n == sentNonce {
		t.Errorf("Replay-Nonce %q: want a fresh nonce (sent %q)", n, sentNonce)
	}
	return p
}

const negOrderPayload = `{"identifiers":[{"type":"ip","value":"127.0.0.1"}]}`

// TestNegativeJWS sends requests whose JWS, headers or body are wrong, and
// newOrder payloads the server must refuse.
func TestNegativeJWS(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	e := newNegEnv(t, ts)
	// One order exists, so "no change" is checked against something.
	if _, err := e.c.AuthorizeOrder(context.Background(), xacme.IPIDs("127.0.0.1")); err != nil {
		t.Fatal(err)
	}

	otherKey := make([]byte, 32)
	if _, err := rand.Read(otherKey); err != nil {
		t.Fatal(err)
	}
	// The server's own clock: the nonce is refused for its key, not its age.
	otherNonces, err := NewNonces(otherKey, 15*time.Minute, ts.acme.clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreignNonce, err := otherNonces.New()
	if err != nil {
		t.Fatal(err)
	}
	newKey := mustEC(t, elliptic.P256())
	rsa1024 := jwsTestRSA1024()
	stranger := mustEC(t, elliptic.P256())
	hmacKey := []byte(strings.Repeat("k", 32))
	u, err := url.Parse(e.base)
	if err != nil {
		t.Fatal(err)
	}
	evilBase := "https://evil.test" + u.Path

	// body builds the request body for the target URL and a fresh nonce.
	type body func(t *testing.T, url, nonce string) []byte
	kid := func(payload string) body {
		return func(t *testing.T, url, nonce string) []byte { return e.kidJWS(t, url, nonce, []byte(payload)) }
	}
	jwk := func(key any, alg string, extra map[string]any, payload string) body {
		return func(t *testing.T, url, nonce string) []byte {
			h := map[string]any{"nonce": nonce, "url": url}
			for k, v := range extra {
				h[k] = v
			}
			return signed(t, alg, key, true, h, []byte(payload))
		}
	}
	manyIDs := make([]string, maxIdentifiers+1)
	for i := range manyIDs {
		manyIDs[i] = fmt.Sprintf(`{"type":"dns","value":"n%d.example.test"}`, i)
	}
	big := `{"identifiers":[{"type":"dns","value":"a.test"}],"pad":"` + strings.Repeat("A", 1<<20) + `"}`

	for _, tc := range []struct {
		name        string
		target      string // path under the endpoint
		body        body
		contentType string // "" means application/jose+json
		status      int
		typ         string
		newKey      any // a key newAccount must not have registered
	}{
		// Nonces (RFC 8555 §6.5).
		{name: "garbage nonce", target: "/new-order", status: 400, typ: "badNonce",
			body: func(t *testing.T, url, _ string) []byte { return e.kidJWS(t, url, "garbage", []byte(negOrderPayload)) }},
		{name: "nonce from another server key", target: "/new-order", status: 400, typ: "badNonce",
			body: func(t *testing.T, url, _ string) []byte {
				return e.kidJWS(t, url, foreignNonce, []byte(negOrderPayload))
			}},
		{name: "no nonce", target: "/new-account", status: 400, typ: "badNonce", newKey: newKey,
			body: func(t *testing.T, url, _ string) []byte {
				return signed(t, jose.ES256, newKey, true, map[string]any{"url": url}, []byte(`{"termsOfServiceAgreed":true}`))
			}},
		// The url header (RFC 8555 §6.4).
		{name: "url of another host", target: "/new-order", status: 403, typ: "unauthorized",
			body: func(t *testing.T, _, nonce string) []byte {
				return e.kidJWS(t, evilBase+"/new-order", nonce, []byte(negOrderPayload))
			}},
		{name: "url of another resource", target: "/new-order", status: 403, typ: "unauthorized",
			body: func(t *testing.T, _, nonce string) []byte {
				return e.kidJWS(t, e.base+"/new-account", nonce, []byte(negOrderPayload))
			}},
		{name: "http url", target: "/new-account", status: 403, typ: "unauthorized", newKey: newKey,
			body: func(t *testing.T, url, nonce string) []byte {
				return jwk(newKey, jose.ES256, map[string]any{"url": strings.Replace(url, "https:", "http:", 1)}, `{}`)(t, url, nonce)
			}},
		// Algorithms and keys (RFC 8555 §6.2).
		{name: "alg none with jwk", target: "/new-account", status: 400, typ: "badSignatureAlgorithm", newKey: newKey,
			body: func(t *testing.T, url, nonce string) []byte {
				return crafted(t, map[string]any{"alg": "none", "jwk": pubJWK(t, newKey), "nonce": nonce, "url": url}, []byte(`{}`), nil)
			}},
		{name: "alg none with kid", target: "/new-order", status: 400, typ: "badSignatureAlgorithm",
			body: func(t *testing.T, url, nonce string) []byte {
				return crafted(t, map[string]any{"alg": "none", "kid": e.kid, "nonce": nonce, "url": url}, []byte(negOrderPayload), nil)
			}},
		{name: "HS256 with kid", target: "/new-order", status: 400, typ: "badSignatureAlgorithm",
			body: func(t *testing.T, url, nonce string) []byte {
				return signed(t, jose.HS256, hmacKey, false, map[string]any{"kid": e.kid, "nonce": nonce, "url": url}, []byte(negOrderPayload))
			}},
		{name: "HS256 on new-account", target: "/new-account", status: 400, typ: "badSignatureAlgorithm",
			body: func(t *testing.T, url, nonce string) []byte {
				return signed(t, jose.HS256, hmacKey, false, map[string]any{"kid": "k", "nonce": nonce, "url": url}, []byte(`{}`))
			}},
		{name: "RS256 1024-bit account key", target: "/new-account", status: 400, typ: "badPublicKey", newKey: rsa1024,
			body: jwk(rsa1024, jose.RS256, nil, `{"termsOfServiceAgreed":true}`)},
		{name: "jwk and kid on new-account", target: "/new-account", status: 400, typ: "malformed", newKey: newKey,
			body: func(t *testing.T, url, nonce string) []byte {
				return jwk(newKey, jose.ES256, map[string]any{"kid": e.kid}, `{}`)(t, url, nonce)
			}},
		{name: "jwk and kid on new-order", target: "/new-order", status: 400, typ: "malformed",
			body: func(t *testing.T, url, nonce string) []byte {
				return jwk(e.key, jose.ES256, map[string]any{"kid": e.kid}, negOrderPayload)(t, url, nonce)
			}},
		{name: "jwk of the account on new-order", target: "/new-order", status: 400, typ: "malformed",
			body: jwk(e.key, jose.ES256, nil, negOrderPayload)},
		{name: "jwk on the account URL", target: "/acct/" + e.acctID, status: 400, typ: "malformed",
			body: jwk(e.key, jose.ES256, nil, `{"status":"deactivated"}`)},
		{name: "kid of no account", target: "/new-order", status: 400, typ: "accountDoesNotExist",
			body: func(t *testing.T, url, nonce string) []byte {
				return signed(t, jose.ES256, e.key, false, map[string]any{"kid": e.base + "/acct/nosuchaccount", "nonce": nonce, "url": url}, []byte(negOrderPayload))
			}},
		{name: "kid of another server", target: "/new-order", status: 400, typ: "accountDoesNotExist",
			body: func(t *testing.T, url, nonce string) []byte {
				return signed(t, jose.ES256, e.key, false, map[string]any{"kid": evilBase + "/acct/" + e.acctID, "nonce": nonce, "url": url}, []byte(negOrderPayload))
			}},
		{name: "kid signed by another key", target: "/new-order", status: 400, typ: "malformed",
			body: func(t *testing.T, url, nonce string) []byte {
				return signed(t, jose.ES256, stranger, false, map[string]any{"kid": e.kid, "nonce": nonce, "url": url}, []byte(negOrderPayload))
			}},
		// Transport (RFC 8555 §6.2; Config.MaxBodyBytes).
		{name: "Content-Type application/json", target: "/new-order", contentType: "application/json", status: 415, typ: "malformed",
			body: kid(negOrderPayload)},
		{name: "no Content-Type", target: "/new-order", contentType: "-", status: 415, typ: "malformed", body: kid(negOrderPayload)},
		{name: "1 MiB body on new-order", target: "/new-order", status: 413, typ: "malformed", body: kid(big)},
		{name: "1 MiB body on new-account", target: "/new-account", status: 413, typ: "malformed", newKey: newKey,
			body: jwk(newKey, jose.ES256, nil, big)},
		// newOrder payloads (RFC 8555 §7.4, RFC 8738).
		{name: "no identifiers", target: "/new-order", status: 400, typ: "malformed", body: kid(`{"identifiers":[]}`)},
		{name: "identifiers missing", target: "/new-order", status: 400, typ: "malformed", body: kid(`{}`)},
		{name: "POST-as-GET new-order", target: "/new-order", status: 400, typ: "malformed", body: kid(``)},
		{name: "payload not an object", target: "/new-order", status: 400, typ: "malformed", body: kid(`[{"type":"dns","value":"a.test"}]`)},
		{name: "identifier type email", target: "/new-order", status: 400, typ: "unsupportedIdentifier",
			body: kid(`{"identifiers":[{"type":"email","value":"ops@example.test"}]}`)},
		{name: "IP in a dns identifier", target: "/new-order", status: 400, typ: "malformed",
			body: kid(`{"identifiers":[{"type":"dns","value":"127.0.0.1"}]}`)},
		{name: "name in an ip identifier", target: "/new-order", status: 400, typ: "malformed",
			body: kid(`{"identifiers":[{"type":"ip","value":"example.test"}]}`)},
		{name: "bad DNS syntax", target: "/new-order", status: 400, typ: "malformed",
			body: kid(`{"identifiers":[{"type":"dns","value":"exa mple.test"}]}`)},
		{name: "too many identifiers", target: "/new-order", status: 400, typ: "rejectedIdentifier",
			body: kid(`{"identifiers":[` + strings.Join(manyIDs, ",") + `]}`)},
		{name: "notBefore", target: "/new-order", status: 400, typ: "malformed",
			body: kid(`{"identifiers":[{"type":"ip","value":"127.0.0.1"}],"notBefore":"2030-01-01T00:00:00Z"}`)},
		{name: "notAfter", target: "/new-order", status: 400, typ: "malformed",
			body: kid(`{"identifiers":[{"type":"ip","value":"127.0.0.1"}],"notAfter":"2030-01-01T00:00:00Z"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.state(t)
			target := e.base + tc.target
			nonce := e.nonce(t)
			ct := tc.contentType
			switch ct {
			case "":
				ct = "application/jose+json"
			case "-":
				ct = ""
			}
			resp, body := e.post(t, target, ct, tc.body(t, target, nonce))
			p := wantProblem(t, resp, body, nonce, tc.status, tc.typ)
			if tc.typ == "badSignatureAlgorithm" && !slices.Equal(p.Algorithms, accountAlgs()) {
				t.Errorf("algorithms %v, want %v (RFC 8555 §6.2)", p.Algorithms, accountAlgs())
			}
			e.unchanged(t, before)
			if tc.newKey != nil {
				e.noAccountFor(t, tc.newKey)
			}
		})
	}

	// A resource URL asked for with GET instead of POST(-as-GET).
	o, err := e.c.AuthorizeOrder(context.Background(), xacme.IPIDs("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, target string }{
		{"order", o.URI}, {"finalize", o.FinalizeURL}, {"authz", o.AuthzURLs[0]}, {"account", e.kid},
		{"new-order", e.base + "/new-order"}, {"new-account", e.base + "/new-account"},
	} {
		t.Run("GET "+tc.name, func(t *testing.T) {
			before := e.state(t)
			req, err := http.NewRequest(http.MethodGet, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := e.do(t, req)
			status := http.StatusNotFound
			if resp.StatusCode == http.StatusMethodNotAllowed {
				status = resp.StatusCode
			}
			wantProblem(t, resp, body, "", status, "malformed")
			e.unchanged(t, before)
		})
	}
}

// TestNegativeReplayedNonce sends one signed newOrder twice: the second is
// badNonce and creates nothing; the nonce that refusal returns works.
func TestNegativeReplayedNonce(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	e := newNegEnv(t, ts)
	target := e.base + "/new-order"
	nonce := e.nonce(t)
	body := e.kidJWS(t, target, nonce, []byte(negOrderPayload))

	resp, b := e.post(t, target, "application/jose+json", body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("first newOrder: %d %s", resp.StatusCode, b)
	}
	before := e.state(t)
	if len(before.orders) != 1 {
		t.Fatalf("orders %v after one newOrder", before.orders)
	}
	resp, b = e.post(t, target, "application/jose+json", body)
	wantProblem(t, resp, b, nonce, http.StatusBadRequest, "badNonce")
	e.unchanged(t, before)

	// RFC 8555 §6.5: the client retries with the nonce the refusal carried.
	fresh := resp.Header.Get("Replay-Nonce")
	resp, b = e.post(t, target, "application/jose+json", e.kidJWS(t, target, fresh, []byte(negOrderPayload)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("newOrder with the nonce from badNonce: %d %s", resp.StatusCode, b)
	}
	if after := e.state(t); len(after.orders) != 2 || after.auditSeq != before.auditSeq+1 {
		t.Errorf("after the retry: %d orders, audit %d -> %d; want 2 orders and one event", len(after.orders), before.auditSeq, after.auditSeq)
	}
}

// newPolicyTestServer is newTestServer with the given profiles.
func newPolicyTestServer(t *testing.T, profiles map[string]ca.Profile, cfg Config) *testServer {
	t.Helper()
	return newTestServer(t, cfg, testValidation{profiles: profiles})
}

// restrictedProfiles has "restricted": tls-server limited to names under
// allowed.test and addresses in 127.0.0.0/8.
func restrictedProfiles() map[string]ca.Profile {
	profiles := ca.DefaultProfiles()
	p := profiles["tls-server"]
	p.Names = ca.NamePolicy{DNS: ca.NameRules{Allow: []string{"allowed.test"}}, IP: ca.NameRules{Allow: []string{"127.0.0.0/8"}}}
	profiles["restricted"] = p
	return profiles
}

// TestNegativeNewOrderPolicy: names the endpoint's profile refuses are one
// rejectedIdentifier with a subproblem per refused identifier (RFC 8555
// §6.7.1), and no order.
func TestNegativeNewOrderPolicy(t *testing.T) {
	t.Parallel()
	ts := newPolicyTestServer(t, restrictedProfiles(), Config{Profile: "restricted"})
	e := newNegEnv(t, ts)
	before := e.state(t)
	resp, body, nonce := e.postKID(t, e.base+"/new-order", []byte(`{"identifiers":[
		{"type":"dns","value":"www.allowed.test"},
		{"type":"dns","value":"EVIL.test"},
		{"type":"ip","value":"127.0.0.1"},
		{"type":"ip","value":"10.1.2.3"},
		{"type":"dns","value":"allowed.test.evil.test"}]}`))
	p := wantProblem(t, resp, body, nonce, http.StatusBadRequest, "rejectedIdentifier")
	var got []string
	for _, sub := range p.Subproblems {
		if sub.Type != TypeRejectedIdentifier || sub.Identifier == nil || sub.Detail == "" {
			t.Errorf("subproblem %+v: want rejectedIdentifier with an identifier and a detail", sub)
			continue
		}
		got = append(got, sub.Identifier.Type+":"+sub.Identifier.Value)
	}
	slices.Sort(got)
	if want := []string{"dns:allowed.test.evil.test", "dns:evil.test", "ip:10.1.2.3"}; !slices.Equal(got, want) {
		t.Errorf("subproblems name %v, want %v", got, want)
	}
	e.unchanged(t, before)

	// The names the policy allows make an order.
	if _, err := e.c.AuthorizeOrder(context.Background(), []xacme.AuthzID{{Type: "dns", Value: "www.allowed.test"}, {Type: "ip", Value: "127.0.0.1"}}); err != nil {
		t.Errorf("allowed names: %v", err)
	}
}

// negCSR makes a CSR with a fresh P-256 key.
func negCSR(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// readyOrder makes an order for 127.0.0.1 and proves it with http-01.
func (e *negEnv) readyOrder(t *testing.T, h *http01Server) *xacme.Order {
	t.Helper()
	ctx := context.Background()
	o, err := e.c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := e.c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type != "http-01" {
			continue
		}
		resp, err := e.c.HTTP01ChallengeResponse(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		h.set(e.c.HTTP01ChallengePath(ch.Token), resp)
		if _, err := e.c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o, err = e.c.WaitOrder(ctx, o.URI)
	if err != nil || o.Status != xacme.StatusReady {
		t.Fatalf("WaitOrder = %+v, %v; want ready", o, err)
	}
	return o
}

// TestNegativeFinalize: finalize before ready, and with CSRs that are not
// base64url, not CSRs, or not for the order's names; the order stays as it
// was and no certificate is issued, and then the right CSR still works.
func TestNegativeFinalize(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	e := newNegEnv(t, ts)
	ctx := context.Background()
	good := ipCSR(t, "127.0.0.1")
	csr := func(der []byte) []byte { return []byte(`{"csr":"` + b64(der) + `"}`) }
	orderStatus := func(t *testing.T, uri string) string {
		t.Helper()
		o, err := ts.st.ACMEOrder(ctx, lastSegment(uri))
		if err != nil {
			t.Fatal(err)
		}
		if o.CertSerial != "" {
			t.Errorf("order %s has certificate %s", o.ID, o.CertSerial)
		}
		return o.Status
	}

	pending, err := e.c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	before := e.state(t)
	resp, body, nonce := e.postKID(t, pending.FinalizeURL, csr(good))
	wantProblem(t, resp, body, nonce, http.StatusForbidden, "orderNotReady")
	e.unchanged(t, before)
	if s := orderStatus(t, pending.URI); s != "pending" {
		t.Errorf("order is %s after finalize before ready, want pending", s)
	}

	o := e.readyOrder(t, h)
	for _, tc := range []struct {
		name    string
		payload []byte
		status  int
		typ     string
	}{
		{"payload not JSON", []byte(`csr=` + b64(good)), 400, "malformed"},
		{"csr not a string", []byte(`{"csr":12}`), 400, "malformed"},
		{"no csr", []byte(`{}`), 400, "badCSR"},
		{"csr not base64url", []byte(`{"csr":"MIIB+/not*base64url"}`), 400, "badCSR"},
		{"csr padded", []byte(`{"csr":"` + b64(good) + `=="}`), 400, "badCSR"},
		{"garbage csr", csr([]byte("this is not a certificate request")), 400, "badCSR"},
		{"truncated csr", csr(good[:len(good)/2]), 400, "badCSR"},
		{"csr with an extra IP", csr(ipCSR(t, "127.0.0.1", "127.0.0.2")), 400, "badCSR"},
		{"csr with another IP", csr(ipCSR(t, "127.0.0.2")), 400, "badCSR"},
		{"csr with an extra DNS name", csr(negCSR(t, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"evil.test"}})), 400, "badCSR"},
		{"csr with an email address", csr(negCSR(t, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, EmailAddresses: []string{"ops@example.test"}})), 400, "badCSR"},
		{"csr with a URI", csr(negCSR(t, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.test", Path: "/x"}}})), 400, "badCSR"},
		{"csr with no names", csr(negCSR(t, &x509.CertificateRequest{})), 400, "badCSR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.state(t)
			resp, body, nonce := e.postKID(t, o.FinalizeURL, tc.payload)
			wantProblem(t, resp, body, nonce, tc.status, tc.typ)
			e.unchanged(t, before)
			if s := orderStatus(t, o.URI); s != "ready" {
				t.Errorf("order is %s after a refused finalize, want ready", s)
			}
		})
	}

	// The order was left usable: the right CSR gets the certificate, and a
	// second finalize is refused.
	if _, _, err := e.c.CreateOrderCert(ctx, o.FinalizeURL, good, true); err != nil {
		t.Fatalf("finalize with the right CSR after the refusals: %v", err)
	}
	before = e.state(t)
	resp, body, nonce = e.postKID(t, o.FinalizeURL, csr(good))
	wantProblem(t, resp, body, nonce, http.StatusForbidden, "orderNotReady")
	e.unchanged(t, before)
}

// TestNegativeOtherAccount: one account cannot read or change another's
// account, order, authorization or challenge; to it they do not exist.
func TestNegativeOtherAccount(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	victim := newNegEnv(t, ts)
	e := newNegEnv(t, ts)
	ctx := context.Background()
	o, err := victim.c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := victim.c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	authzStatus := func(t *testing.T) string {
		t.Helper()
		a, err := ts.st.ACMEAuthz(ctx, lastSegment(o.AuthzURLs[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range a.Challenges {
			if ch.Status != "pending" {
				t.Errorf("challenge %s is %s, want pending", ch.Type, ch.Status)
			}
		}
		return a.Status
	}

	for _, tc := range []struct {
		name    string
		target  string
		payload string
		status  int
		typ     string
	}{
		{"POST-as-GET order", o.URI, ``, 404, "malformed"},
		{"POST-as-GET authz", o.AuthzURLs[0], ``, 404, "malformed"},
		{"POST-as-GET challenge", az.Challenges[0].URI, ``, 404, "malformed"},
		{"respond to challenge", az.Challenges[0].URI, `{}`, 404, "malformed"},
		{"deactivate authz", o.AuthzURLs[0], `{"status":"deactivated"}`, 404, "malformed"},
		{"finalize order", o.FinalizeURL, `{"csr":"` + b64(ipCSR(t, "127.0.0.1")) + `"}`, 404, "malformed"},
		{"POST-as-GET account", victim.kid, ``, 403, "unauthorized"},
		{"deactivate account", victim.kid, `{"status":"deactivated"}`, 403, "unauthorized"},
		{"order of no one", e.base + "/order/nosuchorder", ``, 404, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mine, theirs := e.state(t), victim.state(t)
			resp, body, nonce := e.postKID(t, tc.target, []byte(tc.payload))
			wantProblem(t, resp, body, nonce, tc.status, tc.typ)
			e.unchanged(t, mine)
			victim.unchanged(t, theirs)
			if s := authzStatus(t); s != "pending" {
				t.Errorf("victim's authorization is %s, want pending", s)
			}
		})
	}

	// A deactivated account can do nothing (RFC 8555 §7.3.6).
	if err := e.c.DeactivateReg(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.state(t)
	resp, body, nonce := e.postKID(t, e.base+"/new-order", []byte(negOrderPayload))
	wantProblem(t, resp, body, nonce, http.StatusForbidden, "unauthorized")
	e.unchanged(t, before)
}

// TestNegativeValidationHangs: an http-01 target that accepts the
// connection and never answers makes the challenge and the authorization
// invalid with a connection problem once ValidationTimeout passes.
func TestNegativeValidationHangs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	release := make(chan struct{})
	hang := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = hang.Serve(ln) }()
	t.Cleanup(func() { hang.Close() })
	t.Cleanup(func() { close(release) }) // runs before hang.Close: no handler is left blocked

	const timeout = 500 * time.Millisecond
	ts := newTestServer(t, Config{ValidationTimeout: timeout}, testValidation{httpPort: ln.Addr().(*net.TCPAddr).Port})
	e := newNegEnv(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	o, err := e.c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := e.c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	var chal *xacme.Challenge
	for _, ch := range az.Challenges {
		if ch.Type == "http-01" {
			chal = ch
		}
	}
	if chal == nil {
		t.Fatalf("no http-01 challenge in %+v", az.Challenges)
	}
	start := time.Now()
	if _, err := e.c.Accept(ctx, chal); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	_, err = e.c.WaitAuthorization(ctx, o.AuthzURLs[0])
	var aerr *xacme.AuthorizationError
	if !errors.As(err, &aerr) {
		t.Fatalf("WaitAuthorization = %v, want an AuthorizationError (invalid)", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the authorization took %s to fail with a %s validation timeout", took, timeout)
	}
	if hits.Load() == 0 {
		t.Error("the validator never reached the hanging target")
	}
	ch, err := e.c.GetChallenge(ctx, chal.URI)
	if err != nil {
		t.Fatal(err)
	}
	var perr *xacme.Error
	if ch.Status != xacme.StatusInvalid || !errors.As(ch.Error, &perr) || perr.ProblemType != TypeConnection {
		t.Errorf("challenge %s, error %v; want invalid with a connection problem", ch.Status, ch.Error)
	} else if !strings.Contains(perr.Detail, "timed out") {
		t.Errorf("problem detail %q does not say it timed out", perr.Detail)
	}
	if got, err := e.c.GetOrder(ctx, o.URI); err != nil || got.Status != xacme.StatusInvalid {
		t.Errorf("order %+v, %v; want invalid", got, err)
	}
}

// TestNegativeUnsignedKeepsNonce: a request that does not verify (signed by
// a key no account has, or naming an account that does not exist) is
// refused before its nonce is spent, so anonymous POSTs write nothing; the
// same nonce then serves the account's own request.
func TestNegativeUnsignedKeepsNonce(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	e := newNegEnv(t, ts)
	target := e.base + "/new-order"
	stranger := mustEC(t, elliptic.P256())
	for name, body := range map[string]func(nonce string) []byte{
		"wrong key for the kid": func(nonce string) []byte {
			return signed(t, jose.ES256, stranger, false, map[string]any{"kid": e.kid, "nonce": nonce, "url": target}, []byte(negOrderPayload))
		},
		"unknown kid": func(nonce string) []byte {
			return signed(t, jose.ES256, stranger, false, map[string]any{"kid": e.base + "/acct/0123456789abcdef", "nonce": nonce, "url": target}, []byte(negOrderPayload))
		},
	} {
		t.Run(name, func(t *testing.T) {
			nonce := e.nonce(t)
			before := e.state(t)
			resp, b := e.post(t, target, "application/jose+json", body(nonce))
			if resp.StatusCode/100 == 2 {
				t.Fatalf("refused request answered %d %s", resp.StatusCode, b)
			}
			e.unchanged(t, before)
			resp, b = e.post(t, target, "application/jose+json", e.kidJWS(t, target, nonce, []byte(negOrderPayload)))
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("the account's request with the nonce a refused request carried: %d %s (the refusal spent it)", resp.StatusCode, b)
			}
		})
	}
}

// TestConcurrentFinalize: 32 finalizes of one ready order, sent at once,
// issue exactly one certificate; every other one is orderNotReady, and the
// order is valid with that certificate.
func TestConcurrentFinalize(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	e := newNegEnv(t, ts)
	// The race is the server's to lose on any round: several orders.
	for round := range 4 {
		concurrentFinalize(t, e, h, round+1)
	}
}

// concurrentFinalize makes one order ready, finalizes it 32 times at once
// and checks one certificate came of it, wantCerts in all.
func concurrentFinalize(t *testing.T, e *negEnv, h *http01Server, wantCerts int) {
	t.Helper()
	ctx := context.Background()
	ts := e.ts
	o := e.readyOrder(t, h)
	payload := []byte(`{"csr":"` + b64(ipCSR(t, "127.0.0.1")) + `"}`)
	const n = 32
	ok := 0
	for _, a := range e.postAtOnce(t, o.FinalizeURL, payload, n) {
		switch {
		case a.err != nil:
			t.Errorf("finalize: %v", a.err)
		case a.status == http.StatusOK:
			ok++
		case a.status != http.StatusForbidden || !bytes.Contains(a.body, []byte("orderNotReady")):
			t.Errorf("a concurrent finalize answered %d %s, want 403 orderNotReady", a.status, a.body)
		}
	}
	certs, _, err := ts.st.Certificates(ctx, store.CertFilter{Channel: ca.ChannelACME, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := ts.st.ACMEOrder(ctx, lastSegment(o.URI))
	if err != nil {
		t.Fatal(err)
	}
	if ok != 1 || len(certs) != wantCerts || stored.Status != "valid" || stored.CertSerial != certs[0].Serial {
		t.Errorf("order %d: %d finalizes succeeded, %d certificates in all, order %s with %q; want 1, %d, valid with the newest",
			wantCerts, ok, len(certs), stored.Status, stored.CertSerial, wantCerts)
	}
}

// TestAbandonedFinalize: a finalize that died after the order turned
// processing (a server killed mid-way) left no certificate, since one
// commits only with its order turning valid. The order says processing
// for a while, then is ready again, and a finalize issues one certificate.
func TestAbandonedFinalize(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	clk := testclock.New()
	ts := newTestServer(t, Config{Clock: clk}, testValidation{httpPort: h.port})
	e := newNegEnv(t, ts)
	ctx := context.Background()
	o := e.readyOrder(t, h)
	id := lastSegment(o.URI)
	ready, err := ts.st.ACMEOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// What the dead finalize wrote, and all it wrote.
	processing := ready
	processing.Status, processing.Updated = "processing", clk.Now().UTC()
	if err := ts.st.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(processing, ready) }); err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"csr":"` + b64(ipCSR(t, "127.0.0.1")) + `"}`)
	status := func() string {
		t.Helper()
		got, err := e.c.GetOrder(ctx, o.URI)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}

	clk.Advance(time.Minute)
	e.c = freshNonces(e.c)
	if s := status(); s != "processing" {
		t.Errorf("a minute after the finalize died the order is %s, want processing", s)
	}
	resp, body, nonce := e.postKID(t, o.FinalizeURL, payload)
	wantProblem(t, resp, body, nonce, http.StatusForbidden, "orderNotReady")

	clk.Advance(staleProcessing)
	e.c = freshNonces(e.c)
	if s := status(); s != "ready" {
		t.Fatalf("past staleProcessing the order is %s, want ready", s)
	}
	resp, body, _ = e.postKID(t, o.FinalizeURL, payload)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("finalize of the recovered order: %d %s", resp.StatusCode, body)
	}
	certs, _, err := ts.st.Certificates(ctx, store.CertFilter{Channel: ca.ChannelACME, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ts.st.ACMEOrder(ctx, id); err != nil || got.Status != "valid" || len(certs) != 1 || got.CertSerial != certs[0].Serial {
		t.Errorf("order %+v (%v) with %d certificates, want valid with its one certificate", got, err, len(certs))
	}
}

// TestDeactivatedDuringValidation: an authorization deactivated while its
// challenge is being validated stays deactivated when the validation
// succeeds: a result never overwrites a state the authorization left.
func TestDeactivatedDuringValidation(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	answers := map[string]string{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // the validator waits here while the client deactivates
		mu.Lock()
		body := answers[r.URL.Path]
		mu.Unlock()
		_, _ = w.Write([]byte(body))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	ts := newTestServer(t, Config{ValidationWait: time.Millisecond}, testValidation{httpPort: ln.Addr().(*net.TCPAddr).Port})
	e := newNegEnv(t, ts)
	ctx := context.Background()
	o, chal, path, keyAuth := e.pendingHTTP01(t)
	mu.Lock()
	answers[path] = keyAuth
	mu.Unlock()
	if _, err := e.c.Accept(ctx, chal); err != nil {
		t.Fatal(err)
	}
	if err := e.c.RevokeAuthorization(ctx, o.AuthzURLs[0]); err != nil {
		t.Fatalf("deactivate during validation: %v", err)
	}
	close(release)
	ts.acme.validations.Wait() // the validation finished and its outcome is recorded
	got, err := ts.st.ACMEAuthz(ctx, lastSegment(o.AuthzURLs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "deactivated" {
		t.Errorf("authorization deactivated during its validation is %s after it, want deactivated", got.Status)
	}
}

// TestConcurrentChallengeStart: of many POSTs that start one challenge at
// once, one starts its validation; the others get the challenge as it is.
func TestConcurrentChallengeStart(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	e := newNegEnv(t, ts)
	ctx := context.Background()
	_, chal, path, keyAuth := e.pendingHTTP01(t)
	h.set(path, keyAuth)
	for _, a := range e.postAtOnce(t, chal.URI, []byte("{}"), 16) {
		if a.err != nil || a.status != http.StatusOK {
			t.Errorf("a concurrent challenge POST answered %d %s (%v)", a.status, a.body, a.err)
		}
	}
	ts.acme.validations.Wait()
	started := 0
	if err := ts.st.ScanAudit(ctx, func(ev audit.Event) error {
		if ev.Action == "acme.challenge.started" && ev.Target == lastSegment(chal.URI) {
			started++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if started != 1 {
		t.Errorf("the challenge was started %d times, want once", started)
	}
}

// http01Of is az's http-01 challenge.
func http01Of(t *testing.T, az *xacme.Authorization) *xacme.Challenge {
	t.Helper()
	for _, c := range az.Challenges {
		if c.Type == "http-01" {
			return c
		}
	}
	t.Fatalf("authorization %s offers no http-01 challenge", az.URI)
	return nil
}

// postAnswer is one response of postAtOnce.
type postAnswer struct {
	status int
	body   []byte
	err    error
}

// postAtOnce signs payload as the account n times, each with its own nonce,
// and POSTs all n to url at the same moment. The nonces are fetched at once
// too, which leaves one warm connection for each POST: the requests then
// race on the server, not on TLS handshakes.
func (e *negEnv) postAtOnce(t *testing.T, url string, payload []byte, n int) []postAnswer {
	t.Helper()
	tr := e.hc.Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	hc := &http.Client{Transport: tr}
	nonces := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := hc.Head(e.base + "/new-nonce"); err == nil {
				r.Body.Close()
				nonces[i] = r.Header.Get("Replay-Nonce")
			}
		}()
	}
	wg.Wait()
	bodies := make([][]byte, n)
	for i, nonce := range nonces {
		if nonce == "" {
			t.Fatal("new-nonce failed")
		}
		bodies[i] = e.kidJWS(t, url, nonce, payload)
	}
	answers := make([]postAnswer, n)
	start := make(chan struct{})
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := hc.Post(url, "application/jose+json", bytes.NewReader(body))
			if err != nil {
				answers[i].err = err
				return
			}
			defer r.Body.Close()
			answers[i].status = r.StatusCode
			answers[i].body, answers[i].err = io.ReadAll(r.Body)
		}()
	}
	close(start)
	wg.Wait()
	return answers
}

// pendingHTTP01 orders 127.0.0.1 and returns the order, its pending http-01
// challenge, and the path and key authorization a responder must serve.
func (e *negEnv) pendingHTTP01(t *testing.T) (*xacme.Order, *xacme.Challenge, string, string) {
	t.Helper()
	ctx := context.Background()
	o, err := e.c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := e.c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	chal := http01Of(t, az)
	keyAuth, err := e.c.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		t.Fatal(err)
	}
	return o, chal, e.c.HTTP01ChallengePath(chal.Token), keyAuth
}
