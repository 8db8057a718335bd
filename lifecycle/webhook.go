package lifecycle

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook signatures, Stripe-style. Every POST carries
//
//	Sigil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." ‖ body)>
//
// A receiver recomputes the HMAC over the timestamp, a dot and the raw
// body, compares it in constant time, and rejects a timestamp too far from
// its clock (VerifyWebhook uses 5 minutes) so that a captured request
// cannot be replayed later. Each attempt is signed anew. Sigil-Delivery
// names the POST (the same on every attempt) and each notice has a stable
// id, so a receiver can drop the duplicates at-least-once delivery allows.
const (
	SignatureHeader = "Sigil-Signature"
	DeliveryHeader  = "Sigil-Delivery"
	EventHeader     = "Sigil-Event"
	// DefaultSignatureTolerance is how far from the receiver's clock
	// VerifyWebhook accepts a signature's timestamp.
	DefaultSignatureTolerance = 5 * time.Minute
)

// WebhookSecret is the HMAC-SHA256 key webhook bodies are signed with. It
// formats and logs as "REDACTED".
type WebhookSecret []byte

// String returns "REDACTED".
func (WebhookSecret) String() string { return "REDACTED" }

// GoString returns "REDACTED".
func (WebhookSecret) GoString() string { return "REDACTED" }

// Format writes "REDACTED" for every verb.
func (WebhookSecret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "REDACTED") }

// LogValue implements slog.LogValuer.
func (WebhookSecret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// SignWebhook returns the Sigil-Signature header value for body sent at t.
func SignWebhook(secret WebhookSecret, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret WebhookSecret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyWebhook checks a Sigil-Signature header against body: one of its v1
// values must be the HMAC of its timestamp and body under secret, and the
// timestamp within tolerance of now (DefaultSignatureTolerance if zero).
func VerifyWebhook(secret WebhookSecret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
		case k == "t":
			ts = v
		case k == "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("webhook signature: malformed header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook signature: timestamp %s away from now (replay?)", d.Round(time.Second))
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("webhook signature: no v1 signature matches")
}

// NewWebhookClient returns the HTTP client notices are posted with: an
// overall timeout per attempt, TLS verified against the system roots plus
// extraRoots (such as this CA's own root, for receivers it certified), and
// redirects followed only when they keep the method, scheme and host (307,
// 308 on the same origin): a notice is never sent to another host, nor
// turned into a GET by a 301/302.
func NewWebhookClient(timeout time.Duration, extraRoots []*x509.Certificate) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(extraRoots) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, c := range extraRoots {
			pool.AddCert(c)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.MaxIdleConnsPerHost = 2
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: sameOriginRedirect}
}

func sameOriginRedirect(req *http.Request, via []*http.Request) error {
	first := via[0]
	if len(via) >= 3 || req.Method != first.Method || req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host {
		return http.ErrUseLastResponse // the 3xx is then a failed delivery
	}
	return nil
}
