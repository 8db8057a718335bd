package acme

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.step.sm/crypto/jose"

	"github.com/sigil-ca/sigil/ca"
)

const (
	testURL   = "https://ca.test/acme/new-order"
	testNonce = "bm9uY2Utb25l"
	testKID   = "https://ca.test/acme/acct/abc"
)

// RSA keys are slow to generate; every test shares one of each size.
var (
	jwsTestRSA2048 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	jwsTestRSA1024 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEd(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pubJWK returns the public JWK of a private key.
func pubJWK(t testing.TB, priv any) *jose.JSONWebKey {
	t.Helper()
	k := jose.JSONWebKey{Key: priv}
	pub := k.Public()
	if !pub.Valid() {
		t.Fatalf("no public key for %T", priv)
	}
	return &pub
}

// signed signs payload with go-jose's signer and returns the flattened JSON
// serialization. embed puts the public key in "jwk"; headers go into the
// protected header as they are.
func signed(t testing.TB, alg string, key any, embed bool, headers map[string]any, payload []byte) []byte {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: embed}
	for k, v := range headers {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(obj.FullSerialize())
}

// hdr is the usual protected header of an ACME request, plus extra; a nil
// value in extra removes that member.
func hdr(extra map[string]any) map[string]any {
	h := map[string]any{"nonce": testNonce, "url": testURL}
	for k, v := range extra {
		if v == nil {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	return h
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// crafted builds a flattened JWS by hand, for what go-jose will not sign.
func crafted(t testing.TB, header map[string]any, payload, sig []byte) []byte {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(map[string]string{"protected": b64(h), "payload": b64(payload), "signature": b64(sig)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// edit decodes a flattened JWS, lets f change its members, and re-encodes it.
func edit(t testing.TB, body []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func problemType(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v (%T) is not a *Problem", err, err)
	}
	return p.Type
}

func TestParseJWSAccepts(t *testing.T) {
	t.Parallel()
	keys := []struct {
		alg  string
		priv any
	}{
		{jose.ES256, mustEC(t, elliptic.P256())},
		{jose.ES384, mustEC(t, elliptic.P384())},
		{jose.RS256, jwsTestRSA2048()},
		{jose.EdDSA, mustEd(t)},
	}
	payload := []byte(`{"identifiers":[{"type":"dns","value":"a.test"}]}`)
	for _, k := range keys {
		for _, tc := range []struct {
			name    string
			embed   bool
			headers map[string]any
			payload []byte
		}{
			{"jwk", true, hdr(nil), payload},
			{"kid", false, hdr(map[string]any{"kid": testKID}), payload},
			{"kid POST-as-GET", false, hdr(map[string]any{"kid": testKID}), []byte{}},
		} {
			t.Run(k.alg+" "+tc.name, func(t *testing.T) {
				t.Parallel()
				body := signed(t, k.alg, k.priv, tc.embed, tc.headers, tc.payload)
				j, err := ParseJWS(body)
				if err != nil {
					t.Fatalf("ParseJWS: %v", err)
				}
				if j.Alg != k.alg || j.Nonce != testNonce || j.URL != testURL {
					t.Errorf("header = %q %q %q", j.Alg, j.Nonce, j.URL)
				}
				if j.Payload != nil {
					t.Errorf("Payload = %q before Verify", j.Payload)
				}
				want := pubJWK(t, k.priv)
				if tc.embed {
					if j.KID != "" || j.JWK == nil {
						t.Fatalf("KID = %q, JWK = %v; want the jwk only", j.KID, j.JWK)
					}
					if got, _ := Thumbprint(j.JWK); got != mustThumb(t, want) {
						t.Errorf("JWK thumbprint %s, want %s", got, mustThumb(t, want))
					}
				} else if j.KID != testKID || j.JWK != nil {
					t.Fatalf("KID = %q, JWK = %v; want the kid only", j.KID, j.JWK)
				}
				key := j.JWK
				if key == nil {
					key = want
				}
				if err := j.Verify(key); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if string(j.Payload) != string(tc.payload) || j.Payload == nil {
					t.Errorf("Payload = %q, want %q (non-nil)", j.Payload, tc.payload)
				}
			})
		}
	}
}

func mustThumb(t testing.TB, k *jose.JSONWebKey) string {
	t.Helper()
	s, err := Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseJWSRefuses(t *testing.T) {
	t.Parallel()
	p256 := mustEC(t, elliptic.P256())
	p384 := mustEC(t, elliptic.P384())
	p521 := mustEC(t, elliptic.P521())
	rsa1024 := jwsTestRSA1024()
	valid := signed(t, jose.ES256, p256, true, hdr(nil), []byte(`{}`))
	other := signed(t, jose.ES256, mustEC(t, elliptic.P256()), true, hdr(nil), []byte(`{}`))
	protectedOf := func(body []byte) []byte {
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		b, err := base64.RawURLEncoding.DecodeString(m["protected"])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A private JWK, as go-jose marshals a private key.
	privJWK, err := json.Marshal(jose.JSONWebKey{Key: p256})
	if err != nil {
		t.Fatal(err)
	}
	compact := func() []byte {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p256},
			(&jose.SignerOptions{EmbedJWK: true}).WithHeader("nonce", testNonce).WithHeader("url", testURL))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign([]byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		c, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return []byte(c)
	}()
	general := func(bodies ...[]byte) []byte {
		var sigs []map[string]string
		var payload string
		for _, b := range bodies {
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			payload = m["payload"]
			sigs = append(sigs, map[string]string{"protected": m["protected"], "signature": m["signature"]})
		}
		out, err := json.Marshal(map[string]any{"payload": payload, "signatures": sigs})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rawProtected := func(h string) []byte {
		out, _ := json.Marshal(map[string]string{"protected": b64([]byte(h)), "payload": "e30", "signature": b64([]byte("sig"))})
		return out
	}
	jwkOf := func(k any) any { return pubJWK(t, k) }

	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"alg none", crafted(t, hdr(map[string]any{"alg": "none", "jwk": jwkOf(p256)}), []byte(`{}`), nil), TypeBadSignatureAlgorithm},
		{"alg None", crafted(t, hdr(map[string]any{"alg": "None", "kid": testKID}), []byte(`{}`), nil), TypeBadSignatureAlgorithm},
		{"HS256", signed(t, jose.HS256, []byte(strings.Repeat("k", 32)), false, hdr(map[string]any{"kid": testKID}), []byte(`{}`)), TypeBadSignatureAlgorithm},
		{"HS512", crafted(t, hdr(map[string]any{"alg": "HS512", "kid": testKID}), []byte(`{}`), []byte("mac")), TypeBadSignatureAlgorithm},
		{"PS256", signed(t, jose.PS256, jwsTestRSA2048(), true, hdr(nil), []byte(`{}`)), TypeBadSignatureAlgorithm},
		{"ES512", signed(t, jose.ES512, p521, true, hdr(nil), []byte(`{}`)), TypeBadSignatureAlgorithm},
		{"alg missing", crafted(t, hdr(map[string]any{"kid": testKID}), []byte(`{}`), []byte("s")), TypeMalformed},
		{"alg not a string", crafted(t, hdr(map[string]any{"alg": 256, "kid": testKID}), []byte(`{}`), []byte("s")), TypeMalformed},
		{"RS256 1024-bit", signed(t, jose.RS256, rsa1024, true, hdr(nil), []byte(`{}`)), TypeBadPublicKey},
		{"ES256 header, P-384 key", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": jwkOf(p384)}), []byte(`{}`), []byte("s")), TypeBadSignatureAlgorithm},
		{"EdDSA header, P-256 key", crafted(t, hdr(map[string]any{"alg": "EdDSA", "jwk": jwkOf(p256)}), []byte(`{}`), []byte("s")), TypeBadSignatureAlgorithm},
		{"RSA 4104-bit", crafted(t, hdr(map[string]any{"alg": "RS256", "jwk": bigRSA(4104, "AQAB")}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"RSA even exponent", crafted(t, hdr(map[string]any{"alg": "RS256", "jwk": bigRSA(2048, "Ag")}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"P-521 key", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": jwkOf(p521)}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"private key in jwk", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": json.RawMessage(privJWK)}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"symmetric jwk", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": map[string]string{"kty": "oct", "k": "c2VjcmV0"}}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"jwk junk", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": map[string]string{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"jwk null", crafted(t, hdr(map[string]any{"alg": "ES256", "jwk": json.RawMessage("null")}), []byte(`{}`), []byte("s")), TypeBadPublicKey},
		{"both jwk and kid", signed(t, jose.ES256, p256, true, hdr(map[string]any{"kid": testKID}), []byte(`{}`)), TypeMalformed},
		{"neither jwk nor kid", signed(t, jose.ES256, p256, false, hdr(nil), []byte(`{}`)), TypeMalformed},
		{"empty kid", signed(t, jose.ES256, p256, false, hdr(map[string]any{"kid": ""}), []byte(`{}`)), TypeMalformed},
		{"kid not a string", signed(t, jose.ES256, p256, false, hdr(map[string]any{"kid": 7}), []byte(`{}`)), TypeMalformed},
		{"missing nonce", signed(t, jose.ES256, p256, true, hdr(map[string]any{"nonce": nil}), []byte(`{}`)), TypeBadNonce},
		{"empty nonce", signed(t, jose.ES256, p256, true, hdr(map[string]any{"nonce": ""}), []byte(`{}`)), TypeBadNonce},
		{"missing url", signed(t, jose.ES256, p256, true, hdr(map[string]any{"url": nil}), []byte(`{}`)), TypeMalformed},
		{"url not a string", signed(t, jose.ES256, p256, true, hdr(map[string]any{"url": []string{testURL}}), []byte(`{}`)), TypeMalformed},
		{"b64 false", signed(t, jose.ES256, p256, true, hdr(map[string]any{"b64": false, "crit": []string{"b64"}}), []byte(`{}`)), TypeMalformed},
		{"crit", signed(t, jose.ES256, p256, true, hdr(map[string]any{"crit": []string{"exp"}, "exp": 1}), []byte(`{}`)), TypeMalformed},
		{"compact serialization", compact, TypeMalformed},
		{"general, two signatures", general(valid, other), TypeMalformed},
		{"general, one signature", general(valid), TypeMalformed},
		{"unprotected header", edit(t, valid, func(m map[string]any) { m["header"] = map[string]string{"kid": testKID} }), TypeMalformed},
		{"no signature", edit(t, valid, func(m map[string]any) { m["signature"] = "" }), TypeMalformed},
		{"signature missing", edit(t, valid, func(m map[string]any) { delete(m, "signature") }), TypeMalformed},
		{"payload missing", edit(t, valid, func(m map[string]any) { delete(m, "payload") }), TypeMalformed},
		{"protected missing", edit(t, valid, func(m map[string]any) { delete(m, "protected") }), TypeMalformed},
		{"padded base64", edit(t, valid, func(m map[string]any) { m["payload"] = "e30=" }), TypeMalformed},
		{"std base64", edit(t, valid, func(m map[string]any) { m["signature"] = "a+b/" }), TypeMalformed},
		{"protected not JSON", rawProtected(`{"alg":`), TypeMalformed},
		{"protected an array", rawProtected(`["ES256"]`), TypeMalformed},
		{"duplicate alg", rawProtected(`{"alg":"ES256","alg":"none","kid":"k","nonce":"n","url":"u"}`), TypeMalformed},
		{"duplicate top-level member", []byte(`{"protected":"e30","protected":"e30","payload":"","signature":"c2ln"}`), TypeMalformed},
		{"trailing data", append(slices.Clone(valid), []byte(`{}`)...), TypeMalformed},
		{"protected trailing data", rawProtected(string(protectedOf(valid)) + `x`), TypeMalformed},
		{"empty body", nil, TypeMalformed},
		{"whitespace body", []byte(" \n"), TypeMalformed},
		{"null", []byte("null"), TypeMalformed},
		{"array", []byte(`[{"protected":"e30"}]`), TypeMalformed},
		{"not JSON", []byte("{not json"), TypeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j, err := ParseJWS(tc.body)
			if err == nil {
				t.Fatalf("ParseJWS accepted %s: %+v", tc.body, j)
			}
			if got := problemType(t, err); got != tc.want {
				t.Errorf("type = %s, want %s (%v)", got, tc.want, err)
			}
			if tc.want == TypeBadSignatureAlgorithm {
				var p *Problem
				errors.As(err, &p)
				if len(p.Algorithms) == 0 || !strings.Contains(p.Detail, "ES256") {
					t.Errorf("badSignatureAlgorithm without the supported list: %+v", p)
				}
			}
		})
	}
}

// bigRSA is a public RSA JWK with an odd modulus of the given size (not a
// real key: nothing here is verified).
func bigRSA(bits int, e string) map[string]string {
	n := make([]byte, (bits+7)/8)
	for i := range n {
		n[i] = 0xa5
	}
	n[0] = 0xff >> (len(n)*8 - bits)
	n[len(n)-1] |= 1
	return map[string]string{"kty": "RSA", "n": b64(n), "e": e}
}

func TestParseJWSBadSignatureAlgorithmListsAlgorithms(t *testing.T) {
	t.Parallel()
	body := crafted(t, hdr(map[string]any{"alg": "none", "kid": testKID}), []byte(`{}`), nil)
	_, err := ParseJWS(body)
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("err = %v", err)
	}
	want := []string{"ES256", "ES384", "RS256", "EdDSA"}
	if !slices.Equal(p.Algorithms, want) || p.Status != 400 {
		t.Errorf("algorithms = %v status %d, want %v 400", p.Algorithms, p.Status, want)
	}
}

func TestJWSVerify(t *testing.T) {
	t.Parallel()
	p256 := mustEC(t, elliptic.P256())
	p384 := mustEC(t, elliptic.P384())
	kidBody := signed(t, jose.ES256, p256, false, hdr(map[string]any{"kid": testKID}), []byte(`{"a":1}`))
	jwkBody := signed(t, jose.ES256, p256, true, hdr(nil), []byte(`{"a":1}`))
	tampered := edit(t, jwkBody, func(m map[string]any) { m["payload"] = b64([]byte(`{"a":2}`)) })
	tamperedHeader := edit(t, kidBody, func(m map[string]any) {
		h, _ := json.Marshal(hdr(map[string]any{"alg": "ES256", "kid": testKID + "x"}))
		m["protected"] = b64(h)
	})
	rsaKey := jwsTestRSA1024()
	tests := []struct {
		name string
		body []byte
		key  *jose.JSONWebKey // nil: the request's jwk
		want string
	}{
		{"kid, right key", kidBody, pubJWK(t, p256), ""},
		{"kid, private key given", kidBody, &jose.JSONWebKey{Key: p256}, ""},
		{"jwk", jwkBody, nil, ""},
		{"payload tampered", tampered, nil, TypeMalformed},
		{"header tampered", tamperedHeader, pubJWK(t, p256), TypeMalformed},
		{"kid, wrong key of the same type", kidBody, pubJWK(t, mustEC(t, elliptic.P256())), TypeMalformed},
		{"kid, account key of another type", kidBody, pubJWK(t, p384), TypeBadSignatureAlgorithm},
		{"kid, Ed25519 account key", kidBody, pubJWK(t, mustEd(t)), TypeBadSignatureAlgorithm},
		{"kid, weak stored key", kidBody, pubJWK(t, rsaKey), TypeBadPublicKey},
		{"kid, no key", kidBody, &jose.JSONWebKey{}, TypeBadPublicKey},
		{"kid, symmetric key", kidBody, &jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}, TypeBadPublicKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j, err := ParseJWS(tc.body)
			if err != nil {
				t.Fatalf("ParseJWS: %v", err)
			}
			key := tc.key
			if key == nil {
				key = j.JWK
			}
			err = j.Verify(key)
			if got := problemType(t, err); got != tc.want {
				t.Fatalf("Verify: type %q, want %q (%v)", got, tc.want, err)
			}
			if tc.want != "" && j.Payload != nil {
				t.Errorf("Payload set after a failed Verify: %q", j.Payload)
			}
			if tc.want == TypeMalformed && !strings.Contains(err.Error(), "JWS signature invalid") {
				t.Errorf("detail = %v", err)
			}
		})
	}
	t.Run("not from ParseJWS", func(t *testing.T) {
		t.Parallel()
		if err := new(JWS).Verify(pubJWK(t, p256)); err == nil {
			t.Fatal("Verify of a zero JWS succeeded")
		}
	})
}

func TestThumbprintRFC7638(t *testing.T) {
	t.Parallel()
	// RFC 7638 §3.1.
	const jwk = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var k jose.JSONWebKey
	if err := json.Unmarshal([]byte(jwk), &k); err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(&k)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
	for _, bad := range []*jose.JSONWebKey{nil, {}, {Key: []byte("secret")}} {
		if s, err := Thumbprint(bad); err == nil {
			t.Errorf("Thumbprint(%v) = %s, want an error", bad, s)
		}
	}
}

func TestKeyAuthorization(t *testing.T) {
	t.Parallel()
	priv := mustEC(t, elliptic.P256())
	pub := pubJWK(t, priv)
	got, err := KeyAuthorization("tok-123", pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tok-123." + mustThumb(t, pub); got != want {
		t.Errorf("KeyAuthorization = %s, want %s", got, want)
	}
	// The private and public forms of a key authorize alike.
	if priv, _ := KeyAuthorization("tok-123", &jose.JSONWebKey{Key: priv}); priv != got {
		t.Errorf("private key gives %s, public %s", priv, got)
	}
	if _, err := KeyAuthorization("tok", nil); err == nil {
		t.Error("KeyAuthorization(nil key) succeeded")
	}
}

func TestParseKeyChangeInner(t *testing.T) {
	t.Parallel()
	const outerURL = "https://ca.test/acme/key-change"
	oldPriv := mustEC(t, elliptic.P256())
	newPriv := mustEd(t)
	oldJWK := pubJWK(t, oldPriv)
	payload := func(account string, old any) []byte {
		b, err := json.Marshal(map[string]any{"account": account, "oldKey": old})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := payload(testKID, oldJWK)
	inner := func(headers map[string]any, p []byte) []byte {
		return signed(t, jose.EdDSA, newPriv, true, headers, p)
	}
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"ok", inner(map[string]any{"url": outerURL}, good), ""},
		{"wrong url", inner(map[string]any{"url": outerURL + "x"}, good), TypeMalformed},
		{"no url", inner(nil, good), TypeMalformed},
		{"uses kid", signed(t, jose.EdDSA, newPriv, false, map[string]any{"url": outerURL, "kid": testKID}, good), TypeMalformed},
		{"both jwk and kid", inner(map[string]any{"url": outerURL, "kid": testKID}, good), TypeMalformed},
		{"has nonce", inner(map[string]any{"url": outerURL, "nonce": testNonce}, good), TypeMalformed},
		{"signed by another key", signed(t, jose.EdDSA, mustEd(t), false, map[string]any{"url": outerURL, "jwk": pubJWK(t, newPriv)}, good), TypeMalformed},
		{"alg none", crafted(t, map[string]any{"alg": "none", "url": outerURL, "jwk": pubJWK(t, newPriv)}, good, nil), TypeBadSignatureAlgorithm},
		{"weak new key", signed(t, jose.RS256, jwsTestRSA1024(), true, map[string]any{"url": outerURL}, good), TypeBadPublicKey},
		{"no account", inner(map[string]any{"url": outerURL}, payload("", oldJWK)), TypeMalformed},
		{"no oldKey", inner(map[string]any{"url": outerURL}, []byte(`{"account":"`+testKID+`"}`)), TypeMalformed},
		{"private oldKey", inner(map[string]any{"url": outerURL}, payload(testKID, jose.JSONWebKey{Key: oldPriv})), TypeMalformed},
		{"payload not an object", inner(map[string]any{"url": outerURL}, []byte(`"x"`)), TypeMalformed},
		{"compact", []byte("a.b.c"), TypeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			newKey, kc, err := ParseKeyChangeInner(tc.body, outerURL)
			if got := problemType(t, err); got != tc.want {
				t.Fatalf("type %q, want %q (%v)", got, tc.want, err)
			}
			if tc.want != "" {
				return
			}
			if mustThumb(t, newKey) != mustThumb(t, pubJWK(t, newPriv)) {
				t.Error("new key is not the inner jwk")
			}
			if kc.Account != testKID || mustThumb(t, kc.OldKey) != mustThumb(t, oldJWK) {
				t.Errorf("payload = %+v", kc)
			}
		})
	}
}

func TestVerifyEAB(t *testing.T) {
	t.Parallel()
	const newAccountURL = "https://ca.test/acme/new-account"
	const eabKID = "kid-1"
	hmacKey := []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	accountPriv := mustEC(t, elliptic.P256())
	accountKey := pubJWK(t, accountPriv)
	accountJSON, err := json.Marshal(accountKey)
	if err != nil {
		t.Fatal(err)
	}
	otherJSON, err := json.Marshal(pubJWK(t, mustEC(t, elliptic.P256())))
	if err != nil {
		t.Fatal(err)
	}
	eab := func(alg string, key any, headers map[string]any, payload []byte) []byte {
		return signed(t, alg, key, false, headers, payload)
	}
	h := map[string]any{"kid": eabKID, "url": newAccountURL}
	with := func(k string, v any) map[string]any {
		m := map[string]any{"kid": eabKID, "url": newAccountURL}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	lookup := func(kid string) ([]byte, error) {
		if kid == eabKID {
			return hmacKey, nil
		}
		return nil, &ca.Error{Kind: ca.NotFound, Detail: "no such eab key"}
	}
	tests := []struct {
		name   string
		body   []byte
		lookup func(string) ([]byte, error)
		want   string // problem type; "internal" for a non-problem error
	}{
		{"ok HS256", eab(jose.HS256, hmacKey, h, accountJSON), lookup, ""},
		{"wrong kid", eab(jose.HS256, hmacKey, with("kid", "kid-2"), accountJSON), lookup, TypeUnauthorized},
		{"wrong MAC key", eab(jose.HS256, []byte("fedcba9876543210fedcba9876543210"), h, accountJSON), lookup, TypeUnauthorized},
		{"payload not the account key", eab(jose.HS256, hmacKey, h, otherJSON), lookup, TypeMalformed},
		{"payload not a key", eab(jose.HS256, hmacKey, h, []byte(`{"a":1}`)), lookup, TypeMalformed},
		{"alg ES256", eab(jose.ES256, accountPriv, h, accountJSON), lookup, TypeBadSignatureAlgorithm},
		{"alg none", crafted(t, map[string]any{"alg": "none", "kid": eabKID, "url": newAccountURL}, accountJSON, nil), lookup, TypeBadSignatureAlgorithm},
		{"HS512 with a short key", crafted(t, map[string]any{"alg": "HS512", "kid": eabKID, "url": newAccountURL}, accountJSON, []byte("mac")), lookup, TypeBadSignatureAlgorithm},
		{"wrong url", eab(jose.HS256, hmacKey, with("url", newAccountURL+"x"), accountJSON), lookup, TypeMalformed},
		{"no kid", eab(jose.HS256, hmacKey, with("kid", nil), accountJSON), lookup, TypeMalformed},
		{"has nonce", eab(jose.HS256, hmacKey, with("nonce", testNonce), accountJSON), lookup, TypeMalformed},
		{"has jwk", eab(jose.HS256, hmacKey, with("jwk", accountKey), accountJSON), lookup, TypeMalformed},
		{"lookup problem passes through", eab(jose.HS256, hmacKey, h, accountJSON),
			func(string) ([]byte, error) { return nil, ExternalAccountRequired("binding revoked") }, TypeExternalAccountRequired},
		{"lookup store failure", eab(jose.HS256, hmacKey, h, accountJSON),
			func(string) ([]byte, error) { return nil, errors.New("database is locked") }, "internal"},
		{"empty key means unknown", eab(jose.HS256, hmacKey, h, accountJSON),
			func(string) ([]byte, error) { return nil, nil }, TypeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kid, err := VerifyEAB(tc.body, accountKey, newAccountURL, tc.lookup)
			switch {
			case tc.want == "":
				if err != nil || kid != eabKID {
					t.Fatalf("VerifyEAB = %q, %v; want %q", kid, err, eabKID)
				}
			case tc.want == "internal":
				var p *Problem
				if err == nil || errors.As(err, &p) {
					t.Fatalf("err = %v, want a non-problem error", err)
				}
				if got := FromError(err); got.Status != 500 || strings.Contains(got.Detail, "locked") {
					t.Errorf("FromError = %+v", got)
				}
			default:
				if got := problemType(t, err); got != tc.want {
					t.Fatalf("type %q, want %q (%v)", got, tc.want, err)
				}
			}
		})
	}
	t.Run("HS384 and HS512 with long keys", func(t *testing.T) {
		t.Parallel()
		long := []byte(strings.Repeat("z", 64))
		for _, alg := range []string{jose.HS384, jose.HS512} {
			body := eab(alg, long, h, accountJSON)
			kid, err := VerifyEAB(body, accountKey, newAccountURL, func(string) ([]byte, error) { return long, nil })
			if err != nil || kid != eabKID {
				t.Errorf("%s: %q, %v", alg, kid, err)
			}
		}
	})
	t.Run("MAC algorithms refused outside EAB", func(t *testing.T) {
		t.Parallel()
		body := eab(jose.HS256, hmacKey, map[string]any{"kid": eabKID, "url": newAccountURL, "nonce": testNonce}, accountJSON)
		if _, err := ParseJWS(body); problemType(t, err) != TypeBadSignatureAlgorithm {
			t.Errorf("ParseJWS(HS256) = %v", err)
		}
	})
}

func ExampleKeyAuthorization() {
	var k jose.JSONWebKey
	_ = json.Unmarshal([]byte(`{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}`), &k)
	ka, err := KeyAuthorization("token", &k)
	fmt.Println(ka, err)
	// Output: token.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs <nil>
}
