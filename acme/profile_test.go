package acme

import (
	"context"
	"testing"

	xacme "golang.org/x/crypto/acme"
)

// TestOrderProfiles: the directory advertises the profiles (ACME profiles
// extension), newOrder may pick one, and an unknown one is invalidProfile.
func TestOrderProfiles(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Profiles: map[string]string{"tls-server-client": "server and client auth"}})
	ctx := context.Background()
	c := ts.client(t)
	d, err := c.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Profiles["tls-server"]; !ok {
		t.Errorf("directory profiles %v lack the default tls-server", d.Profiles)
	}
	if d.Profiles["tls-server-client"] != "server and client auth" {
		t.Errorf("directory profiles %v lack tls-server-client", d.Profiles)
	}
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.IPIDs("127.0.0.1"), xacme.WithOrderIssuanceProfile("tls-server-client"))
	if err != nil {
		t.Fatalf("order with a profile: %v", err)
	}
	if o.Profile != "tls-server-client" {
		t.Errorf("order profile %q, want tls-server-client", o.Profile)
	}
	// x/crypto/acme refuses an unadvertised profile itself, so the server's
	// invalidProfile answer is checked at the handler.
	if err := ts.acme.checkProfile("code-signing"); !isProblemType(err, TypeInvalidProfile) {
		t.Errorf("unknown profile = %v, want invalidProfile", err)
	}
}

func isProblemType(err error, typ string) bool {
	p, ok := err.(*Problem)
	return ok && p.Type == typ
}
