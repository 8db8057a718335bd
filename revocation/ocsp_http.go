package revocation

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/store"
)

// Handler serves OCSP at /ocsp (POST, application/ocsp-request) and
// /ocsp/{base64 request} (GET and HEAD; RFC 6960 Appendix A.1, RFC 5019
// §5). It routes on the raw path itself rather than through
// http.ServeMux patterns: the base64 of a request may contain "/" and
// "//", which ServeMux would clean and redirect. Mount it for "/ocsp" and
// "/ocsp/" ahead of any path cleaning (see cmd/sigil). Every answer is an
// OCSPResponse with HTTP 200, errors included (RFC 6960 §2.3).
func (r *Responder) Handler() http.Handler {
	return http.HandlerFunc(r.serveHTTP)
}

func (r *Responder) serveHTTP(w http.ResponseWriter, req *http.Request) {
	path := req.URL.EscapedPath()
	switch {
	case req.Method == http.MethodPost && (path == "/ocsp" || path == "/ocsp/"):
		r.servePOST(w, req)
	case (req.Method == http.MethodGet || req.Method == http.MethodHead) && strings.HasPrefix(path, "/ocsp/"):
		r.serveGET(w, req, path[len("/ocsp/"):])
	case path == "/ocsp" || strings.HasPrefix(path, "/ocsp/"):
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	default:
		http.NotFound(w, req)
	}
}

func (r *Responder) servePOST(w http.ResponseWriter, req *http.Request) {
	limit := int64(r.cfg.MaxRequestBytes)
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		r.writeError(w, "POST", statusMalformed, ocsp.MalformedRequestErrorResponse)
		return
	}
	r.answer(w, req, "POST", body)
}

func (r *Responder) serveGET(w http.ResponseWriter, req *http.Request, escaped string) {
	// base64 grows by 4/3, and %-escapes triple a character.
	if len(escaped) > 4*r.cfg.MaxRequestBytes {
		r.writeError(w, "GET", statusMalformed, ocsp.MalformedRequestErrorResponse)
		return
	}
	der, ok := decodeGETRequest(escaped)
	if !ok || len(der) > r.cfg.MaxRequestBytes {
		r.writeError(w, "GET", statusMalformed, ocsp.MalformedRequestErrorResponse)
		return
	}
	r.answer(w, req, "GET", der)
}

// decodeGETRequest reads the base64 request of a GET path (RFC 6960
// Appendix A.1: base64, then URL-encoded): %-escapes of "+", "/" and "="
// are undone, a "+" that became a space is restored, padding is optional,
// and the URL-safe alphabet (RFC 4648 §5) is accepted too.
func decodeGETRequest(escaped string) ([]byte, bool) {
	s := escaped
	if strings.IndexByte(s, '%') >= 0 {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		s = u
	}
	s = strings.ReplaceAll(s, " ", "+")
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	der, err := enc.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return der, true
}

// answer looks the request up and writes the pre-signed response, or with
// cfg.Nonce, for a POST carrying a nonce, one signed for it.
func (r *Responder) answer(w http.ResponseWriter, req *http.Request, method string, der []byte) {
	q, err := parseOCSPRequest(der)
	if err != nil {
		r.writeError(w, method, statusMalformed, ocsp.MalformedRequestErrorResponse)
		return
	}
	// GETs are for caches (RFC 5019 §5): a nonce there is never echoed.
	echo := r.cfg.Nonce && method == "POST" && q.hasNonce
	if echo && !validNonce(q.nonce) {
		// RFC 8954 §2.1: an empty nonce or one over 32 octets is malformed.
		r.metrics.nonce(nonceRejected)
		r.writeError(w, method, statusMalformed, ocsp.MalformedRequestErrorResponse)
		return
	}
	iss := r.idx.Load().byKeyHash[string(q.keyHash)]
	if iss == nil || !bytes.Equal(iss.keyHash[q.hash], q.keyHash) || !bytes.Equal(iss.nameHash[q.hash], q.nameHash) {
		// RFC 5019 §2.2.3: not an issuer this responder serves.
		r.writeError(w, method, statusUnauthorized, ocsp.UnauthorizedErrorResponse)
		return
	}
	now := r.clk.Now()
	iss.mu.RLock()
	e := iss.entries[string(q.serial)]
	if e == nil {
		e = iss.unknown[string(q.serial)]
	}
	iss.mu.RUnlock()
	if e != nil && now.Before(e.nextUpdate) {
		r.metrics.hits.Inc()
	} else {
		r.metrics.misses.Inc()
		if !r.misses.AllowN(now, 1) {
			r.writeError(w, method, statusTryLater, ocsp.TryLaterErrorResponse)
			return
		}
		e, err = r.miss(req.Context(), iss, q.serial, now)
		if err != nil {
			r.log.ErrorContext(req.Context(), "ocsp miss", "issuer", iss.id, "error", err)
			r.writeError(w, method, statusInternal, ocsp.InternalErrorErrorResponse)
			return
		}
	}
	if echo {
		r.writeNonce(w, req, iss, e, q, now)
		return
	}
	r.writeEntry(w, req, method, e, q.hash, now)
}

// writeNonce answers a POST carrying a nonce with a response signed for it
// alone: what the cached entry says, the nonce echoed in
// responseExtensions, nothing for caches to keep. Past the nonce budget
// (nonceBudget) the pre-signed response goes instead: the nonce is optional (RFC 6960 §4.4.1)
// and the pre-signed answer costs nothing.
func (r *Responder) writeNonce(w http.ResponseWriter, req *http.Request, iss *issuerState, e *entry, q ocspRequest, now time.Time) {
	if !r.nonces.allow(req.RemoteAddr, now) {
		r.metrics.nonce(nonceRateLimited)
		r.writeEntry(w, req, "POST", e, q.hash, now)
		return
	}
	signer := iss.Signer()
	next := e.nextUpdate
	if na := signer.NotAfter(); next.After(na) {
		next = na // never outlive the signer; ca refuses a response that would
	}
	start := time.Now() // signing cost for the CPU budget: a duration, not a date
	der, err := signer.SignWithNonce(ocsp.Response{
		Status: e.status, SerialNumber: new(big.Int).SetBytes(q.serial), IssuerHash: q.hash.crypto(),
		ThisUpdate: e.thisUpdate, NextUpdate: next, RevokedAt: e.revokedAt, RevocationReason: e.reason,
		ProducedAt: now.UTC().Truncate(time.Second),
	}, q.nonce)
	r.nonces.spent(time.Since(start))
	if err != nil {
		r.metrics.nonce(nonceFailed)
		r.log.ErrorContext(req.Context(), "ocsp nonce response", "issuer", iss.id, "error", err)
		r.writeError(w, "POST", statusInternal, ocsp.InternalErrorErrorResponse)
		return
	}
	r.metrics.nonce(nonceSigned)
	r.metrics.request("POST", ocspStatusLabel(e.status))
	r.metrics.age.Observe(now.Sub(e.thisUpdate).Seconds())
	hdr := w.Header()
	hdr["Content-Type"] = []string{"application/ocsp-response"}
	// Unique to this request: no shared cache may keep it (RFC 5019 §6.2's
	// headers are for pre-signed responses).
	hdr["Cache-Control"] = []string{"no-store"}
	hdr["Content-Length"] = []string{strconv.Itoa(len(der))}
	_, _ = w.Write(der)
}

// miss answers a serial with no cached response: a certificate issued since
// the last refresh is signed and cached like the others; a serial this
// issuer never issued (or whose certificate expired) gets "unknown", cached
// in a bounded map and never stored. Callers rate-limit misses.
func (r *Responder) miss(ctx context.Context, iss *issuerState, serial []byte, now time.Time) (*entry, error) {
	// The store's form: lower-case hex without leading zeros ("%x" of the
	// bytes would keep a leading zero nibble, one serial in sixteen).
	hexSerial := new(big.Int).SetBytes(serial).Text(16)
	rec, err := r.st.Certificate(ctx, hexSerial)
	switch {
	case err == nil && rec.IssuerID == iss.id && now.Before(rec.NotAfter):
		e, rows, err := r.sign(iss, rec.Serial, rec.RevokedAt, rec.RevokeReason, now, r.cfg.Validity)
		if err != nil {
			return nil, err
		}
		r.put(iss, string(serial), e)
		r.persistLater(rows)
		return e, nil
	case err == nil, errors.Is(err, store.ErrNotFound):
		e, _, err := r.signStatus(iss, hexSerial, ocsp.Unknown, time.Time{}, 0, now, unknownValidity)
		if err != nil {
			return nil, err
		}
		iss.mu.Lock()
		if len(iss.unknown) >= r.cfg.MaxUnknown {
			for k := range iss.unknown { // evict an arbitrary tenth
				delete(iss.unknown, k)
				if len(iss.unknown) < r.cfg.MaxUnknown*9/10 {
					break
				}
			}
		}
		iss.unknown[string(serial)] = e
		iss.mu.Unlock()
		return e, nil
	default:
		return nil, fmt.Errorf("look up serial %s: %w", hexSerial, err)
	}
}

func ocspStatusLabel(status int) string {
	switch status {
	case ocsp.Good:
		return statusGood
	case ocsp.Revoked:
		return statusRevoked
	}
	return statusUnknown
}

// writeEntry writes a pre-signed response with the RFC 5019 §6.2 caching
// headers. A nonce is not echoed here: pre-signed responses are shared
// (RFC 5019 §2.2.1 lets responders ignore it); see writeNonce.
func (r *Responder) writeEntry(w http.ResponseWriter, req *http.Request, method string, e *entry, h hashIndex, now time.Time) {
	r.metrics.request(method, ocspStatusLabel(e.status))
	r.metrics.age.Observe(now.Sub(e.thisUpdate).Seconds())
	maxAge := int64(e.nextUpdate.Sub(now) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	hdr := w.Header()
	hdr["Content-Type"] = []string{"application/ocsp-response"}
	hdr["Cache-Control"] = []string{"max-age=" + strconv.FormatInt(maxAge, 10) + ", public, no-transform, must-revalidate"}
	hdr["Last-Modified"] = []string{e.lastModified}
	hdr["Expires"] = []string{e.expires}
	hdr["Etag"] = []string{e.etag[h]}
	if method == "GET" && req.Header.Get("If-None-Match") == e.etag[h] {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(e.der[h]))}
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(e.der[h])
}

func (r *Responder) writeError(w http.ResponseWriter, method, status string, body []byte) {
	r.metrics.request(method, status)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/ocsp-response")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
