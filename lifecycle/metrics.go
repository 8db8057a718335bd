package lifecycle

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/store"
)

// Metrics are the scheduler's Prometheus metrics.
type Metrics struct {
	runs        *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	items       *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_job_runs_total", Help: "Job runs, by job and result (ok, error).",
		}, []string{"job", "result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_job_runs_skipped_total", Help: "Scheduled job runs skipped: the previous run was still going, or (in a cluster) another node ran the job this period.",
		}, []string{"job"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sigil_job_duration_seconds", Help: "Job run duration.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
		}, []string{"job"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_job_last_success_timestamp_seconds", Help: "End of the last successful run, by job (alert when it grows old).",
		}, []string{"job"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_job_items_total", Help: "Items jobs handled (certificates renewed, CRLs published, ...), by job.",
		}, []string{"job"}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.skipped, m.duration, m.lastSuccess, m.items)
	}
	return m
}

func (m *Metrics) observe(job string, r store.JobRun) {
	m.runs.WithLabelValues(job, r.Result).Inc()
	m.items.WithLabelValues(job).Add(float64(r.Items))
	if r.Result == store.JobOK {
		m.lastSuccess.WithLabelValues(job).Set(float64(r.Ended.Unix()))
	}
}
