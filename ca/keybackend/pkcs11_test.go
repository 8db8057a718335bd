//go:build cgo && !nopkcs11

package keybackend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-ca/sigil/internal/testhsm"
)

// openToken gives the test a fresh SoftHSM token and a backend open on it.
func openToken(t testing.TB, label, extra string) (*testhsm.Token, *Backend, URI) {
	t.Helper()
	tk := testhsm.New(t, label)
	u, err := ParseURI("pkcs11:module-path=" + tk.ModulePath + ";token=" + label + ";object=conn" + extra + "?pin-source=" + tk.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), u, Config{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tk, b, u
}

func keyURI(t *testing.T, conn URI, object string) URI {
	t.Helper()
	u := conn
	u.Object = object
	return u
}

func TestPKCS11CreateSignAttest(t *testing.T) {
	ctx := context.Background()
	_, b, conn := openToken(t, "sign", "")
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			k, err := b.Create(ctx, keyURI(t, conn, "key-"+alg), "", alg)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if len(k.URI.ID) != idSize {
				t.Errorf("created key has CKA_ID of %d bytes, want %d", len(k.URI.ID), idSize)
			}
			wantKey(t, k.Public(), alg)
			if err := checkSigns(t, k.Signer); err != nil {
				t.Fatal(err)
			}
			// The URI Create returned finds the same key again.
			again, err := ParseURI(k.URI.String())
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := b.Load(ctx, again)
			if err != nil {
				t.Fatalf("load %s: %v", again, err)
			}
			if !samePublic(loaded.Public(), k.Public()) {
				t.Fatal("loaded key differs from the created one")
			}
			if err := checkSigns(t, loaded.Signer); err != nil {
				t.Fatal(err)
			}
			a, err := b.Attest(ctx, k.URI, k.Public())
			if err != nil {
				t.Fatalf("attest: %v", err)
			}
			if !a.NonExtractable || !a.NeverExtractable {
				t.Errorf("attestation %+v: want non-extractable, never extractable", a)
			}
			if want, _ := Fingerprint(k.Public()); a.Fingerprint != want || a.Kind != PKCS11 {
				t.Errorf("attestation %+v, want fingerprint %s", a, want)
			}
			if !strings.Contains(a.Detail, "CKA_EXTRACTABLE=false") || !strings.Contains(a.Detail, "CKA_SENSITIVE=true") {
				t.Errorf("detail %q", a.Detail)
			}
		})
	}
	// An attestation against another recorded public key fails.
	p256, err := b.Load(ctx, keyURI(t, conn, "key-ecdsa-p256"))
	if err != nil {
		t.Fatal(err)
	}
	p384, err := b.Load(ctx, keyURI(t, conn, "key-ecdsa-p384"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attest(ctx, p256.URI, p384.Public()); err == nil || !strings.Contains(err.Error(), "Sigil recorded") {
		t.Errorf("attest against the wrong public key: %v", err)
	}
}

func TestPKCS11RefusesDuplicateLabelAndEd25519(t *testing.T) {
	ctx := context.Background()
	_, b, conn := openToken(t, "dup", "")
	if _, err := b.Create(ctx, keyURI(t, conn, "k"), "", "ecdsa-p256"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, keyURI(t, conn, "k"), "", "ecdsa-p256"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second key with the same label: %v", err)
	}
	if _, err := b.Create(ctx, keyURI(t, conn, "e"), "", "ed25519"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("ed25519: %v", err)
	}
}

func TestPKCS11Destroy(t *testing.T) {
	ctx := context.Background()
	_, b, conn := openToken(t, "destroy", "")
	k, err := b.Create(ctx, keyURI(t, conn, "doomed"), "", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	keep, err := b.Create(ctx, keyURI(t, conn, "kept"), "", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.Destroy(ctx, k.URI, 0)
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if !d.Immediate || !d.DeletionDate.IsZero() {
		t.Errorf("destruction %+v, want immediate", d)
	}
	if _, err := b.Load(ctx, k.URI); !errors.Is(err, ErrNotFound) {
		t.Errorf("load after destroy: %v, want ErrNotFound", err)
	}
	if _, err := b.Destroy(ctx, k.URI, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("second destroy: %v, want ErrNotFound", err)
	}
	if _, err := b.Attest(ctx, k.URI, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("attest after destroy: %v, want ErrNotFound", err)
	}
	// The other key is untouched.
	if err := checkSigns(t, keep.Signer); err != nil {
		t.Errorf("the other key after a destroy: %v", err)
	}
}

// TestPKCS11ConcurrentSigning signs from 32 goroutines through a pool capped
// at max-sessions=3: crypto11 keeps one session for the login, so two pooled
// sessions serve all 32 signers.
func TestPKCS11ConcurrentSigning(t *testing.T) {
	ctx := context.Background()
	_, b, conn := openToken(t, "pool", ";max-sessions=3")
	k, err := b.Create(ctx, keyURI(t, conn, "busy"), "", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if err := checkSigns(t, k.Signer); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPKCS11OpenErrors(t *testing.T) {
	ctx := context.Background()
	tk := testhsm.New(t, "errs")
	base := "pkcs11:module-path=" + tk.ModulePath + ";token=errs;object=k"
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongPIN := "wrong-" + tk.PIN()
	tests := []struct {
		name, uri string
		cfg       Config
		want      string
	}{
		{"wrong PIN", base + "?pin-source=" + write("wrong.pin", wrongPIN, 0o600), Config{}, "CKR_PIN_INCORRECT"},
		{"wrong PIN from the environment", base, Config{PIN: []byte(wrongPIN)}, "CKR_PIN_INCORRECT"},
		{"missing token", strings.Replace(base, "token=errs", "token=absent", 1) + "?pin-source=" + tk.PINFile, Config{}, "absent"},
		{"missing module", strings.Replace(base, tk.ModulePath, "/nonexistent/libpkcs11.so", 1) + "?pin-source=" + tk.PINFile, Config{}, "/nonexistent/libpkcs11.so"},
		{"PIN file readable by others", base + "?pin-source=" + write("open.pin", tk.PIN(), 0o644), Config{}, "chmod 600"},
		{"PIN file missing", base + "?pin-source=/nonexistent/pin", Config{}, "no such file"},
		{"no PIN at all", base, Config{}, "SIGIL_HSM_PIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(ctx, u, tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "open pkcs11") {
				t.Errorf("error %q: want the prefix %q and %q", msg, "open pkcs11", tc.want)
			}
			if strings.Contains(msg, tk.PIN()) {
				t.Errorf("error holds the PIN: %q", msg)
			}
		})
	}
}

func TestPKCS11PINFromConfig(t *testing.T) {
	ctx := context.Background()
	tk := testhsm.New(t, "envpin")
	u, err := ParseURI("pkcs11:module-path=" + tk.ModulePath + ";token=envpin;object=k")
	if err != nil {
		t.Fatal(err)
	}
	pin := []byte(tk.PIN())
	b, err := Open(ctx, u, Config{PIN: pin})
	if err != nil {
		t.Fatalf("open with the PIN from the environment: %v", err)
	}
	defer b.Close()
	clear(pin) // Open keeps no reference to the caller's buffer.
	k, err := b.Create(ctx, u, "", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSigns(t, k.Signer); err != nil {
		t.Fatal(err)
	}
}

// TestKeysCreateLoadDestroy goes through Keys, as the keystore does: create
// by URI, load by the recorded URI, destroy twice (the second finds it gone
// and says so rather than failing, so a retry after a failed record works).
func TestKeysCreateLoadDestroy(t *testing.T) {
	ctx := context.Background()
	tk := testhsm.New(t, "keys")
	keys := NewKeys(Config{})
	defer keys.Close()
	k, err := keys.CreateOrLoad(ctx, tk.URI("intermediate"), "", "ecdsa-p384")
	if err != nil {
		t.Fatal(err)
	}
	again, err := keys.CreateOrLoad(ctx, tk.URI("intermediate"), "", "ecdsa-p384")
	if err != nil || !samePublic(again.Public(), k.Public()) {
		t.Fatalf("a second CreateOrLoad did not find the key: %v", err)
	}
	s, err := keys.LoadSigner(ctx, "pkcs11", k.URI.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSigns(t, s); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.LoadSigner(ctx, "awskms", k.URI.String()); err == nil {
		t.Error("a pkcs11 URI loaded as backend awskms")
	}
	// A successor on the same token, under a fresh label.
	succ, succURI, err := keys.CreateLike(ctx, "pkcs11", k.URI.String(), "sigil-intermediate", "ecdsa-p256")
	if err != nil {
		t.Fatalf("create like: %v", err)
	}
	su, err := ParseURI(succURI)
	if err != nil || su.Token != k.URI.Token || !strings.HasPrefix(su.Object, "sigil-intermediate-") || len(su.ID) == 0 || samePublic(succ.Public(), k.Public()) {
		t.Fatalf("successor %s (%v)", succURI, err)
	}
	if err := checkSigns(t, succ); err != nil {
		t.Fatal(err)
	}
	d, err := keys.DestroyKey(ctx, "pkcs11", k.URI.String())
	if err != nil || d["backend_destruction"] != "C_DestroyObject" {
		t.Fatalf("destroy: %v, %v", d, err)
	}
	d, err = keys.DestroyKey(ctx, "pkcs11", k.URI.String())
	if err != nil || !strings.Contains(d["backend_destruction"], "already absent") {
		t.Fatalf("second destroy: %v, %v", d, err)
	}
	if _, err := keys.LoadSigner(ctx, "pkcs11", k.URI.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("load after destroy: %v", err)
	}
	if err := keys.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.LoadSigner(ctx, "pkcs11", k.URI.String()); err == nil {
		t.Error("load after Close")
	}
}
