package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigil-ca/sigil/acme"
	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/audit/witness"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/lifecycle"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/revocation"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/ui"
)

// server is one running CA: the store, the authority and both listeners.
type server struct {
	keys    *keybackend.Keys // HSM and KMS keys, opened on first use
	cfg     *Config
	log     *slog.Logger
	st      backend
	auth    *ca.Authority
	managed *managed.Service
	serving *ca.ServingCert
	acme    acme.Endpoints
	ocsp    *revocation.Responder
	crl     *revocation.Publisher
	jobs    *lifecycle.Scheduler
	// closeElector gives up the job runner's lead, stopWatch stops
	// listening for other nodes' revocations (PostgreSQL only).
	closeElector, stopWatch func()
	rootCRL                 *revocation.OfflineCRLs
	https                   *http.Server
	http                    *http.Server
	httpsLn                 net.Listener
	httpLn                  net.Listener
	// stopRefusals ends the loop that writes the summaries of
	// unauthenticated refusals to the audit log, after a last flush.
	stopRefusals func()
	witness      *witness.Publisher
}

func newLogger(w io.Writer, cfg LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startServer opens the database, unlocks the keystore (with the
// passphrase readPass returns, asked only when the KEK is derived from one;
// a KEK in KMS opens through the key backends) and starts listening.
// fastKDF is for sigil dev only.
func startServer(ctx context.Context, cfg *Config, readPass func() ([]byte, error), log *slog.Logger, fastKDF bool) (*server, error) {
	clk := cfg.clock
	if clk == nil {
		clk = clockwork.NewRealClock()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := ca.NewMetrics(reg)
	st, err := openStore(ctx, cfg, clk, log, metrics.ObserveCommit)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &server{cfg: cfg, log: log, st: st}
	ok := false
	defer func() {
		if !ok {
			if s.ocsp != nil {
				s.ocsp.Close()
			}
			s.stopJobs()
			s.stopCRL()
			if s.stopRefusals != nil {
				s.stopRefusals()
			}
			st.Close()
			s.witness.Close()
			if s.keys != nil {
				s.keys.Close()
			}
		}
	}()
	// The tail since the newest checkpoint is checked before anything is
	// appended (unlocking keys is audited) or signed: a checkpoint over a
	// broken tail would vouch for it.
	verified, broken, err := verifyAuditTail(ctx, st, log, cfg.WitnessDir(), cfg.allowBrokenAudit)
	if err != nil {
		return nil, err
	}
	// Keys held in an HSM or KMS open through their backends, on first use.
	s.keys = newKeyBackends()
	kekBackend, err := keystore.ActiveKEKBackend(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("unlock keys: %w", err)
	}
	var passphrase []byte
	if !keystore.IsRemoteKEK(kekBackend) {
		if passphrase, err = readPass(); err != nil {
			return nil, err
		}
	}
	ks, err := keystore.UnlockWith(ctx, st, clk, passphrase, kekOpener(s.keys))
	if err != nil {
		return nil, fmt.Errorf("unlock keys: %w", err)
	}
	ks.SetBackends(s.keys)
	// kek-rotate derives new KEK versions from the passphrase: only then
	// is it kept in memory (a KEK in KMS is rotated by KMS itself).
	if _, on, err := cfg.jobSchedule("kek-rotate"); err == nil && on && passphrase != nil {
		if err := ks.EnableRotation(passphrase); err != nil {
			return nil, fmt.Errorf("kek rotation: %w", err)
		}
	}
	cp, err := ca.UnlockCheckpointer(ctx, st, ks, clk)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if s.witness, err = witness.New(witness.Config{Dir: cfg.WitnessDir(), URL: cfg.Audit.Witness.URL, Logger: log}); err != nil {
		return nil, err
	}
	if s.witness != nil {
		cp.Publish = s.witness.Publish
	}
	st.SetCheckpointer(cp)
	// After a crash the tail since the last checkpoint is unsigned; sign it
	// now so that cutting it later is detectable.
	if err := st.Checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("startup audit checkpoint: %w", err)
	}
	if s.witness != nil {
		// The newest checkpoint may predate the witness (configured since,
		// or offline): publish it so the witness starts from the present.
		if cps, err := st.Checkpoints(ctx); err == nil && len(cps) > 0 {
			s.witness.Publish(cps[len(cps)-1:], nil)
		}
	}
	if broken != nil {
		if err := st.WithTx(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(audit.Event{Time: clk.Now(), Actor: "system", Action: audit.ActionAuditBrokenAccepted,
				Target: cfg.StoreName(), Detail: map[string]string{"error": broken.Error()}})
			return err
		}); err != nil {
			return nil, fmt.Errorf("audit the broken chain: %w", err)
		}
	}
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: clk.Now(), Actor: "system", Action: audit.ActionConfigLoaded,
			Target: cfg.path, Detail: map[string]string{"sha256": cfg.sha256, "database": cfg.StoreName(),
				"profiles": strings.Join(profileNames(cfg.Profiles), ",")}})
		return err
	}); err != nil {
		return nil, fmt.Errorf("audit config load: %w", err)
	}
	s.auth, err = ca.New(ctx, ca.Config{Profiles: cfg.Profiles, BaseURL: cfg.ExternalURL, Clock: clk, Logger: log,
		Metrics: metrics, FastKDF: fastKDF, CRLShards: cfg.CRL.Shards,
		KEKs:     func(ctx context.Context, uri string) (*ca.RemoteKEK, error) { return remoteKEK(ctx, s.keys, uri) },
		Attester: s.keys}, st, ks)
	if err != nil {
		return nil, fmt.Errorf("start authority: %w", err)
	}
	if s.managed, err = managed.New(managed.Config{Clock: clk, Logger: log}, s.auth.HeldKeys(), st); err != nil {
		return nil, fmt.Errorf("managed certificates: %w", err)
	}
	refCtx, refCancel := context.WithCancel(context.WithoutCancel(ctx))
	refDone := make(chan struct{})
	go func() {
		defer close(refDone)
		s.auth.RunRefusalSummaries(refCtx)
	}()
	s.stopRefusals = func() {
		refCancel()
		<-refDone
	}
	s.serving, err = s.auth.NewServingCert(ctx, cfg.HTTPS.Names, time.Duration(cfg.HTTPS.CertValidity))
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	secure := http.NewServeMux()
	apiCfg := api.Config{MaxBodyBytes: cfg.Limits.MaxBodyBytes, Logger: log, Clock: clk, Jobs: jobsAPI{s}, Managed: s.managed,
		Intermediates: s.auth.Intermediates(), Log: s.auth.Log()}
	if cfg.ACME.On() {
		endpoints, err := newACME(ctx, cfg, st, s.auth, clk, log)
		if err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
		s.acme = endpoints
		for _, e := range endpoints {
			secure.Handle(e.Prefix()+"/", e.Handler())
		}
		apiCfg.CreateEAB = func(ctx context.Context, actor, endpoint, requester string) (string, []byte, string, error) {
			k, err := endpoints.CreateEABKey(ctx, actor, endpoint, requester)
			return k.KeyID, k.HMACKey, k.Requester, err
		}
	}
	apiHandler, err := api.New(apiCfg, s.auth, s.auth.Access())
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}

	roots := revocation.RootsHandler(s.auth.Root().Cert)
	secure.Handle("/v1/", apiHandler.Handler())
	uiHandler, err := newUI(st, s.auth, jobsAPI{s}, clk, log)
	if err != nil {
		return nil, err
	}
	secure.Handle("/ui/", uiHandler.Handler())
	secure.Handle("GET /roots.pem", roots)
	secure.HandleFunc("GET /healthz", s.healthz)
	secure.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	plain := http.NewServeMux()
	plain.Handle("GET /roots.pem", roots)
	plain.Handle("GET /issuer/{file}", revocation.IssuerHandler(s.auth))
	if err := s.startCRL(ctx, plain, st, clk, reg); err != nil {
		return nil, err
	}

	var plainHandler http.Handler
	if s.ocsp, plainHandler, err = startOCSP(ctx, cfg.OCSP, s.auth, st, clk, log, reg, plain); err != nil {
		return nil, err
	}
	if pg, ok := st.(*postgres.Store); ok {
		s.stopWatch = watchOtherNodes(pg, s.ocsp, clk, log)
	}
	if err := s.startJobs(ctx, clk, reg); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	// Client certificates are requested, never required, and not verified
	// by the TLS stack: the handlers that accept one (POST /v1/renew,
	// managed bundles) check it against the record, so that a refusal is a
	// JSON error (audited, or counted when the caller is unknown), not a
	// TLS alert.
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.serving.GetCertificate,
		ClientAuth: tls.RequestClientCert}
	s.https = newHTTPServer(secure, cfg.Limits, log)
	s.https.TLSConfig = tlsCfg
	s.http = newHTTPServer(plainHandler, cfg.Limits, log)
	if s.httpsLn, err = net.Listen("tcp", cfg.HTTPS.Addr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTPS.Addr, err)
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
		s.httpsLn.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTP.Addr, err)
	}
	go func() {
		if err := s.https.Serve(tls.NewListener(s.httpsLn, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("https listener", "error", err)
		}
	}()
	go func() {
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http listener", "error", err)
		}
	}()
	ok = true
	if broken == nil {
		// Said once the server is up: a start that fails later (a wrong
		// passphrase) stays one clear line on stderr.
		log.Info("audit chain verified since the last checkpoint", "events", verified.Events, "head", verified.Head.Seq)
	}
	return s, nil
}

// verifyAuditTail checks the audit chain since its newest checkpoint, with
// the checkpoint keys certified by the recorded root, and against the
// checkpoints in the witness directory, if one is configured. A break is an
// error, unless allow is set: then it is logged loudly and returned as
// broken, and the caller serves anyway (forensics).
func verifyAuditTail(ctx context.Context, st backend, log *slog.Logger, witnessDir string, allow bool) (rep ca.AuditReport, broken error, err error) {
	var witnessed []audit.Checkpoint
	if witnessDir != "" {
		if witnessed, _, err = witness.ReadDir(witnessDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, nil, fmt.Errorf("audit check: %w", err)
		}
	}
	var root *x509.Certificate
	issuers, err := st.Issuers(ctx)
	if err != nil {
		return rep, nil, fmt.Errorf("audit check: %w", err)
	}
	for _, is := range issuers {
		if is.Kind == ca.KindRoot && is.State == store.KeyActive {
			if root, err = x509.ParseCertificate(is.CertDER); err != nil {
				return rep, nil, fmt.Errorf("audit check: root certificate: %w", err)
			}
		}
	}
	rep, verr := ca.VerifyAuditTail(ctx, st, root, witnessed)
	if verr == nil {
		return rep, nil, nil
	}
	if !allow {
		return rep, nil, fmt.Errorf("audit chain verification failed: %w; refusing to serve (inspect with `sigil audit verify --db`; "+
			"--allow-broken-audit starts anyway, for forensics)", verr)
	}
	log.Error("!!! AUDIT CHAIN BROKEN: serving anyway because of --allow-broken-audit; do not issue from this CA until the break is explained !!!",
		"error", verr)
	return rep, verr, nil
}

// newUI builds the auditor web page. Its sessions live in this process's
// memory: a restart logs every auditor out (ui package doc).
func newUI(st backend, auth *ca.Authority, jobs ui.Jobs, clk clockwork.Clock, log *slog.Logger) (*ui.UI, error) {
	root := auth.Root().Cert
	tlog, err := ui.NewCheckedLog(auth.Log(), st, root)
	if err != nil {
		return nil, fmt.Errorf("auditor web page: %w", err)
	}
	h, err := ui.New(ui.Config{Logger: log, Clock: clk, Issuers: st, Jobs: jobs,
		// The same check as `sigil audit verify --ca-file root.pem`: the
		// checkpoint keys must be certified by this CA's root.
		VerifyAudit: func(ctx context.Context) (ca.AuditReport, error) { return ca.VerifyAudit(ctx, st, root) },
		Log:         tlog,
		Export:      api.NewExporter(auth),
	}, auth, auth.Access())
	if err != nil {
		return nil, fmt.Errorf("auditor web page: %w", err)
	}
	return h, nil
}

// newACME builds the ACME endpoints from the config: the default one ("")
// and the named ones, sharing nonces, validation and CAA checking.
func newACME(ctx context.Context, cfg *Config, st backend, auth *ca.Authority, clk clockwork.Clock, log *slog.Logger) (acme.Endpoints, error) {
	key, err := acme.LoadNonceKey(ctx, st)
	if err != nil {
		return nil, err
	}
	nonces, err := acme.NewNonces(key, 15*time.Minute, clk, st)
	if err != nil {
		return nil, err
	}
	v, err := acme.NewValidator(acme.ValidationConfig{Resolver: cfg.ACME.Resolver, HTTPPort: cfg.ACME.HTTPPort, TLSPort: cfg.ACME.TLSPort,
		RedirectHosts: cfg.ACME.Validation.RedirectHosts, AllowLinkLocal: cfg.ACME.Validation.AllowLinkLocal})
	if err != nil {
		return nil, err
	}
	caa, err := acme.NewCAAChecker(acme.CAAConfig{Identities: cfg.ACME.CAAIdentities, Resolver: cfg.ACME.Resolver})
	if err != nil {
		return nil, err
	}
	rl := acme.RateLimits{AccountsPerIP: cfg.ACME.RateLimits.AccountsPerIP, OrdersPerAccount: cfg.ACME.RateLimits.OrdersPerAccount,
		OrdersPerIP: cfg.ACME.RateLimits.OrdersPerIP, CertificatesPerDomain: cfg.ACME.RateLimits.CertificatesPerDomain}
	caaMaxAge := time.Duration(*cfg.ACME.CAAMaxAge)
	if caaMaxAge == 0 {
		caaMaxAge = -1 // acme.Config: negative checks at every finalize
	}
	reuse := time.Duration(*cfg.ACME.AuthzReuse)
	if reuse == 0 {
		reuse = -1 // acme.Config: negative turns reuse off
	}
	endpoints := map[string]ACMEEndpointConfig{"": cfg.ACME.ACMEEndpointConfig}
	for name, e := range cfg.ACME.Endpoints {
		endpoints[name] = e
	}
	out := acme.Endpoints{}
	for name, e := range endpoints {
		offered := map[string]string{}
		for _, p := range e.Profiles {
			prof := cfg.Profiles[p]
			offered[p] = fmt.Sprintf("%s, up to %s", strings.Join(prof.ExtKeyUsage, "+"), time.Duration(prof.MaxValidity))
		}
		srv, err := acme.New(acme.Config{Name: name, Profile: e.Profile, Profiles: offered, RequireEAB: e.RequireEAB,
			Names: e.Names, CAA: acme.CAAMode(e.CAA), CAAVerifier: caa, AuthzReuse: reuse, RateLimits: rl, CAAMaxAge: caaMaxAge,
			Clock: clk, Logger: log}, st, auth, v, nonces)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", name, err)
		}
		out[name] = srv
	}
	return out, nil
}

func profileNames(m map[string]ca.Profile) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func newHTTPServer(h http.Handler, l LimitsConfig, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Duration(l.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(l.ReadTimeout),
		WriteTimeout:      time.Duration(l.WriteTimeout),
		IdleTimeout:       time.Duration(l.IdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// HTTPSURL is the base URL of the TLS listener as bound.
func (s *server) HTTPSURL() string { return "https://" + s.httpsLn.Addr().String() }

// HTTPURL is the base URL of the plain listener as bound.
func (s *server) HTTPURL() string { return "http://" + s.httpLn.Addr().String() }

// shutdown drains in-flight requests, signs a final audit checkpoint and
// closes the store.
func (s *server) shutdown(ctx context.Context) error {
	errs := []error{s.https.Shutdown(ctx), s.http.Shutdown(ctx)}
	s.stopJobs()
	if s.stopWatch != nil {
		s.stopWatch()
	}
	s.stopCRL()
	for _, e := range s.acme {
		e.Close() // let running validations record their outcome
	}
	if s.ocsp != nil {
		s.ocsp.Close() // flush OCSP responses still queued for the store
	}
	s.stopRefusals() // record the refusals counted since the last summary
	if err := s.st.Checkpoint(ctx); err != nil {
		errs = append(errs, fmt.Errorf("final audit checkpoint: %w", err))
	}
	errs = append(errs, s.st.Close())
	s.witness.Close() // after the final checkpoint, so the witness has it
	errs = append(errs, s.keys.Close())
	return errors.Join(errs...)
}

// runUntilSignal serves until SIGINT or SIGTERM, then shuts down gracefully.
func (s *server) runUntilSignal() error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	got := <-sig
	s.log.Info("shutting down", "signal", got.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.shutdown(ctx)
}

// healthBody is what GET /healthz answers.
type healthBody struct {
	Status   string   `json:"status"` // ok, or unavailable when the database does not answer
	Node     string   `json:"node,omitempty"`
	Database dbHealth `json:"database"`
}

type dbHealth struct {
	Role       string  `json:"role"` // embedded, primary, standby or unreachable
	LagSeconds float64 `json:"lag_seconds,omitempty"`
}

// healthz answers for a load balancer: 200 while the database answers
// (its role and a standby's lag said), 503 when it does not. The plain
// listener (OCSP from the cache, CRLs) keeps serving either way.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	h, err := s.st.Health(ctx)
	body := healthBody{Status: "ok", Node: s.cfg.Node.Name, Database: dbHealth{Role: h.Role, LagSeconds: h.Lag.Seconds()}}
	code := http.StatusOK
	if err != nil {
		s.log.WarnContext(ctx, "health check: the database does not answer", "error", err)
		body.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
