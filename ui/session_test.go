package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ui"
)

// TestLoginLogout: an auditor logs in, gets a hardened session cookie,
// sees the dashboard, and logs out with the session's CSRF token; both are
// audited, and the token never reaches the logs.
func TestLoginLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	auditor := e.token(t, ca.RoleAuditor, 0)
	b := e.browser(t)

	r := b.login(auditor)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "__Host-sigil_session" {
			sc = c
		}
	}
	if sc == nil {
		t.Fatal("no session cookie")
	}
	if !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Domain != "" {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", sc)
	}
	if len(sc.Value) < 43 || strings.Contains(sc.Value, tokenID(auditor)) {
		t.Errorf("session cookie value %q: want 256 random bits, unrelated to the token", sc.Value)
	}
	home := b.get("/ui/")
	if home.StatusCode != http.StatusOK || !strings.Contains(home.body, "Issued per day") {
		t.Fatalf("dashboard: %d\n%s", home.StatusCode, home.body)
	}
	csrf := csrfOf(t, home.body)

	// Logout without, then with, the CSRF token.
	if r := b.do("POST", "/ui/logout", url.Values{"csrf": {"wrong"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("logout with a wrong CSRF token: %d, want 403", r.StatusCode)
	}
	if r := b.do("POST", "/ui/logout", url.Values{"csrf": {csrf}}, "Origin", "https://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Errorf("logout from another origin: %d, want 403", r.StatusCode)
	}
	if r := b.get("/ui/"); r.StatusCode != http.StatusOK {
		t.Fatalf("refused logouts ended the session: %d", r.StatusCode)
	}
	r = b.do("POST", "/ui/logout", url.Values{"csrf": {csrf}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login" {
		t.Fatalf("logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := b.get("/ui/"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login" {
		t.Errorf("after logout GET /ui/: %d %q, want a redirect to the login form", r.StatusCode, r.Header.Get("Location"))
	}

	actor := "token:" + tokenID(auditor)
	for _, action := range []string{"ui.login", "ui.logout"} {
		evs := e.events(t, action)
		if len(evs) != 1 || evs[0].Actor != actor || evs[0].Detail["remote"] != "127.0.0.1" {
			t.Errorf("%s events: %+v, want one by %s from 127.0.0.1", action, evs, actor)
		}
	}
	// The secret is base64url, "_" included: it is all after the id.
	secret := strings.TrimPrefix(auditor, "sigil_"+tokenID(auditor)+"_")
	if len(secret) < 40 || secret == auditor {
		t.Fatalf("cannot take the secret out of the token (%d bytes)", len(secret))
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Error("the token's secret appears in the logs")
	}
}

// TestLoginRefused: wrong roles get a clear message, bad tokens a plain
// refusal, forms we did not serve are refused without counting; a refused
// token of the wrong role is audited under its id, a token that does not
// authenticate is only summed per address (issue 15).
func TestLoginRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	issuer := e.token(t, ca.RoleIssuer, 0, "tls-server")
	revoked := e.token(t, ca.RoleAuditor, 0)
	if err := e.auth.Access().RevokeToken(context.Background(), "test", tokenID(revoked)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		token     string
		status    int
		message   string
		wantActor string
	}{
		{"issuer role", issuer, http.StatusForbidden, "cannot open the auditor web page: log in with an auditor or admin token", "token:" + tokenID(issuer)},
		{"revoked", revoked, http.StatusUnauthorized, "Invalid or expired token.", ""},
		{"garbage", "not-a-token", http.StatusUnauthorized, "Invalid or expired token.", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			before := len(e.events(t, "ui.login.refused"))
			r := b.login(tc.token)
			if r.StatusCode != tc.status || !strings.Contains(r.body, tc.message) {
				t.Errorf("status %d, want %d with %q:\n%s", r.StatusCode, tc.status, tc.message, r.body)
			}
			evs := e.events(t, "ui.login.refused")[before:]
			if tc.wantActor == "" {
				if len(evs) != 0 {
					t.Errorf("refusal events %+v of an unauthenticated login, want none", evs)
				}
				checkLoginSummary(t, e, 1)
			} else if len(evs) != 1 || evs[0].Actor != tc.wantActor {
				t.Errorf("refusal events %+v, want one by %s", evs, tc.wantActor)
			}
			if r := b.get("/ui/"); r.StatusCode != http.StatusSeeOther {
				t.Errorf("refused login opened a session: %d", r.StatusCode)
			}
		})
	}
	t.Run("no login CSRF", func(t *testing.T) {
		b := e.browser(t)
		r := b.do("POST", "/ui/login", url.Values{"token": {e.admin}})
		if r.StatusCode != http.StatusForbidden || b.get("/ui/").StatusCode != http.StatusSeeOther {
			t.Errorf("login without the form's CSRF value: %d, want 403 and no session", r.StatusCode)
		}
	})
	t.Run("cross-origin", func(t *testing.T) {
		b := e.browser(t)
		form := b.get("/ui/login")
		r := b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, form.body)}, "token": {e.admin}}, "Origin", "https://evil.example")
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin login: %d, want 403", r.StatusCode)
		}
	})
	t.Run("admin", func(t *testing.T) {
		e.browser(t).mustLogin(e.admin)
	})
}

// checkLoginSummary flushes the refusal summaries and checks that the last
// one counts n refused logins from 127.0.0.1.
func checkLoginSummary(t *testing.T, e *env, n int) {
	t.Helper()
	if err := e.auth.FlushRefusalSummaries(context.Background()); err != nil {
		t.Fatal(err)
	}
	sums := e.events(t, "access.refused.summary")
	want := "ui.login:unauthorized=" + strconv.Itoa(n)
	if len(sums) == 0 || sums[len(sums)-1].Actor != "anonymous" || sums[len(sums)-1].Target != "127.0.0.1" ||
		sums[len(sums)-1].Detail["by"] != want {
		t.Errorf("refusal summaries %+v, want the last from 127.0.0.1 counting %s", sums, want)
	}
}

// TestLoginRateLimited: five failures a minute per address, then 429 with
// Retry-After until the window ends (fake clock, no sleeping).
func TestLoginRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	auditor := e.token(t, ca.RoleAuditor, 0)
	b := e.browser(t)
	for i := range 5 {
		if r := b.login("sigil_0123456789abcdef_wrong"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, r.StatusCode)
		}
	}
	r := b.login(auditor)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" {
		t.Fatalf("sixth attempt: %d Retry-After %q, want 429 and 60", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if n := len(e.events(t, "ui.login.refused")); n != 0 {
		t.Errorf("%d refusals of unauthenticated logins audited one by one, want none", n)
	}
	checkLoginSummary(t, e, 5) // throttled attempts are not counted

	e.clk.Advance(time.Minute)
	b.mustLogin(auditor)
}

// TestSessionExpiry: sessions end after the idle timeout, at the absolute
// limit, at the token's expiry, and when the token is revoked.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// steps advance the clock (and use the session) before the last
		// step, after which the session must be gone.
		ttl   time.Duration
		steps []time.Duration
	}{
		{"idle", 0, []time.Duration{29 * time.Minute, 30 * time.Minute}},
		{"absolute", 0, []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 20 * time.Minute}},
		{"token expiry", 40 * time.Minute, []time.Duration{20 * time.Minute, 20 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *ui.Config) { c.SessionMax = 2 * time.Hour })
			b := e.browser(t)
			b.mustLogin(e.token(t, ca.RoleAuditor, tc.ttl))
			for i, d := range tc.steps {
				e.clk.Advance(d)
				r := b.get("/ui/certificates")
				last := i == len(tc.steps)-1
				if last && r.StatusCode != http.StatusSeeOther {
					t.Errorf("after %v more: %d, want the session gone", d, r.StatusCode)
				}
				if !last && r.StatusCode != http.StatusOK {
					t.Fatalf("step %d (+%v): %d, want the session alive", i, d, r.StatusCode)
				}
			}
		})
	}
	t.Run("token revoked", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		tok := e.token(t, ca.RoleAuditor, 0)
		b := e.browser(t)
		b.mustLogin(tok)
		if err := e.auth.Access().RevokeToken(context.Background(), "test", tokenID(tok)); err != nil {
			t.Fatal(err)
		}
		if r := b.get("/ui/"); r.StatusCode != http.StatusSeeOther {
			t.Errorf("after revoking the token: %d, want the session gone", r.StatusCode)
		}
	})
}

// TestSessionLimit: logins beyond MaxSessions wait for one to end.
func TestSessionLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ui.Config) { c.MaxSessions = 2 })
	tok := e.token(t, ca.RoleAuditor, 0)
	e.browser(t).mustLogin(tok)
	e.browser(t).mustLogin(tok)
	if r := e.browser(t).login(tok); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third session: %d, want 429", r.StatusCode)
	}
	e.clk.Advance(31 * time.Minute) // both idle out
	e.browser(t).mustLogin(tok)
}
