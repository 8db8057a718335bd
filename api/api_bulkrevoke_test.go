package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// TestBulkRevoke: POST /v1/certificates/revoke is the admin's alone; a dry
// run counts and changes nothing; a real run revokes exactly the selected
// certificates, each with its own cert.revoked event, plus one
// cert.bulk_revoked event with the counts.
func TestBulkRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceID := e.createToken(t, ca.RoleIssuer, "tls-server")
	bob, _ := e.createToken(t, ca.RoleIssuer, "tls-server")
	auditor := e.auditorToken(t)
	var alices, others []string
	for range 3 {
		alices = append(alices, e.sign(t, alice, "tls-server", "alice.example.com").Serial)
	}
	others = append(others, e.sign(t, bob, "tls-server", "bob.example.com").Serial,
		e.sign(t, e.admin, "tls-server", "admin.example.com").Serial)
	byAlice := api.BulkRevokeRequest{Filter: api.BulkRevokeFilter{Requester: "token:" + aliceID}, Reason: []byte(`"superseded"`)}
	events := func() (revoked, bulk int) {
		return len(e.audit(t, "action=cert.revoked")), len(e.audit(t, "action="+audit.ActionCertBulkRevoked))
	}
	statuses := func(t *testing.T, want map[string]string) {
		t.Helper()
		for serial, status := range want {
			if got := e.cert(t, serial).Status; got != status {
				t.Errorf("%s: status %s, want %s", serial, got, status)
			}
		}
	}
	allValid := map[string]string{}
	for _, s := range append(append([]string{}, alices...), others...) {
		allValid[s] = "valid"
	}

	for _, c := range []struct {
		name, token string
		status      int
		kind        string
	}{
		{"anonymous", "", http.StatusUnauthorized, "unauthorized"},
		{"wrong token", "sigil_nosuchid_" + "0123456789abcdef0123456789abcdef", http.StatusUnauthorized, "unauthorized"},
		{"issuer", alice, http.StatusForbidden, "forbidden"},
		{"other issuer", bob, http.StatusForbidden, "forbidden"},
		{"auditor", auditor, http.StatusForbidden, "forbidden"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, data := e.do(t, "POST", "/v1/certificates/revoke", c.token, byAlice)
			checkError(t, resp, data, c.status, c.kind)
		})
	}
	statuses(t, allValid)
	if r, b := events(); r != 0 || b != 0 {
		t.Fatalf("refused bulk requests left %d cert.revoked and %d bulk events", r, b)
	}

	t.Run("no filter", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/certificates/revoke", e.admin, api.BulkRevokeRequest{Reason: []byte(`4`)})
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})
	t.Run("bad time", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/certificates/revoke", e.admin,
			api.BulkRevokeRequest{Filter: api.BulkRevokeFilter{IssuedAfter: "yesterday"}})
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})
	t.Run("bad reason", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/certificates/revoke", e.admin,
			api.BulkRevokeRequest{Filter: byAlice.Filter, Reason: []byte(`"removeFromCRL"`)})
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})
	statuses(t, allValid)

	dry := byAlice
	dry.DryRun = true
	var got api.BulkRevokeResult
	e.getJSON(t, "POST", "/v1/certificates/revoke", e.admin, dry, http.StatusOK, &got)
	if want := (api.BulkRevokeResult{DryRun: true, Matched: 3}); got.DryRun != want.DryRun || got.Matched != want.Matched ||
		got.Revoked != 0 || got.AlreadyRevoked != 0 || got.Failed != 0 || len(got.Failures) != 0 {
		t.Errorf("dry run answered %+v, want %+v", got, want)
	}
	statuses(t, allValid)
	if r, b := events(); r != 0 || b != 0 {
		t.Fatalf("a dry run left %d cert.revoked and %d bulk events", r, b)
	}

	got = api.BulkRevokeResult{}
	e.getJSON(t, "POST", "/v1/certificates/revoke", e.admin, byAlice, http.StatusOK, &got)
	if got.DryRun || got.Matched != 3 || got.Revoked != 3 || got.AlreadyRevoked != 0 || got.Failed != 0 {
		t.Errorf("bulk revoke answered %+v, want 3 matched and revoked", got)
	}
	want := map[string]string{}
	for _, s := range alices {
		want[s] = "revoked"
		if c := e.cert(t, s); c.RevocationReason != "superseded" {
			t.Errorf("%s: reason %q, want superseded", s, c.RevocationReason)
		}
		if evs := e.audit(t, "action=cert.revoked&target="+s); len(evs) != 1 || evs[0].Actor != "token:"+e.adminID {
			t.Errorf("%s: cert.revoked events %+v, want one by the admin", s, evs)
		}
	}
	for _, s := range others {
		want[s] = "valid"
	}
	statuses(t, want)
	evs := e.audit(t, "action="+audit.ActionCertBulkRevoked)
	if len(evs) != 1 {
		t.Fatalf("%d bulk events, want 1: %+v", len(evs), evs)
	}
	if d := evs[0].Detail; evs[0].Actor != "token:"+e.adminID || d["requester"] != "token:"+aliceID || d["reason"] != "superseded" ||
		d["matched"] != "3" || d["revoked"] != "3" || d["already_revoked"] != "0" || d["failed"] != "0" || d["channel"] != ca.ChannelAPI {
		t.Errorf("bulk event %+v", evs[0])
	}

	// Revoked certificates are no longer valid: the same filter selects none.
	got = api.BulkRevokeResult{}
	e.getJSON(t, "POST", "/v1/certificates/revoke", e.admin, byAlice, http.StatusOK, &got)
	if got.Matched != 0 || got.Revoked != 0 {
		t.Errorf("second run answered %+v, want nothing matched", got)
	}

	// Filters combine: issued by the intermediate's key, after a point.
	e.clk.Advance(time.Hour)
	cut := e.clk.Now().UTC().Truncate(time.Second)
	e.clk.Advance(time.Minute)
	late := e.sign(t, bob, "tls-server", "late.example.com").Serial
	var interKey string
	for _, k := range e.keys(t) {
		if k.Purpose == "intermediate" && k.State == "active" {
			interKey = k.ID
		}
	}
	got = api.BulkRevokeResult{}
	e.getJSON(t, "POST", "/v1/certificates/revoke", e.admin, api.BulkRevokeRequest{
		Filter: api.BulkRevokeFilter{IssuerKey: interKey, IssuedAfter: cut.Format(time.RFC3339)}, Reason: []byte(`5`)},
		http.StatusOK, &got)
	if got.Matched != 1 || got.Revoked != 1 {
		t.Errorf("revoke issued after %s answered %+v, want the one", cut, got)
	}
	want[late] = "revoked"
	statuses(t, want)
}
