package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// nonceExt returns a DER id-pkix-ocsp-nonce Extension whose extnValue is
// value, and value.
func nonceExt(t testing.TB, value []byte, critical bool) (ext, extnValue []byte) {
	t.Helper()
	der, err := asn1.Marshal(pkix.Extension{Id: oidNonce, Critical: critical, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	return der, value
}

// nonceOf returns the DER Nonce OCTET STRING of n random octets.
func nonceOf(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// withExtensions re-encodes an OCSPRequest with requestExtensions holding
// the DER Extensions exts, as openssl sends its nonce.
func withExtensions(t testing.TB, req []byte, exts ...[]byte) []byte {
	t.Helper()
	var outer struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(req, &outer); err != nil {
		t.Fatal(err)
	}
	tagged, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: seq(bytes.Join(exts, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return seq(seq(append(bytes.Clone(outer.TBS.Bytes), tagged...)))
}

// responseExtensions returns the encoded SingleResponses and the
// responseExtensions of a response's ResponseData, which
// golang.org/x/crypto/ocsp does not expose.
func responseExtensions(t testing.TB, resp *ocsp.Response) ([]byte, []pkix.Extension) {
	t.Helper()
	var rd struct {
		Version     int `asn1:"optional,explicit,tag:0,default:0"`
		ResponderID asn1.RawValue
		ProducedAt  time.Time `asn1:"generalized"`
		Responses   asn1.RawValue
		Extensions  []pkix.Extension `asn1:"optional,explicit,tag:1"`
	}
	if rest, err := asn1.Unmarshal(resp.TBSResponseData, &rd); err != nil || len(rest) > 0 {
		t.Fatalf("ResponseData: %v (%d trailing bytes)", err, len(rest))
	}
	return rd.Responses.FullBytes, rd.Extensions
}

// emptyExtensions re-encodes req with a requestExtensions [2] holding
// nothing, not even the SEQUENCE.
func emptyExtensions(t testing.TB, req []byte) []byte {
	t.Helper()
	var outer struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(req, &outer); err != nil {
		t.Fatal(err)
	}
	return seq(seq(append(bytes.Clone(outer.TBS.Bytes), 0xa2, 0x00)))
}

func nonceCount(t testing.TB, r *Responder, result string) float64 {
	t.Helper()
	return counterValue(t, r.metrics.nonces[result])
}

func TestOCSPNonceEcho(t *testing.T) {
	for _, issuerSigns := range []bool{false, true} {
		name := "delegated"
		if issuerSigns {
			name = "issuer"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			good := e.issue("nonce.example.com")
			revoked := e.issue("revoked.example.com")
			r := e.responder(OCSPConfig{Nonce: true, SignWithIssuer: issuerSigns})
			if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: ca.SerialString(revoked.SerialNumber), Reason: ca.ReasonSuperseded, Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			unknown := *good
			unknown.SerialNumber = new(big.Int).Add(good.SerialNumber, big.NewInt(1))
			e.clk.Advance(time.Minute) // producedAt of nonce responses differs from thisUpdate
			inter := e.auth.Intermediate().Cert
			h := r.Handler()
			for _, tc := range []struct {
				name   string
				cert   *x509.Certificate
				hash   crypto.Hash
				size   int
				status int
			}{
				{"good sha1 16", good, crypto.SHA1, 16, ocsp.Good},
				{"good sha256 32", good, crypto.SHA256, 32, ocsp.Good},
				{"good 1", good, crypto.SHA256, 1, ocsp.Good},
				{"revoked", revoked, crypto.SHA256, 16, ocsp.Revoked},
				{"unknown", &unknown, crypto.SHA1, 16, ocsp.Unknown},
			} {
				t.Run(tc.name, func(t *testing.T) {
					plain := request(t, tc.cert, inter, tc.hash)
					cached := get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(plain))
					want := parse(t, cached, tc.cert, inter)
					presigned := counterValue(t, r.metrics.signed)
					signedBefore := nonceCount(t, r, nonceSigned)

					ext, nonce := nonceExt(t, nonceOf(t, tc.size), false)
					rr := post(t, h, withExtensions(t, plain, ext))
					got := parse(t, rr, tc.cert, inter)
					single, exts := responseExtensions(t, got)
					if len(exts) != 1 || !exts[0].Id.Equal(oidNonce) || exts[0].Critical || !bytes.Equal(exts[0].Value, nonce) {
						t.Fatalf("responseExtensions %+v, want the nonce %x", exts, nonce)
					}
					// The cached response's content, freshly signed.
					wantSingle, wantExts := responseExtensions(t, want)
					if !bytes.Equal(single, wantSingle) || len(wantExts) != 0 {
						t.Errorf("SingleResponse %x\nwant the cached %x", single, wantSingle)
					}
					if got.Status != tc.status || !got.ProducedAt.Equal(e.clk.Now().Truncate(time.Second)) ||
						(got.Certificate == nil) != issuerSigns {
						t.Errorf("status %d producedAt %v embedded certificate %v", got.Status, got.ProducedAt, got.Certificate != nil)
					}
					if cc := rr.Header().Get("Cache-Control"); cc != "no-store" || rr.Header().Get("ETag") != "" {
						t.Errorf("Cache-Control %q ETag %q, want no-store and none", cc, rr.Header().Get("ETag"))
					}
					if got := nonceCount(t, r, nonceSigned) - signedBefore; got != 1 {
						t.Errorf("%v nonce responses counted, want 1", got)
					}
					if got := counterValue(t, r.metrics.signed); got != presigned {
						t.Errorf("pre-signed responses went from %v to %v", presigned, got)
					}
					// Never cached: the cache still serves the same bytes.
					if again := get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(plain)); !bytes.Equal(again.Body.Bytes(), cached.Body.Bytes()) {
						t.Error("the cached response changed after a nonce request")
					}
				})
			}

			// Two requests, two nonces, two responses.
			plain := request(t, good, inter, crypto.SHA256)
			ext1, n1 := nonceExt(t, nonceOf(t, 16), false)
			ext2, n2 := nonceExt(t, nonceOf(t, 16), true) // a critical nonce is echoed too
			_, x1 := responseExtensions(t, parse(t, post(t, h, withExtensions(t, plain, ext1)), good, inter))
			_, x2 := responseExtensions(t, parse(t, post(t, h, withExtensions(t, plain, ext2)), good, inter))
			if !bytes.Equal(x1[0].Value, n1) || !bytes.Equal(x2[0].Value, n2) {
				t.Error("a response echoes another request's nonce")
			}

			// Nothing with a nonce reaches the store.
			r.Close() // flushes queued writes
			err := e.st.OCSPResponses(context.Background(), e.auth.Intermediate().ID, e.clk.Now(), func(o store.OCSPResponse) error {
				resp, err := ocsp.ParseResponse(o.DER, nil)
				if err != nil {
					return err
				}
				if _, exts := responseExtensions(t, resp); len(exts) > 0 {
					t.Errorf("stored response for %s has responseExtensions", o.Serial)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOCSPNonceCachedPaths: GETs and POSTs without a nonce are answered
// from the cache, nonce on or off, without signing.
func TestOCSPNonceCachedPaths(t *testing.T) {
	for _, on := range []bool{true, false} {
		e := newEnv(t)
		c := e.issue("cached.example.com")
		r := e.responder(OCSPConfig{Nonce: on})
		inter := e.auth.Intermediate().Cert
		h := r.Handler()
		plain := request(t, c, inter, crypto.SHA1)
		cached := get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(plain)).Body.Bytes()
		signed := counterValue(t, r.metrics.signed)
		ext, _ := nonceExt(t, nonceOf(t, 16), false)
		long, _ := nonceExt(t, nonceOf(t, 33), false)
		cases := map[string]*httptest.ResponseRecorder{
			"POST without nonce":  post(t, h, plain),
			"GET with nonce":      get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(withExtensions(t, plain, ext))),
			"GET with long nonce": get(t, h, "/ocsp/"+base64.StdEncoding.EncodeToString(withExtensions(t, plain, long))),
		}
		if !on {
			// Off, nonces are ignored, as before: whatever their size.
			cases["POST with nonce, off"] = post(t, h, withExtensions(t, plain, ext))
			cases["POST with long nonce, off"] = post(t, h, withExtensions(t, plain, long))
		}
		for name, rr := range cases {
			if !bytes.Equal(rr.Body.Bytes(), cached) {
				t.Errorf("nonce %v, %s: not the cached response", on, name)
			}
			if _, exts := responseExtensions(t, parse(t, rr, c, inter)); len(exts) > 0 {
				t.Errorf("nonce %v, %s: responseExtensions %v", on, name, exts)
			}
		}
		if got := counterValue(t, r.metrics.signed); got != signed {
			t.Errorf("nonce %v: %v responses signed on cached paths", on, got-signed)
		}
		for _, res := range []string{nonceSigned, nonceRateLimited, nonceRejected, nonceFailed} {
			if got := nonceCount(t, r, res); got != 0 {
				t.Errorf("nonce %v: %v nonce responses %s", on, got, res)
			}
		}
	}
}

func TestOCSPNonceMalformed(t *testing.T) {
	e := newEnv(t)
	c := e.issue("bad-nonce.example.com")
	r := e.responder(OCSPConfig{Nonce: true})
	inter := e.auth.Intermediate().Cert
	plain := request(t, c, inter, crypto.SHA256)
	ext16, _ := nonceExt(t, nonceOf(t, 16), false)
	ext33, _ := nonceExt(t, nonceOf(t, 33), false)
	ext0, _ := nonceExt(t, nonceOf(t, 0), false)
	raw, _ := nonceExt(t, bytes.Repeat([]byte{7}, 16), false) // extnValue not a Nonce OCTET STRING
	trailing, _ := nonceExt(t, append(nonceOf(t, 16), 0), false)
	other, _ := asn1.Marshal(pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 4}, Value: []byte{0x30, 0}})
	for _, tc := range []struct {
		name     string
		der      []byte
		rejected float64 // counted as a rejected nonce
	}{
		{"nonce of 33 octets", withExtensions(t, plain, ext33), 1},
		{"empty nonce", withExtensions(t, plain, ext0), 1},
		{"raw nonce", withExtensions(t, plain, raw), 1},
		{"nonce with trailing bytes", withExtensions(t, plain, trailing), 1},
		// Structure errors are the parser's, nonce on or off.
		{"two nonces", withExtensions(t, plain, ext16, ext16), 0},
		{"extension without value", withExtensions(t, plain, seq([]byte{0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02})), 0},
		{"extension with trailing element", withExtensions(t, plain, seq(append(bytes.Clone(ext16[2:]), 0x05, 0x00))), 0},
		{"non-DER critical", withExtensions(t, plain, seq(append([]byte{0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02, 0x01, 0x01, 0x01}, 0x04, 0x00))), 0},
		{"extensions not a SEQUENCE", emptyExtensions(t, plain), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := nonceCount(t, r, nonceRejected)
			rr := post(t, r.Handler(), tc.der)
			if !bytes.Equal(rr.Body.Bytes(), ocsp.MalformedRequestErrorResponse) {
				t.Errorf("body %x, want malformedRequest", rr.Body.Bytes())
			}
			if got := nonceCount(t, r, nonceRejected) - before; got != tc.rejected {
				t.Errorf("%v rejected nonces counted, want %v", got, tc.rejected)
			}
		})
	}
	// An unrelated extension beside the nonce is ignored.
	resp := parse(t, post(t, r.Handler(), withExtensions(t, plain, other, ext16)), c, inter)
	if _, exts := responseExtensions(t, resp); len(exts) != 1 {
		t.Errorf("with another extension: responseExtensions %v", exts)
	}
}

func TestOCSPNonceRateLimited(t *testing.T) {
	e := newEnv(t)
	c := e.issue("busy.example.com")
	r := e.responder(OCSPConfig{Nonce: true, NoncesPerSecond: 0.001}) // a burst of 1
	inter := e.auth.Intermediate().Cert
	plain := request(t, c, inter, crypto.SHA1)
	cached := post(t, r.Handler(), plain).Body.Bytes()
	ext, _ := nonceExt(t, nonceOf(t, 16), false)
	if _, exts := responseExtensions(t, parse(t, post(t, r.Handler(), withExtensions(t, plain, ext)), c, inter)); len(exts) != 1 {
		t.Fatal("first nonce not echoed")
	}
	// Over the limit: the pre-signed response, without the nonce.
	if rr := post(t, r.Handler(), withExtensions(t, plain, ext)); !bytes.Equal(rr.Body.Bytes(), cached) {
		t.Error("over the limit: not the pre-signed response")
	}
	if got := nonceCount(t, r, nonceRateLimited); got != 1 {
		t.Errorf("%v rate-limited nonces counted, want 1", got)
	}
}

// postFrom is post from the client at remoteAddr.
func postFrom(t testing.TB, h http.Handler, remoteAddr string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rr := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "http://ca.test/ocsp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.RemoteAddr = remoteAddr
	h.ServeHTTP(rr, req)
	return rr
}

// TestOCSPNonceBudgetPerSource: one client spending its nonce budget gets
// pre-signed answers while another still gets its nonce; an IPv6 client
// counts by its /64; the budget refills with the clock.
func TestOCSPNonceBudgetPerSource(t *testing.T) {
	e := newEnv(t)
	c := e.issue("source.example.com")
	// A generous global budget: only the per-source one binds.
	r := e.responder(OCSPConfig{Nonce: true, NoncesPerSecond: 1000, NoncesPerSourcePerSecond: 1, NonceCPUShare: 1})
	inter := e.auth.Intermediate().Cert
	plain := request(t, c, inter, crypto.SHA1)
	h := r.Handler()
	ext, _ := nonceExt(t, nonceOf(t, 16), false)
	echoed := func(remote string) bool {
		t.Helper()
		_, exts := responseExtensions(t, parse(t, postFrom(t, h, remote, withExtensions(t, plain, ext)), c, inter))
		return len(exts) == 1
	}
	const burst = 3 // 2 × 1/s + 1
	for i := range burst {
		if !echoed("198.51.100.7:4000") {
			t.Fatalf("nonce %d of the first client's burst not echoed", i)
		}
	}
	if echoed("198.51.100.7:4001") {
		t.Error("the first client's nonce echoed past its budget")
	}
	if !echoed("198.51.100.8:4000") {
		t.Error("another client's nonce refused: one client spent everyone's budget")
	}
	for i := range burst {
		if !echoed(fmt.Sprintf("[2001:db8:1:2::%d]:443", i+1)) {
			t.Fatalf("IPv6 nonce %d not echoed", i)
		}
	}
	if echoed("[2001:db8:1:2::ff]:443") {
		t.Error("another host of the same IPv6 /64 got its own budget")
	}
	if !echoed("[2001:db8:1:3::1]:443") {
		t.Error("a host of another /64 was refused")
	}
	e.clk.Advance(time.Second)
	if !echoed("198.51.100.7:4002") {
		t.Error("the first client's budget did not refill")
	}
	if got := nonceCount(t, r, nonceRateLimited); got != 2 {
		t.Errorf("%v rate-limited nonces counted, want 2", got)
	}
}

// TestOCSPNonceBudgetCPU: the signing-time budget binds whatever the count
// allows: with a budget of one signature's time, the second is refused
// until the clock refills it.
func TestOCSPNonceBudgetCPU(t *testing.T) {
	e := newEnv(t)
	c := e.issue("cpu.example.com")
	r := e.responder(OCSPConfig{Nonce: true, NoncesPerSecond: 1000, NoncesPerSourcePerSecond: 1000, NonceCPUShare: 1e-6})
	inter := e.auth.Intermediate().Cert
	plain := request(t, c, inter, crypto.SHA1)
	h := r.Handler()
	ext, _ := nonceExt(t, nonceOf(t, 16), false)
	count := func() (signed int) {
		for i := range 5 {
			resp := parse(t, postFrom(t, h, fmt.Sprintf("192.0.2.%d:1", i+1), withExtensions(t, plain, ext)), c, inter)
			if _, exts := responseExtensions(t, resp); len(exts) == 1 {
				signed++
			}
		}
		return signed
	}
	if n := count(); n != 1 {
		t.Errorf("%d nonces signed within one signature's time budget, want 1", n)
	}
	e.clk.Advance(2 * time.Hour) // 1 µs of signing a second: refills the whole bucket (5001 µs)
	if n := count(); n != 1 {
		t.Errorf("%d nonces signed after the refill, want 1", n)
	}
}

// TestNonceBudgetSlowSignatures: signatures measured slower than the CPU
// bucket holds (an overloaded host, a large RSA key) still get one nonce
// per full refill, instead of none ever again: the estimate is updated
// only by signing, so a charge above the bucket would lock nonces out for
// good. The same holds whatever this machine's speed, which the CPU test
// above relies on.
func TestNonceBudgetSlowSignatures(t *testing.T) {
	b := newNonceBudget(1000, 1000, 1e-6, 16) // bucket: 5001 µs, refilled at 1 µs/s
	now := testclock.Start()
	if !b.allow("192.0.2.1:1", now) {
		t.Fatal("the first nonce was refused")
	}
	for range 50 {
		b.spent(time.Second) // far above the bucket
	}
	if b.allow("192.0.2.2:1", now) {
		t.Error("a second nonce fit a bucket the first one emptied")
	}
	now = now.Add(2 * time.Hour)
	if !b.allow("192.0.2.3:1", now) {
		t.Error("after a full refill a slow signature is never allowed again")
	}
	if b.allow("192.0.2.4:1", now) {
		t.Error("a full refill bought two slow signatures")
	}
}
