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
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

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
		{name: "oversized body", body: big, status: 413, kind: "too_large", detail: "larger than"},
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
			events := e.audit(t, "action=request.refused")
			if refused := len(events) - refusedBefore; refused != 1 { // every refusal is audited, parsed or not
				t.Errorf("%d request.refused events, want 1", refused)
			} else if reason := events[len(events)-1].Detail["reason"]; reason != c.kind {
				t.Errorf("audited reason %q, want %q (the kind the client saw)", reason, c.kind)
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
