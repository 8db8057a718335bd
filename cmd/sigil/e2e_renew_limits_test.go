package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// e2eSignValidity posts a CSR for key to /v1/sign with a validity.
func e2eSignValidity(t *testing.T, client *http.Client, p *serverProc, token string, key crypto.Signer, validity, name string) api.SignResponse {
	t.Helper()
	body, _ := json.Marshal(api.SignRequest{CSR: string(e2eCSR(t, key, name, name)), Profile: "tls-server", Validity: validity})
	req, _ := http.NewRequest("POST", p.httpsURL+"/v1/sign", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	var out api.SignResponse
	if status, data := e2eDo(t, client, req, &out); status != http.StatusCreated {
		t.Fatalf("sign: %d %s", status, data)
	}
	return out
}

// e2eDo sends req and decodes a 2xx answer into out.
func e2eDo(t *testing.T, client *http.Client, req *http.Request, out any) (int, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
	}
	return resp.StatusCode, data
}

// e2eRenew POSTs /v1/renew presenting the certificate of sr (with key) as
// the TLS client certificate.
func e2eRenew(t *testing.T, c *caDir, p *serverProc, sr api.SignResponse, key crypto.Signer) (int, api.SignResponse, string) {
	t.Helper()
	return e2eRenewCSR(t, c, p, sr, key, nil)
}

// e2eRenewCSR is e2eRenew asking for the key of csrPEM (a rekey) unless it
// is nil.
func e2eRenewCSR(t *testing.T, c *caDir, p *serverProc, sr api.SignResponse, key crypto.Signer, csrPEM []byte) (int, api.SignResponse, string) {
	t.Helper()
	client := c.httpClient(t)
	tr := client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: e2eChainDER(t, sr.Chain), PrivateKey: key}}
	client.Transport = tr
	var body io.Reader
	if csrPEM != nil {
		b, _ := json.Marshal(map[string]string{"csr": string(csrPEM)})
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", p.httpsURL+"/v1/renew", body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var out api.SignResponse
	status, data := e2eDo(t, client, req, &out)
	var apiErr struct{ Error, Detail string }
	_ = json.Unmarshal(data, &apiErr)
	return status, out, apiErr.Detail
}

func e2eChainDER(t *testing.T, chainPEM string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, c := range e2eParseChain(t, []byte(chainPEM)) {
		out = append(out, c.Raw)
	}
	return out
}

// TestRenewLimitsEndToEnd (issue 15, item 6): over mTLS a 10-minute
// certificate renews into a 10-minute one (not the profile's 90 days); a
// certificate renews once (its successor renews next; asked again with the
// same key it answers that successor, for another key it refuses); once the token that requested the chain is
// revoked, no certificate of the chain renews. Each refusal is audited.
func TestRenewLimitsEndToEnd(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	client := c.httpClient(t)
	out, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
	issuer := strings.TrimSpace(out)
	issuerID := strings.SplitN(strings.TrimPrefix(issuer, "sigil_"), "_", 2)[0]

	key := e2eP256(t)
	first := e2eSignValidity(t, client, p, issuer, key, "10m", "short.renew.test")
	life := first.NotAfter.Sub(first.NotBefore)

	status, second, detail := e2eRenew(t, c, p, first, key)
	if status != http.StatusCreated {
		t.Fatalf("first renewal: %d %s", status, detail)
	}
	if got := second.NotAfter.Sub(second.NotBefore); got != life {
		t.Errorf("a certificate living %s renewed into one living %s", life, got)
	}

	// Renewed once: the same certificate asked again, with the same key,
	// gets that one successor back (200), and nothing new is issued.
	status, again, detail := e2eRenew(t, c, p, first, key)
	if status != http.StatusOK || again.Serial != second.Serial {
		t.Errorf("second renewal of the same certificate: %d %q, want 200 with the successor %s", status, detail, second.Serial)
	}
	// For another key it is refused, naming the successor.
	status, _, detail = e2eRenewCSR(t, c, p, first, key, e2eCSR(t, e2eP256(t), "short.renew.test", "short.renew.test"))
	if status != http.StatusConflict || !strings.Contains(detail, "renewed already (by "+second.Serial) {
		t.Errorf("rekey of a certificate renewed already: %d %q, want 409 naming %s", status, detail, second.Serial)
	}
	status, third, detail := e2eRenew(t, c, p, second, key)
	if status != http.StatusCreated || third.NotAfter.Sub(third.NotBefore) != life {
		t.Fatalf("renewal of the successor: %d %s (lives %s)", status, detail, third.NotAfter.Sub(third.NotBefore))
	}

	// The requesting token revoked: neither the chain's last certificate
	// nor another certificate it requested renews.
	otherKey := e2eP256(t)
	other := e2eSignValidity(t, client, p, issuer, otherKey, "10m", "other.renew.test")
	e2eRun(t, e2eAdmin(p, c, "token", "revoke", issuerID)...)
	for name, tc := range map[string]struct {
		sr  api.SignResponse
		key crypto.Signer
	}{"chain": {third, key}, "other": {other, otherKey}} {
		status, _, detail := e2eRenew(t, c, p, tc.sr, tc.key)
		if status != http.StatusForbidden || !strings.Contains(detail, "token "+issuerID+", revoked at") {
			t.Errorf("%s: renewal after the token was revoked: %d %q, want 403 naming the revoked token", name, status, detail)
		}
	}
	var refused []string
	for _, ev := range e2eListAudit(t, p, c, "--action", "request.refused") {
		if ev.Detail["request"] == "renew" {
			refused = append(refused, ev.Actor+" "+ev.Detail["reason"])
		}
	}
	want := []string{"token:" + issuerID + " conflict", "token:" + issuerID + " forbidden", "token:" + issuerID + " forbidden"}
	if strings.Join(refused, ",") != strings.Join(want, ",") {
		t.Errorf("renewal refusals audited %q, want %q", refused, want)
	}
}
