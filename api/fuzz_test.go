package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// fuzzCSR returns a real P-256 CSR in DER.
func fuzzCSR(f *testing.F) []byte {
	f.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "web.example.com"}, DNSNames: []string{"web.example.com", "*.example.com"},
	}, key)
	if err != nil {
		f.Fatal(err)
	}
	return der
}

// FuzzParseSignRequest: the /v1/sign body parser never panics, refuses only
// with a client-fault *ca.Error, and returns a complete request otherwise.
// More seeds live in testdata/fuzz/FuzzParseSignRequest/.
func FuzzParseSignRequest(f *testing.F) {
	der := fuzzCSR(f)
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, s := range [][]byte{
		enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server", Validity: "720h"}),
		enc(api.SignRequest{CSR: csrPEM, Profile: "tls-client"}),
		enc(map[string]string{"csr": strings.ReplaceAll(csrPEM, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"), "profile": "p"}),
		{},
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`"csr"`),
		enc(map[string]any{"csr": csrPEM, "profile": "tls-server", "extra": true}),
		enc(map[string]any{"csr": csrPEM, "profile": "tls-server", "Validity": "1h", "PROFILE": "x"}),
		enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server", Validity: "2562047h47m16.854775807s"}),
		enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server", Validity: "9999999999999h"}),
		enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server", Validity: "-1ns"}),
		enc(api.SignRequest{CSR: csrPEM, Profile: " ", Validity: "1h"}),
		[]byte(`{"csr":{"nested":[1,2,{"a":{"b":[[[[]]]]}}]},"profile":"tls-server"}`),
		[]byte(`{"csr":"x","profile":{"name":"tls-server"}}`),
		[]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)),
		enc(api.SignRequest{CSR: base64.StdEncoding.EncodeToString(der), Profile: "tls-server"}),
		enc(api.SignRequest{CSR: string(der), Profile: "tls-server"}),
		enc(api.SignRequest{CSR: csrPEM[:len(csrPEM)/2], Profile: "tls-server"}),
		enc(api.SignRequest{CSR: csrPEM + "trailing", Profile: "tls-server"}),
		enc(api.SignRequest{CSR: "junk -----BEGIN", Profile: "tls-server"}),
		append(enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server"}), '}'),
		append(enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server"}), `{"csr":""}`...),
		append(enc(api.SignRequest{CSR: csrPEM, Profile: "tls-server"}), " \n\t"...),
		[]byte(`{"csr":"\u0000-----BEGIN","profile":"\ud800"}`),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := api.ParseSignRequest(bytes.NewReader(data))
		if err != nil {
			var maxErr *http.MaxBytesError
			if errors.As(err, &maxErr) {
				t.Fatalf("MaxBytesError without a MaxBytesReader: %v", err)
			}
			var ce *ca.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ca.Error", err, err)
			}
			if ce.Kind != ca.Malformed && ce.Kind != ca.BadCSR {
				t.Fatalf("error kind %s (%v), want malformed or bad_csr", ce.Kind, err)
			}
			if ce.Detail == "" {
				t.Fatalf("error without detail: %v", err)
			}
			if got.CSR != nil || got.Profile != "" || got.Validity != 0 {
				t.Fatalf("refusal returned a request: %+v", got)
			}
			return
		}
		if got.CSR == nil {
			t.Fatal("accepted a request without a CSR")
		}
		if strings.TrimSpace(got.Profile) == "" {
			t.Fatal("accepted a request without a profile")
		}
		if got.Validity < 0 {
			t.Fatalf("accepted negative validity %v", got.Validity)
		}
		// What was accepted is one JSON object naming exactly these values.
		var req api.SignRequest
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if req.Profile != got.Profile {
			t.Fatalf("profile %q, body says %q", got.Profile, req.Profile)
		}
		if (req.Validity == "") != (got.Validity == 0) {
			t.Fatalf("validity %v, body says %q", got.Validity, req.Validity)
		}
		if !strings.Contains(req.CSR, "-----BEGIN") {
			t.Fatal("accepted a CSR that is not PEM")
		}
	})
}

// FuzzParseRevokeRequest: the /v1/revoke body parser never panics, refuses
// only with Malformed, and accepts only a serial with a reason one may
// revoke with.
func FuzzParseRevokeRequest(f *testing.F) {
	for _, s := range []string{
		`{"serial":"0a1b2c","reason":"keyCompromise"}`,
		`{"serial":"0A:1B:2C","reason":1,"invalidity_date":"2026-01-02T15:04:05Z"}`,
		`{"serial":"0a1b2c","reason":"key-compromise","invalidity_date":"2026-01-02T15:04:05.999+02:00"}`,
		`{"serial":"0a1b2c"}`,
		`{"serial":"0a1b2c","reason":null}`,
		`{"serial":"0a1b2c","reason":"7"}`,
		`{"serial":"0a1b2c","reason":8}`,
		`{"serial":"0a1b2c","reason":1.0}`,
		`{"serial":"0a1b2c","reason":1e0}`,
		`{"serial":"0a1b2c","reason":-0}`,
		`{"serial":"0a1b2c","reason":"\u006beyCompromise"}`,
		`{"serial":"0a1b2c","reason":"\ud800"}`,
		`{"serial":"0a1b2c","reason":["keyCompromise"]}`,
		`{"serial":"0a1b2c","reason":1,"invalidity_date":"yesterday"}`,
		`{"serial":"","reason":1}`,
		`{"serial":" ","reason":1}`,
		`{"serial":"0a1b2c","reason":1}{}`,
		`{"serial":"0a1b2c","Reason":1,"REASON":2}`,
		`{}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := api.ParseRevokeRequest(bytes.NewReader(data))
		if err != nil {
			var ce *ca.Error
			if !errors.As(err, &ce) || ce.Kind != ca.Malformed || ce.Detail == "" {
				t.Fatalf("error %T %v, want a malformed *ca.Error with a detail", err, err)
			}
			return
		}
		if strings.TrimSpace(got.Serial) == "" {
			t.Fatal("accepted a request without a serial")
		}
		if back, err := ca.ParseRevocationReason(ca.ReasonName(got.Reason)); err != nil || back != got.Reason {
			t.Fatalf("accepted reason %d, which one may not revoke with", got.Reason)
		}
		if got.Actor != "" || got.Channel != "" {
			t.Fatalf("parser set actor %q or channel %q", got.Actor, got.Channel)
		}
	})
}
