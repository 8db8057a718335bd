package acme

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// TestEAB: an endpoint that requires external account binding refuses a
// plain newAccount, accepts a binding made for it once, records the key's
// requester on the account and its certificates, and refuses a reused, a
// forged, an unknown and another endpoint's binding, changing nothing.
func TestEAB(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	ts := newTestServer(t, Config{RequireEAB: true}, testValidation{httpPort: h.port})
	ctx := context.Background()

	var dir struct {
		Meta struct {
			ExternalAccountRequired bool `json:"externalAccountRequired"`
		} `json:"meta"`
	}
	resp, err := ts.srv.Client().Get(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil || !dir.Meta.ExternalAccountRequired {
		t.Errorf("directory meta does not say externalAccountRequired")
	}

	seq := func() int64 {
		t.Helper()
		head, err := ts.st.AuditHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return head.Seq
	}
	before := seq()
	c := ts.client(t)
	_, err = c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusForbidden, "externalAccountRequired")
	if seq() != before {
		t.Errorf("a refused newAccount wrote to the audit log")
	}

	key, err := ts.acme.CreateEABKey(ctx, "token:admin", "team:payments")
	if err != nil {
		t.Fatalf("CreateEABKey: %v", err)
	}
	if len(key.HMACKey) != 32 || key.Requester != "team:payments" || !strings.HasPrefix(key.KeyID, "eab-") {
		t.Fatalf("EAB key = %s %s (%d-byte key)", key.KeyID, key.Requester, len(key.HMACKey))
	}
	// The key is in the inventory, sealed: nothing in its record is the key.
	rec, err := ts.st.Key(ctx, key.KeyID)
	if err != nil || rec.Algorithm != "hmac-sha256" || strings.Contains(string(rec.Ciphertext), string(key.HMACKey)) {
		t.Fatalf("inventory row %+v, %v", rec, err)
	}

	// Forged: right kid, wrong HMAC key.
	forged := append([]byte(nil), key.HMACKey...)
	forged[0] ^= 1
	_, err = c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: key.KeyID, Key: forged}}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusForbidden, "unauthorized")
	_, err = c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: "eab-unknown", Key: key.HMACKey}}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusForbidden, "unauthorized")
	if got, _ := ts.st.EABKey(ctx, key.KeyID); !got.Used.IsZero() {
		t.Errorf("a forged binding used the key")
	}
	if a, err := ts.st.ACMEAccountByKey(ctx, "", mustThumb(t, pubJWK(t, c.Key))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("account after refused bindings: %+v, %v", a, err)
	}

	acct, err := c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: key.KeyID, Key: key.HMACKey}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatalf("Register with EAB: %v", err)
	}
	stored, err := ts.st.ACMEAccount(ctx, lastSegment(acct.URI))
	if err != nil || stored.EABKeyID != key.KeyID || stored.Requester != "team:payments" {
		t.Fatalf("bound account = %+v, %v", stored, err)
	}
	// Its certificates record the binding's requester.
	leaf := issueIP(t, h, c, "127.0.0.1")
	if cert, err := ts.st.Certificate(ctx, ca.SerialString(leaf.SerialNumber)); err != nil || cert.Requester != "team:payments" {
		t.Errorf("certificate requester %q, %v; want team:payments", cert.Requester, err)
	}

	// The key binds one account only.
	other := ts.client(t)
	_, err = other.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: key.KeyID, Key: key.HMACKey}}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusForbidden, "unauthorized")

	// A key made for another endpoint binds nothing here.
	elsewhere := newTestServer(t, Config{Name: "partners"})
	if _, err := (Endpoints{"partners": elsewhere.acme}).CreateEABKey(ctx, "token:admin", "nope", ""); !errors.Is(err, ca.NotFound) {
		t.Errorf("CreateEABKey on an unknown endpoint = %v, want NotFound", err)
	}
	foreign, err := ts.acme.CreateEABKey(ctx, "token:admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if foreign.Requester != "eab:"+foreign.KeyID {
		t.Errorf("default requester %q", foreign.Requester)
	}
	if err := ts.st.WithTx(ctx, func(tx store.Tx) error {
		return tx.InsertEABKey(store.EABKey{ID: "eab-partners-only", Endpoint: "partners", Requester: "x", Created: rec.Created})
	}); err != nil {
		t.Fatal(err)
	}
	_, err = other.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: "eab-partners-only", Key: key.HMACKey}}, xacme.AcceptTOS)
	wantACMEError(t, err, http.StatusForbidden, "unauthorized")
}

// wantACMEError checks an x/crypto/acme error's status and problem type.
func wantACMEError(t *testing.T, err error, status int, typ string) {
	t.Helper()
	var ae *xacme.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want an ACME %s problem", err, typ)
	}
	if ae.StatusCode != status || ae.ProblemType != "urn:ietf:params:acme:error:"+typ {
		t.Errorf("problem = %d %s (%s), want %d %s", ae.StatusCode, ae.ProblemType, ae.Detail, status, typ)
	}
}
