package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
)

// e2eSignValidity posts a CSR for key to /v1/sign with a validity.
func e2eSignValidity(t *testing.T, hc *http.Client, p *serverProc, token string, key crypto.Signer, validity, name string) api.SignResponse {
	t.Helper()
	// Sign answers 201 Created or an error.
	out, err := e2eV1(t, hc, p, token).Sign(context.Background(), api.SignRequest{CSR: string(e2eCSR(t, key, name, name)), Profile: "tls-server", Validity: validity})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return out
}

// e2eRenew POSTs /v1/renew presenting the certificate of sr (with key) as
// the TLS client certificate.
func e2eRenew(t *testing.T, c *caDir, p *serverProc, sr api.SignResponse, key crypto.Signer) (int, api.SignResponse, string) {
	t.Helper()
	return e2eRenewCSR(t, c, p, sr, key, nil)
}

// e2eRenewCSR is e2eRenew asking for the key of csrPEM (a rekey) unless it
// is nil. It returns the status (201 issued, 200 the successor issued
// earlier, else the error's), the answer and an error's detail.
func e2eRenewCSR(t *testing.T, c *caDir, p *serverProc, sr api.SignResponse, key crypto.Signer, csrPEM []byte) (int, api.SignResponse, string) {
	t.Helper()
	hc := c.httpClient(t)
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: e2eChainDER(t, sr.Chain), PrivateKey: key}}
	hc.Transport = tr
	var req api.RenewRequest
	if csrPEM != nil {
		req.CSR = string(csrPEM)
	}
	out, repeated, err := e2eV1(t, hc, p, "").Renew(context.Background(), req)
	var ae *client.Error
	switch {
	case err == nil && repeated:
		return http.StatusOK, out, ""
	case err == nil:
		return http.StatusCreated, out, ""
	case errors.As(err, &ae):
		return ae.Status, api.SignResponse{}, ae.Detail
	}
	t.Fatal(err)
	return 0, api.SignResponse{}, ""
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
	inProcess(t)
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
