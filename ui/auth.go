package ui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/reqlog"
)

type loginView struct {
	CSRF    string
	Message string
}

// loginForm shows the token form with a fresh login CSRF value, set both
// as a cookie and as a hidden field (double submit).
func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, err := u.session(r.Context(), r); err == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	u.showLogin(w, r, http.StatusOK, "")
}

func (u *UI) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	csrf, err := randomValue()
	if err != nil {
		u.renderError(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: csrf, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(loginTTL / time.Second)})
	if status >= 400 {
		reqlog.From(r.Context()).Refused("reason", "login_refused", "detail", msg)
	}
	u.render(w, r, status, "login", view{Title: "Log in", Data: loginView{CSRF: csrf, Message: msg}})
}

// login checks the pasted token and starts a session. Tokens of roles other
// than auditor and admin are refused with a message saying so, and audited
// under the token's id. Every failure is counted against the client
// address; a token that does not authenticate leaves the caller anonymous,
// so its refusal is counted and summed per address
// (ca.Authority.RecordUnauthenticatedRefusal), not audited one by one.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	remote := clientAddr(r)
	if err := r.ParseForm(); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			u.renderError(w, r, nil, &ca.Error{Kind: ca.TooLarge, Detail: "login form too large"})
			return
		}
		u.renderError(w, r, nil, &ca.Error{Kind: ca.Malformed, Detail: "unreadable login form"})
		return
	}
	c, err := r.Cookie(loginCookie)
	if reason := loginFormProblem(r, c, err); reason != "" {
		// Not a failed guess but a form we did not serve (or an expired
		// one): show a fresh form without counting it.
		u.log.InfoContext(ctx, "ui: login form refused", "reason", reason, "remote", remote)
		u.showLogin(w, r, http.StatusForbidden, "The login form expired or did not come from this page. Please try again.")
		return
	}
	if wait, ok := u.limiter.allow(remote); !ok {
		w.Header().Set("Retry-After", fmtSeconds(wait))
		u.showLogin(w, r, http.StatusTooManyRequests, "Too many failed logins from your address: wait "+fmtSeconds(wait)+" seconds.")
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	p, err := u.access.Authenticate(ctx, token)
	if err != nil {
		if ca.KindOf(err) == ca.Internal {
			u.renderError(w, r, nil, err)
			return
		}
		u.limiter.fail(remote)
		// A token that does not authenticate makes an anonymous caller:
		// counted and summed, not audited one by one (issue 15).
		id, _ := ca.TokenID(token)
		u.access.RecordUnauthenticatedRefusal(ctx, ca.UnauthenticatedRefusal{Surface: "ui.login", Source: remote,
			Method: r.Method, Path: r.URL.Path, TokenID: id, Err: err})
		u.showLogin(w, r, http.StatusUnauthorized, "Invalid or expired token.")
		return
	}
	if p.Role != ca.RoleAuditor && p.Role != ca.RoleAdmin {
		u.limiter.fail(remote)
		err := &ca.Error{Kind: ca.Forbidden, Detail: "role " + p.Role + " may not use the auditor web page"}
		u.access.RecordSession(ctx, audit.ActionUILoginRefused, p.Actor(), remote, err)
		u.showLogin(w, r, http.StatusForbidden, "A token of role "+p.Role+" cannot open the auditor web page: "+
			"log in with an auditor or admin token.")
		return
	}
	// A fresh id at every login: a session id planted before login is
	// never promoted (session fixation).
	if old, err := r.Cookie(sessionCookie); err == nil {
		if s, ok := u.sessions.lookup(old.Value); ok {
			u.sessions.delete(s.key)
		}
	}
	value, _, err := u.sessions.create(p)
	if err != nil {
		u.renderError(w, r, nil, err)
		return
	}
	u.access.RecordSession(ctx, audit.ActionUILogin, p.Actor(), remote, nil)
	u.setSessionCookie(w, value)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// loginFormProblem says why a login POST is not from a form this page
// served, or "" when it is.
func loginFormProblem(r *http.Request, c *http.Cookie, cookieErr error) string {
	switch {
	case !sameOrigin(r):
		return "cross-origin"
	case cookieErr != nil:
		return "no login cookie"
	case !equalSecret(c.Value, r.PostForm.Get("csrf")):
		return "csrf mismatch"
	}
	return ""
}

// logout ends the session; it needs the session's CSRF token so that no
// other site can log the auditor out.
func (u *UI) logout(w http.ResponseWriter, r *http.Request, s session) error {
	if err := r.ParseForm(); err != nil {
		return &ca.Error{Kind: ca.Malformed, Detail: "unreadable form"}
	}
	if !sameOrigin(r) || !equalSecret(s.CSRF, r.PostForm.Get("csrf")) {
		err := &ca.Error{Kind: ca.Forbidden, Detail: "missing or wrong CSRF token"}
		u.access.RecordAccessRefusal(r.Context(), s.actor(), r.Method, r.URL.Path, err)
		return err
	}
	u.sessions.delete(s.key)
	u.access.RecordSession(r.Context(), audit.ActionUILogout, s.actor(), clientAddr(r), nil)
	u.clearSessionCookie(w)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return nil
}

func fmtSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Seconds()+0.999)))
}
