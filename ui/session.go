package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
)

const (
	// The __Host- prefix makes browsers refuse the cookie unless it is
	// Secure, has Path=/ and no Domain, so no other host can plant it.
	sessionCookie = "__Host-sigil_session"
	// loginCookie carries the double-submitted CSRF value of the login
	// form, before any session exists.
	loginCookie = "__Host-sigil_login"
	loginTTL    = 10 * time.Minute
)

// session is a logged-in auditor or admin. It holds the token's id, never
// its secret.
type session struct {
	key            [sha256.Size]byte // SHA-256 of the cookie value
	TokenID, Role  string
	CSRF           string
	created, seen  time.Time
	expires        time.Time // absolute end: login + SessionMax, or the token's expiry if sooner
	tokenExpiresAt time.Time
}

func (s session) actor() string { return "token:" + s.TokenID }

// Actor is how the session's principal appears in the audit log.
func (s session) Actor() string { return s.actor() }

// sessions is the in-memory session table. Only hashes of session ids are
// kept, so a memory dump or a debug print of the table yields no cookie.
type sessions struct {
	mu        sync.Mutex
	clk       clockwork.Clock
	idle, max time.Duration
	limit     int
	m         map[[sha256.Size]byte]*session
}

func newSessions(clk clockwork.Clock, idle, max time.Duration, limit int) *sessions {
	return &sessions{clk: clk, idle: idle, max: max, limit: limit, m: map[[sha256.Size]byte]*session{}}
}

// randomValue is 256 bits from crypto/rand, URL-safe.
func randomValue() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// create starts a session for p and returns the cookie value.
func (t *sessions) create(p ca.Principal) (string, session, error) {
	id, err := randomValue()
	if err != nil {
		return "", session{}, err
	}
	csrf, err := randomValue()
	if err != nil {
		return "", session{}, err
	}
	now := t.clk.Now()
	s := &session{key: sha256.Sum256([]byte(id)), TokenID: p.TokenID, Role: p.Role, CSRF: csrf,
		created: now, seen: now, expires: now.Add(t.max), tokenExpiresAt: p.Expires}
	if !p.Expires.IsZero() && p.Expires.Before(s.expires) {
		s.expires = p.Expires
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.limit {
		t.sweepLocked(now)
	}
	if len(t.m) >= t.limit {
		return "", session{}, &ca.Error{Kind: ca.RateLimited, Detail: "too many open sessions: try again later",
			RetryAfter: t.idle}
	}
	t.m[s.key] = s
	return id, *s, nil
}

// lookup returns the live session for a cookie value and marks it used.
func (t *sessions) lookup(id string) (session, bool) {
	key := sha256.Sum256([]byte(id))
	now := t.clk.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[key]
	if !ok {
		return session{}, false
	}
	if t.expiredLocked(s, now) {
		delete(t.m, key)
		return session{}, false
	}
	s.seen = now
	return *s, true
}

func (t *sessions) expiredLocked(s *session, now time.Time) bool {
	return !now.Before(s.expires) || !now.Before(s.seen.Add(t.idle))
}

func (t *sessions) sweepLocked(now time.Time) {
	for k, s := range t.m {
		if t.expiredLocked(s, now) {
			delete(t.m, k)
		}
	}
}

func (t *sessions) delete(key [sha256.Size]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

// session returns the request's live session, its token re-checked: a
// revoked or expired token, or one whose role changed, ends it.
func (u *UI) session(ctx context.Context, r *http.Request) (session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return session{}, &ca.Error{Kind: ca.Unauthorized, Detail: "not logged in"}
	}
	s, ok := u.sessions.lookup(c.Value)
	if !ok {
		return session{}, &ca.Error{Kind: ca.Unauthorized, Detail: "session expired: log in again"}
	}
	p, err := u.access.TokenPrincipal(ctx, s.TokenID)
	if err != nil || p.Role != s.Role {
		u.sessions.delete(s.key)
		if ca.KindOf(err) == ca.Internal {
			return session{}, err
		}
		return session{}, &ca.Error{Kind: ca.Unauthorized, Detail: "the session's token is no longer valid"}
	}
	return s, nil
}

func (u *UI) setSessionCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
}

func (u *UI) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// equalSecret compares two secrets in constant time; empty never matches.
func equalSecret(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sameOrigin refuses a POST whose Origin header (sent by every current
// browser on POST) names another site. SameSite=Strict and the CSRF token
// already stop cross-site posts; this is a third, independent check.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	return o == "https://"+r.Host
}

// limiter counts failed logins in fixed windows, per client address and
// overall. The overall cap bounds how fast tokens can be guessed from many
// addresses at once.
type limiter struct {
	mu          sync.Mutex
	clk         clockwork.Clock
	window      time.Duration
	perKey, all int
	keys        map[string]*bucket
	total       bucket
}

type bucket struct {
	start time.Time
	n     int
}

func newLimiter(clk clockwork.Clock, window time.Duration, perKey, all int) *limiter {
	return &limiter{clk: clk, window: window, perKey: perKey, all: all, keys: map[string]*bucket{}}
}

func (b *bucket) current(now time.Time, window time.Duration) *bucket {
	if now.Sub(b.start) >= window {
		b.start, b.n = now, 0
	}
	return b
}

// allow reports whether key may try to log in now, and if not, when.
func (l *limiter) allow(key string) (time.Duration, bool) {
	now := l.clk.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.total.current(now, l.window); t.n >= l.all {
		return t.start.Add(l.window).Sub(now), false
	}
	if b, ok := l.keys[key]; ok && b.current(now, l.window).n >= l.perKey {
		return b.start.Add(l.window).Sub(now), false
	}
	return 0, true
}

// fail counts a failed login by key.
func (l *limiter) fail(key string) {
	now := l.clk.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.current(now, l.window).n++
	b, ok := l.keys[key]
	if !ok {
		// Bound the table: drop windows that have ended.
		if len(l.keys) >= 4096 {
			for k, v := range l.keys {
				if now.Sub(v.start) >= l.window {
					delete(l.keys, k)
				}
			}
		}
		b = &bucket{start: now}
		l.keys[key] = b
	}
	b.current(now, l.window).n++
}
