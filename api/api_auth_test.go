package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auditor, _ := e.createToken(t, ca.RoleAuditor)
	issuer, issuerID := e.createToken(t, ca.RoleIssuer, "tls-client")
	signBody := func(profile string) api.SignRequest {
		return api.SignRequest{CSR: csrPEM(t, newKey(t), "", "client.example.com"), Profile: profile}
	}

	t.Run("no authorization header", func(t *testing.T) {
		for _, route := range [][2]string{{"GET", "/v1/certificates"}, {"POST", "/v1/sign"}, {"GET", "/v1/audit"}, {"GET", "/v1/tokens"}} {
			var body any
			if route[0] == "POST" {
				body = signBody("tls-client")
			}
			resp, data := e.do(t, route[0], route[1], "", body)
			checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
		}
	})

	t.Run("bad credentials", func(t *testing.T) {
		for name, auth := range map[string]string{
			"empty bearer":    "Bearer ",
			"blank bearer":    "Bearer    ",
			"basic":           "Basic " + e.admin,
			"no scheme":       e.admin,
			"garbage":         "Bearer garbage",
			"unknown id":      "Bearer sigil_0123456789abcdef_c2VjcmV0",
			"short id":        "Bearer sigil_0123_c2VjcmV0",
			"no secret":       "Bearer sigil_" + e.adminID + "_",
			"wrong secret":    "Bearer sigil_" + e.adminID + "_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"extended secret": "Bearer " + e.admin + "x",
			"truncated":       "Bearer " + e.admin[:len(e.admin)-1],
		} {
			t.Run(name, func(t *testing.T) {
				resp, data := e.do(t, "GET", "/v1/certificates", "", nil, header("Authorization", auth))
				got := checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
				if strings.Contains(got.Detail, e.adminID) {
					t.Errorf("detail names the token id: %q", got.Detail)
				}
			})
		}
	})

	t.Run("scheme is case-insensitive", func(t *testing.T) {
		// RFC 9110 §11.1: the auth-scheme is a case-insensitive token.
		for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
			resp, data := e.do(t, "GET", "/v1/certificates", "", nil, header("Authorization", scheme+" "+e.admin))
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d: %s", scheme, resp.StatusCode, data)
			}
		}
	})

	t.Run("revoked token", func(t *testing.T) {
		tok, id := e.createToken(t, ca.RoleAuditor)
		e.getJSON(t, "GET", "/v1/certificates", tok, nil, http.StatusOK, nil)
		resp, data := e.do(t, "DELETE", "/v1/tokens/"+id, e.admin, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", resp.StatusCode, data)
		}
		resp, data = e.do(t, "GET", "/v1/certificates", tok, nil)
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	})

	t.Run("expired token", func(t *testing.T) {
		var tok api.Token
		e.getJSON(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{Role: ca.RoleAuditor, TTL: "1h"}, http.StatusCreated, &tok)
		e.getJSON(t, "GET", "/v1/certificates", tok.Secret, nil, http.StatusOK, nil)
		e.clk.Advance(time.Hour)
		resp, data := e.do(t, "GET", "/v1/certificates", tok.Secret, nil)
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	})

	t.Run("auditor may not sign", func(t *testing.T) {
		before := len(e.certs(t, e.admin))
		resp, data := e.do(t, "POST", "/v1/sign", auditor, signBody("tls-server"))
		checkError(t, resp, data, http.StatusForbidden, "forbidden")
		if after := len(e.certs(t, e.admin)); after != before {
			t.Errorf("certificates %d -> %d after a forbidden request", before, after)
		}
	})

	t.Run("auditor reads", func(t *testing.T) {
		for _, path := range []string{"/v1/certificates", "/v1/audit", "/v1/keys"} {
			e.getJSON(t, "GET", path, auditor, nil, http.StatusOK, nil)
		}
	})

	t.Run("issuer limited to its profiles", func(t *testing.T) {
		before := len(e.certs(t, e.admin))
		resp, data := e.do(t, "POST", "/v1/sign", issuer, signBody("tls-server"))
		got := checkError(t, resp, data, http.StatusForbidden, "forbidden")
		if !strings.Contains(got.Detail, "tls-server") {
			t.Errorf("detail %q does not name the profile", got.Detail)
		}
		if after := len(e.certs(t, e.admin)); after != before {
			t.Errorf("certificates %d -> %d after a forbidden request", before, after)
		}
		var out api.SignResponse
		e.getJSON(t, "POST", "/v1/sign", issuer, signBody("tls-client"), http.StatusCreated, &out)
		if out.Profile != "tls-client" {
			t.Errorf("profile = %q", out.Profile)
		}
		var rec api.Certificate
		e.getJSON(t, "GET", "/v1/certificates/"+out.Serial, e.admin, nil, http.StatusOK, &rec)
		if want := "token:" + issuerID; rec.Requester != want {
			t.Errorf("requester = %q, want %q", rec.Requester, want)
		}
	})

	t.Run("issuer may not read audit or keys", func(t *testing.T) {
		for _, path := range []string{"/v1/audit", "/v1/keys"} {
			resp, data := e.do(t, "GET", path, issuer, nil)
			checkError(t, resp, data, http.StatusForbidden, "forbidden")
		}
	})

	t.Run("admin-only endpoints", func(t *testing.T) {
		_, victim := e.createToken(t, ca.RoleAuditor)
		tokensBefore := e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, nil)
		keysBefore := e.keys(t)
		for _, who := range []struct{ name, token string }{{"issuer", issuer}, {"auditor", auditor}} {
			for _, c := range []struct {
				method, path string
				body         any
			}{
				{"GET", "/v1/tokens", nil},
				{"POST", "/v1/tokens", api.TokenRequest{Role: ca.RoleAdmin}},
				{"DELETE", "/v1/tokens/" + victim, nil},
				{"POST", "/v1/keys/rewrap", api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: "a new passphrase 123"}},
			} {
				t.Run(who.name+" "+c.method+" "+c.path, func(t *testing.T) {
					resp, data := e.do(t, c.method, c.path, who.token, c.body)
					got := checkError(t, resp, data, http.StatusForbidden, "forbidden")
					if !strings.Contains(got.Detail, who.name) {
						t.Errorf("detail %q does not name the role", got.Detail)
					}
				})
			}
		}
		if after := e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, nil); !bytes.Equal(after, tokensBefore) {
			t.Errorf("tokens changed by refused requests:\nbefore %s\nafter  %s", tokensBefore, after)
		}
		if after := e.keys(t); fmt.Sprint(after) != fmt.Sprint(keysBefore) {
			t.Errorf("keys changed by refused requests:\nbefore %v\nafter  %v", keysBefore, after)
		}
	})
}

func TestHTTPBasics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("unknown path", func(t *testing.T) {
		for _, p := range []string{"/v1/nope", "/v1/", "/v1/certificates/abc/def", "/v1/sign/extra"} {
			for _, tok := range []string{"", e.admin} {
				resp, data := e.do(t, "GET", p, tok, nil)
				checkError(t, resp, data, http.StatusNotFound, "not_found")
			}
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{"GET", "/v1/sign", "POST"},
			{"PUT", "/v1/sign", "POST"},
			{"POST", "/v1/certificates", "GET"},
			{"DELETE", "/v1/certificates/abc", "GET"},
			{"PATCH", "/v1/audit", "GET"},
			{"POST", "/v1/keys", "GET"},
			{"GET", "/v1/keys/rewrap", "POST"},
			{"PUT", "/v1/tokens", "GET"},
			{"GET", "/v1/tokens/abc", "DELETE"},
		} {
			t.Run(c.method+" "+c.path, func(t *testing.T) {
				resp, data := e.do(t, c.method, c.path, e.admin, nil)
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("status = %d, want 405: %s", resp.StatusCode, data)
				}
				if allow := resp.Header.Get("Allow"); !strings.Contains(allow, c.allow) {
					t.Errorf("Allow = %q, want it to include %s", allow, c.allow)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				var body apiError
				if err := json.Unmarshal(data, &body); err != nil || body.Error == "" || body.Detail == "" {
					t.Errorf("body is not a JSON error: %v %s", err, data)
				}
			})
		}
	})

	t.Run("request ids are unique", func(t *testing.T) {
		seen := map[string]bool{}
		for range 5 {
			resp, _ := e.do(t, "GET", "/v1/certificates", e.admin, nil)
			id := resp.Header.Get("X-Request-Id")
			if seen[id] {
				t.Errorf("request id %s repeated", id)
			}
			seen[id] = true
		}
	})

	t.Run("query escapes", func(t *testing.T) {
		// A LIKE wildcard in a name filter is literal.
		e.sign(t, e.admin, "tls-server", "web.example.com")
		var out api.CertificateList
		e.getJSON(t, "GET", "/v1/certificates?name="+url.QueryEscape("%"), e.admin, nil, http.StatusOK, &out)
		if len(out.Certificates) != 0 {
			t.Errorf("name=%% matched %d certificates", len(out.Certificates))
		}
	})
}
