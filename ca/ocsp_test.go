package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

func TestOCSPSignerDelegated(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	s, err := tc.NewOCSPSigner(ctx, OCSPSignerConfig{Validity: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Certificate()
	if c == nil {
		t.Fatal("no responder certificate")
	}
	if err := c.CheckSignatureFrom(tc.Intermediate().Cert); err != nil {
		t.Errorf("responder certificate not signed by the intermediate: %v", err)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || len(c.UnknownExtKeyUsage) != 0 {
		t.Errorf("EKU = %v %v, want OCSPSigning only", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature", c.KeyUsage)
	}
	if c.IsCA {
		t.Error("responder certificate is a CA")
	}
	var nocheck bool
	for _, e := range c.Extensions {
		if e.Id.Equal(oidOCSPNoCheck) {
			nocheck = bytes.Equal(e.Value, []byte{0x05, 0x00}) && !e.Critical
		}
	}
	if !nocheck {
		t.Error("no non-critical id-pkix-ocsp-nocheck NULL extension")
	}
	if len(c.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, tc.Intermediate().Cert.SubjectKeyId) {
		t.Errorf("SKI %x AKI %x, want SKI and AKI = issuer SKI %x", c.SubjectKeyId, c.AuthorityKeyId, tc.Intermediate().Cert.SubjectKeyId)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != 72*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want 72h plus the 1m backdate", got)
	}
	if want := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2); !s.RenewAt().Equal(want) {
		t.Errorf("RenewAt %v, want %v", s.RenewAt(), want)
	}
	gate, other := gateLintFailures(t, c.Raw)
	if len(gate) > 0 {
		t.Errorf("zlint on the responder certificate: %v", gate)
	}
	if len(other) > 0 {
		t.Logf("zlint non-gating findings: %v", other)
	}
	if err := tc.linter.Lint(c.Raw); err != nil {
		t.Errorf("issuance gate: %v", err)
	}

	// Recorded, its key in the inventory, both audited.
	rec, err := tc.Certificate(ctx, SerialString(c.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Profile != ocspResponderProfile || rec.Channel != ChannelInternal {
		t.Errorf("record profile %q channel %q", rec.Profile, rec.Channel)
	}
	keys, err := tc.KeyInventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, k := range keys {
		if k.ID == s.KeyID() {
			found = k.Purpose == KeyPurposeOCSP && k.State == store.KeyActive
		}
	}
	if !found {
		t.Errorf("responder key %s not in the inventory as an active ocsp key", s.KeyID())
	}
	for _, action := range []string{"key.generated", "cert.issued"} {
		target := s.KeyID()
		if action == "cert.issued" {
			target = rec.Serial
		}
		evs, _, err := tc.AuditEvents(ctx, store.AuditFilter{Action: action, Target: target})
		if err != nil || len(evs) != 1 {
			t.Errorf("audit %s %s: %d events, %v", action, target, len(evs), err)
		}
	}

	// A signed response verifies with the embedded responder certificate.
	der, err := s.Sign(ocsp.Response{Status: ocsp.Good, SerialNumber: big.NewInt(42), ThisUpdate: tc.clk.Now(),
		NextUpdate: tc.clk.Now().Add(time.Hour), IssuerHash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.ParseResponse(der, tc.Intermediate().Cert)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	if resp.Status != ocsp.Good || resp.SerialNumber.Int64() != 42 || resp.Certificate == nil {
		t.Errorf("response %+v", resp)
	}
}

func TestOCSPSignerIssuer(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	s, err := tc.NewOCSPSigner(context.Background(), OCSPSignerConfig{SignWithIssuer: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Certificate() != nil || !s.RenewAt().IsZero() {
		t.Errorf("issuer signer has a responder certificate or a renewal time")
	}
	der, err := s.Sign(ocsp.Response{Status: ocsp.Revoked, SerialNumber: big.NewInt(7), ThisUpdate: tc.clk.Now(),
		NextUpdate: tc.clk.Now().Add(time.Hour), RevokedAt: tc.clk.Now(), RevocationReason: ocsp.KeyCompromise})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.ParseResponse(der, tc.Intermediate().Cert)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.KeyCompromise || resp.Certificate != nil {
		t.Errorf("response %+v", resp)
	}
}
