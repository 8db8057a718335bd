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
	"github.com/sigil-ca/sigil/store"
)

// startOCSP builds the OCSP responder, pre-signs its responses and returns
// a handler that serves /ocsp and /ocsp/... ahead of plain: OCSP GET paths
// hold base64, whose "/" and "//" the mux would clean and redirect.
func startOCSP(ctx context.Context, cfg OCSPConfig, auth *ca.Authority, st *store.SQLite, clk clockwork.Clock,
	log *slog.Logger, reg prometheus.Registerer, plain http.Handler) (*revocation.Responder, http.Handler, error) {
	r, err := revocation.NewResponder(revocation.OCSPConfig{
		Validity: time.Duration(cfg.Validity), ResponderValidity: time.Duration(cfg.ResponderValidity),
		SignWithIssuer: cfg.SignWithIssuer, Nonce: cfg.Nonce, NoncesPerSecond: cfg.NonceRate,
		NoncesPerSourcePerSecond: cfg.NonceRatePerSource, NonceCPUShare: cfg.NonceCPUShare,
		Clock: clk, Logger: log, Registerer: reg,
	}, auth, st)
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
