package keystore

import (
	"context"
	"crypto/rand"
	"testing"
)

// BenchmarkOpenKEK measures unlocking a KEK with DefaultKDFParams: the
// Argon2id cost paid at startup and by every passphrase check.
func BenchmarkOpenKEK(b *testing.B) {
	params, err := DefaultKDFParams(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	pass := []byte("benchmark passphrase")
	_, rec, err := NewKEK(rand.Reader, "kek-1", pass, params, testNow)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenKEK(pass, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpen measures sealing and reopening a P-256 key, the envelope
// work done per key stored and per key loaded for signing.
func BenchmarkSealOpen(b *testing.B) {
	kek, _ := newTestKEK(b, "kek-1", "benchmark")
	key := testKey(b, ECDSAP256)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(context.Background(), kek, "key-1", s); err != nil {
			b.Fatal(err)
		}
	}
}
