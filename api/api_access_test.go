package api_test

import (
	"net/http"
	"testing"

	"github.com/sigil-ca/sigil/ca"
)

// TestAccessRefusalsAudited: a refused authenticated caller (a valid token
// of the wrong role) is audited; a caller that did not authenticate (a
// revoked token, a bad secret, no token, garbage) is only counted and
// summed per source (issue 15).
func TestAccessRefusalsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auditor, auditorID := e.createToken(t, ca.RoleAuditor)
	revoked, revokedID := e.createToken(t, ca.RoleIssuer, "tls-server")
	if resp, _ := e.do(t, "DELETE", "/v1/tokens/"+revokedID, e.admin, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
	forged := revoked[:len(revoked)-4] + "AAAA"

	tests := []struct {
		name      string
		token     string
		status    int
		wantActor string // "": no audit event expected, but a summary
	}{
		{"wrong role", auditor, http.StatusForbidden, "token:" + auditorID},
		{"revoked token", revoked, http.StatusUnauthorized, ""},
		{"wrong secret", forged, http.StatusUnauthorized, ""},
		{"no token", "", http.StatusUnauthorized, ""},
		{"not a sigil token", "garbage", http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		before := len(e.audit(t, "action=access.refused"))
		resp, _ := e.do(t, "POST", "/v1/sign", tc.token, map[string]string{})
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		events := e.audit(t, "action=access.refused")
		added := events[before:]
		switch {
		case tc.wantActor == "" && len(added) != 0:
			t.Errorf("%s: %d access.refused events, want none", tc.name, len(added))
		case tc.wantActor != "" && len(added) != 1:
			t.Errorf("%s: %d access.refused events, want 1", tc.name, len(added))
		case tc.wantActor != "" && (added[0].Actor != tc.wantActor || added[0].Detail["path"] != "/v1/sign"):
			t.Errorf("%s: event %+v, want actor %s on /v1/sign", tc.name, added[0], tc.wantActor)
		}
		if tc.wantActor == "" {
			checkRefusalSummary(t, e, "api:unauthorized=1")
		}
	}
}
