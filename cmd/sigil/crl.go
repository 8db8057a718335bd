package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/revocation"
	"github.com/sigil-ca/sigil/store"
)

// CRLConfig is the crl: section of sigil.yaml.
type CRLConfig struct {
	// Shards partitions each issuer's CRL (0 or 1: one CRL per issuer).
	Shards int `yaml:"shards"`
	// Validity is nextUpdate - thisUpdate.
	Validity ca.Duration `yaml:"validity"`
	// Refresh is how often every CRL is regenerated.
	Refresh ca.Duration `yaml:"refresh"`
}

func (c *CRLConfig) applyDefaults() {
	if c.Validity == 0 {
		c.Validity = ca.Duration(24 * time.Hour)
	}
	if c.Refresh == 0 {
		c.Refresh = ca.Duration(time.Hour)
	}
}

func (c *CRLConfig) validate() []error {
	var errs []error
	if c.Shards < 0 || c.Shards > ca.MaxCRLShards {
		errs = append(errs, fmt.Errorf("crl.shards %d must be between 0 and %d", c.Shards, ca.MaxCRLShards))
	}
	if time.Duration(c.Validity) < time.Hour {
		errs = append(errs, fmt.Errorf("crl.validity %s must be at least 1h", c.Validity))
	}
	if time.Duration(c.Refresh) < time.Minute || c.Refresh >= c.Validity {
		errs = append(errs, fmt.Errorf("crl.refresh %s must be at least 1m and shorter than crl.validity %s", c.Refresh, c.Validity))
	}
	return errs
}

// startCRL builds the CRL publisher, publishes what is missing and mounts
// it on the plain listener's mux. The server stops it on shutdown.
func (s *server) startCRL(ctx context.Context, plain *http.ServeMux, st *store.SQLite, clk clockwork.Clock, reg prometheus.Registerer) error {
	pub, err := revocation.NewPublisher(revocation.CRLConfig{Validity: time.Duration(s.cfg.CRL.Validity),
		Refresh: time.Duration(s.cfg.CRL.Refresh), Scheduled: true, Clock: clk, Logger: s.log, Metrics: revocation.NewCRLMetrics(reg)}, s.auth, st)
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	if err := pub.Start(ctx); err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	s.crl = pub
	plain.Handle("/crl/", pub.Handler())
	s.log.Info("CRLs published", "issuer", s.auth.Intermediate().ID, "shards", s.auth.CRLShards(),
		"url", s.auth.CRLURL(s.auth.Intermediate().ID, 0))
	return nil
}

// stopCRL stops the publisher's schedule, if it was started.
func (s *server) stopCRL() {
	if s.crl != nil {
		s.crl.Stop()
	}
}
