package revocation

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRootsAndIssuerHandlers: /roots.pem is the root as PEM; /issuer/{id}.crt
// is every recorded issuer's DER, a rotated-out intermediate's too; unknown
// issuers and other methods are refused.
func TestRootsAndIssuerHandlers(t *testing.T) {
	e := newEnv(t)
	root := e.auth.Root().Cert
	serve := func(h http.Handler, method, path string) *httptest.ResponseRecorder {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest(method, path, nil))
		return rr
	}

	rr := serve(RootsHandler(root), "GET", "/roots.pem")
	block, rest := pem.Decode(rr.Body.Bytes())
	if rr.Code != http.StatusOK || block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, root.Raw) || len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("/roots.pem: %d %q", rr.Code, rr.Body.String())
	}
	if ct, cc := rr.Header().Get("Content-Type"), rr.Header().Get("Cache-Control"); ct != "application/pem-certificate-chain" || cc != "max-age=3600" {
		t.Errorf("/roots.pem headers: %q, %q", ct, cc)
	}

	old := e.auth.Intermediate()
	rot, err := e.auth.Intermediates().RotateIntermediate(context.Background(), "test", "issuer handler test")
	if err != nil {
		t.Fatal(err)
	}
	h := IssuerHandler(e.auth)
	for _, iss := range []struct {
		id  string
		der []byte
	}{{old.ID, old.Cert.Raw}, {rot.Current.ID, rot.Current.Cert.Raw}, {e.auth.Root().ID, root.Raw}} {
		rr := serve(h, "GET", "/issuer/"+iss.id+".crt")
		if rr.Code != http.StatusOK || !bytes.Equal(rr.Body.Bytes(), iss.der) {
			t.Errorf("/issuer/%s.crt: %d, %d bytes", iss.id, rr.Code, rr.Body.Len())
		}
		if ct, cc := rr.Header().Get("Content-Type"), rr.Header().Get("Cache-Control"); ct != "application/pkix-cert" || cc != "max-age=86400" {
			t.Errorf("/issuer/%s.crt headers: %q, %q", iss.id, ct, cc)
		}
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/issuer/nosuchissuer.crt", http.StatusNotFound},
		{"GET", "/issuer/" + old.ID + ".crt/more", http.StatusNotFound},
		{"POST", "/issuer/" + old.ID + ".crt", http.StatusMethodNotAllowed},
	} {
		if rr := serve(h, c.method, c.path); rr.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rr.Code, c.want)
		}
	}
}
