package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"

	"go.step.sm/crypto/jose"

	"github.com/sigil-ca/sigil/ca"
)

// JWS is an ACME request body (RFC 8555 §6.2) that ParseJWS has parsed and
// whose protected header it has checked. Its signature is not verified, and
// Payload is nil, until Verify succeeds.
type JWS struct {
	Alg   string
	Nonce string
	URL   string
	// KID is set iff the request named its account with "kid".
	KID string
	// JWK is set iff the request carried its key in "jwk"; it is a public
	// key of a type that matches Alg.
	JWK *jose.JSONWebKey
	// Payload is the verified payload after Verify: empty (not nil) for
	// POST-as-GET (RFC 8555 §6.3).
	Payload []byte

	sig *jose.JSONWebSignature
}

// accountAlgs are the algorithms an account key may sign with. RFC 8555
// §6.2 forbids "none" and MAC algorithms; the RSA and ECDSA choices are
// what certbot, lego, acme.sh, Caddy, cert-manager and autocert send.
func accountAlgs() []string { return []string{jose.ES256, jose.ES384, jose.RS256, jose.EdDSA} }

// macAlgs are the algorithms an external account binding may use (RFC 8555
// §7.3.4); nowhere else is a MAC accepted.
func macAlgs() []string { return []string{jose.HS256, jose.HS384, jose.HS512} }

// keyRule says how a JWS must identify its key.
type keyRule int

const (
	jwkOrKID keyRule = iota // exactly one of jwk and kid (RFC 8555 §6.2)
	jwkOnly                 // keyChange inner JWS (RFC 8555 §7.3.5)
	kidOnly                 // external account binding (RFC 8555 §7.3.4)
)

// jwsRules are the header rules one kind of JWS follows.
type jwsRules struct {
	what  string // names the JWS in problem details
	algs  []string
	keys  keyRule
	nonce bool // required when true, forbidden when false
}

// ParseJWS parses an ACME request body: a JWS in the flattened JSON
// serialization with one signature and a protected header only (RFC 8555
// §6.2; compact and general serializations and unprotected headers are
// refused). It checks that alg is ES256, ES384, RS256 or EdDSA
// (badSignatureAlgorithm otherwise, listing those), that exactly one of
// jwk and kid is present (malformed), that nonce (badNonce) and url
// (malformed) are present, and that a jwk is a public P-256, P-384,
// RSA 2048–4096-bit or Ed25519 key (badPublicKey) of the type alg names
// (badSignatureAlgorithm). It does not verify the signature: call Verify.
// The caller limits the body size and compares URL with the request URL.
// Every error is a *Problem.
func ParseJWS(body []byte) (*JWS, error) {
	return parseJWS(body, jwsRules{what: "JWS", algs: accountAlgs(), keys: jwkOrKID, nonce: true})
}

// parseJWS parses a flattened JWS under rules. It decodes the envelope
// and the protected header itself, refusing duplicate member names, then
// hands a canonical re-encoding to go-jose and insists that go-jose read
// the same header values, so no two parsers can disagree about a request.
func parseJWS(body []byte, rules jwsRules) (*JWS, error) {
	what := rules.what
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, Malformed("%s is empty", what)
	}
	if trimmed[0] != '{' {
		return nil, Malformed("%s must use the flattened JSON serialization (RFC 8555 §6.2), not the compact one", what)
	}
	top, err := jsonObject(body)
	if err != nil {
		return nil, Malformed("%s is not a JSON object: %v", what, err)
	}
	if _, ok := top["signatures"]; ok {
		return nil, Malformed("%s must use the flattened JSON serialization with exactly one signature (RFC 8555 §6.2), not the general one", what)
	}
	if _, ok := top["header"]; ok {
		return nil, Malformed("%s must not have an unprotected header (RFC 8555 §6.2)", what)
	}
	protB64, protected, err := base64Member(top, "protected")
	if err != nil {
		return nil, Malformed("%s %v", what, err)
	}
	payloadB64, _, err := base64Member(top, "payload")
	if err != nil {
		return nil, Malformed("%s %v", what, err)
	}
	sigB64, _, err := base64Member(top, "signature")
	if err != nil {
		return nil, Malformed("%s %v", what, err)
	}
	if len(protected) == 0 {
		return nil, Malformed("%s has no protected header", what)
	}
	hdr, err := jsonObject(protected)
	if err != nil {
		return nil, Malformed("%s protected header is not a JSON object: %v", what, err)
	}

	alg, hasAlg, err := stringMember(hdr, "alg")
	if err != nil || !hasAlg {
		return nil, Malformed("%s protected header needs an alg string", what)
	}
	if !slices.Contains(rules.algs, alg) {
		return nil, unsupportedAlg(what, alg, rules.algs)
	}
	for _, name := range []string{"b64", "crit"} {
		// RFC 8555 §6.2: no unencoded payload; and no extension we would
		// have to understand.
		if _, ok := hdr[name]; ok {
			return nil, Malformed("%s header parameter %q is not supported", what, name)
		}
	}

	kid, hasKID, err := stringMember(hdr, "kid")
	if err != nil {
		return nil, Malformed("%s kid must be a string", what)
	}
	rawJWK, hasJWK := hdr["jwk"]
	switch rules.keys {
	case jwkOrKID:
		if hasKID == hasJWK {
			return nil, Malformed("%s must have exactly one of jwk and kid (RFC 8555 §6.2)", what)
		}
	case jwkOnly:
		if hasKID || !hasJWK {
			return nil, Malformed("%s must carry its key in jwk, without kid", what)
		}
	case kidOnly:
		if hasJWK || !hasKID {
			return nil, Malformed("%s must name its key with kid, without jwk", what)
		}
	}
	if hasKID && kid == "" {
		return nil, Malformed("%s kid is empty", what)
	}

	nonce, hasNonce, err := stringMember(hdr, "nonce")
	switch {
	case rules.nonce && (err != nil || !hasNonce || nonce == ""):
		return nil, BadNonce(what + " protected header needs a nonce string (RFC 8555 §6.5)")
	case !rules.nonce && hasNonce:
		return nil, Malformed("%s must not have a nonce", what)
	}
	url, hasURL, err := stringMember(hdr, "url")
	if err != nil || !hasURL || url == "" {
		return nil, Malformed("%s protected header needs a url string (RFC 8555 §6.4)", what)
	}

	if hasJWK {
		k, perr := parsePublicJWK(rawJWK)
		if perr != nil {
			return nil, BadPublicKey(what + " jwk " + perr.Error())
		}
		if err := checkKeyAlg(alg, k); err != nil {
			return nil, err
		}
	}
	if sigB64 == "" {
		return nil, Malformed("%s has no signature", what)
	}

	// Only members checked above reach go-jose, each once, base64url-clean.
	canonical, err := json.Marshal(map[string]string{"protected": protB64, "payload": payloadB64, "signature": sigB64})
	if err != nil {
		return nil, Malformed("%s cannot be encoded: %v", what, err)
	}
	sig, err := jose.ParseJWS(string(canonical))
	if err != nil {
		return nil, Malformed("%s is invalid: %v", what, jose.TrimPrefix(err))
	}
	if len(sig.Signatures) != 1 {
		return nil, Malformed("%s must have exactly one signature", what)
	}
	h := sig.Signatures[0].Protected
	gotURL, _ := h.ExtraHeaders[jose.HeaderKey("url")].(string)
	if h.Algorithm != alg || h.KeyID != kid || h.Nonce != nonce || gotURL != url || (h.JSONWebKey != nil) != hasJWK {
		return nil, Malformed("%s protected header is ambiguous", what)
	}
	j := &JWS{Alg: alg, Nonce: nonce, URL: url, KID: kid, sig: sig}
	if hasJWK {
		// go-jose's key is the one Verify will be asked to use: check it too.
		if err := checkKeyAlg(alg, h.JSONWebKey); err != nil {
			return nil, err
		}
		j.JWK = h.JSONWebKey
	}
	return j, nil
}

func unsupportedAlg(what, alg string, algs []string) *Problem {
	list := strings.Join(algs, ", ")
	switch {
	case strings.EqualFold(alg, "none"):
		return BadSignatureAlgorithm(fmt.Sprintf("%s alg %q is refused: requests must be signed (RFC 8555 §6.2); supported: %s", what, alg, list), algs...)
	case strings.HasPrefix(alg, "HS") && !slices.Contains(algs, jose.HS256):
		return BadSignatureAlgorithm(fmt.Sprintf("%s alg %q is refused: MAC algorithms are not allowed here (RFC 8555 §6.2); supported: %s", what, alg, list), algs...)
	}
	return BadSignatureAlgorithm(fmt.Sprintf("%s alg %q is not supported; supported: %s", what, alg, list), algs...)
}

// Verify checks the signature with key: the account key from the store for
// a kid request, j.JWK for a jwk request. A key Sigil does not accept is
// badPublicKey; a key whose type does not match j.Alg is
// badSignatureAlgorithm; a bad signature is malformed "JWS signature
// invalid" (as Pebble does). On success it sets j.Payload. Errors are
// *Problem, except for a j that ParseJWS did not return.
func (j *JWS) Verify(key *jose.JSONWebKey) error {
	if j == nil || j.sig == nil {
		return errors.New("acme: Verify on a JWS that ParseJWS did not return")
	}
	if key != nil && key.Key != nil && !key.IsPublic() {
		pub := key.Public()
		key = &pub
	}
	if err := checkKeyAlg(j.Alg, key); err != nil {
		return err
	}
	payload, err := j.sig.Verify(key)
	if err != nil {
		return Malformed("JWS signature invalid")
	}
	if payload == nil {
		payload = []byte{}
	}
	j.Payload = payload
	return nil
}

// keyAlg returns the one alg a key may sign ACME requests with, or a
// badPublicKey problem for a key Sigil does not accept.
func keyAlg(k *jose.JSONWebKey) (string, *Problem) {
	if k == nil {
		return "", BadPublicKey("no key")
	}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		if key != nil && key.Curve == elliptic.P256() {
			return jose.ES256, nil
		}
		if key != nil && key.Curve == elliptic.P384() {
			return jose.ES384, nil
		}
		return "", BadPublicKey("ECDSA keys must use P-256 or P-384")
	case *rsa.PublicKey:
		if key == nil || key.N == nil {
			return "", BadPublicKey("RSA key has no modulus")
		}
		if bits := key.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return "", BadPublicKey(rsaSizeDetail(bits))
		}
		if p := rsaKeyProblem(key); p != nil {
			return "", p
		}
		return jose.RS256, nil
	case ed25519.PublicKey:
		if len(key) != ed25519.PublicKeySize {
			return "", BadPublicKey("Ed25519 key has the wrong length")
		}
		return jose.EdDSA, nil
	}
	return "", BadPublicKey("key must be a public ECDSA P-256 or P-384, RSA 2048-4096-bit, or Ed25519 key")
}

// RSA account key bounds: below 2048 bits is weak (Boulder's floor too);
// 4096 is go-jose's jose.MaxRSAModulusBits, the largest jwk it parses.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

func rsaSizeDetail(bits int) string {
	return fmt.Sprintf("RSA keys must be %d to %d bits, not %d", minRSABits, maxRSABits, bits)
}

// checkKeyAlg refuses a key Sigil does not accept (badPublicKey) and a key
// that cannot sign with alg (badSignatureAlgorithm).
func checkKeyAlg(alg string, k *jose.JSONWebKey) error {
	want, p := keyAlg(k)
	if p != nil {
		return p
	}
	if want != alg {
		return BadSignatureAlgorithm(fmt.Sprintf("JWS alg %s does not match the key, which signs with %s", alg, want), accountAlgs()...)
	}
	return nil
}

// parsePublicJWK parses a JWK that must be a public key: private members
// are refused before go-jose builds a private key from them.
func parsePublicJWK(raw []byte) (*jose.JSONWebKey, error) {
	members, err := jsonObject(raw)
	if err != nil {
		return nil, fmt.Errorf("is not a JSON object: %w", err)
	}
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"} {
		if _, ok := members[name]; ok {
			return nil, fmt.Errorf("must be a public key: it has the private member %q", name)
		}
	}
	if n, _, _ := stringMember(members, "n"); n != "" {
		// go-jose refuses a modulus over its limit without saying so.
		if b, err := base64.RawURLEncoding.DecodeString(n); err == nil {
			if bits := new(big.Int).SetBytes(b).BitLen(); bits > maxRSABits {
				return nil, fmt.Errorf("is a %d-bit RSA key: %s", bits, rsaSizeDetail(bits))
			}
		}
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("is not a usable key: %w", jose.TrimPrefix(err))
	}
	if !k.Valid() || !k.IsPublic() {
		return nil, errors.New("is not a usable public key")
	}
	return &k, nil
}

// jsonObject decodes data as exactly one JSON object, refusing duplicate
// member names and trailing data, so that every parser sees one value per
// name.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad member name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return members, nil
}

// stringMember returns the string member name; an error if it is present
// but not a JSON string (null included).
func stringMember(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", true, fmt.Errorf("%s must be a string", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%s: %w", name, err)
	}
	return s, true, nil
}

// base64Member returns the required member name, which must be unpadded
// base64url (RFC 7515 §2), and its decoding.
func base64Member(m map[string]json.RawMessage, name string) (string, []byte, error) {
	s, ok, err := stringMember(m, name)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, fmt.Errorf("has no %q member", name)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", nil, fmt.Errorf("%s is not unpadded base64url", name)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return "", nil, fmt.Errorf("%s is not unpadded base64url", name)
	}
	return s, b, nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of key's public part,
// base64url without padding. It identifies an account key (RFC 8555
// §7.3.1) and is half of a key authorization.
func Thumbprint(key *jose.JSONWebKey) (string, error) {
	if key == nil || key.Key == nil {
		return "", errors.New("thumbprint: no key")
	}
	t, err := jose.Thumbprint(key)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return t, nil
}

// KeyAuthorization returns token + "." + Thumbprint(key) (RFC 8555 §8.1).
func KeyAuthorization(token string, key *jose.JSONWebKey) (string, error) {
	t, err := Thumbprint(key)
	if err != nil {
		return "", err
	}
	return token + "." + t, nil
}

// KeyChange is the payload of a keyChange inner JWS (RFC 8555 §7.3.5).
type KeyChange struct {
	// Account is the account URL; the caller checks it equals the outer
	// JWS's kid.
	Account string
	// OldKey is a public key; the caller checks it is the account's current
	// key (compare thumbprints).
	OldKey *jose.JSONWebKey
}

// ParseKeyChangeInner parses and verifies the inner JWS of a keyChange
// request (RFC 8555 §7.3.5), the outer JWS's verified payload: it must
// carry the new key in jwk (no kid), have no nonce, have url equal to
// outerURL, be signed by the new key, and carry {"account", "oldKey"}. It
// returns the new key and the payload; the caller checks the account, the
// old key, and that no other account has the new key (409). Every error is
// a *Problem.
func ParseKeyChangeInner(payload []byte, outerURL string) (*jose.JSONWebKey, KeyChange, error) {
	const what = "keyChange inner JWS"
	j, err := parseJWS(payload, jwsRules{what: what, algs: accountAlgs(), keys: jwkOnly, nonce: false})
	if err != nil {
		return nil, KeyChange{}, err
	}
	if j.URL != outerURL {
		return nil, KeyChange{}, Malformed("%s url %q does not match the outer JWS url %q", what, j.URL, outerURL)
	}
	if err := j.Verify(j.JWK); err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Type == TypeMalformed {
			return nil, KeyChange{}, Malformed("%s signature invalid", what)
		}
		return nil, KeyChange{}, err
	}
	m, err := jsonObject(j.Payload)
	if err != nil {
		return nil, KeyChange{}, Malformed("%s payload is not a JSON object: %v", what, err)
	}
	account, _, err := stringMember(m, "account")
	if err != nil || account == "" {
		return nil, KeyChange{}, Malformed("%s payload has no account", what)
	}
	rawOld, ok := m["oldKey"]
	if !ok {
		return nil, KeyChange{}, Malformed("%s payload has no oldKey", what)
	}
	old, err := parsePublicJWK(rawOld)
	if err != nil {
		return nil, KeyChange{}, Malformed("%s oldKey %v", what, err)
	}
	return j.JWK, KeyChange{Account: account, OldKey: old}, nil
}

// VerifyEAB verifies an External Account Binding (RFC 8555 §7.3.4): eab is
// the newAccount payload's "externalAccountBinding" value, accountKey the
// outer JWS's jwk, url the newAccount URL. The binding must be a flattened
// JWS with alg HS256, HS384 or HS512 (the only place a MAC is accepted),
// a kid, no jwk, no nonce, and url equal to url; its MAC must verify
// (constant-time, in go-jose) with lookup(kid); its payload must be
// accountKey. It returns the kid. lookup returns an error of kind
// ca.NotFound, or an empty key, for an unknown kid (unauthorized), or a
// *Problem to send as is. Errors are *Problem, except other lookup errors,
// returned wrapped for the caller to log and map with FromError.
func VerifyEAB(eab []byte, accountKey *jose.JSONWebKey, url string, lookup func(kid string) (hmacKey []byte, err error)) (string, error) {
	const what = "externalAccountBinding JWS"
	j, err := parseJWS(eab, jwsRules{what: what, algs: macAlgs(), keys: kidOnly, nonce: false})
	if err != nil {
		return "", err
	}
	if j.URL != url {
		return "", Malformed("%s url %q does not match the newAccount url %q", what, j.URL, url)
	}
	key, err := lookup(j.KID)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			return "", p
		}
		if !errors.Is(err, ca.NotFound) {
			return "", fmt.Errorf("eab key lookup: %w", err)
		}
	}
	if len(key) == 0 {
		return "", Unauthorized(fmt.Sprintf("external account key id %q is not known", j.KID))
	}
	// RFC 7518 §3.2: the key must be at least as long as the hash output.
	var usable []string
	for _, a := range macAlgs() {
		if len(key) >= macKeyBytes(a) {
			usable = append(usable, a)
		}
	}
	if len(usable) == 0 {
		return "", fmt.Errorf("eab key %q is %d bytes, shorter than HS256 requires", j.KID, len(key))
	}
	if !slices.Contains(usable, j.Alg) {
		return "", BadSignatureAlgorithm(fmt.Sprintf("%s alg %s needs a longer key than this binding has; use %s", what, j.Alg, strings.Join(usable, ", ")), usable...)
	}
	payload, err := j.sig.Verify(key)
	if err != nil {
		return "", Unauthorized(what + " MAC is invalid")
	}
	bound, err := parsePublicJWK(payload)
	if err != nil {
		return "", Malformed("%s payload %v", what, err)
	}
	want, err := Thumbprint(accountKey)
	if err != nil {
		return "", fmt.Errorf("eab: account key: %w", err)
	}
	got, err := Thumbprint(bound)
	if err != nil || got != want {
		return "", Malformed("%s payload is not the account key", what)
	}
	return j.KID, nil
}

func macKeyBytes(alg string) int {
	switch alg {
	case jose.HS384:
		return 48
	case jose.HS512:
		return 64
	}
	return 32
}
