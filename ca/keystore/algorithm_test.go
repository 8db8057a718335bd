package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"sync"
	"testing"
)

// testKeys generates one key per algorithm, lazily and at most once per test
// binary, so that tests in several files share the slow RSA-4096 key. The map
// is never written after initialisation.
var testKeys = func() map[Algorithm]func() (crypto.Signer, error) {
	m := make(map[Algorithm]func() (crypto.Signer, error))
	for _, alg := range Algorithms() {
		m[alg] = sync.OnceValues(func() (crypto.Signer, error) { return Generate(alg) })
	}
	return m
}()

func testKey(t testing.TB, alg Algorithm) crypto.Signer {
	t.Helper()
	gen, ok := testKeys[alg]
	if !ok {
		t.Fatalf("no test key for %s", alg)
	}
	key, err := gen()
	if err != nil {
		t.Fatalf("Generate(%s): %v", alg, err)
	}
	return key
}

func TestAlgorithmsDefaultFirst(t *testing.T) {
	t.Parallel()
	algs := Algorithms()
	if len(algs) != 6 {
		t.Fatalf("Algorithms() = %v, want 6 algorithms", algs)
	}
	if algs[0] != ECDSAP256 {
		t.Errorf("Algorithms()[0] = %s, want %s", algs[0], ECDSAP256)
	}
	algs[0] = "mutated"
	if got := Algorithms()[0]; got != ECDSAP256 {
		t.Errorf("Algorithms() shares its slice: [0] = %s after caller mutation", got)
	}
}

func TestAlgorithmGenerateRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		alg     Algorithm
		wantRSA int
	}{
		{ECDSAP256, 0},
		{ECDSAP384, 0},
		{RSA2048, 2048},
		{RSA3072, 3072},
		{RSA4096, 4096},
		{Ed25519, 0},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			t.Parallel()
			key := testKey(t, tt.alg)
			got, err := AlgorithmOf(key.Public())
			if err != nil {
				t.Fatalf("AlgorithmOf: %v", err)
			}
			if got != tt.alg {
				t.Errorf("AlgorithmOf = %s, want %s", got, tt.alg)
			}
			if got := RSABits(key.Public()); got != tt.wantRSA {
				t.Errorf("RSABits = %d, want %d", got, tt.wantRSA)
			}
		})
	}
}

func TestAlgorithmGenerateUnknown(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{"", "rsa-1024", "rsa-2304", "ecdsa-p521", "ECDSA-P256", "x25519"} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			if key, err := Generate(alg); err == nil {
				t.Errorf("Generate(%q) = %T, want error", alg, key)
			}
		})
	}
}

func TestAlgorithmParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Algorithm
		wantErr bool
	}{
		{in: "ecdsa-p256", want: ECDSAP256},
		{in: "ECDSA-P384", want: ECDSAP384},
		{in: "Rsa-2048", want: RSA2048},
		{in: "rsa-3072", want: RSA3072},
		{in: "RSA-4096", want: RSA4096},
		{in: "Ed25519", want: Ed25519},
		{in: "", wantErr: true},
		{in: "rsa-1024", wantErr: true},
		{in: "ecdsa-p521", wantErr: true},
		{in: " ed25519", wantErr: true},
		{in: "p256", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAlgorithm(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseAlgorithm(%q) = %s, want error", tt.in, got)
				}
				for _, a := range Algorithms() {
					if !strings.Contains(err.Error(), string(a)) {
						t.Errorf("error %q does not list %s", err, a)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAlgorithm(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseAlgorithm(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestAlgorithmOfOther(t *testing.T) {
	t.Parallel()
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// 2304 bits: a size Sigil does not generate but may find in an imported key.
	rsa2304, err := rsa.GenerateKey(rand.Reader, 2304)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		want    Algorithm
		wantRSA int
		wantErr bool
	}{
		{name: "p521", pub: &p521.PublicKey, want: "ecdsa-p521"},
		{name: "rsa2304", pub: &rsa2304.PublicKey, want: "rsa-2304", wantRSA: 2304},
		{name: "p224", pub: &p224.PublicKey, wantErr: true},
		{name: "ed25519 private key", pub: edPriv, wantErr: true},
		{name: "short ed25519", pub: ed25519.PublicKey(make([]byte, 31)), wantErr: true},
		{name: "ecdsa by value", pub: p521.PublicKey, wantErr: true},
		{name: "nil rsa", pub: (*rsa.PublicKey)(nil), wantErr: true},
		{name: "nil ecdsa", pub: (*ecdsa.PublicKey)(nil), wantErr: true},
		{name: "nil", pub: nil, wantErr: true},
		{name: "string", pub: "not a key", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := AlgorithmOf(tt.pub)
			if tt.wantErr {
				if err == nil {
					t.Errorf("AlgorithmOf = %s, want error", got)
				}
			} else if err != nil {
				t.Errorf("AlgorithmOf: %v", err)
			} else if got != tt.want {
				t.Errorf("AlgorithmOf = %s, want %s", got, tt.want)
			}
			if got := RSABits(tt.pub); got != tt.wantRSA {
				t.Errorf("RSABits = %d, want %d", got, tt.wantRSA)
			}
		})
	}
}
