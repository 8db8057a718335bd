package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/internal/testkms"
)

// kmsKEK starts local-kms and returns a remote KEK named id on a new KMS
// key, with the server to stop.
func kmsKEK(t *testing.T, id string) (*KEK, *testkms.Server) {
	t.Helper()
	ctx := context.Background()
	srv := testkms.Start(t)
	conn, err := keybackend.ParseURI("awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := keybackend.Open(ctx, conn, keybackend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	u, err := b.CreateKEK(ctx, "sigil-"+id)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := b.KEK(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := NewRemoteKEK(id, remote)
	if err != nil {
		t.Fatal(err)
	}
	return kek, srv
}

// TestRemoteKEK moves a key from a passphrase KEK to a KEK in local-kms and
// back with Rewrap: the key's ciphertext never changes, it opens under each
// KEK in turn, and the KMS-wrapped data key is bound to the key id.
func TestRemoteKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote, _ := kmsKEK(t, "kek-kms-1")
	params, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	local, _, err := NewKEK(rand.Reader, "kek-1", []byte("correct horse"), params, testclock.At(testclock.Default))
	if err != nil {
		t.Fatal(err)
	}
	key, err := Generate(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Seal(ctx, rand.Reader, local, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Rewrap(ctx, rand.Reader, local, remote, "key-1", s1)
	if err != nil {
		t.Fatalf("rewrap to the KMS KEK: %v", err)
	}
	if s2.KEKID != "kek-kms-1" || !bytes.Equal(s2.Ciphertext, s1.Ciphertext) {
		t.Fatalf("rewrapped record names %s, ciphertext changed: %v", s2.KEKID, !bytes.Equal(s2.Ciphertext, s1.Ciphertext))
	}
	opened, err := Open(ctx, remote, "key-1", s2)
	if err != nil {
		t.Fatalf("open under the KMS KEK: %v", err)
	}
	if !opened.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("opened another key")
	}
	digest := sha256.Sum256([]byte("remote"))
	if _, err := opened.Sign(rand.Reader, digest[:], nil); err != nil {
		t.Fatal(err)
	}

	// The wrapped data key is bound to key-1 and to this KEK.
	if _, err := Open(ctx, remote, "key-2", s2); err == nil {
		t.Error("a KMS-wrapped data key opened under another key id")
	}
	if _, err := Open(ctx, local, "key-1", s2); err == nil {
		t.Error("a KMS-wrapped record opened under the passphrase KEK")
	}
	other, _ := kmsKEK(t, "kek-kms-2")
	moved := s2
	moved.KEKID = "kek-kms-2"
	if _, err := Open(ctx, other, "key-1", moved); err == nil {
		t.Error("a data key wrapped by one KMS key opened under another")
	}

	// And back to the passphrase KEK.
	s3, err := Rewrap(ctx, rand.Reader, remote, local, "key-1", s2)
	if err != nil {
		t.Fatalf("rewrap back: %v", err)
	}
	if _, err := Open(ctx, local, "key-1", s3); err != nil || !bytes.Equal(s3.Ciphertext, s1.Ciphertext) {
		t.Fatalf("open after moving back: %v", err)
	}

	// Secrets seal under a remote KEK the same way.
	secret := []byte("0123456789abcdef0123456789abcdef")
	ss, err := SealSecret(ctx, rand.Reader, remote, "eab-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenSecret(ctx, remote, "eab-1", ss)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("secret under the KMS KEK: %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v", remote, remote, *remote); s != "REDACTED REDACTED REDACTED" {
		t.Errorf("a remote KEK formats as %q", s)
	}
}

// TestRemoteKEKUnavailable stops local-kms: opening a key fails with an
// error that says the backend is unavailable, and nothing panics.
func TestRemoteKEKUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote, srv := kmsKEK(t, "kek-kms-1")
	key, err := Generate(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Seal(ctx, rand.Reader, remote, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := Open(ctx, remote, "key-1", s); !errors.Is(err, keybackend.ErrUnavailable) {
		t.Errorf("open with KMS stopped: %v, want ErrUnavailable", err)
	}
	if _, err := Seal(ctx, rand.Reader, remote, "key-2", key); !errors.Is(err, keybackend.ErrUnavailable) {
		t.Errorf("seal with KMS stopped: %v, want ErrUnavailable", err)
	}
	// A cancelled context stops a call too.
	cctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-cctx.Done()
	if _, err := Open(cctx, remote, "key-1", s); err == nil {
		t.Error("open with a cancelled context succeeded")
	}
}

func TestNewRemoteKEKChecks(t *testing.T) {
	t.Parallel()
	if _, err := NewRemoteKEK("kek:1", nil); err == nil {
		t.Error("a KEK id with ':' accepted")
	}
	if _, err := NewRemoteKEK("kek-1", nil); err == nil {
		t.Error("a nil backend accepted")
	}
}
