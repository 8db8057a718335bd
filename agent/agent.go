package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/api/client"
)

// Config configures an Agent.
type Config struct {
	// Server is the base URL of Sigil's HTTPS listener.
	Server string
	// RootCAs verifies the server and every certificate the agent writes;
	// nil: the system roots.
	RootCAs *x509.CertPool
	// CertFile gets the chain (leaf first), KeyFile the PKCS#8 key. The same
	// path for both keeps key and chain in one file (mode 0600).
	CertFile, KeyFile string
	// Managed names a CA-managed certificate: its bundle (chain and key) is
	// fetched from /v1/managed/{Managed}/bundle instead of renewing over
	// mTLS, and the files need not exist at start.
	Managed string
	// Token, if set, authenticates bundle fetches as a bearer token (the
	// current pair is presented too, when there is one).
	Token Secret
	// Rekey generates a new key of the same type at every mTLS renewal.
	Rekey bool
	// Exec is run with sh -c after each write, with SIGIL_CERT_FILE,
	// SIGIL_KEY_FILE, SIGIL_SERIAL and SIGIL_NOT_AFTER in its environment;
	// its failure is logged, not fatal.
	Exec string
	// ExecTimeout bounds Exec (default 5m).
	ExecTimeout time.Duration
	// RenewAt is the fraction of the lifetime after which the certificate
	// is due when there is no ARI window (default 2/3; 0 < RenewAt < 1).
	RenewAt float64
	// ARI asks ACMEDirectory's renewalInfo (RFC 9773) when to renew.
	ARI bool
	// ACMEDirectory defaults to Server + "/acme/directory".
	ACMEDirectory string
	// RetryMin and RetryMax bound the backoff after a failure (defaults
	// 2s and 15m).
	RetryMin, RetryMax time.Duration
	// MaxSleep caps a wait, so that files replaced by someone else and a
	// suspended machine's lost time are noticed (default 1h).
	MaxSleep time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
}

// Agent keeps one certificate and key fresh. Its methods are not meant to
// run concurrently with each other.
type Agent struct {
	cfg    Config
	clk    clockwork.Clock
	log    *slog.Logger
	files  files
	http   *http.Client                      // ACME directory and renewalInfo
	v1     *client.Client                    // /v1 over the same connections
	jitter func(time.Duration) time.Duration // uniform in [0, d]; tests replace it

	mu     sync.Mutex
	cur    *tls.Certificate // presented as the client certificate
	ariURL string
	ari    ariState
	// managedVersion is the last bundle version written by this process.
	managedVersion int
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Clock == nil || cfg.Logger == nil {
		return nil, errors.New("agent: clock and logger are required")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("agent: server %q must be an https:// URL", cfg.Server)
	}
	cfg.Server = strings.TrimRight(cfg.Server, "/")
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("agent: certificate and key files are required")
	}
	if cfg.RenewAt == 0 {
		cfg.RenewAt = 2.0 / 3
	}
	if cfg.RenewAt <= 0 || cfg.RenewAt >= 1 {
		return nil, fmt.Errorf("agent: renew-at %v must be between 0 and 1 (a fraction of the lifetime)", cfg.RenewAt)
	}
	if cfg.ACMEDirectory == "" {
		cfg.ACMEDirectory = cfg.Server + "/acme/directory"
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 15 * time.Minute
	}
	if cfg.RetryMax < cfg.RetryMin {
		return nil, fmt.Errorf("agent: retry maximum %v is below the minimum %v", cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.MaxSleep <= 0 {
		cfg.MaxSleep = time.Hour
	}
	if cfg.ExecTimeout <= 0 {
		cfg.ExecTimeout = 5 * time.Minute
	}
	a := &Agent{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, files: files{cert: cfg.CertFile, key: cfg.KeyFile}, jitter: uniform}
	a.http = newHTTPClient(cfg.RootCAs, a.clientCertificate, a.clk.Now)
	// The token authenticates bundle fetches only; a renewal over mTLS
	// never carries it.
	token := cfg.Token
	if cfg.Managed == "" {
		token = ""
	}
	if a.v1, err = newV1Client(cfg.Server, token, a.http); err != nil {
		return nil, err
	}
	return a, nil
}

// load reads the pair from disk (after finishing or discarding a key
// change a crash interrupted) and makes it the client certificate. In
// managed mode, missing files are no error: cur is nil.
func (a *Agent) load(ctx context.Context) (*tls.Certificate, error) {
	if did, err := a.files.recoverPair(); err != nil {
		return nil, err
	} else if did != "" {
		a.log.WarnContext(ctx, did, "cert_file", a.cfg.CertFile, "key_file", a.cfg.KeyFile)
	}
	cur, err := a.files.load()
	if err != nil {
		if a.cfg.Managed != "" && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	a.mu.Lock()
	a.cur = cur
	a.mu.Unlock()
	return cur, nil
}

// decision is what to do next.
type decision struct {
	at     time.Time // act at this time
	reason string
	plan   plan
}

// decide loads the pair and plans the next renewal.
func (a *Agent) decide(ctx context.Context) (*tls.Certificate, decision, error) {
	cur, err := a.load(ctx)
	if err != nil {
		return nil, decision{}, err
	}
	if cur == nil {
		return nil, decision{at: a.clk.Now(), reason: "no certificate on disk yet"}, nil
	}
	p := a.schedule(ctx, cur.Leaf)
	d := decision{at: p.due, reason: "renewal due (" + p.source + ")", plan: p}
	if !p.recheck.IsZero() && p.recheck.Before(d.at) {
		d.at, d.reason = p.recheck, "ask the server for renewal information again"
	}
	return cur, d, nil
}

// act renews (or fetches the managed bundle), writes and runs the hook.
func (a *Agent) act(ctx context.Context, cur *tls.Certificate) error {
	var r renewed
	var err error
	if a.cfg.Managed != "" {
		r, err = a.fetchManaged(ctx, cur)
	} else {
		r, err = a.renewMTLS(ctx, cur)
	}
	if err != nil {
		return err
	}
	attrs := []any{"serial", serialHex(r.leaf), "not_after", r.leaf.NotAfter.UTC(), "key_changed", r.keyChanged,
		"cert_file", a.cfg.CertFile}
	if cur != nil {
		attrs = append(attrs, "replaces", serialHex(cur.Leaf))
	}
	a.log.InfoContext(ctx, "certificate renewed", attrs...)
	if _, err := a.load(ctx); err != nil {
		// Written files that do not load are a bug, not a retryable failure;
		// report it loudly but let the loop carry on with what is there.
		a.log.ErrorContext(ctx, "the files just written do not load", "error", err)
	}
	a.runHook(ctx, r.leaf)
	return nil
}

// runHook runs Exec; its failure is logged only.
func (a *Agent) runHook(ctx context.Context, leaf *x509.Certificate) {
	if a.cfg.Exec == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", a.cfg.Exec)
	cmd.Env = append(os.Environ(), "SIGIL_CERT_FILE="+a.cfg.CertFile, "SIGIL_KEY_FILE="+a.cfg.KeyFile,
		"SIGIL_SERIAL="+serialHex(leaf), "SIGIL_NOT_AFTER="+leaf.NotAfter.UTC().Format(time.RFC3339))
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out[:min(len(out), 4096)]))
	if err != nil {
		a.log.WarnContext(ctx, "exec hook failed; the new certificate is in place", "exec", a.cfg.Exec, "error", err, "output", text)
		return
	}
	a.log.InfoContext(ctx, "exec hook ran", "exec", a.cfg.Exec, "output", text)
}

// Once renews if the certificate is due, or if force is set, and returns.
// It returns nil when nothing was due, when it renewed, and in managed
// mode when the CA has not renewed the certificate yet.
func (a *Agent) Once(ctx context.Context, force bool) error {
	cur, d, err := a.decide(ctx)
	if err != nil {
		return err
	}
	now := a.clk.Now()
	if !force && cur != nil && d.plan.due.After(now) {
		a.log.InfoContext(ctx, "certificate not due for renewal", "serial", serialHex(cur.Leaf),
			"not_after", cur.Leaf.NotAfter.UTC(), "due", d.plan.due.UTC(), "source", d.plan.source)
		return nil
	}
	err = a.act(ctx, cur)
	if errors.Is(err, errNotNewer) {
		a.log.InfoContext(ctx, "nothing to do", "reason", err.Error())
		return nil
	}
	return err
}

// Run keeps the certificate fresh until ctx ends: it sleeps until the
// renewal point (waking at least every MaxSleep to re-read the files and
// re-plan), renews, and retries failures with exponential backoff and full
// jitter. It never removes or overwrites a working certificate on
// failure. With force it renews at once first. It returns an error only
// if the pair cannot be loaded at start (outside managed mode).
func (a *Agent) Run(ctx context.Context, force bool) error {
	if _, err := a.load(ctx); err != nil {
		return err
	}
	var failures, loadFailures int
	var retryAt, logged time.Time
	// The jitter is read here, not in New, so that a test can replace it first.
	renewWaits := newRetryWaits(a.cfg.RetryMin, a.cfg.RetryMax, a.clk, a.jitter)
	loadWaits := newRetryWaits(a.cfg.RetryMin, a.cfg.RetryMax, a.clk, a.jitter)
	for {
		cur, d, err := a.decide(ctx)
		now := a.clk.Now()
		if err != nil {
			// The files vanished or broke under us: look again later.
			loadFailures++
			wait := loadWaits.next()
			a.log.ErrorContext(ctx, "cannot load the certificate", "error", err, "attempt", loadFailures,
				"next_check", now.Add(wait).UTC())
			if !a.sleep(ctx, wait) {
				return nil
			}
			continue
		}
		if loadFailures > 0 {
			loadFailures = 0
			loadWaits.reset()
		}
		due := force || cur == nil || !d.plan.due.After(now)
		switch {
		case !due:
			// Someone put a fresh certificate in place.
			failures, retryAt = 0, time.Time{}
			renewWaits.reset()
		case force:
			d.at, d.reason = now, "forced"
		case !retryAt.IsZero():
			d.at, d.reason = retryAt, "retry after a failure"
		default:
			d.at = now
		}
		if wait := d.at.Sub(now); wait > 0 {
			if !d.at.Equal(logged) {
				logged = d.at
				attrs := []any{"next_check", d.at.UTC(), "reason", d.reason}
				if cur != nil {
					attrs = append(attrs, "serial", serialHex(cur.Leaf), "not_after", cur.Leaf.NotAfter.UTC(),
						"due", d.plan.due.UTC(), "source", d.plan.source)
				}
				a.log.InfoContext(ctx, "waiting", attrs...)
			}
			if !a.sleep(ctx, min(wait, a.cfg.MaxSleep)) {
				return nil
			}
			continue // re-plan: ARI may have moved, the files may have changed
		}
		force = false
		err = a.act(ctx, cur)
		switch {
		case err == nil:
			failures, retryAt = 0, time.Time{}
			renewWaits.reset()
		case ctx.Err() != nil:
			return nil
		default:
			failures++
			retryAt = a.clk.Now().Add(renewWaits.next())
			level := slog.LevelWarn
			if errors.Is(err, errNotNewer) {
				level = slog.LevelInfo
			}
			a.log.Log(ctx, level, "renewal failed; the current certificate stays in place", "error", err,
				"attempt", failures, "next_check", retryAt.UTC())
		}
	}
}

// sleep waits d on the agent's clock; false if ctx ended first.
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := a.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}
