package api_test

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// issued is a certificate with its key, ready to present as a TLS client
// certificate.
type issued struct {
	resp api.SignResponse
	leaf *x509.Certificate
	key  crypto.Signer
	pair tls.Certificate
}

// issueWith signs a CSR for key through POST /v1/sign with the admin token.
func (e *testEnv) issueWith(t *testing.T, key crypto.Signer, validity string, dns ...string) issued {
	t.Helper()
	var out api.SignResponse
	e.getJSON(t, "POST", "/v1/sign", e.admin, api.SignRequest{CSR: csrPEM(t, key, dns[0], dns...), Profile: "tls-server", Validity: validity},
		http.StatusCreated, &out)
	chain := pemBlocks(t, out.Chain)
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return issued{resp: out, leaf: leaf, key: key, pair: tls.Certificate{Certificate: chain, PrivateKey: key}}
}

// as returns a copy of e whose client presents pair in the TLS handshake.
func (e *testEnv) as(pair tls.Certificate) *testEnv {
	tr := e.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
	c := *e
	c.client = &http.Client{Transport: tr}
	return &c
}

// renewed checks a successful renewal's answer and record against old.
func (e *testEnv) renewed(t *testing.T, out api.SignResponse, old issued, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	chain := pemBlocks(t, out.Chain)
	if len(chain) != 2 || out.Certificate != pemCert(chain[0]) {
		t.Fatalf("chain has %d certificates, want leaf then intermediate, the leaf as certificate", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Error("renewed certificate does not certify the expected key")
	}
	if !slices.Equal(leaf.DNSNames, old.leaf.DNSNames) || leaf.Subject.CommonName != old.leaf.Subject.CommonName {
		t.Errorf("renewed names %v (cn %q), want %v (cn %q)", leaf.DNSNames, leaf.Subject.CommonName, old.leaf.DNSNames, old.leaf.Subject.CommonName)
	}
	rec := e.cert(t, out.Serial)
	if rec.Replaces != old.resp.Serial || rec.Channel != ca.ChannelRenew || rec.Requester != "token:"+e.adminID ||
		rec.Profile != old.resp.Profile || out.Profile != old.resp.Profile || rec.Status != "valid" {
		t.Errorf("renewed record %+v, want replaces %s, channel renew, requester token:%s, profile %s",
			rec, old.resp.Serial, e.adminID, old.resp.Profile)
	}
	return leaf
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestRenewMTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A certificate is renewed once: each case renews one of its own.
	fresh := func(t *testing.T) (issued, *testEnv) {
		old := e.issueWith(t, newKey(t), "", "renew.example.com", "www.renew.example.com")
		e.clk.Advance(24 * time.Hour)
		return old, e.as(old.pair)
	}

	for _, tc := range []struct {
		name string
		body any // nil: no body
	}{
		{"no body", nil},
		{"empty object", "{}"},
		{"null csr", `{"csr": ""}`},
	} {
		t.Run("same key, "+tc.name, func(t *testing.T) {
			old, m := fresh(t)
			var out api.SignResponse
			m.getJSON(t, "POST", "/v1/renew", "", tc.body, http.StatusCreated, &out)
			e.renewed(t, out, old, old.key.Public())
			// The old one's lifetime, here the profile default.
			if want := e.clk.Now().UTC().Truncate(time.Second).Add(90 * 24 * time.Hour); !out.NotAfter.Equal(want) {
				t.Errorf("not_after %v, want the old certificate's lifetime %v from now", out.NotAfter, want)
			}
		})
	}

	t.Run("rekey", func(t *testing.T) {
		old, m := fresh(t)
		next := newKey(t)
		var out api.SignResponse
		m.getJSON(t, "POST", "/v1/renew", "", api.RenewRequest{CSR: csrPEM(t, next, "renew.example.com", "www.renew.example.com", "renew.example.com")},
			http.StatusCreated, &out)
		e.renewed(t, out, old, next.Public())
		// The new pair renews in turn.
		var again api.SignResponse
		e.as(tls.Certificate{Certificate: pemBlocks(t, out.Chain), PrivateKey: next}).getJSON(t, "POST", "/v1/renew", "", nil, http.StatusCreated, &again)
		if rec := e.cert(t, again.Serial); rec.Replaces != out.Serial {
			t.Errorf("second renewal replaces %q, want %s", rec.Replaces, out.Serial)
		}
	})

	t.Run("a bearer token does not stand in for the certificate", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/renew", e.admin, nil)
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	})
}

// selfIssued is a certificate for the same names and key from a CA of its own.
func selfIssued(t *testing.T, old issued) tls.Certificate {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: old.leaf.Issuer, NotBefore: old.leaf.NotBefore,
		NotAfter: old.leaf.NotAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: old.leaf.SerialNumber, Subject: pkix.Name{CommonName: old.leaf.Subject.CommonName},
		DNSNames: old.leaf.DNSNames, NotBefore: old.leaf.NotBefore, NotAfter: old.leaf.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, old.key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: old.key}
}

// checkRefusalSummary flushes the refusal summaries and checks that the
// last access.refused.summary event counts one refusal, by.
func checkRefusalSummary(t *testing.T, e *testEnv, by string) {
	t.Helper()
	if err := e.auth.FlushRefusalSummaries(t.Context()); err != nil {
		t.Fatal(err)
	}
	sums := e.audit(t, "action=access.refused.summary")
	if len(sums) == 0 {
		t.Fatalf("no access.refused.summary event after a flush, want one counting %s", by)
	}
	if ev := sums[len(sums)-1]; ev.Actor != "anonymous" || ev.Target != "127.0.0.1" || ev.Detail["count"] != "1" || ev.Detail["by"] != by {
		t.Errorf("summary %+v, want one refusal from 127.0.0.1: %s", ev, by)
	}
}

func TestRenewRefusedMTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	blocked := newKey(t)
	if _, err := e.auth.BlockKey(t.Context(), "test", blocked.Public()); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		// setup returns who calls and with which body; target is the
		// serial the audit event names ("" for none).
		setup  func(t *testing.T) (client *testEnv, body any, opts []reqOpt, target string)
		status int
		kind   string
		detail string
	}{
		{"no client certificate", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			return e, nil, nil, ""
		}, http.StatusUnauthorized, "unauthorized", "no client certificate"},
		{"certificate of another CA", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "foreign.example.com")
			return e.as(selfIssued(t, old)), nil, nil, old.resp.Serial
		}, http.StatusUnauthorized, "unauthorized", "not issued by this CA"},
		{"revoked", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "revoked.example.com")
			e.revoke(t, e.admin, map[string]any{"serial": old.resp.Serial, "reason": "superseded"})
			return e.as(old.pair), nil, nil, old.resp.Serial
		}, http.StatusForbidden, "forbidden", "was revoked (superseded)"},
		{"on hold", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "held.example.com")
			e.revoke(t, e.admin, map[string]any{"serial": old.resp.Serial, "reason": "certificateHold"})
			return e.as(old.pair), nil, nil, old.resp.Serial
		}, http.StatusForbidden, "forbidden", "is on hold (certificateHold)"},
		{"rekey to a blocked key", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "blocked.example.com")
			return e.as(old.pair), api.RenewRequest{CSR: csrPEM(t, blocked, "blocked.example.com", "blocked.example.com")}, nil, old.resp.Serial
		}, http.StatusBadRequest, "bad_csr", "public key is blocked"},
		{"rekey with other names", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "names.example.com")
			return e.as(old.pair), api.RenewRequest{CSR: csrPEM(t, newKey(t), "other.example.com", "other.example.com")}, nil, old.resp.Serial
		}, http.StatusBadRequest, "bad_csr", "a rekey keeps the certificate's names"},
		{"malformed body", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "body.example.com")
			return e.as(old.pair), `{"csr": 1}`, nil, old.resp.Serial
		}, http.StatusBadRequest, "malformed", "invalid JSON body"},
		{"unknown field", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "field.example.com")
			return e.as(old.pair), `{"profile": "tls-client"}`, nil, old.resp.Serial
		}, http.StatusBadRequest, "malformed", "unknown field"},
		{"CSR not PEM", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "pem.example.com")
			return e.as(old.pair), api.RenewRequest{CSR: "MIIB"}, nil, old.resp.Serial
		}, http.StatusBadRequest, "bad_csr", "csr must be PEM encoded"},
		{"wrong content type", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "ct.example.com")
			return e.as(old.pair), "{}", []reqOpt{header("Content-Type", "application/pkcs10")}, old.resp.Serial
		}, http.StatusBadRequest, "malformed", "Content-Type must be application/json"},
		{"body over the limit", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "", "big.example.com")
			return e.as(old.pair), `{"csr": "` + strings.Repeat("A", testMaxBody) + `"}`, nil, old.resp.Serial
		}, http.StatusRequestEntityTooLarge, "too_large", "request body larger than"},
		// Last: it moves the shared clock.
		{"expired", func(t *testing.T) (*testEnv, any, []reqOpt, string) {
			old := e.issueWith(t, newKey(t), "1h", "expired.example.com")
			e.clk.Advance(time.Hour + time.Second)
			return e.as(old.pair), nil, nil, old.resp.Serial
		}, http.StatusUnauthorized, "unauthorized", "the client certificate expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, body, opts, target := tc.setup(t)
			before := len(e.audit(t, "action=request.refused"))
			certs := len(e.certs(t, e.admin))
			resp, data := client.do(t, "POST", "/v1/renew", "", body, opts...)
			got := checkError(t, resp, data, tc.status, tc.kind)
			if !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("detail %q does not say %q", got.Detail, tc.detail)
			}
			if n := len(e.certs(t, e.admin)); n != certs {
				t.Errorf("%d certificates after the refusal, %d before", n, certs)
			}
			evs := e.audit(t, "action=request.refused")
			if tc.kind == "unauthorized" {
				// No certificate of ours: an anonymous caller, whose
				// refusal is only summed per source (issue 15).
				if len(evs) != before {
					t.Fatalf("%d request.refused events after an unauthenticated refusal, %d before", len(evs), before)
				}
				checkRefusalSummary(t, e, "renew:unauthorized=1")
				return
			}
			if len(evs) != before+1 {
				t.Fatalf("%d request.refused events after the refusal, %d before", len(evs), before)
			}
			ev := evs[len(evs)-1]
			if ev.Target != target || ev.Detail["request"] != "renew" || ev.Detail["channel"] != ca.ChannelRenew ||
				ev.Detail["reason"] != tc.kind || ev.Detail["detail"] != got.Detail {
				t.Errorf("audit event %+v, want a renew refusal (%s) of %q saying %q", ev, tc.kind, target, got.Detail)
			}
		})
	}
}
