package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// signAndVerify signs a message with key and checks it against pub.
func signAndVerify(t *testing.T, key crypto.Signer, pub crypto.PublicKey) {
	t.Helper()
	msg := []byte("sigil test message")
	digest := sha256.Sum256(msg)
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		sig, err := key.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Errorf("Ed25519 signature does not verify")
		}
	case *ecdsa.PublicKey:
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Errorf("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			t.Errorf("RSA signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected public key type %T", pub)
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// rawSecrets returns the private scalar material of key, by name.
func rawSecrets(t *testing.T, key crypto.Signer) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out["ecdsa d"] = d
	case *rsa.PrivateKey:
		out["rsa d"] = k.D.Bytes()
		for i, p := range k.Primes {
			out[fmt.Sprintf("rsa prime %d", i)] = p.Bytes()
		}
	case ed25519.PrivateKey:
		out["ed25519 seed"] = k.Seed()
	default:
		t.Fatalf("unexpected key type %T", key)
	}
	return out
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	kek, _ := newTestKEK(t, "kek-1", "round-trip")
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key := testKey(t, alg)
			keyID := "key-" + string(alg)
			s, err := Seal(context.Background(), rand.Reader, kek, keyID, key)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if s.KEKID != "kek-1" {
				t.Errorf("KEKID = %q, want kek-1", s.KEKID)
			}
			if got, want := len(s.WrappedDEK), 12+32+16; got != want {
				t.Errorf("len(WrappedDEK) = %d, want %d", got, want)
			}
			opened, err := Open(context.Background(), kek, keyID, s)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if fmt.Sprintf("%T", opened) != fmt.Sprintf("%T", key) {
				t.Errorf("opened a %T, sealed a %T", opened, key)
			}
			if !publicEqual(opened.Public(), key.Public()) {
				t.Errorf("opened public key differs from the original")
			}
			if got, err := AlgorithmOf(opened.Public()); err != nil || got != alg {
				t.Errorf("AlgorithmOf(opened) = %s, %v; want %s", got, err, alg)
			}
			signAndVerify(t, opened, key.Public())
		})
	}
}

func TestSealFresh(t *testing.T) {
	t.Parallel()
	kek, _ := newTestKEK(t, "kek-1", "fresh")
	key := testKey(t, ECDSAP256)
	a, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Ciphertext, b.Ciphertext) || bytes.Equal(a.WrappedDEK, b.WrappedDEK) {
		t.Errorf("sealing the same key twice gave equal bytes")
	}
	dekA, err := unwrapDEK(context.Background(), kek, "key-1", a)
	if err != nil {
		t.Fatal(err)
	}
	dekB, err := unwrapDEK(context.Background(), kek, "key-1", b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(dekA, dekB) {
		t.Errorf("two seals share a data key")
	}
}

// notMarshalable is a Signer that PKCS#8 cannot encode.
type notMarshalable struct{ crypto.Signer }

func TestSealInvalid(t *testing.T) {
	t.Parallel()
	kek, _ := newTestKEK(t, "kek-1", "invalid")
	key := testKey(t, ECDSAP256)
	tests := []struct {
		name  string
		rand  io.Reader
		kek   *KEK
		keyID string
		key   crypto.Signer
	}{
		{name: "nil kek", rand: rand.Reader, keyID: "key-1", key: key},
		{name: "empty key id", rand: rand.Reader, kek: kek, key: key},
		{name: "nil key", rand: rand.Reader, kek: kek, keyID: "key-1"},
		{name: "unknown key type", rand: rand.Reader, kek: kek, keyID: "key-1", key: notMarshalable{key}},
		{name: "failing rand", rand: errReader{}, kek: kek, keyID: "key-1", key: key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if s, err := Seal(context.Background(), tt.rand, tt.kek, tt.keyID, tt.key); err == nil {
				t.Errorf("Seal = %+v, want error", s)
			}
		})
	}
}

func TestOpenWrongKeyID(t *testing.T) {
	t.Parallel()
	kek, _ := newTestKEK(t, "kek-1", "key-id")
	key := testKey(t, ECDSAP256)
	s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"key-2", "key-", "key-1 ", "KEY-1", ""} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			if k, err := Open(context.Background(), kek, id, s); err == nil {
				t.Errorf("Open(%q) = %T, want error", id, k)
			}
		})
	}

	// Splicing: the wrapped DEK of one key with the ciphertext of another
	// fails, even when both ids are right for their halves.
	other, err := Seal(context.Background(), rand.Reader, kek, "key-2", key)
	if err != nil {
		t.Fatal(err)
	}
	spliced := Sealed{KEKID: s.KEKID, WrappedDEK: other.WrappedDEK, Ciphertext: s.Ciphertext}
	for _, id := range []string{"key-1", "key-2"} {
		if _, err := Open(context.Background(), kek, id, spliced); err == nil {
			t.Errorf("Open(%q) of a spliced record succeeded", id)
		}
	}
}

func TestOpenTampered(t *testing.T) {
	t.Parallel()
	kek, _ := newTestKEK(t, "kek-1", "tamper")
	key := testKey(t, ECDSAP256)
	s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dek, err := unwrapDEK(context.Background(), kek, "key-1", s)
	if err != nil {
		t.Fatal(err)
	}

	type edit struct {
		name string
		f    func(s *Sealed)
	}
	var tests []edit
	for field, n := range map[string]int{"wrapped": len(s.WrappedDEK), "ciphertext": len(s.Ciphertext)} {
		// Nonce, first ciphertext byte, middle, tag start, last byte.
		for _, i := range []int{0, 11, 12, n / 2, n - 16, n - 1} {
			tests = append(tests, edit{
				name: fmt.Sprintf("%s flip %d", field, i),
				f: func(s *Sealed) {
					if field == "wrapped" {
						s.WrappedDEK[i] ^= 0x01
					} else {
						s.Ciphertext[i] ^= 0x01
					}
				},
			})
		}
	}
	tests = append(tests,
		edit{"wrapped truncated", func(s *Sealed) { s.WrappedDEK = s.WrappedDEK[:len(s.WrappedDEK)-1] }},
		edit{"wrapped extended", func(s *Sealed) { s.WrappedDEK = append(s.WrappedDEK, 0) }},
		edit{"wrapped empty", func(s *Sealed) { s.WrappedDEK = nil }},
		edit{"wrapped short", func(s *Sealed) { s.WrappedDEK = s.WrappedDEK[:20] }},
		edit{"ciphertext truncated", func(s *Sealed) { s.Ciphertext = s.Ciphertext[:len(s.Ciphertext)-1] }},
		edit{"ciphertext empty", func(s *Sealed) { s.Ciphertext = nil }},
		edit{"kek id", func(s *Sealed) { s.KEKID = "kek-2" }},
		edit{"kek id empty", func(s *Sealed) { s.KEKID = "" }},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Sealed{KEKID: s.KEKID, WrappedDEK: bytes.Clone(s.WrappedDEK), Ciphertext: bytes.Clone(s.Ciphertext)}
			tt.f(&c)
			k, err := Open(context.Background(), kek, "key-1", c)
			if err == nil {
				t.Fatalf("Open = %T, want error", k)
			}
			msg := err.Error()
			for name, secret := range map[string][]byte{"der": der, "dek": dek} {
				if strings.Contains(msg, string(secret)) || strings.Contains(msg, hex.EncodeToString(secret)) {
					t.Errorf("error %q contains the %s", msg, name)
				}
			}
			if !strings.Contains(msg, "key-1") {
				t.Errorf("error %q does not name the key", msg)
			}
		})
	}
}

func TestOpenWrongKEK(t *testing.T) {
	t.Parallel()
	kek1, _ := newTestKEK(t, "kek-1", "first")
	sameID, _ := newTestKEK(t, "kek-1", "second")
	otherID, _ := newTestKEK(t, "kek-2", "first")
	key := testKey(t, Ed25519)
	s, err := Seal(context.Background(), rand.Reader, kek1, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kek  *KEK
		s    Sealed
	}{
		{name: "same id other secret", kek: sameID, s: s},
		{name: "other id", kek: otherID, s: s},
		// Relabelling the record does not help: the KEK id is in the aad.
		{name: "other id relabelled", kek: otherID, s: Sealed{KEKID: "kek-2", WrappedDEK: s.WrappedDEK, Ciphertext: s.Ciphertext}},
		{name: "nil", kek: nil, s: s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if k, err := Open(context.Background(), tt.kek, "key-1", tt.s); err == nil {
				t.Errorf("Open = %T, want error", k)
			}
		})
	}
}

func TestRewrap(t *testing.T) {
	t.Parallel()
	oldKEK, _ := newTestKEK(t, "kek-1", "old passphrase")
	newKEK, _ := newTestKEK(t, "kek-2", "new passphrase")
	for _, alg := range []Algorithm{ECDSAP256, RSA2048, Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key := testKey(t, alg)
			s, err := Seal(context.Background(), rand.Reader, oldKEK, "key-1", key)
			if err != nil {
				t.Fatal(err)
			}
			before := bytes.Clone(s.Ciphertext)
			r, err := Rewrap(context.Background(), rand.Reader, oldKEK, newKEK, "key-1", s)
			if err != nil {
				t.Fatalf("Rewrap: %v", err)
			}
			if !bytes.Equal(r.Ciphertext, before) || !bytes.Equal(s.Ciphertext, before) {
				t.Errorf("Ciphertext changed")
			}
			if r.KEKID != "kek-2" {
				t.Errorf("KEKID = %q, want kek-2", r.KEKID)
			}
			if bytes.Equal(r.WrappedDEK, s.WrappedDEK) {
				t.Errorf("WrappedDEK unchanged")
			}
			dekOld, err := unwrapDEK(context.Background(), oldKEK, "key-1", s)
			if err != nil {
				t.Fatal(err)
			}
			dekNew, err := unwrapDEK(context.Background(), newKEK, "key-1", r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dekOld, dekNew) {
				t.Errorf("Rewrap changed the data key")
			}
			opened, err := Open(context.Background(), newKEK, "key-1", r)
			if err != nil {
				t.Fatalf("Open with new KEK: %v", err)
			}
			if !publicEqual(opened.Public(), key.Public()) {
				t.Errorf("rewrapped key differs from the original")
			}
			if _, err := Open(context.Background(), oldKEK, "key-1", r); err == nil {
				t.Errorf("rewrapped record opens with the old KEK")
			}
			relabelled := Sealed{KEKID: "kek-1", WrappedDEK: r.WrappedDEK, Ciphertext: r.Ciphertext}
			if _, err := Open(context.Background(), oldKEK, "key-1", relabelled); err == nil {
				t.Errorf("rewrapped record relabelled to the old KEK opens with it")
			}
			if _, err := Open(context.Background(), oldKEK, "key-1", s); err != nil {
				t.Errorf("original record no longer opens with the old KEK: %v", err)
			}
			// The result does not alias the input.
			r.Ciphertext[0] ^= 1
			if !bytes.Equal(s.Ciphertext, before) {
				t.Errorf("Rewrap result shares Ciphertext with its input")
			}
		})
	}
}

func TestRewrapInvalid(t *testing.T) {
	t.Parallel()
	oldKEK, _ := newTestKEK(t, "kek-1", "old")
	newKEK, _ := newTestKEK(t, "kek-2", "new")
	key := testKey(t, ECDSAP256)
	s, err := Seal(context.Background(), rand.Reader, oldKEK, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := Sealed{KEKID: s.KEKID, WrappedDEK: bytes.Clone(s.WrappedDEK), Ciphertext: s.Ciphertext}
	tampered.WrappedDEK[20] ^= 1
	tests := []struct {
		name     string
		rand     io.Reader
		old, new *KEK
		keyID    string
		s        Sealed
	}{
		{name: "wrong old kek", rand: rand.Reader, old: newKEK, new: oldKEK, keyID: "key-1", s: s},
		{name: "wrong key id", rand: rand.Reader, old: oldKEK, new: newKEK, keyID: "key-2", s: s},
		{name: "tampered", rand: rand.Reader, old: oldKEK, new: newKEK, keyID: "key-1", s: tampered},
		{name: "nil old", rand: rand.Reader, new: newKEK, keyID: "key-1", s: s},
		{name: "nil new", rand: rand.Reader, old: oldKEK, keyID: "key-1", s: s},
		{name: "failing rand", rand: errReader{}, old: oldKEK, new: newKEK, keyID: "key-1", s: s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if r, err := Rewrap(context.Background(), tt.rand, tt.old, tt.new, tt.keyID, tt.s); err == nil {
				t.Errorf("Rewrap = %+v, want error", r)
			}
		})
	}
}

func TestSealHoldsNoSecret(t *testing.T) {
	t.Parallel()
	kek, rec := newTestKEK(t, "kek-1", "no-secrets")
	recJSON, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key := testKey(t, alg)
			s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			dek, err := unwrapDEK(context.Background(), kek, "key-1", s)
			if err != nil {
				t.Fatal(err)
			}
			secrets := rawSecrets(t, key)
			secrets["pkcs8"] = der
			secrets["dek"] = dek
			sealedJSON, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			haystacks := map[string][]byte{
				"wrapped dek":  s.WrappedDEK,
				"ciphertext":   s.Ciphertext,
				"concatenated": append(bytes.Clone(s.WrappedDEK), s.Ciphertext...),
				"sealed json":  sealedJSON,
				"kek record":   recJSON,
			}
			for hname, h := range haystacks {
				for sname, secret := range secrets {
					// A short prefix would match by chance; 16 bytes would not.
					for _, needle := range [][]byte{secret, secret[:16], []byte(hex.EncodeToString(secret[:16]))} {
						if bytes.Contains(h, needle) {
							t.Errorf("%s contains the %s", hname, sname)
						}
					}
				}
			}
		})
	}
}

// FuzzOpen checks that Open never panics and never accepts altered input.
func FuzzOpen(f *testing.F) {
	params, err := FastKDFParams(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	kek, _, err := NewKEK(rand.Reader, "kek-1", []byte("fuzz"), params, testNow)
	if err != nil {
		f.Fatal(err)
	}
	key, err := Generate(ECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("key-1", s.WrappedDEK, s.Ciphertext)
	f.Add("key-2", s.WrappedDEK, s.Ciphertext)
	f.Add("key-1", []byte{}, []byte{})
	f.Add("key-1", s.WrappedDEK[:12], s.Ciphertext[:28])
	f.Fuzz(func(t *testing.T, keyID string, wrapped, ct []byte) {
		got, err := Open(context.Background(), kek, keyID, Sealed{KEKID: "kek-1", WrappedDEK: wrapped, Ciphertext: ct})
		if err != nil {
			return
		}
		if keyID != "key-1" || !bytes.Equal(wrapped, s.WrappedDEK) || !bytes.Equal(ct, s.Ciphertext) {
			t.Fatalf("Open accepted altered input (key id %q)", keyID)
		}
		if !publicEqual(got.Public(), key.Public()) {
			t.Fatalf("Open returned a different key")
		}
	})
}

// vectorReader is a deterministic stand-in for crypto/rand in the fixed
// envelope vectors: the concatenation of SHA-256(ctr), SHA-256(ctr+1), ...
type vectorReader struct {
	ctr byte
	buf []byte
}

func (r *vectorReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		s := sha256.Sum256([]byte{r.ctr})
		r.ctr++
		r.buf = append(r.buf, s[:]...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// vectorKEK is a fixed KEK (no KDF) for the envelope vectors.
func vectorKEK(t *testing.T) *KEK {
	t.Helper()
	key := sha256.Sum256([]byte("sigil envelope vector kek"))
	aead, err := newGCM(key[:])
	if err != nil {
		t.Fatal(err)
	}
	return &KEK{id: "kek-1", aead: aead}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEnvelopeVectors opens envelopes sealed by the code before Seal,
// SealSecret and Export shared one sealing helper (a fixed KEK, key and
// random stream), and checks that sealing the same inputs today gives the
// same bytes: databases written before stay readable, and the format did
// not move.
func TestEnvelopeVectors(t *testing.T) {
	t.Parallel()
	kek := vectorKEK(t)
	seed := sha256.Sum256([]byte("sigil envelope vector key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	secret := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name  string
		keyID string
		ctr   byte
		want  Sealed
		seal  func(io.Reader) (Sealed, error)
		check func(t *testing.T, s Sealed)
	}{
		{
			name: "private key", keyID: "intermediate-0001", ctr: 0,
			want: Sealed{KEKID: "kek-1",
				WrappedDEK: mustHex(t, "8cd2b7e3d1600ad631c385a58a5770ea1ff30ca66689baadc339baa2b696cd8ea93081fcd9ecc55c999f42bb79d1a2c4275d601d6532094af4159cd4"),
				Ciphertext: mustHex(t, "4bf5122f344554c53bde2ebb354b5b9240ceb4b076b8bc10dfb1f5443557f14036bde94728ced2252b56d063b7fc94f4b112bd262d738df7dcd6b7ecbd38b8d8129d3892803073cf4c16275a")},
			seal: func(r io.Reader) (Sealed, error) { return Seal(context.Background(), r, kek, "intermediate-0001", key) },
			check: func(t *testing.T, s Sealed) {
				got, err := Open(context.Background(), kek, "intermediate-0001", s)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !key.Equal(got) {
					t.Error("Open returned another key")
				}
				der, _, err := openKey(context.Background(), kek, "intermediate-0001", s)
				if err != nil {
					t.Fatalf("openKey (Export's path): %v", err)
				}
				want, _ := x509.MarshalPKCS8PrivateKey(key)
				if !bytes.Equal(der, want) {
					t.Error("openKey returned other PKCS#8 bytes")
				}
				if _, err := OpenSecret(context.Background(), kek, "intermediate-0001", s); err == nil {
					t.Error("a sealed key opened as a secret")
				}
			},
		},
		{
			name: "secret", keyID: "eab-0001", ctr: 100,
			want: Sealed{KEKID: "kek-1",
				WrappedDEK: mustHex(t, "d374cdc681dc06faa65e374eb45df91ab6cdda893aa54cba46a9d4b2d3dd6323a9acfad72690425556901dd5ada3909772d2d278ea8c98aaeba802a4"),
				Ciphertext: mustHex(t, "3f79bb7b435b05321651daefcfcb424ef7b5d489dbf693ab01c1accab40b66809cf81e7b7042093a33203e0c483403aab7f54c31f7ce6cd76f631a34")},
			seal: func(r io.Reader) (Sealed, error) { return SealSecret(context.Background(), r, kek, "eab-0001", secret) },
			check: func(t *testing.T, s Sealed) {
				got, err := OpenSecret(context.Background(), kek, "eab-0001", s)
				if err != nil {
					t.Fatalf("OpenSecret: %v", err)
				}
				if !bytes.Equal(got, secret) {
					t.Errorf("OpenSecret = %q, want %q", got, secret)
				}
				if _, err := Open(context.Background(), kek, "eab-0001", s); err == nil {
					t.Error("a sealed secret opened as a key")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, tt.want)
			got, err := tt.seal(&vectorReader{ctr: tt.ctr})
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
			if got.KEKID != tt.want.KEKID || !bytes.Equal(got.WrappedDEK, tt.want.WrappedDEK) || !bytes.Equal(got.Ciphertext, tt.want.Ciphertext) {
				t.Errorf("sealing the vector's inputs gives other bytes:\nwrapped %x\nct      %x", got.WrappedDEK, got.Ciphertext)
			}
		})
	}
}
