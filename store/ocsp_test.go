package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestOCSPResponses(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	r := func(issuer, serial, hash string, this time.Time, der string) OCSPResponse {
		return OCSPResponse{IssuerID: issuer, Serial: serial, Hash: hash, DER: []byte(der), ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}
	}
	t0 := testStart
	mustTx(t, s, func(tx Tx) error {
		return tx.PutOCSPResponses([]OCSPResponse{
			r("int-a", "01", "sha1", t0, "a1"), r("int-a", "01", "sha256", t0, "a256"),
			r("int-a", "02", "sha1", t0, "b1"), r("int-b", "01", "sha1", t0, "other"),
		})
	})
	// A newer response replaces; an older one never does.
	mustTx(t, s, func(tx Tx) error {
		return tx.PutOCSPResponses([]OCSPResponse{r("int-a", "01", "sha1", t0.Add(time.Hour), "a1-new"), r("int-a", "02", "sha1", t0.Add(-time.Hour), "b1-old")})
	})
	got := map[string]string{}
	if err := s.OCSPResponses(ctx, "int-a", t0, func(o OCSPResponse) error {
		got[o.Serial+"/"+o.Hash] = string(o.DER)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"01/sha1": "a1-new", "01/sha256": "a256", "02/sha1": "b1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OCSPResponses = %v, want %v", got, want)
	}
	// Responses past their nextUpdate are not loaded, and purged.
	n := 0
	if err := s.OCSPResponses(ctx, "int-a", t0.Add(24*time.Hour), func(OCSPResponse) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("OCSPResponses after 24h: %d, %v; want only the refreshed one", n, err)
	}
	mustTx(t, s, func(tx Tx) error {
		n, err := tx.PurgeOCSPResponses(t0.Add(25 * time.Hour))
		if n != 3 {
			t.Errorf("purged %d, want 3", n)
		}
		return err
	})
	stop := errors.New("stop")
	if err := s.OCSPResponses(ctx, "int-a", t0, func(OCSPResponse) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn error = %v, want stop", err)
	}
	err := s.WithTx(ctx, func(tx Tx) error { return tx.PutOCSPResponses([]OCSPResponse{{IssuerID: "int-a"}}) })
	if err == nil {
		t.Error("incomplete response stored")
	}
}

func TestCertStatuses(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	const total = certStatusPage*2 + 17
	mustTx(t, s, func(tx Tx) error {
		for i := range total {
			c := testCert("int-a", fmt.Sprintf("%x", i+1))
			if i%10 == 0 {
				c.NotAfter = testStart.Add(-time.Hour) // expired
			}
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		c := testCert("int-b", "int-b-only")
		return tx.InsertCertificate(&c)
	})
	mustTx(t, s, func(tx Tx) error {
		return tx.RevokeCertificate("int-a", "2", testStart.Add(time.Minute), 1, time.Time{})
	})
	var n int
	var last int64
	seen := map[string]bool{}
	err := s.CertStatuses(ctx, "int-a", testStart, func(c CertStatus) error {
		n++
		if c.ID <= last {
			t.Errorf("id %d after %d", c.ID, last)
		}
		last = c.ID
		if seen[c.Serial] {
			t.Errorf("serial %s twice", c.Serial)
		}
		seen[c.Serial] = true
		if c.Serial == "2" && (c.RevokedAt.IsZero() || c.RevokeReason != 1) {
			t.Errorf("serial 2: %+v, want revoked keyCompromise", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := total - (total+9)/10; n != want {
		t.Errorf("CertStatuses saw %d, want %d unexpired", n, want)
	}
	if seen["1"] || seen["int-b-only"] {
		t.Error("expired certificate or another issuer's seen")
	}
}
