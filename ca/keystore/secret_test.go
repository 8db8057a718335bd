package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
)

func TestSealSecretRoundTrip(t *testing.T) {
	kek, _ := newTestKEK(t, "kek-1", "secret test passphrase")
	secret := bytes.Repeat([]byte{0xA5}, 32)
	s, err := SealSecret(context.Background(), rand.Reader, kek, "eab-1", secret)
	if err != nil {
		t.Fatalf("SealSecret: %v", err)
	}
	if bytes.Contains(s.Ciphertext, secret) || bytes.Contains(s.WrappedDEK, secret) {
		t.Fatal("sealed form contains the plaintext secret")
	}
	got, err := OpenSecret(context.Background(), kek, "eab-1", s)
	if err != nil {
		t.Fatalf("OpenSecret: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("OpenSecret returned a different secret")
	}

	// Bound to its key id, and re-wrappable like a private key.
	if _, err := OpenSecret(context.Background(), kek, "eab-2", s); err == nil {
		t.Error("OpenSecret under another key id succeeded")
	}
	kek2, _ := newTestKEK(t, "kek-2", "another passphrase")
	re, err := Rewrap(context.Background(), rand.Reader, kek, kek2, "eab-1", s)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if got, err := OpenSecret(context.Background(), kek2, "eab-1", re); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("OpenSecret after rewrap: %v", err)
	}
	if _, err := OpenSecret(context.Background(), kek, "eab-1", re); err == nil {
		t.Error("the old KEK opened a re-wrapped secret")
	}
}

// A sealed secret must never open as a private key, nor a private key as a
// secret: the associated data differs.
func TestSecretAndKeyDoNotCross(t *testing.T) {
	kek, _ := newTestKEK(t, "kek-1", "cross test passphrase")
	s, err := SealSecret(context.Background(), rand.Reader, kek, "k-1", bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), kek, "k-1", s); err == nil {
		t.Error("Open accepted a sealed secret")
	}
	key, err := Generate(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := Seal(context.Background(), rand.Reader, kek, "k-2", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSecret(context.Background(), kek, "k-2", sk); err == nil {
		t.Error("OpenSecret accepted a sealed private key")
	}
}

func TestSealSecretInvalid(t *testing.T) {
	kek, _ := newTestKEK(t, "kek-1", "invalid test passphrase")
	for name, call := range map[string]func() error{
		"nil kek": func() error {
			_, err := SealSecret(context.Background(), rand.Reader, nil, "x", []byte("s"))
			return err
		},
		"empty id": func() error {
			_, err := SealSecret(context.Background(), rand.Reader, kek, "", []byte("s"))
			return err
		},
		"empty secret": func() error { _, err := SealSecret(context.Background(), rand.Reader, kek, "x", nil); return err },
	} {
		err := call()
		if err == nil || !strings.Contains(err.Error(), "seal secret") {
			t.Errorf("%s: got %v, want a seal secret error", name, err)
		}
	}
}
