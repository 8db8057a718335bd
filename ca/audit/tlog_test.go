package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

func TestLogLeafRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		at   time.Time
		der  []byte
	}{
		{"typical", time.Date(2026, 11, 24, 12, 0, 0, 123456789, time.UTC), []byte{0x30, 0x82, 0x01}},
		{"zero time", time.Time{}, []byte{1}},
		{"empty der", time.Unix(0, 0).UTC(), nil},
		{"other zone", time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), []byte("der")},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf := LogLeaf(c.at, c.der)
			if len(leaf) != logLeafHeader+len(c.der) || leaf[0] != 1 {
				t.Fatalf("leaf %x", leaf)
			}
			at, der, err := ParseLogLeaf(leaf)
			if err != nil || !at.Equal(c.at) || !bytes.Equal(der, c.der) {
				t.Errorf("ParseLogLeaf = %v, %x, %v", at, der, err)
			}
		})
	}
	bad := LogLeaf(time.Unix(1, 0), []byte("abc"))
	for name, b := range map[string][]byte{
		"short":       bad[:5],
		"version":     append([]byte{2}, bad[1:]...),
		"trailing":    append(bad[:len(bad):len(bad)], 0),
		"truncated":   bad[:len(bad)-1],
		"nanoseconds": func() []byte { c := bytes.Clone(bad); copy(c[9:13], []byte{0xff, 0xff, 0xff, 0xff}); return c }(),
	} {
		if _, _, err := ParseLogLeaf(b); err == nil {
			t.Errorf("%s: ParseLogLeaf accepted %x", name, b)
		}
	}
	// RFC 9162 §2.1.1: the leaf and node prefixes keep the two apart.
	l := []byte("leaf")
	want := sha256.Sum256(append([]byte{0}, l...))
	if !bytes.Equal(LeafHash(l), want[:]) {
		t.Error("LeafHash is not SHA-256(0x00 || leaf)")
	}
	wantNode := sha256.Sum256(append(append([]byte{1}, want[:]...), want[:]...))
	if !bytes.Equal(NodeHash(want[:], want[:]), wantNode[:]) {
		t.Error("NodeHash is not SHA-256(0x01 || l || r)")
	}
	if e := sha256.Sum256(nil); !bytes.Equal(EmptyRoot(), e[:]) {
		t.Error("EmptyRoot is not SHA-256 of nothing")
	}
}

func TestTreeHeadSignature(t *testing.T) {
	t.Parallel()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := sha256.Sum256([]byte("root"))
	now := time.Date(2026, 11, 24, 12, 0, 0, 5, time.UTC)
	for name, signer := range map[string]crypto.Signer{"ed25519": edKey, "ecdsa": ecKey} {
		t.Run(name, func(t *testing.T) {
			h, err := SignTreeHead(rand.Reader, signer, "k1", 42, root[:], now)
			if err != nil {
				t.Fatal(err)
			}
			pub := signer.Public()
			if err := VerifyTreeHead(pub, h); err != nil {
				t.Fatal(err)
			}
			for what, alter := range map[string]func(*TreeHead){
				"size": func(h *TreeHead) { h.Size++ },
				"root": func(h *TreeHead) { h.RootHash = bytes.Clone(h.RootHash); h.RootHash[0] ^= 1 },
				"time": func(h *TreeHead) { h.Time = h.Time.Add(time.Nanosecond) },
				"key":  func(h *TreeHead) { h.KeyID = "k2" },
			} {
				c := h
				alter(&c)
				if err := VerifyTreeHead(pub, c); err == nil {
					t.Errorf("head with altered %s verifies", what)
				}
			}
			// A checkpoint signature over the same numbers is not a tree head's.
			cp := Checkpoint{Seq: 42, Hash: root[:], Time: h.Time, KeyID: "k1", Signature: h.Signature}
			if err := VerifyCheckpoint(pub, cp); err == nil {
				t.Error("a tree head signature verifies as a checkpoint")
			}
		})
	}
	if _, err := SignTreeHead(rand.Reader, edKey, "k1", 1, []byte("short"), now); err == nil {
		t.Error("signed a short root hash")
	}
}

// FuzzParseLogLeaf: ParseLogLeaf never panics, and whatever it accepts
// encodes back to the same bytes (one encoding per leaf).
func FuzzParseLogLeaf(f *testing.F) {
	f.Add(LogLeaf(time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC), []byte{0x30, 0x03, 0x02, 0x01, 0x01}))
	f.Add(LogLeaf(time.Time{}, nil))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		at, der, err := ParseLogLeaf(b)
		if err != nil {
			return
		}
		if got := LogLeaf(at, der); !bytes.Equal(got, b) {
			t.Fatalf("ParseLogLeaf(%x) re-encodes as %x", b, got)
		}
	})
}
