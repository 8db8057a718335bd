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
	// RootReload is how often the root's CRL, which the server cannot sign
	// (sigil ca root-crl signs it offline), is re-read from the database.
	RootReload ca.Duration `yaml:"root_reload"`
	// RootWarn is how long before the root CRL's nextUpdate the server warns.
	RootWarn ca.Duration `yaml:"root_warn"`
}

// applyDefaults fills what is unset with revocation's defaults.
func (c *CRLConfig) applyDefaults() {
	pub, root := revocation.CRLConfig{}.WithDefaults(), revocation.OfflineConfig{}.WithDefaults()
	orDefault(&c.Validity, ca.Duration(pub.Validity))
	orDefault(&c.Refresh, ca.Duration(pub.Refresh))
	orDefault(&c.RootReload, ca.Duration(root.Reload))
	orDefault(&c.RootWarn, ca.Duration(root.Warn))
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
	if time.Duration(c.RootReload) < time.Second {
		errs = append(errs, fmt.Errorf("crl.root_reload %s must be at least 1s", c.RootReload))
	}
	if c.RootWarn < 0 || time.Duration(c.RootWarn) >= ca.MaxRootCRLValidity {
		errs = append(errs, fmt.Errorf("crl.root_warn %s must be shorter than the root CRL's longest validity %s", c.RootWarn, ca.MaxRootCRLValidity))
	}
	return errs
}

// startCRL builds the CRL publisher, publishes what is missing, loads the
// root's CRL (signed offline: the server never holds the root key) and
// mounts both on the plain listener's mux. The server stops them on shutdown.
func (s *server) startCRL(ctx context.Context, plain *http.ServeMux, st backend, clk clockwork.Clock, reg prometheus.Registerer) error {
	pub, err := revocation.NewPublisher(revocation.CRLConfig{Validity: time.Duration(s.cfg.CRL.Validity),
		Refresh: time.Duration(s.cfg.CRL.Refresh), Clock: clk, Logger: s.log, Metrics: revocation.NewCRLMetrics(reg)}, s.auth.CRL(), st)
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	if err := pub.Start(ctx); err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	s.crl = pub
	rootID := s.auth.Root().ID
	root, err := revocation.NewOfflineCRLs(revocation.OfflineConfig{Issuers: []string{rootID},
		Reload: time.Duration(s.cfg.CRL.RootReload), Warn: time.Duration(s.cfg.CRL.RootWarn), Clock: clk, Logger: s.log,
		Metrics: revocation.NewOfflineCRLMetrics(reg)}, st)
	if err != nil {
		return fmt.Errorf("root crl: %w", err)
	}
	if err := root.Start(ctx); err != nil {
		return fmt.Errorf("root crl: %w", err)
	}
	s.rootCRL = root
	plain.Handle("/crl/", root.Handler(pub.Handler()))
	// Only an operator can put such a revocation on the root's CRL.
	s.auth.OnStatusChange(func(rec store.CertRecord) {
		if rec.IssuerID == rootID && !rec.RevokedAt.IsZero() {
			s.log.Warn("a certificate issued by the root was revoked: relying parties learn of it only from the root's CRL; sign it now with sigil ca root-crl",
				"serial", rec.Serial, "issuer", rootID)
		}
	})
	s.log.Info("CRLs published", "issuer", s.auth.Intermediate().ID, "shards", s.auth.CRL().CRLShards(),
		"url", s.auth.CRL().CRLURL(s.auth.Intermediate().ID, 0), "root_url", s.auth.CRL().CRLURL(rootID, 0))
	return nil
}

// stopCRL stops the publisher's schedule and the root CRL's reloads, if
// they were started.
func (s *server) stopCRL() {
	if s.crl != nil {
		s.crl.Stop()
	}
	if s.rootCRL != nil {
		s.rootCRL.Stop()
	}
}
