package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/api"
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

func TestSign(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newKey(t)
	now := e.clk.Now()
	resp, data := e.do(t, "POST", "/v1/sign", e.admin, api.SignRequest{
		CSR: csrPEM(t, key, "Web.Example.com", "web.example.com", "api.example.com"), Profile: "tls-server", Validity: "720h",
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var out api.SignResponse
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	if out.Profile != "tls-server" {
		t.Errorf("profile = %q", out.Profile)
	}
	if want := ca.IssuerID(e.inter); out.Issuer != want {
		t.Errorf("issuer = %q, want %q", out.Issuer, want)
	}
	if want := now.Add(720 * time.Hour); !out.NotAfter.Equal(want) {
		t.Errorf("not_after = %v, want %v", out.NotAfter, want)
	}
	if !out.NotBefore.Before(now) {
		t.Errorf("not_before %v is not backdated from %v", out.NotBefore, now)
	}

	chain := pemBlocks(t, out.Chain)
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want 2", len(chain))
	}
	if leafPEM := pemBlocks(t, out.Certificate); len(leafPEM) != 1 || !bytes.Equal(leafPEM[0], chain[0]) {
		t.Error("certificate is not the first element of the chain")
	}
	if !bytes.Equal(chain[1], e.inter.Raw) {
		t.Error("chain[1] is not the intermediate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", leaf.SerialNumber); got != out.Serial {
		t.Errorf("serial = %q, leaf has %q", out.Serial, got)
	}
	if !key.Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Error("leaf does not certify the CSR key")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.root)
	inters.AddCert(e.inter)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: now, DNSName: "api.example.com",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Errorf("leaf does not verify to the root: %v", err)
	}

	t.Run("record as JSON", func(t *testing.T) {
		for _, serial := range []string{out.Serial, strings.ToUpper(out.Serial)} {
			var rec api.Certificate
			e.getJSON(t, "GET", "/v1/certificates/"+serial, e.admin, nil, http.StatusOK, &rec)
			if rec.Serial != out.Serial || rec.Profile != "tls-server" || rec.Channel != ca.ChannelAPI || rec.Status != "valid" {
				t.Errorf("record = %+v", rec)
			}
			if want := "token:" + e.adminID; rec.Requester != want {
				t.Errorf("requester = %q, want %q", rec.Requester, want)
			}
			if got := strings.Join(rec.SANs, ","); got != "web.example.com,api.example.com" {
				t.Errorf("sans = %q", got)
			}
			if ders := pemBlocks(t, rec.PEM); len(ders) != 1 || !bytes.Equal(ders[0], chain[0]) {
				t.Error("record PEM is not the issued leaf")
			}
		}
	})

	t.Run("record as PEM", func(t *testing.T) {
		resp, data := e.do(t, "GET", "/v1/certificates/"+out.Serial, e.admin, nil, header("Accept", "application/pem-certificate-chain"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/pem-certificate-chain" {
			t.Errorf("Content-Type = %q", ct)
		}
		if ders := pemBlocks(t, string(data)); len(ders) == 0 || !bytes.Equal(ders[0], chain[0]) {
			t.Error("PEM body does not start with the issued leaf")
		}
	})

	t.Run("unknown serial", func(t *testing.T) {
		resp, data := e.do(t, "GET", "/v1/certificates/0123456789abcdef", e.admin, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
	})

	t.Run("default validity", func(t *testing.T) {
		got := e.sign(t, e.admin, "tls-client", "client.example.com")
		if want := e.clk.Now().Add(90 * 24 * time.Hour); !got.NotAfter.Equal(want) {
			t.Errorf("not_after = %v, want the profile maximum %v", got.NotAfter, want)
		}
	})

	t.Run("audited", func(t *testing.T) {
		evs := e.audit(t, "action=cert.issued&target="+out.Serial)
		if len(evs) != 1 {
			t.Fatalf("%d cert.issued events for %s, want 1", len(evs), out.Serial)
		}
		if want := "token:" + e.adminID; evs[0].Actor != want {
			t.Errorf("actor = %q, want %q", evs[0].Actor, want)
		}
	})
}

func TestSignRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newKey(t)
	good := csrPEM(t, key, "", "ok.example.com")
	body := func(csr, profile, validity string) string {
		b, err := json.Marshal(api.SignRequest{CSR: csr, Profile: profile, Validity: validity})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	badSig := csrDER(t, key, "", "ok.example.com")
	badSig[len(badSig)-1] ^= 0x01
	big := body(good, "tls-server", "") // then pad it past the limit with JSON whitespace
	big = big[:len(big)-1] + strings.Repeat(" ", testMaxBody) + "}"

	cases := []struct {
		name        string
		body        string
		contentType string
		status      int
		kind        string
		detail      string // substring of detail
		audited     bool   // the refusal reached the authority and is audited
		subs        []string
	}{
		{name: "cn only", body: body(csrPEM(t, key, "web.example.com"), "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "common name alone", audited: true},
		{name: "cn not a san", body: body(csrPEM(t, key, "other.example.com", "ok.example.com"), "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "not among", audited: true},
		{name: "disallowed names", body: body(csrPEM(t, key, "", "*.a.example.com", "ok.example.com", "*.b.example.com"), "tls-server", ""),
			status: 403, kind: "rejected", detail: "wildcard", audited: true, subs: []string{"*.a.example.com", "*.b.example.com"}},
		{name: "weak rsa key", body: body(csrPEM(t, rsa1024, "", "ok.example.com"), "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "too weak", audited: true},
		{name: "bad csr signature", body: body(pemCSR(badSig), "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "signature", audited: true},
		{name: "garbage csr", body: body("-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n", "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "parse"},
		{name: "truncated pem", body: body(good[:len(good)/2], "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "PEM"},
		{name: "csr not pem", body: body("MIIBszCCAVkCAQAw", "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "PEM"},
		{name: "certificate instead of csr", body: body(strings.ReplaceAll(good, "CERTIFICATE REQUEST", "CERTIFICATE"), "tls-server", ""),
			status: 400, kind: "bad_csr", detail: "CERTIFICATE"},
		{name: "unknown profile", body: body(good, "tls-everything", ""),
			status: 403, kind: "rejected", detail: "unknown profile", audited: true},
		{name: "no profile", body: body(good, "", ""), status: 400, kind: "malformed", detail: "profile"},
		{name: "no csr", body: `{"profile":"tls-server"}`, status: 400, kind: "malformed", detail: "csr"},
		{name: "oversized body", body: big, status: 400, kind: "malformed", detail: "larger than"},
		{name: "unknown field", body: `{"csr":` + mustJSON(t, good) + `,"profile":"tls-server","ttl":"1h"}`,
			status: 400, kind: "malformed", detail: "unknown field"},
		{name: "trailing object", body: body(good, "tls-server", "") + `{}`, status: 400, kind: "malformed", detail: "trailing"},
		{name: "trailing brace", body: body(good, "tls-server", "") + `}`, status: 400, kind: "malformed", detail: "trailing"},
		{name: "trailing bracket", body: body(good, "tls-server", "") + ` ]`, status: 400, kind: "malformed", detail: "trailing"},
		{name: "trailing garbage", body: body(good, "tls-server", "") + "x", status: 400, kind: "malformed", detail: "trailing"},
		{name: "empty body", body: "", status: 400, kind: "malformed", detail: "JSON"},
		{name: "array", body: `[]`, status: 400, kind: "malformed", detail: "JSON"},
		{name: "wrong type", body: `{"csr":1,"profile":"tls-server"}`, status: 400, kind: "malformed", detail: "JSON"},
		{name: "text content type", body: body(good, "tls-server", ""), contentType: "text/plain", status: 400, kind: "malformed", detail: "Content-Type"},
		{name: "form content type", body: body(good, "tls-server", ""), contentType: "application/x-www-form-urlencoded",
			status: 400, kind: "malformed", detail: "Content-Type"},
		{name: "validity not a duration", body: body(good, "tls-server", "30 days"), status: 400, kind: "malformed", detail: "validity"},
		{name: "negative validity", body: body(good, "tls-server", "-1h"), status: 400, kind: "malformed", detail: "validity"},
		{name: "zero validity", body: body(good, "tls-server", "0s"), status: 400, kind: "malformed", detail: "validity"},
		{name: "validity above max", body: body(good, "tls-server", "2161h"), status: 403, kind: "rejected", detail: "exceeds", audited: true},
		{name: "huge validity", body: body(good, "tls-server", "2562047h"), status: 403, kind: "rejected", detail: "exceeds", audited: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.certs(t, e.admin))
			refusedBefore := len(e.audit(t, "action=request.refused"))
			opts := []reqOpt{}
			if c.contentType != "" {
				opts = append(opts, header("Content-Type", c.contentType))
			}
			resp, data := e.do(t, "POST", "/v1/sign", e.admin, c.body, opts...)
			got := checkError(t, resp, data, c.status, c.kind)
			if !strings.Contains(got.Detail, c.detail) {
				t.Errorf("detail %q does not mention %q", got.Detail, c.detail)
			}
			var subs []string
			for _, s := range got.Subproblems {
				subs = append(subs, s.Identifier)
				if s.Error != c.kind || s.Detail == "" {
					t.Errorf("subproblem %+v", s)
				}
			}
			if strings.Join(subs, ",") != strings.Join(c.subs, ",") {
				t.Errorf("subproblems for %v, want %v", subs, c.subs)
			}
			if after := len(e.certs(t, e.admin)); after != before {
				t.Errorf("certificates %d -> %d after a refusal", before, after)
			}
			refused := len(e.audit(t, "action=request.refused")) - refusedBefore
			if refused != 1 { // every refusal is audited, parsed or not
				t.Errorf("%d request.refused events, want 1", refused)
			}
		})
	}

	t.Run("still issues", func(t *testing.T) {
		e.sign(t, e.admin, "tls-server", "ok.example.com")
	})
}

func TestListCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issuer, issuerID := e.createToken(t, ca.RoleIssuer, "tls-client")
	const n = 25
	start := e.clk.Now()
	issued := map[string]bool{}
	var seventh string
	for i := range n {
		e.clk.Advance(time.Second)
		out := e.sign(t, e.admin, "tls-server", fmt.Sprintf("host-%02d.example.com", i))
		issued[out.Serial] = true
		if i == 7 {
			seventh = out.Serial
		}
	}
	mid := e.clk.Now().Add(time.Second) // the issuer's first certificate
	var mine []string
	for i := range 2 {
		e.clk.Advance(time.Second)
		mine = append(mine, e.sign(t, issuer, "tls-client", fmt.Sprintf("client-%d.example.com", i)).Serial)
	}

	t.Run("pagination", func(t *testing.T) {
		seen := map[string]bool{}
		cursor := ""
		var sizes []int
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			path := "/v1/certificates?profile=tls-server&limit=10"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			var out api.CertificateList
			raw := e.getJSON(t, "GET", path, e.admin, nil, http.StatusOK, &out)
			sizes = append(sizes, len(out.Certificates))
			var prev time.Time
			for i, c := range out.Certificates {
				if seen[c.Serial] {
					t.Errorf("serial %s on two pages", c.Serial)
				}
				seen[c.Serial] = true
				if c.Profile != "tls-server" || c.PEM != "" {
					t.Errorf("listed %+v", c)
				}
				if i > 0 && c.Issued.After(prev) {
					t.Errorf("page not newest first: %v after %v", c.Issued, prev)
				}
				prev = c.Issued
			}
			if out.NextCursor == "" {
				if bytes.Contains(raw, []byte("next_cursor")) {
					t.Errorf("last page has a next_cursor field: %s", raw)
				}
				break
			}
			cursor = out.NextCursor
		}
		if fmt.Sprint(sizes) != "[10 10 5]" {
			t.Errorf("page sizes %v, want [10 10 5]", sizes)
		}
		if len(seen) != n {
			t.Errorf("saw %d certificates, want %d", len(seen), n)
		}
		for s := range issued {
			if !seen[s] {
				t.Errorf("issued %s not listed", s)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		for _, c := range []struct {
			query string
			want  int
		}{
			{"", n + 2 + 3}, // plus root, intermediate, audit signer from init
			{"name=host-07", 1},
			{"name=example.com", n + 2},
			{"serial=" + seventh, 1},
			{"serial=" + strings.ToUpper(seventh), 1},
			{"profile=tls-client", 2},
			{"requester=token:" + issuerID, 2},
			{"requester=token:" + e.adminID, n},
			{"issuer=" + ca.IssuerID(e.inter), n + 2},
			{"issued_after=" + mid.Format(time.RFC3339), 2},
			{"issued_before=" + start.Add(time.Second).Format(time.RFC3339), 3},
			{"issued_after=" + start.Add(time.Second).Format(time.RFC3339) + "&issued_before=" + mid.Format(time.RFC3339), n},
			{"status=valid&profile=tls-server", n},
			{"status=expired", 0},
			{"status=revoked", 0},
			{"expiring_before=" + start.Add(91*24*time.Hour).Format(time.RFC3339), n + 2},
			{"name=nothing-matches", 0},
		} {
			t.Run(c.query, func(t *testing.T) {
				var out api.CertificateList
				e.getJSON(t, "GET", "/v1/certificates?limit=1000&"+c.query, e.admin, nil, http.StatusOK, &out)
				if len(out.Certificates) != c.want {
					t.Errorf("%d certificates, want %d", len(out.Certificates), c.want)
				}
				if out.Certificates == nil {
					t.Error("certificates is null, want []")
				}
			})
		}
	})

	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []string{
			"cursor=abc", "cursor=0", "cursor=-5", "cursor=1.5", "limit=0", "limit=1001", "limit=-1", "limit=ten",
			"issued_after=yesterday", "issued_before=2026-11-24", "expiring_before=1700000000", "status=bogus",
		} {
			t.Run(q, func(t *testing.T) {
				resp, data := e.do(t, "GET", "/v1/certificates?"+q, e.admin, nil)
				checkError(t, resp, data, http.StatusBadRequest, "malformed")
			})
		}
	})

	t.Run("issuer sees its own", func(t *testing.T) {
		for _, q := range []string{"", "?requester=token:" + e.adminID, "?profile=tls-server"} {
			var out api.CertificateList
			e.getJSON(t, "GET", "/v1/certificates"+q, issuer, nil, http.StatusOK, &out)
			var got []string
			for _, c := range out.Certificates {
				got = append(got, c.Serial)
				if c.Requester != "token:"+issuerID {
					t.Errorf("%s: issuer sees %s requested by %s", q, c.Serial, c.Requester)
				}
			}
			if q != "?profile=tls-server" && len(got) != len(mine) {
				t.Errorf("%s: issuer sees %v, want %v", q, got, mine)
			}
			if q == "?profile=tls-server" && len(got) != 0 {
				t.Errorf("%s: issuer sees %v, want none", q, got)
			}
		}
		var rec api.Certificate
		e.getJSON(t, "GET", "/v1/certificates/"+mine[0], issuer, nil, http.StatusOK, &rec)
		resp, data := e.do(t, "GET", "/v1/certificates/"+seventh, issuer, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
	})
}

func TestAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 5
	var serials []string
	for i := range n {
		serials = append(serials, e.sign(t, e.admin, "tls-server", fmt.Sprintf("a%d.example.com", i)).Serial)
	}
	// A refusal is audited too, and is not a cert.* event.
	resp, data := e.do(t, "POST", "/v1/sign", e.admin, api.SignRequest{CSR: csrPEM(t, newKey(t), "x.example.com"), Profile: "tls-server"})
	checkError(t, resp, data, http.StatusBadRequest, "bad_csr")
	auditor := e.auditorToken(t)

	all := e.audit(t, "")
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("events not in seq order: %d after %d", all[i].Seq, all[i-1].Seq)
		}
		if !bytes.Equal(all[i].PrevHash, all[i-1].Hash) {
			t.Errorf("event %d prev_hash does not chain to %d", all[i].Seq, all[i-1].Seq)
		}
	}

	t.Run("exact action", func(t *testing.T) {
		evs := e.audit(t, "action=cert.issued")
		if len(evs) != n+3 {
			t.Errorf("%d cert.issued events, want %d", len(evs), n+3)
		}
		targets := map[string]bool{}
		for _, ev := range evs {
			if ev.Action != "cert.issued" {
				t.Errorf("action %q", ev.Action)
			}
			targets[ev.Target] = true
		}
		for _, s := range serials {
			if !targets[s] {
				t.Errorf("no cert.issued event for %s", s)
			}
		}
	})

	t.Run("prefix", func(t *testing.T) {
		evs := e.audit(t, "action=cert.")
		if len(evs) < n+3 {
			t.Errorf("%d cert.* events, want at least %d", len(evs), n+3)
		}
		var want int
		for _, ev := range all {
			if strings.HasPrefix(ev.Action, "cert.") {
				want++
			}
		}
		if len(evs) != want {
			t.Errorf("%d cert.* events, want %d", len(evs), want)
		}
		for _, ev := range evs {
			if !strings.HasPrefix(ev.Action, "cert.") {
				t.Errorf("action %q", ev.Action)
			}
		}
		if evs := e.audit(t, "action=cert"); len(evs) != 0 {
			t.Errorf("action=cert (no dot) matched %d events; only a trailing dot makes a prefix", len(evs))
		}
		if evs := e.audit(t, "action=request.refused"); len(evs) != 1 {
			t.Errorf("%d request.refused events, want 1", len(evs))
		}
	})

	t.Run("cursor", func(t *testing.T) {
		var got []int64
		cursor := ""
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatal("pagination does not end")
			}
			path := "/v1/audit?action=cert.issued&limit=3"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			var out api.AuditList
			raw := e.getJSON(t, "GET", path, auditor, nil, http.StatusOK, &out)
			if len(out.Events) > 3 {
				t.Errorf("page of %d events, limit 3", len(out.Events))
			}
			for _, ev := range out.Events {
				if len(got) > 0 && ev.Seq <= got[len(got)-1] {
					t.Errorf("seq %d after %d", ev.Seq, got[len(got)-1])
				}
				got = append(got, ev.Seq)
			}
			if out.NextCursor == "" {
				if bytes.Contains(raw, []byte("next_cursor")) {
					t.Errorf("last page has a next_cursor field")
				}
				break
			}
			cursor = out.NextCursor
		}
		if len(got) != n+3 {
			t.Errorf("paged through %d events, want %d", len(got), n+3)
		}
	})

	t.Run("actor and target", func(t *testing.T) {
		evs := e.audit(t, "actor=token:"+e.adminID+"&action=cert.issued")
		if len(evs) != n {
			t.Errorf("%d events by the admin token, want %d", len(evs), n)
		}
		if evs := e.audit(t, "target="+serials[2]); len(evs) != 1 || evs[0].Target != serials[2] {
			t.Errorf("target filter: %+v", evs)
		}
	})

	t.Run("time window", func(t *testing.T) {
		now := e.clk.Now()
		if evs := e.audit(t, "after="+now.Add(time.Second).Format(time.RFC3339)); len(evs) != 0 {
			t.Errorf("%d events after now", len(evs))
		}
		if evs := e.audit(t, "before="+now.Add(time.Second).Format(time.RFC3339)); len(evs) != len(all) {
			t.Errorf("%d events before now, want %d", len(evs), len(all))
		}
	})

	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []string{"cursor=x", "cursor=0", "limit=0", "limit=5000", "after=today", "before=2026"} {
			resp, data := e.do(t, "GET", "/v1/audit?"+q, e.admin, nil)
			checkError(t, resp, data, http.StatusBadRequest, "malformed")
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := e.clk.Now()
	resp, data := e.do(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{
		Role: ca.RoleIssuer, Profiles: []string{"tls-client", "tls-server"}, TTL: "24h", Description: "ci runner",
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, data)
	}
	var tok api.Token
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Secret, "sigil_"+tok.ID+"_") {
		t.Errorf("secret %q does not start with sigil_<id>_", tok.Secret)
	}
	if tok.Role != ca.RoleIssuer || strings.Join(tok.Profiles, ",") != "tls-client,tls-server" || tok.Description != "ci runner" {
		t.Errorf("token = %+v", tok)
	}
	if !tok.Expires.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("expires = %v, want %v", tok.Expires, now.Add(24*time.Hour))
	}
	secretPart := strings.TrimPrefix(tok.Secret, "sigil_"+tok.ID+"_")
	e.sign(t, tok.Secret, "tls-client", "c.example.com")

	t.Run("listed without secret", func(t *testing.T) {
		var list struct {
			Tokens []map[string]any `json:"tokens"`
		}
		raw := e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, &list)
		if bytes.Contains(raw, []byte(secretPart)) || bytes.Contains(raw, []byte(e.admin[len("sigil_"+e.adminID+"_"):])) {
			t.Errorf("token list contains a secret: %s", raw)
		}
		var found bool
		for _, m := range list.Tokens {
			if _, ok := m["token"]; ok {
				t.Errorf("listed token %v has a token field", m["id"])
			}
			for k := range m {
				if strings.Contains(strings.ToLower(k), "secret") || strings.Contains(strings.ToLower(k), "hash") {
					t.Errorf("listed token has field %q", k)
				}
			}
			if m["id"] == tok.ID {
				found = true
				if m["role"] != ca.RoleIssuer || m["description"] != "ci runner" {
					t.Errorf("listed %v", m)
				}
			}
		}
		if !found || len(list.Tokens) != 2 {
			t.Errorf("list has %d tokens (found new: %v), want the admin token and the new one", len(list.Tokens), found)
		}
	})

	t.Run("secret not in audit or logs", func(t *testing.T) {
		raw := e.getJSON(t, "GET", "/v1/audit?action=token.created", e.admin, nil, http.StatusOK, nil)
		if bytes.Contains(raw, []byte(secretPart)) {
			t.Error("audit contains the token secret")
		}
		if !bytes.Contains(raw, []byte(tok.ID)) {
			t.Error("token creation not audited")
		}
		if strings.Contains(e.logs.String(), secretPart) {
			t.Error("logs contain the token secret")
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for name, body := range map[string]any{
			"unknown role":            api.TokenRequest{Role: "root"},
			"issuer without profiles": api.TokenRequest{Role: ca.RoleIssuer},
			"auditor with profiles":   api.TokenRequest{Role: ca.RoleAuditor, Profiles: []string{"tls-client"}},
			"unknown profile":         api.TokenRequest{Role: ca.RoleIssuer, Profiles: []string{"nope"}},
			"bad ttl":                 api.TokenRequest{Role: ca.RoleAuditor, TTL: "forever"},
			"negative ttl":            api.TokenRequest{Role: ca.RoleAuditor, TTL: "-1h"},
			"unknown field":           `{"role":"auditor","secret":"mine"}`,
			"trailing data":           `{"role":"auditor"}{"role":"admin"}`,
			"not json":                `role=auditor`,
		} {
			t.Run(name, func(t *testing.T) {
				resp, data := e.do(t, "POST", "/v1/tokens", e.admin, body)
				checkError(t, resp, data, http.StatusBadRequest, "malformed")
			})
		}
		resp, data := e.do(t, "POST", "/v1/tokens", e.admin, `{"role":"auditor"}`, header("Content-Type", "text/plain"))
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})

	t.Run("revoke", func(t *testing.T) {
		resp, data := e.do(t, "DELETE", "/v1/tokens/"+tok.ID, e.admin, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", resp.StatusCode, data)
		}
		if len(data) != 0 {
			t.Errorf("204 with body %q", data)
		}
		resp, data = e.do(t, "DELETE", "/v1/tokens/"+tok.ID, e.admin, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
		resp, data = e.do(t, "DELETE", "/v1/tokens/ffffffffffffffff", e.admin, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
		resp, data = e.do(t, "POST", "/v1/sign", tok.Secret, api.SignRequest{CSR: csrPEM(t, newKey(t), "", "c.example.com"), Profile: "tls-client"})
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")

		var list struct {
			Tokens []api.Token `json:"tokens"`
		}
		e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, &list)
		for _, l := range list.Tokens {
			if l.ID == tok.ID && l.Revoked.IsZero() {
				t.Error("revoked token listed without revoked time")
			}
		}
		if evs := e.audit(t, "action=token.revoked&target="+tok.ID); len(evs) != 1 {
			t.Errorf("%d token.revoked events, want 1", len(evs))
		}
	})
}

func TestRewrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		wrong = "not the passphrase at all"
		next  = "a brand new passphrase 42"
	)
	kekIDs := func(keys []ca.KeyInfo) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k.ID] = k.KEK
		}
		return m
	}
	before := kekIDs(e.keys(t))
	for id, kek := range before {
		if kek != "kek-1" {
			t.Fatalf("key %s starts under %q, want kek-1", id, kek)
		}
	}

	t.Run("wrong current passphrase", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: wrong, NewPassphrase: next})
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
		if after := kekIDs(e.keys(t)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("keys changed: %v -> %v", before, after)
		}
		if evs := e.audit(t, "action=kek.rotated"); len(evs) != 0 {
			t.Errorf("%d kek.rotated events after a refused re-wrap, want 0", len(evs))
		}
		if evs := e.audit(t, "action=kek.rewrap.refused"); len(evs) != 1 {
			t.Errorf("%d kek.rewrap.refused events, want 1: refusals are audited", len(evs))
		}
	})

	t.Run("short new passphrase", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: "short"})
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
		if after := kekIDs(e.keys(t)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("keys changed: %v -> %v", before, after)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin,
			`{"current_passphrase":"`+initPassphrase+`","new_passphrase":"`+next+`","kdf":"none"}`)
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})

	t.Run("right passphrase", func(t *testing.T) {
		var out api.RewrapResponse
		e.getJSON(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: next},
			http.StatusOK, &out)
		if out.KEK != "kek-2" || out.Keys != len(before) {
			t.Errorf("rewrap = %+v, want kek-2 and %d keys", out, len(before))
		}
		after := kekIDs(e.keys(t))
		if len(after) != len(before) {
			t.Errorf("%d keys after, %d before", len(after), len(before))
		}
		for id, kek := range after {
			if kek != "kek-2" {
				t.Errorf("key %s under %q, want kek-2", id, kek)
			}
		}
		// Issuance goes on, and the old passphrase no longer opens anything.
		e.sign(t, e.admin, "tls-server", "after-rewrap.example.com")
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: next + "!"})
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	})

	raw := e.getJSON(t, "GET", "/v1/audit", e.admin, nil, http.StatusOK, nil)
	e.srv.Close() // waits for every handler, so every request line is written
	logs := e.logs.String()
	if !strings.Contains(logs, "/v1/keys/rewrap") {
		t.Fatalf("no request log lines for /v1/keys/rewrap:\n%s", logs)
	}
	for _, p := range []string{initPassphrase, wrong, next} {
		if strings.Contains(logs, p) {
			t.Errorf("logs contain passphrase %q", p)
		}
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("audit contains passphrase %q", p)
		}
	}
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
