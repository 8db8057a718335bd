package ca

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"

	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca/audit"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/internal/testkms"
	"github.com/sigil-ca/sigil/store"
)

// TestIntermediateInKMS initialises a CA whose intermediate key is created
// in local-kms, issues a certificate signed through KMS, verifies the chain,
// and opens the CA again from its records as a restarted server would.
func TestIntermediateInKMS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testkms.Start(t)
	keys := keybackend.NewKeys(keybackend.Config{})
	t.Cleanup(func() { _ = keys.Close() })
	k, err := keys.CreateOrLoad(ctx, "awskms:profile="+testkms.Profile+";credentials-file="+srv.ConfigFile(t), "sigil-intermediate", "ecdsa-p256")
	if err != nil {
		t.Fatalf("create the intermediate key in KMS: %v", err)
	}

	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("correct horse")
	res, err := Init(ctx, st, InitConfig{
		Name: "KMS CA", RootAlgorithm: keystore.ECDSAP256, BaseURL: "http://ca.test:8080",
		Passphrase: pass, KDF: params, Clock: clk,
		IntermediateKey: &BackendKey{Backend: string(keybackend.AWSKMS), URI: k.URI.String(), Signer: k.Signer},
		Backends:        keys,
	})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	if !publicKeyEqual(res.Intermediate.PublicKey, k.Public()) {
		t.Fatal("the intermediate certificate does not carry the KMS key")
	}
	cfg := Config{Profiles: DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := New(ctx, cfg, st, res.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	issue := func(a *Authority, name string) *x509.Certificate {
		t.Helper()
		iss, err := a.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", name), Profile: "tls-server", Channel: ChannelAPI})
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		leaf, err := x509.ParseCertificate(iss.Record.DER)
		if err != nil {
			t.Fatal(err)
		}
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(res.Root)
		inters.AddCert(res.Intermediate)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: clk.Now(), DNSName: name}); err != nil {
			t.Fatalf("chain of a certificate signed in KMS: %v", err)
		}
		if err := leaf.CheckSignatureFrom(res.Intermediate); err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	issue(a, "kms.example")

	// The inventory names the backend and URI, and holds no wrapped key.
	var intKeyID string
	issuers, err := st.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range issuers {
		if r.Kind == KindIntermediate {
			intKeyID = r.KeyID
		}
	}
	rec, err := st.Key(ctx, intKeyID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Backend != "awskms" || keystore.BackendURI(rec) != k.URI.String() || rec.KEKID != "" || len(rec.WrappedDEK) != 0 {
		t.Errorf("intermediate key record: backend %q, uri %q, kek %q", rec.Backend, keystore.BackendURI(rec), rec.KEKID)
	}

	// A restarted server unlocks the keystore; without the backends it
	// cannot open the intermediate, with them it signs again.
	ks, err := keystore.Unlock(ctx, st, clk, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, st, ks); err == nil || !strings.Contains(err.Error(), "no awskms backend is configured") {
		t.Fatalf("New without backends: %v", err)
	}
	ks.SetBackends(keys)
	a2, err := New(ctx, cfg, st, ks)
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	issue(a2, "again.example")

	// With KMS gone, issuance fails cleanly and records nothing.
	before, _, err := st.Certificates(ctx, store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = a2.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", "down.example"), Profile: "tls-server", Channel: ChannelAPI})
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != Unavailable || ce.RetryAfter == 0 {
		t.Fatalf("issuance with KMS stopped: %v, want Unavailable with a retry-after", err)
	}
	after, _, err := st.Certificates(ctx, store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d certificates recorded while KMS was down", len(after)-len(before))
	}

	// KMS comes back: the next issuance succeeds, with nothing restarted here.
	srv.Restart(t)
	issue(a2, "back.example")
}

// backendCA is a CA on a real SQLite file whose intermediate key is held in
// an HSM or KMS.
type backendCA struct {
	*Authority
	st  *store.SQLite
	clk *clockwork.FakeClock
	key *keybackend.Key
}

// newBackendCA initialises a CA whose intermediate key is created at uri
// through keys.
func newBackendCA(t testing.TB, keys *keybackend.Keys, uri string) *backendCA {
	t.Helper()
	ctx := context.Background()
	k, err := keys.CreateOrLoad(ctx, uri, "sigil-intermediate", "ecdsa-p256")
	if err != nil {
		t.Fatalf("create the intermediate key: %v", err)
	}
	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Init(ctx, st, InitConfig{
		Name: "Backend CA", RootAlgorithm: keystore.ECDSAP256, BaseURL: "http://ca.test:8080",
		Passphrase: []byte("correct horse"), KDF: params, Clock: clk,
		IntermediateKey: &BackendKey{Backend: string(k.URI.Kind), URI: k.URI.String(), Signer: k.Signer},
		Backends:        keys,
	})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: "http://ca.test:8080", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, res.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &backendCA{Authority: a, st: st, clk: clk, key: k}
}

// TestKMSIntermediateDestroyedAfterRotation rotates away from an
// intermediate held in local-kms and lets its last certificate expire (fake
// clock): its destruction schedules the KMS key's deletion, and the
// key.destroyed event records the date and window.
func TestKMSIntermediateDestroyedAfterRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testkms.Start(t)
	keys := keybackend.NewKeys(keybackend.Config{})
	t.Cleanup(func() { _ = keys.Close() })
	tc := newBackendCA(t, keys, "awskms:profile="+testkms.Profile+";credentials-file="+srv.ConfigFile(t))
	old := tc.Intermediate()
	iss, err := tc.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", "old.example"), Profile: "tls-server", Channel: ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := tc.Intermediates().RotateIntermediate(ctx, "test", "scheduled")
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if tc.Intermediate().ID == old.ID {
		t.Fatal("rotation kept the old intermediate active")
	}
	// The successor was created in the same KMS, and issues through it.
	succ, err := tc.st.Key(ctx, rot.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	succURI, err := keybackend.ParseURI(keystore.BackendURI(succ))
	if err != nil || succ.Backend != "awskms" || succURI.KeyID == "" || succURI.KeyID == tc.key.URI.KeyID ||
		succURI.CredentialsFile != tc.key.URI.CredentialsFile {
		t.Fatalf("successor key: backend %s, uri %s (%v)", succ.Backend, keystore.BackendURI(succ), err)
	}
	succSigner, err := keys.LoadSigner(ctx, "awskms", succURI.String())
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(succSigner.Public(), tc.Intermediate().Cert.PublicKey) {
		t.Fatal("the new intermediate certificate does not carry the successor KMS key")
	}
	newLeaf, err := tc.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", "new.example"), Profile: "tls-server", Channel: ChannelAPI})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := x509.ParseCertificate(newLeaf.Record.DER); err != nil || c.CheckSignatureFrom(tc.Intermediate().Cert) != nil {
		t.Fatalf("a certificate from the successor does not verify: %v", err)
	}
	grace := 24 * time.Hour
	tc.clk.Advance(iss.Record.NotAfter.Sub(tc.clk.Now()) + 2*grace)
	gone, err := tc.Intermediates().RetireIntermediates(ctx, "test", grace)
	if err != nil || !slices.Equal(gone, []string{old.ID}) {
		t.Fatalf("retire: destroyed %v, %v; want %s", gone, err, old.ID)
	}
	if _, err := keys.LoadSigner(ctx, "awskms", tc.key.URI.String()); err == nil || !strings.Contains(err.Error(), "PendingDeletion") {
		t.Errorf("the old intermediate's KMS key after destruction: %v, want PendingDeletion", err)
	}
	var destroyed *audit.Event
	err = tc.st.ScanAudit(ctx, func(e audit.Event) error {
		if e.Action == audit.ActionKeyDestroyed && e.Detail["backend"] == "awskms" {
			destroyed = &e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if destroyed == nil || destroyed.Detail["backend_destruction"] != "ScheduleKeyDeletion" || destroyed.Detail["pending_days"] != "30" ||
		destroyed.Detail["deletion_date"] == "" || destroyed.Detail["uri"] != tc.key.URI.String() {
		t.Fatalf("key.destroyed event: %+v", destroyed)
	}
}
