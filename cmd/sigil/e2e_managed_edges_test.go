package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

// e2eManagedToken creates managed certificate name (key rotated at every
// renewal) and a token scoped to it.
func e2eManagedToken(t *testing.T, p *serverProc, c *caDir, name string) (managed.Cert, string) {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(p, c, "managed", "create", name, "--san", name+".managed.test",
		"--profile", "tls-server", "--validity", "24h", "--rotate-key", "always", "--format", "json")...)
	var m managed.Cert
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("managed create --format json: %v\n%s", err, out)
	}
	token, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "managed", "--managed", name)...)
	return m, strings.TrimSpace(token)
}

// e2eBundleMatches reports why a bundle's leaf and key do not belong
// together, or "" when they do.
func e2eBundleMatches(chainPEM, keyPEM string) string {
	cb, _ := pem.Decode([]byte(chainPEM))
	if cb == nil {
		return "no certificate in the chain"
	}
	leaf, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return "leaf: " + err.Error()
	}
	kb, _ := pem.Decode([]byte(keyPEM))
	if kb == nil {
		return "no key"
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return "key: " + err.Error()
	}
	if !e2eSamePublicKey(leaf.PublicKey, key.(crypto.Signer).Public()) {
		return "the key is not the leaf's"
	}
	return ""
}

// TestManagedBundleDuringRenewalEndToEnd (issue 15, item 13): bundles
// fetched while an operator renews the managed certificate (with a new key
// each time) are all delivered, each a whole pair: the leaf and the key
// belong together, never "the key is retired".
func TestManagedBundleDuringRenewalEndToEnd(t *testing.T) {
	skipLoadTestInShort(t)
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	e2eWaitIdle(t, p, c, "managed-renew")
	_, token := e2eManagedToken(t, p, c, "race")
	hc := c.httpClient(t)
	fetcher := e2eV1(t, hc, p, token)

	const renewals, fetchers = 100, 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var fetched int
	var failures []string
	var wg sync.WaitGroup
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// ManagedBundle answers 200 or an error.
				b, err := fetcher.ManagedBundle(ctx, "race")
				var answered *client.Error
				if err != nil && !errors.As(err, &answered) {
					if ctx.Err() == nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
					}
					return
				}
				problem := ""
				if err != nil {
					problem = err.Error()
				} else {
					problem = e2eBundleMatches(b.ChainPEM, b.KeyPEM)
				}
				mu.Lock()
				fetched++
				if problem != "" {
					failures = append(failures, problem)
				}
				mu.Unlock()
			}
		}()
	}
	admin := e2eV1(t, hc, p, c.adminToken)
	for i := range renewals {
		// RenewManaged answers 200 or an error.
		if _, err := admin.RenewManaged(context.Background(), "race"); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d bundles fetched during %d renewals, %d failed", fetched, renewals, len(failures))
	if fetched < renewals {
		t.Errorf("only %d bundles fetched during %d renewals", fetched, renewals)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d bundle fetches during renewals failed; first: %s", len(failures), fetched, failures[0])
	}
}

// TestManagedDeleteDestroyKeysRevokesEndToEnd (issue 15, item 13): `sigil
// managed delete --destroy-keys` revokes, in the same operation, every
// unexpired certificate of the name (the current and the previous one),
// with reason cessationOfOperation, and says so; a plain delete revokes
// nothing.
func TestManagedDeleteDestroyKeysRevokesEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	e2eWaitIdle(t, p, c, "managed-renew")
	v1, _ := e2eManagedToken(t, p, c, "gone")
	out, _ := e2eRun(t, e2eAdmin(p, c, "managed", "renew", "gone", "--format", "json")...)
	var v2 managed.Cert
	if err := json.Unmarshal([]byte(out), &v2); err != nil {
		t.Fatalf("managed renew --format json: %v\n%s", err, out)
	}
	kept, _ := e2eManagedToken(t, p, c, "kept")

	_, errOut := e2eRun(t, e2eAdmin(p, c, "managed", "delete", "kept")...)
	if strings.Contains(errOut, "revoked") {
		t.Errorf("plain delete: %s", errOut)
	}
	_, errOut = e2eRun(t, e2eAdmin(p, c, "managed", "delete", "gone", "--destroy-keys")...)
	if !strings.Contains(errOut, "revoked (cessationOfOperation)") {
		t.Errorf("delete --destroy-keys does not say it revoked: %s", errOut)
	}
	status := map[string]string{}
	for _, cert := range e2eListCerts(t, p, c) {
		status[cert.Serial] = cert.Status + "/" + cert.RevocationReason
	}
	for _, s := range []string{v1.Serial, v2.Serial} {
		if status[s] != "revoked/cessationOfOperation" {
			t.Errorf("certificate %s of the deleted name: %s, want revoked/cessationOfOperation", s, status[s])
		}
	}
	if status[kept.Serial] != "valid/" {
		t.Errorf("certificate of the name deleted without --destroy-keys: %s", status[kept.Serial])
	}
	revoked := e2eListAudit(t, p, c, "--action", "cert.revoked")
	if len(revoked) != 2 {
		t.Errorf("cert.revoked events %+v, want the two of the deleted name", revoked)
	}
	deleted := e2eListAudit(t, p, c, "--action", "managed.deleted")
	if len(deleted) != 2 || deleted[1].Detail["revoked"] == "" {
		t.Errorf("managed.deleted events %+v", deleted)
	}
	help, _ := e2eRun(t, "managed", "delete", "--help")
	if !strings.Contains(help, "cessationOfOperation") {
		t.Errorf("managed delete --help does not say it revokes:\n%s", help)
	}
}
