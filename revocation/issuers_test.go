package revocation

import (
	"context"
	"testing"
	"time"
)

// TestIssuersChangeRepublishes: an intermediate rotation, by itself,
// publishes the new issuer's CRL and signs its OCSP responses before
// RotateIntermediate returns, and the destruction of the retired one stops
// both serving it (ca.Authority.OnIssuersChange): no caller re-publishes by
// hand.
func TestIssuersChangeRepublishes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	pub, err := NewPublisher(CRLConfig{Clock: e.clk, Logger: discard()}, e.auth.CRL(), e.st)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Stop)
	r := e.responder(OCSPConfig{Validity: 24 * time.Hour, ResponderValidity: 72 * time.Hour})
	old := e.auth.Intermediate()
	last := e.issue("old.example.com")
	if _, ok := pub.Current(old.ID, 0); !ok {
		t.Fatalf("no CRL for %s after Start", old.ID)
	}

	rot, err := e.auth.Intermediates().RotateIntermediate(ctx, "test", "issuers change test")
	if err != nil {
		t.Fatal(err)
	}
	cur := rot.Current
	if _, ok := pub.Current(cur.ID, 0); !ok {
		t.Errorf("no CRL for the new intermediate %s right after the rotation", cur.ID)
	}
	if r.SignerFor(cur.ID) == nil {
		t.Errorf("no OCSP signer for the new intermediate %s right after the rotation", cur.ID)
	}
	if _, ok := pub.Current(old.ID, 0); !ok {
		t.Errorf("the retired intermediate %s lost its CRL while it has live certificates", old.ID)
	}

	grace := 24 * time.Hour
	e.clk.Advance(last.NotAfter.Sub(e.clk.Now()) + 2*grace)
	gone, err := e.auth.Intermediates().RetireIntermediates(ctx, "test", grace)
	if err != nil || len(gone) != 1 || gone[0] != old.ID {
		t.Fatalf("RetireIntermediates = %v, %v; want [%s]", gone, err, old.ID)
	}
	if _, ok := pub.Current(old.ID, 0); ok {
		t.Errorf("the destroyed intermediate %s still has a CRL served", old.ID)
	}
	if r.SignerFor(old.ID) != nil {
		t.Errorf("the destroyed intermediate %s still has an OCSP signer", old.ID)
	}
	if _, ok := pub.Current(cur.ID, 0); !ok {
		t.Errorf("the active intermediate %s lost its CRL", cur.ID)
	}
}
