package lifecycle

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// Notice events.
const (
	// EventCertificateExpiring is a certificate the CA issued to someone.
	EventCertificateExpiring = "certificate.expiring"
	// EventKeyExpiring is a certificate of one of the CA's own keys: the
	// root, an intermediate, the audit signer, the OCSP responder or the
	// HTTPS listener.
	EventKeyExpiring = "key.expiring"
)

// DefaultThresholds are when notices are due: 30, 7 and 1 days before expiry.
func DefaultThresholds() []time.Duration {
	return []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}
}

// maxWebhookResponse bounds how much of a receiver's answer is read.
const maxWebhookResponse = 64 << 10

// NotifyConfig configures the expiry-notify job.
type NotifyConfig struct {
	// WebhookURL receives the notices, POSTed as JSON. Empty: none is sent,
	// the gauges are still kept.
	WebhookURL string
	// Secret signs every body (see SignWebhook); required with WebhookURL.
	Secret WebhookSecret
	// Thresholds are how long before expiry notices are due (default
	// DefaultThresholds).
	Thresholds []time.Duration
	// BatchSize is the most notices one POST carries (default 100).
	BatchSize int
	// Attempts bounds the tries of one POST within a run (default 5), with
	// exponential backoff and jitter between them from InitialBackoff
	// (default 1s) doubling up to MaxBackoff (default 30s). A POST that
	// fails them all ends the run's deliveries: its notices and the rest
	// are tried at the next run.
	Attempts       int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Client posts the notices (default NewWebhookClient(10s, nil)).
	Client *http.Client
	Clock  clockwork.Clock
	Logger *slog.Logger
	// Registerer receives the metrics (nil: unregistered).
	Registerer prometheus.Registerer
}

// NotifyAuthority is what the notices are computed from: ca's record.
type NotifyAuthority interface {
	ExpiringCertificates(ctx context.Context, from, until time.Time, after store.ExpiryCursor, limit int) ([]store.ExpiringCert, error)
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
}

// NotifyStore records delivered notices (its transactions see lifecycle's
// view, Tx).
type NotifyStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// Notice is one element of the JSON array a webhook POST carries.
type Notice struct {
	// ID is stable for a certificate and threshold: a receiver drops a
	// notice it has seen (delivery is at least once).
	ID        string    `json:"id"`
	Event     string    `json:"event"` // EventCertificateExpiring or EventKeyExpiring
	Serial    string    `json:"serial"`
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	SANs      []string  `json:"sans"`
	NotAfter  time.Time `json:"not_after"`
	DaysLeft  int       `json:"days_left"`
	Threshold string    `json:"threshold"` // e.g. "7d"
	Profile   string    `json:"profile"`
	Requester string    `json:"requester"`

	threshold time.Duration
}

// Notifier is the expiry-notify job: it finds the certificates and CA keys
// that crossed a threshold, POSTs one notice per certificate for the
// smallest threshold crossed (a certificate issued for five days gets the
// 7-day notice, not the 30-day one too), records each delivery so that it is
// never sent again, and keeps gauges of what expires within each threshold.
//
// Skipped: revoked certificates (on hold included), those replaced by an
// unrevoked certificate (RFC 9773 renewals record Replaces), and archived
// ones. Certificates of the CA's own keys are key.expiring notices; those
// the server renews itself (its HTTPS certificate, the OCSP responder's)
// count only in their newest issue and only for thresholds under half their
// lifetime, before which they are renewed: such a notice means renewal is
// failing.
type Notifier struct {
	cfg  NotifyConfig
	auth NotifyAuthority
	st   NotifyStore

	certGauge *prometheus.GaugeVec
	keyGauge  *prometheus.GaugeVec
	sent      prometheus.Counter
	failed    prometheus.Counter
}

// DefaultWebhookTimeout bounds one webhook POST attempt unless the caller's
// Client says otherwise.
const DefaultWebhookTimeout = 10 * time.Second

// WithDefaults returns c with every unset field at its default, as
// NewNotifier uses it (but for Client, which NewNotifier makes with
// DefaultWebhookTimeout); callers that show the defaults read them here.
func (c NotifyConfig) WithDefaults() NotifyConfig {
	if len(c.Thresholds) == 0 {
		c.Thresholds = DefaultThresholds()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = max(30*time.Second, c.InitialBackoff)
	}
	return c
}

// NewNotifier checks cfg and returns the job.
func NewNotifier(cfg NotifyConfig, auth NotifyAuthority, st NotifyStore) (*Notifier, error) {
	if cfg.Clock == nil || cfg.Logger == nil || auth == nil || st == nil {
		return nil, errors.New("expiry notices: clock, logger, authority and store are required")
	}
	if cfg.WebhookURL != "" {
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("expiry notices: the webhook URL must be an absolute http(s) URL")
		}
		if len(cfg.Secret) < 16 {
			return nil, errors.New("expiry notices: a webhook needs a signing secret of at least 16 bytes")
		}
	}
	cfg = cfg.WithDefaults()
	cfg.Thresholds = slices.Clone(cfg.Thresholds)
	slices.Sort(cfg.Thresholds)
	slices.Reverse(cfg.Thresholds) // largest first
	if cfg.Thresholds[len(cfg.Thresholds)-1] <= 0 || len(slices.Compact(slices.Clone(cfg.Thresholds))) != len(cfg.Thresholds) {
		return nil, errors.New("expiry notices: thresholds must be positive and distinct")
	}
	if cfg.Client == nil {
		cfg.Client = NewWebhookClient(DefaultWebhookTimeout, nil)
	}
	n := &Notifier{cfg: cfg, auth: auth, st: st,
		certGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sigil_certificates_expiring",
			Help: "Unrevoked, unreplaced certificates expiring within each notice threshold (updated by expiry-notify)."}, []string{"within"}),
		keyGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sigil_keys_expiring",
			Help: "Certificates of the CA's own keys (root, intermediates, audit signer, OCSP responder, HTTPS) expiring within each notice threshold."},
			[]string{"within"}),
		sent:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sigil_expiry_notices_sent_total", Help: "Expiry notices a webhook receiver accepted."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sigil_expiry_webhook_failures_total", Help: "Webhook POSTs that failed every attempt of a run."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.certGauge, n.keyGauge, n.sent, n.failed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("expiry notices: metrics: %w", err)
			}
		}
	}
	return n, nil
}

// FormatThreshold renders a threshold as notices and metric labels show
// it: "30d", "12h", "90m".
func FormatThreshold(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// notifyPage is how many candidates one read returns.
const notifyPage = 500

// Run is the expiry-notify Task: Items is the number of notices delivered.
func (n *Notifier) Run(ctx context.Context) (Result, error) {
	now := n.cfg.Clock.Now().UTC()
	certs := make([]int, len(n.cfg.Thresholds))
	keys := make([]int, len(n.cfg.Thresholds))
	newest := map[string]string{} // issuer/profile: serial of the newest certificate the server renews itself
	var pending []Notice
	var delivered int64
	var sendErr error
	flush := func() {
		if len(pending) == 0 || sendErr != nil {
			return
		}
		if sendErr = n.deliver(ctx, pending); sendErr == nil {
			delivered += int64(len(pending))
		}
		pending = pending[:0]
	}
	var cur store.ExpiryCursor
	for {
		page, err := n.auth.ExpiringCertificates(ctx, now, now.Add(n.cfg.Thresholds[0]), cur, notifyPage)
		if err != nil {
			return Result{Items: delivered}, fmt.Errorf("expiry notices: %w", err)
		}
		for _, c := range page {
			event, thresholds, superseded, err := n.classify(ctx, c, newest)
			if err != nil {
				return Result{Items: delivered}, fmt.Errorf("expiry notices: %w", err)
			}
			if superseded {
				continue
			}
			left := c.NotAfter.Sub(now)
			gauge := certs
			if event == EventKeyExpiring {
				gauge = keys
			}
			var due time.Duration
			for i, t := range n.cfg.Thresholds {
				if left <= t {
					gauge[i]++
				}
			}
			for _, t := range thresholds { // largest first: the last crossed is the smallest
				if left <= t {
					due = t
				}
			}
			if due == 0 || (c.Notified != 0 && c.Notified <= due) || n.cfg.WebhookURL == "" || sendErr != nil {
				continue
			}
			pending = append(pending, newNotice(c, event, due, left))
			if len(pending) >= n.cfg.BatchSize {
				flush()
			}
		}
		if len(page) < notifyPage {
			break
		}
		last := page[len(page)-1]
		cur = store.ExpiryCursor{NotAfter: last.NotAfter, ID: last.ID}
	}
	flush()
	for i, t := range n.cfg.Thresholds {
		n.certGauge.WithLabelValues(FormatThreshold(t)).Set(float64(certs[i]))
		n.keyGauge.WithLabelValues(FormatThreshold(t)).Set(float64(keys[i]))
	}
	return Result{Items: delivered}, sendErr
}

// classify returns c's event and the thresholds whose notices apply to
// it, or superseded for a certificate the server renewed already.
func (n *Notifier) classify(ctx context.Context, c store.ExpiringCert, newest map[string]string) (event string, thresholds []time.Duration, superseded bool, err error) {
	switch c.Channel {
	case ca.ChannelInit:
		return EventKeyExpiring, n.cfg.Thresholds, false, nil
	case ca.ChannelInternal:
		key := c.IssuerID + "/" + c.Profile
		serial, ok := newest[key]
		if !ok {
			recs, _, err := n.auth.Certificates(ctx, store.CertFilter{IssuerID: c.IssuerID, Profile: c.Profile, Limit: 1})
			if err != nil {
				return "", nil, false, err
			}
			if len(recs) == 1 {
				serial = recs[0].Serial
			}
			newest[key] = serial
		}
		if serial != c.Serial {
			return "", nil, true, nil
		}
		half := c.NotAfter.Sub(c.NotBefore) / 2
		var ts []time.Duration
		for _, t := range n.cfg.Thresholds {
			if t < half {
				ts = append(ts, t)
			}
		}
		return EventKeyExpiring, ts, false, nil
	}
	return EventCertificateExpiring, n.cfg.Thresholds, false, nil
}

func newNotice(c store.ExpiringCert, event string, threshold, left time.Duration) Notice {
	id := sha256.Sum256([]byte(c.IssuerID + "\x00" + c.Serial + "\x00" + strconv.FormatInt(int64(threshold), 10)))
	sans := c.SANs
	if sans == nil {
		sans = []string{}
	}
	return Notice{ID: hex.EncodeToString(id[:16]), Event: event, Serial: c.Serial, Issuer: c.IssuerID, Subject: c.Subject,
		SANs: sans, NotAfter: c.NotAfter.UTC(), DaysLeft: int(left / (24 * time.Hour)), Threshold: FormatThreshold(threshold),
		Profile: c.Profile, Requester: c.Requester, threshold: threshold}
}

// deliver POSTs notices as one JSON array, with retries, and records them
// once the receiver accepted them.
func (n *Notifier) deliver(ctx context.Context, notices []Notice) error {
	body, err := json.Marshal(notices)
	if err != nil {
		return fmt.Errorf("expiry notices: encode: %w", err)
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return fmt.Errorf("expiry notices: delivery id: %w", err)
	}
	delivery := hex.EncodeToString(idb)
	eb := backoff.NewExponentialBackOff(backoff.WithInitialInterval(n.cfg.InitialBackoff), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5), backoff.WithMaxInterval(n.cfg.MaxBackoff), backoff.WithMaxElapsedTime(0),
		backoff.WithClockProvider(n.cfg.Clock))
	policy := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(n.cfg.Attempts-1)), ctx)
	attempt := 0
	err = backoff.RetryNotifyWithTimer(func() error {
		attempt++
		return n.post(ctx, body, delivery)
	}, policy, func(err error, wait time.Duration) {
		n.cfg.Logger.WarnContext(ctx, "expiry webhook attempt failed; retrying", "delivery", delivery, "attempt", attempt,
			"retry_in", wait.Round(time.Millisecond), "error", err)
	}, &clockTimer{clk: n.cfg.Clock})
	if err != nil {
		n.failed.Inc()
		return fmt.Errorf("expiry webhook to %s: %d notices not delivered after %d attempts (tried again next run): %w",
			n.host(), len(notices), attempt, err)
	}
	now := n.cfg.Clock.Now().UTC()
	err = update(context.WithoutCancel(ctx), n.st, func(tx Tx) error {
		for _, no := range notices {
			if err := tx.RecordExpiryNotice(store.ExpiryNotice{IssuerID: no.Issuer, Serial: no.Serial, Threshold: no.threshold,
				Event: no.Event, NotAfter: no.NotAfter, Delivered: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Delivered but not recorded: sent again next run, with the same ids.
		return fmt.Errorf("expiry notices: record delivery %s: %w", delivery, err)
	}
	n.sent.Add(float64(len(notices)))
	n.cfg.Logger.InfoContext(ctx, "expiry notices delivered", "delivery", delivery, "notices", len(notices), "attempts", attempt)
	return nil
}

// post makes one attempt. A 2xx is delivery; a 4xx other than 408 and 429
// (or a redirect not followed) is permanent for this run; anything else is
// retried.
func (n *Notifier) post(ctx context.Context, body []byte, delivery string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(errors.New("bad webhook URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Sigil-Webhook/1")
	req.Header.Set(EventHeader, "expiry")
	req.Header.Set(DeliveryHeader, delivery)
	req.Header.Set(SignatureHeader, SignWebhook(n.cfg.Secret, n.cfg.Clock.Now(), body))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		// *url.Error names the URL, which may carry a token: keep its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	snippet := make([]byte, 200)
	k, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return backoff.Permanent(fmt.Errorf("receiver answered %s; redirects are followed only to the same host with 307 or 308", resp.Status))
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return backoff.Permanent(fmt.Errorf("receiver answered %s: %q", resp.Status, snippet[:k]))
	default:
		return fmt.Errorf("receiver answered %s: %q", resp.Status, snippet[:k])
	}
}

// host names the receiver in errors and logs without its path or query,
// which may hold a token.
func (n *Notifier) host() string {
	u, err := url.Parse(n.cfg.WebhookURL)
	if err != nil {
		return "the webhook"
	}
	return u.Scheme + "://" + u.Host
}

// clockTimer is backoff's Timer on the injected clock.
type clockTimer struct {
	clk clockwork.Clock
	t   clockwork.Timer
}

func (c *clockTimer) Start(d time.Duration) {
	if c.t == nil {
		c.t = c.clk.NewTimer(d)
		return
	}
	c.t.Reset(d)
}

func (c *clockTimer) Stop() {
	if c.t != nil {
		c.t.Stop()
	}
}

func (c *clockTimer) C() <-chan time.Time { return c.t.Chan() }
