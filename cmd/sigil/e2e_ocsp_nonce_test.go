package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca"
)

// e2eSetConfig replaces one line of c's sigil.yaml, failing if it is absent.
func e2eSetConfig(t testing.TB, c *caDir, from, to string) {
	t.Helper()
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), from) {
		t.Fatalf("sigil.yaml has no %q:\n%s", from, cfg)
	}
	if err := os.WriteFile(c.config, []byte(strings.Replace(string(cfg), from, to, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// e2eMetric returns the value of one sample on the server's /metrics.
func e2eMetric(t testing.TB, p *serverProc, c *caDir, sample string) float64 {
	t.Helper()
	resp, err := c.httpClient(t).Get(p.httpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOCSPServeNonce: with ocsp.nonce on, openssl ocsp's POST (which sends a
// nonce unless -no_nonce) gets its nonce back in a response that verifies;
// without a nonce, and over GET, the pre-signed responses are served.
func TestOCSPServeNonce(t *testing.T) {
	t.Parallel()
	inProcess(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIPPING openssl ocsp nonce checks: openssl is not installed (.ci/run installs it)")
	}
	c := initCA(t)
	e2eSetConfig(t, c, "  nonce: false\n", "  nonce: true\n")
	// Every query below comes from this one client: its own budget must
	// not turn a nonce away here (TestOCSPNonceFlood tests the budget).
	e2eSetConfig(t, c, "  nonce_rate_per_source: 5\n", "  nonce_rate_per_source: 1000\n")
	p := startServe(t, c)
	goodChain := e2eIssueSAN(t, p, c, "tls-server", "nonce.example")
	revokedChain := e2eIssueSAN(t, p, c, "tls-server", "revoked-nonce.example")
	inter := goodChain[1]
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(revokedChain[0]), "--reason", "keyCompromise")...)

	dir := t.TempDir()
	interPEM := e2eWritePEM(t, dir, "inter.pem", inter)
	goodPEM := e2eWritePEM(t, dir, "good.pem", goodChain[0])
	revokedPEM := e2eWritePEM(t, dir, "revoked.pem", revokedChain[0])
	const noNonce = "WARNING: no nonce in response"
	signed := `sigil_ocsp_nonce_responses_total{result="signed"}`
	var want float64
	for _, h := range []string{"-sha1", "-sha256"} {
		for _, tc := range []struct {
			name   string
			target []string
			want   []string
		}{
			{"good", []string{"-cert", goodPEM}, []string{goodPEM + ": good"}},
			{"revoked", []string{"-cert", revokedPEM}, []string{revokedPEM + ": revoked", "Reason: keyCompromise"}},
			{"unknown", []string{"-serial", "0x1234567890abcdef"}, []string{"0x1234567890abcdef: unknown"}},
		} {
			for _, nonce := range [][]string{nil, {"-nonce"}, {"-no_nonce"}} {
				name := tc.name + h + "/default"
				if nonce != nil {
					name = tc.name + h + "/" + nonce[0]
				}
				t.Run(name, func(t *testing.T) {
					args := append([]string{"ocsp", h, "-issuer", interPEM}, tc.target...)
					args = append(args, nonce...)
					args = append(args, "-url", p.httpURL+"/ocsp", "-CAfile", c.root, "-verify_other", interPEM)
					out, err := exec.Command("openssl", args...).CombinedOutput()
					if err != nil {
						t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
					}
					for _, w := range append(tc.want, "Response verify OK") {
						if !strings.Contains(string(out), w) {
							t.Errorf("openssl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
						}
					}
					if strings.Contains(string(out), noNonce) || strings.Contains(strings.ToLower(string(out)), "nonce verify error") {
						t.Errorf("openssl %s: the nonce was not echoed:\n%s", strings.Join(args, " "), out)
					}
				})
				if len(nonce) == 0 || nonce[0] != "-no_nonce" {
					want++
				}
			}
		}
	}
	if got := e2eMetric(t, p, c, signed); got != want {
		t.Errorf("%s = %v, want %v (one per request with a nonce)", signed, got, want)
	}

	// GET stays on the pre-signed path, with its caching headers.
	client := &http.Client{Timeout: 10 * time.Second}
	r, hdr := e2eOCSPGet(t, client, p.httpURL, goodChain[0], inter, crypto.SHA256)
	if r.Status != ocsp.Good || !strings.HasPrefix(hdr.Get("Cache-Control"), "max-age=") {
		t.Errorf("GET: status %d, Cache-Control %q", r.Status, hdr.Get("Cache-Control"))
	}
	// A nonce over 32 octets is a malformedRequest (RFC 8954 §2.1).
	req, err := ocsp.CreateRequest(goodChain[0], inter, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(p.httpURL+"/ocsp", "application/ocsp-request", bytes.NewReader(e2eWithNonce(t, req, 33)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
		t.Errorf("nonce of 33 octets: %x, want malformedRequest", body)
	}
	if got := e2eMetric(t, p, c, signed); got != want {
		t.Errorf("%s = %v after a rejected nonce, want %v", signed, got, want)
	}
}

// e2eWithNonce re-encodes an OCSPRequest with a nonce of n octets in its
// requestExtensions.
func e2eWithNonce(t testing.TB, req []byte, n int) []byte {
	t.Helper()
	var outer struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(req, &outer); err != nil {
		t.Fatal(err)
	}
	nonce, err := asn1.Marshal(bytes.Repeat([]byte{0x5a}, n))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := asn1.Marshal([]pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: nonce}})
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: ext})
	if err != nil {
		t.Fatal(err)
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: append(bytes.Clone(outer.TBS.Bytes), tagged...)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOCSPResponderReusedAcrossRestarts: sigil serve started three times
// signs with one responder certificate, and sigil keys list shows one
// active responder key, unwrapped (audited) at each restart.
func TestOCSPResponderReusedAcrossRestarts(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	client := &http.Client{Timeout: 10 * time.Second}
	var chain []*x509.Certificate
	var responders []string
	var keys []ca.KeyInfo
	for i := range 3 {
		p := startServe(t, c)
		if chain == nil {
			chain = e2eIssueSAN(t, p, c, "tls-server", "restart.example")
		}
		r, _ := e2eOCSPGet(t, client, p.httpURL, chain[0], chain[1], crypto.SHA1)
		if r.Status != ocsp.Good || r.Certificate == nil {
			t.Fatalf("start %d: status %d, responder certificate %v", i+1, r.Status, r.Certificate != nil)
		}
		responders = append(responders, e2eSerial(r.Certificate))
		if i == 2 {
			_, keys = e2eListKeys(t, p, c)
			var active []string
			for _, k := range keys {
				if k.Purpose != ca.KeyPurposeOCSP {
					continue
				}
				if k.State != "active" {
					t.Errorf("ocsp key %s is %s: nothing should have been retired", k.ID, k.State)
				}
				active = append(active, k.ID)
			}
			if len(active) != 1 {
				t.Fatalf("ocsp keys after 3 starts: %v, want one active", active)
			}
			unwrapped := e2eListAudit(t, p, c, "--action", "key.unwrapped", "--target", active[0])
			if len(unwrapped) != 2 {
				t.Errorf("%d key.unwrapped events for %s, want 2 (the second and third starts)", len(unwrapped), active[0])
			}
			issued := 0
			for _, e := range e2eListAudit(t, p, c, "--action", "cert.issued") {
				if e.Detail["profile"] == "sigil-ocsp-responder" {
					issued++
				}
			}
			if issued != 1 {
				t.Errorf("%d responder certificates issued over 3 starts, want 1", issued)
			}
		}
		p.stop(t)
	}
	if responders[0] != responders[1] || responders[1] != responders[2] {
		t.Errorf("responder certificates over 3 starts: %v, want one", responders)
	}
}
