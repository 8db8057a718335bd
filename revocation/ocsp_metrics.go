package revocation

import (
	"github.com/prometheus/client_golang/prometheus"
)

// OCSP answer labels of sigil_ocsp_requests_total.
const (
	statusGood         = "good"
	statusRevoked      = "revoked"
	statusUnknown      = "unknown"
	statusMalformed    = "malformed"
	statusUnauthorized = "unauthorized"
	statusTryLater     = "try_later"
	statusInternal     = "internal"
)

var ocspStatuses = [...]string{statusGood, statusRevoked, statusUnknown, statusMalformed, statusUnauthorized, statusTryLater, statusInternal}

// Result labels of sigil_ocsp_nonce_responses_total.
const (
	nonceSigned      = "signed"       // signed on demand with the nonce echoed
	nonceRateLimited = "rate_limited" // answered pre-signed, without the nonce
	nonceRejected    = "rejected"     // malformedRequest: empty or over 32 octets
	nonceFailed      = "failed"       // signing failed: internalError
)

// ocspMetrics are the responder's Prometheus instruments. The counters of
// every (method, status) pair are resolved once so that the hot path does
// no label lookup.
type ocspMetrics struct {
	requests map[string]map[string]prometheus.Counter // method → status
	hits     prometheus.Counter
	misses   prometheus.Counter
	age      prometheus.Histogram
	signed   prometheus.Counter
	cached   prometheus.Gauge
	nonces   map[string]prometheus.Counter // result
	// storedRejected counts stored responses not served at load: bad
	// signature, wrong serial or hash, or another status than the record.
	storedRejected prometheus.Counter
	// persistFull counts store copies skipped because the disk was full.
	persistFull prometheus.Counter
}

func newOCSPMetrics(reg prometheus.Registerer) *ocspMetrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_ocsp_requests_total", Help: "OCSP requests, by HTTP method and answer (good, revoked, unknown, malformed, unauthorized, try_later, internal).",
	}, []string{"method", "status"})
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_ocsp_cache_lookups_total", Help: "OCSP response cache lookups for served issuers, by result (hit, miss); the hit rate is hit / (hit + miss).",
	}, []string{"result"})
	m := &ocspMetrics{
		requests: map[string]map[string]prometheus.Counter{},
		hits:     lookups.WithLabelValues("hit"),
		misses:   lookups.WithLabelValues("miss"),
		age: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigil_ocsp_response_age_seconds", Help: "Age (now - thisUpdate) of OCSP responses served.",
			Buckets: prometheus.ExponentialBuckets(60, 2, 12),
		}),
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_ocsp_responses_signed_total", Help: "OCSP responses signed (pre-signing, refresh and misses).",
		}),
		cached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_ocsp_cached_responses", Help: "Certificates with a pre-signed OCSP response in memory.",
		}),
	}
	m.storedRejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sigil_ocsp_stored_responses_rejected_total",
		Help: "Stored OCSP responses not served at load (bad signature, another serial or hash, another status than the certificate's record); each is re-signed.",
	})
	m.persistFull = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sigil_ocsp_persist_skipped_full_total",
		Help: "OCSP responses served from memory but not copied to the store because the database or disk was full.",
	})
	nonces := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_ocsp_nonce_responses_total",
		Help: "OCSP POST requests with a nonce while ocsp.nonce is on, by result: signed (on demand, nonce echoed; not in sigil_ocsp_responses_signed_total), rate_limited (pre-signed answer without the nonce), rejected (malformedRequest), failed.",
	}, []string{"result"})
	m.nonces = map[string]prometheus.Counter{}
	for _, res := range []string{nonceSigned, nonceRateLimited, nonceRejected, nonceFailed} {
		m.nonces[res] = nonces.WithLabelValues(res)
	}
	for _, method := range []string{"GET", "POST"} {
		m.requests[method] = map[string]prometheus.Counter{}
		for _, s := range ocspStatuses {
			m.requests[method][s] = requests.WithLabelValues(method, s)
		}
	}
	if reg != nil {
		reg.MustRegister(requests, lookups, m.age, m.signed, m.cached, nonces, m.storedRejected, m.persistFull)
	}
	return m
}

func (m *ocspMetrics) request(method, status string) {
	if c, ok := m.requests[method][status]; ok {
		c.Inc()
	}
}

func (m *ocspMetrics) nonce(result string) {
	if c, ok := m.nonces[result]; ok {
		c.Inc()
	}
}
