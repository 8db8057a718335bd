package ca

import (
	"context"
	"crypto/x509"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

func keyState(t *testing.T, st *store.SQLite, id string) string {
	t.Helper()
	k, err := st.Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k.State
}

func issuerState(t *testing.T, st *store.SQLite, id string) string {
	t.Helper()
	rec, err := st.Issuer(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.State
}

// verifies checks that leaf chains to the root through inter.
func verifies(t *testing.T, tc *testCA, leaf, inter *x509.Certificate) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(tc.Root().Cert)
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: tc.clk.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("%s does not verify through %s: %v", leaf.Subject, inter.Subject, err)
	}
}

func signLeaf(t *testing.T, tc *testCA, name string, validity time.Duration) *x509.Certificate {
	t.Helper()
	iss, err := tc.Sign(context.Background(), SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", name),
		Profile: "tls-server", Validity: validity, Channel: ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(iss.Record.DER)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRotateIntermediateLifecycle drives one intermediate through its whole
// life with a fake clock: not due before its rotation point; rotated at
// it (issuance switches, the old key is retired and keeps signing CRLs and
// OCSP); still served after a restart; destroyed only once its last
// certificate has expired (plus the grace), with its responder key.
func TestRotateIntermediateLifecycle(t *testing.T) {
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	old := tc.Intermediate()
	oldKey := tc.issuerKeyID(old.ID)

	point, err := tc.Intermediates().IntermediateRotationPoint("")
	if err != nil {
		t.Fatal(err)
	}
	life := old.Cert.NotAfter.Sub(old.Cert.NotBefore)
	if want := old.Cert.NotBefore.Add(life * 2 / 3); point.Sub(want).Abs() > time.Second {
		t.Fatalf("default rotation point %s, want 2/3 of the lifetime %s", point, want)
	}
	if _, err := tc.Intermediates().IntermediateRotationPoint("1.5"); KindOf(err) != Malformed {
		t.Fatalf("rotation point 1.5: %v, want Malformed", err)
	}
	tc.clk.Advance(point.Sub(tc.clk.Now()) - 10*24*time.Hour)
	if rot, err := tc.Intermediates().RotateIntermediateIfDue(ctx, "test", "2/3"); err != nil || rot != nil {
		t.Fatalf("before the rotation point: %+v, %v; want nothing", rot, err)
	}
	before := signLeaf(t, tc, "before.example.com", 90*24*time.Hour)
	tc.clk.Advance(point.Sub(tc.clk.Now()) + time.Minute)
	// The old intermediate's responder, before the rotation.
	oldSigner, err := tc.NewOCSPSigner(ctx, old.ID, OCSPSignerConfig{Validity: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The listener's own certificate, outliving every leaf: it must not
	// hold the old key back.
	serving, err := tc.NewServingCert(ctx, []string{"ca.test"}, 200*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := tc.Intermediates().RotateIntermediateIfDue(ctx, "test", "2/3")
	if err != nil || rot == nil {
		t.Fatalf("at the rotation point: %+v, %v; want a rotation", rot, err)
	}
	cur := tc.Intermediate()
	if cur.ID == old.ID || rot.Current.ID != cur.ID || rot.Previous.ID != old.ID {
		t.Fatalf("rotation %+v; active %s", rot, cur.ID)
	}
	if got := cur.Cert.Subject.CommonName; got != "Test CA Intermediate 2" {
		t.Errorf("successor named %q", got)
	}
	if !cur.Cert.IsCA || !cur.Cert.MaxPathLenZero || cur.Cert.CheckSignatureFrom(tc.Root().Cert) != nil {
		t.Error("the new intermediate is not a path-length-0 CA signed by the root")
	}
	if cur.Cert.NotAfter.Sub(cur.Cert.NotBefore).Round(time.Hour) != life.Round(time.Hour) {
		t.Errorf("new lifetime %s, want the old one's %s", cur.Cert.NotAfter.Sub(cur.Cert.NotBefore), life)
	}
	if c, err := serving.GetCertificate(nil); err != nil || !slices.Equal(c.Leaf.AuthorityKeyId, cur.Cert.SubjectKeyId) {
		t.Errorf("the serving certificate did not move to the new intermediate: %v", err)
	}
	after := signLeaf(t, tc, "after.example.com", 90*24*time.Hour)
	if !slices.Equal(after.AuthorityKeyId, cur.Cert.SubjectKeyId) {
		t.Fatal("issuance did not switch to the new intermediate")
	}
	verifies(t, tc, before, old.Cert)
	verifies(t, tc, after, cur.Cert)
	if s := keyState(t, tc.st, oldKey); s != store.KeyRetired {
		t.Errorf("old intermediate key %s, want retired", s)
	}
	if s := issuerState(t, tc.st, old.ID); s != store.KeyRetired {
		t.Errorf("old issuer %s, want retired", s)
	}
	if s := keyState(t, tc.st, rot.KeyID); s != store.KeyActive {
		t.Errorf("new intermediate key %s, want active", s)
	}
	if got := ids(tc.ServingIssuers()); !slices.Equal(got, []string{cur.ID, old.ID}) {
		t.Fatalf("serving %v, want the new then the old", got)
	}

	// The old key still signs CRLs; OCSP responders of both coexist.
	crl, err := tc.signCRL(ctx, old.ID, &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: tc.clk.Now(), NextUpdate: tc.clk.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("CRL of the retired intermediate: %v", err)
	}
	if rl, err := x509.ParseRevocationList(crl); err != nil || rl.CheckSignatureFrom(old.Cert) != nil {
		t.Fatalf("retired intermediate's CRL does not verify: %v", err)
	}
	newSigner, err := tc.NewOCSPSigner(ctx, cur.ID, OCSPSignerConfig{Validity: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*OCSPSigner{oldSigner, newSigner} {
		if err := tc.TidyOCSPKeys(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*OCSPSigner{oldSigner, newSigner} {
		if st := keyState(t, tc.st, s.KeyID()); st != store.KeyActive {
			t.Errorf("responder key of %s is %s after tidying both issuers; want active", s.Issuer().ID, st)
		}
	}

	// A restart serves both and issues from the new one.
	re := tc.restart(t)
	if re.Intermediate().ID != cur.ID || len(re.ServingIssuers()) != 2 {
		t.Fatalf("after restart: active %s, serving %v", re.Intermediate().ID, ids(re.ServingIssuers()))
	}

	grace := 24 * time.Hour
	if gone, err := tc.Intermediates().RetireIntermediates(ctx, "test", grace); err != nil || len(gone) != 0 {
		t.Fatalf("with a live certificate: destroyed %v, %v", gone, err)
	}
	tc.clk.Advance(before.NotAfter.Sub(tc.clk.Now()) + grace/2)
	if gone, err := tc.Intermediates().RetireIntermediates(ctx, "test", grace); err != nil || len(gone) != 0 {
		t.Fatalf("within the grace after the last expiry: destroyed %v, %v", gone, err)
	}
	tc.clk.Advance(grace)
	gone, err := tc.Intermediates().RetireIntermediates(ctx, "test", grace)
	if err != nil || !slices.Equal(gone, []string{old.ID}) {
		t.Fatalf("after the last expiry: destroyed %v, %v; want %s", gone, err, old.ID)
	}
	if s := keyState(t, tc.st, oldKey); s != store.KeyDestroyed {
		t.Errorf("old intermediate key %s, want destroyed", s)
	}
	if s := keyState(t, tc.st, oldSigner.KeyID()); s != store.KeyDestroyed {
		t.Errorf("old responder key %s, want destroyed with its issuer", s)
	}
	if s := keyState(t, tc.st, newSigner.KeyID()); s != store.KeyActive {
		t.Errorf("the new issuer's responder key %s, want active", s)
	}
	if s := issuerState(t, tc.st, old.ID); s != store.KeyDestroyed {
		t.Errorf("old issuer %s, want destroyed", s)
	}
	if got := ids(tc.ServingIssuers()); !slices.Equal(got, []string{cur.ID}) {
		t.Errorf("serving %v after destruction", got)
	}
	if _, err := tc.signCRL(ctx, old.ID, &x509.RevocationList{Number: big.NewInt(8), ThisUpdate: tc.clk.Now(), NextUpdate: tc.clk.Now().Add(time.Hour)}); KindOf(err) != NotFound {
		t.Errorf("CRL of a destroyed intermediate: %v, want NotFound", err)
	}
	if _, ok := tc.IssuerByID(old.ID); !ok {
		t.Error("the destroyed intermediate's certificate is no longer known (old chains need it)")
	}
	if re2 := tc.restart(t); len(re2.ServingIssuers()) != 1 {
		t.Errorf("a restart serves %v after destruction", ids(re2.ServingIssuers()))
	}

	// Every step is in the audit chain, in order.
	rootRec, err := tc.st.Issuer(ctx, tc.Root().ID)
	if err != nil {
		t.Fatal(err)
	}
	rootKey := rootRec.KeyID
	evs, _, err := tc.st.AuditEvents(ctx, store.AuditFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, ev := range evs {
		switch {
		case ev.Action == audit.ActionIntermediateRotated && ev.Target == cur.ID && ev.Detail["previous"] == old.ID,
			ev.Action == "key.retired" && ev.Target == oldKey,
			ev.Action == "key.destroyed" && ev.Target == oldKey,
			ev.Action == audit.ActionIntermediateDestroyed && ev.Target == old.ID,
			ev.Action == "key.unwrapped" && ev.Target == rootKey:
			steps = append(steps, ev.Action)
		}
	}
	want := []string{"key.unwrapped", "key.retired", audit.ActionIntermediateRotated, "key.destroyed", audit.ActionIntermediateDestroyed}
	if !slices.Equal(steps, want) {
		t.Errorf("audited steps %v, want %v", steps, want)
	}
}

func ids(list []Issuer) []string {
	out := make([]string, len(list))
	for i, is := range list {
		out[i] = is.ID
	}
	return out
}

// TestRotateIntermediateRefusals: a successor that would outlive the root
// is capped at its notAfter, and one that would live under a day is
// refused, changing nothing.
func TestRotateIntermediateRefusals(t *testing.T) {
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	root := tc.Root().Cert
	tc.clk.Advance(root.NotAfter.Sub(tc.clk.Now()) - 30*24*time.Hour)
	rot, err := tc.Intermediates().RotateIntermediate(ctx, "test", "capped")
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Current.Cert.NotAfter.Equal(root.NotAfter) {
		t.Errorf("successor notAfter %s, want the root's %s", rot.Current.Cert.NotAfter, root.NotAfter)
	}
	tc.clk.Advance(30*24*time.Hour - time.Hour)
	active := tc.Intermediate().ID
	n := len(tc.Issuers())
	if _, err := tc.Intermediates().RotateIntermediate(ctx, "test", "too late"); KindOf(err) != Rejected || !strings.Contains(err.Error(), "renew the root") {
		t.Fatalf("rotation an hour before the root expires: %v, want Rejected", err)
	}
	if tc.Intermediate().ID != active || len(tc.Issuers()) != n {
		t.Error("a refused rotation changed the hierarchy")
	}
}
