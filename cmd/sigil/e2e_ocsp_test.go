package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"
)

func e2eWritePEM(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return e2eWriteFile(t, dir, name, b.Bytes())
}

// e2eOCSPGet asks over GET, as a relying party would, and parses the answer.
func e2eOCSPGet(t testing.TB, client *http.Client, base string, leaf, issuer *x509.Certificate, h crypto.Hash) (*ocsp.Response, http.Header) {
	t.Helper()
	der, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(base + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ocsp: %d %v", resp.StatusCode, err)
	}
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		t.Fatalf("parse OCSP response: %v", err)
	}
	return r, resp.Header
}

func TestOCSPServe(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	goodChain := e2eIssueSAN(t, p, c, "tls-server", "good.example")
	revokedChain := e2eIssueSAN(t, p, c, "tls-server", "revoked.example")
	inter := goodChain[1]
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(revokedChain[0]), "--reason", "keyCompromise")...)
	client := &http.Client{Timeout: 10 * time.Second}

	var responder *x509.Certificate
	t.Run("GET", func(t *testing.T) {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			r, hdr := e2eOCSPGet(t, client, p.httpURL, goodChain[0], inter, h)
			if r.Status != ocsp.Good {
				t.Errorf("%v good: status %d", h, r.Status)
			}
			if !strings.HasPrefix(hdr.Get("Cache-Control"), "max-age=") || hdr.Get("ETag") == "" || hdr.Get("Expires") == "" || hdr.Get("Last-Modified") == "" {
				t.Errorf("RFC 5019 headers missing: %v", hdr)
			}
			r, _ = e2eOCSPGet(t, client, p.httpURL, revokedChain[0], inter, h)
			if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
				t.Errorf("%v revoked: status %d reason %d", h, r.Status, r.RevocationReason)
			}
			responder = r.Certificate
		}
	})
	if responder == nil {
		t.Fatal("no responder certificate in the responses")
	}
	gate, _ := e2eZlint(t, responder)
	if len(gate) > 0 {
		t.Errorf("zlint on the responder certificate: %v", gate)
	}

	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIPPING openssl ocsp checks: openssl is not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	interPEM := e2eWritePEM(t, dir, "inter.pem", inter)
	respPEM := e2eWritePEM(t, dir, "responder.pem", responder)
	goodPEM := e2eWritePEM(t, dir, "good.pem", goodChain[0])
	revokedPEM := e2eWritePEM(t, dir, "revoked.pem", revokedChain[0])
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
			for _, trust := range [][]string{
				{"-CAfile", c.root, "-verify_other", interPEM},
				{"-CAfile", c.root, "-VAfile", respPEM},
			} {
				t.Run(tc.name+h+trust[2], func(t *testing.T) {
					args := append([]string{"ocsp", h, "-issuer", interPEM}, tc.target...)
					args = append(args, "-url", p.httpURL+"/ocsp")
					args = append(args, trust...)
					out, err := exec.Command("openssl", args...).CombinedOutput()
					if err != nil {
						t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
					}
					for _, w := range append(tc.want, "Response verify OK") {
						if !strings.Contains(string(out), w) {
							t.Errorf("openssl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
						}
					}
				})
			}
		}
	}
	// A request written by openssl, sent over GET by hand (openssl 3 has no -get).
	reqPath := filepath.Join(dir, "req.der")
	if out, err := exec.Command("openssl", "ocsp", "-issuer", interPEM, "-sha256", "-cert", revokedPEM, "-no_nonce", "-reqout", reqPath).CombinedOutput(); err != nil {
		t.Fatalf("openssl -reqout: %v\n%s", err, out)
	}
	reqDER, err := os.ReadFile(reqPath)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(p.httpURL + "/ocsp/" + base64.StdEncoding.EncodeToString(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if r, err := ocsp.ParseResponseForCert(body, revokedChain[0], inter); err != nil || r.Status != ocsp.Revoked {
		t.Errorf("GET of an openssl request: %v %+v", err, r)
	}
}

// TestOCSPUnderWriteLoad: cached GETs keep answering quickly while
// certificates are issued as fast as the store commits them. A child
// process on purpose: its latency bound is the server binary's, not that
// of a server sharing the test process (and -race) with the load.
func TestOCSPUnderWriteLoad(t *testing.T) {
	t.Parallel()
	c := initCA(t)
	p := startServe(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "load.example")
	leaf, inter := chain[0], chain[1]
	der, err := ocsp.CreateRequest(leaf, inter, nil)
	if err != nil {
		t.Fatal(err)
	}
	getURL := p.httpURL + "/ocsp/" + base64.StdEncoding.EncodeToString(der)

	ctx, cancel := context.WithCancel(context.Background())
	var issued atomic.Int64
	var wg sync.WaitGroup
	https := c.httpClient(t)
	csr := e2eCSR(t, e2eP256(t), "w.example", "w.example")
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := e2eSignHTTPS(ctx, https, p.httpsURL, c.adminToken, csr, "tls-server"); err == nil {
					issued.Add(1)
				}
			}
		}()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	var lat []time.Duration
	for i := 0; i < 2000; i++ {
		start := time.Now()
		resp, err := client.Get(getURL)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if r, err := ocsp.ParseResponseForCert(body, leaf, inter); err != nil || r.Status != ocsp.Good {
			t.Fatalf("GET %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("2000 OCSP GETs while %d certificates were issued: p50 %v, p99 %v", issued.Load(), p50, p99)
	if issued.Load() == 0 {
		t.Error("no certificate issued during the load")
	}
	if p99 > 100*time.Millisecond {
		t.Errorf("OCSP p99 %v under write load, want under 100ms", p99)
	}
}

// e2eZlint runs every zlint RFC lint on c and returns the errors and warnings.
func e2eZlint(t testing.TB, c *x509.Certificate) ([]string, error) {
	t.Helper()
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatalf("zcrypto parse: %v", err)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280, lint.RFC3279, lint.RFC5480, lint.RFC6960}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for name, r := range zlint.LintCertificateEx(zc, reg).Results {
		if r.Status == lint.Error || r.Status == lint.Warn || r.Status == lint.Fatal {
			out = append(out, name+" ("+r.Status.String()+"): "+r.Details)
		}
	}
	return out, nil
}
