package main

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

// e2eBundle GETs name's bundle from p with client (a bearer token if
// token is set) and returns the status and the decoded bundle.
func e2eBundle(t *testing.T, client *http.Client, p *serverProc, name, token string) (int, api.BundleResponse, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", p.httpsURL+"/v1/managed/"+name+"/bundle", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("bundle Cache-Control %q, want no-store", cc)
	}
	var b api.BundleResponse
	if resp.StatusCode == http.StatusOK {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			t.Fatalf("bundle: %v\n%s", err, data)
		}
	}
	return resp.StatusCode, b, data
}

// e2eMTLSClient trusts c's root and presents the bundle's certificate.
func e2eMTLSClient(t *testing.T, c *caDir, b api.BundleResponse) *http.Client {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(b.ChainPEM), []byte(b.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	client := c.httpClient(t)
	tr := client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
	client.Transport = tr
	return client
}

// TestManagedEndToEnd: with sigil serve, an operator creates a managed
// certificate with the CLI, the identity fetches its bundle with a scoped
// token, the managed-renew job (run with sigil jobs run --wait) renews it
// with a new key, and the identity fetches the renewal with its previous
// certificate over mTLS; an admin token gets no key.
func TestManagedEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	// The job's first run, at start, must be over: the certificate below
	// is due at once, and only the run this test starts may renew it.
	e2eWaitIdle(t, p, c, "managed-renew")

	// Valid 1h and due after 1% of it: with the one-minute backdate the
	// renewal point has passed at issuance, so the next run renews.
	out, errOut := e2eRun(t, e2eAdmin(p, c, "managed", "create", "web", "--san", "web.managed.test", "--san", "10.9.8.7",
		"--profile", "tls-server", "--validity", "1h", "--renew-at", "0.01", "--rotate-key", "always", "--format", "json")...)
	var created managed.Cert
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("managed create --format json: %v\n%s", err, out)
	}
	if created.Version != 1 || created.RenewAt != "1/100" || !strings.Contains(errOut, "created managed certificate web") {
		t.Errorf("created %+v (%s)", created, errOut)
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "managed", "create", "web", "--san", "x.managed.test", "--profile", "tls-server")...); !strings.Contains(msg, "exists") {
		t.Errorf("second create: %s", msg)
	}
	if msg := e2eFail(t, e2eAdmin(p, c, "managed", "create", "bad", "--san", "x.managed.test", "--profile", "tls-server", "--renew-at", "3/2")...); !strings.Contains(msg, "renew-at") {
		t.Errorf("bad renew-at: %s", msg)
	}

	table, _ := e2eRun(t, e2eAdmin(p, c, "managed", "list")...)
	if !regexp.MustCompile(`(?m)^NAME\s+STATE\s+PROFILE\s+VERSION\s+SERIAL`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^web\s+active\s+tls-server\s+1\s+`+created.Serial).MatchString(table) {
		t.Errorf("managed list:\n%s", table)
	}
	csvOut, _ := e2eRun(t, e2eAdmin(p, c, "managed", "list", "--format", "csv")...)
	if !strings.HasPrefix(csvOut, "NAME,STATE,PROFILE,VERSION,SERIAL,NOT AFTER,RENEW DUE,ROTATE KEY,LAST ERROR\nweb,active,tls-server,1,") {
		t.Errorf("managed list --format csv:\n%s", csvOut)
	}

	token, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "managed", "--managed", "web")...)
	token = strings.TrimSpace(token)
	status, v1, data := e2eBundle(t, c.httpClient(t), p, "web", token)
	if status != http.StatusOK || v1.Version != 1 || v1.Serial != created.Serial {
		t.Fatalf("bundle with the scoped token: %d %s", status, data)
	}
	chain := e2eParseChain(t, []byte(v1.ChainPEM))
	e2eVerifyChain(t, c, chain, "web.managed.test", x509.ExtKeyUsageServerAuth)
	blk, _ := pem.Decode([]byte(v1.KeyPEM))
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil || !e2eSamePublicKey(chain[0].PublicKey, key.(crypto.Signer).Public()) {
		t.Fatalf("bundle key does not match its certificate (%v)", err)
	}
	if status, _, data := e2eBundle(t, c.httpClient(t), p, "web", c.adminToken); status != http.StatusForbidden {
		t.Errorf("admin token fetched a managed key: %d %s", status, data)
	}

	out, _ = e2eRun(t, e2eAdmin(p, c, "jobs", "run", "managed-renew", "--wait")...)
	m := regexp.MustCompile(`job managed-renew run \d+: ok, (\d+) items`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("jobs run managed-renew --wait: %q", out)
	}
	out, _ = e2eRun(t, e2eAdmin(p, c, "managed", "show", "web", "--format", "json")...)
	var shown managed.Cert
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Version < 2 || len(shown.Versions) != shown.Version || shown.Versions[len(shown.Versions)-1].Serial != v1.Serial ||
		shown.KeyID == created.KeyID {
		t.Fatalf("after the job: %+v", shown)
	}
	text, _ := e2eRun(t, e2eAdmin(p, c, "managed", "show", "web")...)
	if !strings.Contains(text, "rotate key:") || !regexp.MustCompile(`(?m)^1\s+`+v1.Serial+`\s+\S+\s+\S+\s+\S+\s+previous\s+created$`).MatchString(text) {
		t.Errorf("managed show:\n%s", text)
	}

	// The previous certificate, over mTLS, fetches the renewal.
	status, v2, data := e2eBundle(t, e2eMTLSClient(t, c, v1), p, "web", "")
	if status != http.StatusOK || v2.Version != shown.Version || v2.Serial == v1.Serial || v2.KeyPEM == v1.KeyPEM {
		t.Fatalf("bundle with the previous certificate: %d v%d %s", status, v2.Version, data)
	}
	e2eVerifyChain(t, c, e2eParseChain(t, []byte(v2.ChainPEM)), "web.managed.test", x509.ExtKeyUsageServerAuth)
	// So does the current one; no certificate and no token gets nothing.
	if status, b, _ := e2eBundle(t, e2eMTLSClient(t, c, v2), p, "web", ""); status != http.StatusOK || b.Serial != v2.Serial {
		t.Errorf("bundle with the current certificate: %d", status)
	}
	if status, _, _ := e2eBundle(t, c.httpClient(t), p, "web", ""); status != http.StatusUnauthorized {
		t.Errorf("bundle without credentials: %d", status)
	}

	fetched := e2eListAudit(t, p, c, "--action", "managed.bundle.fetched")
	if len(fetched) != 3 || fetched[1].Actor != "cert:"+v1.Serial || fetched[1].Detail["version"] != strconv.Itoa(v2.Version) {
		t.Errorf("managed.bundle.fetched events %+v", fetched)
	}
	if refused := e2eListAudit(t, p, c, "--action", "managed.bundle.refused"); len(refused) != 1 {
		t.Errorf("managed.bundle.refused events %+v", refused)
	}
	if n := len(e2eListAudit(t, p, c, "--action", "managed.renewed")); n < 1 {
		t.Errorf("%d managed.renewed events", n)
	}
	_, keys := e2eListKeys(t, p, c)
	states := map[string]int{}
	for _, k := range keys {
		if k.Purpose == "managed" {
			states[k.State]++
		}
	}
	if states["active"] != 1 || states["retired"] < 1 {
		t.Errorf("managed keys by state %v, want one active and the replaced ones retired", states)
	}

	_, errOut = e2eRun(t, e2eAdmin(p, c, "managed", "delete", "web", "--destroy-keys")...)
	if !strings.Contains(errOut, "deleted managed certificate web") {
		t.Errorf("delete: %s", errOut)
	}
	if status, _, _ := e2eBundle(t, c.httpClient(t), p, "web", token); status != http.StatusNotFound {
		t.Errorf("bundle after delete: %d", status)
	}
	_, keys = e2eListKeys(t, p, c)
	for _, k := range keys {
		if k.Purpose == "managed" && k.State != "destroyed" {
			t.Errorf("key %s is %s after delete --destroy-keys", k.ID, k.State)
		}
	}
	p.stop(t)
	if r := e2eAuditVerify(t, c); r.events == 0 {
		t.Error("audit verify saw no events")
	}
}
