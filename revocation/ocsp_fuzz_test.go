package revocation

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzOCSPRequest feeds arbitrary bytes to the request parser and to the
// GET decoder: they must never panic, and whatever parses must have
// hashes of its algorithm's length and a positive serial.
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
		}
		_, _ = decodeGETRequest(string(der))
		if len(der) < 64 {
			r := &Responder{cfg: OCSPConfig{MaxRequestBytes: 1024}, metrics: newOCSPMetrics(nil)}
			rr := httptest.NewRecorder()
			r.servePOST(rr, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der)))
			_ = rr
		}
	})
}
