package keybackend

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/sigil-ca/sigil/internal/testkms"
)

// openKMS starts local-kms for the test and opens a backend on it.
func openKMS(t testing.TB) (*testkms.Server, *Backend, URI) {
	t.Helper()
	srv := testkms.Start(t)
	conn, err := ParseURI("awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), conn, Config{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return srv, b, conn
}

func TestAWSCreateSignAttest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, b, conn := openKMS(t)
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			k, err := b.Create(ctx, conn, "sigil-"+alg, alg)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if k.URI.KeyID == "" || k.URI.CredentialsFile != conn.CredentialsFile {
				t.Fatalf("created key's URI %s lacks its key id or connection", k.URI)
			}
			wantKey(t, k.Public(), alg)
			if err := checkSigns(t, k.Signer); err != nil {
				t.Fatal(err)
			}
			// By the recorded URI, and by the alias awskms gave it.
			again, err := ParseURI(k.URI.String())
			if err != nil {
				t.Fatal(err)
			}
			byAlias := conn
			byAlias.KeyID = "alias/sigil-" + alg + "-" + k.URI.KeyID[:8]
			for _, u := range []URI{again, byAlias} {
				loaded, err := b.Load(ctx, u)
				if err != nil {
					t.Fatalf("load %s: %v", u, err)
				}
				if !samePublic(loaded.Public(), k.Public()) || loaded.URI.KeyID != k.URI.KeyID {
					t.Fatalf("load %s gave another key (%s)", u, loaded.URI)
				}
				if err := checkSigns(t, loaded.Signer); err != nil {
					t.Fatal(err)
				}
			}
			a, err := b.Attest(ctx, k.URI, k.Public())
			if err != nil {
				t.Fatalf("attest: %v", err)
			}
			if !a.NonExtractable || !a.NeverExtractable || a.Kind != AWSKMS || !strings.Contains(a.Detail, "KeyState=Enabled") {
				t.Errorf("attestation %+v", a)
			}
		})
	}
}

func TestAWSDestroySchedulesDeletion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, b, conn := openKMS(t)
	k, err := b.Create(ctx, conn, "doomed", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Destroy(ctx, k.URI, 3); err == nil || !strings.Contains(err.Error(), "7 to 30") {
		t.Errorf("a 3-day window: %v", err)
	}
	d, err := b.Destroy(ctx, k.URI, 7)
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if d.Immediate || d.PendingDays != 7 || d.DeletionDate.IsZero() {
		t.Errorf("destruction %+v, want pending 7 days with a date", d)
	}
	md, err := b.aws.describe(ctx, k.URI.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if md.KeyState != types.KeyStatePendingDeletion || !aws.ToTime(md.DeletionDate).Equal(d.DeletionDate) {
		t.Errorf("KMS says %s, deletion %v; Destroy returned %v", md.KeyState, aws.ToTime(md.DeletionDate), d.DeletionDate)
	}
	again, err := b.Destroy(ctx, k.URI, 7)
	if err != nil || !again.DeletionDate.Equal(d.DeletionDate) || again.PendingDays != 7 {
		t.Errorf("a second destroy: %+v, %v; want the first schedule %+v", again, err, d)
	}
	if _, err := b.Load(ctx, k.URI); err == nil || !strings.Contains(err.Error(), "PendingDeletion") {
		t.Errorf("load of a key pending deletion: %v", err)
	}
	if _, err := k.Signer.Sign(rand.Reader, make([]byte, 32), nil); err == nil {
		t.Error("a key pending deletion still signs")
	}
}

func TestAWSLoadErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, b, conn := openKMS(t)
	kek, err := b.CreateKEK(ctx, "not-for-signing")
	if err != nil {
		t.Fatal(err)
	}
	missing := conn
	missing.KeyID = "00000000-0000-4000-8000-000000000000"
	if _, err := b.Load(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("load of an absent key: %v, want ErrNotFound", err)
	}
	if _, err := b.Load(ctx, kek); err == nil || !strings.Contains(err.Error(), "usage ENCRYPT_DECRYPT") {
		t.Errorf("load of an encryption key as a signer: %v", err)
	}
	if _, err := b.Load(ctx, conn); err == nil || !strings.Contains(err.Error(), "names no key") {
		t.Errorf("load without a key id: %v", err)
	}
	withID := conn
	withID.KeyID = "alias/x"
	if _, err := b.Create(ctx, withID, "x", "ecdsa-p256"); err == nil {
		t.Error("create with a key id accepted")
	}
	if _, err := b.Create(ctx, conn, "bad name!", "ecdsa-p256"); err == nil {
		t.Error("create with a bad name accepted")
	}
}

// TestAWSUnreachable stops local-kms under an open backend and a loaded
// signer: every call fails with a wrapped ErrUnavailable, none panics.
func TestAWSUnreachable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, b, conn := openKMS(t)
	k, err := b.Create(ctx, conn, "stranded", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	kekURI, err := b.CreateKEK(ctx, "stranded-kek")
	if err != nil {
		t.Fatal(err)
	}
	kek, err := b.KEK(ctx, kekURI)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	if _, err := k.Signer.Sign(rand.Reader, make([]byte, 32), nil); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "awskms Sign failed") {
		t.Errorf("sign with KMS stopped: %v, want ErrUnavailable", err)
	}
	checks := map[string]func() error{
		"load":    func() error { _, err := b.Load(ctx, k.URI); return err },
		"attest":  func() error { _, err := b.Attest(ctx, k.URI, k.Public()); return err },
		"destroy": func() error { _, err := b.Destroy(ctx, k.URI, 7); return err },
		"wrap":    func() error { _, err := kek.Wrap(ctx, "key-1", make([]byte, 32)); return err },
		"unwrap":  func() error { _, err := kek.Unwrap(ctx, "key-1", make([]byte, 64)); return err },
		"kek":     func() error { _, err := b.KEK(ctx, kekURI); return err },
	}
	for name, f := range checks {
		err := f()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with KMS stopped: %v, want ErrUnavailable", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestKMSKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, b, conn := openKMS(t)
	u, err := b.CreateKEK(ctx, "sigil-kek")
	if err != nil {
		t.Fatalf("create kek: %v", err)
	}
	kek, err := b.KEK(ctx, u)
	if err != nil {
		t.Fatalf("open kek: %v", err)
	}
	otherURI, err := b.CreateKEK(ctx, "other-kek")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.KEK(ctx, otherURI)
	if err != nil {
		t.Fatal(err)
	}
	// The alias CreateKEK made opens the same key.
	byAlias := conn
	byAlias.KeyID = "alias/sigil-kek"
	aliased, err := b.KEK(ctx, byAlias)
	if err != nil || aliased.URI().KeyID != kek.URI().KeyID {
		t.Fatalf("kek by alias: %v, %v", aliased, err)
	}

	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		t.Fatal(err)
	}
	wrapped, err := kek.Wrap(ctx, "key-1", dek)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	if bytes.Contains(wrapped, dek) {
		t.Fatal("the wrapped data key contains the data key")
	}
	got, err := aliased.Unwrap(ctx, "key-1", wrapped)
	if err != nil {
		t.Fatalf("unwrap: %v", err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("unwrap returned another data key")
	}
	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	for name, f := range map[string]func() error{
		"another sigil key id": func() error { _, err := kek.Unwrap(ctx, "key-2", wrapped); return err },
		"another KMS key":      func() error { _, err := other.Unwrap(ctx, "key-1", wrapped); return err },
		"altered blob":         func() error { _, err := kek.Unwrap(ctx, "key-1", tampered); return err },
		"empty key id":         func() error { _, err := kek.Unwrap(ctx, "", wrapped); return err },
		"short data key":       func() error { _, err := kek.Wrap(ctx, "key-1", dek[:16]); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v is not a refusal", name, err)
		}
	}

	// A signing key is not a KEK, and a disabled KEK is refused.
	signing, err := b.Create(ctx, conn, "signer", "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.KEK(ctx, signing.URI); err == nil || !strings.Contains(err.Error(), "usage SIGN_VERIFY") {
		t.Errorf("signing key as a KEK: %v", err)
	}
	if _, err := b.aws.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(otherURI.KeyID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.KEK(ctx, otherURI); err == nil || !strings.Contains(err.Error(), "Disabled") {
		t.Errorf("disabled KEK: %v", err)
	}
}
