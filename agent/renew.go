package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
)

// Secret is a credential (an API token) that never prints: it formats and
// logs as REDACTED.
type Secret string

// String returns REDACTED.
func (Secret) String() string { return "REDACTED" }

// GoString returns REDACTED.
func (Secret) GoString() string { return "REDACTED" }

// LogValue returns REDACTED.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalJSON writes "REDACTED": a Secret decodes from JSON but never
// encodes into it (a JSON log handler marshals what it is given).
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"REDACTED"`), nil }

// maxResponse bounds what is read from the server.
const maxResponse = 1 << 20

// newV1Client is the typed /v1 client over hc, with the token (if any).
func newV1Client(server string, token Secret, hc *http.Client) (*client.Client, error) {
	c, err := client.New(client.Config{Server: server, Token: string(token), HTTP: hc, MaxResponseBytes: maxResponse})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return c, nil
}

func newHTTPClient(roots *x509.CertPool, clientCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), now func() time.Time) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots,
			GetClientCertificate: clientCert, Time: now},
		// A fresh handshake for every request, so that the server always
		// sees the pair on disk now, not the one a kept-alive connection
		// authenticated before the last renewal.
		DisableKeepAlives:     true,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// clientCertificate presents the current pair when the server asks (the
// HTTPS listener always does), or none before there is one.
func (a *Agent) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return &tls.Certificate{}, nil
	}
	return a.cur, nil
}

// get sends a GET to an ACME URL (the directory, renewalInfo); /v1 calls
// go through the typed client.
func (a *Agent) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return a.http.Do(req)
}

// responseError describes a failed ACME answer: an RFC 7807 problem's
// detail, else the status.
func responseError(resp *http.Response) string {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error  string `json:"error"`
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(data, &body) == nil && body.Detail != "" {
		kind := body.Error
		if kind == "" {
			kind = body.Type
		}
		return fmt.Sprintf("%s: %s (%s)", resp.Status, body.Detail, kind)
	}
	return resp.Status
}

// renewed is what a successful renewal or fetch wrote.
type renewed struct {
	leaf       *x509.Certificate
	keyChanged bool
}

// renewMTLS asks POST /v1/renew for a successor of cur, presenting cur,
// and writes it; with Rekey it sends a CSR for a new key of the same type.
func (a *Agent) renewMTLS(ctx context.Context, cur *tls.Certificate) (renewed, error) {
	var req api.RenewRequest
	pub := cur.Leaf.PublicKey
	var next crypto.Signer
	if a.cfg.Rekey {
		var err error
		if next, err = newKeyLike(pub); err != nil {
			return renewed{}, fmt.Errorf("rekey: %w", err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, csrFor(cur.Leaf), next)
		if err != nil {
			return renewed{}, fmt.Errorf("rekey: CSR: %w", err)
		}
		req.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
		pub = next.Public()
	}
	// A 200 is the successor issued earlier, answered again because the
	// first answer was lost: it is ours to install (checkChain below proves
	// it certifies our key), and refusing it would leave the agent unable
	// to renew at all, since a certificate is renewed once.
	sr, _, err := a.v1.Renew(ctx, req)
	if err != nil {
		return renewed{}, fmt.Errorf("POST /v1/renew: %w", err)
	}
	chain, err := parseChain([]byte(sr.Chain))
	if err != nil {
		return renewed{}, fmt.Errorf("POST /v1/renew: %w", err)
	}
	if err := a.checkChain(chain, pub); err != nil {
		return renewed{}, fmt.Errorf("POST /v1/renew answered a certificate that cannot be used: %w", err)
	}
	if got, want := nameList(chain[0]), nameList(cur.Leaf); !slices.Equal(got, want) {
		return renewed{}, fmt.Errorf("POST /v1/renew answered a certificate for %v, not %v", got, want)
	}
	var key crypto.PrivateKey = cur.PrivateKey
	if next != nil {
		key = next
	}
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return renewed{}, err
	}
	defer clear(keyPEM)
	if err := a.files.write([]byte(sr.Chain), keyPEM, next != nil); err != nil {
		return renewed{}, err
	}
	return renewed{leaf: chain[0], keyChanged: next != nil}, nil
}

// checkChain checks that chain (leaf first) certifies pub and verifies to
// the trusted roots now.
func (a *Agent) checkChain(chain []*x509.Certificate, pub crypto.PublicKey) error {
	leaf := chain[0]
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return errors.New("it certifies another key")
	}
	inters := x509.NewCertPool()
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	// Any EKU: the pair may serve as a TLS server or client certificate.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.cfg.RootCAs, Intermediates: inters, CurrentTime: a.clk.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("it does not verify: %w", err)
	}
	return nil
}

// parseChain decodes PEM certificates, leaf first.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("chain holds a %s PEM block", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in the chain")
	}
	return out, nil
}

// nameList is c's common name and subject alternative names, sorted.
func nameList(c *x509.Certificate) []string {
	out := []string{"cn:" + c.Subject.CommonName}
	for _, d := range c.DNSNames {
		out = append(out, "dns:"+strings.ToLower(d))
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "ip:"+ip.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	for _, u := range c.URIs {
		out = append(out, "uri:"+u.String())
	}
	slices.Sort(out)
	return out
}

// csrFor asks for c's names.
func csrFor(c *x509.Certificate) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.Subject.CommonName}, DNSNames: c.DNSNames,
		IPAddresses: c.IPAddresses, EmailAddresses: c.EmailAddresses, URIs: c.URIs}
}

// newKeyLike generates a key of pub's type and size.
func newKeyLike(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, k.N.BitLen())
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// pkcs8PEM encodes key as a PKCS#8 PEM block.
func pkcs8PEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the key: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }
