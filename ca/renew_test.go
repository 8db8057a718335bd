package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// renewCA issues the certificates that renewal tests present.
type renewCA struct{ *revokeCA }

func newRenewCA(t *testing.T) renewCA { return renewCA{newRevokeCA(t)} }

// issueFor issues a tls-server certificate for key with a common name, a DNS
// name and an IP address, requested by requester, and returns it parsed.
func (rc renewCA) issueFor(t *testing.T, key crypto.Signer, requester string) (*x509.Certificate, store.CertRecord) {
	t.Helper()
	csr := csrTemplate(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "app.example.com"},
		DNSNames: []string{"app.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}})
	iss, err := rc.a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server", Requester: requester, Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf, iss.Record
}

// checkRenewed checks a renewal's answer against the certificate it renews.
func checkRenewed(t *testing.T, a *Authority, iss *Issued, old *x509.Certificate, oldRec store.CertRecord, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	r := iss.Record
	if r.Replaces != oldRec.Serial || r.Channel != ChannelRenew || r.Requester != oldRec.Requester || r.Profile != oldRec.Profile ||
		r.IssuerID != a.Intermediate().ID || r.Serial == oldRec.Serial {
		t.Errorf("renewed record %+v, want replaces %s, channel renew, requester %s, profile %s, issuer %s",
			r, oldRec.Serial, oldRec.Requester, oldRec.Profile, a.Intermediate().ID)
	}
	if !slices.Equal(r.SANs, oldRec.SANs) || leaf.Subject.CommonName != old.Subject.CommonName {
		t.Errorf("renewed names %v cn %q, want %v cn %q", r.SANs, leaf.Subject.CommonName, oldRec.SANs, old.Subject.CommonName)
	}
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Error("renewed certificate does not certify the expected key")
	}
	if !bytes.Equal(iss.Chain[1], a.Intermediate().Cert.Raw) {
		t.Error("chain does not end with the active intermediate")
	}
	if !leaf.NotBefore.After(old.NotBefore) {
		t.Errorf("renewed NotBefore %v is not after the old %v", leaf.NotBefore, old.NotBefore)
	}
	return leaf
}

func TestRenew(t *testing.T) {
	t.Parallel()
	rc := newRenewCA(t)
	ctx := context.Background()
	key := mustKey(t, keystore.ECDSAP256)
	old, oldRec := rc.issueFor(t, key, "token:alice")
	rc.clk.Advance(24 * time.Hour)

	t.Run("same key", func(t *testing.T) {
		before := rc.head(t)
		iss, err := rc.a.Renew(ctx, RenewRequest{Certificate: old})
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		leaf := checkRenewed(t, rc.a, iss, old, oldRec, key.Public())
		if want := rc.clk.Now().UTC().Truncate(time.Second).Add(90 * 24 * time.Hour); !leaf.NotAfter.Equal(want) {
			t.Errorf("NotAfter %v, want the profile default %v", leaf.NotAfter, want)
		}
		evs := rc.eventsAfter(t, before)
		if len(evs) != 1 || evs[0].Action != "cert.issued" || evs[0].Actor != "token:alice" || evs[0].Target != iss.Record.Serial ||
			evs[0].Detail["channel"] != ChannelRenew || evs[0].Detail["replaces"] != oldRec.Serial {
			t.Errorf("audit events %+v, want one cert.issued by token:alice on channel renew replacing %s", evs, oldRec.Serial)
		}
		if got := rc.stored(t, iss.Record.Serial); got.Replaces != oldRec.Serial || got.Channel != ChannelRenew {
			t.Errorf("stored record %+v", got)
		}
		// The successor renews in turn; the old certificate, still valid,
		// is renewed once only (issue 15: no fan-out). Asked again with the
		// same key it answers that one successor and issues nothing (the
		// first answer may have been lost); asked for another key it says
		// it was renewed already.
		if _, err := rc.a.Renew(ctx, RenewRequest{Certificate: leaf}); err != nil {
			t.Errorf("renew the renewed certificate: %v", err)
		}
		head := rc.head(t)
		again, err := rc.a.Renew(ctx, RenewRequest{Certificate: old})
		if err != nil || !again.Repeated || again.Record.Serial != iss.Record.Serial || !bytes.Equal(again.Chain[0], iss.Chain[0]) {
			t.Errorf("same-key renewal asked again = %+v, %v; want successor %s repeated", again, err, iss.Record.Serial)
		}
		if evs := rc.eventsAfter(t, head); len(evs) != 0 {
			t.Errorf("a repeated renewal wrote %+v, want nothing", evs)
		}
		_, err = rc.a.Renew(ctx, RenewRequest{Certificate: old, CSR: rekeyCSR(t)})
		checkKind(t, err, Conflict, "was renewed already (by "+iss.Record.Serial)
		if evs := rc.eventsAfter(t, head); len(evs) != 1 {
			t.Errorf("a second renewal wrote %+v, want one request.refused", evs)
		} else {
			checkRenewEvent(t, evs[0], Conflict, "token:alice", oldRec.Serial, true)
		}
	})

	t.Run("rekey", func(t *testing.T) {
		old, oldRec := rc.issueFor(t, key, "token:alice")
		rc.clk.Advance(time.Hour)
		next := mustKey(t, keystore.ECDSAP384)
		csr := csrTemplate(t, next, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "APP.example.com."},
			DNSNames: []string{"www.example.com", "app.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}})
		iss, err := rc.a.Renew(ctx, RenewRequest{Certificate: old, CSR: csr})
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		checkRenewed(t, rc.a, iss, old, oldRec, next.Public())
		if iss.Record.KeyAlgorithm != string(keystore.ECDSAP384) {
			t.Errorf("key algorithm %s, want %s", iss.Record.KeyAlgorithm, keystore.ECDSAP384)
		}
	})
}

// TestRenewKeepsLifetime (issue 15, item 6): a renewal keeps the renewed
// certificate's lifetime, capped by the profile's maximum; a renewal of a
// renewal keeps it too.
func TestRenewKeepsLifetime(t *testing.T) {
	t.Parallel()
	rc := newRenewCA(t)
	ctx := context.Background()
	max := time.Duration(rc.a.cfg.Profiles["tls-server"].MaxValidity)
	for _, tc := range []struct {
		name     string
		validity time.Duration
		want     time.Duration
	}{
		{"30 seconds", 30 * time.Second, 30 * time.Second},
		{"a day", 24 * time.Hour, 24 * time.Hour},
		{"the maximum", max, max},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := mustKey(t, keystore.ECDSAP256)
			csr := newCSR(t, key, "", "life.example.com")
			iss, err := rc.a.Sign(ctx, SignRequest{CSR: csr, Profile: "tls-server", Validity: tc.validity, Requester: "token:alice", Channel: ChannelAPI})
			if err != nil {
				t.Fatal(err)
			}
			cur, _ := x509.ParseCertificate(iss.Chain[0])
			for gen := 1; gen <= 2; gen++ {
				rc.clk.Advance(tc.validity / 2)
				next, err := rc.a.Renew(ctx, RenewRequest{Certificate: cur})
				if err != nil {
					t.Fatalf("renewal %d: %v", gen, err)
				}
				if got := next.Record.NotAfter.Sub(next.Record.Created); got != tc.want {
					t.Errorf("renewal %d lives %s, want %s", gen, got, tc.want)
				}
				cur, _ = x509.ParseCertificate(next.Chain[0])
			}
		})
	}
	// A lifetime above today's maximum (the profile was shortened) is capped.
	rec := store.CertRecord{Created: rc.clk.Now(), NotAfter: rc.clk.Now().Add(2 * max)}
	prof := rc.a.cfg.Profiles["tls-server"]
	if got := renewalValidity(rec, &prof); got != max {
		t.Errorf("renewal validity of a %s certificate: %s, want the profile maximum %s", 2*max, got, max)
	}
}

// rekeyCSR asks for a new key for issueFor's names.
func rekeyCSR(t *testing.T) *x509.CertificateRequest {
	t.Helper()
	return csrTemplate(t, mustKey(t, keystore.ECDSAP256), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "app.example.com"},
		DNSNames: []string{"app.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}})
}

// TestRenewOnceConcurrently: concurrent renewals of one certificate issue
// one successor. Same-key renewals all get that successor; rekeys, each
// for its own key, are refused as Conflict but for the one that issued.
func TestRenewOnceConcurrently(t *testing.T) {
	t.Parallel()
	for _, rekey := range []bool{false, true} {
		t.Run(fmt.Sprintf("rekey=%v", rekey), func(t *testing.T) {
			rc := newRenewCA(t)
			old, oldRec := rc.issueFor(t, mustKey(t, keystore.ECDSAP256), "token:alice")
			const n = 8
			type result struct {
				iss *Issued
				err error
			}
			results := make(chan result, n)
			for range n {
				req := RenewRequest{Certificate: old}
				if rekey {
					req.CSR = rekeyCSR(t)
				}
				go func() {
					iss, err := rc.a.Renew(context.Background(), req)
					results <- result{iss, err}
				}()
			}
			issued, repeated := 0, 0
			serials := map[string]bool{}
			for range n {
				switch r := <-results; {
				case r.err == nil && r.iss.Repeated:
					repeated++
					serials[r.iss.Record.Serial] = true
				case r.err == nil:
					issued++
					serials[r.iss.Record.Serial] = true
				case KindOf(r.err) != Conflict:
					t.Errorf("concurrent renewal: %v, want a Conflict", r.err)
				}
			}
			certs, _, err := rc.st.Certificates(context.Background(), store.CertFilter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			successors := 0
			for _, c := range certs {
				if c.Replaces == oldRec.Serial {
					successors++
				}
			}
			wantRepeated := n - 1
			if rekey {
				wantRepeated = 0
			}
			if issued != 1 || repeated != wantRepeated || len(serials) != 1 || successors != 1 {
				t.Errorf("%d issued, %d repeated, %d serials answered, %d successors recorded; want 1, %d, 1, 1",
					issued, repeated, len(serials), successors, wantRepeated)
			}
		})
	}
}

// TestRenewRefusedAfterTokenRevoked: once the token that requested a
// certificate is revoked, neither it nor any renewal of it renews.
func TestRenewRefusedAfterTokenRevoked(t *testing.T) {
	t.Parallel()
	rc := newRenewCA(t)
	ctx := context.Background()
	_, tok, err := rc.a.Access().CreateToken(ctx, "test", RoleIssuer, []string{"tls-server"}, 0, "renewer")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := rc.issueFor(t, mustKey(t, keystore.ECDSAP256), "token:"+tok.ID)
	iss, err := rc.a.Renew(ctx, RenewRequest{Certificate: first})
	if err != nil {
		t.Fatalf("renew before the token is revoked: %v", err)
	}
	second, _ := x509.ParseCertificate(iss.Chain[0])
	other, _ := rc.issueFor(t, mustKey(t, keystore.ECDSAP256), "token:"+tok.ID)
	if err := rc.a.Access().RevokeToken(ctx, "test", tok.ID); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*x509.Certificate{"renewed": second, "never renewed": other} {
		_, err := rc.a.Renew(ctx, RenewRequest{Certificate: c})
		checkKind(t, err, Forbidden, "was requested with token "+tok.ID+", revoked at")
		if t.Failed() {
			t.Fatalf("%s certificate", name)
		}
	}
}

// forge signs tmpl with the CA's own intermediate key, as only a misused
// or stolen key could.
func forge(t *testing.T, a *Authority, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.active.Load().Cert, pub, a.active.Load().signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// foreignCert is a certificate for the same names from another CA.
func foreignCert(t *testing.T, key crypto.Signer, old *x509.Certificate) *x509.Certificate {
	t.Helper()
	caKey := mustKey(t, keystore.ECDSAP256)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: old.Issuer, NotBefore: old.NotBefore, NotAfter: old.NotAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	tmpl := *old
	tmpl.Raw, tmpl.RawTBSCertificate, tmpl.Signature = nil, nil, nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestRenewRefusals(t *testing.T) {
	t.Parallel()
	rc := newRenewCA(t)
	ctx := context.Background()
	key := mustKey(t, keystore.ECDSAP256)
	old, oldRec := rc.issueFor(t, key, "token:alice")
	sameNames := func(k crypto.Signer) *x509.CertificateRequest {
		return csrTemplate(t, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "app.example.com"},
			DNSNames: []string{"app.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}})
	}
	blocked := mustKey(t, keystore.ECDSAP256)
	if _, err := rc.a.BlockKey(ctx, "token:admin", blocked.Public()); err != nil {
		t.Fatal(err)
	}
	copyOf := func(c *x509.Certificate) *x509.Certificate {
		tmpl := *c
		tmpl.Raw, tmpl.RawTBSCertificate, tmpl.Signature = nil, nil, nil
		return &tmpl
	}
	unrecorded := copyOf(old)
	unrecorded.SerialNumber = big.NewInt(0x5eed)
	altered := copyOf(old)
	altered.NotAfter = old.NotAfter.Add(time.Hour)

	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T) RenewRequest // runs just before the call
		kind   Kind
		detail string
		actor  string // "" : anonymous
		target string // "" : old's serial
	}{
		{"no client certificate", func(*testing.T) RenewRequest { return RenewRequest{} },
			Unauthorized, "no client certificate", "anonymous", "-"},
		{"foreign CA", func(*testing.T) RenewRequest { return RenewRequest{Certificate: foreignCert(t, key, old)} },
			Unauthorized, "not issued by this CA", "anonymous", ""},
		{"our intermediate's own certificate", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: rc.a.Intermediate().Cert}
		}, Unauthorized, "not issued by this CA", "anonymous", SerialString(rc.a.Intermediate().Cert.SerialNumber)},
		{"not recorded", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: forge(t, rc.a, unrecorded, key.Public())}
		}, Unauthorized, "(serial 5eed) is not in this CA's record", "anonymous", "5eed"},
		{"not valid yet", func(*testing.T) RenewRequest {
			early := copyOf(old)
			early.NotBefore = rc.clk.Now().Add(time.Hour)
			return RenewRequest{Certificate: forge(t, rc.a, early, key.Public())}
		}, Unauthorized, "not valid before", "anonymous", ""},
		{"DER differs from the record", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: forge(t, rc.a, altered, key.Public())}
		}, Unauthorized, "differs from the recorded certificate", "anonymous", ""},
		{"rekey with the same key", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: old, CSR: sameNames(key)}
		}, BadCSR, "the CSR's key is the current certificate's key", "token:alice", ""},
		{"rekey with other names", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: old, CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "app.example.com", "app.example.com")}
		}, BadCSR, "a rekey keeps the certificate's names", "token:alice", ""},
		{"rekey with another common name", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: old, CSR: csrTemplate(t, mustKey(t, keystore.ECDSAP256), &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "www.example.com"}, DNSNames: []string{"app.example.com", "www.example.com"},
				IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}})}
		}, BadCSR, "cn:www.example.com", "token:alice", ""},
		{"rekey to a blocked key", func(*testing.T) RenewRequest {
			return RenewRequest{Certificate: old, CSR: sameNames(blocked)}
		}, BadCSR, "the CSR's public key is blocked", "token:alice", ""},
		{"rekey with a key of an unknown algorithm", func(*testing.T) RenewRequest {
			csr := sameNames(mustKey(t, keystore.ECDSAP256))
			csr.PublicKey, csr.PublicKeyAlgorithm = nil, x509.UnknownPublicKeyAlgorithm
			return RenewRequest{Certificate: old, CSR: csr}
		}, BadCSR, "CSR signature does not verify", "token:alice", ""},
		{"rekey with a bad CSR signature", func(*testing.T) RenewRequest {
			csr := sameNames(mustKey(t, keystore.ECDSAP256))
			csr.Signature = slices.Clone(csr.Signature)
			csr.Signature[len(csr.Signature)-1] ^= 1
			return RenewRequest{Certificate: old, CSR: csr}
		}, BadCSR, "CSR signature does not verify", "token:alice", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.setup(t)
			checkRenewRefusal(t, rc, req, tc.kind, tc.detail, tc.actor, tc.target, oldRec.Serial)
		})
	}

	// Refusals that change the certificate's state, in order.
	t.Run("profile no longer configured", func(t *testing.T) {
		a, err := New(ctx, Config{Profiles: map[string]Profile{"other": DefaultProfiles()["tls-server"]}, BaseURL: testBaseURL,
			Clock: rc.clk, Logger: rc.a.log}, rc.st, rc.init.Keystore)
		if err != nil {
			t.Fatal(err)
		}
		checkRenewRefusal(t, renewCA{&revokeCA{testCA: rc.testCA, a: a, reg: rc.reg}}, RenewRequest{Certificate: old},
			Rejected, `profile "tls-server", which is not configured any more`, "token:alice", "", oldRec.Serial)
	})
	t.Run("on hold", func(t *testing.T) {
		if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: oldRec.Serial, Reason: ReasonCertificateHold, Actor: "token:admin"}); err != nil {
			t.Fatal(err)
		}
		checkRenewRefusal(t, rc, RenewRequest{Certificate: old}, Forbidden, "is on hold (certificateHold)", "token:alice", "", oldRec.Serial)
		if _, err := rc.a.Unhold(ctx, oldRec.Serial, "token:admin"); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.a.Renew(ctx, RenewRequest{Certificate: old}); err != nil {
			t.Errorf("renew after release from hold: %v", err)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: oldRec.Serial, Reason: ReasonSuperseded, Actor: "token:admin"}); err != nil {
			t.Fatal(err)
		}
		checkRenewRefusal(t, rc, RenewRequest{Certificate: old}, Forbidden, "was revoked (superseded)", "token:alice", "", oldRec.Serial)
	})
	t.Run("expired", func(t *testing.T) {
		fresh, rec := rc.issueFor(t, mustKey(t, keystore.ECDSAP256), "token:bob")
		rc.clk.Advance(fresh.NotAfter.Sub(rc.clk.Now()) + time.Second)
		checkRenewRefusal(t, rc, RenewRequest{Certificate: fresh}, Unauthorized, "expired at "+fresh.NotAfter.UTC().Format(time.RFC3339),
			"anonymous", "", rec.Serial)
	})
}

// checkRenewRefusal calls Renew and checks the refusal, that no certificate
// was recorded and that exactly one request.refused event was appended.
// target "-" means none; "" means serial.
func checkRenewRefusal(t *testing.T, rc renewCA, req RenewRequest, kind Kind, detail, actor, target, serial string) {
	t.Helper()
	check := startRefusal(t, rc.testCA)
	iss, err := rc.a.Renew(context.Background(), req)
	if err == nil {
		t.Fatalf("Renew issued %s, want a %s refusal", iss.Record.Serial, kind)
	}
	checkKind(t, err, kind, detail)
	certs, _, lerr := rc.st.Certificates(context.Background(), store.CertFilter{Limit: 1000})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(certs) != check.certs {
		t.Errorf("certificate rows: %d after the refusal, %d before", len(certs), check.certs)
	}
	switch target {
	case "-":
		target = ""
	case "":
		target = serial
	}
	evs := rc.eventsAfter(t, check.head)
	if actor == "anonymous" {
		// Not authenticated: no event of its own (issue 15), but the
		// source's summary counts it.
		if len(evs) != 0 {
			t.Fatalf("%d audit events for an unauthenticated refusal, want none: %+v", len(evs), evs)
		}
		checkOneSummary(t, rc.a, rc.revokeCA, check.head, "", "renew:"+kind.String()+"=1")
		return
	}
	if len(evs) != 1 {
		t.Fatalf("%d audit events, want one request.refused: %+v", len(evs), evs)
	}
	checkRenewEvent(t, evs[0], kind, actor, target, req.CSR != nil)
}

// checkOneSummary flushes the refusal summaries and checks that exactly one
// access.refused.summary event follows seq: by source ("" : "unknown"),
// counting one refusal of by ("surface:reason=1").
func checkOneSummary(t *testing.T, a *Authority, rc *revokeCA, seq int64, source, by string) {
	t.Helper()
	if source == "" {
		source = "unknown"
	}
	if err := a.FlushRefusalSummaries(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := rc.eventsAfter(t, seq)
	if len(evs) != 1 || evs[0].Action != "access.refused.summary" || evs[0].Actor != "anonymous" || evs[0].Target != source ||
		evs[0].Detail["count"] != "1" || evs[0].Detail["by"] != by {
		t.Errorf("after a flush %+v, want one access.refused.summary of %s counting %s", evs, source, by)
	}
}

func checkRenewEvent(t *testing.T, ev audit.Event, kind Kind, actor, target string, rekey bool) {
	t.Helper()
	if ev.Action != "request.refused" || ev.Actor != actor || ev.Target != target || ev.Detail["request"] != "renew" ||
		ev.Detail["reason"] != kind.String() || ev.Detail["channel"] != ChannelRenew || ev.Detail["detail"] == "" ||
		ev.Detail["rekey"] != boolString(rekey) {
		t.Errorf("refusal event %+v, want request.refused (renew, %s) by %s on %q", ev, kind, actor, target)
	}
}

// TestRenewAfterRotation renews a certificate of an intermediate that is no
// longer the one issuing: it is still recorded in the store's issuers.
func TestRenewAfterRotation(t *testing.T) {
	t.Parallel()
	rc := newRenewCA(t)
	ctx := context.Background()
	key := mustKey(t, keystore.ECDSAP256)
	old, oldRec := rc.issueFor(t, key, "token:alice")
	rc.clk.Advance(time.Hour)

	// A second intermediate, signed by the root and recorded later, becomes
	// the one New picks.
	var rootRec store.IssuerRecord
	issuers, err := rc.st.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range issuers {
		if i.Kind == "root" {
			rootRec = i
		}
	}
	rootKey, err := rc.init.Keystore.Unwrap(ctx, rootRec.KeyID, "test")
	if err != nil {
		t.Fatal(err)
	}
	intKey, intKeyRec, err := rc.init.Keystore.Generate(context.Background(), "intermediate", keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	linter, err := NewLinter()
	if err != nil {
		t.Fatal(err)
	}
	now := rc.clk.Now().UTC().Truncate(time.Second)
	inter2, err := createCA(&x509.Certificate{
		Subject: pkix.Name{CommonName: "Test CA Intermediate 2"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		IsCA: true, MaxPathLenZero: true,
	}, rc.init.Root, rootKey, intKey.Public(), linter)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(intKeyRec); err != nil {
			return err
		}
		return tx.InsertIssuer(store.IssuerRecord{ID: IssuerID(inter2), Kind: "intermediate", ParentID: rootRec.ID,
			KeyID: intKeyRec.ID, CertDER: inter2.Raw, State: store.KeyActive, Created: now})
	}); err != nil {
		t.Fatal(err)
	}
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: testBaseURL, Clock: rc.clk, Logger: rc.a.log}, rc.st, rc.init.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	if a.Intermediate().ID != IssuerID(inter2) {
		t.Fatalf("the new authority issues from %s, want the new intermediate %s", a.Intermediate().ID, IssuerID(inter2))
	}
	iss, err := a.Renew(ctx, RenewRequest{Certificate: old})
	if err != nil {
		t.Fatalf("renew a certificate of the previous intermediate: %v", err)
	}
	leaf := checkRenewed(t, a, iss, old, oldRec, key.Public())
	if err := leaf.CheckSignatureFrom(inter2); err != nil {
		t.Errorf("renewed certificate is not signed by the new intermediate: %v", err)
	}
	if !strings.Contains(leaf.IssuingCertificateURL[0], IssuerID(inter2)) {
		t.Errorf("AIA %v does not name the new intermediate", leaf.IssuingCertificateURL)
	}
}
