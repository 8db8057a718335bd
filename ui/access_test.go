package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ui"
)

// TestAuditorAccessEveryRoute walks the page's whole route table (with
// every optional route served): an auditor's session, CSRF token in hand,
// is refused (403, audited) every method that could change state on every
// path, and served every GET; without a session, pages send to the login
// form. Login and logout are the only POSTs, tested on their own.
func TestAuditorAccessEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.reserve(t, ui.Config{Export: fakeExport{e.auth}, Log: fakeLog{}, Jobs: fakeJobs{},
		VerifyAudit: func(context.Context) (ca.AuditReport, error) { return ca.AuditReport{}, nil }}, e.auth)
	serial := e.issue(t, "routes.example.com").Serial
	auditor := e.token(t, ca.RoleAuditor, 0)
	actor := "token:" + tokenID(auditor)
	b := e.browser(t)
	csrf := b.mustLogin(auditor)
	anon := e.browser(t)

	routes := e.ui.Routes()
	if len(routes) < 10 {
		t.Fatalf("Routes lists %d endpoints", len(routes))
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		path = strings.NewReplacer("{serial}", serial, "{file}", "ui.css", "{$}", "").Replace(path)
		if rt.Pattern == "GET /ui/export/certificates" {
			path += "?format=csv"
		}
		switch {
		case method == http.MethodPost:
			if rt.Pattern != "POST /ui/login" && rt.Pattern != "POST /ui/logout" {
				t.Errorf("%s: the page serves a POST other than login and logout", rt.Pattern)
			}
		case method != http.MethodGet:
			t.Errorf("%s: the page serves a method other than GET and POST", rt.Pattern)
		default:
			want := http.StatusOK
			if path == "/ui/login" {
				want = http.StatusSeeOther // logged in already: to the dashboard
			}
			if r := b.get(path); r.StatusCode != want {
				t.Errorf("auditor GET %s: %d, want %d", path, r.StatusCode, want)
			}
			if !rt.Public {
				if r := anon.get(path); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login" {
					t.Errorf("anonymous GET %s: %d %q, want a redirect to the login form", path, r.StatusCode, r.Header.Get("Location"))
				}
			}
		}
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if m+" "+strings.TrimPrefix(rt.Pattern, method+" ") == rt.Pattern || path == "/ui/login" || path == "/ui/logout" {
				continue // the route itself (login, logout)
			}
			before := len(e.events(t, "access.refused"))
			form := url.Values{"csrf": {csrf}, "action": {"revoke"}, "reason": {"keyCompromise"}}
			if r := b.do(m, path, form); r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "read-only") {
				t.Errorf("auditor %s %s: %d, want 403 read-only", m, path, r.StatusCode)
			}
			evs := e.events(t, "access.refused")[before:]
			if len(evs) != 1 || evs[0].Actor != actor || evs[0].Detail["method"] != m || evs[0].Detail["path"] != strings.Split(path, "?")[0] {
				t.Errorf("auditor %s %s: refusal events %+v, want one by %s", m, path, evs, actor)
			}
			if r := anon.do(m, path, form); r.StatusCode != http.StatusForbidden {
				t.Errorf("anonymous %s %s: %d, want 403", m, path, r.StatusCode)
			}
		}
	}
	// Nothing changed: the certificate is still valid.
	rec, err := e.auth.Certificate(context.Background(), serial)
	if err != nil || !rec.RevokedAt.IsZero() {
		t.Errorf("certificate after the refused requests: %+v, %v", rec.RevokedAt, err)
	}
}

// TestPageViewsAudited: every authenticated view and download is one
// audit.read event with actor, path and query; the login form and the
// stylesheet are not recorded.
func TestPageViewsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.reserve(t, ui.Config{Export: fakeExport{e.auth},
		VerifyAudit: func(context.Context) (ca.AuditReport, error) { return ca.AuditReport{}, nil }}, e.auth)
	serial := e.issue(t, "seen.example.com").Serial
	auditor := e.token(t, ca.RoleAuditor, 0)
	actor := "token:" + tokenID(auditor)
	b := e.browser(t)
	b.mustLogin(auditor) // views /ui/ once
	b.get("/ui/static/ui.css")
	b.get("/ui/login")

	views := []struct{ path, query string }{
		{"/ui/certificates", "name=seen.example.com&status=valid"},
		{"/ui/certificates/" + serial, ""},
		{"/ui/certificates/" + serial + "/pem", ""},
		{"/ui/audit", "action=cert."},
		{"/ui/verify", ""},
		{"/ui/export/certificates", "format=csv&name=seen"},
	}
	for _, v := range views {
		p := v.path
		if v.query != "" {
			p += "?" + v.query
		}
		if r := b.get(p); r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, r.StatusCode)
		}
	}
	got := e.events(t, "audit.read")
	want := append([]struct{ path, query string }{{"/ui/", ""}}, views...)
	if len(got) != len(want) {
		t.Fatalf("%d audit.read events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Actor != actor || g.Target != w.path || g.Detail["path"] != w.path || g.Detail["query"] != w.query || g.Detail["method"] != "GET" {
			t.Errorf("event %d: %+v, want actor %s path %s query %q", i, g, actor, w.path, w.query)
		}
	}
}
