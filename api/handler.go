package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/httpstatus"
	"github.com/sigil-ca/sigil/internal/reqlog"
)

// Config configures the API handler.
type Config struct {
	// MaxBodyBytes bounds request bodies (default 256 KiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	Clock        clockwork.Clock
	// CreateEAB, if set, serves POST /v1/acme/eab: it creates an ACME
	// external account binding key for an endpoint and returns the key id,
	// the HMAC key (shown once) and the requester identity it binds.
	CreateEAB func(ctx context.Context, actor, endpoint, requester string) (keyID string, hmacKey []byte, boundRequester string, err error)
	// Jobs, if set, serves /v1/jobs: the scheduled jobs, their runs, and
	// running one now.
	Jobs Jobs
	// Managed, if set, serves /v1/managed (managed certificates and their
	// bundles) and tokens of role managed.
	Managed Managed
	// Intermediates, if set, serves /v1/ca/intermediates: the list, and a
	// rotation by hand.
	Intermediates Intermediates
	// Log, if set, serves /v1/log: the transparency log's signed tree
	// heads, proofs and entries (ca.Authority.Log).
	Log TransparencyLog
}

// API is the /v1 handler. Each handler group holds only its view of the
// authority (views.go).
type API struct {
	gate    Gate
	tokens  TokenAdmin
	issuer  Issuer
	renewal Renewal
	auditor Auditor
	admin   Admin
	tlog    TransparencyLog
	cfg     Config
	log     *slog.Logger
	clk     clockwork.Clock
}

// WithDefaults returns c with every unset field at its default, as New
// uses it; callers that show the defaults read them here.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 256 << 10
	}
	return c
}

// New checks cfg and returns the API over the authority a and its gate
// access.
func New(cfg Config, a Authority, access Access) (*API, error) {
	if a == nil || access == nil || cfg.Logger == nil || cfg.Clock == nil {
		return nil, errors.New("api: authority, access, logger and clock are required")
	}
	cfg = cfg.WithDefaults()
	return &API{gate: access, tokens: access, issuer: a, renewal: a, auditor: a, admin: a, tlog: cfg.Log, cfg: cfg, log: cfg.Logger, clk: cfg.Clock}, nil
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, p ca.Principal) error

// Route is one /v1 endpoint as Handler registers it.
type Route struct {
	// Pattern is the http.ServeMux pattern, method included, such as
	// "GET /v1/certificates/{serial}".
	Pattern string
	// Roles are the token roles the adapter admits before the handler
	// runs; nil means no role check there: the handler authenticates
	// itself (POST /v1/renew by client certificate, managed bundles).
	Roles []string
	// Params are the query parameters the endpoint takes (queryParams);
	// any other is refused with 400 before the handler runs.
	Params []string
}

type route struct {
	Route
	h handlerFunc
}

// Routes lists every endpoint Handler serves with this configuration, in
// registration order, so that tests can cover the whole API: an endpoint
// added to Handler appears here without anyone listing it twice.
func (api *API) Routes() []Route {
	var out []Route
	for _, rt := range api.routes() {
		out = append(out, rt.Route)
	}
	return out
}

// routes is the route table Handler mounts.
func (api *API) routes() []route {
	var out []route
	add := func(pattern string, h handlerFunc, roles ...string) {
		out = append(out, route{Route{Pattern: pattern, Roles: roles, Params: queryParams(pattern)}, h})
	}
	add("POST /v1/sign", api.sign, ca.RoleAdmin, ca.RoleIssuer)
	// The client certificate, not a token, authenticates a renewal.
	add("POST /v1/renew", api.renew)
	add("GET /v1/certificates", api.listCertificates, ca.RoleAdmin, ca.RoleAuditor, ca.RoleIssuer)
	add("GET /v1/certificates/summary", api.summarizeCertificates, ca.RoleAdmin, ca.RoleAuditor, ca.RoleIssuer)
	// ServeMux prefers this to the {serial} pattern: it is more specific.
	add("GET /v1/certificates/export", api.exportCertificates, ca.RoleAdmin, ca.RoleAuditor, ca.RoleIssuer)
	add("GET /v1/certificates/{serial}", api.getCertificate, ca.RoleAdmin, ca.RoleAuditor, ca.RoleIssuer)
	add("POST /v1/revoke", api.revoke, ca.RoleAdmin, ca.RoleIssuer)
	add("POST /v1/certificates/revoke", api.bulkRevoke, ca.RoleAdmin)
	add("POST /v1/unhold", api.unhold, ca.RoleAdmin)
	add("GET /v1/audit", api.listAudit, ca.RoleAdmin, ca.RoleAuditor)
	add("GET /v1/audit/export", api.exportAudit, ca.RoleAdmin, ca.RoleAuditor)
	add("GET /v1/keys", api.listKeys, ca.RoleAdmin, ca.RoleAuditor)
	add("GET /v1/keys/{id}/attestation", api.showKey, ca.RoleAdmin, ca.RoleAuditor)
	if api.cfg.Log != nil {
		api.logRoutes(add)
	}
	add("POST /v1/keys/rewrap", api.rewrap, ca.RoleAdmin)
	add("POST /v1/keys/block", api.blockKey, ca.RoleAdmin)
	add("GET /v1/tokens", api.listTokens, ca.RoleAdmin)
	add("POST /v1/tokens", api.createToken, ca.RoleAdmin)
	add("DELETE /v1/tokens/{id}", api.revokeToken, ca.RoleAdmin)
	if api.cfg.CreateEAB != nil {
		add("POST /v1/acme/eab", api.createEAB, ca.RoleAdmin)
	}
	if api.cfg.Jobs != nil {
		add("GET /v1/jobs", api.listJobs, ca.RoleAdmin, ca.RoleAuditor)
		add("GET /v1/jobs/{name}", api.getJob, ca.RoleAdmin, ca.RoleAuditor)
		add("POST /v1/jobs/{name}/run", api.runJob, ca.RoleAdmin)
	}
	if api.cfg.Managed != nil {
		api.managedRoutes(add)
	}
	if api.cfg.Intermediates != nil {
		add("GET /v1/ca/intermediates", api.listIntermediates, ca.RoleAdmin, ca.RoleAuditor)
		add("POST /v1/ca/intermediates/rotate", api.rotateIntermediate, ca.RoleAdmin)
	}
	return out
}

// Handler returns the /v1 routes.
func (api *API) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range api.routes() {
		mux.Handle(rt.Pattern, api.adapt(onlyQuery(rt.Params, rt.h), rt.Roles))
	}
	mux.Handle("/v1/", api.adapt(func(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
		if allow := httpstatus.Allowed(mux, r, "/v1/"); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			body := ErrorResponse{Error: "method_not_allowed",
				Detail: fmt.Sprintf("method %s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", "))}
			reqlog.From(r.Context()).Refused("reason", body.Error, "detail", body.Detail)
			writeJSON(w, http.StatusMethodNotAllowed, body)
			return nil
		}
		return &ca.Error{Kind: ca.NotFound, Detail: "no such endpoint"}
	}, nil))
	return mux
}

// adapt authenticates, limits the body, runs h and renders its error, in
// the request-log middleware: the line gets the actor, the reason of a
// refusal and an internal failure.
func (api *API) adapt(h handlerFunc, roles []string) http.Handler {
	log := reqlog.Config{Surface: "v1", Logger: api.log, Clock: api.clk, IDHeader: "X-Request-Id"}
	return reqlog.Handler(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, api.cfg.MaxBodyBytes)
		var p ca.Principal
		err := func() error {
			if roles == nil {
				return nil
			}
			tok, ok := bearer(r)
			if !ok {
				err := &ca.Error{Kind: ca.Unauthorized, Detail: "missing bearer token"}
				api.refuseUnauthenticated(r, "", err)
				return err
			}
			var err error
			p, err = api.gate.Authenticate(ctx, tok)
			if err != nil {
				api.refuseUnauthenticated(r, tok, err)
				return err
			}
			for _, role := range roles {
				if p.Role == role {
					return api.recordRead(ctx, r, p)
				}
			}
			err = &ca.Error{Kind: ca.Forbidden, Detail: fmt.Sprintf("role %s may not call this endpoint", p.Role)}
			api.gate.RecordAccessRefusal(ctx, p.Actor(), r.Method, r.URL.Path, err)
			return err
		}()
		if p.TokenID != "" {
			reqlog.From(ctx).SetActor(p.Actor())
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			api.renderError(w, r, err)
		}
	}))
}

// refuseUnauthenticated counts a request refused because its token (tok,
// possibly empty) did not authenticate: a metric, a rate-limited log line
// and a per-source summary, never an audit event per request (issue 15).
// A failure to check the token (Internal) is not a refusal.
func (api *API) refuseUnauthenticated(r *http.Request, tok string, err error) {
	if ca.KindOf(err) != ca.Unauthorized {
		return
	}
	id, _ := ca.TokenID(tok)
	api.gate.RecordUnauthenticatedRefusal(r.Context(), ca.UnauthenticatedRefusal{Surface: "api", Source: clientAddr(r),
		Method: r.Method, Path: r.URL.Path, TokenID: id, Err: err})
}

// clientAddr is the host part of the request's remote address.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// recordRead audits a read by an auditor token (who looked at what, issue
// 8) before it is answered: a read that cannot be recorded is refused. Only
// auditors are recorded: admin and issuer reads serve operations, and every
// admin change is audited already. The cost is one audit append sharing the
// store's group commit with concurrent writes (see README, Auditor web page).
func (api *API) recordRead(ctx context.Context, r *http.Request, p ca.Principal) error {
	if p.Role != ca.RoleAuditor || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return nil
	}
	return api.gate.RecordRead(ctx, p.Actor(), r.Method, r.URL.Path, r.URL.RawQuery)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	// RFC 9110 §11.1: the auth-scheme is case-insensitive.
	const scheme = "Bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	if tok == "" {
		return "", false
	}
	return tok, true
}

func (api *API) renderError(w http.ResponseWriter, r *http.Request, err error) {
	body := ErrorResponse{Error: ca.Internal.String(), Detail: "internal error"}
	if ce, ok := ca.AsError(err); ok && ce.Kind != ca.Internal {
		body = ErrorResponse{Error: ce.Kind.String(), Detail: ce.Detail}
		for _, s := range ce.Sub {
			body.Subproblems = append(body.Subproblems, Subproblem{Identifier: s.Identifier, Error: s.Kind.String(), Detail: s.Detail})
		}
		if ce.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(ce.RetryAfter.Seconds()+0.5)))
		}
	}
	if body.Error == ca.Internal.String() {
		reqlog.From(r.Context()).Fail(err)
		if id := reqlog.ID(r.Context()); id != "" {
			body.Detail = "internal error (request " + id + ")"
		}
	} else {
		reqlog.From(r.Context()).Refused("reason", body.Error, "detail", body.Detail)
	}
	writeJSON(w, status(ca.KindOf(err)), body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads one JSON object, refusing unknown fields and trailing data.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &ca.Error{Kind: ca.Malformed, Detail: "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	return checkEOF(dec)
}

// checkEOF refuses anything but white space after the first JSON value;
// dec.More alone lets a stray '}' or ']' through.
func checkEOF(dec *json.Decoder) error {
	_, err := dec.Token()
	if err == io.EOF {
		return nil
	}
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return bodyError(err)
	}
	return &ca.Error{Kind: ca.Malformed, Detail: "invalid JSON body: trailing data"}
}

// bodyError classifies a failure to read a JSON body: over the size limit
// (413), or malformed (400).
func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return &ca.Error{Kind: ca.TooLarge, Detail: fmt.Sprintf("request body larger than %d bytes", maxErr.Limit)}
	}
	return &ca.Error{Kind: ca.Malformed, Detail: "invalid JSON body: " + err.Error()}
}
