package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.step.sm/crypto/jose"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/httpstatus"
	"github.com/sigil-ca/sigil/internal/reqlog"
	"github.com/sigil-ca/sigil/store"
)

// Store is what the ACME server reads from the store (what it writes is
// Tx). Reads see only committed data; a record that does not exist is
// store.ErrNotFound, whatever its status otherwise.
type Store interface {
	KeyStore
	// ACMEAccount returns the account with id, whatever its status.
	ACMEAccount(ctx context.Context, id string) (store.ACMEAccount, error)
	// ACMEAccountByKey returns the account of endpoint whose key has the
	// RFC 7638 thumbprint (RFC 8555 §7.3.1 onlyReturnExisting).
	ACMEAccountByKey(ctx context.Context, endpoint, thumbprint string) (store.ACMEAccount, error)
	// ACMEOrder returns the order with id, whatever its status.
	ACMEOrder(ctx context.Context, id string) (store.ACMEOrder, error)
	// ACMECertOrder returns the order whose finalization issued the
	// certificate with serial: the account and endpoint it belongs to.
	ACMECertOrder(ctx context.Context, serial string) (store.ACMEOrder, error)
	// ACMEOrders returns a page of the account's orders, newest first, and
	// the opaque cursor of the next ("" after the last); a page never
	// repeats or skips an order that existed when paging began.
	ACMEOrders(ctx context.Context, accountID, cursor string, limit int) ([]store.ACMEOrder, string, error)
	// ACMEAuthz returns the authorization with id and its challenges in
	// the order they were inserted.
	ACMEAuthz(ctx context.Context, id string) (store.ACMEAuthz, error)
	// ACMEChallenge returns the challenge with id.
	ACMEChallenge(ctx context.Context, id string) (store.ACMEChallenge, error)
	// ACMEReusableAuthz returns the account's valid authorization for
	// exactly this identifier and wildcard flag that expires after now, the
	// latest-expiring first, with its challenges.
	ACMEReusableAuthz(ctx context.Context, accountID string, id store.ACMEIdentifier, wildcard bool, now time.Time) (store.ACMEAuthz, error)
	// CertificateReplacing returns the first certificate recorded as
	// replacing serial (RFC 9773 ARI "replaces").
	CertificateReplacing(ctx context.Context, serial string) (store.CertRecord, error)
	// EABKey returns the external account binding key with id, used or
	// revoked ones included.
	EABKey(ctx context.Context, id string) (store.EABKey, error)
}

// Config configures one ACME endpoint.
type Config struct {
	// Name is the endpoint name; "" serves /acme/, "x" serves /acme/x/.
	Name string
	// TermsOfService, if set, is advertised and must be agreed to.
	TermsOfService string
	// RequireEAB makes newAccount require an external account binding
	// (RFC 8555 §7.3.4) made for this endpoint.
	RequireEAB bool
	// NonceTTL bounds how long a nonce is redeemable (default 15m).
	NonceTTL time.Duration
	// MaxBodyBytes bounds JWS request bodies (default 64 KiB).
	MaxBodyBytes int64
	// Profile is the issuance profile orders on this endpoint use when
	// newOrder names none.
	Profile string
	// Profiles are the profiles a newOrder may name (the ACME profiles
	// extension), with a description each; Profile is always allowed.
	Profiles map[string]string
	// ValidationTimeout bounds one challenge validation (default 30s).
	ValidationTimeout time.Duration
	// MaxValidations bounds validations running at once (default 64).
	MaxValidations int
	// RateLimits bound accounts per IP, orders per account and per IP,
	// and certificates per registered domain.
	RateLimits RateLimits
	// ValidationWait is how long a challenge response waits for a fast
	// validation to finish before answering "processing" (default 250ms).
	ValidationWait time.Duration
	// ValidationRetries is how many more attempts a validation that failed
	// for a network reason (connection, dns, tls) gets within
	// ValidationTimeout (default 2; negative: none).
	ValidationRetries int
	// AuthzReuse is how long a valid authorization is reused for new
	// orders of the same account (default 30 days; negative: never).
	AuthzReuse time.Duration
	// Names, if set, narrows the profiles' name policy for this endpoint.
	Names *ca.NamePolicy
	// CAA says when CAA records (RFC 8659) are checked before an
	// authorization becomes valid (default CAAAuto).
	CAA CAAMode
	// CAAVerifier checks CAA records; required unless CAA is CAAOff.
	CAAVerifier CAAVerifier
	// CAAMaxAge is how old an authorization's last CAA check may be when
	// a certificate is issued from it; an older one is checked again at
	// finalize (default and at most 8h, the CA/Browser Forum's bound, BR
	// 3.2.2.8; negative: checked again at every finalize).
	CAAMaxAge time.Duration
	Clock     clockwork.Clock
	Logger    *slog.Logger
}

// CAAMode says which names get a CAA check.
type CAAMode string

// CAA modes.
const (
	// CAAAuto checks names that look public (an ICANN suffix), where a
	// domain owner may have published CAA records; internal names skip it.
	CAAAuto CAAMode = "auto"
	CAAOn   CAAMode = "on"
	CAAOff  CAAMode = "off"
)

// CAAVerifier decides whether CAA records let this CA issue for a name;
// *CAAChecker implements it.
type CAAVerifier interface {
	Check(ctx context.Context, domain string, wildcard bool, params CAAParams) error
}

// Server is one ACME endpoint.
type Server struct {
	cfg         Config
	st          Store
	ca          Authority
	challenger  Challenger
	nonces      *Nonces
	sem         chan struct{}
	perIP       *limiter // new accounts per client
	perAccount  *limiter // new orders per account
	ordersPerIP *limiter // new orders per client
	perDomain   *limiter // certificates per registered domain
	validations sync.WaitGroup
	clk         clockwork.Clock
	log         *slog.Logger
	prefix      string // "/acme" or "/acme/NAME"

	// signedHook, when set (tests only), runs after the certificate is
	// signed and before it commits with the order's valid state: the
	// crash test kills the process there.
	signedHook func()
}

// New checks cfg and returns an endpoint.
func New(cfg Config, st Store, authority Authority, challenger Challenger, nonces *Nonces) (*Server, error) {
	if cfg.Clock == nil || cfg.Logger == nil || st == nil || nonces == nil || authority == nil || challenger == nil {
		return nil, errors.New("acme: clock, logger, store, authority, challenger and nonces are required")
	}
	if cfg.Profile == "" {
		return nil, errors.New("acme: endpoint has no profile")
	}
	if cfg.ValidationTimeout <= 0 {
		cfg.ValidationTimeout = 30 * time.Second
	}
	if cfg.MaxValidations <= 0 {
		cfg.MaxValidations = 64
	}
	if cfg.ValidationWait <= 0 {
		cfg.ValidationWait = 250 * time.Millisecond
	}
	if strings.ContainsAny(cfg.Name, "/?#") {
		return nil, fmt.Errorf("acme: bad endpoint name %q", cfg.Name)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.ValidationRetries == 0 {
		cfg.ValidationRetries = 2
	}
	if cfg.AuthzReuse == 0 {
		cfg.AuthzReuse = DefaultAuthzReuse
	}
	switch cfg.CAA {
	case "":
		cfg.CAA = CAAAuto
	case CAAAuto, CAAOn, CAAOff:
	default:
		return nil, fmt.Errorf("acme: caa mode %q is not auto, on or off", cfg.CAA)
	}
	switch {
	case cfg.CAAMaxAge == 0:
		cfg.CAAMaxAge = MaxCAAAge
	case cfg.CAAMaxAge > MaxCAAAge:
		return nil, fmt.Errorf("acme: caa max age %s is over the %s the CA/Browser Forum allows", cfg.CAAMaxAge, MaxCAAAge)
	}
	if cfg.CAA != CAAOff && cfg.CAAVerifier == nil {
		return nil, fmt.Errorf("acme: caa mode %s needs a CAA checker", cfg.CAA)
	}
	if cfg.Names != nil {
		if err := cfg.Names.Validate(); err != nil {
			return nil, fmt.Errorf("acme: endpoint names: %w", err)
		}
	}
	prefix := "/acme"
	if cfg.Name != "" {
		prefix += "/" + cfg.Name
	}
	rl := cfg.RateLimits.withDefaults()
	return &Server{cfg: cfg, st: st, ca: authority, challenger: challenger, nonces: nonces, clk: cfg.Clock, log: cfg.Logger,
		prefix: prefix, sem: make(chan struct{}, cfg.MaxValidations),
		perIP:       newLimiter("new accounts per IP", rl.AccountsPerIP, rl.MaxTrackedClients),
		perAccount:  newLimiter("new orders per account", rl.OrdersPerAccount, rl.MaxTrackedClients),
		ordersPerIP: newLimiter("new orders per IP", rl.OrdersPerIP, rl.MaxTrackedClients),
		perDomain:   newLimiter("certificates per registered domain", rl.CertificatesPerDomain, rl.MaxTrackedClients),
	}, nil
}

// Prefix is the path under which the endpoint is served.
func (s *Server) Prefix() string { return s.prefix }

type handler func(w http.ResponseWriter, r *http.Request) error

// Handler returns the endpoint's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix
	mux.Handle("GET "+p+"/directory", s.adapt(s.directory))
	mux.Handle("GET "+p+"/new-nonce", s.adapt(s.newNonce))
	mux.Handle("GET "+p+"/renewal-info/{id}", s.adapt(s.renewalInfo))
	mux.Handle("POST "+p+"/new-account", s.adapt(s.newAccount))
	mux.Handle("POST "+p+"/acct/{id}", s.adapt(s.account))
	mux.Handle("POST "+p+"/acct/{id}/orders", s.adapt(s.orders))
	mux.Handle("POST "+p+"/key-change", s.adapt(s.keyChange))
	mux.Handle("POST "+p+"/new-order", s.adapt(s.newOrder))
	mux.Handle("POST "+p+"/order/{id}", s.adapt(s.getOrder))
	mux.Handle("POST "+p+"/order/{id}/finalize", s.adapt(s.finalize))
	mux.Handle("POST "+p+"/authz/{id}", s.adapt(s.authz))
	mux.Handle("POST "+p+"/chall/{id}", s.adapt(s.challenge))
	mux.Handle("POST "+p+"/cert/{serial}", s.adapt(s.certificate))
	mux.Handle("POST "+p+"/revoke-cert", s.adapt(s.revokeCert))
	mux.Handle(p+"/", s.adapt(func(w http.ResponseWriter, r *http.Request) error {
		// The catch-all matches every method, so ServeMux never answers
		// 405 by itself: a known path with another method is told which
		// methods it has (RFC 9110 §15.5.6).
		if allow := httpstatus.Allowed(mux, r, p+"/"); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return Malformed("method %s is not allowed here (allowed: %s)", r.Method,
				strings.Join(allow, ", ")).WithStatus(http.StatusMethodNotAllowed)
		}
		return Malformed("no such resource").WithStatus(http.StatusNotFound)
	}))
	return mux
}

// adapt applies the rules every ACME response follows (RFC 8555 §6): a
// fresh Replay-Nonce, the index link, no caching, a body limit, and errors
// as problem documents, whose type and detail go to the request's log
// line (the request-log middleware). GET routes answer HEAD too (net/http
// does).
func (s *Server) adapt(h handler) http.Handler {
	log := reqlog.Config{Surface: "acme", Logger: s.log, Clock: s.clk}
	return reqlog.Handler(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Add("Link", link(s.url(r, "/directory"), "index"))
		if nonce, err := s.nonces.New(); err == nil {
			w.Header().Set("Replay-Nonce", nonce)
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		if err := h(w, r); err != nil {
			p := FromError(err)
			if p.Status >= 500 {
				reqlog.From(r.Context()).Fail(err)
			}
			reqlog.From(r.Context()).Refused(problemAttrs(p)...)
			p.Write(w)
		}
	}))
}

func link(url, rel string) string { return fmt.Sprintf("<%s>;rel=%q", url, rel) }

// url builds an absolute URL on this endpoint from the request's host: the
// JWS "url" header must match it exactly (RFC 8555 §6.4).
func (s *Server) url(r *http.Request, path string) string {
	return "https://" + r.Host + s.prefix + path
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (s *Server) directory(w http.ResponseWriter, r *http.Request) error {
	meta := map[string]any{"profiles": s.profiles(), "externalAccountRequired": s.cfg.RequireEAB}
	if s.cfg.TermsOfService != "" {
		meta["termsOfService"] = s.cfg.TermsOfService
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"newNonce":    s.url(r, "/new-nonce"),
		"newAccount":  s.url(r, "/new-account"),
		"newOrder":    s.url(r, "/new-order"),
		"revokeCert":  s.url(r, "/revoke-cert"),
		"keyChange":   s.url(r, "/key-change"),
		"renewalInfo": s.url(r, "/renewal-info"),
		"meta":        meta,
	})
}

// newNonce: RFC 8555 §7.2 — 200 for HEAD, 204 for GET; the adapter set the nonce.
func (s *Server) newNonce(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// post is a verified JWS request and the account that signed it (nil for
// jwk-signed requests).
type post struct {
	jws     *JWS
	account *store.ACMEAccount
	key     *jose.JSONWebKey
}

// readPost parses and verifies a JWS POST. allowJWK permits the jwk header
// (newAccount, revokeCert); everything else must name its account by kid.
func (s *Server) readPost(r *http.Request, allowJWK bool) (*post, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Malformed("request body larger than %d bytes", mbe.Limit).WithStatus(http.StatusRequestEntityTooLarge)
		}
		return nil, Malformed("cannot read request body")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/jose+json" {
		return nil, Malformed("Content-Type must be application/jose+json").WithStatus(http.StatusUnsupportedMediaType)
	}
	j, err := ParseJWS(body)
	if err != nil {
		return nil, err
	}
	if want := "https://" + r.Host + r.URL.RequestURI(); j.URL != want {
		return nil, Unauthorized(fmt.Sprintf("JWS url %q does not match the request URL %q", j.URL, want))
	}
	expires, err := s.nonces.check(j.Nonce)
	if err != nil {
		return nil, err
	}
	p := &post{jws: j}
	switch {
	case j.JWK != nil:
		if !allowJWK {
			return nil, Malformed("this resource requires a kid, not a jwk")
		}
		p.key = j.JWK
	default:
		id, ok := strings.CutPrefix(j.KID, s.url(r, "/acct/"))
		if !ok || id == "" {
			return nil, AccountDoesNotExist("kid is not an account URL of this server")
		}
		acct, err := s.st.ACMEAccount(r.Context(), id)
		// An account exists only on the endpoint it was created on (and
		// bound, or not, by that endpoint's rules): anywhere else it is
		// unknown, with the same answer as an id never issued.
		if errors.Is(err, store.ErrNotFound) || err == nil && acct.Endpoint != s.cfg.Name {
			return nil, AccountDoesNotExist("no such account")
		}
		if err != nil {
			return nil, fmt.Errorf("load account: %w", err)
		}
		if acct.Status != store.ACMEValid {
			return nil, Unauthorized("account is " + acct.Status)
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(acct.KeyJWK, &key); err != nil {
			return nil, fmt.Errorf("account key: %w", err)
		}
		p.account, p.key = &acct, &key
	}
	if err := j.Verify(p.key); err != nil {
		return nil, err
	}
	// Spent only now: a request nobody signed leaves no row behind.
	if err := s.nonces.spend(r.Context(), j.Nonce, expires); err != nil {
		return nil, err
	}
	return p, nil
}

// accountView is the account object (RFC 8555 §7.1.2).
type accountView struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact,omitempty"`
	Orders  string   `json:"orders"`
	TOS     bool     `json:"termsOfServiceAgreed,omitempty"`
}

func (s *Server) view(r *http.Request, a store.ACMEAccount) accountView {
	return accountView{Status: a.Status, Contact: a.Contacts, Orders: s.url(r, "/acct/"+a.ID+"/orders"), TOS: a.TermsAgreed}
}

type newAccountReq struct {
	Contact            []string        `json:"contact"`
	TermsAgreed        bool            `json:"termsOfServiceAgreed"`
	OnlyReturnExisting bool            `json:"onlyReturnExisting"`
	EAB                json.RawMessage `json:"externalAccountBinding"`
}

func (s *Server) newAccount(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, true)
	if err != nil {
		return err
	}
	var req newAccountReq
	if err := decodePayload(p.jws.Payload, &req); err != nil {
		return err
	}
	thumb, err := Thumbprint(p.key)
	if err != nil {
		return Malformed("bad account key")
	}
	existing, err := s.st.ACMEAccountByKey(r.Context(), s.cfg.Name, thumb)
	switch {
	case err == nil:
		// RFC 8555 §7.3.6: a deactivated account's key authorizes nothing.
		if existing.Status != store.ACMEValid {
			return Unauthorized("account is " + existing.Status)
		}
		// RFC 8555 §7.3.1: the existing account, 200, Location.
		w.Header().Set("Location", s.url(r, "/acct/"+existing.ID))
		return writeJSON(w, http.StatusOK, s.view(r, existing))
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("find account: %w", err)
	case req.OnlyReturnExisting:
		return AccountDoesNotExist("no account for this key")
	}
	if err := s.perIP.allow(clientKey(r), s.clk.Now()); err != nil {
		return err
	}
	if s.cfg.TermsOfService != "" && !req.TermsAgreed {
		return Malformed("the terms of service must be agreed to")
	}
	if err := checkContacts(req.Contact); err != nil {
		return err
	}
	if err := s.checkAccountKey(r.Context(), p.key); err != nil {
		return err
	}
	var eab eabBinding
	switch hasEAB := len(req.EAB) > 0 && string(req.EAB) != "null"; {
	case hasEAB:
		if eab, err = s.verifyEAB(r.Context(), req.EAB, p, s.url(r, "/new-account")); err != nil {
			return err
		}
	case s.cfg.RequireEAB:
		return ExternalAccountRequired("this ACME endpoint requires an external account binding; ask the CA operator for a key id and HMAC key")
	}
	keyJSON, err := json.Marshal(p.key.Public())
	if err != nil {
		return Malformed("bad account key")
	}
	id, err := randomID()
	if err != nil {
		return err
	}
	now := s.clk.Now().UTC()
	acct := store.ACMEAccount{ID: id, Endpoint: s.cfg.Name, KeyThumbprint: thumb, KeyJWK: keyJSON, Status: store.ACMEValid,
		Contacts: req.Contact, TermsAgreed: req.TermsAgreed, Requester: "acme:" + id, Created: now}
	if eab.keyID != "" {
		acct.EABKeyID, acct.Requester = eab.keyID, eab.requester
	}
	eabUsed := false
	err = update(r.Context(), s.st, func(tx Tx) error {
		if eab.keyID != "" {
			// A concurrent newAccount with the same binding loses here.
			if err := tx.MarkEABKeyUsed(eab.keyID, now); errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrNotFound) {
				eabUsed = true
				return err
			} else if err != nil {
				return err
			}
		}
		if err := tx.InsertACMEAccount(acct); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: "acme:" + id, Action: audit.ActionACMEAccountCreated, Target: id,
			Detail: map[string]string{"endpoint": s.cfg.Name, "thumbprint": thumb, "contacts": strings.Join(req.Contact, ","),
				"eab_key": acct.EABKeyID, "requester": acct.Requester}})
		return err
	})
	if eabUsed {
		return Unauthorized(fmt.Sprintf("external account key id %q is already bound to an account", eab.keyID))
	}
	if errors.Is(err, store.ErrDuplicate) {
		// A concurrent newAccount with the same key won: return it.
		existing, ferr := s.st.ACMEAccountByKey(r.Context(), s.cfg.Name, thumb)
		if ferr != nil {
			return fmt.Errorf("find account: %w", ferr)
		}
		w.Header().Set("Location", s.url(r, "/acct/"+existing.ID))
		return writeJSON(w, http.StatusOK, s.view(r, existing))
	}
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	w.Header().Set("Location", s.url(r, "/acct/"+id))
	return writeJSON(w, http.StatusCreated, s.view(r, acct))
}

type accountUpdate struct {
	Contact []string `json:"contact"`
	Status  string   `json:"status"`
}

// account serves POST-as-GET, contact updates and deactivation (§7.3.2, §7.3.6).
func (s *Server) account(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	if p.account.ID != r.PathValue("id") {
		return Unauthorized("an account may only read or change itself")
	}
	acct := *p.account
	if len(p.jws.Payload) == 0 { // POST-as-GET
		return writeJSON(w, http.StatusOK, s.view(r, acct))
	}
	var up accountUpdate
	if err := decodePayload(p.jws.Payload, &up); err != nil {
		return err
	}
	var action string
	switch {
	case up.Status == store.ACMEDeactivated:
		acct.Status, action = store.ACMEDeactivated, audit.ActionACMEAccountDeactivated
	case up.Status != "":
		return Malformed("status may only be set to deactivated")
	case up.Contact != nil:
		if err := checkContacts(up.Contact); err != nil {
			return err
		}
		acct.Contacts, action = up.Contact, audit.ActionACMEAccountUpdated
	default:
		return writeJSON(w, http.StatusOK, s.view(r, acct))
	}
	now := s.clk.Now().UTC()
	err = update(r.Context(), s.st, func(tx Tx) error {
		if err := tx.UpdateACMEAccount(acct); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Event{Time: now, Actor: "acme:" + acct.ID, Action: action, Target: acct.ID,
			Detail: map[string]string{"contacts": strings.Join(acct.Contacts, ","), "status": acct.Status}})
		return err
	})
	if err != nil {
		return fmt.Errorf("update account: %w", err)
	}
	return writeJSON(w, http.StatusOK, s.view(r, acct))
}

// decodePayload reads a JSON object payload strictly enough to refuse junk
// but tolerant of fields from newer clients (RFC 8555 §7: ignore unknown).
func decodePayload(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return Malformed("payload is not the expected JSON object: %v", err)
	}
	return nil
}

// checkContacts accepts mailto: URIs only (RFC 8555 §7.3), with one address each.
func checkContacts(contacts []string) error {
	if len(contacts) > 10 {
		return InvalidContact("at most 10 contacts")
	}
	for _, c := range contacts {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return UnsupportedContact(fmt.Sprintf("contact %q is not a mailto: URI", c))
		}
		if addr == "" || strings.ContainsAny(addr, ",?") || !strings.Contains(addr, "@") {
			return InvalidContact(fmt.Sprintf("contact %q is not one email address", c))
		}
	}
	return nil
}

func randomID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// profiles lists the profiles newOrder may name, the default included.
func (s *Server) profiles() map[string]string {
	out := map[string]string{s.cfg.Profile: "default"}
	for name, desc := range s.cfg.Profiles {
		if name == s.cfg.Profile && desc == "" {
			continue
		}
		out[name] = desc
	}
	return out
}

// clientIP is the address a request came from (no proxy headers are trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
