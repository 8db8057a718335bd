package ca

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the authority's Prometheus instruments.
type Metrics struct {
	issued  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	refused *prometheus.CounterVec
	// unauthenticated counts refusals of callers that never authenticated,
	// which are not audited one by one (refusals.go).
	unauthenticated *prometheus.CounterVec
	revoked         *prometheus.CounterVec
	commitTime      prometheus.Histogram
	batchSize       prometheus.Histogram
}

// NewMetrics creates the instruments and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_certificates_issued_total", Help: "Certificates issued, by profile.",
		}, []string{"profile"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sigil_issuance_seconds", Help: "Issuance latency (CSR to durable record), by profile.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"profile"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_requests_refused_total", Help: "Refused issuance requests, by reason.",
		}, []string{"reason"}),
		unauthenticated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_unauthenticated_refusals_total",
			Help: "Requests refused before the caller authenticated (no or unknown credential), by surface and reason.",
		}, []string{"surface", "reason"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_certificates_revoked_total", Help: "Certificates revoked, by RFC 5280 reason name.",
		}, []string{"reason"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigil_store_commit_seconds", Help: "Store commit latency (one group commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigil_store_commit_batch_size", Help: "Transactions per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.issued, m.latency, m.refused, m.unauthenticated, m.revoked, m.commitTime, m.batchSize)
	}
	return m
}

func (m *Metrics) observeIssued(profile string, d time.Duration) {
	m.issued.WithLabelValues(profile).Inc()
	m.latency.WithLabelValues(profile).Observe(d.Seconds())
}

func (m *Metrics) observeRefused(reason string) { m.refused.WithLabelValues(reason).Inc() }

func (m *Metrics) observeUnauthenticated(surface, reason string) {
	m.unauthenticated.WithLabelValues(surface, reason).Inc()
}

func (m *Metrics) observeRevoked(reason string) { m.revoked.WithLabelValues(reason).Inc() }

// ObserveCommit records one store commit; pass it as store.Config.OnCommit.
func (m *Metrics) ObserveCommit(d time.Duration, batch int) {
	m.commitTime.Observe(d.Seconds())
	m.batchSize.Observe(float64(batch))
}
