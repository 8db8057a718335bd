package api_test

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// FuzzParseRenewRequest: the /v1/renew body parser never panics and
// refuses only with a client-fault *ca.Error. More seeds live in
// testdata/fuzz/FuzzParseRenewRequest/.
func FuzzParseRenewRequest(f *testing.F) {
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: fuzzCSR(f)}))
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, s := range [][]byte{
		{},
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(`{"csr": ""}`),
		enc(api.RenewRequest{CSR: csrPEM}),
		enc(api.RenewRequest{CSR: csrPEM + csrPEM}),
		enc(api.RenewRequest{CSR: strings.ReplaceAll(csrPEM, "\n", "")}),
		[]byte(`{"csr": 1}`),
		[]byte(`{"csr": "x"} {}`),
		[]byte(`{"profile": "tls-server"}`),
		[]byte(`[]`),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := api.ParseRenewRequest(bytes.NewReader(body))
		if err != nil {
			var ce *ca.Error
			if !errors.As(err, &ce) || ce.Kind == ca.Internal || ce.Detail == "" {
				t.Fatalf("error %T %v, want a client-fault *ca.Error with detail", err, err)
			}
			if csr != nil {
				t.Fatal("both a CSR and an error")
			}
		}
		// A parsed CSR may still carry a key of an unknown algorithm (nil
		// PublicKey): the parser checks structure, Renew the signature.
	})
}
