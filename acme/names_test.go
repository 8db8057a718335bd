package acme

import (
	"context"
	"errors"
	"testing"

	xacme "golang.org/x/crypto/acme"
)

// TestNewOrderRefusesNumericAndBadALabels (issue 15 items 9, 10): the ACME
// channel refuses DNS identifiers an IPv4 parser reads as an address and
// invalid A-labels, as rejectedIdentifier or malformed, creating nothing.
func TestNewOrderRefusesNumericAndBadALabels(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	c := ts.client(t)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatalf("Register: %v", err)
	}
	for _, name := range []string{"134744072", "8.8.2056", "08.8.8.8", "2130706433", "0x7f.1", "xn--a.example.test"} {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(name))
		var ae *xacme.Error
		if !errors.As(err, &ae) || ae.StatusCode != 400 || (ae.ProblemType != TypeMalformed && ae.ProblemType != TypeRejectedIdentifier) {
			t.Errorf("newOrder(%s) = %+v, %v; want 400 malformed or rejectedIdentifier", name, o, err)
		}
	}
	if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("xn--bcher-kva.example.test")); err != nil {
		t.Errorf("newOrder for a valid A-label: %v", err)
	}
}
