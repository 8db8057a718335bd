package revocation

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CRLMetrics are the CRL publisher's Prometheus instruments.
type CRLMetrics struct {
	size     *prometheus.GaugeVec
	entries  *prometheus.GaugeVec
	number   *prometheus.GaugeVec
	duration prometheus.Histogram
	failures prometheus.Counter
}

// NewCRLMetrics creates the instruments and registers them with reg (nil: unregistered).
func NewCRLMetrics(reg prometheus.Registerer) *CRLMetrics {
	m := &CRLMetrics{
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_size_bytes", Help: "Size of the latest CRL (DER), by issuer and shard (0: the whole CRL).",
		}, []string{"issuer", "shard"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_entries", Help: "Revoked certificates listed in the latest CRL, by issuer and shard.",
		}, []string{"issuer", "shard"}),
		number: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_crl_number", Help: "CRL number of the latest CRL, by issuer and shard.",
		}, []string{"issuer", "shard"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigil_crl_generation_seconds", Help: "Time to build, sign and store one CRL.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_crl_generation_failures_total", Help: "CRL generations that failed.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.size, m.entries, m.number, m.duration, m.failures)
	}
	return m
}

func (m *CRLMetrics) observe(issuer string, shard int, size, entries int, number int64, d time.Duration) {
	s := strconv.Itoa(shard)
	m.size.WithLabelValues(issuer, s).Set(float64(size))
	m.entries.WithLabelValues(issuer, s).Set(float64(entries))
	m.number.WithLabelValues(issuer, s).Set(float64(number))
	m.duration.Observe(d.Seconds())
}

func (m *CRLMetrics) observeFailure() { m.failures.Inc() }
