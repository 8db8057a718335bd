package revocation

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sigil-ca/sigil/ca"
)

// FuzzOCSPRequest feeds arbitrary bytes to the request parser and to the
// GET decoder: they must never panic, and whatever parses must have
// hashes of its algorithm's length, a positive serial, and a nonce only if
// it said so. The POST handler runs with nonces on.
func FuzzOCSPRequest(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, der []byte) {
		q, err := parseOCSPRequest(der)
		if err == nil {
			want := 20
			if q.hash == hashSHA256 {
				want = 32
			}
			if len(q.nameHash) != want || len(q.keyHash) != want || len(q.serial) == 0 || q.serial[0] == 0 {
				t.Fatalf("accepted bad request %x: %+v", der, q)
			}
			if !q.hasNonce && q.nonce != nil {
				t.Fatalf("nonce without an extension in %x", der)
			}
			if validNonce(q.nonce) && (len(q.nonce) < 3 || len(q.nonce) > 2+ca.MaxOCSPNonce) {
				t.Fatalf("accepted a nonce of %d bytes: %x", len(q.nonce), q.nonce)
			}
		}
		_, _ = decodeGETRequest(string(der))
		if len(der) < 256 { // the nonce seeds are ~150 bytes
			r := &Responder{cfg: OCSPConfig{MaxRequestBytes: 1024, Nonce: true}, metrics: newOCSPMetrics(nil)}
			r.idx.Store(&issuerIndex{}) // serves no issuer
			rr := httptest.NewRecorder()
			r.servePOST(rr, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der)))
			_ = rr
		}
	})
}
