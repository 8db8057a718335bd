package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// issueIP runs one http-01 order for ip and returns the leaf.
func issueIP(t *testing.T, h *http01Server, c *xacme.Client, ip string) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	order, err := c.AuthorizeOrder(ctx, xacme.IPIDs(ip))
	if err != nil {
		t.Fatal(err)
	}
	az, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range az.Challenges {
		if ch.Type == "http-01" {
			body, _ := c.HTTP01ChallengeResponse(ch.Token)
			h.set(c.HTTP01ChallengePath(ch.Token), body)
			if _, err := c.Accept(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.WaitOrder(ctx, order.URI); err != nil {
		t.Fatal(err)
	}
	chain, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, ipCSR(t, ip), true)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// window is an ARI suggestedWindow.
type window struct{ Start, End time.Time }

// renewalInfo fetches leaf's ARI window, checking the answer's form.
func renewalInfo(t *testing.T, ts *testServer, leaf *x509.Certificate) window {
	t.Helper()
	resp, err := ts.srv.Client().Get(ts.srv.URL + "/acme/renewal-info/" + certID(leaf))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		SuggestedWindow window `json:"suggestedWindow"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("renewal-info: %d, %v", resp.StatusCode, err)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("renewal-info without Retry-After")
	}
	return info.SuggestedWindow
}

// certID is the RFC 9773 §4.1 identifier of a certificate.
func certID(c *x509.Certificate) string {
	serial := c.SerialNumber.Bytes()
	if serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...)
	}
	return base64.RawURLEncoding.EncodeToString(c.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(serial)
}

// postJSON sends a kid-signed POST with a JSON payload.
func postJSON(t *testing.T, ts *testServer, key crypto.Signer, kid, url string, payload any) (*http.Response, []byte) {
	t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return postSigned(t, ts, key, kid, url, body)
}

// TestRenewalInfo: the ARI window sits in the last third of the lifetime,
// and newOrder accepts "replaces" for the account's own certificate only.
func TestRenewalInfo(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	acct, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	leaf := issueIP(t, h, c, "127.0.0.1")

	w := renewalInfo(t, ts, leaf)
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if !w.Start.After(leaf.NotBefore.Add(life/2)) || !w.End.After(w.Start) || !w.End.Before(leaf.NotAfter) {
		t.Errorf("window %v..%v for a certificate valid %v..%v", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
	}
	if resp, err := ts.srv.Client().Get(ts.srv.URL + "/acme/renewal-info/bm90.aWQ"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown certificate: %v %v", resp.StatusCode, err)
	}

	// replaces: accepted for the account's own certificate, recorded on the order.
	newOrderURL := ts.srv.URL + "/acme/new-order"
	r1, body := postJSON(t, ts, c.Key, acct.URI, newOrderURL, map[string]any{
		"identifiers": []map[string]string{{"type": "ip", "value": "127.0.0.1"}}, "replaces": certID(leaf)})
	if r1.StatusCode != http.StatusCreated {
		t.Fatalf("newOrder with replaces: %d %s", r1.StatusCode, body)
	}
	o, err := ts.st.ACMEOrder(ctx, lastSegment(r1.Header.Get("Location")))
	if err != nil || o.Replaces != certID(leaf) {
		t.Errorf("order replaces %q (%v), want %q", o.Replaces, err, certID(leaf))
	}
	// Another account may not claim to replace it.
	other := ts.client(t)
	otherAcct, err := other.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	r2, body := postJSON(t, ts, other.Key, otherAcct.URI, newOrderURL, map[string]any{
		"identifiers": []map[string]string{{"type": "ip", "value": "127.0.0.1"}}, "replaces": certID(leaf)})
	if r2.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "unauthorized") {
		t.Errorf("replacing another account's certificate: %d %s", r2.StatusCode, body)
	}
	if orders, _, _ := ts.st.ACMEOrders(ctx, lastSegment(otherAcct.URI), "", 10); len(orders) != 0 {
		t.Errorf("the refused order was stored")
	}

	// Finalizing the replacing order links the new certificate to the old
	// one in the record; after that, the old one cannot be replaced again.
	var ov struct {
		Status   string `json:"status"`
		Finalize string `json:"finalize"`
	}
	if err := json.Unmarshal(fetchOrder(t, r1, ts, c, acct.URI), &ov); err != nil || ov.Status != "ready" {
		t.Fatalf("replacing order: %+v %v (the authorization should be reused)", ov, err)
	}
	chain, _, err := c.CreateOrderCert(ctx, ov.Finalize, ipCSR(t, "127.0.0.1"), false)
	if err != nil {
		t.Fatalf("finalize replacing order: %v", err)
	}
	renewed, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ts.st.Certificate(ctx, fmt.Sprintf("%x", renewed.SerialNumber))
	if err != nil || rec.Replaces != fmt.Sprintf("%x", leaf.SerialNumber) {
		t.Errorf("renewed record replaces %q (%v), want %x", rec.Replaces, err, leaf.SerialNumber)
	}
	r3, body := postJSON(t, ts, c.Key, acct.URI, newOrderURL, map[string]any{
		"identifiers": []map[string]string{{"type": "ip", "value": "127.0.0.1"}}, "replaces": certID(leaf)})
	if r3.StatusCode != http.StatusConflict || !strings.Contains(string(body), "alreadyReplaced") {
		t.Errorf("replacing a replaced certificate: %d %s", r3.StatusCode, body)
	}
}

// fetchOrder fetches the order at r's Location with POST-as-GET.
func fetchOrder(t *testing.T, r *http.Response, ts *testServer, c *xacme.Client, kid string) []byte {
	t.Helper()
	_, body := postAsGet(t, ts, c.Key, kid, r.Header.Get("Location"))
	return body
}

func TestRenewalWindow(t *testing.T) {
	nb := testclock.Start()
	rec := store.CertRecord{IssuerID: "int-1", NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)}
	day := 24 * time.Hour
	tests := []struct {
		name               string
		rec                func(store.CertRecord) store.CertRecord
		issuer             string
		now                time.Time
		wantStart, wantEnd time.Time
	}{
		{"current issuer", nil, "int-1", nb.Add(day), nb.Add(60 * day), nb.Add(75 * day)},
		{"issuer rotated", nil, "int-2", nb.Add(10 * day), nb.Add(10 * day), nb.Add(10*day + 90*day/12)},
		{"issuer rotated, already in window", nil, "int-2", nb.Add(70 * day), nb.Add(60 * day), nb.Add(75 * day)},
		{"revoked", func(r store.CertRecord) store.CertRecord { r.RevokedAt = nb.Add(day); return r }, "int-1",
			nb.Add(2 * day), nb.Add(2*day - time.Hour), nb.Add(2 * day)},
	}
	for _, tt := range tests {
		r := rec
		if tt.rec != nil {
			r = tt.rec(r)
		}
		start, end := renewalWindow(r, tt.issuer, tt.now)
		if !start.Equal(tt.wantStart) || !end.Equal(tt.wantEnd) {
			t.Errorf("%s: window %v..%v, want %v..%v", tt.name, start, end, tt.wantStart, tt.wantEnd)
		}
	}
}

// TestAfterIntermediateRotation: once the intermediate is rotated out, the
// ARI window of a certificate it issued starts now and ends well before
// its expiry, and downloading that certificate again still gives the chain
// of the intermediate that signed it, not the active one.
func TestAfterIntermediateRotation(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{}, testValidation{httpPort: h.port})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	leaf := issueIP(t, h, c, "127.0.0.1")
	old := ts.auth.Intermediate()
	if _, err := ts.auth.Intermediates().RotateIntermediate(ctx, "test", "test"); err != nil {
		t.Fatal(err)
	}
	if ts.auth.Intermediate().ID == old.ID {
		t.Fatal("no rotation")
	}
	w := renewalInfo(t, ts, leaf)
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if now := ts.acme.clk.Now(); w.Start.After(now.Add(time.Minute)) || w.End.After(now.Add(life/12+time.Minute)) || !w.End.After(w.Start) {
		t.Errorf("window %v..%v after the rotation, want from now to within a twelfth of the lifetime", w.Start, w.End)
	}
	chain, err := c.FetchCert(ctx, ts.srv.URL+"/acme/cert/"+fmt.Sprintf("%x", leaf.SerialNumber), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !bytes.Equal(chain[1], old.Cert.Raw) {
		t.Errorf("downloaded chain of %d certificates; want the leaf and the intermediate that signed it", len(chain))
	}
	// Issuance goes on under the new intermediate.
	next := issueIP(t, h, c, "127.0.0.1")
	if !bytes.Equal(next.AuthorityKeyId, ts.auth.Intermediate().Cert.SubjectKeyId) {
		t.Error("a certificate issued after the rotation is not signed by the new intermediate")
	}
}
