package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/revocation"
)

// responder is the responder's part of c.
func (c OCSPConfig) responder() revocation.OCSPConfig {
	return revocation.OCSPConfig{Validity: time.Duration(c.Validity), ResponderValidity: time.Duration(c.ResponderValidity),
		SignWithIssuer: c.SignWithIssuer, Nonce: c.Nonce, NoncesPerSecond: c.NonceRate,
		NoncesPerSourcePerSecond: c.NonceRatePerSource, NonceCPUShare: c.NonceCPUShare}
}

// applyDefaults fills what is unset with revocation's defaults; a negative
// rate is left for Validate to refuse.
func (c *OCSPConfig) applyDefaults() {
	d := revocation.OCSPConfig{}.WithDefaults()
	orDefault(&c.Validity, ca.Duration(d.Validity))
	orDefault(&c.ResponderValidity, ca.Duration(d.ResponderValidity))
	orDefault(&c.NonceRate, d.NoncesPerSecond)
	orDefault(&c.NonceRatePerSource, d.NoncesPerSourcePerSecond)
	orDefault(&c.NonceCPUShare, d.NonceCPUShare)
}

// startOCSP builds the OCSP responder, pre-signs its responses and returns
// a handler that serves /ocsp and /ocsp/... ahead of plain: OCSP GET paths
// hold base64, whose "/" and "//" the mux would clean and redirect.
func startOCSP(ctx context.Context, cfg OCSPConfig, auth *ca.Authority, st backend, clk clockwork.Clock,
	log *slog.Logger, reg prometheus.Registerer, plain http.Handler) (*revocation.Responder, http.Handler, error) {
	rc := cfg.responder()
	rc.Clock, rc.Logger, rc.Registerer = clk, log, reg
	r, err := revocation.NewResponder(rc, auth, st)
	if err != nil {
		return nil, nil, fmt.Errorf("ocsp: %w", err)
	}
	if err := r.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("ocsp: %w", err)
	}
	oh := r.Handler()
	return r, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p := req.URL.Path; p == "/ocsp" || strings.HasPrefix(p, "/ocsp/") {
			oh.ServeHTTP(w, req)
			return
		}
		plain.ServeHTTP(w, req)
	}), nil
}
