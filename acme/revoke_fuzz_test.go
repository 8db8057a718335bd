package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"
)

// FuzzRevokePayload: any revokeCert payload either yields a certificate
// with a positive serial and a reason a client may give, or a problem
// document; it never panics.
func FuzzRevokePayload(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x5e1a1), Subject: pkix.Name{CommonName: "fuzz.test"},
		NotBefore: time.Unix(1e9, 0), NotAfter: time.Unix(2e9, 0), DNSNames: []string{"fuzz.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString(der)
	for _, seed := range []string{
		`{"certificate":"` + b64 + `"}`,
		`{"certificate":"` + b64 + `","reason":4}`,
		`{"certificate":"` + b64 + `","reason":2}`,
		`{"certificate":"` + b64 + `","reason":-1}`,
		`{"certificate":"` + b64[:len(b64)/2] + `"}`,
		`{"certificate":"` + base64.StdEncoding.EncodeToString(der) + `"}`,
		`{"certificate":""}`, `{"reason":1}`, `{}`, `null`, `[]`, ``, `{"certificate":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		cert, reason, err := parseRevokePayload(payload)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a problem document", err)
			}
			return
		}
		if cert == nil || cert.SerialNumber.Sign() <= 0 {
			t.Fatalf("accepted a certificate without a positive serial")
		}
		if reason != 0 && reason != 1 && (reason < 3 || reason > 5) {
			t.Fatalf("accepted reason %d", reason)
		}
	})
}
