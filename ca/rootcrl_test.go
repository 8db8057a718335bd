package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// parseRootCRL parses der, checks it is a v2 CRL signed by the root with
// the root's SKI as AKI, that zlint finds nothing, and returns it.
func parseRootCRL(t *testing.T, tc *testCA, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	root := tc.Root().Cert
	if err := crl.CheckSignatureFrom(root); err != nil {
		t.Errorf("root CRL signature: %v", err)
	}
	if !bytes.Equal(crl.RawIssuer, root.RawSubject) {
		t.Errorf("issuer %s, want %s", crl.Issuer, root.Subject)
	}
	if len(crl.AuthorityKeyId) == 0 || !bytes.Equal(crl.AuthorityKeyId, root.SubjectKeyId) {
		t.Errorf("AKI %x, want the root SKI %x", crl.AuthorityKeyId, root.SubjectKeyId)
	}
	lintRootCRL(t, der)
	return crl
}

// lintRootCRL runs every zlint CRL lint, the CA/Browser Forum's included
// (unlike the intermediate's CRLs, the root's lists no certificateHold):
// configured for a CRL that covers CA certificates, whose nextUpdate may be
// twelve months out.
func lintRootCRL(t *testing.T, der []byte) {
	t.Helper()
	zcrl, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("zcrypto ParseRevocationList: %v", err)
	}
	cfg, err := lint.NewConfigFromString("[e_crl_next_update_invalid]\nSubscriberCRL = false\n")
	if err != nil {
		t.Fatal(err)
	}
	// Every source with CRL lints; a non-empty filter makes a new registry,
	// so the configuration does not touch the global one.
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{
		lint.RFC5280, lint.CABFBaselineRequirements, lint.Community}})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetConfiguration(cfg)
	rs := zlint.LintRevocationListEx(zcrl, reg)
	if _, ok := rs.Results["e_crl_next_update_invalid"]; !ok {
		t.Fatalf("zlint did not run the CA/Browser Forum CRL lints (%d results)", len(rs.Results))
	}
	for name, r := range rs.Results {
		if r.Status == lint.Error || r.Status == lint.Fatal || r.Status == lint.Warn {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
}

func rootCRLEvents(t *testing.T, tc *testCA) []map[string]string {
	t.Helper()
	evs, _, err := tc.st.AuditEvents(context.Background(), store.AuditFilter{Action: audit.ActionCRLPublished, Target: tc.Root().ID + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, e := range evs {
		out = append(out, e.Detail)
	}
	return out
}

func TestInitRootCRL(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP384, keystore.ECDSAP256)
	rec, err := tc.st.CRL(context.Background(), tc.Root().ID, 0)
	if err != nil {
		t.Fatalf("no root CRL stored by Init: %v", err)
	}
	if !bytes.Equal(rec.DER, tc.init.RootCRL.DER) {
		t.Errorf("stored root CRL differs from InitResult.RootCRL")
	}
	crl := parseRootCRL(t, tc, rec.DER)
	now := tc.clk.Now()
	if crl.Number.Int64() != 1 || rec.Number != 1 || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("first root CRL: number %v (record %d), %d entries", crl.Number, rec.Number, len(crl.RevokedCertificateEntries))
	}
	if !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(DefaultRootCRLValidity)) ||
		!rec.ThisUpdate.Equal(crl.ThisUpdate) || !rec.NextUpdate.Equal(crl.NextUpdate) {
		t.Errorf("thisUpdate %v nextUpdate %v (record %v, %v), want %v + 1 year", crl.ThisUpdate, crl.NextUpdate, rec.ThisUpdate, rec.NextUpdate, now)
	}
	// The intermediate's CDP names this CRL.
	if cdp := tc.Intermediate().Cert.CRLDistributionPoints; len(cdp) != 1 || cdp[0] != tc.CRL().CRLURL(tc.Root().ID, 0) {
		t.Errorf("intermediate CDP %v, want [%s]", cdp, tc.CRL().CRLURL(tc.Root().ID, 0))
	}
	if evs := rootCRLEvents(t, tc); len(evs) != 1 || evs[0]["number"] != "1" || evs[0]["entries"] != "0" {
		t.Errorf("crl.published events %v, want one for number 1", evs)
	}
}

func TestInitRootCRLValidity(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{time.Minute, MaxRootCRLValidity + time.Hour} {
		_, err := Init(context.Background(), nil, InitConfig{RootCRLValidity: d, Clock: clockwork.NewFakeClock()})
		if KindOf(err) != Malformed {
			t.Errorf("Init with root CRL validity %s = %v, want Malformed", d, err)
		}
	}
}

// recordingUnwrapper hands out what keys unwraps, or key instead, and
// remembers it.
type recordingUnwrapper struct {
	keys KeyUnwrapper
	key  crypto.Signer // if set, returned instead
	got  []crypto.Signer
	ids  []string
}

func (u *recordingUnwrapper) Unwrap(ctx context.Context, keyID, actor string) (crypto.Signer, error) {
	s, err := u.keys.Unwrap(ctx, keyID, actor)
	if err != nil {
		return nil, err
	}
	if u.key != nil {
		s = u.key
	}
	u.got = append(u.got, s)
	u.ids = append(u.ids, keyID)
	return s, nil
}

func zeroed(t *testing.T, s crypto.Signer) bool {
	t.Helper()
	switch k := s.(type) {
	case *ecdsa.PrivateKey:
		_, err := k.Bytes() // refused for a zero scalar
		return err != nil
	case *rsa.PrivateKey:
		return k.D.Sign() == 0 && k.Primes[0].Sign() == 0
	case ed25519.PrivateKey:
		return bytes.Equal(k, make([]byte, len(k)))
	}
	t.Fatalf("unexpected key type %T", s)
	return false
}

func TestSignRootCRL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP384, keystore.RSA2048, keystore.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			tc := newTestCA(t, alg, keystore.ECDSAP256)
			rootID, inter := tc.Root().ID, tc.Intermediate().Cert
			keys := &recordingUnwrapper{keys: tc.init.Keystore}
			sign := func(validity time.Duration) *RootCRL {
				t.Helper()
				out, err := SignRootCRL(ctx, tc.st, keys, RootCRLConfig{Validity: validity, Actor: "test", Clock: tc.clk})
				if err != nil {
					t.Fatalf("SignRootCRL: %v", err)
				}
				return out
			}

			// Nothing revoked: number 2 (Init signed 1), empty.
			tc.clk.Advance(time.Hour)
			first := sign(0)
			crl := parseRootCRL(t, tc, first.Record.DER)
			now := tc.clk.Now()
			if crl.Number.Int64() != 2 || first.Record.Number != 2 || len(crl.RevokedCertificateEntries) != 0 || len(first.Revoked) != 0 {
				t.Errorf("number %v (record %d), entries %d %v", crl.Number, first.Record.Number, len(crl.RevokedCertificateEntries), first.Revoked)
			}
			if !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(DefaultRootCRLValidity)) {
				t.Errorf("thisUpdate %v nextUpdate %v, want %v + 1 year", crl.ThisUpdate, crl.NextUpdate, now)
			}
			if stored, err := tc.st.CRL(ctx, rootID, 0); err != nil || !bytes.Equal(stored.DER, first.Record.DER) {
				t.Errorf("stored root CRL number %d (%v), want the signed one", stored.Number, err)
			}
			rootKeyID := ""
			recs, err := tc.st.Issuers(ctx)
			for _, r := range recs {
				if r.Kind == "root" {
					rootKeyID = r.KeyID
				}
			}
			if err != nil || rootKeyID == "" {
				t.Fatalf("no root issuer record (%v)", err)
			}
			if len(keys.got) != 1 || keys.ids[0] != rootKeyID || !zeroed(t, keys.got[0]) {
				t.Errorf("unwrapped %v (root key %s); zeroed after: %v", keys.ids, rootKeyID, len(keys.got) == 1 && zeroed(t, keys.got[0]))
			}

			// The intermediate is revoked: listed with its reason and
			// invalidity date. A revoked leaf of the intermediate is not.
			leaf, err := tc.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", "leaf.example"), Profile: "tls-server", Channel: ChannelAPI})
			if err != nil {
				t.Fatal(err)
			}
			tc.clk.Advance(time.Hour)
			invalidity := tc.clk.Now().Add(-30 * time.Minute).UTC().Truncate(time.Second)
			if _, err := tc.Revoke(ctx, RevokeRequest{Serial: SerialString(inter.SerialNumber), Reason: ReasonKeyCompromise,
				InvalidityDate: invalidity, Actor: "test", Channel: ChannelCLI}); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.Revoke(ctx, RevokeRequest{Serial: leaf.Record.Serial, Reason: ReasonSuperseded, Actor: "test", Channel: ChannelCLI}); err != nil {
				t.Fatal(err)
			}
			revokedAt := tc.clk.Now().UTC().Truncate(time.Second)
			tc.clk.Advance(time.Minute)
			second := sign(30 * 24 * time.Hour)
			crl = parseRootCRL(t, tc, second.Record.DER)
			if crl.Number.Int64() != 3 || !slices.Equal(second.Revoked, []string{SerialString(inter.SerialNumber)}) {
				t.Fatalf("number %v, revoked %v, want 3 listing the intermediate %s", crl.Number, second.Revoked, SerialString(inter.SerialNumber))
			}
			if !crl.NextUpdate.Equal(crl.ThisUpdate.Add(30 * 24 * time.Hour)) {
				t.Errorf("nextUpdate %v, want thisUpdate %v + 30 days", crl.NextUpdate, crl.ThisUpdate)
			}
			if len(crl.RevokedCertificateEntries) != 1 {
				t.Fatalf("%d entries, want 1", len(crl.RevokedCertificateEntries))
			}
			e := crl.RevokedCertificateEntries[0]
			if e.SerialNumber.Cmp(inter.SerialNumber) != 0 || e.ReasonCode != ReasonKeyCompromise || !e.RevocationTime.Equal(revokedAt) {
				t.Errorf("entry %x reason %d at %v, want the intermediate, keyCompromise, %v", e.SerialNumber, e.ReasonCode, e.RevocationTime, revokedAt)
			}
			var got time.Time
			if i := slices.IndexFunc(e.Extensions, func(x pkix.Extension) bool { return x.Id.Equal(oidInvalidityDate) }); i < 0 {
				t.Errorf("entry has no invalidity date")
			} else if _, err := asn1.UnmarshalWithParams(e.Extensions[i].Value, &got, "generalized"); err != nil || !got.Equal(invalidity) {
				t.Errorf("invalidity date %v (%v), want %v", got, err, invalidity)
			}

			evs := rootCRLEvents(t, tc)
			if len(evs) != 3 {
				t.Fatalf("crl.published events %v, want Init's and two more", evs)
			}
			for i, want := range []string{"1", "2", "3"} {
				if evs[i]["number"] != want {
					t.Errorf("event %d: number %s, want %s", i, evs[i]["number"], want)
				}
			}
			if evs[2]["entries"] != "1" || evs[2]["next_update"] != crl.NextUpdate.Format(time.RFC3339) || len(evs[2]["sha256"]) != 64 {
				t.Errorf("last event detail %v", evs[2])
			}
			unwraps, _, err := tc.st.AuditEvents(ctx, store.AuditFilter{Action: "key.unwrapped", Target: rootKeyID})
			if err != nil || len(unwraps) != 2 || unwraps[0].Actor != "test" {
				t.Errorf("root key unwraps audited: %d (%v), want 2 by test", len(unwraps), err)
			}
		})
	}
}

// staleCRLStore reports no stored CRL, as if another signer's commit came
// after the read.
type staleCRLStore struct{ *store.SQLite }

func (staleCRLStore) CRLHead(context.Context, string, int) (store.CRLHead, error) {
	return store.CRLHead{}, store.ErrNotFound
}

func TestSignRootCRLRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	cfg := RootCRLConfig{Clock: tc.clk}
	for _, d := range []time.Duration{-time.Hour, time.Minute, MaxRootCRLValidity + time.Second} {
		c := cfg
		c.Validity = d
		if _, err := SignRootCRL(ctx, tc.st, tc.init.Keystore, c); KindOf(err) != Malformed {
			t.Errorf("validity %s: %v, want Malformed", d, err)
		}
	}
	if _, err := SignRootCRL(ctx, tc.st, tc.init.Keystore, RootCRLConfig{}); err == nil {
		t.Error("SignRootCRL without a clock succeeded")
	}

	// Number 1 is taken (Init): a signer that read no CRL is refused at
	// commit, and nothing is audited.
	if _, err := SignRootCRL(ctx, staleCRLStore{tc.st}, tc.init.Keystore, cfg); KindOf(err) != Conflict {
		t.Errorf("stale number: %v, want Conflict", err)
	}

	// A key that is not the root's never yields a CRL.
	other := &recordingUnwrapper{keys: tc.init.Keystore, key: mustKey(t, keystore.ECDSAP256)}
	if _, err := SignRootCRL(ctx, tc.st, other, cfg); KindOf(err) != Internal {
		t.Errorf("wrong key: %v, want Internal", err)
	}
	if len(other.got) != 1 || !zeroed(t, other.got[0]) {
		t.Errorf("the key was not zeroed after a failed signature")
	}

	if rec, err := tc.st.CRL(ctx, tc.Root().ID, 0); err != nil || rec.Number != 1 {
		t.Errorf("stored root CRL number %d (%v), want Init's 1", rec.Number, err)
	}
	if evs := rootCRLEvents(t, tc); len(evs) != 1 {
		t.Errorf("%d crl.published events after refusals, want Init's only", len(evs))
	}

	// Without a root there is nothing to sign for.
	empty := openEmptyStore(t)
	if _, err := SignRootCRL(ctx, empty, tc.init.Keystore, cfg); KindOf(err) != NotFound {
		t.Errorf("no root: %v, want NotFound", err)
	}
	if _, err := SignRootCRL(ctx, tc.st, errUnwrapper{}, cfg); !errors.Is(err, errNoKey) {
		t.Errorf("unwrap failure: %v, want it wrapped", err)
	}
}

var errNoKey = errors.New("no key for you")

type errUnwrapper struct{}

func (errUnwrapper) Unwrap(context.Context, string, string) (crypto.Signer, error) {
	return nil, errNoKey
}

func openEmptyStore(t *testing.T) *store.SQLite {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Path: t.TempDir() + "/empty.db", Clock: testclock.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
