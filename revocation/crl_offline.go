package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/store"
)

// OfflineStore is what OfflineCRLs reads. store.SQLite implements it.
type OfflineStore interface {
	// CRLs returns the latest CRL of every shard of issuerID, by shard;
	// none is an empty result, not an error.
	CRLs(ctx context.Context, issuerID string) ([]store.CRLRecord, error)
}

// OfflineConfig configures OfflineCRLs.
type OfflineConfig struct {
	// Issuers are the issuers whose CRLs are served as stored: those whose
	// key this process does not hold, such as the root, whose CRL is signed
	// offline (ca.SignRootCRL).
	Issuers []string
	// Reload is how often the stored CRLs are read again, so that one
	// signed meanwhile by another process is served (default 1m).
	Reload time.Duration
	// Warn is how long before its nextUpdate a CRL is reported due for
	// re-signing: logged as a warning and flagged by the
	// sigil_crl_offline_due metric (default 30 days).
	Warn    time.Duration
	Clock   clockwork.Clock
	Logger  *slog.Logger
	Metrics *OfflineCRLMetrics // optional
}

// OfflineCRLs serves the CRLs that other processes sign and store, such as
// the root's, at the same URLs and with the same headers as Publisher
// serves the active intermediate's, and reports those due for re-signing.
// It never signs. It is safe for concurrent use.
type OfflineCRLs struct {
	cfg     OfflineConfig
	st      OfflineStore
	clk     clockwork.Clock
	log     *slog.Logger
	metrics *OfflineCRLMetrics
	issuers map[string]bool

	mu     sync.RWMutex
	crls   map[string]map[int]published // by issuer, then shard
	warned map[string]warning           // by issuer

	bg background

	// afterReload, if set (by tests), runs after every Reload.
	afterReload func()
}

// warning is the last due-state warning logged for an issuer.
type warning struct {
	state  string
	number int64
	at     time.Time
}

// Due states of an issuer's CRL.
const (
	crlFresh   = ""
	crlDue     = "due"     // nextUpdate within Warn
	crlExpired = "expired" // nextUpdate passed
	crlMissing = "missing" // none stored
)

// warnEvery repeats a due-state warning that has not changed, so that it is
// seen without flooding the log at every reload.
const warnEvery = 24 * time.Hour

// WithDefaults returns c with every unset (zero) field at its default, as
// NewOfflineCRLs uses it; callers that show the defaults read them here.
func (c OfflineConfig) WithDefaults() OfflineConfig {
	if c.Reload == 0 {
		c.Reload = time.Minute
	}
	if c.Warn == 0 {
		c.Warn = 30 * 24 * time.Hour
	}
	return c
}

// NewOfflineCRLs checks cfg and returns a server for the CRLs of
// cfg.Issuers; Start loads them.
func NewOfflineCRLs(cfg OfflineConfig, st OfflineStore) (*OfflineCRLs, error) {
	if cfg.Clock == nil {
		return nil, errors.New("offline crls: config has no clock")
	}
	if cfg.Logger == nil {
		return nil, errors.New("offline crls: config has no logger")
	}
	cfg = cfg.WithDefaults()
	if cfg.Reload < time.Second || cfg.Warn < 0 {
		return nil, fmt.Errorf("offline crls: reload %s (at least 1s) or warn %s out of range", cfg.Reload, cfg.Warn)
	}
	o := &OfflineCRLs{cfg: cfg, st: st, clk: cfg.Clock, log: cfg.Logger, metrics: cfg.Metrics,
		issuers: map[string]bool{}, crls: map[string]map[int]published{}, warned: map[string]warning{}}
	for _, id := range cfg.Issuers {
		if id == "" || strings.ContainsAny(id, "/.") {
			return nil, fmt.Errorf("offline crls: bad issuer id %q", id)
		}
		o.issuers[id] = true
	}
	if o.metrics == nil {
		o.metrics = NewOfflineCRLMetrics(nil)
	}
	return o, nil
}

// Start loads the stored CRLs, so that they are served at once, and then
// reloads them every Reload until Stop. Only a failure to read the store
// fails it: a missing CRL is served as 404 and reported.
func (o *OfflineCRLs) Start(ctx context.Context) error {
	if err := o.Reload(ctx); err != nil {
		return err
	}
	o.bg.start(ctx, o.run)
	return nil
}

// Stop ends the reloads started by Start.
func (o *OfflineCRLs) Stop() {
	o.bg.stop()
}

func (o *OfflineCRLs) run(ctx context.Context) {
	ticker := o.clk.NewTicker(o.cfg.Reload)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.Chan():
			if err := o.Reload(ctx); err != nil {
				// The CRLs loaded before are still served; the next tick retries.
				o.log.ErrorContext(ctx, "reload stored CRLs", "error", err)
			}
		}
	}
}

// Reload reads the stored CRLs of every issuer now, serves any with a
// higher number than the one served, and reports each issuer's due state.
func (o *OfflineCRLs) Reload(ctx context.Context) error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(o.issuers)) {
		recs, err := o.st.CRLs(ctx, id)
		if err != nil {
			o.metrics.reloadFailures.Inc()
			errs = append(errs, fmt.Errorf("load crls of %s: %w", id, err))
			continue
		}
		o.mu.Lock()
		byShard := o.crls[id]
		if byShard == nil {
			byShard = map[int]published{}
			o.crls[id] = byShard
		}
		for _, r := range recs {
			// The store keeps the latest; never go back to a lower number.
			if c, ok := byShard[r.Shard]; !ok || r.Number > c.rec.Number {
				if ok {
					o.log.InfoContext(ctx, "stored CRL picked up", "issuer", id, "shard", r.Shard, "number", r.Number,
						"next_update", r.NextUpdate)
				}
				byShard[r.Shard] = newPublished(r)
			}
		}
		whole, ok := byShard[0]
		o.mu.Unlock()
		o.report(ctx, id, whole.rec, ok)
	}
	if o.afterReload != nil {
		o.afterReload()
	}
	return errors.Join(errs...)
}

// report sets the issuer's metrics and warns when its whole CRL is missing,
// past its nextUpdate or within Warn of it: the serving process cannot
// re-sign it, an operator must (sigil ca root-crl for the root).
func (o *OfflineCRLs) report(ctx context.Context, issuer string, rec store.CRLRecord, ok bool) {
	now := o.clk.Now()
	state := crlFresh
	switch {
	case !ok:
		state = crlMissing
	case !now.Before(rec.NextUpdate):
		state = crlExpired
	case rec.NextUpdate.Sub(now) <= o.cfg.Warn:
		state = crlDue
	}
	o.metrics.observe(issuer, rec, state != crlFresh)
	o.mu.Lock()
	last := o.warned[issuer]
	repeat := state != crlFresh && (state != last.state || rec.Number != last.number || now.Sub(last.at) >= warnEvery)
	if repeat {
		o.warned[issuer] = warning{state: state, number: rec.Number, at: now}
	} else if state == crlFresh {
		delete(o.warned, issuer)
	}
	o.mu.Unlock()
	if !repeat {
		return
	}
	switch state {
	case crlMissing:
		o.log.WarnContext(ctx, "no CRL stored for this issuer, whose key this server does not hold: sign one offline (sigil ca root-crl)",
			"issuer", issuer)
	case crlExpired:
		o.log.WarnContext(ctx, "stored CRL is past its nextUpdate: relying parties checking it now fail; sign the next one offline (sigil ca root-crl)",
			"issuer", issuer, "number", rec.Number, "next_update", rec.NextUpdate)
	case crlDue:
		o.log.WarnContext(ctx, "stored CRL is near its nextUpdate: sign the next one offline (sigil ca root-crl)",
			"issuer", issuer, "number", rec.Number, "next_update", rec.NextUpdate, "remaining", rec.NextUpdate.Sub(now).Round(time.Minute))
	}
}

// Current returns the CRL served for issuerID and shard, if any.
func (o *OfflineCRLs) Current(issuerID string, shard int) (store.CRLRecord, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	c, ok := o.crls[issuerID][shard]
	return c.rec, ok
}

// Handler serves the CRLs of the configured issuers as Publisher.Handler
// serves the active intermediate's (same paths, headers and conditional
// GETs), and passes every other request to next, the publisher's handler.
func (o *OfflineCRLs) Handler(next http.Handler) http.Handler {
	own := crlMux(o.serve)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.owns(r.URL.Path) {
			own.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// owns reports whether path names a CRL of one of the issuers:
// /crl/{issuer}.crl or /crl/{issuer}/...
func (o *OfflineCRLs) owns(path string) bool {
	rest, ok := strings.CutPrefix(path, "/crl/")
	if !ok {
		return false
	}
	issuer, _, _ := strings.Cut(rest, "/")
	return o.issuers[strings.TrimSuffix(issuer, ".crl")]
}

func (o *OfflineCRLs) serve(w http.ResponseWriter, r *http.Request, issuer string, shard int) {
	o.mu.RLock()
	c, ok := o.crls[issuer][shard]
	o.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	c.write(w, r, o.clk.Now())
}

// OfflineCRLMetrics are OfflineCRLs' Prometheus instruments.
type OfflineCRLMetrics struct {
	nextUpdate     *prometheus.GaugeVec
	number         *prometheus.GaugeVec
	due            *prometheus.GaugeVec
	reloadFailures prometheus.Counter
}

// NewOfflineCRLMetrics creates the instruments and registers them with reg
// (nil: unregistered).
func NewOfflineCRLMetrics(reg prometheus.Registerer) *OfflineCRLMetrics {
	m := &OfflineCRLMetrics{
		nextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_offline_next_update_timestamp_seconds",
			Help: "nextUpdate of the served CRL of an issuer signed offline (the root), as a Unix time; absent until one is stored.",
		}, []string{"issuer"}),
		number: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_offline_number",
			Help: "CRL number of the served CRL of an issuer signed offline (the root).",
		}, []string{"issuer"}),
		due: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_offline_due",
			Help: "1 when the CRL of an issuer signed offline (the root) must be re-signed: none is stored, or its nextUpdate is near (crl.root_warn) or past. Run sigil ca root-crl.",
		}, []string{"issuer"}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_crl_offline_reload_failures_total", Help: "Reloads of the CRLs signed offline that failed to read the store.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.nextUpdate, m.number, m.due, m.reloadFailures)
	}
	return m
}

func (m *OfflineCRLMetrics) observe(issuer string, rec store.CRLRecord, due bool) {
	v := 0.0
	if due {
		v = 1
	}
	m.due.WithLabelValues(issuer).Set(v)
	if rec.Number > 0 {
		m.nextUpdate.WithLabelValues(issuer).Set(float64(rec.NextUpdate.Unix()))
		m.number.WithLabelValues(issuer).Set(float64(rec.Number))
	}
}
