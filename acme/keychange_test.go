package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/store"
)

// TestKeyChange: after a rollover the new key controls the account and the
// old key controls nothing; a key already in use is refused with 409.
func TestKeyChange(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	c := ts.client(t)
	acct, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:ops@example.test"}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := c.Key
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := c.AccountKeyRollover(ctx, newKey); err != nil {
		t.Fatalf("AccountKeyRollover: %v", err)
	}
	// The client now signs with the new key and reaches the same account.
	got, err := c.GetReg(ctx, "")
	if err != nil || got.URI != acct.URI {
		t.Fatalf("GetReg with the new key = %+v, %v; want %s", got, err, acct.URI)
	}
	old := &xacme.Client{Key: oldKey, DirectoryURL: ts.dir, HTTPClient: ts.srv.Client()}
	if _, err := old.GetReg(ctx, ""); err == nil {
		t.Errorf("the old key still finds the account")
	}

	// Rolling over to a key another account holds is a conflict and changes nothing.
	other := ts.client(t)
	if _, err := other.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	err = c.AccountKeyRollover(ctx, other.Key)
	var e *xacme.Error
	if !errors.As(err, &e) || e.StatusCode != 409 {
		t.Errorf("rollover to a taken key = %v, want 409", err)
	}
	if got, err := c.GetReg(ctx, ""); err != nil || got.URI != acct.URI {
		t.Errorf("after the refused rollover: %+v, %v", got, err)
	}
	events, _, err := ts.st.AuditEvents(ctx, store.AuditFilter{Action: "acme.account.key_changed", Limit: 10})
	if err != nil || len(events) != 1 || events[0].Actor != "acme:"+lastSegment(acct.URI) {
		t.Errorf("key change audit events %+v, %v", events, err)
	}
}
