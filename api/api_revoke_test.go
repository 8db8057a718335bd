package api_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// revoke posts body to /v1/revoke and decodes the certificate it returns.
func (e *testEnv) revoke(t *testing.T, token string, body any) api.Certificate {
	t.Helper()
	var out api.Certificate
	e.getJSON(t, "POST", "/v1/revoke", token, body, http.StatusOK, &out)
	return out
}

// cert returns the certificate as GET /v1/certificates/{serial} shows it to the admin.
func (e *testEnv) cert(t *testing.T, serial string) api.Certificate {
	t.Helper()
	var out api.Certificate
	e.getJSON(t, "GET", "/v1/certificates/"+serial, e.admin, nil, http.StatusOK, &out)
	return out
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.sign(t, e.admin, "tls-server", "revoke.example.com")
	e.clk.Advance(time.Hour + 300*time.Millisecond)
	now := e.clk.Now().UTC().Truncate(time.Second)

	got := e.revoke(t, e.admin, map[string]any{"serial": strings.ToUpper(s.Serial), "reason": "keyCompromise"})
	if got.Serial != s.Serial || got.Status != "revoked" || got.RevocationReason != "keyCompromise" ||
		!got.RevokedAt.Equal(now) || !got.InvalidityDate.IsZero() || got.PEM != s.Certificate {
		t.Errorf("revoke answered %+v, want %s revoked (keyCompromise) at %v with its PEM", got, s.Serial, now)
	}
	// The answer has the shape and content of GET /v1/certificates/{serial}.
	if shown := e.cert(t, s.Serial); !reflect.DeepEqual(shown, got) {
		t.Errorf("GET shows\n%+v\nrevoke answered\n%+v", shown, got)
	}
	evs := e.audit(t, "action=cert.revoked")
	if len(evs) != 1 || evs[0].Actor != "token:"+e.adminID || evs[0].Target != s.Serial ||
		evs[0].Detail["reason"] != "keyCompromise" || evs[0].Detail["channel"] != ca.ChannelAPI {
		t.Errorf("cert.revoked events = %+v", evs)
	}

	t.Run("again", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/revoke", e.admin, map[string]any{"serial": s.Serial, "reason": "superseded"})
		got := checkError(t, resp, data, http.StatusConflict, "conflict")
		if want := "already revoked (keyCompromise) since " + now.Format(time.RFC3339); !strings.Contains(got.Detail, want) {
			t.Errorf("detail %q does not say %q", got.Detail, want)
		}
		if shown := e.cert(t, s.Serial); shown.RevocationReason != "keyCompromise" || !shown.RevokedAt.Equal(now) {
			t.Errorf("a refused revocation changed the record: %+v", shown)
		}
	})

	for _, tc := range []struct {
		name   string
		reason string // the JSON value of "reason"; "": absent
		want   string
	}{
		{"reason code", `4`, "superseded"},
		{"reason code as a string", `"5"`, "cessationOfOperation"},
		{"reason with dashes", `"affiliation-changed"`, "affiliationChanged"},
		{"no reason", ``, "unspecified"},
		{"null reason", `null`, "unspecified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.sign(t, e.admin, "tls-server", "r.example.com")
			got := e.revoke(t, e.admin, api.RevokeRequest{Serial: s.Serial, Reason: []byte(tc.reason)})
			if got.RevocationReason != tc.want {
				t.Errorf("revocation_reason = %q, want %q", got.RevocationReason, tc.want)
			}
		})
	}

	t.Run("invalidity date", func(t *testing.T) {
		s := e.sign(t, e.admin, "tls-server", "i.example.com")
		inv := s.NotBefore.Add(30 * time.Second)
		got := e.revoke(t, e.admin, api.RevokeRequest{Serial: s.Serial, Reason: []byte(`"keyCompromise"`),
			InvalidityDate: inv.In(time.FixedZone("CET", 3600)).Format(time.RFC3339)})
		if !got.InvalidityDate.Equal(inv) {
			t.Errorf("invalidity_date = %v, want %v", got.InvalidityDate, inv)
		}
		if shown := e.cert(t, s.Serial); !shown.InvalidityDate.Equal(inv) {
			t.Errorf("GET shows invalidity_date %v, want %v", shown.InvalidityDate, inv)
		}
	})

	t.Run("listed as revoked", func(t *testing.T) {
		var out api.CertificateList
		e.getJSON(t, "GET", "/v1/certificates?status=revoked", e.admin, nil, http.StatusOK, &out)
		var found bool
		for _, c := range out.Certificates {
			found = found || (c.Serial == s.Serial && c.RevocationReason == "keyCompromise")
		}
		if !found {
			t.Errorf("status=revoked does not list %s with its reason: %+v", s.Serial, out.Certificates)
		}
	})
}

func TestRevokeRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.sign(t, e.admin, "tls-server", "refuse.example.com")
	ser := `"serial":"` + s.Serial + `"`
	for _, tc := range []struct {
		name   string
		body   string
		opts   []reqOpt
		status int
		kind   string
		detail string // a word the detail must contain
		target string // audit target ("": none)
	}{
		{"unknown reason", `{` + ser + `,"reason":"bogus"}`, nil, 400, "malformed", "bogus", s.Serial},
		{"reason 7", `{` + ser + `,"reason":7}`, nil, 400, "malformed", "7", s.Serial},
		{"removeFromCRL", `{` + ser + `,"reason":"removeFromCRL"}`, nil, 400, "malformed", "unhold", s.Serial},
		{"fractional code", `{` + ser + `,"reason":1.0}`, nil, 400, "malformed", "1.0", s.Serial},
		{"negative code", `{` + ser + `,"reason":-1}`, nil, 400, "malformed", "-1", s.Serial},
		{"boolean reason", `{` + ser + `,"reason":true}`, nil, 400, "malformed", "reason", s.Serial},
		{"object reason", `{` + ser + `,"reason":{"code":1}}`, nil, 400, "malformed", "reason", s.Serial},
		{"no serial", `{"reason":"keyCompromise"}`, nil, 400, "malformed", "serial is required", ""},
		{"malformed serial", `{"serial":"xyz","reason":1}`, nil, 400, "malformed", "xyz", ""},
		{"unknown serial", `{"serial":"0abcdef0123456789","reason":1}`, nil, 404, "not_found", "abcdef0123456789", "abcdef0123456789"},
		{"bad invalidity date", `{` + ser + `,"reason":1,"invalidity_date":"yesterday"}`, nil, 400, "malformed", "RFC 3339", s.Serial},
		{"future invalidity date", `{` + ser + `,"reason":1,"invalidity_date":"2099-01-01T00:00:00Z"}`, nil, 400, "malformed", "future", s.Serial},
		{"invalidity before notBefore", `{` + ser + `,"reason":1,"invalidity_date":"2001-01-01T00:00:00Z"}`, nil, 400, "malformed", "notBefore", s.Serial},
		{"unknown field", `{` + ser + `,"reason":1,"comment":"x"}`, nil, 400, "malformed", "comment", ""},
		{"trailing data", `{` + ser + `,"reason":1}}`, nil, 400, "malformed", "trailing", ""},
		{"not JSON", `serial=` + s.Serial, nil, 400, "malformed", "JSON", ""},
		{"content type", `{` + ser + `,"reason":1}`, []reqOpt{header("Content-Type", "text/plain")}, 400, "malformed", "Content-Type", ""},
		{"too large", `{` + ser + `,"reason":"` + strings.Repeat("a", testMaxBody) + `"}`, nil, 413, "too_large", "larger", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit(t, "action=request.refused"))
			resp, data := e.do(t, "POST", "/v1/revoke", e.admin, tc.body, tc.opts...)
			got := checkError(t, resp, data, tc.status, tc.kind)
			if !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", got.Detail, tc.detail)
			}
			refused := e.audit(t, "action=request.refused")
			if len(refused) != before+1 {
				t.Fatalf("request.refused events %d -> %d, want one more", before, len(refused))
			}
			ev := refused[len(refused)-1]
			if ev.Actor != "token:"+e.adminID || ev.Target != tc.target || ev.Detail["request"] != "revoke" || ev.Detail["reason"] != tc.kind {
				t.Errorf("refusal event %+v, want revoke by the admin on %q, reason %s", ev, tc.target, tc.kind)
			}
			if shown := e.cert(t, s.Serial); shown.Status != "valid" {
				t.Errorf("refused request changed the certificate: %+v", shown)
			}
		})
	}

	t.Run("GET is not allowed", func(t *testing.T) {
		resp, data := e.do(t, "GET", "/v1/revoke", e.admin, nil)
		checkError(t, resp, data, http.StatusMethodNotAllowed, "method_not_allowed")
		if allow := resp.Header.Get("Allow"); allow != "POST" {
			t.Errorf("Allow = %q, want POST", allow)
		}
	})
}

func TestRevokeAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceID := e.createToken(t, ca.RoleIssuer, "tls-server")
	bob, _ := e.createToken(t, ca.RoleIssuer, "tls-server")
	auditor := e.auditorToken(t)
	mine := e.sign(t, alice, "tls-server", "alice.example.com")
	bobs := e.sign(t, bob, "tls-server", "bob.example.com")
	admins := e.sign(t, e.admin, "tls-server", "admin.example.com")

	t.Run("issuer revokes its own", func(t *testing.T) {
		got := e.revoke(t, alice, api.RevokeRequest{Serial: mine.Serial, Reason: []byte(`"superseded"`)})
		if got.Status != "revoked" || got.RevocationReason != "superseded" {
			t.Errorf("revoke answered %+v", got)
		}
		evs := e.audit(t, "action=cert.revoked&target="+mine.Serial)
		if len(evs) != 1 || evs[0].Actor != "token:"+aliceID {
			t.Errorf("cert.revoked events %+v, want one by token:%s", evs, aliceID)
		}
	})

	for _, victim := range []api.SignResponse{bobs, admins} {
		t.Run("issuer may not revoke "+victim.Serial, func(t *testing.T) {
			before := len(e.audit(t, "action=request.refused&target="+victim.Serial))
			resp, data := e.do(t, "POST", "/v1/revoke", alice, api.RevokeRequest{Serial: victim.Serial, Reason: []byte(`1`)})
			checkError(t, resp, data, http.StatusForbidden, "forbidden")
			if shown := e.cert(t, victim.Serial); shown.Status != "valid" {
				t.Errorf("forbidden request revoked %s", victim.Serial)
			}
			evs := e.audit(t, "action=request.refused&target="+victim.Serial)
			if len(evs) != before+1 || evs[len(evs)-1].Actor != "token:"+aliceID || evs[len(evs)-1].Detail["reason"] != "forbidden" {
				t.Errorf("refusal events %+v, want one more, forbidden, by token:%s", evs, aliceID)
			}
		})
	}

	t.Run("issuer and unknown serial", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/revoke", alice, api.RevokeRequest{Serial: "abcdef", Reason: []byte(`1`)})
		checkError(t, resp, data, http.StatusNotFound, "not_found")
	})

	for _, c := range []struct {
		name, token, path string
		body              any
	}{
		{"auditor revoke", auditor, "/v1/revoke", api.RevokeRequest{Serial: admins.Serial}},
		{"issuer unhold", alice, "/v1/unhold", api.UnholdRequest{Serial: mine.Serial}},
		{"auditor unhold", auditor, "/v1/unhold", api.UnholdRequest{Serial: mine.Serial}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, data := e.do(t, "POST", c.path, c.token, c.body)
			checkError(t, resp, data, http.StatusForbidden, "forbidden")
		})
	}
	if shown := e.cert(t, admins.Serial); shown.Status != "valid" {
		t.Errorf("refused requests changed %s: %+v", admins.Serial, shown)
	}
}

func TestUnhold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.sign(t, e.admin, "tls-server", "hold.example.com")
	issued := e.cert(t, s.Serial)

	held := e.revoke(t, e.admin, api.RevokeRequest{Serial: s.Serial, Reason: []byte(`"certificateHold"`)})
	if held.Status != "revoked" || held.RevocationReason != "certificateHold" {
		t.Fatalf("hold answered %+v", held)
	}
	e.clk.Advance(time.Hour)
	var got api.Certificate
	raw := e.getJSON(t, "POST", "/v1/unhold", e.admin, api.UnholdRequest{Serial: s.Serial}, http.StatusOK, &got)
	if !reflect.DeepEqual(got, issued) {
		t.Errorf("unhold answered\n%+v\nwant the certificate as issued\n%+v", got, issued)
	}
	for _, field := range []string{"revoked_at", "revocation_reason", "invalidity_date"} {
		if strings.Contains(string(raw), field) {
			t.Errorf("unheld certificate still shows %s: %s", field, raw)
		}
	}
	if evs := e.audit(t, "action=cert.unheld"); len(evs) != 1 || evs[0].Target != s.Serial || evs[0].Actor != "token:"+e.adminID {
		t.Errorf("cert.unheld events %+v", evs)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		kind   string
		detail string
	}{
		{"not on hold", api.UnholdRequest{Serial: s.Serial}, 409, "conflict", "not on hold"},
		{"unknown serial", api.UnholdRequest{Serial: "abcdef"}, 404, "not_found", "abcdef"},
		{"no serial", `{}`, 400, "malformed", "serial"},
		{"unknown field", `{"serial":"` + s.Serial + `","reason":6}`, 400, "malformed", "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := e.do(t, "POST", "/v1/unhold", e.admin, tc.body)
			got := checkError(t, resp, data, tc.status, tc.kind)
			if !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", got.Detail, tc.detail)
			}
		})
	}

	// Released, it can be revoked for good, and that cannot be undone.
	if got := e.revoke(t, e.admin, api.RevokeRequest{Serial: s.Serial, Reason: []byte(`"keyCompromise"`)}); got.RevocationReason != "keyCompromise" {
		t.Errorf("revoke after unhold answered %+v", got)
	}
	resp, data := e.do(t, "POST", "/v1/unhold", e.admin, api.UnholdRequest{Serial: s.Serial})
	if got := checkError(t, resp, data, http.StatusConflict, "conflict"); !strings.Contains(got.Detail, "keyCompromise") {
		t.Errorf("detail %q does not name the reason", got.Detail)
	}
}

// TestRevokeKeyCompromiseScope: an issuer's keyCompromise revokes its own
// certificate only, and blocks nothing: another requester's certificate
// with the same key stays valid. An admin's blocks the key and revokes it.
func TestRevokeKeyCompromiseScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, _ := e.createToken(t, ca.RoleIssuer, "tls-server")
	key := newKey(t)
	sign := func(token, name string) api.SignResponse {
		var out api.SignResponse
		e.getJSON(t, "POST", "/v1/sign", token, api.SignRequest{CSR: csrPEM(t, key, "", name), Profile: "tls-server"},
			http.StatusCreated, &out)
		return out
	}
	mine, admins := sign(alice, "alice.example.com"), sign(e.admin, "admin.example.com")
	if got := e.revoke(t, alice, api.RevokeRequest{Serial: mine.Serial, Reason: []byte(`"keyCompromise"`)}); got.RevocationReason != "keyCompromise" {
		t.Fatalf("issuer revocation answered %+v", got)
	}
	if shown := e.cert(t, admins.Serial); shown.Status != "valid" {
		t.Errorf("an issuer's keyCompromise revoked another requester's certificate: %+v", shown)
	}
	if evs := e.audit(t, "action=key.blocked"); len(evs) != 0 {
		t.Errorf("an issuer's keyCompromise blocked the key: %+v", evs)
	}
	third := sign(e.admin, "third.example.com") // the key is not blocked
	e.revoke(t, e.admin, api.RevokeRequest{Serial: admins.Serial, Reason: []byte(`"keyCompromise"`)})
	if shown := e.cert(t, third.Serial); shown.Status != "revoked" || shown.RevocationReason != "keyCompromise" {
		t.Errorf("after an admin's keyCompromise the key's other certificate is %s (%s), want revoked", shown.Status, shown.RevocationReason)
	}
}
