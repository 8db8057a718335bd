package managed

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

func spec(name string, mods ...func(*Spec)) Spec {
	s := Spec{Name: name, SANs: []string{name + ".example.com"}, Profile: "tls-server", Actor: "token:admin"}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func (mc *managedCA) create(t *testing.T, s Spec) Cert {
	t.Helper()
	m, err := mc.svc.Create(context.Background(), s)
	if err != nil {
		t.Fatalf("CreateManaged(%s): %v", s.Name, err)
	}
	return m
}

func (mc *managedCA) record(t *testing.T, name string) store.ManagedRecord {
	t.Helper()
	m, err := mc.st.Managed(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (mc *managedCA) show(t *testing.T, name string) Cert {
	t.Helper()
	m, err := mc.svc.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// due lists the names due for renewal now.
func (mc *managedCA) due(t *testing.T) []string {
	t.Helper()
	ms, err := mc.svc.Due(context.Background(), store.DueCursor{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// renew renews name as the job does and requires a renewal.
func (mc *managedCA) renew(t *testing.T, name string) *Renewal {
	t.Helper()
	r, err := mc.svc.Renew(context.Background(), mc.record(t, name), "system:test", false)
	if err != nil || r == nil {
		t.Fatalf("RenewManaged(%s) = %+v, %v; want a renewal", name, r, err)
	}
	return r
}

func (mc *managedCA) key(t *testing.T, id string) store.KeyRecord {
	t.Helper()
	k, err := mc.st.Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (mc *managedCA) counts(t *testing.T) (keys, certs, managed int) {
	t.Helper()
	ctx := context.Background()
	ks, err := mc.st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := mc.st.Certificates(ctx, store.CertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mc.st.ManagedList(ctx, "", 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	return len(ks), len(cs), len(ms)
}

func actions(evs []audit.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Action)
	}
	return out
}

func TestManagedCreate(t *testing.T) {
	mc := newManagedCA(t)
	ctx := context.Background()
	seq := mc.head(t)
	m := mc.create(t, spec("web", func(s *Spec) {
		s.SANs = []string{"web.example.com", "10.0.0.7"}
		s.Validity = 30 * 24 * time.Hour
	}))
	if m.Version != 1 || m.State != store.ManagedActive || m.RotateKey != "always" || m.RenewAt != "2/3" || m.KeyType != "ecdsa-p256" {
		t.Errorf("created %+v", m)
	}
	rec := mc.stored(t, m.Serial)
	if rec.Channel != ca.ChannelManaged || rec.Requester != "managed:web" || rec.Profile != "tls-server" {
		t.Errorf("certificate record %+v", rec)
	}
	if got := strings.Join(rec.SANs, ","); got != "web.example.com,10.0.0.7" {
		t.Errorf("SANs %s", got)
	}
	life := rec.NotAfter.Sub(rec.NotBefore)
	if want := rec.NotBefore.Add(life * 2 / 3); !m.RenewDue.Equal(want) {
		t.Errorf("renew due %v, want two thirds of the lifetime: %v", m.RenewDue, want)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	k := mc.key(t, m.KeyID)
	if k.Purpose != KeyPurpose || k.State != store.KeyActive || len(k.Ciphertext) == 0 {
		t.Errorf("key %s: purpose %s state %s", k.ID, k.Purpose, k.State)
	}
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil || !publicKeyEqual(pub, cert.PublicKey) {
		t.Errorf("the certificate does not carry the managed key: %v", err)
	}
	got := actions(mc.eventsAfter(t, seq))
	if strings.Join(got, " ") != "key.generated cert.issued managed.created" {
		t.Errorf("audit events %v", got)
	}
	vs, err := mc.st.ManagedVersions(ctx, "web")
	if err != nil || len(vs) != 1 || vs[0].Serial != m.Serial || vs[0].KeyID != m.KeyID || vs[0].Reason != RenewCreated {
		t.Errorf("versions %+v, %v", vs, err)
	}
}

// TestManagedCreateRefused: bad input is refused, audited, and writes
// nothing else: no key, no certificate, no managed record.
func TestManagedCreateRefused(t *testing.T) {
	mc := newManagedCA(t)
	mc.create(t, spec("taken"))
	neg := -time.Hour
	for _, tc := range []struct {
		name string
		spec Spec
		kind ca.Kind
		want string
	}{
		{"bad name", spec("-web"), ca.Malformed, "managed certificate name"},
		{"name with slash", spec("a/b"), ca.Malformed, "managed certificate name"},
		{"unknown profile", spec("p", func(s *Spec) { s.Profile = "nope" }), ca.Rejected, "unknown profile"},
		{"bad key type", spec("k", func(s *Spec) { s.KeyType = "dsa" }), ca.Malformed, "unknown key algorithm"},
		{"renew-at 0", spec("r0", func(s *Spec) { s.RenewAt = "0" }), ca.Malformed, "renew-at"},
		{"renew-at 1", spec("r1", func(s *Spec) { s.RenewAt = "1/1" }), ca.Malformed, "renew-at"},
		{"renew-at junk", spec("rj", func(s *Spec) { s.RenewAt = "soon" }), ca.Malformed, "renew-at"},
		{"rotate junk", spec("ro", func(s *Spec) { s.RotateKey = "every:0" }), ca.Malformed, "rotate-key"},
		{"negative overlap", spec("ov", func(s *Spec) { s.RevokePreviousAfter = &neg }), ca.Malformed, "revoke-previous-after"},
		{"no SANs", spec("ns", func(s *Spec) { s.SANs = nil }), ca.Malformed, "at least one"},
		{"bad DNS name", spec("dn", func(s *Spec) { s.SANs = []string{"bad_name..example"} }), ca.Malformed, "DNS name"},
		{"refused by policy", spec("em", func(s *Spec) { s.Profile, s.SANs = "restricted", []string{"web.example.org"} }), ca.Rejected, "web.example.org"},
		{"validity over the maximum", spec("v", func(s *Spec) { s.Validity = 10000 * time.Hour }), ca.Rejected, "exceeds"},
		{"exists", spec("taken"), ca.Conflict, "exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, certs, managed := mc.counts(t)
			seq := mc.head(t)
			_, err := mc.svc.Create(context.Background(), tc.spec)
			checkKind(t, err, tc.kind, tc.want)
			if k, c, m := mc.counts(t); k != keys || c != certs || m != managed {
				t.Errorf("refused create wrote: keys %d->%d, certificates %d->%d, managed %d->%d", keys, k, certs, c, managed, m)
			}
			evs := mc.eventsAfter(t, seq)
			if len(evs) != 1 || evs[0].Action != "request.refused" || evs[0].Detail["request"] != "managed.create" {
				t.Errorf("audit events %+v, want one request.refused", evs)
			}
		})
	}
}

// TestManagedRenewsAtRenewalPoint: nothing is due just before the renewal
// point; at it, the certificate renews, links to its predecessor and gets
// the next renewal point.
func TestManagedRenewsAtRenewalPoint(t *testing.T) {
	mc := newManagedCA(t)
	m := mc.create(t, spec("api", func(s *Spec) { s.RenewAt = "3/4" }))
	mc.clk.Advance(m.RenewDue.Sub(mc.clk.Now()) - time.Nanosecond)
	if due := mc.due(t); len(due) != 0 {
		t.Fatalf("due a nanosecond before the renewal point: %v", due)
	}
	if r, err := mc.svc.Renew(context.Background(), mc.record(t, "api"), "system:test", false); r != nil || err != nil {
		t.Fatalf("renewed before the renewal point: %+v, %v", r, err)
	}
	mc.clk.Advance(time.Nanosecond)
	if due := mc.due(t); len(due) != 1 || due[0] != "api" {
		t.Fatalf("due at the renewal point: %v", due)
	}
	r := mc.renew(t, "api")
	if r.Version != 2 || r.Reason != RenewDue || r.Replaced != m.Serial || !r.Rotated {
		t.Errorf("renewal %+v", r)
	}
	rec := mc.stored(t, r.Serial)
	if rec.Replaces != m.Serial || rec.Channel != ca.ChannelManaged {
		t.Errorf("renewed record %+v", rec)
	}
	after := mc.record(t, "api")
	if want := rec.NotBefore.Add(rec.NotAfter.Sub(rec.NotBefore) * 3 / 4); !after.RenewDue.Equal(want) {
		t.Errorf("next renewal %v, want %v", after.RenewDue, want)
	}
	if due := mc.due(t); len(due) != 0 {
		t.Errorf("still due after renewal: %v", due)
	}
	// The stale record (version 1) loses: nothing is renewed twice.
	_, err := mc.svc.Renew(context.Background(), store.ManagedRecord{Name: "api", State: store.ManagedActive,
		Version: 1, Serial: m.Serial, KeyID: m.KeyID, KeyUses: 1, RotateEvery: 1, Profile: "tls-server",
		SANs: []string{"api.example.com"}, KeyType: "ecdsa-p256", RenewAt: "3/4", IssuerID: mc.a.Intermediate().ID,
		RenewDue: m.RenewDue}, "system:test", false)
	checkKind(t, err, ca.Conflict, "changed during its renewal")
	if v := mc.show(t, "api"); v.Version != 2 || len(v.Versions) != 2 {
		t.Errorf("after a lost race: version %d, %d versions", v.Version, len(v.Versions))
	}
}

// TestManagedRotationPolicy: always makes a new key at every renewal,
// never keeps the first, every:N makes one at every Nth renewal; every
// version is kept, and a replaced key is retired.
func TestManagedRotationPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   string // per renewal 1..6: r rotated, k kept
	}{
		{"always", "rrrrrr"},
		{"never", "kkkkkk"},
		{"every:2", "krkrkr"},
		{"every:3", "kkrkkr"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			mc := newManagedCA(t)
			m := mc.create(t, spec("svc", func(s *Spec) { s.RotateKey = tc.policy }))
			keys := []string{m.KeyID}
			var got strings.Builder
			for i := range 6 {
				cur := mc.record(t, "svc")
				mc.clk.Advance(cur.RenewDue.Sub(mc.clk.Now()))
				r := mc.renew(t, "svc")
				if r.Version != i+2 {
					t.Fatalf("renewal %d made version %d", i+1, r.Version)
				}
				if r.Rotated != (r.KeyID != cur.KeyID) {
					t.Errorf("renewal %d: rotated=%v but key %s -> %s", i+1, r.Rotated, cur.KeyID, r.KeyID)
				}
				if r.Rotated {
					got.WriteByte('r')
					if k := mc.key(t, cur.KeyID); k.State != store.KeyRetired {
						t.Errorf("replaced key %s is %s, want retired", k.ID, k.State)
					}
					keys = append(keys, r.KeyID)
				} else {
					got.WriteByte('k')
				}
				if k := mc.key(t, r.KeyID); k.State != store.KeyActive {
					t.Errorf("current key %s is %s", k.ID, k.State)
				}
			}
			if got.String() != tc.want {
				t.Errorf("rotations %s, want %s", got.String(), tc.want)
			}
			v := mc.show(t, "svc")
			if len(v.Versions) != 7 {
				t.Fatalf("%d versions kept, want 7", len(v.Versions))
			}
			states := map[string]int{}
			for _, ver := range v.Versions {
				states[ver.State]++
			}
			if states["current"] != 1 || states["previous"] != 1 || states["superseded"]+states["expired"] != 5 {
				t.Errorf("version states %v", states)
			}
			if len(keys) != strings.Count(tc.want, "r")+1 {
				t.Errorf("%d keys for %s", len(keys), tc.want)
			}
		})
	}
}

// TestManagedRevokePrevious: with an overlap, the superseded version is
// revoked (superseded) once the overlap has passed, by whatever authority
// runs then (state in the store, not in memory); not before.
func TestManagedRevokePrevious(t *testing.T) {
	mc := newManagedCA(t)
	ctx := context.Background()
	overlap := 24 * time.Hour
	m := mc.create(t, spec("db", func(s *Spec) { s.RevokePreviousAfter = &overlap }))
	mc.clk.Advance(m.RenewDue.Sub(mc.clk.Now()))
	mc.renew(t, "db")
	revocations := func(svc *Service) []store.ManagedVersion {
		t.Helper()
		vs, err := svc.DueRevocations(ctx, store.DueCursor{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	mc.clk.Advance(overlap - time.Second)
	if vs := revocations(mc.svc); len(vs) != 0 {
		t.Fatalf("revocations due before the overlap passed: %+v", vs)
	}
	if mc.stored(t, m.Serial).RevokedAt.IsZero() == false {
		t.Fatal("previous version revoked early")
	}
	mc.clk.Advance(time.Second)
	_, restarted := mc.restart(t) // the pending revocation survives a restart
	vs := revocations(restarted)
	if len(vs) != 1 || vs[0].Serial != m.Serial || vs[0].Version != 1 {
		t.Fatalf("due revocations %+v", vs)
	}
	seq := mc.head(t)
	did, err := restarted.RevokeSuperseded(ctx, vs[0], "system:test")
	if err != nil || !did {
		t.Fatalf("RevokeSuperseded = %v, %v", did, err)
	}
	rec := mc.stored(t, m.Serial)
	if rec.RevokedAt.IsZero() || rec.RevokeReason != ca.ReasonSuperseded {
		t.Errorf("previous version %+v, want revoked superseded", rec)
	}
	if evs := mc.eventsAfter(t, seq); len(evs) != 1 || evs[0].Action != "cert.revoked" || evs[0].Detail["reason"] != "superseded" {
		t.Errorf("audit %+v", evs)
	}
	if vs := revocations(restarted); len(vs) != 0 {
		t.Errorf("still due after revocation: %+v", vs)
	}
	// Revoking it does not make the managed certificate due: it is not current.
	if due := mc.due(t); len(due) != 0 {
		t.Errorf("due after revoking the previous version: %v", due)
	}
	if v := mc.show(t, "db"); v.Versions[1].State != "revoked" || v.Versions[1].RevokeReason != "superseded" {
		t.Errorf("previous version shown as %+v", v.Versions[1])
	}
}

// TestManagedRenewIfRevoked: a revoked current certificate is due at once;
// a keyCompromise revocation forces a new key even with rotate-key never,
// and the compromised key is destroyed without waiting for expiry.
func TestManagedRenewIfRevoked(t *testing.T) {
	for _, tc := range []struct {
		reason      int
		wantRotated bool
	}{
		{ca.ReasonCessationOfOperation, false},
		{ca.ReasonCertificateHold, false},
		{ca.ReasonKeyCompromise, true},
	} {
		t.Run(ca.ReasonName(tc.reason), func(t *testing.T) {
			mc := newManagedCA(t)
			ctx := context.Background()
			m := mc.create(t, spec("mail", func(s *Spec) { s.RotateKey = "never" }))
			mc.clk.Advance(time.Hour)
			if due := mc.due(t); len(due) != 0 {
				t.Fatalf("due before revocation: %v", due)
			}
			if _, err := mc.a.Revoke(ctx, ca.RevokeRequest{Serial: m.Serial, Reason: tc.reason, Actor: "token:admin", Channel: ca.ChannelAPI}); err != nil {
				t.Fatal(err)
			}
			if due := mc.due(t); len(due) != 1 {
				t.Fatalf("not due at once after revocation: %v", due)
			}
			r := mc.renew(t, "mail")
			if r.Reason != RenewRevoked || r.Rotated != tc.wantRotated {
				t.Errorf("renewal %+v, want reason revoked, rotated %v", r, tc.wantRotated)
			}
			if !tc.wantRotated {
				return
			}
			ks, err := mc.svc.DueKeys(ctx, store.DueCursor{}, 10)
			if err != nil || len(ks) != 1 || ks[0].KeyID != m.KeyID {
				t.Fatalf("keys due for destruction %+v, %v; want the compromised one now", ks, err)
			}
			if err := mc.svc.DestroyKey(ctx, ks[0], "system:test"); err != nil {
				t.Fatal(err)
			}
			if k := mc.key(t, m.KeyID); k.State != store.KeyDestroyed || k.Ciphertext != nil {
				t.Errorf("compromised key %s, want destroyed", k.State)
			}
		})
	}
}

// TestManagedKeyDestroyedAfterExpiry: a rotated-out key is destroyed once
// the last certificate issued with it has expired, not before.
func TestManagedKeyDestroyedAfterExpiry(t *testing.T) {
	mc := newManagedCA(t)
	ctx := context.Background()
	m := mc.create(t, spec("cache", func(s *Spec) { s.Validity = 48 * time.Hour }))
	mc.clk.Advance(m.RenewDue.Sub(mc.clk.Now()))
	mc.renew(t, "cache")
	due := func() []store.ManagedKey {
		ks, err := mc.svc.DueKeys(ctx, store.DueCursor{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	mc.clk.Advance(m.NotAfter.Sub(mc.clk.Now()) - time.Second)
	if ks := due(); len(ks) != 0 {
		t.Fatalf("destruction due before expiry: %+v", ks)
	}
	mc.clk.Advance(time.Second)
	ks := due()
	if len(ks) != 1 || ks[0].KeyID != m.KeyID {
		t.Fatalf("due %+v, want %s", ks, m.KeyID)
	}
	seq := mc.head(t)
	if err := mc.svc.DestroyKey(ctx, ks[0], "system:test"); err != nil {
		t.Fatal(err)
	}
	if k := mc.key(t, m.KeyID); k.State != store.KeyDestroyed || k.WrappedDEK != nil {
		t.Errorf("key %s after destruction", k.State)
	}
	if got := actions(mc.eventsAfter(t, seq)); strings.Join(got, " ") != "key.destroyed" {
		t.Errorf("audit %v", got)
	}
	if ks := due(); len(ks) != 0 {
		t.Errorf("still due: %+v", ks)
	}
}

func TestManagedDelete(t *testing.T) {
	for _, destroy := range []bool{false, true} {
		t.Run("destroy="+strconv.FormatBool(destroy), func(t *testing.T) {
			mc := newManagedCA(t)
			ctx := context.Background()
			m := mc.create(t, spec("old"))
			mc.clk.Advance(m.RenewDue.Sub(mc.clk.Now()))
			r := mc.renew(t, "old")
			seq := mc.head(t)
			if _, err := mc.svc.Delete(ctx, "old", "token:admin", destroy); err != nil {
				t.Fatal(err)
			}
			got := actions(mc.eventsAfter(t, seq))
			slices.Sort(got)
			want := "key.retired managed.deleted"
			if destroy {
				// Both versions are unexpired: their keys are gone, so they are revoked.
				want = "cert.revoked cert.revoked key.destroyed key.destroyed key.retired managed.deleted"
			}
			if strings.Join(got, " ") != want {
				t.Errorf("audit %v, want %s", got, want)
			}
			for _, serial := range []string{m.Serial, r.Serial} {
				c, err := mc.a.Certificate(ctx, serial)
				if err != nil {
					t.Fatal(err)
				}
				if destroy && (c.RevokedAt.IsZero() || c.RevokeReason != ca.ReasonCessationOfOperation) ||
					!destroy && !c.RevokedAt.IsZero() {
					t.Errorf("certificate %s after delete: revoked at %v reason %s", serial, c.RevokedAt, ca.ReasonName(c.RevokeReason))
				}
			}
			for _, id := range []string{m.KeyID, r.KeyID} {
				k := mc.key(t, id)
				if destroy && k.State != store.KeyDestroyed || !destroy && k.State != store.KeyRetired {
					t.Errorf("key %s is %s", id, k.State)
				}
			}
			if v := mc.show(t, "old"); v.State != store.ManagedDeleted || v.Deleted.IsZero() {
				t.Errorf("after delete %+v", v)
			}
			mc.clk.Advance(365 * 24 * time.Hour)
			if due := mc.due(t); len(due) != 0 {
				t.Errorf("a deleted managed certificate is due: %v", due)
			}
			ks, _ := mc.svc.DueKeys(ctx, store.DueCursor{}, 10)
			if destroy && len(ks) != 0 || !destroy && len(ks) != 2 {
				t.Errorf("key destructions due: %+v", ks)
			}
			_, err := mc.svc.Delete(ctx, "old", "token:admin", destroy)
			checkKind(t, err, ca.NotFound, "was deleted")
			_, err = mc.svc.Create(ctx, spec("old"))
			checkKind(t, err, ca.Conflict, "not reused")
		})
	}
}

// TestManagedBundleCA: who may fetch the bundle, at the ca level; the
// HTTP surface is tested in api.
func TestManagedBundleCA(t *testing.T) {
	mc := newManagedCA(t)
	ctx := context.Background()
	web := mc.create(t, spec("web", func(s *Spec) { s.RenewAt = "1/10" }))
	mc.create(t, spec("other"))
	_, tokRec, err := ca.NewManagedToken("web", 0, "", mc.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	managedTok := ca.Principal{TokenID: tokRec.ID, Role: ca.RoleManaged, Managed: "web"}
	cert1 := mc.stored(t, web.Serial).DER

	b, err := mc.svc.Bundle(ctx, BundleRequest{Name: "web", Principal: &managedTok})
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != 1 || b.Serial != web.Serial || !strings.Contains(b.String(), "REDACTED") || strings.Contains(b.String(), "PRIVATE") {
		t.Errorf("bundle %s", b)
	}
	blk, _ := pem.Decode(b.KeyPEM)
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert1)
	if !publicKeyEqual(key.(crypto.Signer).Public(), leaf.PublicKey) {
		t.Error("bundle key does not match its certificate")
	}
	for _, tc := range []struct {
		name string
		req  BundleRequest
		kind ca.Kind
	}{
		{"admin token", BundleRequest{Name: "web", Principal: &ca.Principal{TokenID: "a", Role: ca.RoleAdmin}}, ca.Forbidden},
		{"token for another name", BundleRequest{Name: "other", Principal: &managedTok}, ca.Forbidden},
		{"certificate of another name", BundleRequest{Name: "other", ClientCert: cert1}, ca.Forbidden},
		{"unknown name", BundleRequest{Name: "nope", ClientCert: cert1}, ca.Forbidden},
		{"no credential", BundleRequest{Name: "web"}, ca.Unauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := mc.head(t)
			_, err := mc.svc.Bundle(ctx, tc.req)
			if ca.KindOf(err) != tc.kind {
				t.Fatalf("err %v, want %s", err, tc.kind)
			}
			evs := mc.eventsAfter(t, seq)
			if tc.kind == ca.Unauthorized {
				if len(evs) != 0 {
					t.Errorf("a request without credentials was audited: %+v", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].Action != "managed.bundle.refused" {
				t.Errorf("audit %+v", evs)
			}
		})
	}
	// Renewed twice: version 1 is neither current nor previous any more.
	mc.clk.Advance(web.RenewDue.Sub(mc.clk.Now()))
	mc.renew(t, "web")
	if b, err := mc.svc.Bundle(ctx, BundleRequest{Name: "web", ClientCert: cert1}); err != nil || b.Version != 2 {
		t.Fatalf("previous version fetching: %v, %v", b, err)
	}
	mc.clk.Advance(mc.record(t, "web").RenewDue.Sub(mc.clk.Now()))
	mc.renew(t, "web")
	_, err = mc.svc.Bundle(ctx, BundleRequest{Name: "web", ClientCert: cert1})
	checkKind(t, err, ca.Forbidden, "only the current")
}

// TestManagedNotRenewedOverMTLS: POST /v1/renew (ca.Renew) refuses a
// managed certificate, whose successors only the managed-renew path issues.
func TestManagedNotRenewedOverMTLS(t *testing.T) {
	mc := newManagedCA(t)
	m := mc.create(t, spec("agent"))
	leaf, err := x509.ParseCertificate(mc.stored(t, m.Serial).DER)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mc.a.Renew(context.Background(), ca.RenewRequest{Certificate: leaf})
	checkKind(t, err, ca.Forbidden, "/v1/managed/agent/bundle")
	if v := mc.show(t, "agent"); len(v.Versions) != 1 {
		t.Errorf("%d versions after a refused renewal", len(v.Versions))
	}
}

// renewingKeys is the authority with a renewal of the managed certificate
// name committed just before each of the first n key exports: the race of
// a bundle fetch with `sigil managed renew`, made deterministic.
type renewingKeys struct {
	Issuer
	mc   *managedCA
	t    *testing.T
	name string
	n    int
}

func (k *renewingKeys) ExportKey(ctx context.Context, keyID, actor string, detail map[string]string, inTx func(tx store.Tx) error) ([]byte, error) {
	if k.n > 0 {
		k.n--
		if _, err := k.mc.svc.RenewNow(ctx, k.name, "token:admin"); err != nil {
			k.t.Errorf("renewal during the fetch: %v", err)
		}
	}
	return k.Issuer.ExportKey(ctx, keyID, actor, detail, inTx)
}

// TestManagedBundleDuringRenewal (issue 15, item 13): a renewal (with a new
// key) that commits while a bundle is read makes the fetch read again and
// return the new pair whole, not "the key is retired"; a storm of renewals
// beyond the bound is an error, never a mismatched pair.
func TestManagedBundleDuringRenewal(t *testing.T) {
	mc := newManagedCA(t)
	ctx := context.Background()
	mc.create(t, spec("web", func(s *Spec) { s.RotateKey = "always" }))
	tok := ca.Principal{TokenID: "0123456789abcdef", Role: ca.RoleManaged, Managed: "web"}
	keys := &renewingKeys{Issuer: mc.svc.ca, mc: mc, t: t, name: "web"}
	mc.svc.ca = keys

	for _, renewals := range []int{1, maxBundleAttempts - 1} {
		keys.n = renewals
		b, err := mc.svc.Bundle(ctx, BundleRequest{Name: "web", Principal: &tok})
		if err != nil {
			t.Fatalf("bundle with %d renewals during the fetch: %v", renewals, err)
		}
		cur := mc.record(t, "web")
		if b.Version != cur.Version || b.Serial != cur.Serial {
			t.Errorf("bundle v%d %s, want the pair current after the renewals: v%d %s", b.Version, b.Serial, cur.Version, cur.Serial)
		}
		chain, _ := pem.Decode(b.ChainPEM)
		leaf, err := x509.ParseCertificate(chain.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := pem.Decode(b.KeyPEM)
		key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.(crypto.Signer).Public()) {
			t.Errorf("bundle v%d: the key is not the certificate's", b.Version)
		}
	}
	keys.n = maxBundleAttempts
	if b, err := mc.svc.Bundle(ctx, BundleRequest{Name: "web", Principal: &tok}); err == nil {
		t.Errorf("bundle v%d after %d renewals during one fetch, want an error", b.Version, maxBundleAttempts)
	}
}

// TestManagedNamesCanonical: managed certificates go through the same
// name checks: a numeric DNS name, an invalid A-label or a non-canonical
// URI is refused as ca.Malformed, and nothing is created.
func TestManagedNamesCanonical(t *testing.T) {
	mc := newManagedCA(t)
	for i, sans := range [][]string{
		{"2130706433"}, {"web.0x7f"}, {"xn--a.example.com"},
		{"web.example.com", "spiffe://example.org/ns/%61dmin"},
		{"web.example.com", "spiffe://example.org//ns/admin"},
		{"web.example.com", "https://svc.example.org/x/../admin"},
	} {
		keys, certs, managed := mc.counts(t)
		_, err := mc.svc.Create(context.Background(), spec(fmt.Sprintf("n%d", i), func(s *Spec) { s.SANs = sans }))
		if ca.KindOf(err) != ca.Malformed {
			t.Errorf("CreateManaged(%v) = %v, want malformed", sans, err)
		}
		if k, c, m := mc.counts(t); k != keys || c != certs || m != managed {
			t.Errorf("refused create of %v wrote: keys %d->%d, certificates %d->%d, managed %d->%d", sans, keys, k, certs, c, managed, m)
		}
	}
}

// TestManagedIssuedEvents: a managed certificate's cert.issued events,
// created and renewed, are the authority's one schema, naming the key the
// CA holds for it.
func TestManagedIssuedEvents(t *testing.T) {
	mc := newManagedCA(t)
	seq := mc.head(t)
	m := mc.create(t, spec("web"))
	mc.clk.Advance(m.RenewDue.Sub(mc.clk.Now()))
	r := mc.renew(t, "web")
	want := []string{"channel", "der_sha256", "issuer", "key", "not_after", "profile", "replaces", "sans", "subject"}
	keys := map[string]string{m.Serial: m.KeyID, r.Serial: r.KeyID}
	var n int
	for _, e := range mc.eventsAfter(t, seq) {
		if e.Action != "cert.issued" {
			continue
		}
		n++
		var got []string
		for k := range e.Detail {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("cert.issued %s: detail keys %v, want %v", e.Target, got, want)
		}
		if e.Detail["key"] != keys[e.Target] || e.Detail["channel"] != ca.ChannelManaged {
			t.Errorf("cert.issued %s: key %q channel %q, want %q managed", e.Target, e.Detail["key"], e.Detail["channel"], keys[e.Target])
		}
	}
	if n != 2 {
		t.Errorf("%d cert.issued events, want 2", n)
	}
	if _, err := ca.VerifyState(context.Background(), mc.st); err != nil {
		t.Errorf("VerifyState: %v", err)
	}
}
