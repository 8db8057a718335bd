package ca

import (
	"context"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

func TestServingCertRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	sc, err := tc.NewServingCert(ctx, []string{"localhost", "127.0.0.1"}, 3*time.Hour)
	if err != nil {
		t.Fatalf("NewServingCert: %v", err)
	}
	first := sc.Leaf()
	if got, _ := sc.GetCertificate(nil); got.Leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("renewed before it was due")
	}
	// Two thirds of 3h (plus the 1m backdate) have passed: the next handshake renews.
	tc.clk.Advance(2 * time.Hour)
	got, err := sc.GetCertificate(nil)
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	if got.Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("serving certificate not renewed at 2/3 of its lifetime")
	}
	if !got.Leaf.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed NotAfter %v not after %v", got.Leaf.NotAfter, first.NotAfter)
	}
	recs, _, err := tc.st.Certificates(ctx, store.CertFilter{Profile: servingProfile, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Errorf("recorded %d serving certificates, want 2 (each is recorded)", len(recs))
	}
}
