package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"log/slog"
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
	s, err := tc.NewOCSPSigner(ctx, tc.Intermediate().ID, OCSPSignerConfig{Validity: 72 * time.Hour})
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
	s, err := tc.NewOCSPSigner(context.Background(), tc.Intermediate().ID, OCSPSignerConfig{SignWithIssuer: true})
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

// restart is a new Authority on tc's store and keystore, as after a
// restart of the server.
func (tc *testCA) restart(t testing.TB) *Authority {
	t.Helper()
	a, err := New(context.Background(), Config{Profiles: DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: tc.clk,
		Logger: slog.New(slog.DiscardHandler)}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ocspKeys returns the inventory's OCSP responder keys by state.
func ocspKeys(t testing.TB, a *Authority) map[string][]string {
	t.Helper()
	keys, err := a.KeyInventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, k := range keys {
		if k.Purpose == KeyPurposeOCSP {
			out[k.State] = append(out[k.State], k.ID)
		}
	}
	return out
}

func auditCount(t testing.TB, a *Authority, action, target string) int {
	t.Helper()
	evs, _, err := a.AuditEvents(context.Background(), store.AuditFilter{Action: action, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func TestOCSPSignerReusedAcrossRestarts(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	cfg := OCSPSignerConfig{Validity: 72 * time.Hour, RenewMargin: 3 * time.Hour}
	first, err := tc.NewOCSPSigner(ctx, tc.Intermediate().ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		tc.clk.Advance(time.Hour)
		s, err := tc.restart(t).NewOCSPSigner(ctx, tc.Intermediate().ID, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.KeyID() != first.KeyID() || !s.Certificate().Equal(first.Certificate()) {
			t.Fatalf("restart %d: responder key %s certificate %x, want the first one, %s %x", i+1,
				s.KeyID(), s.Certificate().SerialNumber, first.KeyID(), first.Certificate().SerialNumber)
		}
		// The reused key signs verifiable responses, nonce or not.
		der, err := s.Sign(ocsp.Response{Status: ocsp.Good, SerialNumber: big.NewInt(9), ThisUpdate: tc.clk.Now(), NextUpdate: tc.clk.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ocsp.ParseResponse(der, tc.Intermediate().Cert); err != nil {
			t.Errorf("restart %d: response of the reused key: %v", i+1, err)
		}
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyActive]) != 1 || len(got) != 1 {
		t.Errorf("ocsp keys after two restarts: %v, want one active", got)
	}
	if n := auditCount(t, tc.Authority, "key.unwrapped", first.KeyID()); n != 2 {
		t.Errorf("%d key.unwrapped events for the reused key, want 2 (one per restart)", n)
	}
	if n := auditCount(t, tc.Authority, "cert.issued", ""); n == 0 {
		t.Error("no cert.issued events at all")
	}

	// Within the renewal margin of its half-life it is not reused.
	tc.clk.Advance(first.RenewAt().Sub(tc.clk.Now()) - time.Hour)
	s, err := tc.restart(t).NewOCSPSigner(ctx, tc.Intermediate().ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() == first.KeyID() {
		t.Error("a responder certificate an hour before its half-life was reused with a 3h margin")
	}
}

func TestOCSPSignerNotReused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig
		// the old key's state: retired while its certificate is valid,
		// destroyed at once if it was revoked
		oldState string
	}{
		{"shorter validity configured", func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig {
			return OCSPSignerConfig{Validity: 48 * time.Hour}
		}, store.KeyRetired},
		{"responder certificate revoked", func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig {
			if _, err := tc.Revoke(context.Background(), RevokeRequest{Serial: SerialString(s.Certificate().SerialNumber), Reason: ReasonKeyCompromise, Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			return OCSPSignerConfig{Validity: 72 * time.Hour}
		}, store.KeyDestroyed},
		{"responder certificate on hold", func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig {
			if _, err := tc.Revoke(context.Background(), RevokeRequest{Serial: SerialString(s.Certificate().SerialNumber), Reason: ReasonCertificateHold, Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			return OCSPSignerConfig{Validity: 72 * time.Hour}
		}, store.KeyRetired}, // kept: the hold may be released
		{"past half-life", func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig {
			tc.clk.Advance(36 * time.Hour)
			return OCSPSignerConfig{Validity: 72 * time.Hour}
		}, store.KeyRetired},
		{"issuer signs now", func(t *testing.T, tc *testCA, s *OCSPSigner) OCSPSignerConfig {
			return OCSPSignerConfig{SignWithIssuer: true}
		}, store.KeyRetired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
			ctx := context.Background()
			s, err := ca.NewOCSPSigner(ctx, ca.Intermediate().ID, OCSPSignerConfig{Validity: 72 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			cfg := tc.change(t, ca, s)
			next, err := ca.restart(t).NewOCSPSigner(ctx, ca.Intermediate().ID, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if next.KeyID() == s.KeyID() {
				t.Fatal("responder key reused")
			}
			got := ocspKeys(t, ca.Authority)
			wantActive := 1
			if cfg.SignWithIssuer {
				wantActive = 0
			}
			if len(got[store.KeyActive]) != wantActive || len(got[tc.oldState]) != 1 || got[tc.oldState][0] != s.KeyID() {
				t.Errorf("ocsp keys %v, want %d active and %s %s", got, wantActive, s.KeyID(), tc.oldState)
			}
		})
	}
}

// TestOCSPSignerRotation: a new responder at half-life retires the old key
// in the same transaction; once the old certificate has expired the next
// tidy crypto-shreds the old key; every step is audited.
func TestOCSPSignerRotation(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	cfg := OCSPSignerConfig{Validity: 72 * time.Hour}
	old, err := tc.NewOCSPSigner(ctx, tc.Intermediate().ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.clk.Advance(old.RenewAt().Sub(tc.clk.Now()))
	next, err := tc.NewOCSPSigner(ctx, tc.Intermediate().ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if next.KeyID() == old.KeyID() {
		t.Fatal("not rotated at half-life")
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyActive]) != 1 || got[store.KeyActive][0] != next.KeyID() ||
		len(got[store.KeyRetired]) != 1 || got[store.KeyRetired][0] != old.KeyID() {
		t.Fatalf("after rotation: %v, want %s active and %s retired", got, next.KeyID(), old.KeyID())
	}
	evs, _, err := tc.AuditEvents(ctx, store.AuditFilter{Action: "key.retired", Target: old.KeyID()})
	if err != nil || len(evs) != 1 || evs[0].Detail["successor"] != next.KeyID() || evs[0].Detail["purpose"] != KeyPurposeOCSP {
		t.Errorf("key.retired events %+v, %v", evs, err)
	}
	// Retired but not destroyed while its certificate is valid: responses
	// it signed are still served.
	if err := tc.TidyOCSPKeys(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyDestroyed]) != 0 {
		t.Fatalf("destroyed before its certificate expired: %v", got)
	}

	tc.clk.Advance(old.Certificate().NotAfter.Sub(tc.clk.Now()) + time.Second)
	if err := tc.TidyOCSPKeys(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyDestroyed]) != 1 || got[store.KeyDestroyed][0] != old.KeyID() || len(got[store.KeyActive]) != 1 {
		t.Fatalf("after the old certificate expired: %v, want %s destroyed", got, old.KeyID())
	}
	rec, err := tc.st.Key(ctx, old.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	if rec.WrappedDEK != nil || rec.Ciphertext != nil || rec.Destroyed.IsZero() {
		t.Errorf("destroyed key still holds %d+%d bytes of key material (destroyed %v)", len(rec.WrappedDEK), len(rec.Ciphertext), rec.Destroyed)
	}
	if _, err := tc.init.Keystore.Unwrap(ctx, old.KeyID(), "test"); err == nil {
		t.Error("destroyed key unwrapped")
	}
	if n := auditCount(t, tc.Authority, "key.destroyed", old.KeyID()); n != 1 {
		t.Errorf("%d key.destroyed events, want 1", n)
	}
	// Idempotent, and nothing is written when there is nothing to do.
	head, err := tc.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.TidyOCSPKeys(ctx, next); err != nil {
		t.Fatal(err)
	}
	if again, _ := tc.st.AuditHead(ctx); again.Seq != head.Seq {
		t.Errorf("a tidy with nothing to do appended %d events", again.Seq-head.Seq)
	}
}

// TestOCSPSignerPileRetired: the responder keys earlier versions left
// active at every start are retired by the first start that reuses one,
// and destroyed once their certificates expire.
func TestOCSPSignerPileRetired(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	var pile []string
	for range 3 {
		pile = append(pile, legacyOCSPSigner(t, tc, 72*time.Hour))
		tc.clk.Advance(time.Hour)
	}
	s, err := tc.restart(t).NewOCSPSigner(ctx, tc.Intermediate().ID, OCSPSignerConfig{Validity: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != pile[2] {
		t.Errorf("reused %s, want the newest, %s", s.KeyID(), pile[2])
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyActive]) != 1 || len(got[store.KeyRetired]) != 2 {
		t.Errorf("after the first start: %v, want 1 active and 2 retired", got)
	}
	tc.clk.Advance(73 * time.Hour)
	if err := tc.TidyOCSPKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := ocspKeys(t, tc.Authority); len(got[store.KeyDestroyed]) != 2 || len(got[store.KeyActive]) != 1 {
		t.Errorf("after the pile's certificates expired: %v, want 2 destroyed", got)
	}
}

// legacyOCSPSigner records a responder key and certificate as earlier
// versions did at every start: nothing else retired.
func legacyOCSPSigner(t testing.TB, tc *testCA, validity time.Duration) string {
	t.Helper()
	key, keyRec, err := tc.keys.Generate(context.Background(), KeyPurposeOCSP, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	_, rec, err := tc.ocspResponderCert(tc.active.Load(), key.Public(), validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.st.WithTx(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertKey(keyRec); err != nil {
			return err
		}
		return tx.InsertCertificate(&rec)
	}); err != nil {
		t.Fatal(err)
	}
	return keyRec.ID
}

// responseData returns the encoded SingleResponses and the
// responseExtensions of a response's ResponseData, which
// golang.org/x/crypto/ocsp does not expose.
func responseData(t testing.TB, resp *ocsp.Response) ([]byte, []pkix.Extension) {
	t.Helper()
	var rd struct {
		Version     int `asn1:"optional,explicit,tag:0,default:0"`
		ResponderID asn1.RawValue
		ProducedAt  time.Time `asn1:"generalized"`
		Responses   asn1.RawValue
		Extensions  []pkix.Extension `asn1:"optional,explicit,tag:1"`
	}
	if rest, err := asn1.Unmarshal(resp.TBSResponseData, &rd); err != nil || len(rest) > 0 {
		t.Fatalf("ResponseData: %v (%d trailing bytes)", err, len(rest))
	}
	return rd.Responses.FullBytes, rd.Extensions
}

func nonceValue(t testing.TB, n int) []byte {
	t.Helper()
	v, err := asn1.Marshal(bytes.Repeat([]byte{0xa5}, n))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOCSPSignWithNonce(t *testing.T) {
	for _, tt := range []struct {
		name     string
		inter    keystore.Algorithm
		delegate bool
	}{
		{"delegated", keystore.ECDSAP256, true},
		{"issuer p256", keystore.ECDSAP256, false},
		{"issuer rsa", keystore.RSA2048, false},
		{"issuer p384", keystore.ECDSAP384, false},
		// Ed25519 is left out: x/crypto/ocsp cannot verify it, nonce or not.
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCA(t, keystore.ECDSAP256, tt.inter)
			s, err := tc.NewOCSPSigner(context.Background(), tc.Intermediate().ID, OCSPSignerConfig{SignWithIssuer: !tt.delegate})
			if err != nil {
				t.Fatal(err)
			}
			now := tc.clk.Now().UTC().Truncate(time.Second)
			for _, tmpl := range []ocsp.Response{
				{Status: ocsp.Good, SerialNumber: big.NewInt(42), ThisUpdate: now, NextUpdate: now.Add(time.Hour), IssuerHash: crypto.SHA256},
				{Status: ocsp.Revoked, SerialNumber: big.NewInt(0x80), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
					RevokedAt: now.Add(-time.Minute), RevocationReason: ocsp.Superseded},
				{Status: ocsp.Unknown, SerialNumber: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour), IssuerHash: crypto.SHA1},
			} {
				nonce := nonceValue(t, 16)
				tmpl.ProducedAt = now
				der, err := s.SignWithNonce(tmpl, nonce)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ocsp.ParseResponse(der, tc.Intermediate().Cert)
				if err != nil {
					t.Fatalf("status %d: parse: %v", tmpl.Status, err)
				}
				// The same content as the pre-signed response.
				plain, err := s.Sign(tmpl)
				if err != nil {
					t.Fatal(err)
				}
				want, err := ocsp.ParseResponse(plain, tc.Intermediate().Cert)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != want.Status || got.SerialNumber.Cmp(want.SerialNumber) != 0 || !got.ThisUpdate.Equal(want.ThisUpdate) ||
					!got.NextUpdate.Equal(want.NextUpdate) || !got.RevokedAt.Equal(want.RevokedAt) || got.RevocationReason != want.RevocationReason ||
					got.IssuerHash != want.IssuerHash || !bytes.Equal(got.RawResponderName, want.RawResponderName) ||
					got.SignatureAlgorithm != want.SignatureAlgorithm || (got.Certificate == nil) != (want.Certificate == nil) ||
					len(got.Extensions) != 0 || !got.ProducedAt.Equal(now) {
					t.Errorf("nonce response %+v\nwant as pre-signed %+v", got, want)
				}
				// Byte for byte the same SingleResponse.
				single, exts := responseData(t, got)
				wantSingle, wantExts := responseData(t, want)
				if !bytes.Equal(single, wantSingle) {
					t.Errorf("SingleResponse %x\nwant as pre-signed %x", single, wantSingle)
				}
				if len(exts) != 1 || !exts[0].Id.Equal(oidOCSPNonce) || exts[0].Critical || !bytes.Equal(exts[0].Value, nonce) {
					t.Errorf("responseExtensions %+v, want the nonce %x", exts, nonce)
				}
				if len(wantExts) != 0 {
					t.Error("the pre-signed response has responseExtensions")
				}
			}
		})
	}
}

func TestOCSPSignWithNonceRefuses(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	s, err := tc.NewOCSPSigner(context.Background(), tc.Intermediate().ID, OCSPSignerConfig{Validity: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := tc.clk.Now().UTC().Truncate(time.Second)
	good := ocsp.Response{Status: ocsp.Good, SerialNumber: big.NewInt(42), ThisUpdate: now, NextUpdate: now.Add(time.Hour), ProducedAt: now}
	with := func(f func(r *ocsp.Response)) ocsp.Response {
		r := good
		f(&r)
		return r
	}
	for _, tt := range []struct {
		name  string
		tmpl  ocsp.Response
		nonce []byte
	}{
		{"nonce of 33 octets", good, nonceValue(t, 33)},
		{"empty nonce", good, nonceValue(t, 0)},
		{"raw nonce", good, bytes.Repeat([]byte{1}, 16)},
		{"nonce with trailing bytes", good, append(nonceValue(t, 16), 0)},
		{"no nonce", good, nil},
		{"zero serial", with(func(r *ocsp.Response) { r.SerialNumber = big.NewInt(0) }), nonceValue(t, 16)},
		{"nil serial", with(func(r *ocsp.Response) { r.SerialNumber = nil }), nonceValue(t, 16)},
		{"bad status", with(func(r *ocsp.Response) { r.Status = 5 }), nonceValue(t, 16)},
		{"reason 7", with(func(r *ocsp.Response) { r.Status, r.RevokedAt, r.RevocationReason = ocsp.Revoked, now, 7 }), nonceValue(t, 16)},
		{"revoked without time", with(func(r *ocsp.Response) { r.Status = ocsp.Revoked }), nonceValue(t, 16)},
		{"sha384 CertID", with(func(r *ocsp.Response) { r.IssuerHash = crypto.SHA384 }), nonceValue(t, 16)},
		{"nextUpdate before thisUpdate", with(func(r *ocsp.Response) { r.NextUpdate = now.Add(-time.Second) }), nonceValue(t, 16)},
		{"outlives the responder", with(func(r *ocsp.Response) { r.NextUpdate = s.NotAfter().Add(time.Second) }), nonceValue(t, 16)},
		{"produced before the responder", with(func(r *ocsp.Response) { r.ProducedAt = s.Certificate().NotBefore.Add(-time.Second) }), nonceValue(t, 16)},
		{"no producedAt", with(func(r *ocsp.Response) { r.ProducedAt = time.Time{} }), nonceValue(t, 16)},
		{"single extensions", with(func(r *ocsp.Response) {
			r.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNonce, Value: nonceValue(t, 16)}}
		}), nonceValue(t, 16)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			der, err := s.SignWithNonce(tt.tmpl, tt.nonce)
			if !errors.Is(err, Malformed) || der != nil {
				t.Errorf("SignWithNonce = %d bytes, %v; want Malformed", len(der), err)
			}
		})
	}
	if _, err := s.SignWithNonce(good, nonceValue(t, MaxOCSPNonce)); err != nil {
		t.Errorf("nonce of %d octets: %v", MaxOCSPNonce, err)
	}
	if _, err := s.SignWithNonce(good, nonceValue(t, 1)); err != nil {
		t.Errorf("nonce of 1 octet: %v", err)
	}
}
