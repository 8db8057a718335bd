package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/api"
)

// devEABOverlay is the README's example: an EAB-only endpoint with its own
// name policy, laid over the dev defaults.
const devEABOverlay = `acme:
  endpoints:
    partners:
      require_eab: true
      caa: "off"
      names:
        dns:
          allow: [partners.test]
`

// TestDevConfigOverlay: sigil dev --config turns on what needs
// configuration (here an EAB-only named endpoint), and a bad fragment
// stops dev before anything is created.
func TestDevConfigOverlay(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: runs sigil dev")
	}
	t.Parallel()
	tmp := t.TempDir()

	bad := filepath.Join(tmp, "bad.yaml")
	if err := os.WriteFile(bad, []byte("acme:\n  endpointz: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badData := filepath.Join(tmp, "bad-dev")
	_, errOut, err := runSigil(t, nil, "dev", "--data", badData, "--config", bad, "--https-addr", freeAddr(t), "--http-addr", freeAddr(t))
	if err == nil || !strings.Contains(errOut, "--config") || !strings.Contains(errOut, "endpointz") {
		t.Errorf("dev with an unknown key in --config: err %v, stderr %q", err, errOut)
	}
	if _, err := os.Stat(filepath.Join(badData, "sigil.db")); err == nil {
		t.Error("a refused --config left a CA behind")
	}

	overlay := filepath.Join(tmp, "eab.yaml")
	if err := os.WriteFile(overlay, []byte(devEABOverlay), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "dev")
	url, stop := startDev(t, data, "--config", overlay)
	defer stop()
	rootPEM, err := os.ReadFile(filepath.Join(data, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	client := func(endpoint string) *acme.Client {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &acme.Client{Key: key, DirectoryURL: url + "/acme/" + endpoint + "directory", HTTPClient: hc}
	}
	ctx := context.Background()

	if _, err := client("").Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Errorf("the default endpoint stays open: %v", err)
	}
	pc := client("partners/")
	_, err = pc.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	wantProblem(t, err, "externalAccountRequired")

	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := e2eRun(t, "acme", "eab", "create", "--endpoint", "partners", "--format", "json",
		"--server", url, "--ca-file", filepath.Join(data, "root.pem"), "--token", strings.TrimSpace(string(token)))
	var k api.EABKey
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.KeyID == "" {
		t.Fatalf("eab create: %v\n%s", err, out)
	}
	hmacKey, err := base64.RawURLEncoding.DecodeString(k.HMACKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Register(ctx, &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: k.KeyID, Key: hmacKey}}, acme.AcceptTOS); err != nil {
		t.Fatalf("register with EAB on the overlaid endpoint: %v", err)
	}
	// The overlaid name policy holds on that endpoint.
	_, err = pc.AuthorizeOrder(ctx, acme.DomainIDs("www.example.com"))
	wantProblem(t, err, "rejectedIdentifier")
	if _, err := pc.AuthorizeOrder(ctx, acme.DomainIDs("app.partners.test")); err != nil {
		t.Errorf("order inside the endpoint's policy: %v", err)
	}
}
