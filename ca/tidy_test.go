package ca

import (
	"context"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// TestArchiveExpired: certificates expired before the cutoff are archived,
// in batches, and stay in the record; younger ones and the CA's own are not.
func TestArchiveExpired(t *testing.T) {
	c := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	var serials []string
	for _, name := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		iss, err := c.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), name, name), Profile: "tls-server",
			Validity: 24 * time.Hour, Requester: "test", Channel: ChannelAPI})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, iss.Record.Serial)
	}
	if _, err := c.ArchiveExpired(ctx, c.clk.Now().Add(time.Hour), 10); KindOf(err) != Malformed {
		t.Errorf("archiving what has not expired: %v, want Malformed", err)
	}
	c.clk.Advance(100 * 24 * time.Hour)
	young, err := c.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "d.example.com", "d.example.com"),
		Profile: "tls-server", Validity: 24 * time.Hour, Requester: "test", Channel: ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.ArchiveExpired(ctx, c.clk.Now().Add(-90*24*time.Hour), 2)
	if err != nil || n != 3 {
		t.Fatalf("ArchiveExpired = %d, %v; want 3", n, err)
	}
	for _, s := range serials {
		rec, err := c.Certificate(ctx, s)
		if err != nil || rec.Archived.IsZero() || len(rec.DER) == 0 {
			t.Errorf("%s after archiving: %+v, %v", s, rec, err)
		}
	}
	all, _, err := c.Certificates(ctx, store.CertFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if archived := !r.Archived.IsZero(); archived != (r.Serial != young.Record.Serial && r.Channel == ChannelAPI) {
			t.Errorf("%s (%s, %s): archived %v", r.Serial, r.Channel, r.Profile, r.Archived)
		}
	}
}
