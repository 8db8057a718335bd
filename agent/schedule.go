package agent

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CertID is the RFC 9773 §4.1 identifier of c: base64url (no padding) of
// the keyIdentifier of its Authority Key Identifier, ".", base64url of the
// DER contents octets of its serial number (with the leading zero DER
// needs when the high bit is set).
func CertID(c *x509.Certificate) (string, error) {
	if len(c.AuthorityKeyId) == 0 {
		return "", errors.New("the certificate has no authority key identifier")
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() < 0 {
		return "", errors.New("the certificate has a negative serial number")
	}
	serial := c.SerialNumber.Bytes()
	if len(serial) == 0 || serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(c.AuthorityKeyId) + "." + enc.EncodeToString(serial), nil
}

// lifetimePoint is when frac of c's lifetime has passed.
func lifetimePoint(c *x509.Certificate, frac float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * frac))
}

// window is an ARI suggested renewal window.
type window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// ARI polling bounds: RFC 9773 §4.3 lets the server set the interval with
// Retry-After; these keep a bad value from making the agent spin or sleep
// through a revocation.
const (
	ariDefaultRetry = 6 * time.Hour
	ariMinRetry     = time.Minute
	ariMaxRetry     = 24 * time.Hour
	// ariErrorRetry is when to ask again after no answer.
	ariErrorRetry = time.Hour
)

// renewalInfo asks the server's ARI endpoint for c's window and when to ask
// again.
func (a *Agent) renewalInfo(ctx context.Context, c *x509.Certificate) (window, time.Duration, error) {
	id, err := CertID(c)
	if err != nil {
		return window{}, 0, err
	}
	base, err := a.renewalInfoURL(ctx)
	if err != nil {
		return window{}, 0, err
	}
	var out struct {
		SuggestedWindow window `json:"suggestedWindow"`
		ExplanationURL  string `json:"explanationURL"`
	}
	resp, err := a.get(ctx, strings.TrimRight(base, "/")+"/"+id)
	if err != nil {
		return window{}, 0, fmt.Errorf("renewal info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return window{}, 0, fmt.Errorf("renewal info: %s", responseError(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return window{}, 0, fmt.Errorf("renewal info: decode: %w", err)
	}
	w := out.SuggestedWindow
	if w.Start.IsZero() || w.End.IsZero() || w.End.Before(w.Start) {
		return window{}, 0, fmt.Errorf("renewal info: suggested window %v to %v is not a window", w.Start, w.End)
	}
	if out.ExplanationURL != "" {
		a.log.InfoContext(ctx, "the CA explains its renewal window", "serial", serialHex(c), "explanation_url", out.ExplanationURL)
	}
	retry := ariDefaultRetry
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retry = min(max(time.Duration(s)*time.Second, ariMinRetry), ariMaxRetry)
	}
	return w, retry, nil
}

// renewalInfoURL is the directory's renewalInfo URL, looked up once.
func (a *Agent) renewalInfoURL(ctx context.Context) (string, error) {
	a.mu.Lock()
	u := a.ariURL
	a.mu.Unlock()
	if u != "" {
		return u, nil
	}
	resp, err := a.get(ctx, a.cfg.ACMEDirectory)
	if err != nil {
		return "", fmt.Errorf("ACME directory: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ACME directory %s: %s", a.cfg.ACMEDirectory, responseError(resp))
	}
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&dir); err != nil {
		return "", fmt.Errorf("ACME directory: decode: %w", err)
	}
	if dir.RenewalInfo == "" {
		return "", errors.New("the ACME directory offers no renewalInfo")
	}
	a.mu.Lock()
	a.ariURL = dir.RenewalInfo
	a.mu.Unlock()
	return dir.RenewalInfo, nil
}

// plan is when the certificate is due, and when to look again.
type plan struct {
	due     time.Time // renew at or after this
	source  string    // "ari" or "lifetime"
	recheck time.Time // ask ARI again then (zero: no need)
	window  window    // the ARI window, if any
}

// ariState is the last renewal information for one certificate.
type ariState struct {
	serial  string
	ok      bool      // false: the server gave none, use the lifetime
	window  window    // the suggested window
	pick    time.Time // the time drawn in it
	recheck time.Time // do not ask again before (RFC 9773 §4.3 Retry-After)
}

// schedule decides when c is due. With ARI it picks a uniformly random
// time in the suggested window (RFC 9773 §4.2) and keeps that choice while
// the window stays the same; a window already past means now. The server
// is asked again only after its Retry-After. Without ARI, or if the server
// cannot answer, it is RenewAt of the lifetime.
func (a *Agent) schedule(ctx context.Context, c *x509.Certificate) plan {
	now := a.clk.Now()
	p := plan{due: lifetimePoint(c, a.cfg.RenewAt), source: "lifetime"}
	if !a.cfg.ARI {
		return p
	}
	a.mu.Lock()
	st := a.ari
	a.mu.Unlock()
	if st.serial != serialHex(c) || !now.Before(st.recheck) {
		prev := st
		st = ariState{serial: serialHex(c)}
		w, retry, err := a.renewalInfo(ctx, c)
		switch {
		case err != nil:
			// A missing or broken ARI endpoint must not stop renewals.
			a.log.WarnContext(ctx, "no renewal information from the server; using the lifetime fraction",
				"serial", serialHex(c), "renew_at", a.cfg.RenewAt, "error", err)
			st.recheck = now.Add(ariErrorRetry)
		case prev.ok && prev.serial == st.serial && prev.window.Start.Equal(w.Start) && prev.window.End.Equal(w.End):
			st.ok, st.window, st.pick, st.recheck = true, w, prev.pick, now.Add(retry)
		default:
			st.ok, st.window, st.recheck = true, w, now.Add(retry)
			st.pick = w.Start.Add(a.jitter(w.End.Sub(w.Start)))
		}
		a.mu.Lock()
		a.ari = st
		a.mu.Unlock()
	}
	p.recheck = st.recheck
	if st.ok {
		p.due, p.source, p.window = st.pick, "ari", st.window
	}
	return p
}
