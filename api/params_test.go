package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca"
)

// TestUnknownQueryParamsEveryRoute (issue 15 item 10) walks the whole
// route table: every endpoint answers an unknown query parameter with 400
// naming it, before it does anything, and takes each parameter it lists.
func TestUnknownQueryParamsEveryRoute(t *testing.T) {
	t.Parallel()
	e := newFullEnv(t)
	serial := e.sign(t, e.admin, "tls-server", "params.example").Serial
	before := len(e.audit(t, ""))
	routes := e.api.Routes()
	if len(routes) < 20 {
		t.Fatalf("Routes lists %d endpoints; the full configuration serves more", len(routes))
	}
	for _, rt := range routes {
		method, path := routePath(rt.Pattern, serial)
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		for _, query := range []string{"bogus_param=1", "limit=5&bogus_param=1", "bogus_param", "%zz=1"} {
			resp, data := e.do(t, method, path+"?"+query, e.admin, body)
			var got struct{ Error, Detail string }
			_ = json.Unmarshal(data, &got)
			want := "bogus_param"
			if strings.HasPrefix(query, "%") {
				want = "does not parse"
			}
			if resp.StatusCode != http.StatusBadRequest || got.Error != ca.Malformed.String() || !strings.Contains(got.Detail, want) {
				t.Errorf("%s ?%s: %d %s, want 400 malformed naming %q", rt.Pattern, query, resp.StatusCode, data, want)
			}
		}
		for _, param := range rt.Params {
			resp, data := e.do(t, method, path+"?"+param+"=1", e.admin, body)
			if d := string(data); strings.Contains(d, "unknown query parameter") || strings.Contains(d, "unknown parameter") {
				t.Errorf("%s refuses its own parameter %s: %d %s", rt.Pattern, param, resp.StatusCode, data)
			}
		}
	}
	// The review's example, by name.
	resp, data := e.do(t, "GET", "/v1/audit?since=2026-01-01T00:00:00Z", e.admin, nil)
	var got struct{ Detail string }
	_ = json.Unmarshal(data, &got)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(got.Detail, `"since"`) {
		t.Errorf("GET /v1/audit?since=...: %d %s, want 400 naming since", resp.StatusCode, data)
	}
	// Refused before the handler: nothing was done (the audit log grew by
	// the reads above only, which admins do not record).
	if got := len(e.audit(t, "")); got != before {
		t.Errorf("the audit log grew from %d to %d events", before, got)
	}
}
