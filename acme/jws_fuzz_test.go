package acme

import (
	"crypto/elliptic"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.step.sm/crypto/jose"
)

// FuzzParseJWS feeds arbitrary bodies to ParseJWS: it never panics, every
// error is a *Problem, and what it accepts is consistent. Seeds: the
// requests below and testdata/fuzz/FuzzParseJWS.
func FuzzParseJWS(f *testing.F) {
	p256 := mustEC(f, elliptic.P256())
	ed := mustEd(f)
	kid := map[string]any{"kid": testKID}
	for _, seed := range [][]byte{
		signed(f, jose.ES256, p256, true, hdr(nil), []byte(`{"identifiers":[{"type":"dns","value":"a.test"}]}`)),
		signed(f, jose.ES256, p256, false, hdr(kid), []byte{}),
		signed(f, jose.EdDSA, ed, true, hdr(nil), []byte(`{"termsOfServiceAgreed":true}`)),
		signed(f, jose.ES384, mustEC(f, elliptic.P384()), false, hdr(kid), []byte(`{}`)),
		signed(f, jose.HS256, []byte(strings.Repeat("k", 32)), false, hdr(kid), []byte(`{}`)),
		signed(f, jose.ES256, p256, true, hdr(kid), []byte(`{}`)),
		signed(f, jose.ES256, p256, true, hdr(map[string]any{"nonce": nil}), []byte(`{}`)),
		crafted(f, hdr(map[string]any{"alg": "none", "kid": testKID}), []byte(`{}`), nil),
		[]byte(`{"protected":"e30","payload":"","signature":""}`),
		[]byte(`{"payload":"","signatures":[]}`),
		[]byte(`{}`),
		[]byte(`a.b.c`),
		[]byte{},
	} {
		f.Add(seed)
	}
	accountKey := pubJWK(f, p256)
	f.Fuzz(func(t *testing.T, body []byte) {
		j, err := ParseJWS(body)
		if err != nil {
			p, ok := err.(*Problem)
			if !ok {
				t.Fatalf("error %v is a %T, not a *Problem", err, err)
			}
			if !strings.HasPrefix(p.Type, "urn:ietf:params:acme:error:") || p.Status != 400 || p.Detail == "" {
				t.Fatalf("bad problem %+v", p)
			}
			if j != nil {
				t.Fatal("a JWS and an error")
			}
			return
		}
		if (j.KID != "") == (j.JWK != nil) {
			t.Fatalf("KID %q and JWK %v: want exactly one", j.KID, j.JWK)
		}
		if !slices.Contains(accountAlgs(), j.Alg) || j.Nonce == "" || j.URL == "" || j.Payload != nil {
			t.Fatalf("accepted %+v", j)
		}
		key := accountKey
		if j.JWK != nil {
			if !j.JWK.IsPublic() {
				t.Fatal("accepted a private jwk")
			}
			if err := checkKeyAlg(j.Alg, j.JWK); err != nil {
				t.Fatalf("accepted a jwk that does not fit %s: %v", j.Alg, err)
			}
			key = j.JWK
		}
		if err := j.Verify(key); err != nil {
			if _, ok := err.(*Problem); !ok {
				t.Fatalf("Verify error %v is a %T, not a *Problem", err, err)
			}
		} else if j.Payload == nil {
			t.Fatal("Verify succeeded without a payload")
		}
	})
}

// TestFuzzParseJWSCorpus keeps the checked-in seeds meaningful: the valid-*
// files parse and verify, the others are refused.
func TestFuzzParseJWSCorpus(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "fuzz", "FuzzParseJWS")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no seeds")
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lit, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
			lit, ok2 := strings.CutSuffix(lit, ")")
			if !ok || !ok2 {
				t.Fatalf("not a one-[]byte corpus file: %q", raw)
			}
			body, err := strconv.Unquote(lit)
			if err != nil {
				t.Fatal(err)
			}
			j, err := ParseJWS([]byte(body))
			valid := strings.HasPrefix(e.Name(), "valid-")
			switch {
			case valid && err != nil:
				t.Fatalf("ParseJWS: %v", err)
			case !valid && err == nil:
				t.Fatal("ParseJWS accepted an invalid seed")
			case valid && j.JWK != nil:
				if err := j.Verify(j.JWK); err != nil {
					t.Errorf("Verify: %v", err)
				}
			}
		})
	}
}
