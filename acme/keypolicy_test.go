package acme

import (
	"testing"
)

// TestRSAAccountKeyExponent (issue 15 item 10): an RSA account key (or a
// certificate key revoking by jwk) must have the exponent 65537.
func TestRSAAccountKeyExponent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, e string }{{"3", "Aw"}, {"17", "EQ"}, {"65539", "AQAD"}, {"2^31-1", "f____w"}} {
		body := crafted(t, hdr(map[string]any{"alg": "RS256", "jwk": bigRSA(2048, tc.e)}), []byte(`{}`), []byte("s"))
		_, err := ParseJWS(body)
		if err == nil {
			t.Fatalf("exponent %s: ParseJWS accepted the key", tc.name)
		}
		if got := problemType(t, err); got != TypeBadPublicKey {
			t.Errorf("exponent %s: ParseJWS = %v, want badPublicKey", tc.name, err)
		}
	}
}
