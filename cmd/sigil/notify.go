package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle"
)

// TidyConfig is the tidy: section of sigil.yaml (the tidy job).
type TidyConfig struct {
	// Retention is how long after expiry a certificate stays in the hot
	// indexes and dead OCSP responses, ACME orders and authorizations are
	// kept (default 2160h, 90 days).
	Retention ca.Duration `yaml:"retention"`
}

// NotifyConfig is the notify: section of sigil.yaml (the expiry-notify job).
type NotifyConfig struct {
	// WebhookURL receives the notices; empty: none is sent.
	WebhookURL string `yaml:"webhook_url"`
	// SecretFile holds the HMAC-SHA256 signing key (required with
	// WebhookURL); relative paths resolve against the config directory.
	SecretFile string `yaml:"secret_file"`
	// Thresholds are how long before expiry notices are due (default 720h,
	// 168h, 24h).
	Thresholds []ca.Duration `yaml:"thresholds"`
	// Timeout bounds one POST attempt (default 10s).
	Timeout ca.Duration `yaml:"timeout"`
	// BatchSize is the most notices one POST carries (default 100).
	BatchSize int `yaml:"batch_size"`
}

// minWebhookSecret is the shortest signing secret accepted, in bytes.
const minWebhookSecret = 16

// applyDefaults fills what is unset with lifecycle's defaults.
func (c *TidyConfig) applyDefaults() {
	orDefault(&c.Retention, ca.Duration(lifecycle.TidyConfig{}.WithDefaults().Retention))
}

func (c *TidyConfig) validate() []error {
	if time.Duration(c.Retention) < 24*time.Hour {
		return []error{fmt.Errorf("tidy.retention %s must be at least 24h", c.Retention)}
	}
	return nil
}

// applyDefaults fills what is unset with lifecycle's defaults.
func (c *NotifyConfig) applyDefaults() {
	d := lifecycle.NotifyConfig{}.WithDefaults()
	if c.Thresholds == nil {
		for _, t := range d.Thresholds {
			c.Thresholds = append(c.Thresholds, ca.Duration(t))
		}
	}
	orDefault(&c.Timeout, ca.Duration(lifecycle.DefaultWebhookTimeout))
	orDefault(&c.BatchSize, d.BatchSize)
}

func (c *NotifyConfig) validate() []error {
	var errs []error
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL is not repeated: it may carry a token.
			errs = append(errs, errors.New("notify.webhook_url must be an absolute http:// or https:// URL"))
		}
		if c.SecretFile == "" {
			errs = append(errs, errors.New("notify.secret_file is required with notify.webhook_url: receivers verify the Sigil-Signature header with it"))
		}
	}
	if len(c.Thresholds) == 0 || len(c.Thresholds) > 10 {
		errs = append(errs, fmt.Errorf("notify.thresholds: give 1 to 10 durations, not %d", len(c.Thresholds)))
	}
	for i, t := range c.Thresholds {
		if time.Duration(t) < time.Minute {
			errs = append(errs, fmt.Errorf("notify.thresholds: %s is under a minute", t))
		}
		if slices.Contains(c.Thresholds[:i], t) {
			errs = append(errs, fmt.Errorf("notify.thresholds: %s is listed twice", t))
		}
	}
	if time.Duration(c.Timeout) < time.Second || time.Duration(c.Timeout) > 5*time.Minute {
		errs = append(errs, fmt.Errorf("notify.timeout %s must be between 1s and 5m", c.Timeout))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("notify.batch_size %d must be between 1 and 1000", c.BatchSize))
	}
	return errs
}

// secretPath resolves notify.secret_file against the config directory.
func (c *Config) secretPath() string {
	if c.Notify.SecretFile == "" || filepath.IsAbs(c.Notify.SecretFile) {
		return c.Notify.SecretFile
	}
	return filepath.Join(c.dir, c.Notify.SecretFile)
}

// readWebhookSecret reads the signing secret: the file's bytes without a
// trailing newline, at least minWebhookSecret of them. A file others may
// read is used, with a warning (secret mounts are often 0444).
func readWebhookSecret(path string, log *slog.Logger) (lifecycle.WebhookSecret, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("notify.secret_file: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notify.secret_file: %w", err)
	}
	secret := bytes.TrimRight(data, "\r\n")
	if len(secret) < minWebhookSecret {
		clear(data)
		return nil, fmt.Errorf("notify.secret_file %s: the secret is %d bytes; use at least %d (openssl rand -hex 32 > %s)",
			path, len(secret), minWebhookSecret, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("notify.secret_file may be read by other users", "path", path, "mode", fi.Mode().Perm().String())
	}
	return lifecycle.WebhookSecret(secret), nil
}

// newTidier builds the tidy job.
func (s *server) newTidier(clk clockwork.Clock) (*lifecycle.Tidier, error) {
	return lifecycle.NewTidier(lifecycle.TidyConfig{Retention: time.Duration(s.cfg.Tidy.Retention), Clock: clk, Logger: s.log}, s.auth, s.st)
}

// newNotifier builds the expiry-notify job. Receivers certified by this CA
// are trusted, besides the system roots.
func (s *server) newNotifier(clk clockwork.Clock, reg prometheus.Registerer) (*lifecycle.Notifier, error) {
	c := s.cfg.Notify
	cfg := lifecycle.NotifyConfig{WebhookURL: c.WebhookURL, BatchSize: c.BatchSize, Clock: clk, Logger: s.log, Registerer: reg,
		Client: lifecycle.NewWebhookClient(time.Duration(c.Timeout), []*x509.Certificate{s.auth.Root().Cert})}
	for _, t := range c.Thresholds {
		cfg.Thresholds = append(cfg.Thresholds, time.Duration(t))
	}
	if c.WebhookURL != "" {
		secret, err := readWebhookSecret(s.cfg.secretPath(), s.log)
		if err != nil {
			return nil, err
		}
		cfg.Secret = secret
	}
	return lifecycle.NewNotifier(cfg, s.auth, s.st)
}
