package acme

import (
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.step.sm/crypto/jose"
	xacme "golang.org/x/crypto/acme"
)

// postAsGet sends a kid-signed POST-as-GET (RFC 8555 §6.3).
func postAsGet(t *testing.T, ts *testServer, key crypto.Signer, kid, url string) (*http.Response, []byte) {
	t.Helper()
	return postSigned(t, ts, key, kid, url, []byte{})
}

// postSigned sends body as a kid-signed ES256 JWS with a fresh nonce.
func postSigned(t *testing.T, ts *testServer, key crypto.Signer, kid, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	hc := ts.srv.Client()
	head, err := hc.Head(ts.srv.URL + ts.acme.Prefix() + "/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, &jose.SignerOptions{
		ExtraHeaders: map[jose.HeaderKey]any{"nonce": head.Header.Get("Replay-Nonce"), "url": url, "kid": kid}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(url, "application/jose+json", strings.NewReader(sig.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	c := ts.client(t)
	acct, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		o, err := c.AuthorizeOrder(ctx, xacme.IPIDs(ip))
		if err != nil {
			t.Fatal(err)
		}
		want[o.URI] = true
	}
	resp, body := postAsGet(t, ts, c.Key, acct.URI, acct.URI+"/orders")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("orders: %d %s", resp.StatusCode, body)
	}
	var list struct{ Orders []string }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Orders) != len(want) {
		t.Fatalf("orders %v, want %d", list.Orders, len(want))
	}
	for _, u := range list.Orders {
		if !want[u] {
			t.Errorf("unexpected order %s", u)
		}
	}
	// Another account cannot list them.
	other := ts.client(t)
	otherAcct, err := other.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postAsGet(t, ts, other.Key, otherAcct.URI, acct.URI+"/orders"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another account listing orders: %d %s", resp.StatusCode, body)
	}
}
